"""What the benchmarks share: the processes they start, and how they measure.

Everything listens on 127.0.0.1 only. `cluster()` starts a nats-server (temporary JetStream store)
and a beach node agent (``python -m nodeagent``) with ``n_processes`` actor hosts running the actors
of ``benchmarks/actors``; `running()` runs any other process (raw nats-py peers). Each is stopped
when its ``with`` block ends, also on an error or Ctrl-C (SIGTERM, then SIGKILL of its process
group), and is sent SIGTERM if the benchmark process dies without cleaning up.

`main_guard()` runs a script's ``main``: SIGTERM acts as Ctrl-C, and an interruption exits with a
message once everything has been stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import nats
import psutil
import yaml

from beach.bus import clustering
from beach.bus.embedded import EmbeddedServer, die_with_parent
from beach.client.core import AsyncBeach
from beach.config import LOOPBACK

ACTORS = Path(__file__).resolve().parent / "actors"
NODE_ID = "bench-node"
TIMEOUT = 5.0
WORKERS = 64
STOP_SECONDS = 40.0

Call = Callable[[int], Awaitable[Any]]

# ---------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (`beach.bus.clustering.free_port`: never one given lately)."""
    return clustering.free_port(LOOPBACK)


def write_config(directory: str, nats_url: str, n_processes: int = 1, **extra: Any) -> str:
    """Write the beach config of the benchmark cluster (with ``extra`` keys); return its path."""
    path = os.path.join(directory, "beach.yaml")
    raw = {"code_directory": str(ACTORS), "n_processes": n_processes, "log_level": "WARNING",
           "nats": {"servers": [nats_url]}, **extra}
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    return path


@contextlib.contextmanager
def running(command: list[str], **popen_args: Any) -> Iterator[subprocess.Popen[Any]]:
    """Run ``command`` in a session of its own (a Ctrl-C here does not reach it) for the duration
    of the block, then SIGTERM it and wait; SIGKILL its process group if it does not exit. It is
    also sent SIGTERM if this process dies without cleaning up."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True,
                               preexec_fn=die_with_parent, **popen_args)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def node_agent(config: str, log_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """A running node agent (it starts its actor hosts), logging to ``log_path``."""
    with open(log_path, "ab") as log, running([sys.executable, "-m", "nodeagent", config, "--node-id", NODE_ID],
                                              stdout=log, stderr=subprocess.STDOUT) as node:
        yield node


@dataclass
class Cluster:
    """A running nats-server and node agent."""

    url: str
    config: str
    node: subprocess.Popen[bytes]
    node_log: str
    server_pid: int
    server_pids: list[int] = field(default_factory=list)  # every server's, the first one's first


@contextlib.contextmanager
def cluster(tmp: str, n_processes: int = 1, servers: int = 1, sync_interval: str | None = None,
            **extra: Any) -> Iterator[Cluster]:
    """A nats-server (``servers`` of them, routed into one cluster: JetStream's buckets get 3
    replicas from 3 on) and a node agent with ``n_processes`` actor hosts, state and logs in ``tmp``
    (``sync_interval``: the servers' JetStream fsync, None: the server's default; ``extra``: more
    config keys). The node and clients use the first server."""
    with contextlib.ExitStack() as stack:
        routes = [free_port() for _ in range(servers)] if servers > 1 else []
        started = []
        for i in range(servers):
            args = []
            if routes:
                args = ["--cluster_name", "beach-bench", "--cluster", f"nats://127.0.0.1:{routes[i]}",
                        "--routes", ",".join(f"nats-route://127.0.0.1:{p}" for p in routes)]
            started.append(stack.enter_context(EmbeddedServer(
                free_port(), os.path.join(tmp, f"js{i}"), name=f"beach-bench-{i}", args=args,
                log_file=os.path.join(tmp, f"nats{i}.log"), sync_interval=sync_interval)))
        server = started[0]
        config = write_config(tmp, server.url, n_processes, **extra)
        node_log = os.path.join(tmp, "node.log")
        node = stack.enter_context(node_agent(config, node_log))
        assert server.process is not None
        yield Cluster(server.url, config, node, node_log, server.process.pid,
                      [s.process.pid for s in started if s.process is not None])


@contextlib.asynccontextmanager
async def clients(bench: Cluster) -> AsyncIterator[tuple[AsyncBeach, nats.NATS]]:
    """A beach client of ``bench`` once its node is registered, and a raw nats-py connection to
    its first server; both closed at the end."""
    async with contextlib.AsyncExitStack() as stack:
        client = await AsyncBeach.open(bench.config)
        stack.push_async_callback(client.close)
        nc = await nats.connect(bench.url)
        stack.push_async_callback(nc.close)
        await wait_registered(client, bench.node, bench.node_log)
        yield client, nc


# Raw nats-py runs on both event loops in every run: asyncio's own, and uvloop (what beach's own
# processes run on, `beach.loop`). Its peers are scripts ending in ``asyncio.run(main(...))``, run on
# the loop asked for; its client side runs in a `LoopThread` of that kind.
RAW_LOOPS = ("asyncio", "uvloop")


def raw_subject(subject: str, loop: str) -> str:
    """The subject a raw peer on ``loop`` listens on (each loop's peer its own)."""
    return f"{subject}.{loop}"


class LoopThread:
    """An event loop of ``kind`` ('asyncio' or 'uvloop') in a thread of its own: the raw nats-py
    client of that kind runs there, its rounds timed inside the loop and waited for from here."""

    def __init__(self, kind: str) -> None:
        if kind == "uvloop":
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.kind = kind
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"raw-{kind}", daemon=True)
        self.thread.start()

    def call(self, coro: Awaitable[Any]) -> Any:
        """Run ``coro`` on the loop; block until it is done and return its result."""
        async def run() -> Any:
            return await coro
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    async def acall(self, coro: Awaitable[Any]) -> Any:
        """`call` from another event loop (that one waits without blocking)."""
        return await asyncio.to_thread(self.call, coro)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def raw_sides(url: str, subject: str) -> Iterator[dict[str, tuple[LoopThread, nats.NATS]]]:
    """A raw nats-py client on each of `RAW_LOOPS`, each in its `LoopThread`, connected to ``url``:
    ``{loop: (thread, nc)}`` (``subject``: unused here, for the peers' `raw_subject`)."""
    sides: dict[str, tuple[LoopThread, nats.NATS]] = {}
    try:
        for kind in RAW_LOOPS:
            thread = LoopThread(kind)
            sides[kind] = (thread, thread.call(nats.connect(url)))
        yield sides
    finally:
        for thread, nc in sides.values():
            thread.call(nc.close())
            thread.close()


