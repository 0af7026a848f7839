"""beach.wire.messages: the envelopes, the handler-return rules, the failure kinds.

The oracles: the envelope layout of the module's docstring, decoded with msgpack itself (not with
the module's ``unpack``); round trips through both ends; and the seed's handler-return table.
"""

from __future__ import annotations

import datetime
import threading

import msgpack
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from beach import wire
from beach.client.response import ActorResponse
from beach.errors import EncodeError
from beach.wire import messages

# What the wire can carry, and how it comes back (tuples as lists)
carried = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text() | st.integers(-2**63, 2**63), inner,
                                                                max_size=4),
    max_leaves=12)


def plain(body: bytes):
    """The body as msgpack reads it: the independent oracle of every envelope here."""
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


@pytest.mark.parametrize("ret, expected", [
    ((True,), (True, "", {})),
    ((True, {"a": 1}), (True, "", {"a": 1})),
    ((True, 1, 2), (True, "", {})),
    ((False,), (False, "error", {})),
    ((False, "bad"), (False, "bad", {})),
    ((False, "bad", [1]), (False, "bad", [1])),
    ((False, "bad", [1], "extra"), (False, "bad", [1])),
    ((False, 5), (False, "5", {})),  # the error is always text
    ((False, None, 2), (False, "None", 2)),
    ([True, 5], (True, "", 5)),
    ([False, "e"], (False, "e", {})),
    ((True, None), (True, "", None)),
    ({"a": 1}, (False, wire.INVALID_RESPONSE, {"a": 1})),
    ("text", (False, wire.INVALID_RESPONSE, "text")),
    ((), (False, wire.INVALID_RESPONSE, ())),
    ([], (False, wire.INVALID_RESPONSE, [])),
    ((1, "x"), (False, wire.INVALID_RESPONSE, (1, "x"))),  # 1 is not a bool
    (("True", {}), (False, wire.INVALID_RESPONSE, ("True", {}))),
    (None, (False, wire.INVALID_RESPONSE, None)),
    (True, (False, wire.INVALID_RESPONSE, True)),
])
def test_handler_return_normalisation(ret, expected):
    reply = wire.normalize_return(ret)
    assert tuple(reply) == expected
    assert isinstance(reply, wire.Reply) and type(reply.ok) is bool and isinstance(reply.error, str)
    assert wire.INVALID_RESPONSE == "invalid response format"


def test_wire_keeps_lists_and_refuses_objects():
    body = wire.pack_request("id", "t", {"l": [1, 2], "t": (3, 4), "s": {5}, "b": b"\x00"}, None, 1.5)
    request = wire.unpack_request(body)
    assert request.data == {"l": [1, 2], "t": [3, 4], "s": [5], "b": b"\x00"}
    assert request.ttl == 1.5
    with pytest.raises(EncodeError, match="object"):
        wire.pack_request("id", "t", {"x": object()}, None, None)


def test_a_request_envelope_is_the_documented_array():
    body = wire.pack_request("r-1", "ping", {"a": [1, b"\x01"], 2: "two"}, "alice", 2.5, reads=(1,))
    assert plain(body) == [1, "r-1", "ping", {"a": [1, b"\x01"], 2: "two"}, "alice", 2.5]
    assert wire.unpack_request(body) == wire.Request("r-1", "ping", {"a": [1, b"\x01"], 2: "two"}, "alice", 2.5)
    assert plain(wire.pack_request("r", "t", None, None, None, reads=(1, 2))) == [1, "r", "t", None, None, None]
    assert wire.VERSION == 1
    # format 3 (where every reader reads it: the default) is format 2's array, its sender reading reply format 2
    body = wire.pack_request("r-1", "ping", {"a": 1}, "alice", 2.5)
    assert plain(body) == [3, "r-1", "ping", {"a": 1}, "alice", 2.5, None, None, 0]
    assert wire.unpack_request(body) == wire.AnsweredRequest("r-1", "ping", {"a": 1}, "alice", 2.5, None)
    assert wire.answered(body) and not wire.answered(wire.pack_request("r", "t", None, None, None, reads=(1, 2)))
    assert not wire.answered(b"\xc1")


@given(req_id=st.text(), req=st.text(), data=carried, ident=st.none() | st.text(),
       ttl=st.none() | st.floats(allow_nan=False) | st.integers(0, 10**6))
