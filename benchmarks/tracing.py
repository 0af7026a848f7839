"""What tracing costs: request/reply at 64 in flight with tracing off, with the trace context only,
and with the OpenTelemetry SDK exporting every span, against raw nats-py in the same run.

The script starts, on 127.0.0.1 only: a nats-server, a beach node agent with one actor host
running ``benchmarks/actors`` (``Echo``: ``async def`` handler; ``SyncEcho``: ``def``), a raw
nats-py responder, and — for the SDK case — an OTLP/HTTP collector in this process (a thread that
decodes each export and counts its spans). Three cases, each against raw nats-py in alternating
rounds (medians), 64 requests in flight:

* **off**: no span anywhere (no tracer provider, no current span): requests go in format 1, as
  before tracing (`benchmarks/compare.py BASE request_reply.py` compares that with a revision before);
* **context only**: the client's requests run under a span context of the application's own (a
  non-recording span, no SDK provider): every request carries it (format 2), the host enters and
  passes it on, nothing is recorded;
* **SDK**: a second node whose processes, like this client, get ``OTEL_TRACES_EXPORTER=otlp`` with
  the collector's endpoint (the default sampler: every span kept): a CLIENT span and an attempt
  span per call here, a SERVER span per request in the host, all exported in batches.

Run it from the repository root::

    .venv/bin/python benchmarks/tracing.py [--quick] [--out FILE]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import nats
from _harness import (
    ECHO_RESPONDER,
    ECHO_SUBJECT,
    TIMEOUT,
    WORKERS,
    Call,
    Result,
    arguments,
    checked,
    cluster,
    in_flight,
    main_guard,
    publish,
    raw_echo_call,
    raw_peer,
    wait_registered,
)
from opentelemetry import context, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from beach.client.core import AsyncBeach


@dataclass(frozen=True)
class Sizes:
    warmup: int
    in_flight: int
    rounds: int


FULL = Sizes(warmup=500, in_flight=20000, rounds=3)
QUICK = Sizes(warmup=50, in_flight=1000, rounds=1)


class Collector:
    """An OTLP/HTTP receiver in this process: counts the spans it is sent."""

    def __init__(self) -> None:
        self.spans = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                collector.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.server.server_address[1]}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in this process's environment (which the node agent and its hosts inherit)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def measure(config: str, url: str, node: Any, node_log: str, sizes: Sizes,
                  parent: trace.Span | None = None) -> dict[str, tuple[Result, Result]]:
    """Raw and beach at `WORKERS` in flight, async and sync handler (under ``parent``, if given)."""
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(config)
        stack.push_async_callback(client.close)
        nc = await nats.connect(url)
        stack.push_async_callback(nc.close)
        await wait_registered(client, node, node_log)
        for name, category in (("Echo", "bench/echo"), ("SyncEcho", "bench/syncecho")):
            checked(await client.addActor(name, category))
        raw = raw_echo_call(nc)
        token = None if parent is None else context.attach(trace.set_span_in_context(parent))
        try:
            results = {}
            for case, category in (("async", "bench/echo"), ("sync", "bench/syncecho")):
                handle = client.getActorHandle(category, timeout=TIMEOUT)

                async def call(i: int, handle: Any = handle) -> Any:
                    return checked(await handle.arequest("echo", {"n": i}))

                results[case] = await compare(raw, call, sizes)
            return results
        finally:
            if token is not None:
                context.detach(token)


async def compare(raw: Call, beach: Call, sizes: Sizes) -> tuple[Result, Result]:
    await in_flight(raw, sizes.warmup)
    await in_flight(beach, sizes.warmup)
    rounds: tuple[list[Result], list[Result]] = ([], [])
    for _ in range(sizes.rounds):
        for results, call in zip(rounds, (raw, beach), strict=True):
            results.append(await in_flight(call, sizes.in_flight))
    return Result.median(rounds[0]), Result.median(rounds[1])


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    results: dict[str, dict[str, tuple[Result, Result]]] = {}
    # an application's own span context, not recorded (no provider yet in this process): carried
    carried = trace.NonRecordingSpan(trace.SpanContext(0x5EED, 0xBEEF, False, trace.TraceFlags(1)))
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            raw_peer(ECHO_RESPONDER, bench.url, ECHO_SUBJECT):
        results["off"] = asyncio.run(measure(bench.config, bench.url, bench.node, bench.node_log, sizes))
        results["context only"] = asyncio.run(measure(bench.config, bench.url, bench.node, bench.node_log,
                                                      sizes, carried))
    collector = Collector()
    try:
        with environment(collector.env()), tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, \
                cluster(tmp) as bench, raw_peer(ECHO_RESPONDER, bench.url, ECHO_SUBJECT):
            # (this client builds its provider from the same variables as the node's processes)
            results["SDK, exporting"] = asyncio.run(measure(bench.config, bench.url, bench.node, bench.node_log,
                                                            sizes))
            provider = trace.get_tracer_provider()
            provider.force_flush()  # type: ignore[attr-defined]
        exported = collector.spans
    finally:
        collector.close()
    lines = [f"| case ({WORKERS} in flight) | raw nats-py req/s | beach req/s | beach/raw |", "|---|---:|---:|---:|"]
    for mode, cases in results.items():
        for case, (raw, beach) in cases.items():
            ratio = beach.rate / raw.rate
            lines.append(f"| {mode}, {case} handler | {raw.rate:,.0f} | {beach.rate:,.0f} | {ratio:.2f} |")
    lines += ["", f"Spans the collector received in the SDK case: {exported:,} (the host's are sent as its "
                  f"batches fill; a batch still in flight when the node stopped is not counted). Each figure: the "
                  f"median of {sizes.rounds} round(s), raw and beach alternating, after {sizes.warmup} warm-up "
                  f"requests per side and case."]
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
