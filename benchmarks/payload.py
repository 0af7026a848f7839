"""Large payloads: request/reply with 64 KiB echoed back, through beach versus raw nats-py.

The script starts, on 127.0.0.1 only: a nats-server (temporary store), a beach node agent with one
actor host running the ``Echo`` actor (``async def`` handler returning the request's data), and a
raw responder process that answers with nats-py alone (``await nc.publish(msg.reply, msg.data)``).
Both sides send the same msgpack-encoded ``{'n': i, 'blob': <65,536 random bytes>}`` and get it
back (decoded by the caller on both sides):

* **raw**: ``await nc.request(subject, msgpack.packb(data), timeout=5)``;
* **beach**: ``await handle.arequest('echo', data)``.

Each level of concurrency (1 and 64 requests in flight) is warmed up, then run in rounds that
alternate raw and beach (figures: medians over the rounds). It reports requests/s, payload bytes/s
(64 KiB per request each way: the wire carries twice that) and each process's CPU time per request.

Run it from the repository root::

    .venv/bin/python benchmarks/payload.py [--quick] [--out FILE]

``--quick`` is a short smoke-test run; ``--out FILE`` also writes the tables to FILE. Everything it
started is stopped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import msgpack
import nats
from _harness import (
    ECHO_RESPONDER,
    ECHO_SUBJECT,
    RAW_LOOPS,
    TIMEOUT,
    Call,
    Cluster,
    CpuMeter,
    LoopThread,
    Result,
    Table,
    arguments,
    checked,
    cluster,
    host_pids,
    in_flight,
    main_guard,
    publish,
    raw_peer,
    raw_sides,
    raw_subject,
    wait_registered,
)

from beach import loop as beach_loop
from beach.client.core import AsyncBeach

PAYLOAD = 64 * 1024
LEVELS = (1, 64)


@dataclass(frozen=True)
class Sizes:
    """How many requests each level sends per round."""

    warmup: int
    requests: dict[int, int]
    rounds: int


FULL = Sizes(warmup=300, requests={1: 1000, 64: 5000}, rounds=3)
QUICK = Sizes(warmup=30, requests={1: 100, 64: 300}, rounds=1)


def raw_call(nc: nats.NATS, blob: bytes, subject: str) -> Call:
    """A request to a raw responder: msgpack in, msgpack out; checks the echo."""
    async def call(i: int) -> Any:
        msg = await nc.request(subject, msgpack.packb({"n": i, "blob": blob}), timeout=TIMEOUT)
        data = msgpack.unpackb(msg.data)
        if data["n"] != i or len(data["blob"]) != PAYLOAD:
            raise RuntimeError("raw echo returned something else")
        return data
    return call


def beach_call(client: AsyncBeach, blob: bytes) -> Call:
    """An ``arequest('echo', ...)`` to the Echo actor; checks the echo."""
    handle = client.getActorHandle("bench/echo", timeout=TIMEOUT)

    async def call(i: int) -> Any:
        data = checked(await handle.arequest("echo", {"n": i, "blob": blob}))
        if data["n"] != i or len(data["blob"]) != PAYLOAD:
            raise RuntimeError("beach echo returned something else")
        return data
    return call


async def run_cases(bench: Cluster, responders: dict[str, int], sizes: Sizes
                    ) -> tuple[dict[int, dict[str, Result]], CpuMeter]:
    """Deploy the actor and measure every level: ``({in flight: {side: result}}, cpu)``."""
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(bench.config)
        stack.push_async_callback(client.close)
        raws = stack.enter_context(raw_sides(bench.url, ECHO_SUBJECT))
        await wait_registered(client, bench.node, bench.node_log)
        checked(await client.addActor("Echo", "bench/echo"))
        meter = CpuMeter({"client": os.getpid(), "nats-server": bench.server_pid, **host_pids(client),
                          **{f"raw responder, {k}": pid for k, pid in responders.items()},
                          "node agent": bench.node.pid})
        blob = os.urandom(PAYLOAD)
        sides: dict[str, Callable[[int, int], Awaitable[Result]]] = {
            f"raw {kind}": partial(_on, thread, raw_call(nc, blob, raw_subject(ECHO_SUBJECT, kind)))
            for kind, (thread, nc) in raws.items()}
        sides["beach"] = partial(in_flight, beach_call(client, blob))
        results = {}
        for level in LEVELS:
            n = sizes.requests[level]
            for side in sides.values():
                await side(sizes.warmup, level)
            rounds: dict[str, list[Result]] = {name: [] for name in sides}
            for _ in range(sizes.rounds):
                for name, side in sides.items():
                    with meter.window(f"{level} in flight, {name}", n):
                        rounds[name].append(await side(n, level))
            results[level] = {name: Result.median(r) for name, r in rounds.items()}
        return results, meter


async def _on(thread: LoopThread, call: Call, n: int, level: int) -> Result:
    return cast(Result, await thread.acall(in_flight(call, n, level)))


# ---------------------------------------------------------------- reporting


def report(results: dict[int, dict[str, Result]], meter: CpuMeter, sizes: Sizes) -> str:
    """The markdown tables of the results."""
    table = Table()
    for level, found in results.items():
        n = sizes.requests[level]
        raws = [found[f"raw {k}"].rate for k in RAW_LOOPS]
        table.ratio(f"64 KiB echo, {level} in flight: req/s (N={n:,})", raws, found["beach"].rate)
        table.ratio(f"64 KiB echo, {level} in flight: MiB/s of payload each way", [r * PAYLOAD / 2**20 for r in raws],
                    found["beach"].rate * PAYLOAD / 2**20, "{:,.1f}")
    lines = [str(table), f"Medians of {sizes.rounds} round(s), raw and beach alternating, after {sizes.warmup:,} "
             f"warm-up requests per side and level.", "", meter.table("request")]
    return "\n".join(lines)


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            contextlib.ExitStack() as peers:
        responders = {kind: peers.enter_context(raw_peer(ECHO_RESPONDER, bench.url, raw_subject(ECHO_SUBJECT, kind),
                                                         loop=kind)).pid for kind in RAW_LOOPS}
        results, meter = beach_loop.run(run_cases(bench, responders, sizes))
    text = report(results, meter, sizes)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