def test_request_round_trip(req_id, req, data, ident, ttl):
    body = wire.pack_request(req_id, req, data, ident, ttl, reads=(1,))
    assert plain(body) == [1, req_id, req, data, ident, ttl]
    assert wire.unpack_request(body) == wire.Request(req_id, req, data, ident, ttl)
    assert wire.unpack_request(body).trace is None


@given(ok=st.booleans(), error=st.text(), data=carried)
def test_reply_round_trip(ok, error, data):
    body = wire.pack_reply(ok, error, data)
    assert plain(body) == [1, ok, error, data]
    assert tuple(wire.unpack_reply(body)) == (ok, error, data)
    assert tuple(wire.read_reply(body, "anyone")) == (ok, error, data)


def test_sets_travel_as_lists_and_bytes_as_bytes():
    assert plain(wire.pack({"s": {1}, "f": frozenset({2}), "b": b"\xff\x00", "t": "\xff"})) == \
        {"s": [1], "f": [2], "b": b"\xff\x00", "t": "\xff"}
    assert wire.unpack(wire.pack({1: "int key", "k": None})) == {1: "int key", "k": None}


@pytest.mark.parametrize("value, named", [
    (object(), "object"),
    ([1, {"deep": complex(1, 2)}], "complex"),
])
def test_what_msgpack_cannot_carry_is_an_encode_error_naming_it(value, named):
    with pytest.raises(EncodeError) as err:
        wire.pack(value, what="data of request 'x'")
    assert str(err.value) == (f"data of request 'x' cannot be sent: cannot serialize {named} (beach sends msgpack: "
                              f"dict, list, str, bytes, int, float, bool, None, and what msgspec encodes)")
    with pytest.raises(EncodeError, match=f"^value cannot be sent: cannot serialize {named} "):
        wire.pack(value)


def test_a_datetime_travels_as_msgspec_encodes_it():
    # (before msgspec these were refused; msgspec encodes them: a naive one as ISO 8601 text, an
    # aware one as msgpack's timestamp extension, which reads back as the same instant)
    naive, aware = datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    assert plain(wire.pack({"when": naive})) == {"when": "2024-01-01T00:00:00"}
    assert wire.unpack(wire.pack({"when": aware})) == {"when": aware}


def test_numbers_and_nesting_msgpack_refuses_are_encode_errors():
    with pytest.raises(EncodeError, match="^reply data cannot be sent: "):
        wire.pack_reply(True, "", 2**64)  # too big for msgpack's integers
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(EncodeError, match="^value cannot be sent: maximum recursion depth exceeded"):
        wire.pack(deep)  # RecursionError inside msgspec
    with pytest.raises(EncodeError, match="^data of request 'r' cannot be sent: "):
        wire.pack_request("i", "r", {2**70}, None, None)


def test_a_failed_pack_leaves_nothing_behind_for_the_next():
    with pytest.raises(EncodeError):
        wire.pack(["partial", "output", object()])
    assert wire.pack(["next"]) == msgpack.packb(["next"], use_bin_type=True)


def test_each_thread_packs_on_its_own():
    # a Packer is not thread-safe: every thread gets its own, and all of them pack the same bytes
    results: dict[int, list[bytes]] = {}

    def work(n: int) -> None:
        results[n] = [wire.pack({"n": n, "i": i, "pad": "x" * 200}) for i in range(300)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, bodies in results.items():
        assert [plain(b) for b in bodies] == [{"n": n, "i": i, "pad": "x" * 200} for i in range(300)]
    assert len(results) == 4


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x93\x01\x02", b"\x92", wire.pack({"a": 1})[:-1], b"\x01\x02"])
def test_unpack_refuses_what_is_not_msgpack(body):
    with pytest.raises(ValueError, match="^malformed message body: "):
        wire.unpack(body)


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x93\x01\x02\x03", wire.pack({"a": 1}),
                                  wire.pack([2, "i", "r", {}, None, None])])
def test_malformed_request_bodies_are_rejected(body):
    with pytest.raises(ValueError):
        wire.unpack_request(body)


