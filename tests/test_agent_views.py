"""A node agent holds only its own node's actors (issue 30): its view of the directory watches the
entries under its node (``beach_placed``), except while it holds the supervisor lease or is its
standby, which hold the whole directory — also just after the lease moved, before the new holder
acts. Real node agents and hosts on a nats-server of this module's own (its monitoring port says
what it delivered to each connection and which consumers feed it); real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import nats
import pytest

from beach import bus
from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.state import desired

from .conftest import NodeProcess, free_port, hand_lease_to, holds_for, lease_holder, wait_for, write_config
from .test_views import Cluster, kv_keys

# sorted: the standby of av-a (the lease holder here) is av-b; av-c and av-d hold their own actors
NODES = ("av-a", "av-b", "av-c", "av-d")
WHOLE, NODES_WATCH = "$KV.beach_actors.>", "$KV.beach_nodes.>"


def own(node: str) -> set[str]:
    """What a node agent that neither holds the lease nor stands by watches of the directory."""
    return {NODES_WATCH, f"$KV.beach_placed.{node}.>"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, NodeProcess]]]:
    store = tmp_path_factory.mktemp("agent-views")
    monitor = free_port()
    server = EmbeddedServer(free_port(), str(store / "js"), name=f"beach-agent-views-{os.getpid()}",
                            log_file=str(store / "nats.log"), args=["-m", str(monitor)])
    server.start()
    config = write_config(store / "beach.yaml", server.url, n_processes=1)
    nodes = {node_id: NodeProcess(config, node_id) for node_id in NODES}
    try:
        with Beach(config) as client:
            for node in nodes.values():
                node.wait_registered(client, timeout=60)
            hand_lease_to(client, "av-a")
        yield Cluster(config, server, monitor), nodes
    finally:
        for node in nodes.values():
            node.terminate()
        server.stop()


def spawn(client: Beach, category: str, node: str, **options: object) -> str:
    response = client.addActor("Pong", category, strategy="host_affinity", strategy_hint=node, **options)
    assert response.isSuccess, response.error
    return str(response.data["uid"])


def test_an_agent_holds_its_nodes_actors_and_the_lease_holder_and_standby_all(cluster):
    cluster, _ = cluster
    agent = {node: f"beach-node {node}" for node in NODES}
    with Beach(cluster.config) as client:
        wait_for(lambda: WHOLE in cluster.watched(agent["av-a"]) and WHOLE in cluster.watched(agent["av-b"]), 10,
                 what="the lease holder and its standby to hold the whole directory")
        wait_for(lambda: cluster.watched(agent["av-c"]) == own("av-c")
                 and cluster.watched(agent["av-d"]) == own("av-d"), 10, what="the other agents to hold their own")

        # 20 actors come and go on av-d: 40 changes the holder is sent, not av-c's agent
        before = {node: cluster.delivered(agent[node]) for node in ("av-a", "av-c")}
        uids = [spawn(client, "agent-views/churn", "av-d") for _ in range(20)]
        assert client.stopActors(withId=uids).isSuccess
        wait_for(lambda: not client._core.session.view.find("global", "agent-views/churn"), 10, what="them to go")
        time.sleep(0.5)
        got = {node: cluster.delivered(agent[node]) - before[node] for node in before}
        print(f"\n40 changes on av-d: delivered to the lease holder {got['av-a']}, to av-c's agent {got['av-c']}")
        assert got["av-a"] >= 40
        assert got["av-c"] < 10  # (watches' heartbeats, the supervisor's lease: not one per change)

        # the lease moves to av-c (its standby: av-d): those two load everything, av-a and av-b go back
        hand_lease_to(client, "av-c")
        wait_for(lambda: WHOLE in cluster.watched(agent["av-c"]) and WHOLE in cluster.watched(agent["av-d"]), 10,
                 what="the new holder and its standby to hold the whole directory")
        wait_for(lambda: cluster.watched(agent["av-a"]) == own("av-a")
                 and cluster.watched(agent["av-b"]) == own("av-b"), 10,
                 what="the former holder and standby to hold their own again")
        hand_lease_to(client, "av-a")
        wait_for(lambda: cluster.watched(agent["av-c"]) == own("av-c"), 10, what="av-c to hold its own again")


def test_an_agents_own_actor_missing_from_the_directory_is_written_back(cluster):
    # (as the lease holder's sweep does to a node that seemed gone): av-d's agent holds its node's
    # actors only, sees this one go and has its host write it back
    cluster, _ = cluster
    with Beach(cluster.config) as client:
        assert cluster.watched("beach-node av-d") == own("av-d")
        uid = spawn(client, "agent-views/healed", "av-d")
        keys = {"beach_actors": f"global.{uid}", "beach_members": f"global.agent-views.healed.{uid}",
                "beach_placed": f"av-d.global.{uid}"}

        def present() -> set[str]:
            return {bucket for bucket, key in keys.items() if key in kv_keys(cluster, bucket)}

        assert present() == set(keys)

        async def delete() -> None:
            nc = await nats.connect(cluster.server.url)
            try:
                js = nc.jetstream()
                for bucket in ("beach_members", "beach_placed", "beach_actors"):  # (the order a sweep deletes in)
                    await (await js.key_value(bucket)).delete(keys[bucket])
            finally:
                await nc.close()

        asyncio.run(delete())
        wait_for(lambda: uid not in client._core.session.view.actors, 5, what="the client to see the entry go")
        wait_for(lambda: uid in client._core.session.view.actors, 10, what="the entry to be written again")
        wait_for(lambda: present() == set(keys), 5, what="all three entries to be written again")
        assert client.getActorHandle("agent-views/healed").request("ping").uid == uid
        assert client.stopActors(withId=uid).isSuccess
        wait_for(lambda: not present(), 10, what="its entries to go once it is stopped")


def test_an_agent_places_by_repulsion_counting_every_node(cluster):
    # av-c's agent holds its own node's actors only; replacing its actor placed by 'repulsion', it
    # loads the category first: the fewest of it are on av-c itself (counting only its own, it
    # would see none elsewhere and pick another node)
    cluster, _ = cluster
    category = "agent-views/rep"
    with Beach(cluster.config) as client:
        assert cluster.watched("beach-node av-c") == own("av-c")
        others = [spawn(client, category, node) for node in ("av-a", "av-b", "av-d") for _ in range(2)]
        placed = client.addActor("Pong", category, strategy="repulsion")
        assert placed.isSuccess and placed.data["node"] == "av-c", placed
        replaced = client._runner.run(client._core._node_call(
            "av-c", "replace", {"uid": placed.data["uid"], "grace": 0.0, "away": False}, 60, "global"))
        assert replaced.isSuccess, replaced.error
        assert replaced.data["node"] == "av-c", replaced.data
        assert client.stopActors(withId=[*others, replaced.data["uid"]]).isSuccess


def test_an_agent_that_takes_the_lease_supervises_from_the_whole_directory(cluster):
    # (last in the module: it kills two nodes) the lease holder and its standby SIGKILLed at once:
    # an agent that held its own node's actors takes the unrenewed lease; before acting it loads
    # every entry, so the supervised actors on the dead nodes are re-placed once each, and the
    # one on the other survivor (which its view did not hold) is left alone — no duplicate
    cluster, nodes = cluster
    with Beach(cluster.config) as client:
        assert lease_holder(client) == "av-a"
        supervised = {node: spawn(client, f"agent-views/sup-{node}", node, restart="on-failure") for node in NODES}

        sids = list(client.getSupervised())
        assert len(sids) == len(NODES)

        async def unpin() -> None:  # (host_affinity would make them wait for their node: any node will do)
            kv = await bus.open_desired(client._core.session.nc, client._core.session.config)
            for sid in sids:
                key = desired.supervision_key("global", sid)
                record, revision = await desired.get(kv, key, desired.SupervisionRecord)
                record.spawn.strategy, record.spawn.strategy_hint = "random", None
                assert await desired.update(kv, key, record, revision) is not None

        client._runner.run(unpin())
        view = client._core.session.view
        for node in ("av-a", "av-b"):
            os.killpg(nodes[node].process.pid, signal.SIGKILL)
        for node in ("av-a", "av-b"):
            nodes[node].process.wait()
        killed = time.monotonic()

        def incarnations(node: str) -> list[str]:
            return [a.uid for a in view.live() if a.categories == [f"agent-views/sup-{node}"]]

        wait_for(lambda: all(len(incarnations(n)) == 1 for n in NODES) and not {"av-a", "av-b"} & set(view.nodes)
                 and all(incarnations(n) != [supervised[n]] for n in ("av-a", "av-b")), 40,
                 what="the dead nodes' supervised actors to be re-placed")
        holder = lease_holder(client)
        print(f"\nholder and standby SIGKILLed: their supervised actors re-placed after "
              f"{time.monotonic() - killed:.2f}s by {holder}")
        assert holder in ("av-c", "av-d")
        holds_for(lambda: all(len(incarnations(n)) == 1 for n in NODES)
                  and all(incarnations(n) == [supervised[n]] for n in ("av-c", "av-d")), 4.0,
                  "one incarnation of each supervised actor, the survivors' untouched")
