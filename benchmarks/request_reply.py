"""Request/reply through beach versus raw nats-py, against one nats-server started here.

The script starts, on 127.0.0.1 only: a nats-server (`beach.bus.embedded.EmbeddedServer`, temporary
store), a beach node agent with one actor host (``python -m nodeagent``) running the actors of
``benchmarks/actors`` (``Echo``: ``async def`` handler; ``SyncEcho``: plain ``def`` handler), and a
raw responder process that answers with nats-py alone (``await nc.publish(msg.reply, msg.data)``).
Both responders are separate processes, and both sides get the same msgpack-encoded ``{'n': i}``.
Raw nats-py runs twice in each round, client and responder on asyncio's own loop and on uvloop (the
loop of beach's own processes); beach's client runs on uvloop too (`beach.loop`), its actor host
always does.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from _harness import (
    ECHO_RESPONDER,
    ECHO_SUBJECT,
    TIMEOUT,
    WORKERS,
    Call,
    Cluster,
    LoopThread,
    Result,
    arguments,
    checked,
    cluster,
    in_flight,
    main_guard,
    publish,
    raw_echo_call,
    raw_peer,
    raw_sides,
    raw_subject,
    sequential,
    sequential_blocking,
    wait_registered,
)

from beach import loop as beach_loop
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


Side = Callable[[Callable[[Call, int], Awaitable[Result]], int], Awaitable[Result]]
"""Runs one round of a case on one side (a raw loop's thread, or beach here)."""


def raw_side(thread: LoopThread, call: Call) -> Side:
    """Raw nats-py's rounds, run on its own loop's thread."""
    async def run(case: Callable[[Call, int], Awaitable[Result]], n: int) -> Result:
        return cast(Result, await thread.acall(case(call, n)))
    return run


def beach_side(call: Call) -> Side:
    """Beach's rounds, run on this loop."""
    async def run(case: Callable[[Call, int], Awaitable[Result]], n: int) -> Result:
        return await case(call, n)
    return run


async def compare(case: Callable[[Call, int], Awaitable[Result]], sides: list[Side], n: int,
                  sizes: Sizes) -> list[Result]:
    """Warm every side up, then run the case alternately on each: their medians, in order."""
    for side in sides:
        await side(case, sizes.warmup)
    rounds: list[list[Result]] = [[] for _ in sides]
    for _ in range(sizes.rounds):
        for results, side in zip(rounds, sides, strict=True):
            results.append(await side(case, n))
    return [Result.median(r) for r in rounds]


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
            rounds.append(sequential_blocking(lambda i: checked(handle.request("echo", {"n": i})), sizes.blocking))
        return Result.median(rounds)


async def run_cases(bench: Cluster, sizes: Sizes) -> dict[str, list[Result]]:
    """Deploy the actors and measure every case: ``{case: [raw on asyncio, raw on uvloop, beach]}``."""
    config = bench.config
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(config)
        stack.push_async_callback(client.close)
        raws = stack.enter_context(raw_sides(bench.url, ECHO_SUBJECT))
        await wait_registered(client, bench.node, bench.node_log)
        for name, category in (("Echo", "bench/echo"), ("SyncEcho", "bench/syncecho")):
            checked(await client.addActor(name, category))
        raw = [raw_side(thread, raw_echo_call(nc, raw_subject(ECHO_SUBJECT, kind)))
               for kind, (thread, nc) in raws.items()]
        echo, sync_echo = beach_call(client, "bench/echo"), beach_call(client, "bench/syncecho")
        results = {}
        for case, run, n, beach in (("sequential", sequential, sizes.sequential, echo),
                                    ("in flight, async", in_flight, sizes.in_flight, echo),
                                    ("in flight, sync", in_flight, sizes.in_flight, sync_echo)):
            results[case] = await compare(run, [*raw, beach_side(beach)], n, sizes)
        blocking = await asyncio.to_thread(blocking_sequential, config, sizes)
        results["blocking"] = [*results["sequential"][:-1], blocking]
        return results


# ---------------------------------------------------------------- reporting


def table(results: dict[str, list[Result]], sizes: Sizes) -> str:
    """The markdown table of the results."""
    rows = []

    def throughput(label: str, found: list[Result]) -> None:
        *raws, beach = found
        rows.append((label, *(f"{r.rate:,.0f}" for r in raws), f"{beach.rate:,.0f}",
                     *(f"{beach.rate / r.rate:.2f}" for r in raws)))

    def latency(label: str, raws: list[float], beach: float) -> None:
        rows.append((label, *(f"{r:,.0f}" for r in raws), f"{beach:,.0f}",
                     *(f"{beach / r:.2f} ({beach - r:+,.0f} µs)" for r in raws)))

    seq = results["sequential"]
    throughput(f"sequential, async handler: req/s (N={sizes.sequential})", seq)
    latency("sequential: p50 latency, µs", [r.p50 for r in seq[:-1]], seq[-1].p50)
    latency("sequential: p99 latency, µs", [r.p99 for r in seq[:-1]], seq[-1].p99)
    throughput(f"{WORKERS} in flight, async handler: req/s (N={sizes.in_flight})", results["in flight, async"])
    throughput(f"{WORKERS} in flight, sync handler: req/s (N={sizes.in_flight})", results["in flight, sync"])
    blocking = results["blocking"]
    throughput(f"blocking request() from a thread, sequential: req/s (N={sizes.blocking}; raw: async)", blocking)
    latency("blocking request(): p50 latency, µs (raw: async)", [r.p50 for r in blocking[:-1]], blocking[-1].p50)
    lines = ["| case | raw nats-py, asyncio | raw nats-py, uvloop | beach | beach/raw asyncio | beach/raw uvloop |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", f"Each figure: the median of {sizes.rounds} round(s), raw (on each loop) and beach alternating, "
                  f"after {sizes.warmup} warm-up requests per side and case; beach's client and actor host on "
                  f"{beach_loop.kind()}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            raw_peer(ECHO_RESPONDER, bench.url, raw_subject(ECHO_SUBJECT, "asyncio")), \
            raw_peer(ECHO_RESPONDER, bench.url, raw_subject(ECHO_SUBJECT, "uvloop"), loop="uvloop"):
        results = beach_loop.run(run_cases(bench, sizes))
    text = table(results, sizes)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