def test_a_body_that_is_not_msgpack_is_named_with_msgspecs_reason(monkeypatch):
    for unpacker in (wire.unpack, wire.unpack_request):
        with pytest.raises(ValueError) as err:
            unpacker(b"\xc1")
        assert str(err.value) == ("malformed message body: MessagePack data is malformed: invalid opcode '\\xc1' "
                                  "(byte 0)")
        with pytest.raises(ValueError) as err:
            unpacker(b"")
        assert str(err.value) == "malformed message body: Input data was truncated"

    class Wordless:  # (msgspec's errors always have words; if one had none, its type says what it was)
        def decode(self, body: bytes) -> None:
            raise msgspec.DecodeError()

    monkeypatch.setattr(messages, "_any", Wordless())
    with pytest.raises(ValueError) as err:
        wire.unpack(b"\x01")
    assert str(err.value) == "malformed message body: DecodeError"


E = "not a beach request envelope: "


@pytest.mark.parametrize("value, message", [
    ({"a": 1}, E + "Expected `array`, got `object`"),
    ("text", E + "Expected `array`, got `str`"),
    ([1, "i", "r", {}, None], E + "Expected `array` of at least length 6, got 5"),
    ([2, "i", "r", {}, None, None], E + "Expected `array` of at least length 7, got 6"),  # (format 2: its trace)
    ([4, "i", "r", {}, None, None], E + "Invalid value 4 - at `$[0]`"),
    ([0, "i", "r", {}, None, None], E + "Invalid value 0 - at `$[0]`"),
    ([1, 5, "r", {}, None, None], E + "Expected `str`, got `int` - at `$[1]`"),
    ([1, "i", None, {}, None, None], E + "Expected `str`, got `None` - at `$[2]`"),
    ([1, "i", "r", {}, 7, None], E + "Expected `str | null`, got `int` - at `$[4]`"),
    ([1, "i", "r", {}, b"alice", None], E + "Expected `str | null`, got `bytes` - at `$[4]`"),
    ([1, "i", "r", {}, None, "soon"], E + "Expected `float | null`, got `str` - at `$[5]`"),
    ([1, "i", "r", {}, None, [1]], E + "Expected `float | null`, got `array` - at `$[5]`"),
])
def test_malformed_requests_name_what_is_wrong(value, message):
    with pytest.raises(ValueError) as err:
        wire.unpack_request(msgpack.packb(value, use_bin_type=True))
    assert str(err.value) == message


def test_a_request_of_a_newer_release_with_more_fields_is_read():
    # (msgspec's array-like envelopes read what they know and ignore trailing fields; before
    # msgspec, a seventh field was refused)
    body = msgpack.packb([1, "i", "r", {}, None, None, "later"], use_bin_type=True)
    assert wire.unpack_request(body) == wire.Request("i", "r", {}, None, None)
    assert wire.request_type(body) == "r"


def test_request_ttl_and_ident_may_be_absent_or_of_their_kind():
    assert wire.unpack_request(msgpack.packb([1, "i", "r", None, None, 3])).ttl == 3
    assert wire.unpack_request(msgpack.packb([1, "i", "r", None, "me", 0.25])) == wire.Request("i", "r", None, "me",
                                                                                               0.25)


