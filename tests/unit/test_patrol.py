"""beach.patrol: specs of which actors should run and how many (their checking, their instance rules,
and the seed's Python patrol files).

The oracles: instance counts worked out by hand, and the errors each bad spec must name.
"""

from __future__ import annotations

import msgspec
import pytest

from beach import wire
from beach.errors import ConfigError
from beach.state import patrol
from beach.state.patrol import Instances, PatrolEntry
from beach.state.spawn import SpawnOptions


def spec(*entries: dict, **top) -> dict:
    return {"owner": "shop", "actors": list(entries), **top}


ENTRY = {"name": "f", "actor": "Pong", "category": "a/b"}


def test_a_patrol_spec_is_its_type_and_its_entries_take_addactor_arguments():
    # PatrolEntry is SpawnOptions (addActor's arguments, by their names) plus its own keys: the one
    # list of what an entry may carry
    own = {f.encode_name for f in msgspec.structs.fields(PatrolEntry)}
    assert own == {f.name for f in msgspec.structs.fields(SpawnOptions)} - {"actorName"} | {"actor", "name",
                                                                                          "instances"}
    checked = patrol.check({"owner": "shop", "actors": [{"name": "f", "actor": "Pong", "category": "a/b",
                                                         "max_concurrent": 4, "isIsolated": True}]})
    assert isinstance(checked, patrol.PatrolSpec)
    [entry] = checked.actors
    assert entry.category == ["a/b"] and entry.instances == 1 and entry.strategy == "repulsion"
    assert wire.unpack(wire.pack(entry)) == {"name": "f", "actor": "Pong", "category": ["a/b"], "max_concurrent": 4,
                                             "isIsolated": True}
    built = entry.spec("global", owner="patrol/shop/f")
    assert (built.actorName, built.isIsolated, built.max_concurrent, built.owner) == ("Pong", True, 4, "patrol/shop/f")
    with pytest.raises(ConfigError, match=r"unknown key 'actors\[0\].colour'$"):
        patrol.check({"owner": "shop", "actors": [{"name": "f", "actor": "Pong", "category": "a", "colour": 1}]})
    with pytest.raises(ConfigError, match="'owner' is the patrol spec's own"):
        patrol.check({"owner": "shop", "actors": [{"name": "f", "actor": "Pong", "category": "a", "owner": "x"}]})


def test_a_good_spec_is_normalized():
    checked = patrol.check(spec({**ENTRY, "category": ["/a/b/", "c"], "instances": {"per_node": 2, "max": 5},
                                 "strategy": "resource"}, {**ENTRY, "name": "g"}))
    # (as stored: the fields at their defaults, realm global, one instance, repulsion, left out)
    assert wire.unpack(wire.pack(checked)) == {"v": 1, "owner": "shop", "actors": [
        {**ENTRY, "category": ["a/b", "c"], "instances": {"per_node": 2, "max": 5}, "strategy": "resource"},
        {**ENTRY, "name": "g", "category": ["a/b"]}]}
    assert checked.realm == "global" and checked.actors[1].instances == 1
    assert checked.actors[1].strategy == "repulsion"
    assert patrol.check(spec(realm="realm-one")).realm == "realm-one"
    assert patrol.check({"owner": "x", "actors": None}).actors == []


