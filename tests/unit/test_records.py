"""Every decoder of what comes off the bus, fuzzed: it returns a clean record or raises its own
error (`RecordError` / ``ValueError``), never anything else; formats that upgrade."""

from __future__ import annotations

import base64
import inspect
import json
import logging
import types
import uuid
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beach import logs, wire
from beach.client.response import ActorResponse
from beach.security.audit import AuditRecord
from beach.security.authority import SIGNED
from beach.state import desired, records
from beach.state.desired import CodeCurrent, CodeVersion, Cordon, LeaseRecord, SupervisionRecord
from beach.state.patrol import Instances, PatrolSpec
from beach.state.records import ActorEntry, NodeEntry, NodeLoad, RecordError
from beach.state.spawn import SpawnOptions, SpawnSpec
from beach.wire import typed

# msgpack-shaped values: what a careless client can write into a bucket or onto a subject
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.binary(max_size=20))
values = st.recursive(scalars, lambda children: st.lists(children, max_size=5)
                      | st.dictionaries(st.text(max_size=12) | st.integers(-2**63, 2**63), children, max_size=6),
                      max_leaves=25)

GOOD_SPAWN = {"name": "Pong", "categories": ["a/b"], "realm": "global"}
GOOD = {
    "actor": (ActorEntry, {"uid": "u1", "realm": "global", "name": "Pong", "categories": ["a"], "node": "n1",
                           "host": "n1-h1", "pid": 12, "started": 1.5}),
    "node": (NodeEntry, {"id": "n1", "hostname": "h", "cpu": [1.0, 2.0], "mem": 3.0, "updated": 2.0}),
    "spawn": (SpawnSpec, GOOD_SPAWN),
    "supervision": (SupervisionRecord, {"sid": "s1", "spawn": GOOD_SPAWN, "restart": "on-failure", "uid": "u1"}),
    "lease": (LeaseRecord, {"holder": "n1"}),
    "node load": (NodeLoad, {"node": "n1", "t": 2.5, "cores": 4, "cpu": [10.0, 20.5], "mem": 30.0,
                             "mem_available": 1 << 30, "n_actors": 3, "actors_by_realm": {"global": 3},
                             "hosts": {"n1-h1": 3}, "spawning": 1}),
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def conforms(value: object, hint: object) -> bool:
    """Whether ``value`` is of the Python type ``hint`` (a record's annotation), by the annotation
    alone: the oracle of what a record may hold, independent of the checks that produce it."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in args
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
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return isinstance(value, hint) and all(conforms(getattr(value, k), h) for k, h in fields_of(hint).items())
    raise AssertionError(f"no oracle for {hint!r}")


def fields_of(record_type: type) -> dict[str, object]:
    """The annotated fields of a record type (its ClassVars, such as ``what``, are not fields)."""
    return {k: h for k, h in get_type_hints(record_type).items() if get_origin(h) is not ClassVar}


def assert_conforms(record: msgspec.Struct, record_type: type) -> None:
    assert isinstance(record, record_type)
    for name, hint in fields_of(record_type).items():
        assert conforms(getattr(record, name), hint), (name, getattr(record, name), hint)


def full(value: object) -> object:
    """A record as the map of every field (by its name on the wire), defaults included."""
    if isinstance(value, msgspec.Struct):
        return {f.encode_name: full(getattr(value, f.name)) for f in msgspec.structs.fields(value)}
    if isinstance(value, list):
        return [full(x) for x in value]
    return value


def mutations(good: dict) -> st.SearchStrategy[dict]:
    """A good record with fields dropped, replaced by anything, or added."""
    return st.builds(lambda drop, put, extra: {**{k: v for k, v in good.items() if k not in drop}, **put, **extra},
                     st.sets(st.sampled_from(sorted(good))), st.dictionaries(st.sampled_from(sorted(good)), values,
                                                                            max_size=3),
                     st.dictionaries(st.text(max_size=8), values, max_size=2))


# ---- known answers: every desired-state key to its record, defaults spelled out by hand ---------

DIGEST = "sha256:" + "0123456789abcdef" * 4
# (SpawnSpec is SpawnOptions under the wire's names: addActor's defaults, the timeout included)
SPAWN_DEFAULTS = {"v": 1, "parameters": None, "resources": None, "ident": None, "trusted": [], "isolated": False,
                  "n_concurrent": 1, "max_concurrent": None, "is_drainable": False, "time_to_drain": None,
                  "owner": None, "log_level": None, "log_dest": None, "timeout": 60.0, "strategy": "random",
                  "strategy_hint": None, "restart": "never", "max_restarts": 5, "restart_window": 60.0, "sid": None,
                  "version": None, "uid": None, "node": None}


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
    # a record of format 0 (before versions) reads with the same fields; it keeps the format it was
    # written in (it is written again in this release's)
    ("patrol.shop", {"v": 0, "owner": "shop", "actors": []},
     {"v": 0, "owner": "shop", "realm": "global", "actors": []}),
])
def test_desired_records_known_answers(key, value, expected):
    record = desired.check(key, value)
    assert full(record) == expected
    assert isinstance(record, desired.type_of(key))


@pytest.mark.parametrize("key, value, message", [
    ("sup.global.s1", {}, "supervision record sup.global.s1: 'sid' is missing"),
    ("lease.supervisor", {}, "lease record lease.supervisor: 'holder' is missing"),
    ("cordon.n1", {}, "cordon record cordon.n1: 'node' is missing"),
    # a version's key asks for the version's fields (a digest), the current one's does not
    ("code.shop.v.v2", {"realm": "shop", "version": "v2"}, "code version record code.shop.v.v2: 'digest' is missing"),
    ("code.shop.current", {}, "current code record code.shop.current: 'realm' is missing"),
    ("patrol.shop", {"owner": "shop", "realm": "bad realm", "actors": []},
     "patrol record patrol.shop: 'realm': 'bad realm' is not a realm name: "),
    ("patrol.shop", [], "patrol record patrol.shop: it must be a map, not a list"),
    ("patrol.shop", {"v": 2, "owner": "shop", "actors": []},
     "patrol record patrol.shop: written by a newer beach (format 2; this one reads formats up to 1): upgrade this "
     "process"),
    ("patrol.shop", {"v": 1, "owner": "shop", "actors": [], "extra": 1},
     "patrol record patrol.shop: unknown key 'extra'"),
    ("other.x", {}, "'other.x' is not a desired-state key (sup.*, patrol.*, lease.*, code.*, cordon.*)"),
    ("Sup.x", {}, "'Sup.x' is not a desired-state key"),
])
def test_a_bad_desired_record_names_its_key_and_what_is_wrong(key, value, message):
    with pytest.raises(RecordError) as err:
        desired.check(key, value)
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
        assert records.check(CodeVersion, value, "k").digest == digest
    else:
        with pytest.raises(RecordError) as err:
            desired.check("code.shop.v.v2", value)
        assert str(err.value) == ("code version record code.shop.v.v2: 'digest' must be a string matching regex "
                                  "'^sha256:[0-9a-f]{64}$'")


@pytest.mark.parametrize("version, message", [
    (True, "'v' must be a whole number, not true or false"),
    ("1", "'v' must be a whole number, not a string"),
    (-1, "'v' must be a format number, not -1"),
    (1.0, "'v' must be a whole number, not a number"),
    (2, "written by a newer beach (format 2; this one reads formats up to 1): upgrade this process"),
])
def test_a_records_format_number_is_checked(version, message):
    with pytest.raises(RecordError) as err:
        records.check(LeaseRecord, {"holder": "n1", "v": version}, "lease.supervisor")
    assert str(err.value) == f"lease record lease.supervisor: {message}"


def test_this_releases_format_and_the_one_before_are_read():
    assert records.check(LeaseRecord, {"holder": "n1", "v": 1}) == LeaseRecord(holder="n1", v=1)
    # format 0 (no 'v', or 0): the same fields; read as written, written again as this release's
    assert records.check(LeaseRecord, {"holder": "n1", "v": 0}) == LeaseRecord(holder="n1", v=0)
    assert records.check(LeaseRecord, {"holder": "n1"}) == LeaseRecord(holder="n1", v=1)
    assert wire.unpack(wire.pack(LeaseRecord(holder="n1"))) == {"holder": "n1", "v": 1}


def test_where_a_record_was_read_is_named_only_when_given():
    with pytest.raises(RecordError) as err:
        records.check(NodeEntry, {})
    assert str(err.value) == "node record: 'id' is missing"
    with pytest.raises(RecordError) as err:
        records.check(NodeEntry, {}, "n1")
    assert str(err.value) == "node record n1: 'id' is missing"
    # decoded from bytes, alike
    with pytest.raises(RecordError) as err:
        records.decode(NodeEntry, wire.pack({"id": ""}), "at key n1")
    assert str(err.value) == "node record at key n1: 'id' must be a non-empty string"
    with pytest.raises(RecordError) as err:
        records.decode(NodeEntry, wire.pack({}))
    assert str(err.value) == "node record: 'id' is missing"
    # a type that does not name itself is a "record"
    with pytest.raises(RecordError) as err:
        records.check(Instances, {"count": "x"}, "at k")
    assert str(err.value) == "record at k: 'count' must be a whole number, not a string"
    with pytest.raises(RecordError) as err:
        records.decode(list[int], b"\xc1")
    assert str(err.value).startswith("record: not msgpack")


@pytest.mark.parametrize("change, message", [
    ({"restart": "sometimes"}, "spawn record: 'restart' must be one of always, never, on-failure, not 'sometimes'"),
    ({"categories": []}, "spawn record: addActor needs at least one category"),
])
def test_a_spawns_own_checks_name_the_field(change, message):
    with pytest.raises(RecordError) as err:
        records.check(SpawnSpec, {**GOOD_SPAWN, **change})
    assert str(err.value) == message


def test_a_new_record_is_of_this_format_and_checked_when_built_through_typed():
    # (Schema.new went: a record is its Struct, made by its constructor; typed.build checks its fields)
    assert wire.unpack(wire.pack(LeaseRecord(holder="n1"))) == {"holder": "n1", "v": 1}
    assert full(Cordon(node="n1", who="ops", when=2.5)) == {"node": "n1", "who": "ops", "when": 2.5, "v": 1}
    with pytest.raises(RecordError, match="^lease record: 'holder' must be a string, not a whole number$"):
        typed.build(LeaseRecord, "lease record", RecordError, holder=5)  # type: ignore[arg-type]


# ---- what any input does (Hypothesis, judged by the annotations and by msgpack) ---------------

@pytest.mark.parametrize("kind", sorted(GOOD))
def test_a_record_is_its_type_and_nothing_else(kind):
    # the Struct is the one definition: a checked record has exactly its fields, each of its type
    type_, good = GOOD[kind]
    record = records.check(type_, good)
    assert set(fields_of(type_)) == {f.name for f in msgspec.structs.fields(type_)}
    assert record.v == records.FORMAT
    assert_conforms(record, type_)


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_good_records_and_their_defaults(kind):
    # a checked record has its fields, defaults filled in, and goes back on the wire as the map it
    # came as (its format always; fields at their defaults not)
    type_, good = GOOD[kind]
    record = records.check(type_, good)
    assert record.v == records.FORMAT
    encoded = wire.unpack(wire.pack(record))
    assert "v" in encoded and set(encoded) <= {f.encode_name for f in msgspec.structs.fields(type_)}
    assert all(encoded[k] == v or isinstance(v, dict) and v.items() <= encoded[k].items() for k, v in good.items())
    assert set(full(record)) == {f.encode_name for f in msgspec.structs.fields(type_)}
    assert records.decode(type_, wire.pack(record)) == record


@pytest.mark.parametrize("kind", sorted(GOOD))
@FUZZ
@given(data=st.data())
def test_a_decoder_takes_anything_and_raises_only_its_own_error(kind, data):
    type_, good = GOOD[kind]
    value = data.draw(values | mutations(good))
    try:
        record = records.check(type_, value, "k")
    except RecordError as err:
        assert str(err).startswith(f"{kind} record k: ") and "\n" not in str(err)
    else:  # what passes is clean: every field of the Python type its annotation names, and it
        # encodes and decodes to itself
        assert_conforms(record, type_)
        assert records.decode(type_, wire.pack(record)) == record
    try:  # the same value as bytes off the bus: decoded and checked in one step
        records.decode(type_, msgpack.packb(value, use_bin_type=True))
    except (RecordError, ValueError, OverflowError):
        pass


@FUZZ
@given(key=st.sampled_from(["sup.global.s1", "patrol.shop", "lease.supervisor", "other.x", "sup.", "cordon.n1",
                            "code.r.current", "code.r.v.1"]),
       value=values | mutations(GOOD["supervision"][1]) | mutations(GOOD["lease"][1]))
def test_desired_records_by_key(key, value):
    try:
        record = desired.check(key, value)
    except RecordError:
        return
    # what passes is a record of the type the key names, every field of its annotated type
    kind = {"sup": SupervisionRecord, "lease": LeaseRecord, "cordon": Cordon,
            "code": CodeCurrent if key.endswith(".current") else CodeVersion}.get(key.split(".")[0])
    assert key != "other.x"
    if kind is not None:
        assert_conforms(record, kind)
    else:
        assert key.startswith("patrol.") and isinstance(record, PatrolSpec)
        assert isinstance(record.owner, str) and isinstance(record.actors, list)


@FUZZ
@given(body=st.binary(max_size=200) | values.map(lambda v: msgpack.packb(v, use_bin_type=True)))
def test_envelopes_and_lines_off_the_wire(body):
    try:  # what decodes is what the body held (msgpack's reading of it is the oracle)
        request = wire.unpack_request(body)
    except ValueError:
        pass
    else:
        assert msgpack.unpackb(body, raw=False, strict_map_key=False)[:6] == [1, *msgspec.structs.astuple(request)]
    try:
        reply = wire.unpack_reply(body)
    except ValueError:
        pass
    else:
        held = msgpack.unpackb(body, raw=False, strict_map_key=False)
        fields = held[-3:] if len(held) in (3, 4) else held[1:4]  # (a newer release's trailing fields are not read)
        assert [fields[0], fields[1] or "", fields[2]] == list(reply) and isinstance(reply.error, str)
    for type_ in (logs.LogLine, AuditRecord):  # (a log line is decoded as its Struct: logs.decode went)
        try:
            record = typed.decode(body, type_, "line", ValueError)
        except ValueError:
            continue
        assert isinstance(record.t, float) and records.decode(type_, wire.pack(record)) == record
        if isinstance(record, logs.LogLine):
            assert isinstance(record.msg, str) and isinstance(record.levelno, int)


def test_formats_upgrade():
    # the previous release wrote no version: read, with the same meaning
    old = {"sid": "s1", "spawn": GOOD_SPAWN, "restart": "always", "uid": "u1", "state": "running",
           "restarts": [1.0], "max_restarts": 5, "restart_window": 60, "created": 1.0}
    record = records.check(SupervisionRecord, old)
    assert record.v == 1 and record.restart == "always" and record.spawn.isIsolated is False
    old_reply = wire.pack([True, "", {"a": 1}])
    assert tuple(wire.unpack_reply(old_reply)) == (True, "", {"a": 1})
    assert tuple(wire.unpack_reply(wire.pack_reply(False, "e", 1))) == (False, "e", 1)
    # a newer release's record is refused, saying so
    with pytest.raises(RecordError, match="written by a newer beach .format 2; this one reads formats up to 1"):
        records.check(ActorEntry, {**GOOD["actor"][1], "v": 2})
    with pytest.raises(RecordError, match="newer beach"):
        desired.check("patrol.x", {"v": 7, "owner": "x", "actors": []})
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
    ({"id": "n", "cpu": "x"}, "'cpu' must be a list, not a string"),
    ({"id": "n", "cpu": ["1.5"]}, "'cpu[0]' must be a number, not a string"),
    ({"id": "n", "cpu": [True]}, "'cpu[0]' must be a number, not true or false"),
    ({"id": "n", "cpu": [1, "x"]}, "'cpu[1]' must be a number, not a string"),
    ({"id": "n", "mem": "3"}, "'mem' must be a number, not a string"),
    ({"id": "n", "mem": [3]}, "'mem' must be a number, not a list"),
    ({"id": "n", "mem": False}, "'mem' must be a number, not true or false"),
    ({"id": "n", "updated": "2024-01-01"}, "'updated' must be a number, not a string"),
    ({"id": "n", "pid": 1.5}, "'pid' must be a whole number or null, not a number"),
    ({"id": "n", "cordoned": "yes"}, "'cordoned' must be true or false, not a string"),
    ({"id": "n", "addresses": ["10.0.0.1", ""]}, "'addresses[1]' must be a non-empty string"),
    ({"id": ""}, "'id' must be a non-empty string"),
    ({"id": None}, "'id' must be a string, not null"),
    ({"hostname": "h"}, "'id' is missing"),
    ({"id": "n", "cores": True}, "'cores' must be a whole number, not true or false"),
    ([1, 2], "it must be a map, not a list"),
])
def test_bad_node_records_name_the_field(value, message):
    with pytest.raises(RecordError) as err:
        records.check(NodeEntry, value, "n")
    assert str(err.value) == f"node record n: {message}"


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


# ---- what the release before msgspec wrote and sent, and the spawn options' one definition -----

RELEASE = json.loads((Path(__file__).parent.parent / "data" / "release-7db23fc.json").read_text())


def test_what_the_previous_release_wrote_and_sent_is_read():
    # bytes captured from a run of the release before msgspec (tests/data/capture_release.py at
    # 7db23fc): every record of its buckets, every request, reply and control message it sent
    kv = {bucket: {k: base64.b64decode(v) for k, v in keys.items()} for bucket, keys in RELEASE["kv"].items()}
    actors = [records.decode(ActorEntry, body, key) for key, body in kv["beach_actors"].items()]
    assert {a.name for a in actors} == {"AsyncEcho", "Pong"} and all(a.v == 1 for a in actors)
    echo = next(a for a in actors if a.name == "AsyncEcho")
    assert echo.params == {"x": 1, "_secret": "<PRIVATE>"} and echo.is_drainable and echo.restart == "on-failure"
    [node] = [records.decode(NodeEntry, body, key) for key, body in kv["beach_nodes"].items()]
    assert node.id == "capture-node" and node.cordoned and node.cpu
    found = {key: desired.read(key, body) for key, body in kv["beach_desired"].items()}
    assert None not in found.values(), found
    [supervision] = [r for r in found.values() if isinstance(r, desired.SupervisionRecord)]
    spawn = supervision.spawn
    assert (spawn.actorName, spawn.category, spawn.strategy, spawn.isIsolated, spawn.secretIdent,
            spawn.trustedIdents, spawn.max_concurrent, spawn.time_to_drain) == (
        "AsyncEcho", ["capture/echo", "capture/more"], "resource", False, "me", ["you"], 50, 3600.0)
    assert supervision.max_restarts == 3 and supervision.restart_window == 30.0
    [spec] = [r for r in found.values() if isinstance(r, PatrolSpec)]
    entry = spec.actors[0]
    assert entry.actorName == "Pong" and entry.instances.max == 3 and entry.parameters == {"k": "v"}
    assert {type(r).__name__ for r in found.values()} == {"SupervisionRecord", "PatrolSpec", "CodeVersion",
                                                          "CodeCurrent", "Cordon", "LeaseRecord"}
    kinds: dict[str, int] = {}
    ours = {m["reply"] for m in RELEASE["messages"] if m["subject"].startswith("beach.") and m["reply"]}
    for message in RELEASE["messages"]:
        subject, body = message["subject"], base64.b64decode(message["data"])
        if subject.startswith(("beach.r.", "beach.a.", "beach.b.")):
            request = wire.unpack_request(body)
            assert request.req in ("echo", "nope", "x")
            kinds["request"] = kinds.get("request", 0) + 1
        elif subject in ours and body:
            reply = wire.unpack_reply(body)  # every answer: an actor's, an agent's, a host's
            assert isinstance(reply.ok, bool)
            kinds["reply"] = kinds.get("reply", 0) + 1
        elif subject.startswith(("beach.n.", "beach.h.")) and body:
            op = subject.split(".")[3]
            args = wire.unpack(body)
            args = wire.unpack(args[SIGNED]) if SIGNED in args else args  # signed: the arguments inside
            if op in CONTROL:
                records.check(CONTROL[op], args, op)
                kinds[op] = kinds.get(op, 0) + 1
    assert kinds.get("request", 0) >= 4 and kinds.get("reply", 0) >= 20
    assert {"spawn", "stop", "desired", "cordon", "associate", "hello"} <= set(kinds), kinds


CONTROL = {"spawn": SpawnSpec, "stop": records.StopArgs, "desired": records.DesiredArgs, "cordon": records.CordonArgs,
           "associate": records.CategoryArgs, "disassociate": records.CategoryArgs, "hello": records.HelloArgs,
           "flush": records.FlushArgs, "stack": records.StackArgs}


def test_spawn_options_are_one_definition_for_the_library_and_the_wire():
    # addActor's signature is SpawnOptions'; the spec on the wire keeps the previous release's names
    from beach.client.blocking import Beach
    from beach.client.core import AsyncBeach
    fields = [f.name for f in msgspec.structs.fields(SpawnOptions)]
    for method in (AsyncBeach.addActor, Beach.addActor):
        assert list(inspect.signature(method).parameters)[1:] == fields
    options = SpawnOptions("Pong", "a/b", isIsolated=True, secretIdent="me", trustedIdents=["you"])
    body = wire.unpack(wire.pack(options.spec("global")))
    assert {"name": "Pong", "categories": ["a/b"], "isolated": True, "ident": "me", "trusted": ["you"]}.items() \
        <= body.items()


@pytest.mark.parametrize("type_, value, message", [
    (records.StateArgs, {"purge": "yes"}, "state arguments: 'purge' must be true or false, not a string"),
    (records.StateArgs, {"delete": [""]}, "state arguments: 'delete[0]' must be a non-empty string"),
    (records.StateArgs, {"put": [1]}, "state arguments: 'put' must be a map, not a list"),
    (records.StateStats, {"node": "n1"}, "state sizes record: 't' is missing"),
    (records.StateStats, {"t": 1.0, "node": "n1", "buckets": []},
     "state sizes record: 'buckets' must be a map, not a list"),
    (records.StateStats, {"t": 1.0, "node": "n1", "v": 9}, "state sizes record: written by a newer beach (format 9"),
])
def test_actor_states_records_are_checked_as_they_are_read(type_, value, message):
    # the 'state' operation's arguments and the sizes on beach.stats.state (issue 27) are Structs too
    with pytest.raises(records.RecordError) as err:
        records.decode(type_, wire.pack(value))
    assert str(err.value).startswith(message)


def test_actor_states_records_read_their_fields():
    args = records.check(records.StateArgs, {"realm": "global", "category": "words", "put": {"k": b"x"}})
    assert (args.realm, args.category, args.put, args.delete, args.purge) == ("global", "words", {"k": b"x"}, [], False)
    sizes = records.decode(records.StateStats, wire.pack(records.StateStats(t=1.0, node="n1",
                                                                            categories={"global": {"w": [2, 10]}})))
    assert (sizes.t, sizes.node, sizes.categories, sizes.buckets, sizes.v) == (1.0, "n1", {"global": {"w": [2, 10]}},
                                                                               {}, records.FORMAT)


@pytest.mark.parametrize("value, message", [
    ({"t": 1.0}, "'node' is missing"),
    ({"node": "n"}, "'t' is missing"),
    ({"node": "", "t": 1.0}, "'node' must be a non-empty string"),
    ({"node": "n", "t": "now"}, "'t' must be a number, not a string"),
    ({"node": "n", "t": 1.0, "cpu": [1, "x"]}, "'cpu[1]' must be a number, not a string"),
    ({"node": "n", "t": 1.0, "cores": 2.5}, "'cores' must be a whole number, not a number"),
    ({"node": "n", "t": 1.0, "mem_available": "lots"}, "'mem_available' must be a whole number or null, not a string"),
    ({"node": "n", "t": 1.0, "hosts": {"h": "3"}}, "'hosts[...]' must be a whole number, not a string"),
    ({"node": "n", "t": 1.0, "actors_by_realm": []}, "'actors_by_realm' must be a map, not a list"),
    ({"node": "n", "t": 1.0, "spawning": None}, "'spawning' must be a whole number, not null"),
])
def test_bad_node_load_records_name_the_field(value, message):
    with pytest.raises(RecordError) as err:
        records.check(NodeLoad, value, "n")
    assert str(err.value) == f"node load record n: {message}"


def test_a_node_load_records_defaults():
    load = records.check(NodeLoad, {"node": "n", "t": 1.0})
    assert (load.cores, load.cpu, load.mem, load.mem_available, load.n_actors) == (1, [], 0.0, None, 0)
    assert (load.actors_by_realm, load.hosts, load.spawning) == ({}, {}, 0)
