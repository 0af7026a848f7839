"""Many nodes: three node agents on a 3-server NATS cluster (all on loopback), the spawn
strategies, health, isolation, local mode, nodes joining, leaving and dying."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.errors import BusError, UsageError
from beach.state.directory import FAILURE_DETECTION, LATE
from beach.state.placement import PlacementError, Placer
from beach.state.records import NodeEntry
from nodeagent.cleanup import ORPHAN_CHECK, ORPHAN_GRACE

from .conftest import LEDGER, Load, NodeProcess, free_port, holds_for, ledger, wait_for, write_config

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
    # each test starts from the cluster's three nodes: one an earlier test killed may still be expiring
    view = client._core.session.view
    deadline = time.monotonic() + FAILURE_DETECTION + 6
    while set(view.nodes) != set(NODES):
        if time.monotonic() > deadline:
            pytest.fail(f"the registry holds {sorted(view.nodes)}, not the cluster's three nodes only")
        time.sleep(0.05)
    yield client
    assert client.flush()
    client.close()


def placements(beach, category: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for actor in beach._core.session.view.find("global", category):
        counts[actor.node] = counts.get(actor.node, 0) + 1
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
    assert set(health) == set(NODES)  # (an empty answer would pass every check below)
    for info in health.values():
        assert info["cores"] == psutil.cpu_count() == len(info["cpu"])
        assert all(0.0 <= c <= 100.0 for c in info["cpu"])
        assert info["mem_total"] == psutil.virtual_memory().total
        assert abs(info["mem"] - psutil.virtual_memory().percent) < 10
        assert info["hostname"] == socket.gethostname()
        assert "127.0.0.1" in info["addresses"]
    entry = beach._core.session.view.nodes["node-a"]
    assert len(entry.hosts) == 1 and all(psutil.pid_exists(h["pid"]) for h in entry.hosts.values())


def test_random_and_roundrobin(beach):
    for _ in range(6):
        assert beach.addActor("Pong", "rr", strategy="roundrobin").isSuccess
    assert placements(beach, "rr") == {n: 2 for n in NODES}
    for _ in range(24):
        assert beach.addActor("Pong", "rand", strategy="random").isSuccess
    counts = placements(beach, "rand")
    assert sum(counts.values()) == 24 and set(counts) <= set(NODES) and len(counts) >= 2
    # strategy=None is the default, random (the seed's scripts pass it); '' is refused, naming it
    assert beach.addActor("Pong", "none", strategy=None).isSuccess
    with pytest.raises(UsageError, match="'strategy' must be one of .*, not ''"):
        beach.addActor("Pong", "empty", strategy="")


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


def test_resource_strategy_live(beach):
    """`resource` asks two nodes their load at spawn time and takes the lighter: one spawn after the
    other, 12 actors over 3 idle nodes use every node, none with more than twice its share (a
    node's figures of a second ago, as before, put them all on one node). Not "within two of each
    other": two random candidates of three leave the third out a third of the time, and 1.8 % of
    runs end 5/5/2 (simulated, 100,000 runs)."""
    def idle() -> bool:  # what each node says of itself (an earlier test's actors may still be leaving)
        async def ask():
            return await asyncio.gather(*(beach._core._node_call(n, "load", {}, 5) for n in NODES))
        return all(r.isSuccess and r.data.get("n_actors", 0) == 0 for r in beach._runner.run(ask()))

    wait_for(idle, 20, interval=0.5, what="every node to say it runs no actor")
    for _ in range(12):
        resp = beach.addActor("Pong", "res", strategy="resource")
        assert resp.isSuccess, resp
    counts = placements(beach, "res")
    assert set(counts) == set(NODES) and max(counts.values()) <= 2 * 12 / len(NODES), counts


def test_isolated_actor_killed_leaves_the_others(beach, tmp_path):
    shared = beach.addActor("Pong", "iso/shared", strategy="host_affinity", strategy_hint="node-a")
    isolated = beach.addActor("DeinitMarker", "iso/alone", strategy="host_affinity", strategy_hint="node-a",
                              isIsolated=True, parameters={"path": str(tmp_path / "m")})
    assert shared.isSuccess and isolated.isSuccess
    pid = beach.getActorHandle("iso/alone").request("pid").data["pid"]
    assert pid != beach._core.session.view.actors[shared.data["uid"]].pid
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
        wait_for(lambda: other.getActorHandle("cw/two").getNumAvailable() == 1, 10, what="other client to see it")
        assert other.getActorHandle("cw/two").request("oob").data == {"cmdresult": 42}
        assert other.removeFromCategory(a1.data["uid"], "cw/one")
        wait_for(lambda: beach.getActorHandle("cw/one").getNumAvailable() == 0, 10, what="removal to show")
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
        wait_for(lambda: beach.getNodeCount() == 3, 10, what="the node to leave the registry")
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
        hosts = [h["pid"] for h in beach._core.session.view.nodes["node-doomed"].hosts.values()]
        doomed.process.kill()  # SIGKILL: no goodbye
        doomed.process.wait()
        wait_for(lambda: "node-doomed" not in beach._core.session.view.nodes, FAILURE_DETECTION + 3,
                 what=f"the dead node to be removed (within {FAILURE_DETECTION}s)")
        assert beach.getActorHandle("doomed").getNumAvailable() == 0
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                 for p in hosts), 5, what="its actor hosts to exit")
        assert beach.getNodeCount() == 3
    finally:
        doomed.terminate()


def test_the_entries_of_a_node_that_died_with_its_hosts_are_collected_by_the_others(beach, configs):
    # the machine is gone (agent and actor hosts at once): nobody of that node can take its actors
    # out of the directory, so the live nodes do, ORPHAN_GRACE after the node left the registry
    doomed = NodeProcess(configs[1], "node-gone")
    try:
        doomed.wait_registered(beach, timeout=60)
        resp = beach.addActor("Pong", "gone", strategy="host_affinity", strategy_hint="node-gone")
        assert resp.isSuccess
        uid = resp.data["uid"]
        hosts = [h["pid"] for h in beach._core.session.view.nodes["node-gone"].hosts.values()]
        doomed.process.kill()
        for pid in hosts:  # before their watchdog (1 s) sees the agent gone and they leave cleanly
            os.kill(pid, signal.SIGKILL)
        doomed.process.wait()
        wait_for(lambda: "node-gone" not in beach._core.session.view.nodes, FAILURE_DETECTION + 3,
                 what=f"the dead node to be removed (within {FAILURE_DETECTION}s)")
        # still there: only the others can remove it, ORPHAN_GRACE later (waited for: once in a loaded
        # full run the client's view held no actor at all at this point, a moment after the node left)
        wait_for(lambda: uid in beach._core.session.view.actors, 3, what="the dead node's actor entry, kept")
        wait_for(lambda: uid not in beach._core.session.view.actors, ORPHAN_GRACE + 2 * ORPHAN_CHECK + 3,
                 what="the dead node's actor entry to be collected")
    finally:
        doomed.terminate()




def lose_machine(beach, node: NodeProcess) -> float:
    """SIGKILL a node agent and its actor hosts at once, as when a machine is lost (nobody cleans
    up); return the monotonic time it happened."""
    hosts = [h["pid"] for h in beach._core.session.view.nodes[node.node_id].hosts.values()]
    killed = time.monotonic()
    for pid in [node.process.pid, *hosts]:
        os.kill(pid, signal.SIGKILL)
    node.process.wait()
    return killed


def live_nodes_of(beach, category):
    return sorted(a.node for a in beach._core.session.view.find("global", category))


def test_supervised_actors_move_when_their_node_dies(beach, configs):
    doomed = NodeProcess(configs[2], "node-x")
    try:
        doomed.wait_registered(beach, timeout=60)
        for _ in range(4):
            assert beach.addActor("Pong", "moving", strategy="roundrobin", restart="on-failure").isSuccess
        assert live_nodes_of(beach, "moving") == sorted(NODES + ["node-x"])
        load = Load(beach, "moving")
        time.sleep(0.5)
        killed = lose_machine(beach, doomed)
        wait_for(lambda: "node-x" not in live_nodes_of(beach, "moving"), FAILURE_DETECTION + 2,
                 what="node-x's actor to go")
        gone = time.monotonic() - killed
        # the bound docs/operations.md gives: re-placed within the failure detection bound plus 2 s of the loss
        wait_for(lambda: len(live_nodes_of(beach, "moving")) == 4,
                 max(0.0, killed + FAILURE_DETECTION + 2 - time.monotonic()),
                 what="re-placement on the survivors")
        back = time.monotonic() - killed
        time.sleep(0.5)
        counts = load.stop()
        print(f"\nnode SIGKILL: its actor out of the directory after {gone:.2f}s, re-placed after {back:.2f}s;"
              f" requests during the fault: {counts}")
        assert set(live_nodes_of(beach, "moving")) == set(NODES)
        assert counts["failed"] == 0, load.errors[:5]
        records = [r for r in beach.getSupervised().values() if r["categories"] == ["moving"]]
        assert sorted(len(r["restarts"]) for r in records) == [0, 0, 0, 1], "one restart for the one incident"
        assert all(r["last_error"] is None for r in records), records
    finally:
        doomed.terminate()


@pytest.mark.parametrize("how", ["agent SIGKILL", "graceful stop"])
def test_supervised_actors_leave_a_lost_node_for_live_ones_with_one_restart(beach, configs, how):
    """docs/operations.md: a restart never targets a node that is not up. The node's actors leave the
    directory at once (its hosts stop: a graceful stop, or SIGTERM from the kernel when the agent
    dies) while the node is still in the registry (one of its actors takes its full 5 s to stop),
    and repulsion would pick it again (it has the fewest of the hinted category): the re-placement
    goes to live nodes, one restart counted per actor, no error left behind, within the node TTL
    plus 2 s."""
    # (a node id of its own per case: a node started again under the same id while the old one's
    # actor hosts still stop would meet them under the same host ids, another matter)
    doomed_id = "node-dk" if how == "agent SIGKILL" else "node-ds"
    doomed = NodeProcess(configs[2], doomed_id)
    try:
        doomed.wait_registered(beach, timeout=60)
        wait_for(lambda: set(beach._core.session.view.nodes) == {*NODES, doomed_id}, FAILURE_DETECTION + 2,
                 what=f"the registry to hold the cluster's nodes and {doomed_id} only")
        for node in NODES:
            assert beach.addActor("Pong", "lost/anchor", strategy="host_affinity", strategy_hint=node).isSuccess
        assert beach.addActor("DeinitHang", "lost/slow", strategy="host_affinity", strategy_hint=doomed_id).isSuccess
        first = [beach.addActor("Pong", "lost/sup", strategy="repulsion", strategy_hint="lost/anchor",
                                restart="on-failure") for _ in range(2)]
        assert all(r.isSuccess and r.data["node"] == doomed_id for r in first), first
        sids = [s for s, r in beach.getSupervised().items() if r["categories"] == ["lost/sup"]]
        assert len(sids) == 2
        stopped = time.monotonic()
        if how == "agent SIGKILL":
            os.kill(doomed.process.pid, signal.SIGKILL)
            doomed.process.wait()
        else:
            doomed.process.send_signal(signal.SIGTERM)

        def moved() -> bool:
            records = beach.getSupervised()
            return all(records[s]["uid"] != r.data["uid"] for s, r in zip(sids, first, strict=True)) and \
                len(live_nodes_of(beach, "lost/sup")) == 2 and doomed_id not in live_nodes_of(beach, "lost/sup")
        wait_for(moved, FAILURE_DETECTION + 2, what="both supervised actors re-placed")
        back = time.monotonic() - stopped
        if how == "graceful stop":
            assert doomed.process.wait(30) == 0
        records = beach.getSupervised()
        print(f"\n{how}: both supervised actors re-placed after {back:.2f}s, on "
              f"{live_nodes_of(beach, 'lost/sup')}; restarts {[len(records[s]['restarts']) for s in sids]}")
        assert set(live_nodes_of(beach, "lost/sup")) <= set(NODES)
        for sid in sids:
            assert len(records[sid]["restarts"]) == 1, records[sid]
            assert records[sid]["last_error"] is None and records[sid]["state"] == "running", records[sid]
    finally:
        doomed.terminate()


def test_a_frozen_node_takes_no_new_actor_once_its_heartbeat_is_late(beach, configs):
    """A node agent that hangs (SIGSTOP) stays in the registry until the lease holder removes it, but
    once its beat is late (1.5 periods) the holder says so and no spawn goes there: repulsion, which
    would pick it (it has no actor), places on the others, at once."""
    frozen = NodeProcess(configs[1], "node-f")
    try:
        frozen.wait_registered(beach, timeout=60)
        view = beach._core.session.view
        os.kill(frozen.process.pid, signal.SIGSTOP)
        try:
            paused = time.monotonic()
            wait_for(lambda: "node-f" in view.unavailable(), LATE + 1.5, what="the lease holder to say node-f is late")
            late = time.monotonic() - paused
            assert "node-f" in view.nodes, "still registered (not removed yet): the case at hand"
            started = time.monotonic()
            placed = [beach.addActor("Pong", "frozen/rep", strategy="repulsion", timeout=5) for _ in range(4)]
            took = time.monotonic() - started
        finally:
            os.kill(frozen.process.pid, signal.SIGCONT)
        print(f"\nagent SIGSTOP: heartbeat late after {late:.2f}s; 4 spawns by repulsion took {took:.2f}s")
        assert all(r.isSuccess for r in placed), placed
        assert "node-f" not in {r.data["node"] for r in placed}, [r.data["node"] for r in placed]
        wait_for(lambda: "node-f" not in view.unavailable(), 10, what="node-f to be up again")
    finally:
        frozen.terminate()


def test_placement_skips_nodes_that_are_not_up():
    """The placer's own rule, without a cluster: nodes the view reports not up, and nodes that
    failed a spawn on their side lately, are skipped; with none left it says why."""
    nodes = {n: NodeEntry(id=n, cpu=[1.0], mem=1.0) for n in ("a", "b", "c")}
    placer = Placer()
    picks = {placer.choose("random", None, nodes, list, ["x"], {"a": "is stopping"}) for _ in range(50)}
    assert picks == {"b", "c"}
    placer.spawn_failed("b", "node b is not answering")
    assert {placer.choose("roundrobin", None, nodes, list, ["x"], {"a": "is stopping"}) for _ in range(10)} == {"c"}
    with pytest.raises(PlacementError) as failure:
        placer.choose("random", None, nodes, list, ["x"], {"a": "is stopping", "c": "has sent no heartbeat"})
    assert failure.value.unavailable
    assert "a is stopping" in str(failure.value) and "b failed a spawn lately (node b is not answering)" in \
        str(failure.value)
    with pytest.raises(PlacementError, match="host_affinity hint 'a'.*a is stopping") as pinned:
        placer.choose("host_affinity", "a", nodes, list, ["x"], {"a": "is stopping"})
    assert pinned.value.unavailable
    assert placer.choose("host_affinity", "c", nodes, list, ["x"], {"a": "is stopping"}) == "c"


def test_patrol_keeps_its_count_through_node_loss(beach, configs):
    doomed = NodeProcess(configs[2], "node-p")
    try:
        doomed.wait_registered(beach, timeout=60)
        beach.applyPatrol({"owner": "resilient", "actors": [
            {"name": "pongs", "actor": "Pong", "category": "patrolled", "instances": 8}]})
        wait_for(lambda: len(live_nodes_of(beach, "patrolled")) == 8, 30, what="8 patrolled actors")
        assert sorted(set(live_nodes_of(beach, "patrolled"))) == sorted(NODES + ["node-p"]), "spread by repulsion"
        killed = lose_machine(beach, doomed)
        wait_for(lambda: "node-p" not in live_nodes_of(beach, "patrolled")
                 and len(live_nodes_of(beach, "patrolled")) == 8, 20, what="the patrol to re-place node-p's actors")
        print(f"\npatrol through node loss: back to 8 on the survivors after {time.monotonic() - killed:.2f}s")
        assert beach.removePatrol("resilient")
        wait_for(lambda: not live_nodes_of(beach, "patrolled"), 15, what="the patrol's actors to stop")
    finally:
        doomed.terminate()


def test_supervision_survives_the_loss_of_the_supervising_agent(beach, configs):
    from beach import bus
    from beach.state import desired

    leader = NodeProcess(configs[1], "node-lead")
    try:
        leader.wait_registered(beach, timeout=60)
        core = beach._core

        async def hand_lease_to(holder):
            kv = await bus.open_desired(core.session.nc, core.session.config)
            while True:
                current = await desired.get(kv, desired.LEASE_KEY, desired.LeaseRecord)
                value = desired.LeaseRecord(holder=holder)
                if current is None:
                    await desired.put(kv, desired.LEASE_KEY, value)
                    return
                if await desired.update(kv, desired.LEASE_KEY, value, current[1]) is not None:
                    return

        async def lease_holder():
            kv = await bus.open_desired(core.session.nc, core.session.config)
            current = await desired.get(kv, desired.LEASE_KEY, desired.LeaseRecord)
            return current and current[0].holder

        beach._runner.run(hand_lease_to("node-lead"))
        time.sleep(1.5)
        assert beach._runner.run(lease_holder()) == "node-lead"
        resp = beach.addActor("Pong", "orphaned", strategy="host_affinity", strategy_hint="node-lead")
        assert resp.isSuccess
        # supervise it by its category on any node: re-placement must not need node-lead
        assert beach.addActor("Pong", "survivor", strategy="random", restart="on-failure").isSuccess
        victim = beach.addActor("Pong", "survivor2", strategy="host_affinity", strategy_hint="node-lead",
                                restart="on-failure")
        assert victim.isSuccess
        record_key = [sid for sid, r in beach.getSupervised().items() if r["categories"] == ["survivor2"]][0]
        # the supervised actor is pinned to node-lead by host_affinity; switch its record to 'random'
        # so it can move (the strategy and hint are part of the desired state)

        async def repoint():
            kv = await bus.open_desired(core.session.nc, core.session.config)
            key = desired.supervision_key("global", record_key)
            record, revision = await desired.get(kv, key, desired.SupervisionRecord)
            record.spawn.strategy = "random"
            await desired.update(kv, key, record, revision)

        beach._runner.run(repoint())
        killed = time.monotonic()
        os.killpg(leader.process.pid, signal.SIGKILL)
        leader.process.wait()
        wait_for(lambda: beach.getActorHandle("survivor2").getNumAvailable() == 1
                 and victim.data["uid"] not in core.session.view.actors, 25, what="another agent to take over")
        print(f"\nsupervising agent SIGKILL: its supervised actor re-placed after {time.monotonic() - killed:.2f}s "
              f"by {beach._runner.run(lease_holder())}")
        holds_for(lambda: beach.getActorHandle("survivor2").getNumAvailable() == 1
                  and beach.getActorHandle("survivor").getNumAvailable() == 1, 3.0,
                  "one incarnation of each supervised actor after the lease moved")
        assert beach._runner.run(lease_holder()) in NODES
        assert beach.getActorHandle("orphaned").getNumAvailable() == 0  # not supervised: gone
    finally:
        leader.terminate()


def restart(server: EmbeddedServer) -> None:
    """Start a killed server again on its port. A client reconnecting to that port can be connected to
    itself for a moment (TCP self-connect from the same ephemeral port), so retry a few times."""
    for attempt in range(20):
        try:
            server.start()
            return
        except BusError:
            if attempt == 19:
                raise
            time.sleep(0.25)


def test_losing_a_nats_server(beach, nats_cluster, configs):
    for _ in range(6):
        assert beach.addActor("Pong", "bus", strategy="roundrobin").isSuccess
    uids = {a.uid for a in beach._core.session.view.find("global", "bus")}
    load = Load(beach, "bus", retries=3)
    time.sleep(0.5)
    victim = nats_cluster[1]  # node-b's seed; the client is on server 0
    victim.kill()
    try:
        time.sleep(6)
        counts = load.stop()
    finally:  # the tests after this one get their cluster back whole
        restart(victim)
    print(f"\nNATS server SIGKILL: requests during the fault: {counts}")
    assert counts["failed"] == 0, load.errors[:5]
    wait_for(lambda: beach.getNodeCount() == 3, 15, what="every node to be registered again")
    # a new client, through a surviving server, sees the whole directory
    with Beach(write_config(configs[0].parent / "survivor.yaml", nats_cluster[2].url)) as fresh:
        assert {a.uid for a in fresh._core.session.view.find("global", "bus")} == uids
        assert all(fresh.getActorHandle("bus").request("ping", nRetries=2).isSuccess for _ in range(20))


def served_by_tag(beach, uids, load: Load | None = None) -> dict[str, list[str]]:
    """Which Ledger actors served each tag: ``{tag: [uid, ...]}`` (a uid once per time it served it).
    With ``load``, also check that the retries of one call kept its request id: a tag was served
    under no more ids than the calls made for it."""
    where: dict[str, list[str]] = {}
    ids: dict[str, set[str]] = {}
    for uid in uids:
        for entry in ledger(beach, uid):
            if entry["tag"] is not None:
                where.setdefault(entry["tag"], []).append(uid)
                ids.setdefault(entry["tag"], set()).add(entry["id"])
    if load is not None:
        more = {tag: len(found) for tag, found in ids.items() if len(found) > load.calls.get(tag, 0)}
        assert not more, f"retries under new request ids: {more}"
    return where


def test_a_paused_actor_host_is_failed_over_and_serves_again(beach):
    """docs/operations.md: a host that hangs (SIGSTOP) is not dead, so nothing is restarted; requests
    to it time out and their retries (same id) go elsewhere; it serves again once it resumes, and
    each attempt is served at most once."""
    uids = {node: beach.addActor(LEDGER, "hang/host", strategy="host_affinity", strategy_hint=node).data["uid"]
            for node in NODES}
    host_pid = beach._core.session.view.actors[uids["node-a"]].pid
    load = Load(beach, "hang/host", retries=3, timeout=0.5, request="work")
    time.sleep(0.5)
    os.kill(host_pid, signal.SIGSTOP)
    try:
        time.sleep(3)
        paused = dict(load.counts)
    finally:
        os.kill(host_pid, signal.SIGCONT)
    wait_for(lambda: beach.getActorHandle(f"_ACTORS/{uids['node-a']}").request("who", timeout=2).isSuccess, 10,
             what="the resumed host to answer")
    time.sleep(0.5)
    counts = load.stop(minimum=50)
    where = served_by_tag(beach, uids.values(), load)
    over = {tag: len(by) for tag, by in where.items() if len(by) > load.attempts.get(tag, 0)}
    late = sum(1 for by in where.values() if len(by) > 1)
    print(f"\nhost SIGSTOP 3 s: requests {counts} (during the pause: {paused}); {len(where)} tags served, "
          f"{late} of them twice (a timed-out attempt served when the host resumed, and its retry)")
    assert counts["failed"] == 0, load.errors[:5]
    assert not over, f"served more often than attempted: {over}"
    assert all(f"load-{i}" in where for i in range(counts["sent"]) if f"load-{i}" in load.attempts), \
        "every request that succeeded was served somewhere"
    assert uids["node-a"] in beach._core.session.view.actors, "a paused host is not taken for dead"


def test_a_paused_node_agent_comes_back_without_duplicates(beach, configs):
    """docs/operations.md: a node agent that hangs leaves the registry after the TTL; its supervised
    actors start elsewhere; when it resumes, its old incarnations come back with it and the
    supervisor stops them: one incarnation per supervised actor once things settle."""
    paused = NodeProcess(configs[1], "node-paused")
    try:
        paused.wait_registered(beach, timeout=60)
        # a node an earlier test killed may still be expiring: placement must see only these
        wait_for(lambda: set(beach._core.session.view.nodes) == {*NODES, "node-paused"}, FAILURE_DETECTION + 2,
                 what="the registry to hold the cluster's nodes and node-paused only")
        for node in NODES:  # repulsion from these puts the supervised actor on the new node
            assert beach.addActor("Pong", "paused/anchor", strategy="host_affinity", strategy_hint=node).isSuccess
        first = beach.addActor(LEDGER, "paused/sup", strategy="repulsion", strategy_hint="paused/anchor",
                               restart="on-failure")
        assert first.isSuccess and first.data["node"] == "node-paused", first
        [sid] = [s for s, r in beach.getSupervised().items() if r["uid"] == first.data["uid"]]
        view = beach._core.session.view

        def incarnations() -> list:
            return [a for a in view.live() if a.sid == sid]

        os.kill(paused.process.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_for(lambda: "node-paused" not in view.nodes, FAILURE_DETECTION + 2, what="the paused node to leave")
            gone = time.monotonic() - stopped
            wait_for(lambda: [a.node for a in incarnations()] not in ([], ["node-paused"]), FAILURE_DETECTION + 10,
                     what="the supervised actor to start elsewhere")
            moved = time.monotonic() - stopped
        finally:
            os.kill(paused.process.pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_for(lambda: "node-paused" in view.nodes, 10, what="the node to register again")
        wait_for(lambda: len(incarnations()) == 1 and first.data["uid"] not in view.actors, 15,
                 what="the old incarnation to be stopped")
        settled = time.monotonic() - resumed
        holds_for(lambda: len(incarnations()) == 1, 3.0, "one incarnation of the supervised actor")
        [current] = incarnations()
        print(f"\nagent SIGSTOP: node out of the registry after {gone:.2f}s, actor re-placed after {moved:.2f}s; "
              f"after SIGCONT the old incarnation was stopped within {settled:.2f}s")
        assert current.node != "node-paused" and beach.getSupervised()[sid]["uid"] == current.uid
        assert beach.getActorHandle("paused/sup").request("who").data["uid"] == current.uid
    finally:
        paused.terminate()


def test_a_paused_nats_server_is_routed_around(beach, nats_cluster, configs):
    """docs/operations.md: a NATS server that hangs (SIGSTOP) is left by its clients once their pings
    go unanswered (2 s apart, 2 missed); until then, requests that went its way time out, and their
    retries go to actors the client chose from its view, never one that already failed them — so no
    request fails that has more retries than its category has actors behind the hung server. When it
    resumes it rejoins the cluster."""
    # a node whose agent and hosts are surely on server 2 (other nodes may have moved servers in
    # earlier tests); the test's client is on server 0
    stranded = NodeProcess(configs[2], "node-q")
    try:
        stranded.wait_registered(beach, timeout=60)
        uids = [beach.addActor(LEDGER, "hang/bus", strategy="host_affinity", strategy_hint=node).data["uid"]
                for node in [*NODES, "node-q", "node-q"]]
        # behind server 2: node-q's two actors, and any other node's that earlier tests moved onto it
        # (a paused or cut-off node reconnects to any server): as many retries as there are actors
        # outnumber those behind it, wherever the nodes are
        load = Load(beach, "hang/bus", retries=len(uids), timeout=1.0, request="work")
        time.sleep(0.5)
        victim = nats_cluster[2]
        victim.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            time.sleep(8)
        finally:
            victim.process.send_signal(signal.SIGCONT)
        wait_for(lambda: {"node-q", *NODES} <= set(beach._core.session.view.nodes), 20,
                 what="every node to be registered again")
        back = time.monotonic() - stopped
        time.sleep(1)
        counts = load.stop(minimum=50)
        where = served_by_tag(beach, [u for u in uids if u in beach._core.session.view.actors], load)
        over = {tag: len(by) for tag, by in where.items() if len(by) > load.attempts.get(tag, 0)}
        print(f"\nNATS server SIGSTOP 8 s: requests {counts}; every node registered again {back:.1f}s after "
              f"the pause began")
        assert counts["retried"] > 0, "requests did meet the paused server"
        assert counts["failed"] == 0, load.errors[:5]
        assert not over, f"served more often than attempted: {over}"
        # (a node cut off 8 s behind the paused server was removed from the registry, and registered
        # again; a view hears of both as the registry's stream, stalled with that server, catches up)
        wait_for(lambda: sorted(live_nodes_of(beach, "hang/bus")) == sorted([*NODES, "node-q", "node-q"]), 15,
                 what="no actor lost or doubled")
    finally:
        stranded.terminate()


def test_a_pinned_supervised_actor_waits_for_its_node_and_comes_back_with_it(beach, configs):
    """docs/operations.md: a host_affinity actor whose node is away is not restarted elsewhere (it is
    pinned) and not marked failed: it waits ("waiting for node X") and comes back with its node."""
    pinned = NodeProcess(configs[2], "node-h")
    try:
        pinned.wait_registered(beach, timeout=60)
        first = beach.addActor("Pong", "pinned", strategy="host_affinity", strategy_hint="node-h",
                               restart="on-failure", max_restarts=3)
        assert first.isSuccess and first.data["node"] == "node-h"
        [sid] = [s for s, r in beach.getSupervised().items() if r["uid"] == first.data["uid"]]
        lose_machine(beach, pinned)
        wait_for(lambda: beach.getSupervised()[sid]["waiting_for"] == "node-h", FAILURE_DETECTION + 10,
                 what="the record to say it waits for node-h")
        holds_for(lambda: beach.getSupervised()[sid]["state"] == "running"
                  and not beach.getActorHandle("pinned").getNumAvailable(), 4.0,
                  "waiting: not failed, not started elsewhere")
        status = subprocess.run([sys.executable, "-m", "beach.cli", "status", str(configs[0])], capture_output=True,
                                text=True, timeout=60)
        assert "waiting for node node-h" in status.stdout, status.stdout
        pinned = NodeProcess(configs[2], "node-h")  # the machine is back
        pinned.wait_registered(beach, timeout=60)
        wait_for(lambda: [a.node for a in live_of(beach, "pinned")] == ["node-h"], 20,
                 what="the actor to come back on its node")
        record = beach.getSupervised()[sid]
        assert record["state"] == "running" and not record["waiting_for"] and len(record["restarts"]) == 1
    finally:
        pinned.terminate()


def live_of(beach, category):
    return beach._core.session.view.find("global", category)
