"""The seed's blocking API — what a plain script writes — against raw nats-py in the same run.

The script starts, on 127.0.0.1 only: a nats-server (temporary store), a beach node agent with one
actor host running ``Echo`` (``async def``) and ``Relay`` (a ``def`` handler passing each request
on to ``Echo`` with a blocking ``request()``), and raw nats-py responders: an echo, and a relay that
passes each request on to the echo with ``await nc.request``. Every side sends msgpack ``{'n': i}``.
Cases (each warmed up, then rounds alternating raw and beach; figures are medians over the rounds):

* sequential blocking ``handle.request(...)`` from the main thread — raw: sequential async requests;
* 64 in flight through ``request(..., isWithFuture=True)``, each `FutureResults` polled with
  ``isFinished()`` — raw: 64 async workers;
* 8 threads, each making blocking requests one after the other — raw: 8 async workers;
* client → Relay → Echo with 16 in flight (async client) — raw: 16 workers through the raw relay.

It prints a markdown table with the beach/raw ratios. Run it from the repository root::

    .venv/bin/python benchmarks/seed_api.py [--quick] [--out FILE]

``--quick`` is a short smoke-test run; ``--out FILE`` also writes the table to FILE. Everything it
started is stopped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import nats
from _harness import (
    ECHO_RESPONDER,
    ECHO_SUBJECT,
    RAW_LOOPS,
    TIMEOUT,
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
    raw_subject,
    sequential,
    sequential_blocking,
    wait_registered,
)

from beach import loop as beach_loop
from beach.beach_api import Beach
from beach.client.core import AsyncBeach

RELAY_SUBJECT = "bench.raw.relay"
RAW_RELAY = """
import asyncio, sys, nats

