"""The actor host: one asyncio process with one NATS connection, running many actors.

The node agent starts ``n_processes`` shared hosts plus one per isolated actor::

    python -m nodeagent.host CONFIG --node NODE_ID --host HOST_ID [--isolated]

It answers the agent on ``beach.h.<host>.<op>`` (spawn, stop, flush, associate, disassociate,
info), writes its actors' directory entries, and on SIGTERM stops every actor (``deinit``) and
exits 0. It exits by itself if its node agent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from nats.aio.msg import Msg

from beach import bus, logs, tracing, wire
from beach import config as beach_config
from beach import loop as beach_loop
from beach.client.runner import Background, Runner
from beach.client.session import Session
from beach.errors import ActorInitError, BeachError, BusError, SealError
from beach.runtime.actor_runtime import ActorRuntime
from beach.runtime.dispatch import SERVING
from beach.runtime.loader import load_actor_class
from beach.runtime.workers import WorkerPool
from beach.security import authority
from beach.state import desired, directory, records
from beach.state.actorstate import StateStore
from beach.state.records import ActorArgs, ActorEntry, CategoryArgs, FlushArgs, HostStopArgs, StackArgs
from beach.state.spawn import SpawnSpec
from beach.wire import Reply, subjects
from nodeagent import logsetup
from nodeagent.control import BUS_LOST_EXIT, ControlServer, lost_bus
from nodeagent.host.deployed import DeployedCode

STATS_PREFIX = "beach.stats."  # + host id: each host's actors' load figures, every second
HELLO_SECONDS = 10.0  # the node agent's answer to this host's hello

log = logging.getLogger("beach.host")




class ActorHost(ControlServer):
    """The actors of one host process, and the control API the node agent drives."""

    kind = "host"
    # hosts take orders from their node agent only; with an admin token, anyone else on the bus
    # is refused like at the agent
    privileged = authority.HOST_ADMIN_OPS

    def __init__(self, config: beach_config.Config, node_id: str, host_id: str, isolated: bool = False) -> None:
        self.config = config
        self.node_id = node_id
        self.host_id = host_id
        self.isolated = isolated
        self.admin_token = config.admin_token
        self.pid = os.getpid()
        self.actors: dict[str, ActorRuntime] = {}
        self.pool = WorkerPool(name=f"{host_id}-worker")
        self.stopped = asyncio.Event()
        self.background = Background()
        self.session: Session
        self.runner: Runner
        self.lost: list[str] = []  # the server's reason, once it closed this host's connection for good
        self.state: StateStore

    async def run(self) -> None:
        """Connect, announce this host to the node agent, serve until told to stop, then stop."""
        loop = asyncio.get_running_loop()
        self.runner = Runner(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopped.set)
        # its view holds the categories its actors' handles call, not the whole directory
        self.session = await Session.open(self.config, self.runner, f"beach-host {self.host_id}", self.node_id,
                                          partial=True)
        # a host whose connection the server closed can serve nothing: it stops, and its node sees it
        # exit (BUS_LOST_EXIT), collects its actors' entries and replaces it, as after a crash
        self.lost = lost_bus(self.session, self.stopped.set)
        self.state = StateStore(self.session)
        self.code = DeployedCode(self.session, self.config)
        nc = self.session.nc
        self.log_handler = logs.ClusterLogHandler(logs.Source("sys", self.node_id, self.host_id),
                                                  self.config.logs.rate, self.config.logs.burst)
        logs.install(self.log_handler, nc, self.config.sealer)
        await self.serve_control(subjects.host_subject(self.host_id, ""))
        await nc.subscribe(subjects.CANCELS, cb=self._on_cancel)
        await self.session.inbox.request(subjects.node_subject(self.node_id, "hello"),
                                         wire.pack({"host": self.host_id, "pid": self.pid, "isolated": self.isolated}),
                                         timeout=HELLO_SECONDS)
        watchdog = loop.create_task(self._watch_parent())
        await self.stopped.wait()
        watchdog.cancel()
        await self.shutdown()
        if self.lost:
            raise BusError(f"actor host {self.host_id} stops: the NATS server closed its connection for good "
                           f"({self.lost[0]})")

    async def _on_cancel(self, msg: Msg) -> None:
        """A caller gave up on an attempt (its reply subject in the body): the actor serving it here,
        if any, cancels it (`beach.client.scope`)."""
        try:
            [reply] = wire.unpack(self.session.unseal(msg))
        except (SealError, ValueError, TypeError):  # not a caller's (refused by the seal, or malformed)
            return
        if isinstance(reply, str):
            for runtime in list(self.actors.values()):
                if runtime.dispatcher.cancel_request(reply):
                    return

    async def _watch_parent(self) -> None:
        parent = os.getppid()
        while True:
            await asyncio.sleep(1)
            if os.getppid() != parent:
                log.error("node agent %s is gone: stopping host %s", self.node_id, self.host_id)
                self.stopped.set()
                return
            await self._publish_stats()

    def load(self) -> dict[str, Any]:
        """Each actor's load figures: in-flight requests, their bound, waiting messages, counters."""
        return {uid: {**rt.dispatcher.load(), "logs_dropped": rt.log_source.dropped} for uid, rt in self.actors.items()}

    async def _publish_stats(self) -> None:
        """Tell whoever watches (the tools' cluster model) how this host's actors are doing."""
        if not self.actors:
            return
        calls = {realm: meter.snapshot() for realm, meter in self.session.calls.items()}
        body = wire.pack({"v": 1, "host": self.host_id, "node": self.node_id, "t": time.time(), "load": self.load(),
                          "calls": calls})
        if len(body) <= (self.session.nc.max_payload or len(body)):
            try:
                await self.session.publish(STATS_PREFIX + subjects.escape(self.host_id), body)
            except Exception:  # the bus is away for now: the next second tries again
                pass

    async def _put(self, runtime: ActorRuntime, before: list[str] | None = None) -> tuple[str, int, ActorEntry]:
        """Write actor ``runtime``'s directory entry (and its entries by category, deleting those of
        the categories it had ``before``, and by node); return ``(key, revision, entry)``."""
        view = self.session.view
        entry = runtime.entry()
        key, revision = await directory.put_actor(view.actors_kv, entry, self._write_refused, view.members_kv, before,
                                                  view.placed_kv)
        view.apply_local(key, revision, entry)
        return key, revision, entry

    async def _delete(self, runtime: ActorRuntime) -> tuple[str, int]:
        """Remove actor ``runtime``'s directory entry and its entries by category and by node (`_put`'s undoing);
        return ``(key, revision)`` of the deletion."""
        view = self.session.view
        placed = (view.placed_kv, self.node_id) if view.placed_kv is not None else None
        key, revision = await directory.delete_actor(self.session.nc, view.actors_kv, runtime.realm, runtime.uid,
                                                     view.members_kv, runtime.categories, placed)
        view.apply_local(key, revision, None)
        return key, revision

    async def op_republish(self, args: dict[str, Any]) -> Reply:
        """Write back the directory entries of the actors ``args['uids']`` that the node agent saw
        go missing (the directory is soft state: an entry lost in KV, or removed while this node
        seemed dead, heals here; this host's own view holds only the categories its actors call,
        so the agent, whose view holds its node's actors, says which). Answers the uids not here."""
        uids = records.check(HostStopArgs, args).uids
        for uid in uids:
            runtime = self.actors.get(uid)
            if runtime is None:
                continue
            try:
                await self._put(runtime)
                if uid not in self.actors:  # stopped meanwhile: take the entry back out
                    await self._delete(runtime)
                    continue
                log.warning("actor %s was missing from the directory: published again", uid)
            except Exception as err:
                log.warning("could not publish actor %s again: %s", uid, err)
        return Reply(True, "", {"gone": [uid for uid in uids if uid not in self.actors]})

    async def shutdown(self) -> None:
        """Stop every actor (their ``deinit`` runs), remove them from the directory, disconnect."""
        await asyncio.gather(*(self.stop_actor(uid) for uid in list(self.actors)), return_exceptions=True)
        await self.log_handler.stop()
        logs.uninstall(self.log_handler)
        await self.session.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- control

    async def op_spawn(self, args: dict[str, Any]) -> Reply:
        """Load, create and ``init()`` an actor, then subscribe it and publish its directory entry."""
        spec = records.check(SpawnSpec, args)
        if not spec.uid:
            raise records.RecordError("spawn record: 'uid' is missing (the node agent chooses it)")
        name = spec.actorName
        try:
            deployed = None if ":" in name else await self.code.find(spec.realm, spec.version)
            cls = load_actor_class(self.config.code_directory, spec.realm, name, self.config.actor_modules,
                                   None if deployed is None else (deployed.directory, deployed.digest))
            actor = cls()
            runtime = ActorRuntime(self, actor, spec, None if deployed is None else deployed.version)
            timeout = spec.timeout
        except BeachError as err:
            self._maybe_exit()  # an isolated host made for this actor has nothing left to do
            return Reply(False, str(err), {})
        except Exception:
            self._maybe_exit()
            return Reply(False, f"creating actor {name!r} raised", {"st": traceback.format_exc()})
        # (the actor's life — its init, subscriptions, timers — is not part of this spawn's trace)
        start = tracing.outside().run(asyncio.ensure_future, runtime.start())
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(start)
        except ActorInitError as err:
            self._maybe_exit()
            return Reply(False, f"init() of actor {name!r} raised", {"st": str(err)})
        except TimeoutError:
            # the caller is told it failed: so it must not come up later
            self.background.start(self._abandon(runtime, start))
            return Reply(False, f"init() of actor {name!r} did not finish within {timeout}s", {})
        if runtime.stop_requested:  # init() called stop(): it never comes up
            await runtime.stop()
            self._maybe_exit()
            return Reply(False, f"actor {name!r} stopped itself during init()", {})
        self.actors[runtime.uid] = runtime
        try:
            key, revision, entry = await self._put(runtime)
        except Exception as err:  # not in the directory: it must not serve either
            del self.actors[runtime.uid]
            await runtime.stop()
            self._maybe_exit()
            return Reply(False, f"actor {name!r} could not be published in the directory: {err}", {})
        return Reply(True, "", {"uid": runtime.uid, "entry": entry, "key": key, "revision": revision})

    async def _abandon(self, runtime: ActorRuntime, start: asyncio.Future[None]) -> None:
        try:
            await start
        except Exception:
            pass
        else:
            await runtime.stop()
        self._maybe_exit()

    async def stop_actor(self, uid: str, by_itself: bool = False, grace: float = 0.0) -> tuple[str, int] | None:
        """Stop one actor: out of the directory first (so no new request picks it), then drain and
        ``deinit``. Return the directory delete's ``(key, revision)``, or None if it is not here.

        ``by_itself``: the actor called ``stop()``; under ``restart='on-failure'`` that ends its
        supervision (``'always'`` restarts it). ``grace``: seconds it keeps serving once out of the
        directory, for the clients that have not seen it leave yet (a replacement's)."""
        runtime = self.actors.pop(uid, None)
        if runtime is None:
            return None
        sid = runtime.spec.sid
        if by_itself and sid and runtime.spec.restart == "on-failure":
            try:
                kv = await bus.open_desired(self.session.nc, self.config)
                await desired.delete(kv, desired.supervision_key(runtime.realm, sid))
            except Exception as err:  # stop it all the same; the supervisor will restart it
                log.warning("could not end the supervision of actor %s: %s", uid, err)
        key, revision = subjects.actor_key(runtime.realm, uid), 0
        if self.session.nc.is_connected or not self.stopped.is_set():  # leaving without NATS: others collect it
            try:
                key, revision = await self._delete(runtime)
            except Exception as err:
                log.warning("could not remove actor %s from the directory: %s", uid, err)
        if grace > 0:
            await asyncio.sleep(grace)
        await runtime.stop()
        self._maybe_exit()
        return key, revision

    def _write_refused(self) -> str | None:
        """Why no directory write can be made now (a node's word that JetStream lost its quorum)."""
        return self.session.view.jetstream_down

    def _maybe_exit(self) -> None:
        if self.isolated and not self.actors:
            self.stopped.set()  # an isolated host lives and dies with its actor

    async def op_stop(self, args: dict[str, Any]) -> Reply:
        """Stop the actors ``args['uids']`` that live here."""
        checked = records.check(HostStopArgs, args)
        uids, grace = checked.uids, checked.grace
        results = await asyncio.gather(*(self.stop_actor(uid, grace=grace) for uid in uids))
        stopped = {uid: list(r) for uid, r in zip(uids, results, strict=True) if r is not None}
        return Reply(True, "", {"stopped": stopped})

    async def op_flush(self, args: dict[str, Any]) -> Reply:
        """Stop every actor here (of realm ``args['realm']`` only, if given)."""
        realm = records.check(FlushArgs, args).realm
        return await self.op_stop({"uids": [uid for uid, rt in self.actors.items() if realm in (None, rt.realm)]})

    async def _recategorize(self, uid: str, change: Any) -> Reply:
        runtime = self.actors.get(uid)
        if runtime is None:
            return Reply(False, f"actor {uid} is not hosted here", {})
        before = list(runtime.categories)
        change(runtime.categories)
        await runtime.subscribe()
        key, revision, entry = await self._put(runtime, before)
        return Reply(True, "", {"entry": entry, "key": key, "revision": revision})

    async def op_associate(self, args: dict[str, Any]) -> Reply:
        """Add a category to an actor."""
        checked = records.check(CategoryArgs, args)
        runtime = self.actors.get(checked.uid)
        category = subjects.routable(runtime.realm if runtime else "global", checked.category)
        return await self._recategorize(checked.uid, lambda cats: category in cats or cats.append(category))

    async def op_disassociate(self, args: dict[str, Any]) -> Reply:
        """Remove a category from an actor."""
        checked = records.check(CategoryArgs, args)
        uid, category = checked.uid, subjects.normalize(checked.category)
        runtime = self.actors.get(uid)
        if runtime is not None and category not in runtime.categories:
            return Reply(False, f"actor {uid} is not in category {category!r}", {})
        return await self._recategorize(uid, lambda cats: cats.remove(category))

    async def op_spec(self, args: dict[str, Any]) -> Reply:
        """The full spawn spec of one actor here (private parameters included: agent only)."""
        uid = records.check(ActorArgs, args).uid
        runtime = self.actors.get(uid)
        if runtime is None:
            return Reply(False, f"actor {uid} is not hosted here", {})
        return Reply(True, "", {"spec": runtime.spec})

    async def op_info(self, args: dict[str, Any]) -> Reply:
        """Load figures of each actor here: in-flight requests, their bound, and request counters."""
        return Reply(True, "", {"load": self.load()})

    async def op_stack(self, args: dict[str, Any]) -> Reply:
        """The Python stacks of every thread of this process, and of its asyncio tasks; the threads
        serving a request of actor ``args['uid']`` (if given) are marked."""
        uid = records.check(StackArgs, args).uid
        if uid is not None and uid not in self.actors:
            return Reply(False, f"actor {uid} is not hosted here", {})
        frames = sys._current_frames()
        threads = []
        for thread in threading.enumerate():
            frame = frames.get(thread.ident or -1)
            if frame is None:
                continue
            serving = SERVING.get(thread.ident or -1)
            threads.append({"name": thread.name, "ident": thread.ident, "daemon": thread.daemon,
                            "serving": {"uid": serving[0], "request": serving[1]} if serving else None,
                            "mine": bool(serving and serving[0] == uid),
                            "stack": traceback.format_stack(frame)})
        tasks = []
        for task in asyncio.all_tasks():
            if task is asyncio.current_task():
                continue
            text = io.StringIO()
            task.print_stack(limit=30, file=text)
            tasks.append({"name": task.get_name(), "coro": getattr(task.get_coro(), "__qualname__", "?"),
                          "stack": text.getvalue().splitlines()[1:]})
        actor = self.actors.get(uid) if uid else None
        return Reply(True, "", {"pid": self.pid, "host": self.host_id, "node": self.node_id, "uid": uid,
                          "actor": actor.spec.actorName if actor else None, "threads": threads, "tasks": tasks})


def main(argv: list[str] | None = None) -> int:
    """Entry point of an actor host process."""
    parser = argparse.ArgumentParser(prog="python -m nodeagent.host", description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--node", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--isolated", action="store_true")
    parser.add_argument("--secure", metavar="DIR", help="connect as the node user of 'beach secure init DIR'")
    parser.add_argument("--log-level", help="the node's log level (its --log-level, else the config's)")
    parser.add_argument("--log-dest", help="the node's --log-dest: log there too")
    args = parser.parse_args(argv)
    config = beach_config.load(args.config)
    if args.secure:
        beach_config.use_secure_dir(config, args.secure)
    if args.log_level:
        config.log_level = args.log_level
    logsetup.configure(config.log_level, args.host, args.log_dest)
    host = ActorHost(config, args.node, args.host, args.isolated)
    try:
        beach_loop.run(host.run())
    except BeachError as err:
        log.error("%s", err)
        return BUS_LOST_EXIT if host.lost else 1
    return 0

