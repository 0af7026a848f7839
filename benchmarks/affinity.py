"""Affinity routing versus random routing versus raw nats-py request/reply, 64 requests in flight.

The script starts, on 127.0.0.1 only: a nats-server (temporary store), a beach node agent with one
actor host running eight ``Echo`` actors (``async def`` handler returning the request's data) in
category ``bench/aff``, and a raw responder process that answers with nats-py alone
(``await nc.publish(msg.reply, msg.data)``). Every side gets the same msgpack-encoded ``{'n': i}``:

* **raw**: ``await nc.request(subject, payload, timeout=5)``;
* **random**: ``await client.getActorHandle('bench/aff').arequest('echo', data)`` (the NATS queue
  group picks one of the eight actors);
* **affinity**: ``await client.getActorHandle('bench/aff', mode='affinity').arequest('echo', data,
  key=f'k{i}')``, a different key for every request (the client picks the actor by rendezvous
  hashing and sends to that actor's own subject).

Each side is warmed up, then run in rounds that alternate the sides, 64 workers sharing N requests
(figures: medians over the rounds). Besides req/s it reports the client's CPU time per request
(``time.process_time()`` delta / N), how the affinity requests spread over the eight actors, the
CPU time of ``routing.Ring.owner(key)`` alone, and each process's CPU time per request.

Run it from the repository root::

    .venv/bin/python benchmarks/affinity.py [--quick] [--out FILE]

``--quick`` is a short smoke-test run; ``--out FILE`` also writes the tables to FILE. Everything it
started is stopped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from _harness import (
    ECHO_RESPONDER,
    ECHO_SUBJECT,
    RAW_LOOPS,
    TIMEOUT,
    WORKERS,
    Call,
    Cluster,
    CpuMeter,
    LoopThread,
    Table,
    arguments,
    checked,
    cluster,
    host_pids,
    in_flight,
    main_guard,
    publish,
    raw_echo_call,
    raw_peer,
    raw_sides,
    raw_subject,
    wait_registered,
)

from beach import loop as beach_loop
from beach.client import routing
from beach.client.core import AsyncBeach

CATEGORY = "bench/aff"
N_ACTORS = 8


@dataclass(frozen=True)
class Sizes:
    """How many requests each side sends."""

    warmup: int
    requests: int
    rounds: int
    ring_lookups: int


FULL = Sizes(warmup=1000, requests=20000, rounds=3, ring_lookups=200000)
QUICK = Sizes(warmup=100, requests=1000, rounds=1, ring_lookups=10000)


@dataclass
class Round:
    """One round of one side: req/s and the client's CPU seconds per request."""

    rate: float
    cpu_per_request: float


def random_call(client: AsyncBeach) -> Call:
    """An ``arequest('echo', ...)`` to any actor of the category (queue group)."""
    handle = client.getActorHandle(CATEGORY, timeout=TIMEOUT)

    async def call(i: int) -> Any:
        return checked(await handle.arequest("echo", {"n": i}))
    return call


def affinity_call(client: AsyncBeach) -> Call:
    """An ``arequest('echo', ..., key=f'k{i}')`` to the actor owning the key."""
    handle = client.getActorHandle(CATEGORY, mode="affinity", timeout=TIMEOUT)

    async def call(i: int) -> Any:
        return checked(await handle.arequest("echo", {"n": i}, key=f"k{i}"))
    return call


async def measure(call: Call, n: int) -> Round:
    """``n`` requests, 64 in flight, with the client's CPU time."""
    cpu = time.process_time()
    result = await in_flight(call, n, WORKERS)
    return Round(result.rate, (time.process_time() - cpu) / n)


def ring_cost(uids: list[str], n: int) -> float:
    """CPU seconds of one ``Ring.owner(key)`` over ``uids`` (a fresh key each time)."""
    ring = routing.Ring(uids)
    keys = [f"k{i}" for i in range(n)]
    start = time.process_time()
    for key in keys:
        ring.owner(key)
    return (time.process_time() - start) / n


async def processed(client: AsyncBeach, uids: list[str]) -> dict[str, int]:
    """Requests each actor has processed so far."""
    load = await client.getLoadInfo()
    return {uid: load[uid]["processed"] for uid in uids}


