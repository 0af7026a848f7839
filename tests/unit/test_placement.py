"""beach.state.placement: which node a spawn goes to, strategy by strategy (through `Placer.choose`).

The oracles: loads worked out by hand from the figures given, and counts of a strategy's choices
over many spawns (every eligible node chosen, no other ever).
"""

from __future__ import annotations

from collections import Counter

import pytest

from beach.errors import UsageError
from beach.state import placement
from beach.state.placement import PlacementError
from beach.state.placement import hosts_matching as _hosts_matching
from beach.state.placement import node_load as _node_load
from beach.state.records import ActorEntry, NodeEntry, NodeLoad
from beach.state.spawn import STRATEGIES, SpawnOptions
from beach.wire import typed

from .clock import Clock, install

# The cases below write a node as the map of its fields that matter (its id is its key) and an
# actor as its uid, node and categories: these make the records placement reads from them.


def entry(node_id: str, fields: dict | NodeEntry) -> NodeEntry:
    return fields if isinstance(fields, NodeEntry) else NodeEntry(id=node_id, **fields)


def entries(nodes: dict) -> dict[str, NodeEntry]:
    return {node_id: entry(node_id, fields) for node_id, fields in nodes.items()}


def node_load(fields: dict) -> float:
    return _node_load(entry("n", fields))


def hosts_matching(hint: str, nodes: dict) -> list[str]:
    return _hosts_matching(hint, entries(nodes))


class Placer(placement.Placer):
    """`placement.Placer`, given the nodes and actors above as records."""

    def choose(self, strategy, hint, nodes, actors, categories, unavailable=None):
        records = [a if isinstance(a, ActorEntry) else ActorEntry(realm="global", name="X", host=f"{a['node']}-h", **a)
                   for a in actors()]
        return super().choose(strategy, hint, entries(nodes), lambda: records, categories, unavailable)


def choose(strategy, nodes, hint=None, actors=(), categories=("x",), times=200, placer=None):
    placer = placer or Placer()
    return Counter(placer.choose(strategy, hint, nodes, lambda: list(actors), list(categories)) for _ in range(times))


def actor(node: str, *categories: str) -> dict:
    return {"uid": f"u-{node}-{categories}", "node": node, "categories": list(categories)}


NODES = {"n1": {"hostname": "alpha", "addresses": ["10.0.0.1"]}, "n2": {"hostname": "beta", "addresses": ["10.0.0.2"]},
         "n3": {"hostname": "gamma"}}


def test_resource_strategy():
    nodes = {"busy": {"cpu": [90.0, 80.0], "mem": 70.0}, "idle": {"cpu": [5.0, 15.0], "mem": 30.0},
             "mid": {"cpu": [50.0, 50.0], "mem": 10.0}}
    assert Placer().choose("resource", None, nodes, list, ["x"]) == "idle"


def test_node_load_is_the_mean_of_cpu_and_memory():
    assert node_load({"cpu": [90.0, 80.0], "mem": 70.0}) == 77.5  # (85 + 70) / 2
    assert node_load({"cpu": [10.0], "mem": 0.0}) == 5.0
    assert node_load({"cpu": [], "mem": 40.0}) == 20.0
    assert node_load({"mem": 40}) == 20.0
    assert node_load({"cpu": [30.0, 50.0]}) == 20.0
    assert node_load({}) == 0.0


def test_resource_chooses_the_least_loaded_and_any_of_a_tie():
    nodes = {"a": {"cpu": [50.0], "mem": 50.0}, "b": {"cpu": [10.0], "mem": 30.0}, "c": {"cpu": [30.0], "mem": 10.0}}
    assert set(choose("resource", nodes)) == {"b", "c"}  # both at 20
    nodes["c"]["mem"] = 11.0
    assert set(choose("resource", nodes)) == {"b"}


def test_random_chooses_every_open_node_and_no_cordoned_one():
    nodes = {**NODES, "n4": {"cordoned": True}}
    assert set(choose("random", nodes)) == {"n1", "n2", "n3"}
    # where the category's actors already are does not matter (as it does for repulsion)
    crowded = [actor("n1", "x"), actor("n1", "x"), actor("n2", "x")]
    assert set(choose("random", nodes, actors=crowded)) == {"n1", "n2", "n3"}
    assert set(choose("random", nodes, hint="x", actors=crowded)) == {"n1", "n2", "n3"}


def test_roundrobin_cycles_through_the_open_nodes_in_order():
    placer = Placer()
    picks = [placer.choose("roundrobin", None, NODES, list, ["x"]) for _ in range(7)]
    assert picks == ["n2", "n3", "n1", "n2", "n3", "n1", "n2"]
    assert sorted(Counter(picks[:6]).values()) == [2, 2, 2]


@pytest.mark.parametrize("hint, expected", [("n2", {"n2"}), ("beta", {"n2"}), ("10.0.0.1", {"n1"}), ("gamma", {"n3"})])
def test_host_affinity_by_id_hostname_or_address(hint, expected):
    assert set(choose("host_affinity", NODES, hint)) == expected
    assert hosts_matching(hint, NODES) == sorted(expected)


