"""Many nodes: three node agents on a 3-server NATS cluster (all on loopback), the spawn
strategies, health, isolation, local mode, nodes joining, leaving and dying."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from beach.beach_api import Beach
from beach.directory import NODE_TTL
from beach.embedded import EmbeddedServer
from beach.placement import Placer

from .conftest import NodeProcess, free_port, wait_for, write_config

NODES = ["node-a", "node-b", "node-c"]


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EmbeddedServer]]:
    """Three nats-servers with JetStream, routed into one cluster."""
    store = tmp_path_factory.mktemp("cluster")
    route_ports = [free_port() for _ in range(3)]
    routes = ",".join(f"nats-route://127.0.0.1:{p}" for p in route_ports)
    servers = [EmbeddedServer(free_port(), str(store / f"s{i}"), name=f"beach-s{i}",
                              log_file=str(store / f"s{i}.log"),
                              args=["--cluster_name", "beach-test", "--cluster", f"nats://127.0.0.1:{route_ports[i]}",
                                    "--routes", routes])
               for i in range(3)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def configs(nats_cluster, tmp_path_factory) -> list[Path]:
    """One config per node, each naming a different server as its only seed."""
    base = tmp_path_factory.mktemp("configs")
    return [write_config(base / f"{i}.yaml", server.url, n_processes=1) for i, server in enumerate(nats_cluster)]


@pytest.fixture(scope="module")
def nodes(configs) -> Iterator[dict[str, NodeProcess]]:
    started = {node_id: NodeProcess(configs[i], node_id) for i, node_id in enumerate(NODES)}
    try:
        with Beach(configs[0]) as client:
            for node in started.values():
                node.wait_registered(client, timeout=60)
        yield started
    finally:
        codes = {node_id: node.terminate() for node_id, node in started.items()}
        assert codes == {node_id: 0 for node_id in NODES}


@pytest.fixture
def beach(nodes, configs) -> Iterator[Beach]:
    client = Beach(configs[0])
    yield client
    assert client.flush()
    client.close()


def placements(beach, category: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for actor in beach._core.session.view.find("global", category):
        counts[actor["node"]] = counts.get(actor["node"], 0) + 1
    return counts


def test_cluster_registry_and_replicated_directory(beach):
    assert beach.getNodeCount() == 3
    assert sorted(beach.getClusterHealth()) == NODES

    async def replicas():
        js = beach._core.session.nc.jetstream()
        return [(await js.stream_info(s)).config.num_replicas for s in ("KV_beach_actors", "KV_beach_nodes")]

    assert beach._runner.run(replicas()) == [3, 3]


def test_health_figures_are_sane(beach):
    health = beach.getClusterHealth()
    for info in health.values():
        assert info["cores"] == psutil.cpu_count() == len(info["cpu"])
        assert all(0.0 <= c <= 100.0 for c in info["cpu"])
        assert info["mem_total"] == psutil.virtual_memory().total
        assert abs(info["mem"] - psutil.virtual_memory().percent) < 10
        assert info["hostname"] == socket.gethostname()
        assert "127.0.0.1" in info["addresses"]
    entry = beach._core.session.view.nodes["node-a"]
    assert len(entry["hosts"]) == 1 and all(psutil.pid_exists(h["pid"]) for h in entry["hosts"].values())


def test_random_and_roundrobin(beach):
    for _ in range(6):
        assert beach.addActor("Pong", "rr", strategy="roundrobin").isSuccess
    assert placements(beach, "rr") == {n: 2 for n in NODES}
    for _ in range(24):
        assert beach.addActor("Pong", "rand", strategy="random").isSuccess
    counts = placements(beach, "rand")
    assert sum(counts.values()) == 24 and set(counts) <= set(NODES) and len(counts) >= 2


def test_repulsion_sees_its_own_placements(beach):
    for _ in range(10):
        assert beach.addActor("Pong", "rep", strategy="repulsion").isSuccess
    assert sorted(placements(beach, "rep").values()) == [3, 3, 4]


def test_affinity_and_host_affinity(beach):
    anchor = beach.addActor("Pong", "anchor", strategy="host_affinity", strategy_hint="node-b")
    assert anchor.isSuccess and anchor.data["node"] == "node-b"
    for _ in range(5):
        assert beach.addActor("Pong", "follower", strategy="affinity", strategy_hint="anchor").isSuccess
    assert placements(beach, "follower") == {"node-b": 5}
    # by hostname: every node of this machine fits
    assert beach.addActor("Pong", "byhost", strategy="host_affinity", strategy_hint=socket.gethostname()).isSuccess
    resp = beach.addActor("Pong", "nowhere", strategy="host_affinity", strategy_hint="no-such-node")
    assert not resp.isSuccess and "no node matches host_affinity hint 'no-such-node'" in resp.error


def test_resource_strategy():
    nodes = {"busy": {"cpu": [90.0, 80.0], "mem": 70.0}, "idle": {"cpu": [5.0, 15.0], "mem": 30.0},
             "mid": {"cpu": [50.0, 50.0], "mem": 10.0}}
    assert Placer().choose("resource", None, nodes, [], ["x"]) == "idle"


def test_resource_strategy_live(beach):
    resp = beach.addActor("Pong", "res", strategy="resource")
    assert resp.isSuccess and resp.data["node"] in NODES


def test_isolated_actor_killed_leaves_the_others(beach, tmp_path):
    shared = beach.addActor("Pong", "iso/shared", strategy="host_affinity", strategy_hint="node-a")
    isolated = beach.addActor("DeinitMarker", "iso/alone", strategy="host_affinity", strategy_hint="node-a",
                              isIsolated=True, parameters={"path": str(tmp_path / "m")})
    assert shared.isSuccess and isolated.isSuccess
    pid = beach.getActorHandle("iso/alone").request("pid").data["pid"]
    assert pid != beach._core.session.view.actors[shared.data["uid"]]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: beach.getActorHandle("iso/alone").getNumAvailable() == 0, 5, what="dead actor to leave")
    resp = beach.getActorHandle("iso/alone").request("pid", timeout=5)
    assert not resp.isSuccess and "no actor available" in resp.error
    assert beach.getActorHandle("iso/shared").request("ping").isSuccess
    assert beach.getActorHandle("iso").getNumAvailable() == 1


def test_local_mode_prefers_the_callers_node(beach):
    pongs = {}
    for node in NODES:
        resp = beach.addActor("Pong", "loc/pongers", strategy="host_affinity", strategy_hint=node)
        pongs[resp.data["uid"]] = node
    assert beach.addActor("Relay", "loc/relay", strategy="host_affinity", strategy_hint="node-b").isSuccess
    relay = beach.getActorHandle("loc/relay")
    local = relay.request("spread", {"category": "loc/pongers", "n": 20}, timeout=30)
    assert local.isSuccess, local
    assert {pongs[u] for u in local.data["uids"]} == {"node-b"}
    spread = relay.request("spread", {"category": "loc/pongers", "n": 40, "options": {"mode": "random"}}, timeout=30)
    assert len({pongs[u] for u in spread.data["uids"]}) >= 2
    # from a client (no node) local falls back to random
    uids = {beach.getActorHandle("loc/pongers", mode="local").request("ping").data["uid"] for _ in range(30)}
    assert len(uids) >= 2


def test_categories_change_cluster_wide(beach, configs):
    a1 = beach.addActor("MultiPing", ["cw/one"], strategy="host_affinity", strategy_hint="node-c")
    with Beach(configs[1]) as other:
        assert beach.addToCategory(a1.data["uid"], "cw/two")
        wait_for(lambda: other.getActorHandle("cw/two").getNumAvailable() == 1, 2, what="other client to see it")
        assert other.getActorHandle("cw/two").request("oob").data == {"cmdresult": 42}
        assert other.removeFromCategory(a1.data["uid"], "cw/one")
        wait_for(lambda: beach.getActorHandle("cw/one").getNumAvailable() == 0, 2, what="removal to show")
    mtd = beach.getAllNodeMetadata()
    assert sorted(mtd) == NODES
    assert mtd["node-c"]["data"]["mtd"][a1.data["uid"]]["categories"] == ["cw/two"]


def test_node_joins_and_leaves(beach, configs, tmp_path):
    for _ in range(3):
        assert beach.addActor("Pong", "join", strategy="repulsion").isSuccess
    assert placements(beach, "join") == {n: 1 for n in NODES}
    late = NodeProcess(configs[2], "node-late")
    try:
        late.wait_registered(beach, timeout=60)
        assert beach.getNodeCount() == 4
        marker = tmp_path / "late-deinit"
        resp = beach.addActor("DeinitMarker", "join", strategy="repulsion", parameters={"path": str(marker)})
        assert resp.isSuccess and resp.data["node"] == "node-late"
        handle = beach.getActorHandle("join")
        assert handle.getNumAvailable() == 4
        assert late.terminate() == 0
        assert marker.read_text() == resp.data["uid"]
        wait_for(lambda: beach.getNodeCount() == 3, 5, what="the node to leave the registry")
        assert handle.getNumAvailable() == 3
        assert all(handle.request("ping").isSuccess for _ in range(10))
    finally:
        late.terminate()


def test_killed_node_disappears_by_itself(beach, configs):
    doomed = NodeProcess(configs[1], "node-doomed")
    try:
        doomed.wait_registered(beach, timeout=60)
        resp = beach.addActor("Pong", "doomed", strategy="host_affinity", strategy_hint="node-doomed")
        assert resp.isSuccess
        hosts = [h["pid"] for h in beach._core.session.view.nodes["node-doomed"]["hosts"].values()]
        doomed.process.kill()  # SIGKILL: no goodbye
        doomed.process.wait()
        wait_for(lambda: "node-doomed" not in beach._core.session.view.nodes, NODE_TTL + 3,
                 what=f"the dead node's entry to expire (TTL {NODE_TTL}s)")
        assert beach.getActorHandle("doomed").getNumAvailable() == 0
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                 for p in hosts), 5, what="its actor hosts to exit")
        assert beach.getNodeCount() == 3
    finally:
        doomed.terminate()


