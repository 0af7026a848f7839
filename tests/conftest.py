"""Shared fixtures: one real nats-server (JetStream) per session on a free loopback port, one real
node agent (with real actor host processes) for the tests that need a cluster, and clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from beach import bus
from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.state import desired

HERE = Path(__file__).parent
ACTORS = HERE / "actors"
ADMIN_TOKEN = "test-admin-token"
NODE_ID = "test-node-1"


# Ports handed to servers the tests start: below Linux's ephemeral range (32768+), so no outgoing
# connection can take one between its choice and the server's bind, and a range per xdist worker,
# so two workers never choose the same one (the kernel's port 0 gave both races: CI's test_tls).
_PORTS = range(20000, 32000)
_WORKERS = 8


def _port_numbers() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    share = len(_PORTS) // _WORKERS
    first = _PORTS.start + (int(worker) % _WORKERS if worker.isdigit() else 0) * share
    offset = (os.getpid() * 7919) % share  # (another run on this machine starts elsewhere in it)
    for i in itertools.count():  # (round and round: a port given long ago is free again by then)
        yield first + (offset + i) % share


_next_ports = _port_numbers()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, of this test process's own share (the next one it
    has not given lately)."""
    for port in itertools.islice(_next_ports, len(_PORTS) // _WORKERS):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
            return port
    raise RuntimeError(f"no free port in this worker's share of {_PORTS}")


def write_config(path: Path, nats_url: str, **extra: object) -> Path:
    """Write a beach config naming ``nats_url`` and the test actors' code directory."""
    raw = {"code_directory": str(ACTORS), "n_processes": 2, "admin_token": ADMIN_TOKEN,
           "actor_modules": ["beach_test_actors"], "nats": {"servers": [nats_url]},
           "code": {"cache": str(path.parent / "code-cache")}}  # the test's own, not ~/.cache
    raw.update(extra)
    path.write_text(yaml.safe_dump(raw))
    return path


@contextlib.contextmanager
def previous_release_node(client: Beach, like: str, node_id: str, **unsaid: object) -> Iterator[None]:
    """Node ``node_id`` in the registry while the block runs, as a node of the previous release:
    node ``like``'s entry with the fields ``unsaid`` says (what that release does not write: ``reads=[]``,
    ``indexed=False``), rewritten every second as that release's heartbeat (the liveness listeners keep
    it); removed at the end."""
    import msgspec

    from beach.state import directory
    from beach.wire import subjects

    session = client._core.session
    old = msgspec.structs.replace(session.view.nodes[like], id=node_id, **unsaid)
    stop = threading.Event()

    async def beating() -> None:
        while not stop.is_set():
            await directory.put_node(session.view.nodes_kv, msgspec.structs.replace(old, updated=time.time()))
            await asyncio.sleep(directory.HEARTBEAT)

    beat = client._runner.submit(beating())
    try:
        yield
    finally:
        stop.set()
        beat.result(10)
        client._runner.run(session.view.nodes_kv.delete(subjects.escape(node_id)))


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class NodeProcess:
    """A node agent started as ``python -m <module> CONFIG --node-id ID`` in a subprocess."""

    def __init__(self, config: Path, node_id: str, module: str = "beach.hostmanager", args: list[str] = ()) -> None:
        self.node_id = node_id
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(HERE / "modules"), os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen([sys.executable, "-m", module, str(config), "--node-id", node_id, *args],
                                        start_new_session=True, env=env)

    def wait_registered(self, client: Beach, timeout: float = 30.0) -> None:
        """Wait until this run of the node is in the registry: an entry its previous run left (the
        registry keeps a lost node's entry until the lease holder can write) does not count."""
        try:
            launched = psutil.Process(self.process.pid).create_time() - 1.0
        except psutil.NoSuchProcess:  # (it exited: said below)
            launched = 0.0

        def registered() -> bool:
            entry = client._core.session.view.nodes.get(self.node_id)
            return (entry is not None and entry.started >= launched) or self.process.poll() is not None

        wait_for(registered, timeout, what=f"node {self.node_id} to register")
        assert self.process.poll() is None, f"node {self.node_id} exited with {self.process.returncode}"

    def terminate(self, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A real nats-server with JetStream, shared by the whole session."""
    store = tmp_path_factory.mktemp("nats")
    server = EmbeddedServer(free_port(), str(store / "js"), name="beach-test",
                            log_file=str(store / "nats.log")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def config_path(nats_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A beach config for the session server, with an admin token."""
    return write_config(tmp_path_factory.mktemp("config") / "beach.yaml", nats_server.url)


@pytest.fixture(scope="session")
def node(config_path: Path) -> Iterator[NodeProcess]:
    """One node agent (2 shared actor hosts) for the session; SIGTERM at the end must exit 0."""
    node = NodeProcess(config_path, NODE_ID)
    try:
        with Beach(config_path) as client:
            node.wait_registered(client)
    except BaseException:  # a failed start must not leave the node running
        node.terminate()
        raise
    yield node
    assert node.terminate() == 0


@pytest.fixture
def beach(node: NodeProcess, config_path: Path) -> Iterator[Beach]:
    """A client of the session node; everything it started is flushed afterwards."""
    client = Beach(config_path, realm="global")
    yield client
    client._admin_token = ADMIN_TOKEN
    assert client.flush()
    client.close()


def holds_for(predicate, window: float, what: str, interval: float = 0.05) -> None:
    """Check that ``predicate`` stays truthy for ``window`` seconds (a negative check needs a stated
    window: nothing arriving *yet* proves nothing); fail the test naming ``what`` if it does not."""
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        if not predicate():
            pytest.fail(f"{what} stopped holding within {window}s")
        time.sleep(interval)


LEDGER = "beach_test_actors:Ledger"


def lease_holder(client: Beach) -> str | None:
    async def read() -> str | None:
        kv = await bus.open_desired(client._core.session.nc, client._core.session.config)
        current = await desired.get(kv, desired.LEASE_KEY, desired.LeaseRecord)
        return current[0].holder if current else None
    return client._runner.run(read())


def hand_lease_to(client: Beach, holder: str) -> None:
    """Make ``holder`` the lease holder (as if it had taken it), and wait until it renews it."""
    async def write() -> None:
        kv = await bus.open_desired(client._core.session.nc, client._core.session.config)
        while True:
            current = await desired.get(kv, desired.LEASE_KEY, desired.LeaseRecord)
            if current is None:
                await desired.put(kv, desired.LEASE_KEY, desired.LeaseRecord(holder=holder))
                return
            if await desired.update(kv, desired.LEASE_KEY, desired.LeaseRecord(holder=holder), current[1]) is not None:
                return
    client._runner.run(write())
    time.sleep(desired.LEASE_RENEW + 0.5)
    assert lease_holder(client) == holder


def ledger(client: Beach, uid: str) -> list[dict]:
    """What actor ``uid`` (a Ledger) has served: its records, oldest first."""
    resp = client.getActorHandle(f"_ACTORS/{uid}").request("ledger", timeout=10)
    assert resp.isSuccess, resp
    return resp.data["entries"]


def served(client: Beach, uids, tag: str) -> dict[str, int]:
    """How many requests tagged ``tag`` each of the Ledger actors ``uids`` served."""
    return {uid: sum(1 for e in ledger(client, uid) if e["tag"] == tag) for uid in uids}


class Load:
    """A steady request load in a thread, counting what happens to each request. A request that
    raises counts as failed (with its error); a thread that dies, hangs or sent too little fails
    the test in `stop`. Each request is first tried once, then (``retried``) with ``retries``
    retries; ``once``: one call with ``nRetries=retries``, nothing else."""

    def __init__(self, beach, category: str, retries: int = 2, timeout: float = 1.0, request: str = "ping",
                 once: bool = False) -> None:
        self.once = once
        self.handle = beach.getActorHandle(category)
        self.request = request
        self.counts = {"sent": 0, "succeeded": 0, "retried": 0, "failed": 0}
        self.attempts: dict[str, int] = {}  # tag → the most attempts its requests may have made
        self.calls: dict[str, int] = {}     # tag → how many request() calls (each keeps one id)
        self.errors: list[str] = []
        self.crashed: BaseException | None = None
        self.retries, self.timeout = retries, timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _request(self, retries: int):
        tag = f"load-{self.counts['sent']}"
        self.attempts[tag] = self.attempts.get(tag, 0) + 1 + retries
        self.calls[tag] = self.calls.get(tag, 0) + 1
        try:
            return self.handle.request(self.request, {"tag": tag}, timeout=self.timeout, nRetries=retries)
        except Exception as err:  # never silently: a raise is a failed request
            self.errors.append(f"raised {err!r}")
            return None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.counts["sent"] += 1
                resp = self._request(self.retries if self.once else 0)
                if not self.once and (resp is None or not resp.isSuccess):
                    self.counts["retried"] += 1
                    resp = self._request(self.retries)
                self.counts["succeeded" if resp is not None and resp.isSuccess else "failed"] += 1
                if resp is not None and not resp.isSuccess:
                    self.errors.append(resp.error)
                time.sleep(0.005)
        except BaseException as err:
            self.crashed = err

    def stop(self, minimum: int = 20) -> dict[str, int]:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), f"the load thread hangs after {self.counts}"
        assert self.crashed is None, f"the load thread died: {self.crashed!r}"
        assert self.counts["sent"] >= minimum, f"only {self.counts['sent']} requests sent: {self.counts}"
        assert self.counts["sent"] == self.counts["succeeded"] + self.counts["failed"]
        return self.counts
