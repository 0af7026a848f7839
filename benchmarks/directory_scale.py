"""Many actors on one node: how fast ``addActor`` is, and what a directory of 10,000 actors costs a
new client.

The script starts, on 127.0.0.1 only: a nats-server (temporary store) and a beach node agent with
two actor hosts (``n_processes: 2``). Then it:

1. adds ``Idle`` actors (``benchmarks/actors/global/Idle.py``: an ``async def`` ``init`` and one
   ``async def`` handler; category ``scale``) one by one, ``await client.addActor('Idle', 'scale')``,
   timing each, up to ``--sequential`` actors (default 1,000);
2. adds the rest up to ``--actors`` (default 10,000) concurrently, ``asyncio.gather`` over batches
   of ``--batch`` (default 50) ``addActor`` calls, timing every 1,000;
3. checks that the actors answer (a request to the category, and to the last actor by uid);
4. measures a new client in fresh subprocesses (three times each, after step 1 and after step 2):
   the time of ``await AsyncBeach.open(config)``, whether ``len(client.session.view.actors)`` is
   then complete, and the process's RSS (psutil) before ``open`` (the imports alone), right after
   it, and its peak (``ru_maxrss``);
5. reports the RSS of the node agent, the hosts and nats-server, and times ``client.flush()`` (all
   actors stopped).

Run it from the repository root::

    .venv/bin/python benchmarks/directory_scale.py [--quick] [--actors N] [--out FILE]

``--quick`` is a short smoke-test run (100 + 400 actors). Everything it started is stopped at the
end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
from _harness import Cluster, arguments, checked, cluster, host_pids, main_guard, publish, wait_registered

from beach.client.core import AsyncBeach

CATEGORY = "scale"
OPEN_RUNS = 3
OPEN_TIMEOUT = 120.0

# A new client in a fresh process: time AsyncBeach.open, then read the view and the RSS.
OPEN_CLIENT = """
import asyncio, json, resource, sys, time
import psutil
from beach.client.core import AsyncBeach

