"""beach.state.placement: which node a spawn goes to, strategy by strategy (through `Placer.choose`).

The oracles: loads worked out by hand from the figures given, and counts of a strategy's choices
over many spawns (every eligible node chosen, no other ever).
"""

from __future__ import annotations

from collections import Counter

import pytest

from beach.errors import UsageError
from beach.state.placement import STRATEGIES, PlacementError, Placer, check_strategy, hosts_matching, node_load


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


def test_check_strategy():
    assert check_strategy(None) == "random" and check_strategy("") == "random"
    for strategy in STRATEGIES:
        assert check_strategy(strategy) == strategy
    with pytest.raises(UsageError, match=r"^unknown spawn strategy 'nearest': use one of random, resource, affinity, "
                                         r"host_affinity, repulsion, roundrobin$"):
        check_strategy("nearest")
