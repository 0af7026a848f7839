"""`LocalCluster`: a real beach cluster on this machine, for tests and ``beach dev``.

A nats-server with JetStream (`beach.bus.embedded.EmbeddedServer`) and ``nodes`` node agents
(``python -m beach.cli node CONFIG``, each with its actor hosts), all on free loopback ports, with
their state, code cache, config and logs in a temporary directory. Everything it started is stopped
when its ``with`` block ends — also when the block raises, on Ctrl-C, and (a SIGTERM from Linux)
when the process that started it dies — and the directory is removed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Coroutine, Mapping
from typing import Any, TypeVar

import msgspec
import psutil
import yaml

from beach import logs as beach_logs
from beach import loop as beach_loop
from beach.bus import clustering
from beach.bus.embedded import EmbeddedServer, die_with_parent
from beach.client.blocking import Beach
from beach.client.core import AsyncBeach
from beach.config import LOOPBACK
from beach.errors import BeachError, UsageError
from beach.operations import rollout
from beach.wire import subjects

T = TypeVar("T")

START_SECONDS = 30.0  # a node agent that has not registered by then failed to start
STOP_SECONDS = 20.0  # a node agent stopping its actors (their deinit) before it is killed

_RUNNING: weakref.WeakSet[LocalCluster] = weakref.WeakSet()  # stopped at exit if their block never ended


@atexit.register
def _stop_all() -> None:
    for cluster in list(_RUNNING):
        cluster.stop()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (`beach.bus.clustering.free_port`: never one given lately)."""
    return clustering.free_port(LOOPBACK)


