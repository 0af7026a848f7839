"""Streamed replies through beach versus a raw nats-py request-many, against one nats-server started here.

The script starts, on 127.0.0.1 only: a nats-server (temporary store), a beach node agent with one
actor host running ``benchmarks/actors/global/Streamer.py`` (``items``: an ``async def`` generator,
``items_sync``: a ``def`` generator, each yielding ``{'i': i}`` for i < n), and a raw responder
process that, for a request ``{'n': n}``, publishes n msgpack-encoded ``{'i': i}`` to its reply
subject and then an empty message (the end): a request-many with nats-py alone, with no flow
control and no ordering check. Raw nats-py runs on asyncio's own loop and on uvloop (the loop of
beach's processes); beach's client runs on uvloop (`beach.loop`).

Each case reads one stream of N items (10,000), decoded, in order; the figure is the median over
rounds that alternate the cases (a burst of noise on a shared machine hits one round, not one side):

* raw nats-py request-many, asyncio and uvloop;
* ``async for item in handle.astream('items', {'n': N})`` (async generator handler), and with the
  ``def`` generator handler;
* the blocking face, ``for item in handle.stream(...)`` from a plain thread with a `Beach` of its own.

It prints a markdown table: items/s, the time to the first item, and beach/raw ratios. Everything it
started is stopped at the end, also on an error or Ctrl-C. Run it from the repository root::

    .venv/bin/python benchmarks/streams.py [--quick] [--out FILE]
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import msgpack
import nats
from _harness import (
    TIMEOUT,
    Cluster,
    LoopThread,
    arguments,
    checked,
    cluster,
    main_guard,
    publish,
    raw_peer,
    raw_sides,
    raw_subject,
    wait_registered,
)

from beach import loop as beach_loop
from beach.beach_api import Beach
from beach.client.core import AsyncBeach

SUBJECT = "bench.raw.stream"
CATEGORY = "bench/streams"

# A raw nats-py responder: a request {'n': n} gets n messages {'i': i} on its reply subject, then an empty one.
RESPONDER = """
import asyncio, sys, msgpack, nats

