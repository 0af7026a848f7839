"""One-way messages through beach versus raw nats-py: ``shoot`` to one actor, ``broadcast`` to ten.

The script starts, on 127.0.0.1 only: a nats-server (temporary store), a beach node agent with one
actor host running ``Counter`` actors (``benchmarks/actors/global/Counter.py``: an ``async def``
``hit`` handler that counts, ``count`` returns the count and the ``time.monotonic()`` of the last
hit, ``reset`` zeroes it), and a raw receiver process (nats-py alone) with one or ten plain
subscriptions that count what they receive (and decode it with msgpack, as the actors do) and
answer ``count``/``reset`` on a control subject.

Cases, each warmed up, then in rounds alternating raw and beach (figures: medians over the rounds):

* **shoot**: N x ``await nc.publish(subject, msgpack.packb({'n': i}))`` to one raw subscriber, versus
  N x ``await handle.ashoot('hit', {'n': i})`` to the one actor of ``bench/shoot``, twice: all N
  fired at once as plain shots ("burst": a shot without retries or ``onFailure`` is a publish),
  and "paced", shots with ``onFailure`` (requests whose outcome a background task awaits), the
  sender keeping at most 500 unanswered (it polls ``handle.getPending()``; an actor answers
  ``busy`` past 1,000 requests in progress);
* **broadcast**: N x ``await handle.abroadcast('hit', {'n': i})`` to the ten actors of ``bench/fan``
  (one host process), versus N raw publishes to ten plain subscribers in one process.

The rate is deliveries counted at the receiver per second, from the first send until the receiver
counted the last one (the receiver's clock: ``CLOCK_MONOTONIC`` is system-wide). The script waits
until every delivery is counted or nothing moved for a few seconds, and reports any loss, with
what beach knows about it (``onFailure`` calls of ``shoot``, the actors' ``busy`` counters). It also
reports the CPU time each process spent in the measured windows.

Run it from the repository root::

    .venv/bin/python benchmarks/fanout.py [--quick] [--out FILE]

``--quick`` is a short smoke-test run; ``--out FILE`` also writes the tables to FILE. Everything it
started is stopped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import msgpack
import nats
from _harness import (
    RAW_LOOPS,
    Cluster,
    CpuMeter,
    LoopThread,
    Table,
    arguments,
    checked,
    cluster,
    host_pids,
    main_guard,
    publish,
    raw_peer,
    raw_sides,
    raw_subject,
    wait_registered,
)

from beach import loop as beach_loop
from beach.client.core import AsyncBeach

RAW_SUBJECT = "bench.raw.hit"
RAW_CONTROL = "bench.raw.control"
FANOUT = 10
SHOOT_TIMEOUT = 120.0  # a shot's reply may come late when tens of thousands are queued: not a loss
STALL_SECONDS = 3.0
POLL_SECONDS = 0.02
SHOOT_WINDOW = 500  # paced shoot: at most this many unanswered (the actor's bound is 1000)
PACE_STEP = 50

RECEIVER = """
import asyncio, sys, time, msgpack, nats