@pytest.mark.parametrize("raw, message", [
    ([1], "it must be a map, not a list"),
    ({"owner": "shop", "colour": 1}, "unknown key 'colour'"),
    ({"actors": []}, "'owner' is missing"),
    ({"owner": "a/b"}, "'owner' must be a name without '/', not 'a/b'"),
    ({"owner": ""}, "'owner' must be a non-empty string"),
    (spec(realm="a b"), "'realm': 'a b' is not a realm name: use letters, digits, '_', '-' and '.' (not first, "
                        "never '..'), at most 128 of them"),
    ({"owner": "shop", "actors": {"a": 1}}, "'actors' must be a list, not a map"),
    (spec("x"), "'actors[0]' must be a map, not a string"),
    (spec({**ENTRY, "name": ""}), "'actors[0].name' must be a non-empty string"),
    (spec({**ENTRY, "actor": 3}), "'actors[0].actor' must be a string, not a whole number"),
    (spec(ENTRY, ENTRY), "entry name 'f' is repeated"),
    (spec({**ENTRY, "name": "a/b"}), "'actors[0]': entry name 'a/b' has a '/'"),
    (spec({**ENTRY, "category": []}), "'actors[0]': addActor needs at least one category"),
    (spec({**ENTRY, "category": 5}), "'actors[0].category' must be a string or a list, not a whole number"),
    (spec({**ENTRY, "category": "a//b"}), "'actors[0]': category 'a//b' has an empty segment ('//')"),
    (spec({**ENTRY, "instances": -1}), "'actors[0].instances' must be a whole number >= 0"),
    (spec({**ENTRY, "instances": True}), "'actors[0].instances' must be a whole number or a map, not true or false"),
    (spec({**ENTRY, "instances": "2"}), "'actors[0].instances' must be a whole number or a map, not a string"),
    (spec({**ENTRY, "instances": {"per_rack": 1}}), "unknown key 'actors[0].instances.per_rack'"),
    (spec({**ENTRY, "instances": {"per_node": -0.5}}), "'actors[0].instances.per_node' must be a number >= 0"),
    (spec({**ENTRY, "instances": {"min": 1.5}}), "'actors[0].instances.min' must be a whole number, not a number"),
    (spec({**ENTRY, "instances": {"max": False}}),
     "'actors[0].instances.max' must be a whole number or null, not true or false"),
    (spec({**ENTRY, "instances": {"per_core": float("inf")}}),  # (YAML's .inf) endless instances
     "'actors[0].instances.per_core' must be a number <= 1000000"),
    (spec({**ENTRY, "instances": {"per_node": float("nan")}}), "'actors[0].instances.per_node' must be a number >= 0"),
    (spec({**ENTRY, "instances": {"min": 5, "max": 2}}), "'actors[0].instances': 'min' (5) is more than 'max' (2)"),
    (spec({**ENTRY, "parameters": 5}), "'actors[0].parameters' must be a map or null, not a whole number"),
    (spec({**ENTRY, "strategy": "nearest"}), "'actors[0].strategy' must be one of affinity, host_affinity, random, "
                                             "repulsion, resource, roundrobin, not 'nearest'"),
    (spec({**ENTRY, "n_concurrent": 0}), "'actors[0].n_concurrent' must be a whole number >= 1"),
])
def test_a_bad_spec_is_refused_naming_the_problem(raw, message):
    with pytest.raises(ConfigError) as err:
        patrol.check(raw, "shop.yaml")
    assert str(err.value) == f"shop.yaml: {message}"
    with pytest.raises(ConfigError) as err:
        patrol.check(raw)
    assert str(err.value) == f"patrol spec: {message}"


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
    ({"per_node": 1e6, "per_core": 1e6}, 2, 4, 6_000_000),  # the largest shares are finite
    ({"count": 3, "min": 3, "max": 3}, 3, 12, 3),  # min == max is one number
])
def test_instance_rules(rule, nodes, cores, expected):
    count = patrol.instances(rule if isinstance(rule, int) else msgspec.convert(rule, Instances), nodes, cores)
    assert count == expected and type(count) is int


def test_owner_tags():
    assert patrol.owner_tag("shop", "front") == "patrol/shop/front"


def test_a_python_patrol_file_of_the_seed_is_read(tmp_path):
    path = tmp_path / "webfarm.py"
    path.write_text("Patrol('front', initialInstances=NUM_NODES, maxInstances=8,\n"
                    "       actorArgs=['Frontend', 'shop/front'], actorKwArgs={'strategy': 'resource'})\n"
                    "Patrol('workers', initialInstances=NUM_CPU_CORES(), actorKwArgs={'actorName': 'Worker',\n"
                    "       'category': 'shop/work', 'owner': 'ignored', 'realm': 'ignored', 'parameters': None})\n"
                    "Patrol('one', actorArgs=['Single', 'shop/one'])\n"
                    "Patrol('capped', initialInstances=3, maxInstances=2, actorArgs=['Single', 'shop/capped'])\n"
                    "Patrol('called', initialInstances=lambda: 4, actorArgs=['Single', 'shop/called'])\n")
    checked = patrol.load(str(path))
    assert checked.owner == "webfarm" and checked.realm == "global"
    assert [(e.name, e.actorName, e.category, e.instances) for e in checked.actors] == [
        ("front", "Frontend", ["shop/front"], Instances(per_node=1, max=8)),
        ("workers", "Worker", ["shop/work"], Instances(per_core=1)),
        ("one", "Single", ["shop/one"], 1),
        ("capped", "Single", ["shop/capped"], Instances(count=3, max=2)),
        ("called", "Single", ["shop/called"], 4),  # a callable is called, as the seed did
    ]
    assert checked.actors[0].strategy == "resource" and checked.actors[1].strategy == "repulsion"
    assert checked.actors[1].parameters is None
    assert patrol.load(str(path), owner="farm", realm="r1").owner == "farm"


