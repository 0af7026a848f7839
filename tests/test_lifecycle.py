"""Processes: SIGTERM shutdown, `beach up` with the seed's examples, a dead NATS server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.errors import BusError
from beach.state.directory import FAILURE_DETECTION

from .conftest import NodeProcess, free_port, holds_for, wait_for, write_config

REPO = Path(__file__).parent.parent


def test_sigterm_runs_every_deinit_and_exits_0(nats_server, tmp_path):
    config = write_config(tmp_path / "beach.yaml", nats_server.url)
    node = NodeProcess(config, "sigterm-node", module="nodeagent")
    try:
        with Beach(config) as client:
            node.wait_registered(client)
            markers = [tmp_path / f"deinit-{i}" for i in range(3)]
            for i, marker in enumerate(markers):
                resp = client.addActor("DeinitMarker", "markers", strategy="host_affinity",
                                       strategy_hint="sigterm-node", isIsolated=(i == 2),
                                       parameters={"path": str(marker)})
                assert resp.isSuccess, resp
                assert resp.data["node"] == "sigterm-node"
            uids = set(client.getDirectory()["realms"]["global"]["markers"])
            assert len(uids) == 3
            assert all(client.getActorHandle("_ACTORS/" + uid).request("pid").isSuccess for uid in uids)
            assert not any(m.exists() for m in markers)
            assert node.terminate() == 0
            assert {m.read_text() for m in markers if m.exists()} == uids, "every actor's deinit ran"
            # the node left the registry and took its actors with it
            wait_for(lambda: "sigterm-node" not in client._core.session.view.nodes, 10, what="node to leave")
            assert client.getActorHandle("markers").getNumAvailable() == 0
    finally:
        node.terminate()


def test_a_call_to_a_node_that_dies_fails_when_it_leaves_not_after_the_timeout(nats_server, tmp_path):
    config = write_config(tmp_path / "beach.yaml", nats_server.url, n_processes=1)
    node = NodeProcess(config, "dying-node", module="nodeagent")
    try:
        with Beach(config) as client:
            node.wait_registered(client)
            here = dict(strategy="host_affinity", strategy_hint="dying-node")  # other tests' nodes may be up
            survivor = client.addActor("Pong", "pongs", **here)
            assert survivor.isSuccess, survivor
            outcome: list = []
            spawn = threading.Thread(target=lambda: outcome.append(
                client.addActor("Sleeper", "slow-init", parameters={"init_seconds": 120}, timeout=120, **here)),
                daemon=True)
            spawn.start()
            time.sleep(1.0)  # the spawn is in the node's hands, waiting on init()
            os.killpg(node.process.pid, signal.SIGKILL)
            started = time.monotonic()
            spawn.join(FAILURE_DETECTION + 4)  # docs/operations.md: a call to a node that dies ends within the TTL
            if spawn.is_alive():
                view = client._core.session.view


                async def stored_nodes():
                    try:
                        return await view.nodes_kv.keys()
                    except Exception as err:  # NoKeysError when it is empty
                        return repr(err)

                stored = client._runner.run(stored_nodes())
                pytest.fail(f"addActor still waits for a node that died; the view's nodes: {list(view.nodes)}, "
                            f"the bucket's: {stored}, pending departures: {view._departures}")
            print(f"addActor failed {time.monotonic() - started:.1f}s after the node died")
            assert time.monotonic() - started <= FAILURE_DETECTION + 2
            assert not outcome[0].isSuccess
            assert "dying-node left the cluster" in outcome[0].error
            # stopping an actor of the dead node: nothing to do, and no error
            stopped = client.stopActors(withId=survivor.data["uid"])
            assert stopped.isSuccess, stopped
            assert stopped.data["not_found"] == [survivor.data["uid"]]
    finally:
        node.terminate()


def test_a_node_stops_within_bounds_when_nats_is_gone(tmp_path):
    server = EmbeddedServer(free_port(), str(tmp_path / "state")).start()
    config = write_config(tmp_path / "beach.yaml", server.url, n_processes=2)
    node = NodeProcess(config, "stranded-node", module="nodeagent")
    try:
        with Beach(config) as client:
            node.wait_registered(client)
            for i in range(10):
                assert client.addActor("Pong", f"pongs/{i}").isSuccess
            server.kill()
            time.sleep(1.0)  # everyone is reconnecting now
            started = time.monotonic()
            assert node.terminate(60) == 0
            print(f"the node agent stopped {time.monotonic() - started:.1f}s after SIGTERM, without NATS")
            assert time.monotonic() - started < 5, "docs/operations.md: 0.4 s measured, no wait per write"
            started = time.monotonic()
        assert time.monotonic() - started < 15, "closing a client of a dead server took too long"
    finally:
        node.terminate()
        server.stop()


def test_with_nats_gone_requests_fail_cleanly_and_never_raise_nats_errors(tmp_path):
    server = EmbeddedServer(free_port(), str(tmp_path / "state")).start()
    config = write_config(tmp_path / "beach.yaml", server.url)
    try:
        with Beach(config) as client:
            handle = client.getActorHandle("anyone")
            server.kill()
            time.sleep(0.5)  # the client is reconnecting: what it sends waits in nats-py's 2 MB buffer
            big = b"x" * 700_000
            errors = [handle.request("echo", big, timeout=0.5).error for _ in range(5)]
            print("requests while NATS is gone:", errors)
            assert errors[0] == "timeout"  # buffered, never answered
            assert errors[-1].startswith("bus unavailable: ") and "buffer" in errors[-1]  # the buffer is full
            with pytest.raises(BusError, match="cannot publish"):
                handle.shoot("echo", big)  # not "sent": nothing could take it
    finally:
        server.stop()


class Example:
    """An example directory copied to ``tmp_path`` with its own port, run with ``beach up --run``."""

    def __init__(self, tmp_path: Path, name: str, config: str, *scripts: str,
                 extra: dict[str, str] | None = None) -> None:
        self.dir = tmp_path / name
        shutil.copytree(REPO / "examples" / name, self.dir)
        for file, text in (extra or {}).items():
            (self.dir / file).write_text(text)
        raw = yaml.safe_load((self.dir / config).read_text())
        raw["nats"]["port"] = free_port()  # the test's own ports, not the example's
        raw["nats"]["cluster_port"] = 0
        raw["nats"]["store_dir"] = str(tmp_path / "state")
        (self.dir / config).write_text(yaml.safe_dump(raw))
        self.log = tmp_path / "up.log"
        with open(self.log, "wb") as out:
            runs = [arg for script in scripts for arg in ("--run", str(self.dir / script))]
            self.up = subprocess.Popen([sys.executable, "-m", "beach.cli", "up", str(self.dir / config), *runs],
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text()

    def wait_for_output(self, needle: str, timeout: float = 60) -> None:
        wait_for(lambda: needle in self.text() or self.up.poll() is not None, timeout, 0.2, what=repr(needle))
        assert self.up.poll() is None, self.text()

    def interrupt(self) -> int:
        self.up.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            return self.up.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"beach up did not stop within 60 s of Ctrl-C; its log:\n{self.text()}")

    def kill(self) -> None:
        if self.up.poll() is None:
            os.killpg(self.up.pid, signal.SIGKILL)
            self.up.wait()


def test_seed_examples_run_unchanged_under_beach_up(tmp_path):
    example = Example(tmp_path, "multinode", "multinode.yaml", "start.py")
    try:
        for name in ("start.py", "global/Ping.py", "global/Pong.py"):
            assert (example.dir / name).read_bytes() == (REPO / "examples" / "multinode" / name).read_bytes()
        example.wait_for_output("Received pong: ActorResponse( isSuccess: True")
        query = subprocess.run([sys.executable, str(example.dir / "query.py")], capture_output=True, timeout=60)
        assert query.returncode == 0, query.stderr
        assert "Received ping: ActorRequest" in example.text()
        assert example.interrupt() == 0
        assert example.text().count("Called deinit of actor.") == 2
    finally:
        example.kill()


def test_async_example(tmp_path):
    example = Example(tmp_path, "async_actors", "async.yaml", "run.py")
    try:
        example.wait_for_output("of 100 concurrent gets succeeded")
        text = example.text()
        assert "isSuccess: True, isTimedOut: False, error: , data: {'key': 'answer', 'value': 42}" in text
        assert "error: no such key" in text
        assert "100 of 100 concurrent gets succeeded" in text
        example.wait_for_output("run.py exited with code 0")
        assert example.interrupt() == 0
    finally:
        example.kill()


HANGING_SCRIPT = """
import asyncio, os
from beach import AsyncBeach

