"""Large payloads: 64 KiB echoed in messages, and 10 MB and 100 MB through the object store,
through beach versus raw nats-py.

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

**Through the object store** (10 MB and 100 MB, over the server's 1 MiB ``max_payload``): the same
``{'n': i, 'blob': <random bytes>}``, one at a time, echoed:

* **raw**: nats-py's object store, as an application would use it: the caller ``put`` s the
  msgpack-encoded data in a bucket and sends its name; a raw responder process ``get`` s it, ``put`` s
  it back under a new name and answers that name; the caller ``get`` s it and deletes both;
* **beach**: ``await handle.arequest('echo', data, timeout=300)`` (beach stores it, encrypted, and
  its reply, in ``beach_payloads``); and one way, to see each side's memory: the payload sent
  (``take``: the reply is its size) and received (``give``: the request is its size).

For each it reports the seconds per echo and the peak RSS of the caller, the process that echoed
(the raw responder, the actor host) and nats-server during it (``VmHWM``, reset before each case
through ``/proc/<pid>/clear_refs``), also as a multiple of the payload.

Run it from the repository root::

    .venv/bin/python benchmarks/payload.py [--quick] [--large-only] [--out FILE]

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
from pathlib import Path
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
    clients,
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
MB = 1000 * 1000
LARGE = (10 * MB, 100 * MB)
LARGE_TIMEOUT = 300.0
RAW_BUCKET = "bench_raw_payloads"
OBJECT_SUBJECT = "bench.raw.objects"
OBJECT_RESPONDER = """
import asyncio, sys, nats

