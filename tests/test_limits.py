"""No input takes a beach process down, and no process lives on deaf.

Names past the NATS server's limits (a 5,000-character category) are a clear error at the caller —
in the library, a tool and inside an actor — and the connection that would have carried them
stays up (the REST bridge's case is in test_restbridge.py). A process whose connection the server
closes for good says so and does not linger: an actor host exits and its node reports it and
replaces it, a client raises `ClosedError` naming the server's reason, and a node agent, the REST
bridge, the dashboard and ``beach logs --follow`` exit non-zero (the console: test_console.py).
The faults are real: an over-long line sent the raw nats-py way (the server closes the
connection), or an ``-ERR`` injected into the server's stream by a TCP proxy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats.aio.client
import psutil
import pytest

from beach import bus, wire
from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.errors import CategoryError, ClosedError, UsageError
from beach.wire import subjects

from .conftest import NodeProcess, free_port, wait_for, write_config

LONG = "a" * 5000
LIMIT_WORDS = "max_control_line of 4096 bytes"


def test_a_5000_character_category_is_a_clear_error_in_the_library(beach: Beach) -> None:
    for make in (lambda: beach.getActorHandle(LONG), lambda: beach.getActorHandle(f"ok/{LONG}/x"),
                 lambda: beach.getActorHandle(f"_ACTORS/{LONG}"), lambda: beach.getActorHandleGroup(LONG),
                 lambda: beach.addActor("Pong", LONG), lambda: beach.addActor("Pong", ["fine", LONG])):
        with pytest.raises(CategoryError) as raised:
            make()
        assert LIMIT_WORDS in str(raised.value) and "characters) is too long" in str(raised.value), raised.value
    # what fits still works, right up to the limit: a category of 3,800 characters
    near = "b" * (subjects.MAX_SUBJECT - len("beach.r.global."))
    assert beach.addActor("Pong", near).isSuccess
    assert beach.getActorHandle(near).request("ping", timeout=10).isSuccess
    # a subject made by hand is refused by the client before it reaches the server, which keeps the connection
    session = beach._core.session

    async def raw_publish() -> None:
        await session.nc.publish("x" * 5000, b"")

    with pytest.raises(UsageError, match="max_control_line"):
        session.runner.run(raw_publish())
    assert session.nc.is_connected and beach.getActorHandle(near).request("ping", timeout=10).isSuccess


def test_a_5000_character_category_is_a_clear_error_in_a_tool(beach: Beach, config_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "beach.cli", "request", str(config_path), LONG, "ping"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert result.stderr.startswith("beach: category 'aaaa") and LIMIT_WORDS in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_5000_character_category_from_inside_an_actor_leaves_its_host_serving(beach: Beach) -> None:
    relay = beach.addActor("Relay", "limits/relay")
    assert relay.isSuccess
    host = relay.data["host"]
    # neighbours, one at least on the same shared host (the whole host went deaf before)
    neighbours = []
    while not any(n.data["host"] == host for n in neighbours) and len(neighbours) < 12:
        neighbours.append(beach.addActor("Pong", "limits/pong"))
        assert neighbours[-1].isSuccess
    assert any(n.data["host"] == host for n in neighbours)
    response = beach.getActorHandle("limits/relay").request("relay", data={"category": LONG}, timeout=10)
    assert not response.isSuccess and response.failure == wire.Failure.EXCEPTION
    assert response.error.startswith("exception: beach.errors.CategoryError: category 'aaaa")
    assert LIMIT_WORDS in response.error
    # the host still serves: the relay itself, and every actor next to it, for as long as we look
    for _ in range(5):
        inner = beach.getActorHandle("limits/relay").request("relay", data={"category": "limits/pong"}, timeout=10)
        assert inner.isSuccess, inner
        for neighbour in neighbours:
            assert beach.getActorHandle(f"_ACTORS/{neighbour.data['uid']}").request("ping", timeout=10).isSuccess
        time.sleep(0.2)
    assert relay.data["uid"] in beach.getDirectory()["reverse"]


# ---------------------------------------------------------------------------- a connection closed for good


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[tuple[EmbeddedServer, Path]]:
    """A nats-server of the test's own (its faults must not reach the session's)."""
    server = EmbeddedServer(free_port(), str(tmp_path / "js"), log_file=str(tmp_path / "nats.log")).start()
    try:
        yield server, write_config(tmp_path / "beach.yaml", server.url, n_processes=1)
    finally:
        server.stop()


def test_a_host_whose_connection_the_server_closes_exits_and_its_node_reports_it(
        own_cluster: tuple[EmbeddedServer, Path]) -> None:
    server, config = own_cluster
    node = NodeProcess(config, "limits-node", module="nodeagent")
    try:
        with Beach(config) as client:
            node.wait_registered(client)
            saboteur = client.addActor("Saboteur", "limits/saboteur")
            pong = client.addActor("Pong", "limits/pong")
            assert saboteur.isSuccess and pong.isSuccess
            assert saboteur.data["host"] == pong.data["host"], "one shared host (n_processes: 1)"
            view = client._core.session.view
            pid = view.actors[saboteur.data["uid"]].pid
            host = psutil.Process(pid)
            started = time.monotonic()
            # the server closes the host's connection ("maximum control line exceeded")
            assert client.getActorHandle("limits/saboteur").shoot("protocol_error")
            host.wait(15)  # it exits (psutil.TimeoutExpired if not); its code, for its node, is in the report below
            exited = time.monotonic() - started
            # its actors leave the directory, as after a crash, and the node replaces the host
            wait_for(lambda: not {saboteur.data["uid"], pong.data["uid"]} & set(view.actors), 15,
                     what="the lost host's actors to leave the directory")
            hosts = lambda: view.nodes["limits-node"].hosts if "limits-node" in view.nodes else {}  # noqa: E731
            wait_for(lambda: hosts() and pong.data["host"] not in hosts(), 30, what="the host to be replaced")
            again = client.addActor("Pong", "limits/pong")
            assert again.isSuccess and again.data["host"] != pong.data["host"]
            assert client.getActorHandle("limits/pong").request("ping", timeout=10).isSuccess
            print(f"\nthe host exited {exited:.2f}s after the request that broke its connection was sent")
        # the node reported it, in the cluster's logs (beach logs --system)
        logs = subprocess.run([sys.executable, "-m", "beach.cli", "logs", str(config), "--system", "--json"],
                              capture_output=True, text=True, timeout=60)
        lines = [json.loads(line)["msg"] for line in logs.stdout.splitlines()]
        host_id = saboteur.data["host"]
        assert any(host_id in msg and "closed its connection for good" in msg for msg in lines), lines
        assert node.terminate() == 0
    finally:
        node.terminate()


def test_a_client_whose_connection_the_server_closes_raises_closed_error_naming_why(
        own_cluster: tuple[EmbeddedServer, Path]) -> None:
    server, config = own_cluster
    with Beach(config) as client:
        session = client._core.session
        handle = client.getActorHandle("limits/nobody")
        waiting = handle.request("ping", timeout=30, nRetries=20, isWithFuture=True)  # in flight meanwhile

        async def protocol_error() -> None:  # the raw nats-py way: beach's client would refuse it
            await nats.aio.client.Client.publish(session.nc, "x" * 5000, b"")

        started = time.monotonic()
        session.runner.run(protocol_error())
        wait_for(lambda: session.lost is not None, 10, what="the client to learn its connection is gone")
        assert "maximum control line exceeded" in session.lost.lower()
        with pytest.raises(ClosedError, match="(?i)closed it for good.*maximum control line exceeded"):
            handle.request("ping", timeout=5)
        assert waiting.waitForResults(10), "the request in flight ends at once, not after its 20 retries"
        assert "maximum control line exceeded" in waiting.getNewResults()[0].error.lower()
        assert time.monotonic() - started < 10


class Proxy:
    """A TCP proxy from a port of 127.0.0.1 to a NATS server, which can slip protocol lines into what
    the server sends to its clients (an injected protocol error, as a broken server or network would)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.writers: list[asyncio.StreamWriter] = []
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def accepted(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self.writers.append(client_writer)
            await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

        async def serve() -> None:
            self.server = await asyncio.start_server(accepted, "127.0.0.1", self.port)
            ready.set()

        self.loop.run_until_complete(serve())
        self.loop.run_forever()

    def inject(self, line: bytes) -> None:
        """Send ``line`` to every client connected through the proxy, as if from the server."""
        def write() -> None:
            for writer in self.writers:
                writer.write(line)
        self.loop.call_soon_threadsafe(write)

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for writer in self.writers:
                writer.close()
            await asyncio.sleep(0.1)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self.loop)
        self.thread.join(5)
        self.loop.close()