# A raw nats-py responder: echoes every request on ``subject`` back as it came.
ECHO_SUBJECT = "bench.raw.echo"
ECHO_RESPONDER = """
import asyncio, sys, nats

async def main(url, subject):
    nc = await nats.connect(url)

    async def echo(msg):
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe(subject, cb=echo)
    await nc.flush()
    print('ready', flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


@contextlib.contextmanager
def raw_peer(script: str, *args: str, loop: str = "asyncio") -> Iterator[subprocess.Popen[str]]:
    """Run the Python source ``script`` with ``args`` (a raw nats-py peer) in this interpreter, on
    ``loop`` (its ``asyncio.run(main(...))`` runs on uvloop if asked), and wait until it prints
    ``ready`` (it is subscribed)."""
    if loop == "uvloop":
        script = "import uvloop\n" + script.replace("asyncio.run(main(", "uvloop.run(main(")
    with running([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True) as process:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the raw peer did not start (exit code {process.wait()})")
        yield process


async def wait_registered(client: AsyncBeach, node: subprocess.Popen[bytes], log_path: str,
                          timeout: float = 30.0) -> None:
    """Wait until the node agent is in the directory view; raise if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while NODE_ID not in client.session.view.nodes:
        if node.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"node {NODE_ID} did not register (exit code {node.poll()}):\n"
                               + Path(log_path).read_text())
        await asyncio.sleep(0.05)


def host_pids(client: AsyncBeach) -> dict[str, int]:
    """``{'host 1': pid, ...}``: the actor host processes of the benchmark node (from the registry)."""
    hosts = client.session.view.nodes[NODE_ID].hosts
    return {f"host {i}": h["pid"] for i, h in enumerate(sorted(hosts.values(), key=lambda h: h["pid"]), 1)}


def raw_echo_call(nc: nats.NATS, subject: str = ECHO_SUBJECT) -> Call:
    """A request to the raw echo responder: msgpack-encoded ``{'n': i}`` in, decoded reply out."""
    async def call(i: int) -> Any:
        msg = await nc.request(subject, msgpack.packb({"n": i}), timeout=TIMEOUT)
        return msgpack.unpackb(msg.data)
    return call


def checked(response: Any) -> Any:
    """The data of a successful `ActorResponse`; raise on a failed one (a benchmark must not hide errors)."""
    if not response.isSuccess:
        raise RuntimeError(f"beach request failed: {response.error!r} {response.data!r}")
    return response.data


def arguments(doc: str) -> argparse.ArgumentParser:
    """The command line every benchmark takes: ``--quick`` (a smoke test) and ``--out FILE``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run, to smoke-test the script")
    parser.add_argument("--out", help="also write the tables to this file")
    return parser


def publish(text: str, out: str | None) -> None:
    """Print a benchmark's report, and write it to ``out`` too when given."""
    print(text, end="")
    if out:
        Path(out).write_text(text)


def main_guard(main: Callable[[], int]) -> None:
    """Run a benchmark's ``main``: SIGTERM stops it as Ctrl-C does, and both exit with a message
    once every process it started has been stopped."""
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted: everything the benchmark started has been stopped")


# ---------------------------------------------------------------- measuring