async def run_cases(bench: Cluster, responders: dict[str, int], sizes: Sizes) -> dict[str, Any]:
    """Deploy the actors and measure every side."""
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(bench.config)
        stack.push_async_callback(client.close)
        raws = stack.enter_context(raw_sides(bench.url, ECHO_SUBJECT))
        await wait_registered(client, bench.node, bench.node_log)
        uids = [checked(await client.addActor("Echo", CATEGORY))["uid"] for _ in range(N_ACTORS)]
        meter = CpuMeter({"client": os.getpid(), "nats-server": bench.server_pid, **host_pids(client),
                          **{f"raw responder, {k}": pid for k, pid in responders.items()},
                          "node agent": bench.node.pid})

        def on(thread: LoopThread, call: Call) -> Callable[[int], Awaitable[Round]]:
            return lambda n: thread.acall(measure(call, n))

        sides = {**{f"raw {kind}": on(thread, raw_echo_call(nc, raw_subject(ECHO_SUBJECT, kind)))
                    for kind, (thread, nc) in raws.items()},
                 "random": partial(measure, random_call(client)), "affinity": partial(measure, affinity_call(client))}
        for side in sides.values():
            await side(sizes.warmup)
        rounds: dict[str, list[Round]] = {side: [] for side in sides}
        spread = dict.fromkeys(uids, 0)
        for _ in range(sizes.rounds):
            for side, run in sides.items():
                before = await processed(client, uids) if side == "affinity" else None
                with meter.window(side, sizes.requests):
                    rounds[side].append(await run(sizes.requests))
                if before is not None:
                    after = await processed(client, uids)
                    for uid in uids:
                        spread[uid] += after[uid] - before[uid]
        return {"rounds": rounds, "spread": spread, "meter": meter,
                "ring": ring_cost(uids, sizes.ring_lookups)}


# ---------------------------------------------------------------- reporting


def report(results: dict[str, Any], sizes: Sizes) -> str:
    """The markdown tables of the results."""
    rounds = results["rounds"]
    rate = {side: statistics.median(r.rate for r in rs) for side, rs in rounds.items()}
    cpu = {side: statistics.median(r.cpu_per_request for r in rs) for side, rs in rounds.items()}
    table = Table(header=("case", "req/s", *(f"vs raw {k}" for k in RAW_LOOPS), "client CPU per request",
                          *(f"CPU vs raw {k}" for k in RAW_LOOPS)))
    for side, label in (*((f"raw {k}", f"raw nats-py request/reply on {k}") for k in RAW_LOOPS),
                        ("random", "beach, mode='random' (queue group)"),
                        ("affinity", "beach, mode='affinity', key varies")):
        table.row(f"{label}, {WORKERS} in flight (N={sizes.requests:,})", f"{rate[side]:,.0f}",
                  *(f"{rate[side] / rate[f'raw {k}']:.2f}" for k in RAW_LOOPS), f"{cpu[side] * 1e6:,.1f} µs",
                  *(f"{cpu[side] / cpu[f'raw {k}']:.2f}" for k in RAW_LOOPS))
    spread = results["spread"].values()
    lines = [str(table),
             f"Medians of {sizes.rounds} round(s), the sides alternating, after {sizes.warmup:,} warm-up requests "
             f"each. Client CPU: `time.process_time()` over the round / N.", "",
             f"Affinity vs random, client CPU per request: {(cpu['affinity'] - cpu['random']) * 1e6:+,.1f} µs. "
             f"`routing.Ring.owner(key)` alone over {N_ACTORS} actors: {results['ring'] * 1e6:,.1f} µs per call "
             f"({sizes.ring_lookups:,} fresh keys).", "",
             f"Affinity requests per actor over the measured rounds: min {min(spread):,}, max {max(spread):,} "
             f"(mean {statistics.fmean(spread):,.0f}).", "",
             results["meter"].table("request")]
    return "\n".join(lines)


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            contextlib.ExitStack() as peers:
        responders = {kind: peers.enter_context(raw_peer(ECHO_RESPONDER, bench.url, raw_subject(ECHO_SUBJECT, kind),
                                                         loop=kind)).pid for kind in RAW_LOOPS}
        results = beach_loop.run(run_cases(bench, responders, sizes))
    text = report(results, sizes)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
