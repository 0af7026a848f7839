"""Actor state: a stateful counter against the same actor without state, and against a raw
nats-py KV update loop on the same server, in the same run.

For each topology — one nats-server (the buckets' streams have 1 replica, as ``beach up`` runs)
and three routed into a cluster (3 replicas) — and each JetStream ``sync_interval`` (``always``:
fsync before every acknowledgement, what beach starts its servers with; ``2m``: the server's
default), the script starts, on 127.0.0.1 only: the servers, a beach node agent with one actor host
running ``benchmarks/actors``' ``StateCounter``, and measures with 64 requests in flight:

* ``add`` (``await self.state.aupdate(key, n + 1)``: a turn, committed as an atomic batch with the
  request's record before the reply) over 1,000 keys: req/s;
* ``echo`` of the same actor (no state: the same request path, less the state);
* a raw nats-py loop on the same server: ``kv.update(key, value, last=revision)`` over 1,000 keys
  of a bucket like beach's (its revisions kept, as beach keeps its cache), 64 in flight: updates/s;

in rounds that alternate the three (the figures are the medians over the rounds), and prints a
markdown table with the ratios, and the CPU time each process spent per request. Then, one caller
at a time, what a script sees: the seed's blocking ``request()`` of ``add`` and of ``echo``
(``Beach(config)``, the blocking face), and the raw loop's ``kv.update`` awaited one at a time:
the latency of each (p50, p99). Everything it
started is stopped at the end, also on an error or Ctrl-C. Run it from the repository root::

    .venv/bin/python benchmarks/state.py [--quick] [--out FILE]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from dataclasses import dataclass
from typing import Any

import msgpack
import nats
from _harness import (
    TIMEOUT,
    WORKERS,
    Call,
    Cluster,
    CpuMeter,
    Result,
    arguments,
    checked,
    clients,
    cluster,
    host_pids,
    in_flight,
    main_guard,
    publish,
    sequential,
    sequential_blocking,
)
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError

from beach.beach_api import Beach
from beach.client.core import AsyncBeach

KEYS = 1000


@dataclass(frozen=True)
class Sizes:
    """How many requests each case sends, and how many rounds."""

    warmup: int
    requests: int
    rounds: int


FULL = Sizes(warmup=2000, requests=10000, rounds=3)
QUICK = Sizes(warmup=200, requests=1000, rounds=1)
SEQUENTIAL = 1000  # requests one after the other, per case and round (a tenth in --quick)
SETUPS = ((1, "always"), (1, "2m"), (3, "always"), (3, "2m"))


def beach_call(client: AsyncBeach, request: str) -> Call:
    """``request`` to the StateCounter with key ``k<i % KEYS>``."""
    handle = client.getActorHandle("bench/state", timeout=TIMEOUT, nRetries=5)

    async def call(i: int) -> Any:
        return checked(await handle.arequest(request, {"key": f"k{i % KEYS}"}))
    return call


async def raw_kv_call(nc: nats.NATS, replicas: int) -> Call:
    """A raw nats-py update loop's step: read-modify-write of ``k<i % KEYS>`` with its revision
    (fetched again after a conflict), on a bucket made as beach makes its state bucket."""
    js = nc.jetstream(timeout=TIMEOUT)
    kv = await js.create_key_value(KeyValueConfig(bucket="bench_raw", history=1, replicas=replicas,
                                                  storage=StorageType.FILE, direct=True))
    known: dict[str, tuple[int, int]] = {}

    async def call(i: int) -> Any:
        key = f"k{i % KEYS}"
        while True:
            revision, n = known.get(key, (0, 0))
            try:
                known[key] = (await kv.update(key, msgpack.packb(n + 1), last=revision), n + 1)
                return n + 1
            except KeyWrongLastSequenceError:
                entry = await kv.get(key)
                known[key] = (entry.revision, msgpack.unpackb(entry.value))
    return call


async def measure(bench: Cluster, replicas: int, sizes: Sizes) -> tuple[dict[str, float], str]:
    """The median req/s of each case over the rounds, and the CPU each process spent per request."""
    async with clients(bench) as (client, nc):
        checked(await client.addActor("StateCounter", "bench/state"))
        cases = {"stateful": beach_call(client, "add"), "stateless": beach_call(client, "echo"),
                 "raw KV": await raw_kv_call(nc, replicas)}
        for call in cases.values():
            await in_flight(call, sizes.warmup, WORKERS)
        meter = CpuMeter({**host_pids(client), **{f"server {i + 1}": pid for i, pid in enumerate(bench.server_pids)},
                          "client": os.getpid()})
        rates: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(sizes.rounds):
            for name, call in cases.items():
                with meter.window(name, sizes.requests):
                    rates[name].append((await in_flight(call, sizes.requests, WORKERS)).rate)
        return {name: statistics.median(values) for name, values in rates.items()}, meter.table()


def blocking(bench: Cluster, replicas: int, sizes: Sizes) -> dict[str, Result]:
    """One caller at a time: the blocking ``request()`` of ``add`` and ``echo``, and the raw
    ``kv.update`` (on its own event loop), alternating over the rounds; the median p50 and p99."""
    n = SEQUENTIAL if sizes is FULL else SEQUENTIAL // 10
    results: dict[str, list[Result]] = {"stateful": [], "stateless": [], "raw KV": []}
    with Beach(bench.config) as client:
        handle = client.getActorHandle("bench/state", timeout=TIMEOUT, nRetries=5)

        def timed(request: str) -> Result:
            return sequential_blocking(lambda i: checked(handle.request(request, {"key": f"k{i % KEYS}"})), n)

        async def raw() -> Result:
            nc = await nats.connect(bench.url)
            try:
                return await sequential(await raw_kv_call(nc, replicas), n)
            finally:
                await nc.close()

        for _ in range(sizes.rounds):
            results["stateful"].append(timed("add"))
            results["stateless"].append(timed("echo"))
            results["raw KV"].append(asyncio.run(raw()))
    return {name: Result.median(values) for name, values in results.items()}


def run_setup(servers: int, sync: str, sizes: Sizes) -> tuple[dict[str, float], str, dict[str, Result]]:
    """Start the servers and a node, measure, stop them."""
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, \
            cluster(tmp, servers=servers, sync_interval=sync) as bench:
        replicas = 3 if servers >= 3 else 1
        rates, cpu = asyncio.run(measure(bench, replicas, sizes))
        return rates, cpu, blocking(bench, replicas, sizes)


def table(results: dict[tuple[int, str], dict[str, float]], cpu: dict[tuple[int, str], str], sizes: Sizes,
          one_at_a_time: dict[tuple[int, str], dict[str, Result]]) -> str:
    """The markdown report."""
    lines = ["| servers (replicas) | sync_interval | stateless req/s | stateful req/s | raw KV updates/s "
             "| stateful/stateless | stateful/raw KV |", "|---|---|---:|---:|---:|---:|---:|"]
    for (servers, sync), r in results.items():
        lines.append(f"| {servers} (R{3 if servers >= 3 else 1}) | {sync} | {r['stateless']:,.0f} | "
                     f"{r['stateful']:,.0f} | {r['raw KV']:,.0f} | {r['stateful'] / r['stateless']:.2f} | "
                     f"{r['stateful'] / r['raw KV']:.2f} |")
    always = [(k, r) for k, r in results.items() if k[1] == "always"]
    for (servers, _), r in always:
        lazy = results.get((servers, "2m"))
        if lazy:
            lines.append("")
            lines.append(f"sync_interval always against 2m, {servers} server(s): stateful x"
                         f"{r['stateful'] / lazy['stateful']:.2f}, raw KV x{r['raw KV'] / lazy['raw KV']:.2f}.")
    lines += ["", f"{WORKERS} requests (updates) in flight over {KEYS} keys; each figure the median of "
                  f"{sizes.rounds} round(s) of {sizes.requests}, the three cases alternating, after "
                  f"{sizes.warmup} warm-up requests each."]
    lines += ["", "One caller at a time (the blocking `request()`; the raw loop's `kv.update` awaited one by one), "
                  "latency in µs:", "",
              "| servers (replicas) | sync_interval | stateless p50 / p99 | stateful p50 / p99 | raw KV p50 / p99 "
              "| stateful − stateless, p50 |", "|---|---|---:|---:|---:|---:|"]
    for (servers, sync), r in one_at_a_time.items():
        def cell(result: Result) -> str:
            return f"{result.p50:,.0f} / {result.p99:,.0f}"
        lines.append(f"| {servers} (R{3 if servers >= 3 else 1}) | {sync} | {cell(r['stateless'])} | "
                     f"{cell(r['stateful'])} | {cell(r['raw KV'])} | "
                     f"{(r['stateful'].p50 or 0) - (r['stateless'].p50 or 0):,.0f} |")
    for (servers, sync), text in cpu.items():
        lines += ["", f"CPU, {servers} server(s), sync_interval {sync}:", "", text.rstrip()]
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments(__doc__).parse_args()
    sizes = QUICK if args.quick else FULL
    measured = {(servers, sync): run_setup(servers, sync, sizes) for servers, sync in SETUPS}
    publish(table({k: v[0] for k, v in measured.items()}, {k: v[1] for k, v in measured.items()}, sizes,
                  {k: v[2] for k, v in measured.items()}), args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
