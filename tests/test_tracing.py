"""Trace context across requests and the spans exported (beach.tracing), against real nodes and a
real OTLP/HTTP receiver decoding the protobuf the exporters send.

The test process sets no tracer provider of its own (one per process, for good): the traced
clients are scripts run as processes, configured, like the nodes, by OTEL_* variables only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from beach import wire
from beach.testing import LocalCluster

RELAY = '''
from beach.actor import Actor


class TraceRelay(Actor):
    def init(self, parameters):
        self.handle('relay', self.relay)

    def relay(self, msg):
        # a def handler: its worker thread's blocking request carries the handler's span
        self.log(f"relaying {msg.data['marker']}")
        resp = self.getActorHandle('trace/echo').request('echo', msg.data, timeout=10)
        return (True, resp.data) if resp.isSuccess else (False, resp.error)
'''

ECHO = '''
import asyncio

from beach.actor import Actor


class TraceEcho(Actor):
    def init(self, parameters):
        self.seen = set()
        self.handle('echo', self.echo)
        self.handle('boom', self.boom)
        self.handle('slow_once', self.slow_once)
        self.handle('rows', self.rows)

    async def echo(self, msg):
        self.log(f"echoing {msg.data['marker']}")
        return (True, msg.data)

    async def boom(self, msg):
        raise ValueError('boom on purpose')

    async def rows(self, msg):
        for i in range(3):
            yield i

    async def slow_once(self, msg):
        if msg.id not in self.seen:  # too slow the first time: the caller retries the same id
            self.seen.add(msg.id)
            await asyncio.sleep(3)
        return (True, {})
'''

COUNTER = '''
from beach.actor import Actor


class TraceCounter(Actor):
    def init(self, parameters):
        self.handle('add', self.add)

    async def add(self, msg):
        return (True, {'n': await self.state.aupdate(msg.data['key'], lambda n: (n or 0) + 1)})
'''

OPERATIONS = '''
import json, sys
from opentelemetry import trace
from beach import Beach

beach = Beach(sys.argv[1])
with trace.get_tracer('script').start_as_current_span('operations'):
    spawned = beach.addActor('TraceCounter', 'trace/count')
    added = beach.getActorHandle('trace/count').request('add', {'key': 'k'}, timeout=10)
    deleted = beach.deleteState('trace/count', 'k')
print(json.dumps([spawned.isSuccess, spawned.data.get('uid'), added.isSuccess, deleted.isSuccess]))
beach.close()
'''

CLIENT = '''
import json, sys
from opentelemetry import trace
from beach import Beach

beach = Beach(sys.argv[1])
marker = sys.argv[2]
with trace.get_tracer('script').start_as_current_span('script'):  # the application's own span: the parent
    relay = beach.getActorHandle('trace/relay').request('relay', {'marker': marker}, timeout=20)
fan = beach.getActorHandle('trace/fan').requestFromAll('echo', {'marker': 'fan'}).waitAll(10)
boom = beach.getActorHandle('trace/echo').request('boom', {}, timeout=10)
retried = beach.getActorHandle('trace/echo').request('slow_once', {}, timeout=1, nRetries=1)
rows = list(beach.getActorHandle('trace/echo').stream('rows'))
print(json.dumps({'relay': [relay.isSuccess, relay.data], 'boom': boom.error, 'retried': retried.isSuccess,
                  'fan': [r.isSuccess for r in fan], 'rows': rows}))
beach.close()
'''


def run_client(cluster: LocalCluster, marker: str, env: dict[str, str]) -> dict[str, Any]:
    """Run `CLIENT` as a process of its own with ``env`` beside this one's; what it printed."""
    script = os.path.join(cluster.directory, "client.py")
    with open(script, "w") as f:
        f.write(CLIENT)
    ran = subprocess.run([sys.executable, script, cluster.config_path, marker], capture_output=True, text=True,
                         timeout=60, env={**os.environ, **env})
    assert ran.returncode == 0, ran.stderr
    return dict(json.loads(ran.stdout))


class Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1: every span it is sent, with its service's name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        service = next(a.value.string_value for a in resource_spans.resource.attributes
                                       if a.key == "service.name")
                        for scope_spans in resource_spans.scope_spans:
                            collector.spans.extend((service, span) for span in scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The OTEL_* variables that send a process's spans here, at once."""
        return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}

    def wait(self, found: Callable[[list[tuple[str, Span]]], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                result = found(list(self.spans))
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attrs(span: Span) -> dict[str, Any]:
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.close()


@pytest.fixture
def code(tmp_path: Any) -> str:
    realm = tmp_path / "global"
    realm.mkdir()
    (realm / "TraceRelay.py").write_text(RELAY)
    (realm / "TraceEcho.py").write_text(ECHO)
    (realm / "TraceCounter.py").write_text(COUNTER)
    return str(tmp_path)


def test_one_trace_across_two_nodes(collector: Collector, code: str) -> None:
    with LocalCluster(code, nodes=2, env=collector.env()) as cluster:
        beach = cluster.client()
        assert beach.addActor("TraceRelay", "trace/relay", strategy="host_affinity", strategy_hint="local-1").isSuccess
        assert beach.addActor("TraceEcho", "trace/echo", strategy="host_affinity", strategy_hint="local-2").isSuccess
        for node in ("local-1", "local-2"):
            assert beach.addActor("TraceEcho", "trace/fan", strategy="host_affinity", strategy_hint=node).isSuccess
        marker = os.urandom(6).hex()
        outcome = run_client(cluster, marker, collector.env())
        assert outcome["relay"] == [True, {"marker": marker}]
        assert outcome["boom"].startswith("exception: ValueError") and outcome["retried"]
        assert outcome["fan"] == [True, True] and outcome["rows"] == [0, 1, 2]

        def chain(spans: list[tuple[str, Span]]) -> dict[str, tuple[str, Span]] | None:
            named: dict[str, tuple[str, Span]] = {}
            for service, span in spans:
                a = attrs(span)
                if a.get("messaging.destination.name") == "trace/relay" and span.name == "request trace/relay":
                    named["call"] = service, span
                elif span.name == "process trace/relay":
                    named["relay"] = service, span
                elif span.name == "request trace/echo" and a.get("beach.request_type") == "echo":
                    named["inner"] = service, span
                elif span.name == "process trace/echo" and a.get("beach.request_type") == "echo":
                    named["echo"] = service, span
            attempts = [(s, x) for s, x in spans if x.name.startswith("send ")]
            script = [(s, x) for s, x in spans if x.name == "script"]
            if script:
                named["script"] = script[0]
            for key in ("call", "inner"):
                if key in named:
                    mine = [a for a in attempts if a[1].parent_span_id == named[key][1].span_id]
                    if mine:
                        named[key + "_attempt"] = mine[0]
            return named if len(named) == 7 else None

        found = collector.wait(chain)
        assert found, f"spans received: {[(s, x.name) for s, x in collector.spans]}"
        services = {key: service for key, (service, _) in found.items()}
        assert services == {"script": "beach-client", "call": "beach-client", "call_attempt": "beach-client",
                            "relay": "beach-host", "inner": "beach-host", "inner_attempt": "beach-host",
                            "echo": "beach-host"}
        spans = {key: span for key, (_, span) in found.items()}
        assert len({span.trace_id for span in spans.values()}) == 1
        # each with the right parent: call → attempt → relay's server span → its call → attempt → echo's
        assert spans["script"].parent_span_id == b""
        assert spans["call"].parent_span_id == spans["script"].span_id
        assert spans["call_attempt"].parent_span_id == spans["call"].span_id
        assert spans["relay"].parent_span_id == spans["call_attempt"].span_id
        assert spans["inner"].parent_span_id == spans["relay"].span_id
        assert spans["inner_attempt"].parent_span_id == spans["inner"].span_id
        assert spans["echo"].parent_span_id == spans["inner_attempt"].span_id
        kinds = {key: span.kind for key, span in spans.items()}
        assert kinds == {"script": Span.SPAN_KIND_INTERNAL, "call": Span.SPAN_KIND_CLIENT,
                         "call_attempt": Span.SPAN_KIND_CLIENT, "relay": Span.SPAN_KIND_SERVER,
                         "inner": Span.SPAN_KIND_CLIENT,
                         "inner_attempt": Span.SPAN_KIND_CLIENT, "echo": Span.SPAN_KIND_SERVER}
        relay = attrs(spans["relay"])
        assert relay["messaging.system"] == "nats" and relay["beach.realm"] == "global"
        assert relay["beach.node"] == "local-1" and relay["beach.outcome"] == "ok"
        assert len(relay["beach.actor.uid"]) == 32
        assert attrs(spans["echo"])["beach.node"] == "local-2"
        assert attrs(spans["call"])["messaging.message.id"] == relay["messaging.message.id"]
        trace_id = spans["call"].trace_id.hex()

        # a retried request: one call, two attempt spans (the first timed out), one server span each
        def retried(spans: list[tuple[str, Span]]) -> list[Span] | None:
            calls = [x for _, x in spans
                     if x.name == "request trace/echo" and attrs(x)["beach.request_type"] == "slow_once"]
            if not calls:
                return None
            children = [x for _, x in spans if x.parent_span_id == calls[0].span_id]
            if len(children) != 2:
                return None
            return [calls[0], *sorted(children, key=lambda x: attrs(x)["beach.attempt"])]

        call, first, second = collector.wait(retried) or pytest.fail("no retried call with two attempts")
        assert attrs(call)["beach.outcome"] == "ok"
        assert [attrs(first)["beach.outcome"], attrs(second)["beach.outcome"]] == ["timeout", "ok"]
        assert first.status.code == Status.STATUS_CODE_ERROR and second.status.code != Status.STATUS_CODE_ERROR

        # a fan-out: one call, its actors' attempts siblings, each the parent of that actor's server span
        def fanned(spans: list[tuple[str, Span]]) -> tuple[Span, list[Span], list[Span]] | None:
            call = next((x for _, x in spans if x.name == "requestFromAll trace/fan"), None)
            if call is None:
                return None
            sends = [x for _, x in spans if x.parent_span_id == call.span_id]
            served = [x for _, x in spans if x.name == "process trace/fan"
                      and x.parent_span_id in {send.span_id for send in sends}]
            return (call, sends, served) if len(served) == 2 else None

        fan_call, sends, served = collector.wait(fanned) or pytest.fail("no fan-out with two served requests")
        assert len(sends) == 2 and {attrs(x)["beach.node"] for x in served} == {"local-1", "local-2"}
        assert {attrs(x)["beach.actor.uid"] for x in sends} == {attrs(x)["beach.actor.uid"] for x in served}

        # a stream: one CLIENT span for all its items, the parent of the SERVER span that yields them
        def streamed(spans: list[tuple[str, Span]]) -> tuple[Span, Span] | None:
            call = next((x for _, x in spans if x.name == "stream trace/echo"), None)
            served = next((x for _, x in spans if x.name == "process trace/echo" and call is not None
                           and x.parent_span_id == call.span_id), None)
            return None if served is None else (call, served)

        stream_call, stream_served = collector.wait(streamed) or pytest.fail("no stream span with its server span")
        assert stream_call.kind == Span.SPAN_KIND_CLIENT and stream_served.kind == Span.SPAN_KIND_SERVER
        assert attrs(stream_call)["beach.stream.items"] == 3 and attrs(stream_call)["beach.outcome"] == "ok"
        assert attrs(stream_served)["beach.request_type"] == "rows"

        # a handler's exception marks its span
        def boomed(spans: list[tuple[str, Span]]) -> Span | None:
            return next((x for _, x in spans if x.name == "process trace/echo"
                         and attrs(x)["beach.request_type"] == "boom"), None)

        boom = collector.wait(boomed) or pytest.fail("no span of the handler that raised")
        assert boom.status.code == Status.STATUS_CODE_ERROR and "ValueError" in boom.status.message
        assert attrs(boom)["error.type"] == "exception"
        event = next(e for e in boom.events if e.name == "exception")
        assert {a.key: a.value.string_value for a in event.attributes}["exception.type"] == "ValueError"

        # the actors' log lines carry the trace id: one trace's lines across both actors and nodes
        def lines(*args: str) -> list[dict[str, Any]]:
            result = subprocess.run([sys.executable, "-m", "beach.cli", "logs", cluster.config_path, *args, "--json"],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            return [json.loads(line) for line in result.stdout.splitlines() if marker in line]

        deadline = time.monotonic() + 15
        while len(found_lines := lines("--request", trace_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert sorted((x["msg"], x["node"], x["trace"]) for x in found_lines) == [
            (f"echoing {marker}", "local-2", trace_id), (f"relaying {marker}", "local-1", trace_id)]
        relay_line = next(x for x in found_lines if x["msg"].startswith("relaying"))
        assert relay_line["req"] == relay["messaging.message.id"]
        assert [x["msg"] for x in lines("--request", relay_line["req"])] == [f"relaying {marker}"]

        # the sampling decision is respected: a client that samples nothing still carries its
        # context (the lines have its trace id), and the hosts record nothing of that trace
        unsampled = os.urandom(6).hex()
        run_client(cluster, unsampled, {**collector.env(), "OTEL_TRACES_SAMPLER": "always_off"})
        echoed = cluster.wait_for_log(f"echoing {unsampled}", "trace/echo")
        assert echoed["trace"] and echoed["trace"] != trace_id
        time.sleep(2)  # (the hosts export every 50 ms: a span of that trace would be here by now)
        assert not [x for _, x in collector.spans if x.trace_id.hex() == echoed["trace"]]


def test_control_operations_and_state_commits_are_traced(collector: Collector, code: str) -> None:
    """A spawn is one trace from the caller to the actor host (the client's call, the agent serving
    it, its call to the host, the host serving it); a stateful request's commit is a span of the
    handler's; an admin's state operation is the caller's call and the agent serving it."""
    with LocalCluster(code, nodes=1, env=collector.env()) as cluster:
        script = os.path.join(cluster.directory, "operations.py")
        with open(script, "w") as f:
            f.write(OPERATIONS)
        ran = subprocess.run([sys.executable, script, cluster.config_path], capture_output=True, text=True,
                             timeout=60, env={**os.environ, **collector.env()})
        assert ran.returncode == 0, ran.stderr
        spawned, uid, added, deleted = json.loads(ran.stdout)
        assert spawned and added and deleted

        def named(spans: list[tuple[str, Span]]) -> dict[str, tuple[str, Span]] | None:
            found: dict[str, tuple[str, Span]] = {}
            for service, span in spans:
                key = {"operations": "script", "process trace/count": "process", "commit state": "commit"}.get(
                    span.name, span.name)
                if service == "beach-client" and span.name.startswith("beach.node/"):
                    key = "client " + span.name
                elif span.name == "commit state" and service == "beach-node":  # (the admin's delete)
                    key = "node commit"
                found.setdefault(key, (service, span))
            wanted = {"script", "client beach.node/spawn", "beach.node/spawn", "beach.host/spawn", "process", "commit",
                      "client beach.node/state", "beach.node/state", "node commit"}
            return found if wanted <= set(found) and sum(
                1 for _, x in spans if x.name == "beach.host/spawn") == 2 else None

        found = collector.wait(named)
        assert found, f"spans received: {[(s, x.name) for s, x in collector.spans]}"
        spans = {key: span for key, (_, span) in found.items()}
        assert len({spans[k].trace_id for k in spans if k in {"script", "client beach.node/spawn", "process",
                                                               "commit", "client beach.node/state"}}) == 1
        # the spawn: the client's call → the agent serving it → its call to the host → the host serving it
        by_kind = {x.kind: (service, x) for service, x in collector.spans if x.name == "beach.host/spawn"}
        assert set(by_kind) == {Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_SERVER}
        assert (by_kind[Span.SPAN_KIND_CLIENT][0], by_kind[Span.SPAN_KIND_SERVER][0]) == ("beach-node", "beach-host")
        agent_call, host_serving = by_kind[Span.SPAN_KIND_CLIENT][1], by_kind[Span.SPAN_KIND_SERVER][1]
        assert spans["client beach.node/spawn"].parent_span_id == spans["script"].span_id
        assert spans["client beach.node/spawn"].kind == Span.SPAN_KIND_CLIENT
        assert spans["beach.node/spawn"].parent_span_id == spans["client beach.node/spawn"].span_id
        assert spans["beach.node/spawn"].kind == Span.SPAN_KIND_SERVER
        assert agent_call.parent_span_id == spans["beach.node/spawn"].span_id
        assert host_serving.parent_span_id == agent_call.span_id
        assert {found["beach.node/spawn"][0], found["client beach.node/spawn"][0]} == {"beach-node", "beach-client"}
        served = attrs(spans["beach.node/spawn"])
        assert served["rpc.method"] == "spawn" and served["beach.node.id"] == "local-1"
        assert served["beach.outcome"] == "ok" and attrs(host_serving)["beach.host.id"].startswith("local-1")
        # the stateful request: its commit is a child of the handler's span, and committed
        assert spans["commit"].parent_span_id == spans["process"].span_id
        assert spans["commit"].kind == Span.SPAN_KIND_INTERNAL
        commit = attrs(spans["commit"])
        assert commit["beach.outcome"] == "ok" and commit["beach.state.written"] == 1
        assert commit["beach.state.replayed"] is False
        assert attrs(spans["process"])["beach.actor.uid"] == uid
        # the admin's state operation
        assert spans["beach.node/state"].parent_span_id == spans["client beach.node/state"].span_id
        assert spans["client beach.node/state"].parent_span_id == spans["script"].span_id
        assert spans["node commit"].parent_span_id == spans["beach.node/state"].span_id  # (the delete, committed)
        # a request that carries no context (this process traces nothing) starts a trace of its own:
        # the actor's subscription, made while its spawn was served, is not part of that spawn's trace
        assert cluster.client().getActorHandle("trace/count").request("add", {"key": "j"}).isSuccess
        first = spans["process"].span_id
        untraced = collector.wait(lambda received: [x for _, x in received if x.name == "process trace/count"
                                                    and x.span_id != first])
        assert untraced and untraced[0].parent_span_id == b"", untraced
        assert untraced[0].trace_id != spans["script"].trace_id


def test_context_is_carried_where_nothing_records(collector: Collector, code: str) -> None:
    """Nodes without OTEL_* variables record nothing, yet pass the client's trace on: the echo's
    line carries the trace id of the client's span, through the relay."""
    with LocalCluster(code, nodes=1) as cluster:
        beach = cluster.client()
        assert beach.addActor("TraceRelay", "trace/relay").isSuccess
        assert beach.addActor("TraceEcho", "trace/echo").isSuccess
        marker = os.urandom(6).hex()
        run_client(cluster, marker, collector.env())
        call = collector.wait(lambda spans: next((x for _, x in spans if x.name == "request trace/relay"), None))
        assert call is not None
        line = cluster.wait_for_log(f"echoing {marker}", "trace/echo")
        assert line["trace"] == call.trace_id.hex()
        assert not [x for _, x in collector.spans if x.name.startswith("process ")]  # (the hosts record nothing)


def test_without_the_api_the_context_is_carried_unchanged() -> None:
    """Where no OpenTelemetry is installed beach imports none, and passes a request's context on."""
    probe = textwrap.dedent('''
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        from beach import tracing, wire
        assert tracing.call("request", "r", "c", "t", "id") is None  # nothing to carry: format 1
        incoming = wire.TraceContext("00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "k=v")
        assert tracing.serve(incoming, "r", "c", "t", "id", "uid", None, True) is not None
        call = tracing.call("request", "r", "c", "t", "id2")
        assert call.attempt(0, "c").context == incoming and tracing.current_trace_id() == "ab" * 16
        assert tracing.serve(wire.TraceContext("garbage", ""), "r", "c", "t", "id", "uid", None, True) is None
        assert "opentelemetry.trace" not in sys.modules
        print("ok")
    ''')
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert ran.stdout.strip() == "ok", ran.stderr


def test_a_node_of_the_previous_release_gets_format_1(code: str) -> None:
    """A half-upgraded cluster: while a node whose entry does not say it reads format 2 is live, a
    traced request goes in format 1 (exactly six elements, the previous release's only format);
    once it is gone, in format 2."""
    import asyncio

    from opentelemetry import trace

    from beach.state import directory
    from beach.wire import subjects

    async def run(cluster: LocalCluster) -> None:
        client = await cluster.aclient()
        session = client.session
        bodies: list[Any] = []

        async def previous_release(msg: Any) -> None:  # the previous release's check of a request
            value = wire.unpack(msg.data)
            ok = isinstance(value, list) and len(value) == 6 and value[0] == 1
            bodies.append(value)
            await session.nc.publish(msg.reply, wire.pack_reply(ok, "" if ok else wire.INVALID_REQUEST, {}))

        await session.nc.subscribe("beach.r.global.old", cb=previous_release)
        # the previous release's entry has no 'reads' (at its default, [], a node entry leaves it out)
        old = msgspec.structs.replace(session.view.nodes["local-1"], id="old-node", updated=time.time(), reads=[])
        assert b"reads" not in wire.pack(old)

        async def beating() -> None:  # the previous release rewrites its entry every second (its heartbeat)
            while True:
                await directory.put_node(session.view.nodes_kv, msgspec.structs.replace(old, updated=time.time()))
                await asyncio.sleep(directory.HEARTBEAT)

        heartbeats = asyncio.get_running_loop().create_task(beating())
        deadline = time.monotonic() + 10
        while session.view.traced and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not session.view.traced
        handle = client.getActorHandle("old")
        # a span of the client's own (through the API: nothing records it in this process, it is carried)
        parent = trace.NonRecordingSpan(trace.SpanContext(0xAB, 0xCD, False, trace.TraceFlags(1)))
        with trace.use_span(parent):
            assert (await handle.arequest("x")).isSuccess
            assert len(bodies[-1]) == 6
            heartbeats.cancel()
            await session.view.nodes_kv.delete(subjects.escape("old-node"))
            while not session.view.traced and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            response = await handle.arequest("x")
        assert not response.isSuccess and response.error == wire.INVALID_REQUEST  # what the previous release says
        # (format 3 now: every node reads it; it carries the context where format 2 did)
        assert bodies[-1][0] == 3 and bodies[-1][6][0] == f"00-{0xAB:032x}-{0xCD:016x}-01"
        await client.close()

    with LocalCluster(code, nodes=1) as cluster:
        asyncio.run(run(cluster))


def configured(environ: dict[str, str], before: str = "") -> subprocess.CompletedProcess[str]:
    """Run `tracing.configure` in a process of its own with ``environ`` (after ``before``)."""
    probe = before + textwrap.dedent('''
        import logging
        from opentelemetry import trace
        from beach import tracing
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        print(tracing.configure("beach-test"), type(trace.get_tracer_provider()).__name__)
    ''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env={**env, **environ})


def test_the_provider_is_built_from_otel_variables_only_where_asked() -> None:
    built = configured({"OTEL_TRACES_EXPORTER": "console"})
    assert built.stdout.split() == ["True", "TracerProvider"], built.stderr
    assert configured({}).stdout.split() == ["False", "ProxyTracerProvider"]  # nothing asked: nothing exported
    assert configured({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}).stdout.split()[0] == "False"
    # the application's own provider is used as it is
    own = configured({"OTEL_TRACES_EXPORTER": "console"}, before=textwrap.dedent('''
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        class Mine(TracerProvider):
            pass
        trace.set_tracer_provider(Mine())
    '''))
    assert own.stdout.split() == ["False", "Mine"], own.stderr
    # what cannot be had is an error naming it; the process runs on without export
    unknown = configured({"OTEL_TRACES_EXPORTER": "zipkin"})
    assert unknown.stdout.split()[0] == "False"
    assert "OTEL_TRACES_EXPORTER asks for 'zipkin', which no installed package provides" in unknown.stderr
    assert "otlp_proto_http" in unknown.stderr
    protocol = configured({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert "OTEL_EXPORTER_OTLP_PROTOCOL is 'http/json': not one of grpc, http/protobuf" in protocol.stderr