def test_a_node_the_bridge_and_the_dashboard_exit_when_the_server_closes_their_connection(
        own_cluster: tuple[EmbeddedServer, Path], tmp_path: Path) -> None:
    server, direct = own_cluster
    proxy = Proxy(server.port)
    config = write_config(tmp_path / "proxied.yaml", proxy.url, n_processes=1)
    ports = {"bridge": free_port(), "dashboard": free_port()}
    commands = {"bridge": ["beach.restbridge", str(ports["bridge"]), str(config), "global"],
                "dashboard": ["beach.dashboard", str(config), "--port", str(ports["dashboard"])],
                "node": ["nodeagent", str(config), "--node-id", "proxied-node"]}
    health = {"bridge": "/healthz", "dashboard": "/api/cluster"}
    processes = {name: subprocess.Popen([sys.executable, "-m", *command], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
                 for name, command in commands.items()}
    try:
        import httpx

        def up(name: str) -> bool:
            assert processes[name].poll() is None, processes[name].communicate()
            try:
                return httpx.get(f"http://127.0.0.1:{ports[name]}{health[name]}", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        for name in health:
            wait_for(lambda name=name: up(name), 30, 0.1, what=f"the {name} to serve")
        with Beach(direct) as client:
            wait_for(lambda: "proxied-node" in client._core.session.view.nodes, 30, what="the node to register")
        # (once the node has made the log stream)
        processes["logs"] = subprocess.Popen([sys.executable, "-m", "beach.cli", "logs", str(config), "--follow",
                                              "--system"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # the bridge, the dashboard, the node agent, its host and beach logs --follow
        wait_for(lambda: len(proxy.writers) >= 5, 30, what="every process to be connected through the proxy")
        time.sleep(2)  # beach logs past its start-up, following
        proxy.inject(b"-ERR 'Unknown Protocol Operation'\r\n")
        for name, process in processes.items():
            code = process.wait(40)
            stderr = process.communicate()[1]
            assert code == 1, (name, code, stderr)
            assert "closed" in stderr and "for good (unknown protocol operation)" in stderr.lower(), stderr
            # (the node's stderr is its host's too: a host told to stop by its agent while its own connection
            # is being closed may see nats-py's drain cancelled, which asyncio logs with a traceback)
            assert name == "node" or "Traceback" not in stderr, stderr
        for name in health:  # nothing listens: a health check fails
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{ports[name]}{health[name]}", timeout=2)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        proxy.close()


def test_every_subject_beach_makes_is_checked_for_length() -> None:
    for build in (lambda: subjects.request_subject("global", LONG), lambda: subjects.broadcast_subject("g", LONG),
                  lambda: subjects.actor_subject("global", LONG), lambda: subjects.node_subject(LONG, "spawn"),
                  lambda: subjects.host_subject(LONG, "spawn"), lambda: subjects.actor_key("global", LONG),
                  lambda: subjects.routable("global", LONG)):
        with pytest.raises(CategoryError, match=LIMIT_WORDS):
            build()
    # an escaped name grows (each byte outside [A-Za-z0-9_-] is three): the check is on the subject
    with pytest.raises(CategoryError):
        subjects.request_subject("global", "é" * 700)
    assert subjects.request_subject("global", "é" * 300)
    with pytest.raises(UsageError, match="max_control_line"):
        subjects.check_line("x" * 4080, "_INBOX.abc.def")
    subjects.check_line("x" * 3800, "_INBOX." + "y" * 200)
    assert bus.BusClient.publish is not nats.aio.client.Client.publish
