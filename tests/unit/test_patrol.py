"""beach.patrol: specs of which actors should run and how many (their checking, their instance rules,
and the seed's Python patrol files).

The oracles: instance counts worked out by hand, and the errors each bad spec must name.
"""

from __future__ import annotations

import inspect
from typing import get_type_hints

import pytest

from beach import patrol
from beach.errors import ConfigError
from beach.state.spawn import spawn_args


def spec(*entries: dict, **top) -> dict:
    return {"owner": "shop", "actors": list(entries), **top}


ENTRY = {"name": "f", "actor": "Pong", "category": "a/b"}


def test_a_patrol_spec_is_its_type_and_its_entries_take_addactor_arguments():
    # PatrolEntry is the one list of what an entry may carry: its optional keys are passed on to
    # spawn_args by name, so each must be one of spawn_args' parameters
    assert patrol.SPAWN_KEYS <= set(inspect.signature(spawn_args).parameters)
    assert patrol.ENTRY_KEYS == {"name", "actor", "category", "instances"}
    checked = patrol.check({"owner": "shop", "actors": [{"name": "f", "actor": "Pong", "category": "a/b",
                                                         "max_concurrent": 4}]})
    assert set(checked) == set(get_type_hints(patrol.PatrolSpec))
    entry = checked["actors"][0]
    assert set(entry) <= set(get_type_hints(patrol.PatrolEntry))
    assert entry["category"] == ["a/b"] and entry["instances"] == 1
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\]"):
        patrol.check({"owner": "shop", "actors": [{"name": "f", "actor": "Pong", "category": "a", "colour": 1}]})


def test_a_good_spec_is_normalized():
    checked = patrol.check(spec({**ENTRY, "category": ["/a/b/", "c"], "instances": {"per_node": 2, "max": 5},
                                 "strategy": "resource"}, {**ENTRY, "name": "g"}))
    assert checked == {"owner": "shop", "realm": "global", "actors": [
        {**ENTRY, "category": ["a/b", "c"], "instances": {"per_node": 2, "max": 5}, "strategy": "resource"},
        {**ENTRY, "name": "g", "category": ["a/b"], "instances": 1}]}
    assert patrol.check(spec(realm="realm-one"))["realm"] == "realm-one"
    assert patrol.check({"owner": "x", "actors": None})["actors"] == []


@pytest.mark.parametrize("raw, message", [
    ([1], "a patrol spec must be a mapping with 'owner' and 'actors'"),
    ({"owner": "shop", "colour": 1}, r"unknown key\(s\) \['colour'\] \(known: owner, realm, actors\)"),
    ({"actors": []}, "'owner' must be a non-empty name without '/', not None"),
    ({"owner": "a/b"}, "'owner' must be a non-empty name without '/', not 'a/b'"),
    ({"owner": ""}, "'owner' must be a non-empty name"),
    (spec(realm="a b"), "'realm': 'a b' is not a realm name"),
    ({"owner": "shop", "actors": {"a": 1}}, "'actors' must be a list"),
    (spec("x"), r"actors\[0\] must be a mapping"),
    (spec({**ENTRY, "name": ""}), r"actors\[0\]: 'name' must be a non-empty string"),
    (spec({**ENTRY, "actor": 3}), r"actors\[0\]: 'actor' must be a non-empty string"),
    (spec(ENTRY, ENTRY), r"actors\[1\]: entry name 'f' is repeated or has a '/'"),
    (spec({**ENTRY, "name": "a/b"}), r"entry name 'a/b' is repeated or has a '/'"),
    (spec({**ENTRY, "category": []}), "'category' must be a category or a non-empty list of them"),
    (spec({**ENTRY, "category": 5}), "'category' must be a category or a non-empty list of them"),
    (spec({**ENTRY, "category": "a//b"}), r"actors\[0\]: 'category': category 'a//b' has an empty segment"),
    (spec({**ENTRY, "instances": -1}), "'instances' must be 0 or more, not -1"),
    (spec({**ENTRY, "instances": True}), "'instances' must be an int or a mapping, not True"),
    (spec({**ENTRY, "instances": "2"}), "'instances' must be an int or a mapping, not '2'"),
    (spec({**ENTRY, "instances": {"per_rack": 1}}), r"unknown key\(s\) \['per_rack'\] in 'instances'"),
    (spec({**ENTRY, "instances": {"per_node": -0.5}}), "'instances.per_node' must be a number 0 or more, not -0.5"),
    (spec({**ENTRY, "instances": {"min": 1.5}}), "'instances.min' must be a whole number 0 or more, not 1.5"),
    (spec({**ENTRY, "instances": {"max": False}}), "'instances.max' must be a whole number 0 or more, not False"),
    (spec({**ENTRY, "strategy": "nearest"}), r"actors\[0\]: unknown spawn strategy 'nearest'"),
    (spec({**ENTRY, "n_concurrent": 0}), r"actors\[0\]: addActor: n_concurrent must be a whole number above 0"),
])
def test_a_bad_spec_is_refused_naming_the_problem(raw, message):
    with pytest.raises(ConfigError, match=f"^shop.yaml: .*{message}"):
        patrol.check(raw, "shop.yaml")


