"""`HostPool`: the actor host processes of one node — starting them, noticing when they exit,
knowing which one runs which actor, and calling them.

The node agent keeps ``n_processes`` shared hosts (replacing one that dies) plus one per isolated
actor; each host announces itself (``hello``) once connected. A call to a host that dies before
answering fails at once, instead of waiting out its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from beach import metering, tracing
from beach.bus.embedded import die_with_parent
from beach.client.session import Session
from beach.config import Config
from beach.errors import BeachError
from beach.security import authority
from beach.state.directory import DirectoryView
from beach.state.spawn import HOST_START_SECONDS
from beach.wire import Reply, read_reply, subjects
from nodeagent.control import BUS_LOST_EXIT

log = logging.getLogger("beach.nodeagent")

HOST_STOP_SECONDS = 30.0
ENDS_WITH_ITS_ACTOR = ("spawn", "stop", "flush")  # an isolated host exits after these (a spawn: if it failed)


@dataclass
class HostProcess:
    """An actor host process this agent started."""

    id: str
    process: subprocess.Popen[bytes]
    isolated: bool
    ready: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    exited: asyncio.Event = field(default_factory=asyncio.Event)  # set once `HostPool.reap` sees it gone
    leaving: bool = False

    @property
    def running(self) -> bool:
        """Announced, not leaving, not exited."""
        return (not self.leaving and self.ready.done() and not self.ready.exception()
                and self.process.poll() is None)


class HostPool:
    """The actor host processes of node ``node_id``, and where each of its actors runs."""

    def __init__(self, config: Config, node_id: str, log_dest: str | None = None) -> None:
        self.config = config
        self.node_id = node_id
        self.log_dest = log_dest  # the node's --log-dest, which its hosts log to as well
        self.hosts: dict[str, HostProcess] = {}
        self.placed: dict[str, tuple[str, str]] = {}  # uid → (host, realm), from the hosts' own replies
        self._started = {True: 0, False: 0}  # isolated → how many were started

    async def start(self, isolated: bool = False) -> HostProcess:
        """Start an actor host process and wait until it has announced itself; raise `BeachError`
        if it does not within `HOST_START_SECONDS`."""
        if not self.config.path:
            raise BeachError("the node agent needs a config file path to start actor hosts")
        self._started[isolated] += 1
        host_id = f"{self.node_id}-{'i' if isolated else 'h'}{self._started[isolated]}"
        cmd = [sys.executable, "-m", "nodeagent.host", self.config.path, "--node", self.node_id,
               "--host", host_id, "--log-level", str(self.config.log_level)] + (["--isolated"] if isolated else [])
        if self.log_dest:
            cmd += ["--log-dest", self.log_dest]
        if self.config.secure_dir:  # the hosts connect with the node's credentials too
            cmd += ["--secure", self.config.secure_dir]
        # Own session: terminal signals reach the agent only, which stops its hosts in order.
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
                                   start_new_session=True)
        host = HostProcess(host_id, process, isolated)
        self.hosts[host_id] = host
        try:
            async with asyncio.timeout(HOST_START_SECONDS):
                await asyncio.shield(host.ready)
        except TimeoutError:
            host.leaving = True
            process.kill()
            raise BeachError(f"actor host {host_id} did not start within {HOST_START_SECONDS}s") from None
        return host

    def announced(self, host_id: str) -> None:
        """Host ``host_id`` said hello: it is connected and takes calls."""
        host = self.hosts.get(host_id)
        if host is not None and not host.ready.done():
            host.ready.set_result(None)

    def reap(self, stopping: bool) -> list[str]:
        """Forget the host processes that exited (logging the unexpected deaths unless ``stopping``);
        return their ids."""
        dead = []
        for host in list(self.hosts.values()):
            code = host.process.poll()
            if code is None:
                continue
            del self.hosts[host.id]
            host.exited.set()  # calls waiting for its answer give up now
            dead.append(host.id)
            if not host.ready.done():
                host.ready.set_exception(BeachError(f"actor host {host.id} exited with code {code} at start"))
                host.ready.exception()  # mark retrieved
            if code == BUS_LOST_EXIT and not stopping:
                log.error("actor host %s exited: the NATS server closed its connection for good (its log says "
                          "why); its actors are gone%s", host.id, "" if host.isolated else ", and it is replaced")
            elif not host.leaving and not stopping:
                log.error("actor host %s died (exit code %s)", host.id, code)
        return dead

    def shared_missing(self) -> int:
        """How many shared hosts are short of ``n_processes``."""
        return self.config.processes - sum(1 for h in self.hosts.values() if not h.isolated and not h.leaving)

    def running(self, shared_only: bool = False) -> list[HostProcess]:
        """The hosts that take calls (only the shared ones, if asked)."""
        return [h for h in self.hosts.values() if h.running and not (shared_only and h.isolated)]

    def of(self, uids: list[str], view: DirectoryView) -> dict[str, list[str]]:
        """``{host id: uids}`` for those of ``uids`` that run in a host of this node."""
        by_host: dict[str, list[str]] = {}
        for uid in uids:
            host = self.placed.get(uid, (None, None))[0]
            if host is None:  # placed before this agent knew (or by the view only)
                actor = view.actors.get(uid)
                host = actor.host if actor is not None and actor.node == self.node_id else None
            if host in self.hosts and not self.hosts[host].leaving:
                by_host.setdefault(host, []).append(uid)
        return by_host

    def stopped(self, replies: list[Reply]) -> tuple[list[str], dict[str, Any]]:
        """The errors and the stopped actors (``{uid: [key, revision]}``) of the hosts' replies to
        stops; the stopped ones are no longer placed."""
        stopped: dict[str, Any] = {}
        for ok, _, data in replies:
            if ok:
                stopped.update(data["stopped"])
        for uid in stopped:
            self.placed.pop(uid, None)
        return [error for ok, error, _ in replies if not ok], stopped

    async def call(self, session: Session, host_id: str, op: str, args: object, timeout: float,
                   token: str | None) -> Reply:
        """Ask host ``host_id`` to do ``op`` (proving ``token`` if given); never raises: a host that
        dies, does not answer or answers nonsense is a failed `Reply` saying so. Traced as a
        ``beach.host/<op>`` span, a child of the operation the agent serves."""
        spans = tracing.operation("beach.host", op, host_id, None)
        try:
            reply = await self._call(session, host_id, op, args, timeout, token,
                                     None if spans is None else tracing.headers(spans.own()))
        except BaseException as err:  # (cancelled: the agent stopping)
            if spans is not None:
                spans.end(*tracing.raised(err))
            raise
        if spans is not None:
            spans.end(metering.outcome(reply.ok, reply.error), reply.error)
        return reply

    async def _call(self, session: Session, host_id: str, op: str, args: object, timeout: float,
                    token: str | None, headers: dict[str, str] | None) -> Reply:
        subject = subjects.host_subject(host_id, op)

        async def exchange() -> Any:
            body = await authority.control_body(session.inbox, subject, subjects.host_subject(host_id, "challenge"),
                                                args, token, f"{op} arguments", timeout)
            return await session.inbox.request(subject, body, timeout, headers)

        call = asyncio.ensure_future(exchange())
        host = self.hosts.get(host_id)
        if host is not None:  # a host that dies while it has the call will never answer: say so then
            exited = asyncio.ensure_future(host.exited.wait())
            try:
                await asyncio.wait({call, exited}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                exited.cancel()
            if not call.done():
                call.cancel()
                return Reply(False, f"actor host {host_id} died before answering {op}", {})
        try:
            msg = await call
        except Exception as err:
            return Reply(False, f"actor host {host_id} did not answer {op}: {type(err).__name__}", {})
        reply = read_reply(msg.data, f"actor host {host_id} to {op}")
        host = self.hosts.get(host_id)
        if host is not None and host.isolated and op in ENDS_WITH_ITS_ACTOR and (op != "spawn" or not reply.ok):
            host.leaving = True
        return reply

    async def stop_all(self) -> list[str]:
        """Stop every host gracefully (their actors' ``deinit`` runs), killing one that takes more
        than `HOST_STOP_SECONDS`; return their ids."""
        hosts = list(self.hosts.values())
        for host in hosts:
            host.leaving = True
            if host.process.poll() is None:
                host.process.terminate()
        deadline = time.monotonic() + HOST_STOP_SECONDS
        for host in hosts:
            while host.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if host.process.poll() is None:
                log.error("host %s did not stop in %ss: killing it", host.id, HOST_STOP_SECONDS)
                host.process.kill()
                host.process.wait()
        return [h.id for h in hosts]