@dataclass
class Result:
    """Throughput (per second) and, for sequential runs, latency percentiles (µs)."""

    rate: float
    p50: float | None = None
    p99: float | None = None

    @classmethod
    def median(cls, results: list[Result]) -> Result:
        """The median of each figure over several runs."""
        def of(values: list[float | None]) -> float | None:
            return None if None in values else statistics.median(values)
        return cls(of([r.rate for r in results]), of([r.p50 for r in results]), of([r.p99 for r in results]))


def summarize(latencies: list[float], elapsed: float) -> Result:
    """req/s and p50/p99 (µs) of a sequential run."""
    cuts = statistics.quantiles(latencies, n=100)
    return Result(len(latencies) / elapsed, cuts[49] * 1e6, cuts[98] * 1e6)


def sequential_blocking(call: Callable[[int], Any], n: int) -> Result:
    """`sequential` for a blocking call (the seed's ``request()``): ``n`` one after the other."""
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        sent = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - sent)
    return summarize(latencies, time.perf_counter() - start)


async def sequential(call: Call, n: int) -> Result:
    """Send ``n`` requests one after the other."""
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        sent = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - sent)
    return summarize(latencies, time.perf_counter() - start)


async def in_flight(call: Call, n: int, workers: int = WORKERS) -> Result:
    """Send ``n`` requests from ``workers`` concurrent loops (``workers`` requests in flight)."""
    numbers = iter(range(n))

    async def worker() -> None:
        for i in numbers:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return Result(n / (time.perf_counter() - start))


@dataclass
class Window:
    """One measured window of a `CpuMeter`: set ``active`` (seconds) when only part of the window
    was busy (e.g. a wait for losses that never come), to compute the shares of a core over it."""

    active: float | None = None


class CpuMeter:
    """CPU time used by a set of processes over windows: ``with meter.window(label, ops): ...``
    adds each process's user+system seconds (its threads included, children not) and the wall time
    of the window to the totals under ``label``. psutil reads clock ticks (10 ms): windows need to
    last seconds for the figures to mean much."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.cpu: dict[str, dict[str, float]] = {}
        self.wall: dict[str, float] = {}
        self.ops: dict[str, int] = {}

    def add(self, name: str, pid: int) -> None:
        """Measure one more process from now on (replacing one of the same name)."""
        self.processes[name] = psutil.Process(pid)

    def _times(self) -> dict[str, float]:
        times = {}
        for name, process in self.processes.items():
            try:
                t = process.cpu_times()
                times[name] = t.user + t.system
            except psutil.Error:
                times[name] = float("nan")
        return times

    @contextlib.contextmanager
    def window(self, label: str, ops: int = 0) -> Iterator[Window]:
        """Measure the block under ``label``; ``ops`` operations (messages, requests) happen in it."""
        before, start = self._times(), time.perf_counter()
        window = Window()
        try:
            yield window
        finally:
            after, wall = self._times(), time.perf_counter() - start
            totals = self.cpu.setdefault(label, {})
            for name in after:
                totals[name] = totals.get(name, 0.0) + after[name] - before.get(name, after[name])
            self.wall[label] = self.wall.get(label, 0.0) + (window.active or wall)
            self.ops[label] = self.ops.get(label, 0) + ops

    def table(self, unit: str = "request") -> str:
        """A markdown table: per label, each process's CPU in µs per operation and % of one core."""
        names = list(self.processes)
        lines = [f"| case | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
        for label, totals in self.cpu.items():
            wall, ops = self.wall[label], self.ops[label]
            cells = []
            for name in names:
                if name not in totals:
                    cells.append("–")
                    continue
                seconds = totals[name]
                per_op = f"{seconds / ops * 1e6:,.1f} µs" if ops else "–"
                cells.append(f"{per_op} ({seconds / wall:.0%})")
            lines.append(f"| {label} | {' | '.join(cells)} |")
        return "\n".join(lines) + (f"\n\nCPU time per {unit} of each process, and in brackets its share of one "
                                   f"core over the measured time.\n")


@dataclass
class Table:
    """A markdown table of raw (on each of `RAW_LOOPS`) vs beach figures, with the ratios."""

    header: tuple[str, ...] = ("case", *(f"raw nats-py, {k}" for k in RAW_LOOPS), "beach",
                               *(f"beach/raw {k}" for k in RAW_LOOPS))
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ratio(self, label: str, raws: list[float], beach: float, fmt: str = "{:,.0f}") -> None:
        """A row ``label | raw... | beach | beach/raw...`` (``raws``: one per loop, in `RAW_LOOPS` order)."""
        self.rows.append((label, *(fmt.format(r) for r in raws), fmt.format(beach),
                          *(f"{beach / r:.2f}" if r else "–" for r in raws)))

    def row(self, *cells: str) -> None:
        """A row as given."""
        self.rows.append(cells)

    def __str__(self) -> str:
        lines = [f"| {' | '.join(self.header)} |", "|---|" + "---:|" * (len(self.header) - 1)]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        if self.notes:
            lines += [""] + self.notes
        return "\n".join(lines) + "\n"