async def main():
    beach = await AsyncBeach.open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "async.yaml"))
    print("hanging as", os.getpid(), flush=True)
    await asyncio.sleep(600)  # connected, never closing: Ctrl-C must not wait for it

asyncio.run(main())
"""


def test_ctrl_c_stops_beach_up_while_a_script_still_runs(tmp_path):
    example = Example(tmp_path, "async_actors", "async.yaml", "hang.py", extra={"hang.py": HANGING_SCRIPT})
    try:
        example.wait_for_output("hanging as")
        pid = int(example.text().split("hanging as", 1)[1].split()[0])
        started = time.monotonic()
        assert example.interrupt() == 0
        assert time.monotonic() - started < 30, "beach up stopped, but slowly"
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        example.kill()


def test_dead_nats_server_is_a_clear_error(tmp_path):
    config = write_config(tmp_path / "beach.yaml", f"nats://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BusError, match="cannot connect to NATS at nats://127.0.0.1"):
        Beach(config)
    assert time.monotonic() - started < 30


def test_nats_without_jetstream_is_a_clear_error(tmp_path):
    from beach.bus.embedded import EmbeddedServer

    with EmbeddedServer(free_port(), jetstream=False, log_file=str(tmp_path / "nats.log")) as server:
        config = write_config(tmp_path / "beach.yaml", server.url)
        started = time.monotonic()
        with pytest.raises(BusError, match="JetStream is not enabled"):
            Beach(config)
        assert time.monotonic() - started < 10


def test_bad_config_stops_the_node_with_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("n_processes: two\n")
    result = subprocess.run([sys.executable, "-m", "nodeagent", str(path)], capture_output=True, timeout=60)
    assert result.returncode == 2
    assert b"'n_processes' must be a whole number, not a string" in result.stderr


def test_spawn_arguments_that_are_not_numbers_are_named(beach):
    from beach.errors import UsageError

    for bad in ({"time_to_drain": "soon", "is_drainable": True}, {"timeout": -3}, {"n_concurrent": "lots"},
                {"max_concurrent": 0}):
        with pytest.raises(UsageError, match=f"addActor: '{next(iter(bad))}' must be"):
            beach.addActor("Pong", "badargs", **bad)


def test_an_actor_that_stops_itself_in_init_never_comes_up(beach):
    resp = beach.addActor("InitStopper", "init-stoppers")
    assert not resp.isSuccess and resp.error == "actor 'InitStopper' stopped itself during init()", resp
    assert beach.getActorHandle("init-stoppers").getNumAvailable() == 0


def test_a_failed_isolated_spawn_leaves_no_process_behind(beach, node):
    def isolated_hosts() -> set[int]:
        pids = set()
        for child in psutil.Process(node.process.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "--isolated" in child.cmdline():
                    pids.add(child.pid)
            except psutil.Error:  # exited (or became a zombie) while we looked: not running
                pass
        return pids

    before = isolated_hosts()
    resp = beach.addActor("NoSuchActorAnywhere", "ghosts", isIsolated=True)
    assert not resp.isSuccess
    wait_for(lambda: isolated_hosts() == before, 10, 0.2, what="the isolated host made for it to exit")


def test_a_deinit_that_hangs_does_not_hang_the_stop(beach):
    resp = beach.addActor("DeinitHang", "hanging-deinit")
    assert resp.isSuccess, resp
    started = time.monotonic()
    stopped = beach.stopActors(withId=resp.data["uid"])
    print(f"stopActors returned after {time.monotonic() - started:.1f}s")
    assert stopped.isSuccess and stopped.data["stopped"] == [resp.data["uid"]], stopped
    assert time.monotonic() - started < 20


def test_a_spawn_whose_answer_cannot_be_sent_does_not_leave_the_actor_running(beach):
    # Parameters just small enough for the request and just too large for the host's answer
    # (which carries the directory entry): the window is some tens of bytes wide (the node's request
    # to the host is signed for the admin token), so probe it.
    limit = beach._core.session.nc.max_payload
    for margin in range(200, 700, 8):
        resp = beach.addActor("Pong", "too-big-to-answer", parameters={"blob": b"x" * (limit - margin)})
        if resp.isSuccess:  # the answer fitted after all: not this size
            assert beach.stopActors(withId=resp.data["uid"]).isSuccess
        elif "too large" in resp.error:
            break
    else:
        pytest.fail("no parameter size made the host's answer too large")
    print(f"answer too large with parameters {margin} bytes under max_payload: {resp.error}")
    handle = beach.getActorHandle("too-big-to-answer")
    wait_for(lambda: handle.getNumAvailable() == 0, 10, what="the actor nobody was told about to go")
    holds_for(lambda: handle.getNumAvailable() == 0, 1.5, "the actor staying gone")


def test_sighup_stops_the_node_gracefully_and_legacy_keys_are_named_once(nats_server, tmp_path):
    config = write_config(tmp_path / "beach.yaml", nats_server.url, n_processes=2, ops_port=4999,
                          port_range_start=5000, directory_sync_seconds=60)
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        node = subprocess.Popen([sys.executable, "-m", "nodeagent", str(config), "--node-id", "hup-node"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with Beach(config) as client:
            wait_for(lambda: "hup-node" in client._core.session.view.nodes, 30, what="the node to register")
            marker = tmp_path / "deinit"
            resp = client.addActor("DeinitMarker", "hup", strategy="host_affinity", strategy_hint="hup-node",
                                   parameters={"path": str(marker)})
            assert resp.isSuccess, resp
            node.send_signal(signal.SIGHUP)  # the terminal it ran in closed
            assert node.wait(40) == 0
            assert marker.read_text() == resp.data["uid"], "the actor's deinit ran"
        ignored = [line for line in log.read_text().splitlines() if "ignored" in line]
        assert len(ignored) == 1, ignored  # the agent says it once; its two hosts say nothing
        assert all(f"'{key}'" in ignored[0] for key in ("ops_port", "port_range_start", "directory_sync_seconds"))
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