async def main(url, subject, echo):
    nc = await nats.connect(url)

    async def relay(msg):
        answer = await nc.request(echo, msg.data, timeout=5)
        await nc.publish(msg.reply, answer.data)

    await nc.subscribe(subject, cb=relay)
    await nc.flush()
    print('ready', flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""
FUTURES = 64
THREADS = 8
CHAIN = 16


@dataclass(frozen=True)
class Sizes:
    """How many requests each case sends."""

    warmup: int
    sequential: int
    futures: int
    threads: int
    chain: int
    rounds: int


FULL = Sizes(warmup=300, sequential=2000, futures=10000, threads=8000, chain=5000, rounds=5)
QUICK = Sizes(warmup=30, sequential=200, futures=640, threads=400, chain=300, rounds=1)


def blocking_sequential(handle: Any, n: int) -> Result:
    return sequential_blocking(lambda i: checked(handle.request("echo", {"n": i})), n)


def blocking_futures(handle: Any, n: int) -> Result:
    """``n`` requests, `FUTURES` outstanding: as many as finish are replaced at once."""
    start = time.perf_counter()
    sent = 0
    outstanding: list[Any] = []
    while sent < n or outstanding:
        while sent < n and len(outstanding) < FUTURES:
            outstanding.append(handle.request("echo", {"n": sent}, isWithFuture=True))
            sent += 1
        still = []
        for future in outstanding:
            if future.isFinished():
                for response in future.getNewResults():
                    checked(response)
            else:
                still.append(future)
        outstanding = still
    return Result(n / (time.perf_counter() - start))


def blocking_threads(handle: Any, n: int) -> Result:
    """``n`` blocking requests from `THREADS` threads, each one after the other."""
    numbers = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    i = next(numbers, None)
                if i is None:
                    return
                checked(handle.request("echo", {"n": i}))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return Result(n / (time.perf_counter() - start))


class RawSide:
    """Raw nats-py (and, on uvloop, the async relay-chain client) on an event loop of ``kind`` in a
    thread of its own (`LoopThread`), so that its rounds can alternate with the blocking API's; each
    case is timed inside the loop."""

    def __init__(self, kind: str, url: str, config: str, node: Any, node_log: str) -> None:
        self.kind, self.thread = kind, LoopThread(kind)
        self.url, self.config, self.node, self.node_log = url, config, node, node_log
        self.client: AsyncBeach | None = None
        self.call(self._open())

    def call(self, coro: Any) -> Any:
        return self.thread.call(coro)

    async def _open(self) -> None:
        self.nc = await nats.connect(self.url)
        self.raw = raw_echo_call(self.nc, raw_subject(ECHO_SUBJECT, self.kind))
        self.raw_chain = raw_echo_call(self.nc, raw_subject(RELAY_SUBJECT, self.kind))
        if self.kind != beach_loop.kind():
            return
        self.client = await AsyncBeach.open(self.config)
        await wait_registered(self.client, self.node, self.node_log)
        relay = self.client.getActorHandle("bench/relay", timeout=TIMEOUT)

        async def beach_chain(i: int) -> Any:
            return checked(await relay.arequest("relay", {"n": i}))

        self.beach_chain = beach_chain

    def close(self) -> None:
        async def close() -> None:
            if self.client is not None:
                await self.client.close()
            await self.nc.close()

        self.call(close())
        self.thread.close()


RAW_CASES = ("raw seq", "raw 64", "raw 8", "raw chain")


def run(url: str, config: str, node: Any, node_log: str, sizes: Sizes) -> dict[str, list[Result]]:
    with Beach(config) as client:
        beach_loop.run(wait_registered(client._core, node, node_log))
        checked(client.addActor("Echo", "bench/echo"))
        checked(client.addActor("Relay", "bench/relay", max_concurrent=CHAIN))
        handle = client.getActorHandle("bench/echo", timeout=TIMEOUT)
        raws = [RawSide(kind, url, config, node, node_log) for kind in RAW_LOOPS]
        chain = next(r for r in raws if r.client is not None)
        try:
            blocking_sequential(handle, sizes.warmup)
            blocking_futures(handle, sizes.warmup)
            blocking_threads(handle, sizes.warmup)
            for raw in raws:
                raw.call(sequential(raw.raw, sizes.warmup))
                raw.call(in_flight(raw.raw_chain, sizes.warmup, CHAIN))
            chain.call(in_flight(chain.beach_chain, sizes.warmup, CHAIN))
            results: dict[str, list[Result]] = {f"{case} {raw.kind}": [] for case in RAW_CASES for raw in raws}
            results.update({k: [] for k in ("seq", "64", "8", "beach chain")})
            for _ in range(sizes.rounds):  # raw (on each loop) and beach alternate, case by case
                for raw in raws:
                    results[f"raw seq {raw.kind}"].append(raw.call(sequential(raw.raw, sizes.sequential)))
                results["seq"].append(blocking_sequential(handle, sizes.sequential))
                for raw in raws:
                    results[f"raw 64 {raw.kind}"].append(raw.call(in_flight(raw.raw, sizes.futures, FUTURES)))
                results["64"].append(blocking_futures(handle, sizes.futures))
                for raw in raws:
                    results[f"raw 8 {raw.kind}"].append(raw.call(in_flight(raw.raw, sizes.threads, THREADS)))
                results["8"].append(blocking_threads(handle, sizes.threads))
                for raw in raws:
                    results[f"raw chain {raw.kind}"].append(raw.call(in_flight(raw.raw_chain, sizes.chain, CHAIN)))
                results["beach chain"].append(chain.call(in_flight(chain.beach_chain, sizes.chain, CHAIN)))
            return results
        finally:
            for raw in raws:
                raw.close()


def table(results: dict[str, list[Result]], sizes: Sizes) -> str:
    m = {k: Result.median(v) for k, v in results.items()}

    def raw(case: str) -> list[Result]:
        return [m[f"{case} {kind}"] for kind in RAW_LOOPS]

    def rate(label: str, case: str, beach: Result, target: str) -> tuple[str, ...]:
        return (label, *(f"{r.rate:,.0f}" for r in raw(case)), f"{beach.rate:,.0f}",
                *(f"{beach.rate / r.rate:.2f}" for r in raw(case)), target)

    rows = [
        (f"sequential blocking request(): p50 µs (N={sizes.sequential})", *(f"{r.p50:,.0f}" for r in raw("raw seq")),
         f"{m['seq'].p50:,.0f}", *(f"{m['seq'].p50 - r.p50:+,.0f} µs" for r in raw("raw seq")), "≤ +40 µs"),
        ("sequential blocking request(): p99 µs", *(f"{r.p99:,.0f}" for r in raw("raw seq")), f"{m['seq'].p99:,.0f}",
         *(f"{m['seq'].p99 / r.p99:.2f}" for r in raw("raw seq")), "≤ 1.5"),
        rate(f"{FUTURES} in flight, isWithFuture + isFinished(): req/s (N={sizes.futures})", "raw 64", m["64"],
             "≥ 0.75"),
        rate(f"{THREADS} threads, blocking request(): req/s (N={sizes.threads})", "raw 8", m["8"], "≥ 0.75"),
        rate(f"client → Relay (def, blocking request) → Echo, {CHAIN} in flight: req/s (N={sizes.chain})",
             "raw chain", m["beach chain"], "≥ 0.50"),
    ]
    lines = ["| case | raw nats-py, asyncio | raw nats-py, uvloop | beach (seed API) | beach/raw asyncio | "
             "beach/raw uvloop | target |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += ["", f"Each figure: the median of {sizes.rounds} round(s) after {sizes.warmup} warm-up requests per "
                  "side and case; raw nats-py's cases use its async API (it has no blocking one), on each loop; "
                  f"beach's blocking face and actor host run on {beach_loop.kind()}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            contextlib.ExitStack() as peers:
        for kind in RAW_LOOPS:
            echo = raw_subject(ECHO_SUBJECT, kind)
            peers.enter_context(raw_peer(ECHO_RESPONDER, bench.url, echo, loop=kind))
            peers.enter_context(raw_peer(RAW_RELAY, bench.url, raw_subject(RELAY_SUBJECT, kind), echo, loop=kind))
        results = run(bench.url, bench.config, bench.node, bench.node_log, sizes)
    publish(table(results, sizes), args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