def test_format_2_carries_the_trace_context_and_reads_on_past_what_it_knows():
    trace = wire.TraceContext("00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "k=v")
    body = wire.pack_request("r-1", "ping", {"a": 1}, None, 2.5, trace, reads=(1, 2))
    assert plain(body) == [2, "r-1", "ping", {"a": 1}, None, 2.5, [trace.traceparent, "k=v"]]
    assert wire.unpack_request(body) == wire.TracedRequest("r-1", "ping", {"a": 1}, None, 2.5, trace)
    traced = wire.pack_request("r-2", "ping", None, "alice", None, trace, reads=(1, 2))  # an ident travels in 2 too
    assert plain(traced) == [2, "r-2", "ping", None, "alice", None, [trace.traceparent, "k=v"]]
    assert wire.request_type(body) == "ping"
    # a field appended later (one a reader may skip) does not stop this reader
    later = msgpack.packb([2, "r", "t", {}, None, None, [trace.traceparent, ""], {"later": 1}])
    assert wire.unpack_request(later).trace == wire.TraceContext(trace.traceparent, "")
    assert wire.request_type(later) == "t"
    assert wire.unpack_request(msgpack.packb([2, "r", "t", {}, None, None, None])).trace is None
    # what the previous release reads: exactly six elements, format 1 (no context: format 1, as before)
    previous = plain(wire.pack_request("r", "t", {}, None, None, trace, reads=(1,)))
    assert len(previous) == 6 and previous[0] == 1 and wire.REQUEST_FORMATS == (1, 2, 3)
    # format 3 carries it too
    assert plain(wire.pack_request("r", "t", {}, None, None, trace))[6] == [trace.traceparent, "k=v"]


@pytest.mark.parametrize("trace, reason", [
    ("00-x", "Expected `array | null`, got `str` - at `$[6]`"),
    (["00-x"], "Expected `array` of at least length 2, got 1 - at `$[6]`"),
    (["00-x", 1], "Expected `str`, got `int` - at `$[6][1]`"),
    ([1, ""], "Expected `str`, got `int` - at `$[6][0]`"),
    (["a", "b", "c"], "Expected `array` of at most length 2, got 3 - at `$[6]`"),
    ({"tp": "x"}, "Expected `array | null`, got `object` - at `$[6]`"),
])
def test_a_malformed_trace_context_is_named(trace, reason):
    # (the trace context is format 2's seventh element, `$[6]`: [traceparent, tracestate], two strings)
    with pytest.raises(ValueError) as err:
        wire.unpack_request(msgpack.packb([2, "r", "t", {}, None, None, trace]))
    assert str(err.value) == E + reason


def test_a_reply_envelope_is_the_documented_array():
    assert plain(wire.pack_reply(False, "busy", {"uid": "u"})) == [1, False, "busy", {"uid": "u"}]
    assert wire.unpack_reply(wire.pack_reply(True, "", [1])) == wire.Reply(True, "", [1])
    # format 2 names the actor that answered
    body = wire.pack_reply(True, "", [1], "u1", "n1")
    assert plain(body) == [2, True, "", [1], "u1", "n1", None, -1, False]
    assert wire.unpack_reply(body) == wire.AnsweredReply(True, "", [1], "u1", "n1")
    response = ActorResponse.of(wire.unpack_reply(body))
    assert (response.uid, response.node, response.data) == ("u1", "n1", [1])
    assert response == ActorResponse(True, "", [1])  # (who answered is not part of the outcome)
    assert ActorResponse.of(wire.unpack_reply(wire.pack_reply(True, "", [1]))).uid is None


def previous_release_reads(body: bytes) -> bool:
    """7db23fc's check of a reply (its `unpack_reply`): exactly four elements (or three), its
    format a whole number up to 1."""
    value = msgpack.unpackb(body)
    if isinstance(value, list) and len(value) == 3:
        value = [0, *value]
    return (isinstance(value, list) and len(value) == 4 and isinstance(value[1], bool)
            and isinstance(value[0], int) and value[0] <= 1)


def test_the_previous_release_reads_format_1_replies_and_only_they_name_no_actor():
    # (so format 2 goes only to a caller that sent format 3, which the previous release never sends)
    assert previous_release_reads(wire.pack_reply(True, "", {"x": 1}))
    assert not previous_release_reads(wire.pack_reply(True, "", {"x": 1}, "u1", "n1"))


@pytest.mark.parametrize("value, reply", [
    ([True, "", {"a": 1}], (True, "", {"a": 1})),  # format 0: the previous release's, without a version
    ([False, "busy", None], (False, "busy", None)),
    ([0, True, "", 5], (True, "", 5)),
    ([1, False, None, 5], (False, "", 5)),  # a nil error is no error text
    ([-3, True, "", None], (True, "", None)),
    ([2, True, None, {}], (True, "", {})),  # format 2 (this one's newest) with a nil error, naming no actor
])
def test_replies_of_this_and_the_previous_format_are_read(value, reply):
    assert tuple(wire.unpack_reply(msgpack.packb(value))) == reply


N = "not a beach reply envelope: "


@pytest.mark.parametrize("value, message", [
    ({"ok": True}, N + "Expected `array`, got `object`"),
    ([True, ""], N + "Expected `int`, got `bool` - at `$[0]`"),  # (two formats: the first element is their tag)
    ([1, 1, "", {}], N + "Expected `bool`, got `int` - at `$[1]`"),  # ok must be a bool
    ([1, "yes", "", {}], N + "Expected `bool`, got `str` - at `$[1]`"),
    ([3, True, "", {}], "a reply of format 3 (from a newer beach?); this one reads up to 2"),
    (["1", True, "", {}], N + "Expected `int`, got `str` - at `$[0]`"),  # a format is a whole number
    ([1.0, True, "", {}], N + "Expected `int`, got `float` - at `$[0]`"),
    ([1, False, 3, {}], N + "Expected `str`, got `int` - at `$[2]`"),
    ([1, False, b"err", {}], N + "Expected `str`, got `bytes` - at `$[2]`"),
])
def test_malformed_replies_name_what_is_wrong(value, message):
    body = msgpack.packb(value, use_bin_type=True)
    with pytest.raises(ValueError) as err:
        wire.unpack_reply(body)
    assert str(err.value) == message
    broken = wire.read_reply(body, "node n1 to spawn")
    assert broken.ok is False and broken.data == {}
    assert broken.error.startswith("malformed reply from node n1 to spawn: ")
    assert ActorResponse(*broken).failure is wire.Failure.MALFORMED_REPLY


def test_a_reply_of_a_newer_release_with_more_fields_is_read():
    # (msgspec's array-like envelopes ignore trailing fields; before msgspec a fifth was refused)
    assert tuple(wire.unpack_reply(msgpack.packb([1, True, "", {}, 5]))) == (True, "", {})


def test_read_reply_names_the_source_and_the_reason():
    # 0xc1 is msgpack's one reserved byte: the reason names it
    assert tuple(wire.read_reply(b"\xc1", "actor u1")) == (
        False, "malformed reply from actor u1: malformed message body: MessagePack data is malformed: invalid opcode "
               "'\\xc1' (byte 0)", {})
    assert tuple(wire.read_reply(msgpack.packb({"x": 1}), "host h")) == \
        (False, "malformed reply from host h: not a beach reply envelope: Expected `array`, got `object`", {})


@given(body=st.binary(max_size=64))
def test_read_reply_never_raises(body):
    reply = wire.read_reply(body, "x")
    assert isinstance(reply, wire.Reply)
    assert reply.ok or reply.error


def test_failure_kinds_are_read_back_from_the_error_text():
    assert ActorResponse(False, "busy").failure is wire.Failure.BUSY
    assert ActorResponse(False, "no actor available in category 'x' of realm 'global'").failure is wire.Failure.NO_ACTOR
    assert ActorResponse(False, "bus unavailable: reconnecting").failure is wire.Failure.BUS_UNAVAILABLE
    assert ActorResponse.timeout().failure is wire.Failure.TIMEOUT
    # a handler's own text is its own error, even when it starts like one of ours
    assert ActorResponse(False, "timeout calling the bank").failure is None
    assert ActorResponse(False, "busy doing x").failure is None
    assert ActorResponse(True, "", {}).failure is None
    # the seed's strings stay what callers compare with
    assert wire.BUSY == "busy" and f"{wire.NO_ACTOR} in" == "no actor available in"
    assert wire.unpack(wire.pack_reply(False, wire.BUSY, {})) == [1, False, "busy", {}]
    assert wire.RETRYABLE == {wire.Failure.TIMEOUT, wire.Failure.BUSY, wire.Failure.NO_ACTOR,
                              wire.Failure.BUS_UNAVAILABLE, wire.Failure.CONFLICT}


@pytest.mark.parametrize("kind", list(wire.Failure))
def test_every_failure_kind_reads_back_from_its_own_text(kind):
    assert wire.Failure.of(kind.value) is kind
    assert wire.Failure.of(str(kind)) is kind


@pytest.mark.parametrize("text, kind", [
    ("no actor available in category 'a' of realm 'r'", wire.Failure.NO_ACTOR),
    ("bus unavailable: reconnecting", wire.Failure.BUS_UNAVAILABLE),
    ("permission denied: publish to beach.r.x", wire.Failure.PERMISSION_DENIED),
    ("malformed reply from actor u: not a beach reply envelope", wire.Failure.MALFORMED_REPLY),
    ("timeout calling the bank", None),
    ("timeout: after 2s", None),  # only the kinds that carry details are read by their first words
    ("exception in handler", None),
    ("busy doing x", None),
    ("Busy", None),
    ("", None),
    ("the bus unavailable", None),
])
def test_failure_kinds_with_details_are_read_by_their_first_words(text, kind):
    assert wire.Failure.of(text) is kind


def test_the_failure_texts_are_the_seeds():
    assert {kind.name: kind.value for kind in wire.Failure} == {
        "TIMEOUT": "timeout", "UNAUTHORIZED": "unauthorized", "EXCEPTION": "exception",
        "UNSUPPORTED": "request type not supported by actor", "INVALID_RESPONSE": "invalid response format",
        "INVALID_REQUEST": "invalid request", "BUSY": "busy", "NO_ACTOR": "no actor available",
        "BUS_UNAVAILABLE": "bus unavailable", "PERMISSION_DENIED": "permission denied",
        "MALFORMED_REPLY": "malformed reply", "CONFLICT": "conflict",
    }
    assert messages.TIMEOUT is wire.Failure.TIMEOUT and messages.EXCEPTION == "exception"


@given(req_id=st.text(), req=st.text(), data=carried)
def test_request_type_reads_the_type_without_the_data(req_id, req, data):
    assert wire.request_type(wire.pack_request(req_id, req, data, None, None)) == req


@pytest.mark.parametrize("value", [
    [1, "i", 5, {}, None, None],  # a type that is not text
    [2, "i", "r", {}, None, None],  # format 2 without its trace context
    [4, "i", "r", {}, None, None, None],  # a newer format
    [1, "i", "r", {}, None],  # not six fields (a seventh is a newer release's, ignored: see above)
    {"req": "r"},
    "r",
])
def test_request_type_of_what_is_not_a_request_is_none(value):
    assert wire.request_type(msgpack.packb(value, use_bin_type=True)) is None


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x96", b"\x96\x01", b"\x96\x01\xa1i"])
def test_request_type_of_garbage_is_none(body):
    assert wire.request_type(body) is None


def test_data_too_large_for_a_message_travels_by_reference():
    # format 3's eighth element, reply format 2's seventh: [name, size, chunk, chunks, key]; data nil
    ref = wire.BodyRef("ab" * 16, 300_000, 262_144, 2, b"k" * 32)
    body = wire.pack_referenced("r-1", "big", ref, None, 4.0)
    assert plain(body) == [3, "r-1", "big", None, None, 4.0, None, ["ab" * 16, 300_000, 262_144, 2, b"k" * 32], 0]
    assert wire.unpack_request(body).body == ref
    trace = wire.TraceContext("00-" + "1" * 32 + "-" + "2" * 16 + "-01", "k=v")
    signed = wire.pack_referenced("r-2", "big", ref, "alice", None, trace)  # the caller's ident and trace kept
    assert plain(signed)[:8] == [3, "r-2", "big", None, "alice", None, [trace.traceparent, "k=v"], plain(body)[7]]
    assert (wire.unpack_request(signed).ident, wire.unpack_request(signed).trace) == ("alice", trace)
    reply = wire.pack_reply(True, "", None, "u1", "n1", ref)
    assert plain(reply)[6] == ["ab" * 16, 300_000, 262_144, 2, b"k" * 32]
    assert wire.unpack_reply(reply).body == ref
    with pytest.raises(ValueError, match="Expected `bytes`, got `str` - at `\\$\\[7\\]\\[4\\]`"):
        wire.unpack_request(msgpack.packb([3, "r", "t", None, None, None, None, ["n", 1, 1, 1, "key"]]))
    # what is stored: the data's own encoding, cut out of the envelope without a copy
    envelope = wire.pack_request("r-1", "big", {"blob": b"x" * 1000}, None, None)
    data = wire.data_of(envelope)
    assert isinstance(data, memoryview) and data.obj is not None
    assert wire.unpack_data(data) == {"blob": b"x" * 1000}
    assert bytes(wire.data_of(wire.pack_reply(True, "", [1, 2], "u", "n"))) == wire.pack([1, 2])
    with pytest.raises(ValueError, match="^malformed payload: "):
        wire.unpack_data(b"\xc1")


def test_a_stream_is_a_request_with_a_window_and_its_items_are_replies_with_more():
    # format 3's ninth element: the window (0: not a stream); an item: reply format 2 with seq, more
    assert plain(wire.pack_request("r", "rows", {}, None, 5.0, stream=64))[8] == 64
    assert wire.unpack_request(wire.pack_request("r", "rows", {}, None, 5.0, stream=64)).stream == 64
    item = wire.unpack_reply(wire.pack_reply(True, "", {"row": 1}, "u", "n", None, 7, True))
    assert (item.seq, item.more, item.data) == (7, True, {"row": 1})
    end = wire.unpack_reply(wire.pack_reply(True, "", None, "u", "n", None, 8))
    assert (end.seq, end.more) == (8, False)
    assert wire.unpack_reply(wire.pack_reply(True, "", 1, "u", "n")).seq == -1  # (no stream)
    # (no stream below format 3: a previous reader would not read the window)
    assert len(plain(wire.pack_request("r", "rows", {}, None, 5.0, reads=(1, 2), stream=64))) == 6