@pytest.mark.parametrize("rule, nodes, cores, expected", [
    (3, 10, 40, 3),
    (0, 10, 40, 0),
    ({"per_node": 2}, 3, 12, 6),
    ({"per_node": 0.5}, 3, 12, 2),  # rounded up
    ({"per_core": 1}, 3, 12, 12),
    ({"per_core": 0.1}, 3, 12, 2),
    ({"count": 1, "per_node": 1, "per_core": 1}, 3, 12, 16),
    ({"per_node": 1, "min": 5}, 3, 12, 5),
    ({"per_node": 4, "max": 10}, 3, 12, 10),
    ({"per_node": 4, "min": 2, "max": 10}, 0, 0, 2),
    ({"count": 7, "max": 0}, 3, 12, 0),
    ({}, 3, 12, 0),
])
def test_instance_rules(rule, nodes, cores, expected):
    count = patrol.instances(rule, nodes, cores)
    assert count == expected and type(count) is int


def test_owner_tags():
    assert patrol.owner_tag("shop", "front") == "patrol/shop/front"


def test_a_python_patrol_file_of_the_seed_is_read(tmp_path):
    path = tmp_path / "webfarm.py"
    path.write_text("Patrol('front', initialInstances=NUM_NODES, maxInstances=8,\n"
                    "       actorArgs=['Frontend', 'shop/front'], actorKwArgs={'strategy': 'repulsion'})\n"
                    "Patrol('workers', initialInstances=NUM_CPU_CORES(), actorKwArgs={'actorName': 'Worker',\n"
                    "       'category': 'shop/work', 'owner': 'ignored', 'realm': 'ignored', 'parameters': None})\n"
                    "Patrol('one', actorArgs=['Single', 'shop/one'])\n"
                    "Patrol('capped', initialInstances=3, maxInstances=2, actorArgs=['Single', 'shop/capped'])\n")
    checked = patrol.load(str(path))
    assert checked["owner"] == "webfarm" and checked["realm"] == "global"
    assert [(e["name"], e["actor"], e["category"], e["instances"]) for e in checked["actors"]] == [
        ("front", "Frontend", ["shop/front"], {"per_node": 1, "max": 8}),
        ("workers", "Worker", ["shop/work"], {"per_core": 1}),
        ("one", "Single", ["shop/one"], 1),
        ("capped", "Single", ["shop/capped"], {"count": 3, "max": 2}),
    ]
    assert checked["actors"][0]["strategy"] == "repulsion" and "parameters" not in checked["actors"][1]
    assert patrol.load(str(path), owner="farm", realm="r1")["owner"] == "farm"


def test_a_yaml_spec_is_read_and_its_owner_may_be_given(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("owner: shop\nactors:\n  - {name: f, actor: Pong, category: a}\n")
    assert patrol.load(str(path))["owner"] == "shop"
    assert patrol.load(str(path), owner="other")["owner"] == "other"
    path.write_text("owner: [\n")
    with pytest.raises(ConfigError, match=r"shop.yaml: not valid YAML"):
        patrol.load(str(path))
    with pytest.raises(ConfigError, match=r"^cannot read patrol spec .*none.yaml: "):
        patrol.load(str(tmp_path / "none.yaml"))


def test_an_entrys_spawn_request_is_placed_by_repulsion_unless_it_says(tmp_path):
    checked = patrol.check(spec(ENTRY, {**ENTRY, "name": "g", "strategy": "resource", "parameters": {"p": 1}}))
    first, second = (patrol.entry_spawn_args(e, "global", patrol.owner_tag("shop", e["name"]))
                     for e in checked["actors"])
    assert (first["strategy"], first["owner"], first["categories"], first["name"]) == (
        "repulsion", "patrol/shop/f", ["a/b"], "Pong")
    assert (second["strategy"], second["parameters"]) == ("resource", {"p": 1})
