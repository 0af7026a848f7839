"""An actor host holds only what its actors' handles need (issue 30): the members of the categories
they call, not the whole actor directory; routing from it (affinity, local) stays right as actors
of those categories come and go. Real node agents and hosts on a nats-server of this module's own,
whose monitoring port says what it delivered to each connection and which consumers feed it."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer

from .conftest import NodeProcess, free_port, previous_release_node, wait_for, write_config

NODES = ("view-a", "view-b")
CALLED, OTHER = "views/called", "views/other"
KEYS = [f"k{i}" for i in range(20)]


class Cluster:
    def __init__(self, config: Path, server: EmbeddedServer, monitor: int) -> None:
        self.config, self.server, self.monitor = config, server, monitor

    def connections(self, subs: bool = False) -> dict[str, dict[str, Any]]:
        """The server's connections by name (``beach-host <id>``, ``beach-node <id>``...)."""
        query = "connz?limit=4096" + ("&subs=detail" if subs else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/{query}", timeout=10) as answer:
            return {c.get("name", "?"): c for c in json.load(answer)["connections"]}

    def delivered(self, name: str) -> int:
        return int(self.connections()[name]["out_msgs"])

    def watched(self, name: str) -> set[str]:
        """The key filters of the KV watches (ordered consumers) that deliver to connection ``name``."""
        inboxes = {s["subject"] for s in self.connections(subs=True)[name].get("subscriptions_list_detail", [])}

        async def filters() -> set[str]:
            nc = await nats.connect(self.server.url)
            try:
                js = nc.jetstream()
                found = set()
                for stream in ("KV_beach_actors", "KV_beach_members", "KV_beach_placed", "KV_beach_nodes"):
                    for consumer in await js.consumers_info(stream):
                        if consumer.config.deliver_subject in inboxes:
                            found.add(consumer.config.filter_subject or ">")
                return found
            finally:
                await nc.close()

        return asyncio.run(filters())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    store = tmp_path_factory.mktemp("views")
    monitor = free_port()
    server = EmbeddedServer(free_port(), str(store / "js"), name="beach-views", log_file=str(store / "nats.log"),
                            args=["-m", str(monitor)])
    server.start()
    config = write_config(store / "beach.yaml", server.url, n_processes=1)
    nodes = [NodeProcess(config, node_id) for node_id in NODES]
    try:
        with Beach(config) as client:
            for node in nodes:
                node.wait_registered(client, timeout=60)
        yield Cluster(config, server, monitor)
    finally:
        codes = [node.terminate() for node in nodes]
        server.stop()
        assert codes == [0] * len(nodes)


def spawn(client: Beach, actor: str, category: str, node: str) -> str:
    response = client.addActor(actor, category, strategy="host_affinity", strategy_hint=node)
    assert response.isSuccess, response.error
    return str(response.data["uid"])


def host_of(client: Beach, node: str) -> str:
    [host] = client._core.session.view.nodes[node].hosts
    return f"beach-host {host}"


def test_a_host_holds_only_the_categories_its_actors_call(cluster):
    with Beach(cluster.config) as client:
        router = spawn(client, "Router", "views/router", "view-a")
        called = [spawn(client, "Pong", CALLED, node) for node in NODES]
        host, agent = host_of(client, "view-a"), "beach-node view-a"
        # before its actor calls anything, the host watches the registry only
        assert cluster.watched(host) == {"$KV.beach_nodes.>"}
        routed = client.getActorHandle("views/router").request("route", {"category": CALLED, "mode": "affinity",
                                                                         "keys": KEYS}, timeout=20)
        assert routed.isSuccess and set(routed.data["uids"].values()) <= set(called), routed
        assert routed.data["available"] == 2
        # then the called category's entries only; the agent (like every client) holds everything
        assert cluster.watched(host) == {"$KV.beach_nodes.>", "$KV.beach_members.global.views.called.>"}
        assert "$KV.beach_actors.>" in cluster.watched(agent)

        # 20 actors of a category it does not call come and go on the other node: 40 changes its
        # agent is sent (every agent holds the whole directory), not the host
        host_before, agent_before = cluster.delivered(host), cluster.delivered(agent)
        others = [spawn(client, "Pong", OTHER, "view-b") for i in range(20)]
        assert client.stopActors(withId=others).isSuccess
        wait_for(lambda: not client._core.session.view.find("global", OTHER), 10, what="the others to go")
        host_got, agent_got = cluster.delivered(host) - host_before, cluster.delivered(agent) - agent_before
        print(f"\n40 changes of {OTHER}: delivered to the calling host {host_got}, to its agent {agent_got}")
        assert agent_got >= 40
        assert host_got < 10  # (a watch's heartbeat, load figures: not one per change)

        # one of the called category comes: the host is sent it
        host_before = cluster.delivered(host)
        called.append(spawn(client, "Pong", CALLED, "view-b"))
        wait_for(lambda: cluster.delivered(host) > host_before, 10, what="the host to be sent the new member")
        assert client.stopActors(withId=[router, *called]).isSuccess


def test_affinity_and_local_routing_from_a_host_follow_later_changes(cluster):
    with Beach(cluster.config) as client:
        router = client.getActorHandle("views/router2")
        spawn(client, "Router", "views/router2", "view-a")
        first = {node: spawn(client, "Pong", "views/ring", node) for node in NODES}
        mine = client.getActorHandle("views/ring", mode="affinity")

        def agree() -> dict[str, str] | None:
            """The owner of each key as the host's actor routes it, if the client routes it the same."""
            routed = router.request("route", {"category": "views/ring", "mode": "affinity", "keys": KEYS}, timeout=20)
            if not routed.isSuccess:
                return None
            theirs = routed.data["uids"]
            ours = {key: mine.request("ping", key=key, timeout=5).uid for key in KEYS}
            return ours if theirs == ours else None

        owners = wait_for(agree, 20, what="the host and the client to route alike")
        assert set(owners.values()) == set(first.values())
        # the host's actor calls the category from now on; later, one member comes and one goes
        newer = spawn(client, "Pong", "views/ring", "view-a")
        assert client.stopActors(withId=first["view-a"]).isSuccess
        members = {newer, first["view-b"]}
        owners = wait_for(lambda: (o := agree()) is not None and set(o.values()) == members and o, 20,
                          what="the host's affinity to follow the change")
        assert set(owners.values()) == members
        # 'local' from view-a: the member on view-a (the newer one), never the one that left
        local = router.request("route", {"category": "views/ring", "mode": "local", "keys": KEYS}, timeout=20)
        assert local.isSuccess and set(local.data["uids"].values()) == {newer}, local
        assert client.flush()


def kv_keys(cluster: Cluster, bucket: str) -> set[str]:
    async def keys() -> set[str]:
        nc = await nats.connect(cluster.server.url)
        try:
            kv = await nc.jetstream().key_value(bucket)
            try:
                return set(await kv.keys())
            except nats.js.errors.NoKeysError:
                return set()
        finally:
            await nc.close()

    return asyncio.run(keys())


def test_an_entry_deleted_behind_its_hosts_back_is_written_again(cluster):
    # (as the lease holder's sweep does to a node that seemed gone): the host's own view does not
    # hold its actors' entries, its agent's does, and has the host write them back
    with Beach(cluster.config) as client:
        uid = spawn(client, "Pong", "views/healed", "view-b")
        own, member = f"global.{uid}", f"global.views.healed.{uid}"
        assert {own, member} <= kv_keys(cluster, "beach_actors") | kv_keys(cluster, "beach_members")

        async def delete() -> None:
            nc = await nats.connect(cluster.server.url)
            try:
                js = nc.jetstream()
                await (await js.key_value("beach_members")).delete(member)
                await (await js.key_value("beach_actors")).delete(own)
            finally:
                await nc.close()

        asyncio.run(delete())
        wait_for(lambda: uid not in client._core.session.view.actors, 5, what="the client to see the entry go")
        wait_for(lambda: uid in client._core.session.view.actors, 10, what="the entry to be written again")
        assert member in kv_keys(cluster, "beach_members")
        assert client.getActorHandle("views/healed").request("ping").uid == uid
        assert client.stopActors(withId=uid).isSuccess
        # stopped: both entries go
        wait_for(lambda: not {own, member} & (kv_keys(cluster, "beach_actors") | kv_keys(cluster, "beach_members")),
                 10, what="both entries to go")


def test_with_a_node_of_the_previous_release_a_host_holds_the_whole_directory(cluster):
    # (last in the module: the host keeps the whole directory from then on) the previous release
    # writes no entries by category: a host that held only those would miss its actors
    with Beach(cluster.config) as client:
        spawn(client, "Router", "views/router3", "view-a")
        host = host_of(client, "view-a")
        routed = client.getActorHandle("views/router3").request("route", {"category": "views/halfway",
                                                                          "mode": "affinity"}, timeout=20)
        assert routed.data["available"] == 0
        assert "$KV.beach_actors.>" not in cluster.watched(host)
        with previous_release_node(client, "view-b", "old-release", reads=[], indexed=False):
            wait_for(lambda: "$KV.beach_actors.>" in cluster.watched(host), 10,
                     what="the host to watch the whole directory")
            # an actor whose entry is in beach_actors only (as the previous release writes it)
            uid = spawn(client, "Pong", "views/halfway", "view-b")

            async def unindex() -> None:
                nc = await nats.connect(cluster.server.url)
                try:
                    await (await nc.jetstream().key_value("beach_members")).delete(f"global.views.halfway.{uid}")
                finally:
                    await nc.close()

            asyncio.run(unindex())
            routed = client.getActorHandle("views/router3").request("route", {"category": "views/halfway",
                                                                              "mode": "affinity"}, timeout=20)
            assert routed.isSuccess and routed.data["uids"] == {"-": uid} and routed.data["available"] == 1, routed
        assert client.flush()
