"""The cost of sealing: request/reply with a ``private_key`` (AES-256-GCM on every message) versus
the same cluster without one, and raw nats-py, in the same run.

The script starts, on 127.0.0.1 only: two nats-servers (temporary stores), each with a beach node
agent and one actor host running ``Echo`` (an ``async def`` handler) — one cluster with a key in its
config, one without — and a raw nats-py responder on the unsealed server. Every side sends the same
msgpack-encoded ``{'n': i}``; each case is warmed up, then run in rounds that alternate the three
sides (figures: medians over the rounds):

* sequential requests (p50 latency), 64 requests in flight (req/s), async API (``arequest``);
* 64 in flight through the blocking API's futures (``request(..., isWithFuture=True)``).

It prints a markdown table with sealed/unsealed and beach/raw ratios. Run it from the repository root::

    .venv/bin/python benchmarks/sealing.py [--quick] [--out FILE]

``--quick`` is a short smoke-test run; ``--out FILE`` also writes the table to FILE. Everything it
started is stopped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from _harness import (
    ECHO_RESPONDER,
    ECHO_SUBJECT,
    RAW_LOOPS,
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
    raw_sides,
    raw_subject,
    sequential,
    wait_registered,
)

from beach import loop as beach_loop
from beach.beach_api import Beach
from beach.client.core import AsyncBeach
from beach.security.keys import generate_key


@dataclass(frozen=True)
class Sizes:
    """How many requests each case sends."""

    warmup: int
    sequential: int
    in_flight: int
    rounds: int


FULL = Sizes(warmup=500, sequential=2000, in_flight=20000, rounds=5)
QUICK = Sizes(warmup=50, sequential=200, in_flight=1000, rounds=1)
SIDES = (*(f"raw {k}" for k in RAW_LOOPS), "unsealed", "sealed")


def beach_call(client: AsyncBeach) -> Call:
    """An ``arequest('echo', ...)`` to the Echo actor."""
    handle = client.getActorHandle("bench/echo", timeout=TIMEOUT)

    async def call(i: int) -> Any:
        return checked(await handle.arequest("echo", {"n": i}))
    return call


def futures_in_flight(config: str, n: int) -> Result:
    """``n`` requests through the blocking API's futures, 64 outstanding at a time."""
    with Beach(config) as client:
        handle = client.getActorHandle("bench/echo", timeout=TIMEOUT)
        start = time.perf_counter()
        for first in range(0, n, WORKERS):
            futures = [handle.request("echo", {"n": i}, isWithFuture=True)
                       for i in range(first, min(n, first + WORKERS))]
            for future in futures:
                future.waitForResults(TIMEOUT)
                for response in future.getNewResults():
                    checked(response)
        return Result(n / (time.perf_counter() - start))


async def measure(configs: dict[str, str], raw_url: str, sizes: Sizes) -> dict[str, dict[str, list[Result]]]:
    """Every case, every side, ``sizes.rounds`` times: ``{case: {side: [results]}}``."""
    async with contextlib.AsyncExitStack() as stack:
        raws = stack.enter_context(raw_sides(raw_url, ECHO_SUBJECT))
        threads = {f"raw {kind}": thread for kind, (thread, _) in raws.items()}
        calls: dict[str, Call] = {f"raw {kind}": raw_echo_call(nc, raw_subject(ECHO_SUBJECT, kind))
                                  for kind, (_, nc) in raws.items()}
        for side, config in configs.items():
            client = await AsyncBeach.open(config)
            stack.push_async_callback(client.close)
            await wait_registered(client, *nodes[side])
            checked(await client.addActor("Echo", "bench/echo"))
            calls[side] = beach_call(client)

        async def on(side: str, run: Callable[[Call, int], Awaitable[Result]], n: int) -> Result:
            if side in threads:  # raw nats-py on its own loop
                return cast(Result, await threads[side].acall(run(calls[side], n)))
            return await run(calls[side], n)

        results: dict[str, dict[str, list[Result]]] = {}
        for case, run, n in (("sequential", sequential, sizes.sequential), ("in flight", in_flight, sizes.in_flight)):
            for side in SIDES:
                await on(side, run, sizes.warmup)
            results[case] = {side: [] for side in SIDES}
            for _ in range(sizes.rounds):
                for side in SIDES:
                    results[case][side].append(await on(side, run, n))
        results["futures"] = {side: [] for side in configs}
        for config in configs.values():
            await asyncio.to_thread(futures_in_flight, config, sizes.warmup)
        for _ in range(sizes.rounds):
            for side, config in configs.items():
                results["futures"][side].append(await asyncio.to_thread(futures_in_flight, config, sizes.in_flight))
        return results


nodes: dict[str, tuple[Any, str]] = {}


def table(results: dict[str, dict[str, list[Result]]], sizes: Sizes) -> str:
    """The markdown table of the results."""
    med = {case: {side: Result.median(r) for side, r in sides.items()} for case, sides in results.items()}
    seq, fl, fut = med["sequential"], med["in flight"], med["futures"]
    raws = [f"raw {k}" for k in RAW_LOOPS]
    rows = [
        (f"sequential: p50 latency, µs (N={sizes.sequential})", *(f"{seq[r].p50:,.0f}" for r in raws),
         f"{seq['unsealed'].p50:,.0f}", f"{seq['sealed'].p50:,.0f}",
         f"{seq['sealed'].p50 - seq['unsealed'].p50:+,.0f} µs", f"{seq['sealed'].p50 - seq[raws[-1]].p50:+,.0f} µs"),
        (f"{WORKERS} in flight, async API: req/s (N={sizes.in_flight})", *(f"{fl[r].rate:,.0f}" for r in raws),
         f"{fl['unsealed'].rate:,.0f}", f"{fl['sealed'].rate:,.0f}", f"{fl['sealed'].rate / fl['unsealed'].rate:.2f}",
         f"{fl['sealed'].rate / fl[raws[-1]].rate:.2f}"),
        (f"{WORKERS} in flight, blocking API futures: req/s (N={sizes.in_flight})", *("-" for _ in raws),
         f"{fut['unsealed'].rate:,.0f}", f"{fut['sealed'].rate:,.0f}",
         f"{fut['sealed'].rate / fut['unsealed'].rate:.2f}", "-"),
    ]
    lines = ["| case | " + " | ".join(f"raw nats-py, {k}" for k in RAW_LOOPS)
             + f" | beach | beach, sealed | sealed vs unsealed | sealed vs raw {RAW_LOOPS[-1]} |",
             "|---|" + "---:|" * (len(raws) + 4)]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", f"Each figure: the median of {sizes.rounds} round(s), the sides alternating, after {sizes.warmup} "
                  "warm-up requests per side and case."]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, contextlib.ExitStack() as stack:
        os.makedirs(os.path.join(tmp, "plain"))
        os.makedirs(os.path.join(tmp, "sealed"))
        key = generate_key(os.path.join(tmp, "sealed", "cluster.key"))
        plain = stack.enter_context(cluster(os.path.join(tmp, "plain")))
        sealed = stack.enter_context(cluster(os.path.join(tmp, "sealed"), private_key=key))
        nodes.update(unsealed=(plain.node, plain.node_log), sealed=(sealed.node, sealed.node_log))
        for kind in RAW_LOOPS:
            stack.enter_context(raw_peer(ECHO_RESPONDER, plain.url, raw_subject(ECHO_SUBJECT, kind), loop=kind))
        results = beach_loop.run(measure({"unsealed": plain.config, "sealed": sealed.config}, plain.url, sizes))
    publish(table(results, sizes), args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