async def main(config, expected):
    process = psutil.Process()
    before = process.memory_info().rss
    start = time.perf_counter()
    client = await AsyncBeach.open(config)
    opened = time.perf_counter() - start
    at_open = len(client.session.view.actors)
    while len(client.session.view.actors) < expected and time.perf_counter() - start < 30:
        await asyncio.sleep(0.01)
    complete = time.perf_counter() - start
    result = {'open_s': opened, 'actors_at_open': at_open, 'complete_s': complete,
              'actors': len(client.session.view.actors), 'rss_imports': before,
              'rss_after': process.memory_info().rss,
              'maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    await client.close()
    print(json.dumps(result), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@dataclass
class Sizes:
    """How many actors to add, one by one and then concurrently."""

    sequential: int
    total: int
    batch: int


FULL = Sizes(sequential=1000, total=10000, batch=50)
QUICK = Sizes(sequential=100, total=500, batch=50)


@dataclass
class Results:
    """Everything measured."""

    sizes: Sizes
    spawn_seconds: list[float] = field(default_factory=list)  # each sequential addActor
    batches: list[tuple[int, float]] = field(default_factory=list)  # (actors in the directory, seconds per 1,000)
    concurrent_seconds: float = 0.0
    reached: int = 0
    failure: str | None = None
    opens: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # actors → fresh-client runs
    rss: dict[str, int] = field(default_factory=dict)
    flush_seconds: float = 0.0
    flush_ok: bool = False
    checks: list[str] = field(default_factory=list)


def open_fresh_client(config: str, expected: int) -> dict[str, Any]:
    """Run `OPEN_CLIENT` in a new interpreter; its figures."""
    done = subprocess.run([sys.executable, "-c", OPEN_CLIENT, config, str(expected)], capture_output=True,
                          text=True, timeout=OPEN_TIMEOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"the fresh client failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def add_sequentially(client: AsyncBeach, n: int, results: Results) -> None:
    for _ in range(n):
        start = time.perf_counter()
        checked(await client.addActor("Idle", CATEGORY))
        results.spawn_seconds.append(time.perf_counter() - start)
    results.reached = n


async def add_concurrently(client: AsyncBeach, start_count: int, total: int, batch: int, results: Results) -> None:
    count = start_count
    start = mark = time.perf_counter()
    try:
        while count < total:
            size = min(batch, total - count)
            responses = await asyncio.gather(*(client.addActor("Idle", CATEGORY) for _ in range(size)))
            failed = [r for r in responses if not r.isSuccess]
            count += size - len(failed)
            results.reached = count
            if failed:
                results.failure = f"{len(failed)} of a batch of {size} failed at {count}: {failed[0].error}"
                return
            if count % 1000 == 0:
                now = time.perf_counter()
                results.batches.append((count, now - mark))
                mark = now
    finally:
        results.concurrent_seconds = time.perf_counter() - start


async def check_actors(client: AsyncBeach, results: Results) -> None:
    """A request to the category, and to one actor by uid."""
    response = await client.getActorHandle(CATEGORY, timeout=10).arequest("ping")
    results.checks.append(f"request to `{CATEGORY}`: {'ok' if response.isSuccess else response.error}")
    uid = next(reversed(client.session.view.actors))
    response = await client.getActorHandle(f"_ACTORS/{uid}", timeout=10).arequest("ping")
    outcome = "ok" if response.isSuccess else response.error
    results.checks.append(f"request to `_ACTORS/<uid>` of the last actor: {outcome}")


async def measure_opens(config: str, expected: int, results: Results) -> None:
    results.opens[expected] = [await asyncio.to_thread(open_fresh_client, config, expected) for _ in range(OPEN_RUNS)]


async def run(bench: Cluster, sizes: Sizes) -> Results:
    results = Results(sizes)
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(bench.config)
        stack.push_async_callback(client.close)
        await wait_registered(client, bench.node, bench.node_log)
        await add_sequentially(client, sizes.sequential, results)
        await measure_opens(bench.config, sizes.sequential, results)
        await add_concurrently(client, sizes.sequential, sizes.total, sizes.batch, results)
        await check_actors(client, results)
        await measure_opens(bench.config, len(client.session.view.actors), results)
        pids = {"nats-server": bench.server_pid, "node agent": bench.node.pid, **host_pids(client),
                "this client (spawned them all)": os.getpid()}
        results.rss = {name: psutil.Process(pid).memory_info().rss for name, pid in pids.items()}
        start = time.perf_counter()
        results.flush_ok = await client.flush()
        results.flush_seconds = time.perf_counter() - start
    return results


# ---------------------------------------------------------------- reporting


def report(r: Results) -> str:
    mib = 2**20
    seq = r.spawn_seconds
    lines = ["| addActor, one by one | |", "|---|---:|"]
    if seq:
        lines.append(f"| first {len(seq):,} actors: total | {sum(seq):,.1f} s ({len(seq) / sum(seq):,.0f} actors/s) |")
        for lo in range(0, len(seq), max(1, len(seq) // 5)):
            part = seq[lo:lo + max(1, len(seq) // 5)]
            lines.append(f"| actors {lo + 1:,}–{lo + len(part):,} | {len(part) / sum(part):,.0f} actors/s |")
        cuts = statistics.quantiles(seq, n=100)
        lines.append(f"| latency of one addActor: p50 / p99 / max | {cuts[49] * 1e3:,.1f} / {cuts[98] * 1e3:,.1f} / "
                     f"{max(seq) * 1e3:,.1f} ms |")
    lines += ["", f"| addActor, concurrently (gather over batches of {r.sizes.batch}) | |", "|---|---:|"]
    concurrent = r.reached - len(seq)
    if concurrent > 0:
        lines.append(f"| actors {len(seq) + 1:,}–{r.reached:,}: total | {r.concurrent_seconds:,.1f} s "
                     f"({concurrent / r.concurrent_seconds:,.0f} actors/s) |")
    for count, seconds in r.batches:
        lines.append(f"| up to {count:,} | {1000 / seconds:,.0f} actors/s |")
    if r.failure:
        lines.append(f"| stopped: | {r.failure} |")
    lines += ["", "Checks: " + "; ".join(r.checks) + ".", "",
              f"A new client in a fresh process (each figure: median of {OPEN_RUNS} runs; min–max in brackets):", "",
              "| actors in the directory | `AsyncBeach.open` | view complete at return | view complete after "
              "| RSS after imports | RSS after open | peak RSS |", "|---:|---:|---:|---:|---:|---:|---:|"]

    def med(runs: list[dict[str, Any]], key: str, scale: float, fmt: str) -> str:
        values = [run[key] / scale for run in runs]
        return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"

    for actors, runs in r.opens.items():
        complete = sum(run["actors_at_open"] >= actors for run in runs)
        lines.append(f"| {actors:,} | {med(runs, 'open_s', 1, '{:.2f}')} s | {complete}/{len(runs)} runs | "
                     f"{med(runs, 'complete_s', 1, '{:.2f}')} s | {med(runs, 'rss_imports', mib, '{:.1f}')} MiB | "
                     f"{med(runs, 'rss_after', mib, '{:.1f}')} MiB | {med(runs, 'maxrss', mib, '{:.1f}')} MiB |")
    lines += ["", f"RSS with {r.reached:,} actors: " + ", ".join(f"{name} {rss / mib:,.0f} MiB"
                                                           for name, rss in r.rss.items()) + ".", "",
              f"`client.flush()` of {r.reached:,} actors: {r.flush_seconds:,.1f} s "
              f"({'succeeded' if r.flush_ok else 'FAILED'})."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--actors", type=int, help="how many actors in all (default 10,000)")
    parser.add_argument("--sequential", type=int, help="how many of them one by one (default 1,000)")
    parser.add_argument("--batch", type=int, help="concurrent addActor calls per batch (default 50)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    sizes = Sizes(args.sequential or sizes.sequential, args.actors or sizes.total, args.batch or sizes.batch)
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp, cluster(tmp, n_processes=2) as bench:
        results = asyncio.run(run(bench, sizes))
    text = report(results)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
