"""Every decoder of what comes off the bus, fuzzed: it returns a clean record or raises its own
error (`RecordError` / ``ValueError``), never anything else; formats that upgrade."""

from __future__ import annotations

import logging
import types
import uuid
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beach import logs, wire
from beach.client.response import ActorResponse
from beach.state import records
from beach.state.records import RecordError

# msgpack-shaped values: what a careless client can write into a bucket or onto a subject
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.binary(max_size=20))
values = st.recursive(scalars, lambda children: st.lists(children, max_size=5)
                      | st.dictionaries(st.text(max_size=12) | st.integers(-2**63, 2**63), children, max_size=6),
                      max_leaves=25)

GOOD_SPAWN = {"name": "Pong", "categories": ["a/b"], "realm": "global"}
GOOD = {
    "actor": (records.ACTOR, {"uid": "u1", "realm": "global", "name": "Pong", "categories": ["a"], "node": "n1",
                              "host": "n1-h1", "pid": 12, "started": 1.5}),
    "node": (records.NODE, {"id": "n1", "hostname": "h", "cpu": [1.0, 2.0], "mem": 3.0, "updated": 2.0}),
    "spawn": (records.SPAWN, GOOD_SPAWN),
    "supervision": (records.SUPERVISION, {"sid": "s1", "spawn": GOOD_SPAWN, "restart": "on-failure", "uid": "u1"}),
    "lease": (records.LEASE, {"holder": "n1"}),
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def conforms(value: object, hint: object) -> bool:
    """Whether ``value`` is of the Python type ``hint`` (a record's annotation), by the annotation
    alone: the oracle of what a record may hold, independent of the checks that produce it."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin is Annotated:
        return conforms(value, args[0])
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    if origin is list:
        return isinstance(value, list) and all(conforms(x, args[0]) for x in value)
    if origin is dict or is_typeddict(hint):
        return isinstance(value, dict) and (not is_typeddict(hint) or all(
            conforms(value.get(k), h) for k, h in get_type_hints(hint).items() if k != "v"))
    raise AssertionError(f"no oracle for {hint!r}")


def assert_conforms(record: dict, record_type: type) -> None:
    for name, hint in get_type_hints(record_type).items():
        assert conforms(record[name], hint), (name, record[name], hint)


def mutations(good: dict) -> st.SearchStrategy[dict]:
    """A good record with fields dropped, replaced by anything, or added."""
    return st.builds(lambda drop, put, extra: {**{k: v for k, v in good.items() if k not in drop}, **put, **extra},
                     st.sets(st.sampled_from(sorted(good))), st.dictionaries(st.sampled_from(sorted(good)), values,
                                                                            max_size=3),
                     st.dictionaries(st.text(max_size=8), values, max_size=2))


# ---- known answers: every desired-state key to its record, defaults spelled out by hand ---------

DIGEST = "sha256:" + "0123456789abcdef" * 4
SPAWN_DEFAULTS = {"v": 1, "parameters": {}, "resources": {}, "ident": None, "trusted": [], "isolated": False,
                  "n_concurrent": 1, "max_concurrent": None, "is_drainable": False, "time_to_drain": None,
                  "owner": None, "log_level": None, "timeout": None, "strategy": "random", "strategy_hint": None,
                  "restart": "never", "sid": None, "version": None, "uid": None, "node": None}


@pytest.mark.parametrize("key, value, expected", [
    ("sup.global.s1", {"sid": "s1", "spawn": GOOD_SPAWN, "restart": "on-failure", "uid": "u1"},
     {"v": 1, "kind": "actor", "sid": "s1", "spawn": {**GOOD_SPAWN, **SPAWN_DEFAULTS}, "restart": "on-failure",
      "max_restarts": 5, "restart_window": 60.0, "uid": "u1", "state": "running", "restarts": [], "created": 0.0,
      "last_restart": None, "last_error": None, "waiting_for": None, "failed_at": None, "version": None}),
    ("lease.supervisor", {"holder": "n1"}, {"v": 1, "holder": "n1"}),
    ("cordon.n1", {"node": "n1", "who": "ops"}, {"v": 1, "node": "n1", "who": "ops", "when": 0.0}),
    ("code.shop.current", {"realm": "shop", "version": "v2"},
     {"v": 1, "realm": "shop", "version": "v2", "who": "?", "when": 0.0, "previous": None}),
    ("code.shop.v.v2", {"realm": "shop", "version": "v2", "digest": DIGEST, "size": 10},
     {"v": 1, "realm": "shop", "version": "v2", "digest": DIGEST, "size": 10, "files": 0, "who": "?", "when": 0.0,
      "requirements": [], "sealed": False}),
    ("patrol.shop", {"owner": "shop", "actors": []}, {"v": 1, "owner": "shop", "realm": "global", "actors": []}),
    ("patrol.shop", {"v": 1, "owner": "shop", "realm": "r", "actors": []},
     {"v": 1, "owner": "shop", "realm": "r", "actors": []}),
    ("patrol.shop", {"v": 0, "owner": "shop", "actors": []},
     {"v": 1, "owner": "shop", "realm": "global", "actors": []}),
])
def test_desired_records_known_answers(key, value, expected):
    assert records.desired(key, value) == expected


@pytest.mark.parametrize("key, value, message", [
    ("sup.global.s1", {}, "supervision record sup.global.s1: 'sid' is missing"),
    ("lease.supervisor", {}, "lease record lease.supervisor: 'holder' is missing"),
    ("cordon.n1", {}, "cordon record cordon.n1: 'node' is missing"),
    # a version's key asks for the version's fields (a digest), the current one's does not
    ("code.shop.v.v2", {"realm": "shop", "version": "v2"}, "code version record code.shop.v.v2: 'digest' is missing"),
    ("code.shop.current", {}, "current code record code.shop.current: 'realm' is missing"),
    ("patrol.shop", {"owner": "shop", "realm": "bad realm", "actors": []},
     "patrol record patrol.shop: 'realm': 'bad realm' is not a realm name: "),
    ("patrol.shop", [], "patrol record patrol.shop: a patrol spec must be a mapping with 'owner' and 'actors'"),
    ("patrol.shop", {"v": 2, "owner": "shop", "actors": []},
     "patrol record patrol.shop: written by a newer beach (format 2; this one reads formats up to 1): upgrade this "
     "process"),
    ("patrol.shop", {"v": 1, "owner": "shop", "actors": [], "extra": 1},
     "patrol record patrol.shop: unknown key(s) ['extra'] (known: owner, realm, actors)"),
    ("other.x", {}, "'other.x' is not a desired-state key (sup.*, patrol.*, lease.*, code.*, cordon.*)"),
    ("Sup.x", {}, "'Sup.x' is not a desired-state key"),
])
def test_a_bad_desired_record_names_its_key_and_what_is_wrong(key, value, message):
    with pytest.raises(RecordError) as err:
        records.desired(key, value)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("digest, good", [
    (DIGEST, True),
    ("sha256:" + "f" * 64, True),
    ("sha256:" + "F" * 64, False),  # lower-case hex only: the digest is a name compared as text
    ("sha256:" + "0" * 63, False),
    ("sha256:" + "0" * 65, False),
    ("sha256:" + "0" * 63 + "g", False),
    ("sha256:g" + "0" * 63, False),
    ("sha256:" + "X" * 64, False),
    ("sha512:" + "0" * 64, False),
    ("0" * 71, False),
])
def test_a_code_version_names_its_bundle_by_sha256(digest, good):
    value = {"realm": "shop", "version": "v2", "digest": digest, "size": 10}
    if good:
        assert records.CODE_VERSION.check(value, "k")["digest"] == digest
    else:
        with pytest.raises(RecordError) as err:
            records.desired("code.shop.v.v2", value)
        assert str(err.value) == (f"code version record code.shop.v.v2: 'digest' must be sha256:<64 hex digits>, "
                                  f"not {digest!r:.80}")


@pytest.mark.parametrize("version, message", [
    (True, "'v' must be a format number, not True"),
    ("1", "'v' must be a format number, not '1'"),
    (-1, "'v' must be a format number, not -1"),
    (1.0, "'v' must be a format number, not 1.0"),
    (2, "written by a newer beach (format 2; this one reads formats up to 1): upgrade this process"),
])
def test_a_records_format_number_is_checked(version, message):
    with pytest.raises(RecordError) as err:
        records.LEASE.check({"holder": "n1", "v": version}, "lease.supervisor")
    assert str(err.value) == f"lease record lease.supervisor: {message}"


def test_this_releases_format_and_the_one_before_are_read():
    assert records.LEASE.check({"holder": "n1", "v": 1}) == {"holder": "n1", "v": 1}
    assert records.LEASE.check({"holder": "n1", "v": 0}) == {"holder": "n1", "v": 1}
    assert records.LEASE.check({"holder": "n1"}) == {"holder": "n1", "v": 1}


def test_where_a_record_was_read_is_named_only_when_given():
    with pytest.raises(RecordError) as err:
        records.NODE.check({})
    assert str(err.value) == "node record: 'id' is missing"
    with pytest.raises(RecordError) as err:
        records.NODE.check({}, "n1")
    assert str(err.value) == "node record n1: 'id' is missing"


@pytest.mark.parametrize("change, message", [
    ({"restart": "sometimes"}, "spawn record: 'restart' must be one of never, on-failure, always, not 'sometimes'"),
    ({"categories": []}, "spawn record: 'categories' must not be empty"),
])
def test_a_spawns_own_checks_name_the_field(change, message):
    with pytest.raises(RecordError) as err:
        records.SPAWN.check({**GOOD_SPAWN, **change})
    assert str(err.value) == message


def test_new_makes_a_record_of_this_format_and_checks_it():
    assert records.LEASE.new(holder="n1") == {"holder": "n1", "v": 1}
    assert records.CORDON.new(node="n1", who="ops", when=2.5) == {"node": "n1", "who": "ops", "when": 2.5, "v": 1}
    with pytest.raises(RecordError, match="^lease record: 'holder' must be a string, not int"):
        records.LEASE.new(holder=5)


# ---- what any input does (Hypothesis, judged by the annotations and by msgpack) ---------------

@pytest.mark.parametrize("kind", sorted(GOOD))
def test_a_record_is_its_type_and_nothing_else(kind):
    # the TypedDict is the one definition: a checked record has exactly its keys, each of its kind
    schema, good = GOOD[kind]
    record = schema.check(good)
    hints = get_type_hints(schema.type)
    assert set(record) == set(hints)
    assert record["v"] == records.FORMAT
    optional = {f.name for f in schema.fields if f.optional}
    assert optional == {name for name, hint in hints.items() if type(None) in get_args(hint)}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_good_records_and_their_defaults(kind):
    schema, good = GOOD[kind]
    record = schema.check(good)
    assert record["v"] == records.FORMAT
    assert all(record[k] == v or isinstance(v, dict) and v.items() <= record[k].items() for k, v in good.items())
    assert all(f.name in record for f in schema.fields)


@pytest.mark.parametrize("kind", sorted(GOOD))
@FUZZ
@given(data=st.data())
def test_a_decoder_takes_anything_and_raises_only_its_own_error(kind, data):
    schema, good = GOOD[kind]
    value = data.draw(values | mutations(good))
    try:
        record = schema.check(value, "k")
    except RecordError as err:
        assert str(err).startswith(f"{kind} record")
    else:  # what passes is clean: every field of the Python type its annotation names
        assert_conforms(record, schema.type)


@FUZZ
@given(key=st.sampled_from(["sup.global.s1", "patrol.shop", "lease.supervisor", "other.x", "sup.", "cordon.n1",
                            "code.r.current", "code.r.v.1"]),
       value=values | mutations(GOOD["supervision"][1]) | mutations(GOOD["lease"][1]))
def test_desired_records_by_key(key, value):
    try:
        record = records.desired(key, value)
    except RecordError:
        return
    # what passes is a record of the type the key names, every field of its annotated type
    kind = {"sup": records.SupervisionRecord, "lease": records.Lease, "cordon": records.Cordon,
            "code": records.CodeCurrent if key.endswith(".current") else records.CodeVersion}.get(key.split(".")[0])
    assert key != "other.x"
    if kind is not None:
        assert_conforms(record, kind)
    else:
        assert key.startswith("patrol.") and isinstance(record["owner"], str) and isinstance(record["actors"], list)


@FUZZ
@given(body=st.binary(max_size=200) | values.map(lambda v: msgpack.packb(v, use_bin_type=True)))
def test_envelopes_and_lines_off_the_wire(body):
    try:  # what decodes is what the body held (msgpack's reading of it is the oracle)
        request = wire.unpack_request(body)
    except ValueError:
        pass
    else:
        assert msgpack.unpackb(body, raw=False, strict_map_key=False) == [1, *request]
    try:
        reply = wire.unpack_reply(body)
    except ValueError:
        pass
    else:
        held = msgpack.unpackb(body, raw=False, strict_map_key=False)
        assert [held[-3], held[-2] or "", held[-1]] == list(reply) and isinstance(reply.error, str)
    line = logs.decode(body)
    assert line is None or (isinstance(line["msg"], str) and isinstance(line["levelno"], int))


def test_formats_upgrade():
    # the previous release wrote no version: read, with the same meaning
    old = {"sid": "s1", "spawn": GOOD_SPAWN, "restart": "always", "uid": "u1", "state": "running",
           "restarts": [1.0], "max_restarts": 5, "restart_window": 60, "created": 1.0}
    record = records.SUPERVISION.check(old)
    assert record["v"] == 1 and record["restart"] == "always" and record["spawn"]["isolated"] is False
    old_reply = wire.pack([True, "", {"a": 1}])
    assert wire.unpack_reply(old_reply) == (True, "", {"a": 1})
    assert wire.unpack_reply(wire.pack_reply(False, "e", 1)) == (False, "e", 1)
    # a newer release's record is refused, saying so
    with pytest.raises(RecordError, match="written by a newer beach .format 2; this one reads formats up to 1"):
        records.ACTOR.check({**GOOD["actor"][1], "v": 2})
    with pytest.raises(RecordError, match="newer beach"):
        records.desired("patrol.x", {"v": 7, "owner": "x", "actors": []})
    with pytest.raises(ValueError, match="from a newer beach"):
        wire.unpack_reply(wire.pack([9, True, "", {}]))


def test_every_reply_has_one_shape():
    # an actor's reply, a handler's return, a control answer and a body that is not a reply are
    # all a wire.Reply; a client reads any of them as an ActorResponse, failure kind included
    assert wire.normalize_return((True, {"a": 1})) == wire.Reply(True, "", {"a": 1})
    assert wire.normalize_return({"not": "a tuple"}).error == wire.Failure.INVALID_RESPONSE
    assert wire.read_reply(wire.pack_reply(False, "busy", {"uid": "u"}), "x").data == {"uid": "u"}
    broken = wire.read_reply(b"\xc1", "node n1 to spawn")
    assert broken.ok is False and broken.error.startswith("malformed reply from node n1 to spawn: ")
    response = ActorResponse(*broken)
    assert response.failure is wire.Failure.MALFORMED_REPLY and not response.isSuccess


@pytest.mark.parametrize("value, message", [
    ({"id": "n", "cpu": "x"}, "'cpu' must be a list of numbers"),
    ({"id": "n", "cpu": ["1.5"]}, "'cpu' must be a list of numbers"),
    ({"id": "n", "cpu": [True]}, "'cpu' must be a list of numbers"),
    ({"id": "n", "mem": "3"}, "'mem' must be a number, not str"),
    ({"id": "n", "mem": [3]}, "'mem' must be a number, not list"),
    ({"id": "n", "mem": False}, "'mem' must be a number, not bool"),
    ({"id": "n", "updated": "2024-01-01"}, "'updated' must be a number"),
    ({"id": "n", "pid": 1.5}, "'pid' must be a whole number, not float"),
    ({"id": "n", "cordoned": "yes"}, "'cordoned' must be true or false"),
    ({"id": "n", "addresses": ["10.0.0.1", ""]}, "'addresses' must be a list of names"),
    ({"id": ""}, "'id' must be a non-empty string"),
    ({"id": None}, "'id' is missing"),
    ({"hostname": "h"}, "'id' is missing"),
    ({"id": "n", "cores": True}, "'cores' must be a whole number"),
    ([1, 2], "must be a map, not list"),
])
def test_bad_node_records_name_the_field(value, message):
    with pytest.raises(RecordError, match=message):
        records.NODE.check(value, "n")


def test_a_rejected_record_is_logged_once_per_key_and_counted(caplog):
    # a key of its own each run: the process remembers which keys it logged (a mutation run runs
    # this test again in processes forked from one that already ran it)
    key = f"some.key.{uuid.uuid4().hex}"
    before = records.rejected["test-bucket"]
    with caplog.at_level(logging.WARNING, logger="beach.records"):
        for _ in range(3):
            records.reject("test-bucket", key, RecordError("bad"))
    assert records.rejected["test-bucket"] == before + 3
    assert [r.getMessage() for r in caplog.records if key in r.getMessage()] == [
        f"skipping a bad record in test-bucket at key {key!r}: bad"]



def test_the_memory_of_logged_keys_is_bounded(caplog, monkeypatch):
    # 10,000 keys are remembered; past that a bad key is logged each time rather than remembered
    monkeypatch.setattr(records, "_logged", {("test-bucket", f"k{i}") for i in range(9_999)})
    with caplog.at_level(logging.WARNING, logger="beach.records"):
        for key in ("last", "last", "over", "over"):
            records.reject("test-bucket", key, RecordError("bad"))
    assert [r.getMessage().split("'")[1] for r in caplog.records] == ["last", "over", "over"]
    assert len(records._logged) == 10_000