def _merged(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class LocalCluster:
    """A cluster of ``nodes`` node agents and a nats-server on this machine, for a ``with`` block.

    ``code_directory`` is the config's (actors load from ``<code_directory>/<realm>/<Name>.py``;
    default: an empty directory — deploy code, or name ``module:Class`` actors); ``realm`` is the
    one `client` uses by default; ``config`` adds or overrides config keys (nested sections are
    merged: ``logs={'rate': 10}``; each node runs one actor host unless ``n_processes`` says
    otherwise); ``env``: environment variables for the node agents and their actor hosts, beside
    this process's (``OTEL_*``, for their traces). The config has an admin token, so its clients
    are admins.
    Raises `BeachError` (with the node's log) if the cluster does not come up.
    """

    def __init__(self, code_directory: str | os.PathLike[str] | None = None, nodes: int = 1,
                 realm: str = "global", env: Mapping[str, str] | None = None, **config: Any) -> None:
        if not isinstance(nodes, int) or nodes < 1:
            raise UsageError(f"a LocalCluster needs 1 or more nodes, not {nodes!r}")
        if code_directory is not None and not os.path.isdir(code_directory):
            raise UsageError(f"code directory {os.fspath(code_directory)!r} is not a directory")
        self.realm = subjects.check_realm(realm)
        self.code_directory = None if code_directory is None else os.path.abspath(code_directory)
        self._nodes_wanted = nodes
        self._config = config
        self._env = None if env is None else {**os.environ, **env}
        self.directory = ""
        """The temporary directory holding the config, the servers' state and the logs."""
        self.config_path = ""
        """The path of the cluster's config file (what ``beach ... CONFIG`` commands take)."""
        self.server: EmbeddedServer | None = None
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        """The node agents' processes by node id."""
        self._clients: list[Beach] = []
        self._watch: Beach | None = None
        self._counter = 0
        self._since = datetime.datetime.now(datetime.UTC)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- start and stop

    def start(self) -> LocalCluster:
        """Start the server and the nodes; return once every node is registered."""
        if self.server is not None:
            return self
        self.directory = tempfile.mkdtemp(prefix="beach-cluster-")
        _RUNNING.add(self)
        try:
            self._start_server()
            code = self.code_directory or os.path.join(self.directory, "code")
            os.makedirs(code, exist_ok=True)
            assert self.server is not None
            raw = _merged({"code_directory": code, "n_processes": 1, "admin_token": secrets.token_hex(16),
                           "nats": {"servers": [self.server.url]},
                           "code": {"cache": os.path.join(self.directory, "code-cache")}}, self._config)
            self.config_path = os.path.join(self.directory, "beach.yaml")
            with open(self.config_path, "w") as f:
                yaml.safe_dump(raw, f)
            self._since = datetime.datetime.now(datetime.UTC)
            started = [self._spawn_node() for _ in range(self._nodes_wanted)]
            self._watch = Beach(self.config_path, realm=self.realm)
            self._wait_registered(started)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self) -> None:
        for attempt in range(5):  # a free port may be taken between finding it and binding it
            server = EmbeddedServer(free_port(), os.path.join(self.directory, "nats"), name="beach-local",
                                    log_file=os.path.join(self.directory, "nats.log"))
            try:
                self.server = server.start()
                return
            except BeachError:
                server.stop()
                if attempt == 4:
                    raise

    def _spawn_node(self, node_id: str | None = None) -> str:
        with self._lock:
            self._counter += 1
            node_id = node_id or f"local-{self._counter}"
        if node_id in self.nodes and self.nodes[node_id].poll() is None:
            raise UsageError(f"node {node_id!r} is running already")
        log = open(os.path.join(self.directory, f"node-{node_id}.log"), "ab")
        with log:
            # a session of its own (a Ctrl-C reaches this process, which stops the node in order),
            # and SIGTERM from Linux if this process dies without stopping it
            self.nodes[node_id] = subprocess.Popen(
                [sys.executable, "-m", "beach.cli", "node", self.config_path, "--node-id", node_id],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent, env=self._env)
        return node_id

    def _wait_registered(self, node_ids: list[str], timeout: float = START_SECONDS) -> None:
        assert self._watch is not None
        deadline = time.monotonic() + timeout
        while True:
            registered = set(self._watch.getAllNodeMetadata())
            if all(n in registered for n in node_ids):
                return
            for node_id in node_ids:
                code = self.nodes[node_id].poll()
                if code is not None:
                    raise BeachError(f"node {node_id} of the local cluster exited with code {code} at start:\n"
                                     + _tail(self.node_log(node_id)))
            if time.monotonic() > deadline:
                missing = [n for n in node_ids if n not in registered]
                raise BeachError(f"node {missing[0]} of the local cluster did not register within {timeout:g}s:\n"
                                 + _tail(self.node_log(missing[0])))
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop every node (their actors' ``deinit`` runs; killed after `STOP_SECONDS`), the
        server and the clients made by `client`, and remove the directory. Safe to call twice."""
        _RUNNING.discard(self)
        try:
            for client in [*self._clients, *([self._watch] if self._watch else [])]:
                try:
                    client.close()
                except Exception:  # the bus may be gone already: nothing to close cleanly
                    pass
            self._clients, self._watch = [], None
            self._stop_nodes(list(self.nodes))
        finally:
            try:
                if self.server is not None:
                    self.server.stop()
            finally:
                self.server = None
                if self.directory:
                    shutil.rmtree(self.directory, ignore_errors=True)

    def _stop_nodes(self, node_ids: list[str]) -> dict[str, int]:
        family = {n: _descendants(self.nodes[n]) for n in node_ids}
        try:
            for node_id in node_ids:
                if self.nodes[node_id].poll() is None:
                    self.nodes[node_id].send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_SECONDS
            for node_id in node_ids:
                try:
                    self.nodes[node_id].wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        finally:  # also on Ctrl-C while waiting: nothing of a node outlives this
            codes = {n: _kill(self.nodes.pop(n), family[n]) for n in node_ids}
        return codes

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- clients

    @property
    def url(self) -> str:
        """The NATS URL of the cluster's server."""
        if self.server is None:
            raise UsageError("the local cluster is not running")
        return self.server.url

    def client(self, realm: str | None = None) -> Beach:
        """A `Beach` client of the cluster (``realm``: default the cluster's), an admin; closed
        when the cluster stops."""
        if self.server is None:
            raise UsageError("the local cluster is not running: use it inside its 'with' block")
        client = Beach(self.config_path, realm=realm or self.realm)
        self._clients.append(client)
        return client

    async def aclient(self, realm: str | None = None) -> AsyncBeach:
        """An `AsyncBeach` client of the cluster on the running event loop; close it
        (``await client.close()``) before the loop ends."""
        if self.server is None:
            raise UsageError("the local cluster is not running: use it inside its 'with' block")
        return await AsyncBeach.open(self.config_path, realm=realm or self.realm)

    # ---------------------------------------------------------------- nodes

    def add_node(self, node_id: str | None = None) -> str:
        """Start one more node agent (``node_id``: default ``local-<n>``); return its id once it
        is registered."""
        if self.server is None:
            raise UsageError("the local cluster is not running")
        node_id = self._spawn_node(node_id)
        self._wait_registered([node_id])
        return node_id

    def kill_node(self, node_id: str) -> None:
        """Kill node ``node_id`` at once, as a crash would: SIGKILL to its agent and its actor hosts
        together. The others notice as they would on a cluster (see docs/operations.md)."""
        process = self._node(node_id)
        _kill(process, _descendants(process))
        del self.nodes[node_id]

    def stop_node(self, node_id: str) -> int:
        """Stop node ``node_id`` gracefully (SIGTERM: its actors stop, their ``deinit`` runs;
        killed after `STOP_SECONDS`); return its agent's exit code (0: a clean stop)."""
        self._node(node_id)
        return self._stop_nodes([node_id])[node_id]

    def _node(self, node_id: str) -> subprocess.Popen[bytes]:
        if node_id not in self.nodes:
            raise UsageError(f"no node {node_id!r} in this local cluster (nodes: {', '.join(self.nodes) or 'none'})")
        return self.nodes[node_id]

    def node_log(self, node_id: str) -> str:
        """The path of the file where node ``node_id`` writes its stderr (it and its hosts')."""
        return os.path.join(self.directory, f"node-{node_id}.log")

    # ---------------------------------------------------------------- logs

    def logs(self, target: str | None = None, realm: str | None = None, system: bool = False) -> list[dict[str, Any]]:
        """The cluster's log lines since it started (or since `reset`), oldest first, as ``beach
        logs --json`` gives them: what actors logged (of actor uid or category ``target``, of
        ``realm``), or with ``system`` beach's own warnings."""
        return _blocking(self.alogs(target, realm, system))

    async def alogs(self, target: str | None = None, realm: str | None = None,
                    system: bool = False) -> list[dict[str, Any]]:
        """`logs`, awaited."""
        return [line async for line in self._read(target, realm, system, follow=False)]

    def wait_for_log(self, text: str, target: str | None = None, realm: str | None = None, system: bool = False,
                     timeout: float = 10.0) -> dict[str, Any]:
        """The first log line (as `logs` selects them) whose message contains ``text``, waiting
        up to ``timeout`` seconds for it; raise `TimeoutError` naming it if none comes."""
        return _blocking(self.await_for_log(text, target, realm, system, timeout))

    async def await_for_log(self, text: str, target: str | None = None, realm: str | None = None,
                            system: bool = False, timeout: float = 10.0) -> dict[str, Any]:
        """`wait_for_log`, awaited."""
        async def first() -> dict[str, Any]:
            # (closed here, its client with it: not left to the loop's shutdown, which cancels first)
            async with contextlib.aclosing(self._read(target, realm, system, follow=True)) as lines:
                async for line in lines:
                    if text in line["msg"]:
                        return line
            raise AssertionError("unreachable: a followed log never ends")

        try:
            return await beach_loop.within(first(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no log line containing {text!r} within {timeout:g}s") from None

    async def _read(self, target: str | None, realm: str | None, system: bool,
                    follow: bool) -> AsyncGenerator[dict[str, Any], None]:
        uid = category = None
        if target:
            if beach_logs.UID.fullmatch(target):
                uid = target
            else:
                category = subjects.normalize(target)
        client = await AsyncBeach.open(self.config_path, realm=self.realm)
        try:
            async for line in beach_logs.read(client.session.nc, beach_logs.subject_filter(
                    "sys" if system else "app", realm, uid), since=self._since, follow=follow,
                    accept=beach_logs.accept(category=category), sealer=client.session.sealer):
                yield msgspec.structs.asdict(line)  # (as JSON shows it)
        finally:
            await client.close()

    # ---------------------------------------------------------------- between tests

    def reset(self) -> bool:
        """Make the cluster as it was at start: no actors, supervision records, patrol specs or
        deployed code, logs read from now on. False if it cannot be (a node was killed, added or
        cordoned, or one did not answer): then stop it and start another."""
        if self.server is None or self._watch is None:
            return False
        nodes = self._watch.getAllNodeMetadata()
        if (sorted(nodes) != sorted(self.nodes) or len(self.nodes) != self._nodes_wanted
                or any(p.poll() is not None for p in self.nodes.values())):
            return False
        ok = _blocking(self._areset())
        self._since = datetime.datetime.now(datetime.UTC)
        return ok

    async def _areset(self) -> bool:
        client = await AsyncBeach.open(self.config_path, realm=self.realm)
        try:
            if not await client.flush():
                return False
            for node, entry in list(client.session.view.nodes.items()):
                if entry.cordoned:
                    await rollout.cordon(client, node, False)
            return (await client._change_desired(prefixes=["code."])).isSuccess
        finally:
            await client.close()


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return beach_loop.run(coro)
    coro.close()
    raise UsageError("this LocalCluster method blocks: in async code, await its a* form (alogs, await_for_log)")


def _descendants(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """A node agent's descendants (its actor hosts), while they run."""
    try:
        return list(psutil.Process(process.pid).children(recursive=True))
    except psutil.Error:  # the agent is gone already
        return []


def _kill(process: subprocess.Popen[bytes], descendants: list[psutil.Process]) -> int:
    """SIGKILL a node agent and its ``descendants`` at once; return the agent's exit code."""
    if process.poll() is None:
        process.kill()
    for p in descendants:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:  # gone already
            pass
    code = process.wait()
    psutil.wait_procs(descendants, timeout=5)
    return code