def test_host_affinity_needs_a_hint_that_names_a_node():
    with pytest.raises(PlacementError, match="^strategy 'host_affinity' needs strategy_hint"):
        Placer().choose("host_affinity", None, NODES, list, ["x"])
    with pytest.raises(PlacementError, match=r"^no node matches host_affinity hint 'delta' \(nodes: n1, n2, n3\)$"):
        Placer().choose("host_affinity", "delta", NODES, list, ["x"])
    assert hosts_matching("10.0.0", NODES) == []
    assert hosts_matching("alpha", {**NODES, "n9": {"hostname": "alpha"}}) == ["n1", "n9"]


def test_affinity_goes_where_the_hinted_category_is():
    actors = [actor("n2", "db/main"), actor("n3", "db/replica"), actor("n1", "web")]
    assert set(choose("affinity", NODES, "db", actors)) == {"n2", "n3"}
    assert set(choose("affinity", NODES, "db/main", actors)) == {"n2"}
    assert set(choose("affinity", NODES, "nothing", actors)) == {"n1", "n2", "n3"}  # none yet: anywhere
    assert set(choose("affinity", NODES, None, actors)) == {"n1", "n2", "n3"}


def test_repulsion_goes_where_the_category_has_fewest_actors():
    actors = [actor("n1", "w"), actor("n1", "w"), actor("n2", "w"), actor("n3", "other"), actor("n3", "w/x")]
    assert set(choose("repulsion", NODES, "w", actors)) == {"n2", "n3"}
    assert set(choose("repulsion", NODES, "other", actors)) == {"n1", "n2"}
    # no hint: the new actor's first category
    assert set(choose("repulsion", NODES, None, actors, categories=("w/x", "w"))) == {"n1", "n2"}


def test_no_node_or_only_cordoned_ones_is_a_placement_error():
    with pytest.raises(PlacementError, match=r"^no beach node is running \(the node registry is empty\)$"):
        Placer().choose("random", None, {}, list, ["x"])
    with pytest.raises(PlacementError, match=r"^every node is cordoned \(n1, n2\): 'beach uncordon' one$"):
        Placer().choose("random", None, {"n2": {"cordoned": True}, "n1": {"cordoned": True}}, list, ["x"])
    for strategy in STRATEGIES:
        if strategy != "host_affinity":
            assert set(choose(strategy, {"n1": {"cordoned": True}, "n2": {}}, times=30)) == {"n2"}


def test_a_strategy_is_checked_where_the_spawn_options_are():
    # (check_strategy went: SpawnOptions' Strategy is the one list, checked as addActor's arguments are)
    def options(**given):
        return typed.build(SpawnOptions, "addActor", UsageError, "Pong", "x", **given)
    assert options().strategy == "random"
    for strategy in STRATEGIES:
        assert options(strategy=strategy).strategy == strategy
    assert STRATEGIES == ("random", "resource", "affinity", "host_affinity", "repulsion", "roundrobin")
    with pytest.raises(UsageError) as err:
        options(strategy="nearest")
    assert str(err.value) == ("addActor: 'strategy' must be one of affinity, host_affinity, random, repulsion, "
                              "resource, roundrobin, not 'nearest'")
    # no strategy given, or None (the seed's scripts pass it), is the default; '' is refused, naming it
    assert options(strategy=None).strategy == "random"
    with pytest.raises(UsageError, match="^addActor: 'strategy' must be one of .*, not ''$"):
        options(strategy="")


# ---- nodes that are not up (issue 24): the view's unavailable ones, and those that failed a spawn ----


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return install(monkeypatch, placement)


def test_a_node_that_is_not_up_takes_no_new_actor():
    for strategy in STRATEGIES:
        if strategy != "host_affinity":
            placer = Placer()
            picks = Counter(placer.choose(strategy, None, NODES, list, ["x"], unavailable={"n1": "is stopping"})
                            for _ in range(40))
            assert set(picks) == {"n2", "n3"}, strategy
    # a node the view does not know is ignored, not counted
    assert set(choose("random", {"n1": {}}, times=20)) == {"n1"}
    assert Placer().choose("random", None, {"n1": {}}, list, ["x"], unavailable={"n7": "is late"}) == "n1"


def test_when_no_node_is_up_the_error_says_why_each_is_not():
    with pytest.raises(PlacementError) as err:
        Placer().choose("random", None, {"n1": {"cordoned": True}, "n2": {}, "n3": {}}, list, ["x"],
                        unavailable={"n3": "is late", "n2": "is stopping", "n1": "is late"})
    assert str(err.value) == "no node can take a new actor now: n1 is cordoned; n2 is stopping; n3 is late"
    assert err.value.unavailable is True