async def main(url, subject, n_subs, control):
    nc = await nats.connect(url)
    state = {'n': 0, 'last': None}

    async def hit(msg):
        msgpack.unpackb(msg.data)
        state['n'] += 1
        state['last'] = time.monotonic()

    async def command(msg):
        if msg.data == b'reset':
            state.update(n=0, last=None)
        await nc.publish(msg.reply, msgpack.packb(state))

    for _ in range(int(n_subs)):
        await nc.subscribe(subject, cb=hit, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.subscribe(control, cb=command)
    await nc.flush()
    print('ready', flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


@dataclass(frozen=True)
class Sizes:
    """How many messages each case sends (per round)."""

    warmup: int
    shoot: int
    broadcast: int
    rounds: int


FULL = Sizes(warmup=2000, shoot=30000, broadcast=10000, rounds=3)
QUICK = Sizes(warmup=200, shoot=2000, broadcast=500, rounds=1)


@dataclass
class Delivery:
    """One round: deliveries expected and counted, the rate at the receiver, and what was lost."""

    expected: int
    received: int
    rate: float  # deliveries/s, first send to last delivery
    active: float  # seconds from the first send until all was counted and the sender settled
    send_seconds: float  # time the sending loop took
    failures: int = 0  # beach: onFailure calls (shoot)
    busy: int = 0  # beach: 'busy' answers counted by the actors

    @property
    def lost(self) -> int:
        return self.expected - self.received


Counts = Callable[[], Awaitable[tuple[int, float | None]]]  # → (deliveries counted, monotonic time of the last)
Send = Callable[[int], Awaitable[Any]]


async def deliver(send: Send, n: int, expected: int, counts: Counts, settled: Callable[[], bool] = lambda: True
                  ) -> Delivery:
    """Send ``n`` messages (``expected`` deliveries), then poll the receiver until it counted them all
    and ``settled()`` (the sender has nothing pending), or nothing moved for `STALL_SECONDS`."""
    start = time.monotonic()
    for i in range(n):
        await send(i)
    sent = time.monotonic()
    received, last = 0, None
    moved = done = time.monotonic()
    while True:
        await asyncio.sleep(POLL_SECONDS)
        now_received, last = await counts()
        if now_received != received or not settled():
            received, moved = now_received, time.monotonic()
        if received >= expected and settled():
            done = time.monotonic()
            break
        if time.monotonic() - moved > STALL_SECONDS:
            done = moved
            break
    rate = received / (last - start) if received and last else 0.0
    return Delivery(expected, received, rate, max(done, sent) - start, sent - start)


class Raw:
    """A raw side: a publisher on a loop of its kind (`LoopThread`), the receiver process of that kind."""

    def __init__(self, thread: LoopThread, nc: nats.NATS) -> None:
        self.thread, self.nc = thread, nc
        self.subject = raw_subject(RAW_SUBJECT, thread.kind)
        self.control_subject = raw_subject(RAW_CONTROL, thread.kind)

    async def control(self, command: bytes) -> tuple[int, float | None]:
        state = msgpack.unpackb((await self.nc.request(self.control_subject, command, timeout=10)).data)
        return state["n"], state["last"]

    async def _run(self, n: int, fanout: int) -> Delivery:
        await self.control(b"reset")
        nc, subject = self.nc, self.subject

        async def send(i: int) -> None:
            await nc.publish(subject, msgpack.packb({"n": i}))

        return await deliver(send, n, n * fanout, lambda: self.control(b"count"))

    async def run(self, n: int, fanout: int) -> Delivery:
        """One round, on the raw side's own loop."""
        return cast(Delivery, await self.thread.acall(self._run(n, fanout)))


class BeachSide:
    """The beach side: a client here, Counter actors in the node's host."""

    def __init__(self, client: AsyncBeach, category: str, uids: list[str]) -> None:
        self.client = client
        self.handle = client.getActorHandle(category, timeout=SHOOT_TIMEOUT)
        self.actors = [client.getActorHandle(f"_ACTORS/{uid}", timeout=30, nRetries=50) for uid in uids]
        self.uids = uids

    async def counts(self) -> tuple[int, float | None]:
        replies = [checked(r) for r in await asyncio.gather(*(a.arequest("count") for a in self.actors))]
        lasts = [r["last"] for r in replies if r["last"] is not None]
        return sum(r["n"] for r in replies), max(lasts, default=None)

    async def busy(self) -> int:
        load = await self.client.getLoadInfo()
        return sum(load[uid]["busy"] for uid in self.uids)

    async def shoot(self, n: int, window: int | None = None) -> Delivery:
        """``n`` shots; with ``window``, the sender keeps at most that many unanswered (polling
        ``getPending()``), else it fires them all at once."""
        for actor in self.actors:
            checked(await actor.arequest("reset"))
        failures = 0
        busy = await self.busy()
        handle = self.handle

        async def failed(data: Any) -> None:
            nonlocal failures
            failures += 1

        async def send(i: int) -> None:
            # A shot becomes pending only once its task ran: yield every PACE_STEP shots so that the
            # pending count lags by at most that many.
            if window is not None and i % PACE_STEP == 0:
                await asyncio.sleep(0)
                while sum(handle.getPending().values()) >= window:
                    await asyncio.sleep(0.001)
            if window is None:  # a plain shot: a publish, served when the actor can (never "busy")
                await handle.ashoot("hit", {"n": i})
            else:  # with onFailure: a request whose outcome a background task awaits
                await handle.ashoot("hit", {"n": i}, onFailure=failed)

        result = await deliver(send, n, n, self.counts, settled=lambda: not handle.getPending())
        result.failures = failures
        result.busy = await self.busy() - busy
        return result

    async def broadcast(self, n: int) -> Delivery:
        for actor in self.actors:
            checked(await actor.arequest("reset"))
        busy = await self.busy()
        handle = self.handle

        async def send(i: int) -> None:
            await handle.abroadcast("hit", {"n": i})

        result = await deliver(send, n, n * len(self.actors), self.counts)
        result.busy = await self.busy() - busy
        return result


Run = Callable[[int], Awaitable[Delivery]]


async def rounds(sides: dict[str, Run], n: int, sizes: Sizes, meter: CpuMeter, case: str, fanout: int
                 ) -> dict[str, list[Delivery]]:
    """Warm every side up, then run rounds of ``n`` messages, the sides alternating: ``{side: rounds}``."""
    for run in sides.values():
        await run(sizes.warmup)
    results: dict[str, list[Delivery]] = {side: [] for side in sides}
    for _ in range(sizes.rounds):
        for side, run in sides.items():
            with meter.window(f"{case}, {side}", n * fanout) as window:
                results[side].append(await run(n))
                window.active = results[side][-1].active
    return results


async def run_cases(bench: Cluster, sizes: Sizes) -> tuple[dict[str, dict[str, list[Delivery]]], CpuMeter]:
    """Deploy the actors and measure both cases: ``({case: {side: rounds}}, cpu)``."""
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(bench.config)
        stack.push_async_callback(client.close)
        raws = [Raw(thread, nc) for thread, nc in stack.enter_context(raw_sides(bench.url, RAW_SUBJECT)).values()]
        await wait_registered(client, bench.node, bench.node_log)
        shoot_uid = checked(await client.addActor("Counter", "bench/shoot"))["uid"]
        fan_uids = [checked(await client.addActor("Counter", "bench/fan"))["uid"] for _ in range(FANOUT)]
        meter = CpuMeter({"client": os.getpid(), "nats-server": bench.server_pid, **host_pids(client),
                          "node agent": bench.node.pid})
        results = {}
        shooter = BeachSide(client, "bench/shoot", [shoot_uid])
        broadcaster = BeachSide(client, "bench/fan", fan_uids)
        for case, fanout, n, beach in (
                ("shoot", 1, sizes.shoot, {"beach, burst": shooter.shoot,
                                           "beach, paced": lambda n: shooter.shoot(n, SHOOT_WINDOW)}),
                ("broadcast", FANOUT, sizes.broadcast, {"beach": broadcaster.broadcast})):
            with contextlib.ExitStack() as receivers:
                sides: dict[str, Run] = {}
                for raw in raws:
                    kind = raw.thread.kind
                    receiver = receivers.enter_context(raw_peer(RECEIVER, bench.url, raw.subject, str(fanout),
                                                                raw.control_subject, loop=kind))
                    meter.add(f"raw receiver, {kind}", receiver.pid)
                    sides[f"raw {kind}"] = partial(raw.run, fanout=fanout)
                results[case] = await rounds({**sides, **beach}, n, sizes, meter, case, fanout)
        return results, meter


# ---------------------------------------------------------------- reporting


def report(results: dict[str, dict[str, list[Delivery]]], meter: CpuMeter, sizes: Sizes) -> str:
    """The markdown tables of the results."""
    def rate(deliveries: list[Delivery]) -> float:
        return statistics.median(d.rate for d in deliveries)

    table = Table()
    shoot, broadcast = results["shoot"], results["broadcast"]

    def raws(sides: dict[str, list[Delivery]]) -> list[float]:
        return [rate(sides[f"raw {kind}"]) for kind in RAW_LOOPS]

    table.ratio(f"shoot → 1 actor, all N fired at once: deliveries/s (N={sizes.shoot:,})",
                raws(shoot), rate(shoot["beach, burst"]))
    table.ratio(f"shoot with onFailure → 1 actor, ≤ {SHOOT_WINDOW} unanswered: deliveries/s (N={sizes.shoot:,})",
                raws(shoot), rate(shoot["beach, paced"]))
    table.ratio(f"broadcast → {FANOUT} actors: deliveries/s (N={sizes.broadcast:,} x {FANOUT})",
                raws(broadcast), rate(broadcast["beach"]))
    lines = [str(table), f"Rates: the median of {sizes.rounds} round(s), the sides alternating, after "
             f"{sizes.warmup:,} warm-up messages per side and case. Raw sends every message at once "
             f"(nats-py buffers them).", "",
             "Every round: deliveries counted / expected; beach's own account of the missing ones; how fast "
             "the sending loop returned.", "",
             "| case | side | round | counted / expected | lost | onFailure calls | actors' busy answers "
             "| sending loop, msg/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, sides in results.items():
        fanout = FANOUT if case == "broadcast" else 1
        for side, deliveries in sides.items():
            for i, d in enumerate(deliveries, 1):
                extra = ("–", "–") if side.startswith("raw") else (f"{d.failures:,}", f"{d.busy:,}")
                lines.append(f"| {case} | {side} | {i} | {d.received:,} / {d.expected:,} | {d.lost:,} | "
                             f"{extra[0]} | {extra[1]} | {d.expected / fanout / d.send_seconds:,.0f} |")
    lines += ["", meter.table("delivery")]
    return "\n".join(lines)


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench:
        results, meter = beach_loop.run(run_cases(bench, sizes))
    text = report(results, meter, sizes)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