def test_a_yaml_spec_is_read_and_its_owner_may_be_given(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("owner: shop\nactors:\n  - {name: f, actor: Pong, category: a}\n")
    assert patrol.load(str(path)).owner == "shop"
    assert patrol.load(str(path), owner="other").owner == "other"
    path.write_text("owner: [\n")
    with pytest.raises(ConfigError, match=r"shop.yaml: not valid YAML"):
        patrol.load(str(path))
    with pytest.raises(ConfigError, match=r"^cannot read patrol spec .*none.yaml: "):
        patrol.load(str(tmp_path / "none.yaml"))


def test_an_entrys_spawn_request_is_placed_by_repulsion_unless_it_says(tmp_path):
    checked = patrol.check(spec(ENTRY, {**ENTRY, "name": "g", "strategy": "resource", "parameters": {"p": 1}}))
    first, second = (e.spec("global", owner=patrol.owner_tag("shop", e.name)) for e in checked.actors)
    assert (first.strategy, first.owner, first.category, first.actorName, first.realm) == (
        "repulsion", "patrol/shop/f", ["a/b"], "Pong", "global")
    assert (second.strategy, second.parameters) == ("resource", {"p": 1})
    assert wire.unpack(wire.pack(first))["categories"] == ["a/b"]  # the wire's name of the field


@pytest.mark.parametrize("text, message", [
    ("Patrol('x', actorArgs=['A'\n", "the patrol file failed: SyntaxError: '[' was never closed (bad.py, line 1)"),
    ("Patrol('x', actorArgs=['A', 'c'], colour=1)\n",
     "the patrol file failed: TypeError: Patrol() got an unexpected keyword argument 'colour'"),
    ("raise RuntimeError('boom')\n", "the patrol file failed: RuntimeError: boom"),
    ("Patrol('x')\n", "'actors[0].actor' must be a string, not null"),
    ("Patrol('x', actorArgs=['A'])\n", "'actors[0].category' must be a string or a list, not null"),
    ("Patrol('x', actorArgs=['A', 'c'], initialInstances=-1)\n", "'actors[0].instances' must be a whole number >= 0"),
    ("Patrol('x', actorArgs=['A', 'c'], initialInstances=5, maxInstances=2)\nPatrol('x', actorArgs=['A', 'c'])\n",
     "entry name 'x' is repeated"),
])
def test_a_bad_python_patrol_file_is_refused_in_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.py"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        patrol.load(str(path))
    assert str(err.value) == f"{path}: {message}"


def test_a_python_patrol_file_knows_its_own_path_and_a_missing_one_is_named(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("import os\n"
                    "Patrol(os.path.basename(__file__)[:-3], actorArgs=['A', 'c'], actorKwArgs={'realm': 'x'})\n")
    checked = patrol.load(str(path), realm="r1")
    assert (checked.owner, checked.realm, [e.name for e in checked.actors]) == ("mine", "r1", ["mine"])
    assert checked.actors[0].realm is None  # (an entry's realm is the spec's)
    with pytest.raises(ConfigError, match=rf"^cannot read patrol spec {tmp_path / 'none.py'}: .*No such file"):
        patrol.load(str(tmp_path / "none.py"))


def test_spec_files_are_utf8_whatever_the_locale(tmp_path, monkeypatch):
    def latin1_open(file, mode="r", buffering=-1, encoding=None, *args, **kwargs):  # a Latin-1 locale's open
        return open(file, mode, buffering, encoding or "latin-1", *args, **kwargs)

    monkeypatch.setattr(patrol, "open", latin1_open, raising=False)
    (tmp_path / "s.yaml").write_text("owner: café\nactors: [{name: f, actor: Pong, category: a}]\n", encoding="utf-8")
    assert patrol.load(str(tmp_path / "s.yaml")).owner == "café"
    (tmp_path / "s.py").write_text("Patrol('zoë', actorArgs=['Pong', 'a'])\n", encoding="utf-8")
    assert patrol.load(str(tmp_path / "s.py")).actors[0].name == "zoë"