def test_host_affinity_goes_only_to_a_named_node_that_is_up():
    placer = Placer()
    pinned = {**NODES, "n4": {"hostname": "beta"}}
    assert set(Counter(placer.choose("host_affinity", "beta", pinned, list, ["x"], unavailable={"n2": "is late"})
                       for _ in range(20))) == {"n4"}
    with pytest.raises(PlacementError) as err:
        placer.choose("host_affinity", "beta", {**pinned, "n4": {"hostname": "beta", "cordoned": True}}, list, ["x"],
                      unavailable={"n2": "is late"})
    assert str(err.value) == "no node that host_affinity hint 'beta' names can take it now: n2 is late; n4 is cordoned"
    assert err.value.unavailable is True
    # a hint that names no node, or no hint, is the spawn's own fault
    with pytest.raises(PlacementError) as err:
        placer.choose("host_affinity", None, NODES, list, ["x"])
    assert err.value.unavailable is False
    with pytest.raises(PlacementError) as err:
        placer.choose("host_affinity", "delta", NODES, list, ["x"], unavailable={"n1": "is late"})
    assert str(err.value) == "no node matches host_affinity hint 'delta' (nodes: n1, n2, n3)"


def test_a_node_that_failed_a_spawn_is_skipped_for_a_while(clock):
    placer = Placer()
    placer.spawn_failed("n1", "node n1 is not answering")
    assert set(Counter(placer.choose("random", None, NODES, list, ["x"]) for _ in range(40))) == {"n2", "n3"}
    placer.spawn_failed("n2", "no actor host")
    placer.spawn_failed("n3", "boom")
    with pytest.raises(PlacementError) as err:
        placer.choose("random", None, NODES, list, ["x"])
    assert str(err.value) == ("no node can take a new actor now: n1 failed a spawn lately (node n1 is not answering); "
                              "n2 failed a spawn lately (no actor host); n3 failed a spawn lately (boom)")
    clock.now += placement.FAILED_SPAWN_SECONDS - 0.001
    with pytest.raises(PlacementError):
        placer.choose("random", None, NODES, list, ["x"])
    clock.now += 0.001  # FAILED_SPAWN_SECONDS after the failure: taken again
    assert set(Counter(placer.choose("random", None, NODES, list, ["x"]) for _ in range(40))) == {"n1", "n2", "n3"}
    # a cordon is named before anything else; a failed spawn before the view's reason
    other = Placer()
    other.spawn_failed("n1", "x")
    other.spawn_failed("n2", "y")
    with pytest.raises(PlacementError) as err:
        other.choose("random", None, {"n1": {"cordoned": True}, "n2": {}}, list, ["x"],
                     unavailable={"n1": "is late", "n2": "is late"})
    assert str(err.value) == "no node can take a new actor now: n1 is cordoned; n2 failed a spawn lately (y)"
    assert placement.FAILED_SPAWN_SECONDS == 10.0


def load(node: str, actors: int = 0, spawning: int = 0, cores: int = 2, cpu: float = 0.0,
         mem: float = 0.0) -> NodeLoad:
    return NodeLoad(node=node, t=0.0, cores=cores, cpu=[cpu] * cores, mem=mem, n_actors=actors, spawning=spawning)


def test_least_loaded_counts_actors_and_spawns_under_way_per_core_before_cpu():
    # idle CPU ties: the actors and the spawns under way decide (per core)
    assert placement.least_loaded({"a": load("a", actors=3), "b": load("b", actors=1, spawning=1)}) == "b"
    assert placement.least_loaded({"a": load("a", actors=4, cores=4), "b": load("b", actors=3, cores=2)}) == "a"
    assert placement.least_loaded({"a": load("a", spawning=2), "b": load("b", actors=1)}) == "b"
    # the same count: CPU and memory decide
    assert placement.least_loaded({"a": load("a", 2, cpu=50.0), "b": load("b", 2, cpu=10.0, mem=20.0)}) == "b"
    # a tie: either, both seen
    assert set(Counter(placement.least_loaded({"a": load("a"), "b": load("b")}) for _ in range(100))) == {"a", "b"}


def test_candidates_are_distinct_nodes_that_are_up():
    nodes = entries({n: {} for n in ("a", "b", "c")} | {"d": {"cordoned": True}})
    placer = placement.Placer()
    placer.spawn_failed("c", "gone")
    seen = Counter()
    for _ in range(200):
        picked = placer.candidates(nodes, {"b": "is stopping"}, k=2)
        assert picked == ["a"]  # the only one up: asked alone
        seen.update(picked)
    picked = {tuple(sorted(placement.Placer().candidates(nodes, {}, k=2))) for _ in range(300)}
    assert picked == {("a", "b"), ("a", "c"), ("b", "c")}  # every pair of the open nodes, never the cordoned one
    with pytest.raises(PlacementError, match="no node can take a new actor now"):
        placer.candidates(entries({"b": {}}), {"b": "is stopping"})


def test_load_key_known_answers():
    # (actors and spawns under way) per core, then the mean of CPU (over the cores) and memory, in percent
    assert placement.load_key(NodeLoad(node="n", t=0, cores=4, n_actors=5, spawning=3, cpu=[10, 30], mem=40)) == (
        2.0, 30.0)
    assert placement.load_key(NodeLoad(node="n", t=0, cores=0, n_actors=3, mem=20)) == (3.0, 10.0)  # no CPU figures: 0
    assert placement.load_key(NodeLoad(node="n", t=0, cores=1, n_actors=1, cpu=[50], mem=10)) == (1.0, 30.0)