async def main(url, subject):
    nc = await nats.connect(url)

    async def many(msg):
        for i in range(msgpack.unpackb(msg.data)['n']):
            await nc.publish(msg.reply, msgpack.packb({'i': i}))
        await nc.publish(msg.reply, b'')

    await nc.subscribe(subject, cb=many)
    await nc.flush()
    print('ready', flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


@dataclass(frozen=True)
class Sizes:
    """How many items a stream has, and how many rounds are measured after a warm-up."""

    items: int
    warmup: int
    rounds: int


FULL = Sizes(items=10_000, warmup=1_000, rounds=5)
QUICK = Sizes(items=1_000, warmup=100, rounds=1)


@dataclass
class Run:
    """One stream read: items per second, and the seconds to its first item."""

    rate: float
    first: float


class Reading:
    """The timing of one stream read: started when made; `took` each item; `run` at its end."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.first = 0.0
        self.started = time.perf_counter()

    def took(self, item: dict[str, int]) -> None:
        self.seen.append(item["i"])
        if not self.first:
            self.first = time.perf_counter()

    def run(self, n: int) -> Run:
        """The `Run` of a stream of ``n`` items that has ended; raises unless they came whole and in order."""
        elapsed = time.perf_counter() - self.started
        if self.seen != list(range(n)):
            raise RuntimeError(f"the stream was not read whole and in order ({len(self.seen)} items of {n})")
        return Run(n / elapsed, self.first - self.started)


async def raw_stream(nc: nats.NATS, subject: str, n: int) -> Run:
    """A raw request-many: n items, until the empty message that ends it (read by a subscription's
    callback: nats-py's fastest way)."""
    inbox = nc.new_inbox()
    ended = asyncio.get_running_loop().create_future()

    async def on_item(msg: Any) -> None:
        if msg.data:
            reading.took(msgpack.unpackb(msg.data))
        else:
            ended.set_result(reading.run(n))

    sub = await nc.subscribe(inbox, cb=on_item)
    reading = Reading()
    try:
        await nc.publish(subject, msgpack.packb({"n": n}), reply=inbox)
        return cast(Run, await asyncio.wait_for(ended, TIMEOUT))
    finally:
        await sub.unsubscribe()


async def beach_stream(client: AsyncBeach, request_type: str, n: int) -> Run:
    """``async for`` over ``astream``: n items."""
    handle = client.getActorHandle(CATEGORY, timeout=TIMEOUT)
    reading = Reading()
    async for item in handle.astream(request_type, {"n": n}):
        reading.took(item)
    return reading.run(n)


def blocking_stream(handle: Any, n: int) -> Run:
    """``for`` over the blocking ``stream``: n items."""
    reading = Reading()
    for item in handle.stream("items", {"n": n}):
        reading.took(item)
    return reading.run(n)


CASES = ("raw nats-py request-many, asyncio", "raw nats-py request-many, uvloop", "beach astream, async generator",
         "beach astream, def generator", "beach stream() (blocking), async generator")


async def run_cases(bench: Cluster, sizes: Sizes) -> dict[str, Run]:
    """Deploy the actor and read streams, the cases alternating: the median `Run` of each case."""
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(bench.config)
        stack.push_async_callback(client.close)
        raws = stack.enter_context(raw_sides(bench.url, SUBJECT))
        await wait_registered(client, bench.node, bench.node_log)
        checked(await client.addActor("Streamer", CATEGORY))
        blocking = stack.enter_context(Beach(bench.config))
        blocking_handle = blocking.getActorHandle(CATEGORY, timeout=TIMEOUT)

        def on_raw(thread: LoopThread, nc: nats.NATS, kind: str) -> Callable[[int], Awaitable[Run]]:
            return lambda n: thread.acall(raw_stream(nc, raw_subject(SUBJECT, kind), n))

        readers: list[Callable[[int], Awaitable[Run]]] = [
            *(on_raw(thread, nc, kind) for kind, (thread, nc) in raws.items()),
            lambda n: beach_stream(client, "items", n),
            lambda n: beach_stream(client, "items_sync", n),
            lambda n: asyncio.to_thread(blocking_stream, blocking_handle, n)]
        for read in readers:
            await read(sizes.warmup)
        runs: list[list[Run]] = [[] for _ in readers]
        for _ in range(sizes.rounds):
            for found, read in zip(runs, readers, strict=True):
                found.append(await read(sizes.items))
        return {case: Run(statistics.median(r.rate for r in found), statistics.median(r.first for r in found))
                for case, found in zip(CASES, runs, strict=True)}


def table(results: dict[str, Run], sizes: Sizes) -> str:
    """The markdown table of the results."""
    raw_asyncio, raw_uvloop = results[CASES[0]], results[CASES[1]]
    lines = [f"| case (a stream of {sizes.items:,} items) | items/s | first item, µs | /raw asyncio | /raw uvloop |",
             "|---|---:|---:|---:|---:|"]
    for case, run in results.items():
        lines.append(f"| {case} | {run.rate:,.0f} | {run.first * 1e6:,.0f} | {run.rate / raw_asyncio.rate:.2f} | "
                     f"{run.rate / raw_uvloop.rate:.2f} |")
    lines += ["", f"Each figure: the median of {sizes.rounds} round(s), the cases alternating, after a warm-up "
                  f"stream of {sizes.warmup:,} items each; ratios are of items/s. Beach's client and actor host on "
                  f"{beach_loop.kind()}; raw nats-py has no flow control, beach's producer runs at most 64 items "
                  f"ahead of its reader."]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            raw_peer(RESPONDER, bench.url, raw_subject(SUBJECT, "asyncio")), \
            raw_peer(RESPONDER, bench.url, raw_subject(SUBJECT, "uvloop"), loop="uvloop"):
        results = beach_loop.run(run_cases(bench, sizes))
    publish(table(results, sizes), args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
