"""Request/reply through beach versus raw nats-py, against one nats-server started here.

The script starts, on 127.0.0.1 only: a nats-server (`beach.bus.embedded.EmbeddedServer`, temporary
store), a beach node agent with one actor host (``python -m nodeagent``) running the actors of
``benchmarks/actors`` (``Echo``: ``async def`` handler; ``SyncEcho``: plain ``def`` handler), and a
raw responder process that answers with nats-py alone (``await nc.publish(msg.reply, msg.data)``).
Both responders are separate processes, and both sides get the same msgpack-encoded ``{'n': i}``.

It measures, each case after a warm-up, in rounds that alternate raw and beach (the figures are
the medians over the rounds, so a burst of noise on a shared machine hits one round, not a side):

* sequential requests: req/s, p50 and p99 latency;
* 64 requests in flight (``asyncio.gather`` over 64 workers): req/s, async and sync handler;
* the blocking face, ``Beach(config).getActorHandle(...).request(...)``, sequentially from a plain
  thread (nats-py has no blocking API: its raw figure is the async sequential one).

and prints a markdown table with the beach/raw ratios. Everything it started is stopped at the end,
also on an error or Ctrl-C. Run it from the repository root::

    .venv/bin/python benchmarks/request_reply.py [--quick] [--out FILE]

``--quick`` is a short smoke-test run; ``--out FILE`` also writes the table to FILE.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from _harness import (
    ECHO_RESPONDER,
    ECHO_SUBJECT,
    TIMEOUT,
    WORKERS,
    Call,
    Cluster,
    Result,
    arguments,
    checked,
    cluster,
    in_flight,
    main_guard,
    publish,
    raw_echo_call,
    raw_peer,
    sequential,
    summarize,
    wait_registered,
)

from beach.beach_api import Beach
from beach.client.core import AsyncBeach


@dataclass(frozen=True)
class Sizes:
    """How many requests each case sends."""

    warmup: int
    sequential: int
    in_flight: int
    blocking: int
    rounds: int


FULL = Sizes(warmup=500, sequential=3000, in_flight=20000, blocking=1000, rounds=3)
QUICK = Sizes(warmup=50, sequential=200, in_flight=1000, blocking=100, rounds=1)


# ---------------------------------------------------------------- measuring


async def compare(run: Callable[[Call, int], Awaitable[Result]], raw: Call, beach: Call, n: int,
                  sizes: Sizes) -> tuple[Result, Result]:
    """Warm both sides up, then ``run(call, n)`` alternately for raw and beach: their medians."""
    await run(raw, sizes.warmup)
    await run(beach, sizes.warmup)
    rounds: tuple[list[Result], list[Result]] = ([], [])
    for _ in range(sizes.rounds):
        for results, call in zip(rounds, (raw, beach), strict=True):
            results.append(await run(call, n))
    return Result.median(rounds[0]), Result.median(rounds[1])


def beach_call(client: AsyncBeach, category: str) -> Call:
    """An ``arequest('echo', ...)`` to the actors of ``category``."""
    handle = client.getActorHandle(category, timeout=TIMEOUT)

    async def call(i: int) -> Any:
        return checked(await handle.arequest("echo", {"n": i}))
    return call


def blocking_sequential(config: str, sizes: Sizes) -> Result:
    """Sequential blocking ``request()`` calls from the calling (plain) thread, with a `Beach` of its
    own: the median over the rounds."""
    with Beach(config) as client:
        handle = client.getActorHandle("bench/echo", timeout=TIMEOUT)
        for i in range(sizes.warmup):
            checked(handle.request("echo", {"n": i}))
        rounds = []
        for _ in range(sizes.rounds):
            latencies = []
            start = time.perf_counter()
            for i in range(sizes.blocking):
                sent = time.perf_counter()
                checked(handle.request("echo", {"n": i}))
                latencies.append(time.perf_counter() - sent)
            rounds.append(summarize(latencies, time.perf_counter() - start))
        return Result.median(rounds)


async def run_cases(bench: Cluster, sizes: Sizes) -> dict[str, tuple[Result, Result]]:
    """Deploy the actors and measure every case: ``{case: (raw, beach)}``."""
    config = bench.config
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(config)
        stack.push_async_callback(client.close)
        nc = await nats.connect(bench.url)
        stack.push_async_callback(nc.close)
        await wait_registered(client, bench.node, bench.node_log)
        for name, category in (("Echo", "bench/echo"), ("SyncEcho", "bench/syncecho")):
            checked(await client.addActor(name, category))
        raw = raw_echo_call(nc)
        echo, sync_echo = beach_call(client, "bench/echo"), beach_call(client, "bench/syncecho")
        results = {}
        for case, run, n, beach in (("sequential", sequential, sizes.sequential, echo),
                                    ("in flight, async", in_flight, sizes.in_flight, echo),
                                    ("in flight, sync", in_flight, sizes.in_flight, sync_echo)):
            results[case] = await compare(run, raw, beach, n, sizes)
        blocking = await asyncio.to_thread(blocking_sequential, config, sizes)
        results["blocking"] = (results["sequential"][0], blocking)
        return results


# ---------------------------------------------------------------- reporting


def table(results: dict[str, tuple[Result, Result]], sizes: Sizes) -> str:
    """The markdown table of the results."""
    rows = []

    def throughput(label: str, raw: Result, beach: Result) -> None:
        rows.append((label, f"{raw.rate:,.0f}", f"{beach.rate:,.0f}", f"{beach.rate / raw.rate:.2f}"))

    def latency(label: str, raw: float, beach: float) -> None:
        rows.append((label, f"{raw:,.0f}", f"{beach:,.0f}", f"{beach / raw:.2f} ({beach - raw:+,.0f} µs)"))

    seq_raw, seq_beach = results["sequential"]
    throughput(f"sequential, async handler: req/s (N={sizes.sequential})", seq_raw, seq_beach)
    latency("sequential: p50 latency, µs", seq_raw.p50, seq_beach.p50)
    latency("sequential: p99 latency, µs", seq_raw.p99, seq_beach.p99)
    throughput(f"{WORKERS} in flight, async handler: req/s (N={sizes.in_flight})", *results["in flight, async"])
    throughput(f"{WORKERS} in flight, sync handler: req/s (N={sizes.in_flight})", *results["in flight, sync"])
    seq_raw, blocking = results["blocking"]
    throughput(f"blocking request() from a thread, sequential: req/s (N={sizes.blocking}; raw: async)",
               seq_raw, blocking)
    latency("blocking request(): p50 latency, µs (raw: async)", seq_raw.p50, blocking.p50)
    lines = ["| case | raw nats-py | beach | beach/raw |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", f"Each figure: the median of {sizes.rounds} round(s), raw and beach alternating, after "
                  f"{sizes.warmup} warm-up requests per side and case."]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            raw_peer(ECHO_RESPONDER, bench.url, ECHO_SUBJECT):
        results = asyncio.run(run_cases(bench, sizes))
    text = table(results, sizes)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
