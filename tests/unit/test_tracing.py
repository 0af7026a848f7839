"""beach.tracing's pure parts: reading a W3C trace context, the context a span is named by, what
the OTEL_* variables ask for, the outcome of a call ended by an exception; and what a process
without OpenTelemetry carries (the spans themselves are tested against real nodes and a real OTLP
receiver, tests/test_tracing.py).

The oracles: contexts spelled out by hand from the W3C format, and contexts built from their parts
(a trace id, a span id, flags), read back.
"""

from __future__ import annotations

import contextvars

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace

from beach import tracing, wire
from beach.errors import ClosedError

GOOD = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
GOOD_PARTS = (int("ab" * 16, 16), int("cd" * 8, 16), 1)  # its trace id, parent span id, flags


def context(traceparent: str, tracestate: str = "") -> wire.TraceContext:
    return wire.TraceContext(traceparent, tracestate)


def test_a_well_formed_traceparent_is_read_by_its_parts():
    assert tracing._parse(context(GOOD)) == GOOD_PARTS
    assert tracing._parse(context("00-" + "0" * 31 + "1-" + "0" * 15 + "2-00")) == (1, 2, 0)
    assert tracing._parse(context("00-" + "f" * 32 + "-" + "f" * 16 + "-ff")) == (2**128 - 1, 2**64 - 1, 255)
    # a later version may append fields after a dash: read as version 00
    assert tracing._parse(context("01" + GOOD[2:] + "-later-fields")) == GOOD_PARTS
    assert tracing._parse(context("fe" + GOOD[2:] + "-")) == GOOD_PARTS
    assert tracing._parse(context("01" + GOOD[2:])) == GOOD_PARTS
    assert tracing._parse(None) is None


@pytest.mark.parametrize("bad", [
    "ff" + GOOD[2:],  # version ff is invalid
    GOOD + "-extra",  # version 00 has exactly four fields
    GOOD + "-",
    "00-" + "0" * 32 + GOOD[35:],  # an all-zero trace id
    GOOD[:36] + "0" * 16 + "-01",  # an all-zero parent id
    GOOD.upper(),  # lower-case hex only
    "00-" + "ab" * 16 + "-" + "cd" * 8 + "-1",  # flags: two digits
    "00-" + "ab" * 15 + "-" + "cd" * 8 + "-01",  # a trace id of 30 digits
    "00-" + "ab" * 16 + "-" + "cd" * 7 + "-01",  # a parent id of 14 digits
    "0-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
    "00_" + GOOD[3:],
    " " + GOOD,
    GOOD + " ",
    "garbage",
    "",
])
def test_a_malformed_traceparent_names_no_parent(bad):
    assert tracing._parse(context(bad)) is None
    assert tracing.trace_id(context(bad)) is None


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.integers(0, 255), st.sampled_from(["00", "01", "cc"]))
def test_a_context_built_from_its_parts_reads_back_as_them(trace_id, span_id, flags, version):
    header = f"{version}-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    assert tracing._parse(context(header)) == (trace_id, span_id, flags)
    assert tracing.trace_id(context(header)) == f"{trace_id:032x}"


def test_trace_ids_keep_their_leading_zeros():
    assert tracing.trace_id(context(GOOD)) == "ab" * 16
    assert tracing.trace_id(context("00-" + "0" * 31 + "1-" + "0" * 15 + "2-00")) == "0" * 31 + "1"
    assert tracing.trace_id(None) is None


def test_the_context_a_span_is_named_by():
    span = trace.NonRecordingSpan(trace.SpanContext(1, 2, False, trace.TraceFlags(1),
                                                    trace.TraceState([("k", "v"), ("x", "y")])))
    assert tracing._context_of(span) == context("00-" + "0" * 31 + "1-" + "0" * 15 + "2-01", "k=v,x=y")
    unsampled = trace.NonRecordingSpan(trace.SpanContext(0xAB, 0xCD, False, trace.TraceFlags(0)))
    assert tracing._context_of(unsampled) == context(f"00-{0xAB:032x}-{0xCD:016x}-00", "")
    assert tracing._context_of(trace.INVALID_SPAN) is None
    assert tracing._context_of(trace.NonRecordingSpan(trace.SpanContext(0, 2, False))) is None


def test_a_remote_parent_is_the_span_its_context_names():
    api = tracing._api()
    assert api is not None
    remote = tracing._remote(api, context(GOOD, "k=v"))
    parent = trace.get_current_span(remote).get_span_context()
    assert (parent.trace_id, parent.span_id, parent.trace_flags, parent.is_remote) == (
        int("ab" * 16, 16), int("cd" * 8, 16), 1, True)
    assert parent.trace_state.to_header() == "k=v"
    unsampled = trace.get_current_span(tracing._remote(api, context(GOOD[:-2] + "00"))).get_span_context()
    assert (unsampled.trace_flags, unsampled.trace_state.to_header(), unsampled.is_remote) == (0, "", True)
    # and back: the context a span of that parent names is the one that came
    assert tracing._context_of(trace.get_current_span(remote)) == context(GOOD, "k=v")
    assert tracing._remote(api, context("garbage", "k=v")) is None
    assert tracing._remote(api, None) is None


