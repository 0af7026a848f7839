"""Processes: SIGTERM shutdown, `beach up` with the seed's examples, a dead NATS server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from beach.beach_api import Beach
from beach.errors import BusError

from .conftest import NodeProcess, free_port, wait_for, write_config

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
            wait_for(lambda: "sigterm-node" not in client._core.session.view.nodes, 5, what="node to leave")
            assert client.getActorHandle("markers").getNumAvailable() == 0
    finally:
        node.terminate()


def test_seed_examples_run_unchanged_under_beach_up(tmp_path):
    example = tmp_path / "multinode"
    shutil.copytree(REPO / "examples" / "multinode", example)
    raw = yaml.safe_load((example / "multinode.yaml").read_text())
    raw["nats"]["port"] = free_port()  # the test's own port, not the default 4222
    raw["nats"]["store_dir"] = str(tmp_path / "state")
    (example / "multinode.yaml").write_text(yaml.safe_dump(raw))
    for name in ("start.py", "global/Ping.py", "global/Pong.py"):
        assert (example / name).read_bytes() == (REPO / "examples" / "multinode" / name).read_bytes()
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "beach.cli", "up", str(example / "multinode.yaml"),
                               "--run", str(example / "start.py")], stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_for(lambda: b"Received pong: ActorResponse( isSuccess: True" in log.read_bytes() or up.poll() is not None,
                 60, 0.2, what="Ping to receive a pong")
        assert up.poll() is None, log.read_text()
        query = subprocess.run([sys.executable, str(example / "query.py")], capture_output=True, timeout=60)
        assert query.returncode == 0, query.stderr
        assert b"Received ping: ActorRequest" in log.read_bytes()
        up.send_signal(signal.SIGINT)  # Ctrl-C
        assert up.wait(60) == 0
        text = log.read_text()
        assert text.count("Called deinit of actor.") == 2
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def test_dead_nats_server_is_a_clear_error(tmp_path):
    config = write_config(tmp_path / "beach.yaml", f"nats://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BusError, match="cannot connect to NATS at nats://127.0.0.1"):
        Beach(config)
    assert time.monotonic() - started < 30


def test_bad_config_stops_the_node_with_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("n_processes: two\n")
    result = subprocess.run([sys.executable, "-m", "nodeagent", str(path)], capture_output=True, timeout=60)
    assert result.returncode == 2
    assert b"'n_processes' must be int" in result.stderr
