"""Open live streams against the dashboard: what they cost its JSON API.

The script starts, on 127.0.0.1 only: a nats-server (temporary store), a beach node agent with one
actor host and ``--actors`` (default 50) ``Idle`` actors, so that the overview page has rows to
render. Then, for each dashboard configuration — the default caps (``dashboard.max_streams: 64``,
``max_streams_per_client: 4``) and, for comparison, caps too high to matter (10,000) — it starts
``python -m beach.dashboard CONFIG --port P`` and:

1. times ``GET /api/cluster`` ``--requests`` times (default 30), one after the other: the API alone;
2. opens ``--streams`` (default 300) ``GET /events?view=overview`` streams, each from its own
   loopback address (127.0.x.y: the per-client cap does not apply, the total one does), and reads
   every byte they send (counted);
3. after 3 s, times ``GET /api/cluster`` again the same way, while the streams stay open;
4. reports, per configuration: the streams open and refused (503), the median and 90th percentile
   of /api/cluster alone and with the streams, their ratio, what the streams carried (MB/s, over
   the 10 s or more they were open, their first frames included), and the dashboard process's CPU
   use (percent of one core) idle and while the streams were open — the figure least moved by
   other work on the machine.

Run it from the repository root::

    .venv/bin/python benchmarks/dashboard_streams.py [--quick] [--streams N] [--out FILE]

The streams are read by this process, on the same machine: its CPU is shared with the dashboard
(and with whatever else runs). Everything it started is stopped at the end, also on an error or
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import httpx
import psutil
import yaml
from _harness import arguments, cluster, free_port, main_guard, publish, running, wait_registered

from beach.client.core import AsyncBeach

CONFIGS = {"default caps (64, 4 per client)": None,
           "no caps (10,000)": {"max_streams": 10_000, "max_streams_per_client": 10_000}}


@dataclass
class Result:
    """One configuration's figures."""

    name: str
    opened: int
    refused: int
    alone: list[float]
    loaded: list[float]
    carried: float  # bytes per second, all streams together
    cpu_alone: float  # the dashboard process's CPU use, percent of one core
    cpu_loaded: float

    def row(self) -> str:
        def ms(values: list[float], q: float) -> str:
            ordered = sorted(values)
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"

        ratio = statistics.median(self.loaded) / statistics.median(self.alone)
        return (f"| {self.name} | {self.opened} | {self.refused} | {ms(self.alone, 0.5)} / {ms(self.alone, 0.9)} | "
                f"{ms(self.loaded, 0.5)} / {ms(self.loaded, 0.9)} | x{ratio:.2f} | {self.carried / 1e6:.2f} | "
                f"{self.cpu_alone:.0f} % / {self.cpu_loaded:.0f} % |\n")


async def timed(client: httpx.AsyncClient, url: str, n: int) -> list[float]:
    """``n`` sequential GETs of /api/cluster: their times, in seconds."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = await client.get(f"{url}/api/cluster")
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"/api/cluster answered {response.status_code}: {response.text[:200]}")
    return times


async def measure(name: str, url: str, streams: int, requests: int, pid: int) -> Result:
    """Steps 1-3 of the module docs against the dashboard at ``url`` (process ``pid``)."""
    dashboard = psutil.Process(pid)
    carried = 0
    readers: list[asyncio.Task[None]] = []
    clients: list[httpx.AsyncClient] = []
    opened = refused = 0

    async def read(response: httpx.Response) -> None:
        nonlocal carried
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_raw():
                carried += len(chunk)

    async with httpx.AsyncClient(timeout=120) as api:
        dashboard.cpu_percent()
        await asyncio.sleep(5)  # idle, but following the cluster
        cpu_alone = dashboard.cpu_percent()
        alone = await timed(api, url, requests)
        try:
            for i in range(streams):
                address = f"127.0.{i // 250}.{i % 250 + 2}"
                client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=120)
                clients.append(client)
                response = await client.send(client.build_request("GET", f"{url}/events?view=overview"), stream=True)
                if response.status_code == 200:
                    opened += 1
                    readers.append(asyncio.create_task(read(response)))
                else:
                    refused += 1
                    await response.aread()
            started = time.perf_counter()
            await asyncio.sleep(3)
            dashboard.cpu_percent()
            loaded = await timed(api, url, requests)
            await asyncio.sleep(max(0.0, 10 - (time.perf_counter() - started)))  # 10 s of streams at least
            cpu_loaded = dashboard.cpu_percent()
            rate = carried / (time.perf_counter() - started)
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    return Result(name, opened, refused, alone, loaded, rate, cpu_alone, cpu_loaded)


async def run(tmp: str, actors: int, streams: int, requests: int) -> list[Result]:
    results = []
    with cluster(tmp, n_processes=1) as running_cluster:
        client = await AsyncBeach.open(running_cluster.config)
        try:
            await wait_registered(client, running_cluster.node, running_cluster.node_log)
            for batch in range(0, actors, 25):
                await asyncio.gather(*(client.addActor("Idle", "load") for _ in range(min(25, actors - batch))))
        finally:
            await client.close()
        base = yaml.safe_load(open(running_cluster.config).read())
        for name, caps in CONFIGS.items():
            config = os.path.join(tmp, f"dashboard-{len(results)}.yaml")
            with open(config, "w") as f:
                yaml.safe_dump({**base, **({"dashboard": caps} if caps else {})}, f)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with running([sys.executable, "-m", "beach.dashboard", config, "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as dashboard:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if len(httpx.get(f"{url}/api/actors").json()["actors"]) >= actors:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the dashboard did not come up with every actor")
                    await asyncio.sleep(0.2)
                results.append(await measure(name, url, streams, requests, dashboard.pid))
    return results


def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("--actors", type=int, default=50, help="Idle actors in the cluster (default 50)")
    parser.add_argument("--streams", type=int, default=300, help="streams asked for (default 300)")
    parser.add_argument("--requests", type=int, default=30, help="timed /api/cluster requests (default 30)")
    args = parser.parse_args()
    if args.quick:
        args.actors, args.streams, args.requests = 10, 40, 10
    with tempfile.TemporaryDirectory(prefix="beach-bench-") as tmp:
        results = asyncio.run(run(tmp, args.actors, args.streams, args.requests))
    text = (f"/api/cluster with {args.streams} live streams asked for ({args.actors} actors; "
            f"{args.requests} requests each; ms median / p90)\n\n"
            "| dashboard | streams open | refused (503) | alone | with the streams | ratio | streams' MB/s "
            "| dashboard CPU, alone / with the streams |\n"
            "|---|---|---|---|---|---|---|---|\n" + "".join(r.row() for r in results))
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