async def main(url, subject, bucket):
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=120)
    store = await js.object_store(bucket)

    async def echo(msg):
        name = msg.data.decode()
        got = await store.get(name)
        await store.put(name + '.reply', got.data)
        await store.delete(name)
        await nc.publish(msg.reply, (name + '.reply').encode())

    await nc.subscribe(subject, cb=echo)
    await nc.flush()
    print('ready', flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


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


# ---------------------------------------------------------------- through the object store


def peak_reset(pids: dict[str, int]) -> None:
    """Reset the peak RSS (``VmHWM``) of each process (Linux: ``clear_refs`` 5)."""
    for pid in pids.values():
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def peaks(pids: dict[str, int]) -> dict[str, int]:
    """The peak RSS of each process, in bytes, since its last `peak_reset`."""
    found = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        found[name] = kib * 1024
    return found


async def raw_object_echo(nc: nats.NATS, i: int, blob: bytes) -> float:
    """One echo through nats-py's object store and a raw responder; its seconds."""
    store = await nc.jetstream(timeout=LARGE_TIMEOUT).object_store(RAW_BUCKET)
    started = time.perf_counter()
    name = f"echo-{i}"
    await store.put(name, msgpack.packb({"n": i, "blob": blob}))
    reply = await nc.request(OBJECT_SUBJECT, name.encode(), timeout=LARGE_TIMEOUT)
    got = await store.get(reply.data.decode())
    await store.delete(reply.data.decode())
    data = msgpack.unpackb(got.data)
    elapsed = time.perf_counter() - started
    if data["n"] != i or data["blob"] != blob:
        raise RuntimeError("raw object-store echo returned something else")
    return elapsed


async def beach_object_echo(client: AsyncBeach, i: int, blob: bytes) -> float:
    """One echo through beach (its data and its reply's through ``beach_payloads``); its seconds."""
    handle = client.getActorHandle("bench/echo", timeout=LARGE_TIMEOUT)
    started = time.perf_counter()
    data = checked(await handle.arequest("echo", {"n": i, "blob": blob}))
    elapsed = time.perf_counter() - started
    if data["n"] != i or data["blob"] != blob:
        raise RuntimeError("beach echo returned something else")
    return elapsed


async def beach_one_way(client: AsyncBeach, send: bool, i: int, payload: Any) -> float:
    """One large payload one way through beach: sent (``send``: ``payload`` the bytes, the reply
    their size) or received (``payload`` its size, asked for); its seconds."""
    handle = client.getActorHandle("bench/sink", timeout=LARGE_TIMEOUT)
    started = time.perf_counter()
    if send:
        data = checked(await handle.arequest("take", {"n": i, "blob": payload}))
        ok = data["size"] == len(payload)
    else:
        data = checked(await handle.arequest("give", {"n": i, "size": payload}))
        ok = len(data["blob"]) == payload
        del data
    elapsed = time.perf_counter() - started
    if not ok:
        raise RuntimeError("beach one-way returned something else")
    return elapsed


async def run_large(bench: Cluster, responder: int, quick: bool) -> list[tuple[int, str, float, dict[str, int]]]:
    """Echo each of `LARGE` through both sides: ``[(size, side, seconds, {process: peak RSS})]``."""
    results = []
    async with clients(bench) as (client, nc):
        checked(await client.addActor("Echo", "bench/echo"))
        checked(await client.addActor("Sink", "bench/sink"))
        hosts = host_pids(client)
        for size in LARGE[:1] if quick else LARGE:
            blob = os.urandom(size)
            rounds = 1 if quick or size > 10 * MB else 3
            sides = {"raw nats-py object store": (partial(raw_object_echo, nc), {"echoing": responder}),
                     "beach": (partial(beach_object_echo, client), hosts),
                     "beach, one way: the caller sends it": (partial(beach_one_way, client, True), hosts),
                     "beach, one way: the caller receives it": (partial(beach_one_way, client, False), hosts)}
            for side, (echo, echoing) in sides.items():
                pids = {"caller": os.getpid(), **echoing, "nats-server": bench.server_pid}
                receiving = side.endswith("receives it")
                await echo(0, MB if receiving else blob[:MB])  # (warm: the buckets, the consumers' first use)
                if receiving:
                    blob = b""  # (the caller holds no payload of its own while it receives one)
                peak_reset(pids)
                times = [await echo(n, size if receiving else blob) for n in range(1, rounds + 1)]
                results.append((size, side, statistics.median(times), peaks(pids)))
    return results


def _peak(rss: dict[str, int], name: str, size: int) -> str:
    """The peak RSS of process ``name`` (``echoing``: the largest of the echoing ones) in MB and payloads."""
    values = [v for k, v in rss.items() if k == name or (name == "echoing" and k.startswith(("host", "echo")))]
    if not values:
        return "–"
    return f"{max(values) / MB:,.0f} MB ({max(values) / size:.1f}×)"


def report_large(results: list[tuple[int, str, float, dict[str, int]]]) -> str:
    """The markdown table of the object-store cases."""
    lines = ["| payload | side | s per echo | MB/s each way | peak RSS: caller | echoing process(es) | nats-server |",
             "|---|---|---:|---:|---:|---:|---:|"]
    raw_seconds: dict[int, float] = {}
    for size, side, seconds, rss in results:
        if side.startswith("raw"):
            raw_seconds[size] = seconds
        ratio = f" ({raw_seconds[size] / seconds:.2f}× raw's speed)" if side == "beach" else ""
        lines.append(f"| {size // MB} MB | {side}{ratio} | {seconds:.2f} | {size / seconds / MB:,.1f} | "
                     f"{_peak(rss, 'caller', size)} | {_peak(rss, 'echoing', size)} | "
                     f"{_peak(rss, 'nats-server', size)} |")
    lines += ["", "One at a time; seconds: the median of the rounds (10 MB: 3; 100 MB: 1). Peak RSS: VmHWM "
              "over the measured rounds, the caller's including the payload it sends and keeps (an echo's caller "
              "holds what it sent while it receives the same again). One way: MB/s of the payload that way."]
    return "\n".join(lines) + "\n"


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


async def raw_bucket(url: str) -> None:
    """Create the raw side's object store bucket (file storage, as beach's)."""
    nc = await nats.connect(url)
    try:
        await nc.jetstream().create_object_store(RAW_BUCKET)
    finally:
        await nc.close()


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--large-only", action="store_true", help="only the cases through the object store")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    text = ""
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp) as bench, \
            contextlib.ExitStack() as peers:
        if not args.large_only:
            responders = {kind: peers.enter_context(raw_peer(ECHO_RESPONDER, bench.url,
                                                             raw_subject(ECHO_SUBJECT, kind), loop=kind)).pid
                          for kind in RAW_LOOPS}
            results, meter = beach_loop.run(run_cases(bench, responders, sizes))
            text = report(results, meter, sizes) + "\n"
        beach_loop.run(raw_bucket(bench.url))
        responder = peers.enter_context(raw_peer(OBJECT_RESPONDER, bench.url, OBJECT_SUBJECT, RAW_BUCKET)).pid
        text += report_large(beach_loop.run(run_large(bench, responder, args.quick)))
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