def test_exporters_are_named_by_the_otel_variables():
    assert tracing.exporter_names({}) == ["otlp_proto_grpc"]  # the Python SDK's default protocol
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "otlp,console",
                                   "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                   "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}) == [
        "otlp_proto_http", "console"]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": " console , otlp ",
                                   "OTEL_EXPORTER_OTLP_PROTOCOL": " http/protobuf "}) == [
        "console", "otlp_proto_http"]
    assert tracing.exporter_names({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) \
        == ["otlp_proto_grpc"]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none,,console,"}) == ["console"]
    with pytest.raises(ValueError) as err:
        tracing.exporter_names({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert str(err.value) == ("OTEL_EXPORTER_OTLP_PROTOCOL is 'http/json': not one of grpc, http/protobuf (the OTLP "
                              "exporters installed with beach[otel])")
    # (a protocol only matters to otlp)
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "x"}) == [
        "console"]


@pytest.mark.parametrize("environ, asked", [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": ""}, False),
    ({"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": " True "}, False),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "false"}, True),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": ""}, True),
])
def test_export_is_asked_by_an_exporter_or_an_endpoint_unless_disabled(environ, asked):
    assert tracing._asked(environ) is asked


def test_the_outcome_of_a_call_ended_by_an_exception():
    assert tracing.raised(ClosedError("the connection is closed")) == ("closed",
                                                                       "ClosedError: the connection is closed")
    assert tracing.raised(ValueError("bad")) == ("error", "ValueError: bad")
    assert tracing.raised(KeyError("k")) == ("error", "KeyError: 'k'")


def test_span_attributes_follow_the_messaging_conventions():
    assert tracing._attributes("request", "shop", "a/b", "get", "id-1") == {
        "messaging.system": "nats", "messaging.operation.name": "request", "messaging.destination.name": "a/b",
        "messaging.message.id": "id-1", "beach.realm": "shop", "beach.request_type": "get"}


@pytest.fixture
def no_api(monkeypatch):
    """As where OpenTelemetry is not installed (what `_api` finds then)."""
    monkeypatch.setattr(tracing, "_loaded", [None])


def test_without_the_api_a_served_requests_context_is_carried_unchanged(no_api):
    def serving():
        assert tracing.current() is None and tracing.current_trace_id() is None
        assert tracing.call("request", "r", "c", "t", "id") is None  # nothing to carry: format 1
        incoming = context(GOOD, "k=v")
        served = tracing.serve(incoming, "r", "c", "t", "id", "uid", None, True)
        assert served is not None and served.span is None
        assert tracing.current() == incoming and tracing.current_trace_id() == "ab" * 16
        call = tracing.call("request", "r", "c", "t", "id2")
        assert call is not None and call.own() == incoming
        assert call.attempt(0, "c").context == incoming and call.attempt(1, "uid-1").context == incoming
        served.end("ok")
        assert tracing.serve(context("garbage"), "r", "c", "t", "id", "uid", None, True) is None

    contextvars.copy_context().run(serving)


def test_without_the_api_a_parent_holds_within_its_block_only(no_api):
    with tracing.parent(context(GOOD)):
        assert tracing.current_trace_id() == "ab" * 16
        with tracing.parent(context("garbage")):  # names none: no change
            assert tracing.current_trace_id() == "ab" * 16
    assert tracing.current() is None


def test_a_control_operation_carries_its_context_in_nats_headers():
    assert tracing.headers(None) is None
    assert tracing.headers(context(GOOD)) == {"traceparent": GOOD}  # no tracestate: no header
    assert tracing.headers(context(GOOD, "k=v")) == {"traceparent": GOOD, "tracestate": "k=v"}
    # and back
    for carried in (context(GOOD), context(GOOD, "k=v")):
        assert tracing.from_headers(tracing.headers(carried)) == carried
    assert tracing.from_headers(None) is None and tracing.from_headers({}) is None
    assert tracing.from_headers({"tracestate": "k=v"}) is None
    assert tracing.from_headers({"traceparent": 5}) is None  # not a string
    assert tracing.from_headers({"traceparent": GOOD, "tracestate": 5}) == context(GOOD, "")
    assert tracing.from_headers({"traceparent": "garbage", "x": "y"}) == context("garbage", "")  # (judged by _parse)


def test_rpc_span_attributes():
    assert tracing._rpc_attributes("beach.node", "spawn", "n1", "shop") == {
        "rpc.system": "beach", "rpc.service": "beach.node", "rpc.method": "spawn", "beach.node.id": "n1",
        "beach.realm": "shop"}
    assert tracing._rpc_attributes("beach.host", "stop", "h1", None) == {
        "rpc.system": "beach", "rpc.service": "beach.host", "rpc.method": "stop", "beach.host.id": "h1"}


def test_without_the_api_a_well_formed_context_is_carried_by_the_serving_task(no_api):
    def serving():
        assert tracing._carry(context("garbage")) is None and tracing.current() is None
        assert tracing._carry(None) is None
        served = tracing._carry(context(GOOD, "k=v"))
        assert served is not None and (served.span, served.token) == (None, None)
        assert tracing.current() == context(GOOD, "k=v")
        # work that outlives the operation runs outside its trace
        assert tracing.outside().run(tracing.current) is None
        assert tracing.current() == context(GOOD, "k=v")

    contextvars.copy_context().run(serving)
