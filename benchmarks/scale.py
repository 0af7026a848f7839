"""What a node costs as the cluster grows: idle CPU per process, the server's messages, deliveries
per process, spawns/s and failure detection, with N nodes of ``n_processes: 1`` (issue 30).

The script starts, on 127.0.0.1 only, one nats-server (JetStream, a temporary store, its monitoring
port) and adds node agents (``python -m nodeagent CONFIG --node-id scale-NN``, one actor host
each) up to each N of ``--nodes`` (default 1,3,5,10,20,30,40). At each N, once every node is
registered and the cluster has settled (``--settle`` seconds):

1. **idle** (``--window`` seconds, nothing sent): the CPU (user+system, psutil) of every node agent,
   actor host and the server, as % of one core; the server's messages out per second (``/varz``);
   the messages the server delivered to each connection (``/connz``'s ``out_msgs``: agents, hosts,
   the benchmark's own client), per second;
2. **spawns**: ``--per-node`` × N ``Idle`` actors (capped at ``--max-spawns``), 16 in flight,
   strategy ``random``, from one client, once every host has had an actor (the first imports its
   code, a cost per host, not per spawn); spawns/s, and the CPU milliseconds a spawn costs (every
   agent's, host's and the server's, and the client's, while they were spawned: a cost per spawn
   that stays flat while spawns/s falls is time lost waiting, not work); then they are stopped;
   the messages delivered to each agent and each host per actor spawned and stopped (``/connz``);
3. **failure detection**: one node (not the supervisor's lease holder, not its standby) SIGKILLed;
   the time until it leaves the client's view; a new node takes its place.

Then the fitted growth of each figure (``y = a·N^b`` by least squares on the logs, N >= 3) and its
extrapolation to 100, 500 and 1,000 nodes. The machine is shared (other work runs on it): the
figures are this run's, said beside it.

    .venv/bin/python benchmarks/scale.py [--quick] [--nodes 1,3,5,10] [--out FILE]

Everything it started is stopped at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import psutil
from _harness import arguments, free_port, main_guard, publish, running, write_config

from beach.bus.embedded import EmbeddedServer
from beach.client.core import AsyncBeach
from beach.state.directory import FAILURE_DETECTION

IN_FLIGHT = 16
EXTRAPOLATE = (100, 500, 1000)


def monitor(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=10) as answer:
        return json.load(answer)  # type: ignore[no-any-return]


def deliveries(port: int) -> dict[str, int]:
    """Messages the server sent each connection so far, by connection name (cid appended)."""
    connections = monitor(port, "connz?limit=4096")["connections"]
    return {f"{c.get('name', '?')}#{c['cid']}": c["out_msgs"] for c in connections}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    times = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            times[name] = t.user + t.system
        except psutil.Error:
            times[name] = float("nan")
    return times


def fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """``(a, b)`` of ``y = a·N^b`` fitted to the positive points with N >= 3; None with fewer than 2."""
    usable = [(math.log(n), math.log(y)) for n, y in points if n >= 3 and y > 0]
    if len(usable) < 2:
        return None
    mx = sum(x for x, _ in usable) / len(usable)
    my = sum(y for _, y in usable) / len(usable)
    sxx = sum((x - mx) ** 2 for x, _ in usable)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in usable) / sxx
    return math.exp(my - b * mx), b


class Nodes:
    """The node agents of the run (each in a session of its own, stopped at the end)."""

    def __init__(self, stack: contextlib.ExitStack, config: str, logs: str) -> None:
        self.stack, self.config, self.logs = stack, config, logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.count = 0

    def start(self) -> str:
        node_id = f"scale-{self.count:02d}"
        self.count += 1
        log = open(os.path.join(self.logs, f"{node_id}.log"), "ab")  # noqa: SIM115 (closed with the stack)
        self.stack.callback(log.close)
        self.processes[node_id] = self.stack.enter_context(running(
            [sys.executable, "-m", "nodeagent", self.config, "--node-id", node_id],
            stdout=log, stderr=subprocess.STDOUT))
        return node_id


async def registered(client: AsyncBeach, nodes: Nodes, timeout: float = 120.0) -> None:
    view = client.session.view
    deadline = time.monotonic() + timeout
    while set(nodes.processes) - set(view.nodes) or [n for n in view.nodes if n not in nodes.processes]:
        dead = [n for n, p in nodes.processes.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"nodes did not register: missing {sorted(set(nodes.processes) - set(view.nodes))}, "
                               f"exited {dead}")
        await asyncio.sleep(0.1)


def pids_of(client: AsyncBeach, nodes: Nodes) -> tuple[dict[str, int], dict[str, int]]:
    """``(agents, hosts)``: their pids by name."""
    agents = {n: p.pid for n, p in nodes.processes.items()}
    hosts = {}
    for node_id in nodes.processes:
        entry = client.session.view.nodes.get(node_id)
        for host_id, host in (entry.hosts if entry is not None else {}).items():
            hosts[host_id] = host["pid"]
    return agents, hosts


def processes(client: AsyncBeach, nodes: Nodes, server_pid: int) -> dict[str, int]:
    """Every process of the cluster by name: ``a:<agent>``, ``h:<host>``, ``server``."""
    agents, hosts = pids_of(client, nodes)
    return {**{f"a:{k}": v for k, v in agents.items()}, **{f"h:{k}": v for k, v in hosts.items()},
            "server": server_pid}


async def idle(client: AsyncBeach, nodes: Nodes, server_pid: int, port: int, window: float) -> dict[str, float]:
    every = processes(client, nodes, server_pid)
    before_cpu, before_varz, before_conn = cpu_seconds(every), monitor(port, "varz"), deliveries(port)
    start = time.monotonic()
    await asyncio.sleep(window)
    wall = time.monotonic() - start
    after_cpu, after_varz, after_conn = cpu_seconds(every), monitor(port, "varz"), deliveries(port)
    share = {k: (after_cpu[k] - before_cpu[k]) / wall * 100 for k in every}
    got = {k: (after_conn[k] - before_conn[k]) / wall for k in after_conn if k in before_conn}

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    def peak(values: list[float]) -> float:
        return max(values) if values else float("nan")

    agent_got = [v for k, v in got.items() if k.startswith("beach-node ")]
    host_got = [v for k, v in got.items() if k.startswith("beach-host ")]
    return {
        "agent_cpu": mean([v for k, v in share.items() if k.startswith("a:")]),
        "host_cpu": mean([v for k, v in share.items() if k.startswith("h:")]),
        "all_cpu": sum(v for k, v in share.items() if k != "server"),
        "server_cpu": share["server"],
        "server_out": (after_varz["out_msgs"] - before_varz["out_msgs"]) / wall,
        "agent_got": mean(agent_got), "agent_got_max": peak(agent_got),
        "host_got": mean(host_got), "host_got_max": peak(host_got),
        "client_got": mean([v for k, v in got.items() if k.startswith("beach-client")]),
    }


async def spawns(client: AsyncBeach, count: int, port: int, every: dict[str, int],
                 onto: int = 0) -> dict[str, float]:
    """Spawns/s of ``count`` actors, the CPU they cost (``every`` process's, the server's and this
    client's, while they were spawned), and the messages the server delivered to each agent and
    each host per actor while they were spawned and stopped (each is two changes of the directory)."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def warm(node: str) -> None:  # (a host's first actor imports its code: not what N changes)
        async with gate:
            await client.addActor("Idle", "scale/warm", strategy="host_affinity", strategy_hint=node)

    await asyncio.gather(*(warm(node) for node in list(client.session.view.nodes)))
    await client.flush()
    before = deliveries(port)
    every = {**every, "client": os.getpid()}
    before_cpu = cpu_seconds(every)

    targets = sorted(client.session.view.nodes)[:onto]

    async def one(i: int) -> None:
        async with gate:
            if targets:  # (onto so many nodes only: touching more processes apart from the cluster's size)
                response = await client.addActor("Idle", "scale", strategy="host_affinity",
                                                  strategy_hint=targets[i % len(targets)])
            else:
                response = await client.addActor("Idle", "scale", strategy="random")
            if not response.isSuccess:
                raise RuntimeError(f"spawn failed: {response.error}")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    rate = count / (time.perf_counter() - start)
    after_cpu = cpu_seconds(every)
    cost = {k: (after_cpu[k] - before_cpu[k]) / count * 1e3 for k in every if k in after_cpu and k in before_cpu}
    await client.flush()
    await asyncio.sleep(1.0)  # (the last stops' deliveries)
    after = deliveries(port)
    got = {k: (after[k] - before[k]) / count for k in after if k in before}

    def mean(kind: str) -> float:
        values = [v for k, v in got.items() if k.startswith(kind)]
        return sum(values) / len(values) if values else float("nan")

    return {"spawns": rate, "agent_per_spawn": mean("beach-node "), "host_per_spawn": mean("beach-host "),
            "cpu_per_spawn": sum(cost.values()), "server_cpu_per_spawn": cost.get("server", float("nan")),
            "client_cpu_per_spawn": cost.get("client", float("nan"))}


async def lease_holder(client: AsyncBeach) -> str | None:
    from beach import bus
    from beach.state import desired
    kv = await bus.open_desired(client.session.nc, client.session.config)
    current = await desired.get(kv, desired.LEASE_KEY, desired.LeaseRecord)
    return current[0].holder if current else None


async def detection(client: AsyncBeach, nodes: Nodes) -> float:
    """SIGKILL a node that neither holds the lease nor stands by; seconds until it leaves the view."""
    from nodeagent.liveness import standby
    holder = await lease_holder(client)
    spare = standby(holder, client.session.view.nodes)
    victim = next(n for n in sorted(nodes.processes, reverse=True) if n not in (holder, spare))
    process = nodes.processes.pop(victim)
    hosts = [h["pid"] for h in client.session.view.nodes[victim].hosts.values()]
    struck = time.monotonic()
    for pid in [process.pid, *hosts]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while victim in client.session.view.nodes:
        if time.monotonic() - struck > 60:
            raise RuntimeError(f"{victim} was not removed within 60 s")
        await asyncio.sleep(0.02)
    return time.monotonic() - struck


def table(rows: list[dict[str, float]]) -> str:
    columns = [("N", "n", "{:.0f}"), ("all beach processes, % of a core", "all_cpu", "{:.1f}"),
               ("per agent %", "agent_cpu", "{:.2f}"), ("per host %", "host_cpu", "{:.2f}"),
               ("server %", "server_cpu", "{:.2f}"), ("server msgs out/s", "server_out", "{:,.0f}"),
               ("delivered/s per agent (max)", "agent_got", "{:.1f}"), ("per host (max)", "host_got", "{:.1f}"),
               ("to a client", "client_got", "{:.1f}"), ("spawns/s", "spawns", "{:.0f}"),
               ("CPU ms per spawn: all", "cpu_per_spawn", "{:.2f}"), ("server", "server_cpu_per_spawn", "{:.2f}"),
               ("client", "client_cpu_per_spawn", "{:.2f}"),
               ("delivered per spawn+stop: to an agent", "agent_per_spawn", "{:.1f}"),
               ("to a host", "host_per_spawn", "{:.1f}"),
               ("detection s", "detection", "{:.2f}")]
    lines = ["| " + " | ".join(c[0] for c in columns) + " |", "|" + "---:|" * len(columns)]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cell = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)
            if key in ("agent_got", "host_got") and row.get(key + "_max") is not None:
                cell += f" ({row[key + '_max']:.0f})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    growth = ["", "| figure | fitted growth (N >= 3) | at 100 | at 500 | at 1,000 |", "|---|---:|---:|---:|---:|"]
    for label, key in (("idle CPU per agent, %", "agent_cpu"), ("idle CPU per host, %", "host_cpu"),
                       ("server msgs out/s", "server_out"), ("delivered/s per agent", "agent_got"),
                       ("delivered/s per host", "host_got"), ("server CPU, %", "server_cpu")):
        fitted = fit([(int(r["n"]), r[key]) for r in rows if key in r and not math.isnan(r[key])])
        if fitted is None:
            continue
        a, b = fitted
        growth.append(f"| {label} | N^{b:.2f} | " + " | ".join(f"{a * n ** b:,.1f}" for n in EXTRAPOLATE) + " |")
    return "\n".join(lines + growth) + "\n"


async def run(args: Any, nodes_wanted: list[int], tmp: str) -> list[dict[str, float]]:
    rows = []
    with contextlib.ExitStack() as stack:
        port = free_port()
        server = stack.enter_context(EmbeddedServer(free_port(), os.path.join(tmp, "js"), name="beach-scale",
                                                    log_file=os.path.join(tmp, "nats.log"), args=["-m", str(port)]))
        config = write_config(tmp, server.url, 1)
        nodes = Nodes(stack, config, tmp)
        client = await AsyncBeach.open(config)
        try:
            for n in nodes_wanted:
                while len(nodes.processes) < n:
                    nodes.start()
                await registered(client, nodes)
                await asyncio.sleep(args.settle)
                assert server.process is not None
                row: dict[str, float] = {"n": n, **await idle(client, nodes, server.process.pid, port, args.window)}
                row.update(await spawns(client, min(args.per_node * n, args.max_spawns), port,
                                        processes(client, nodes, server.process.pid), args.onto))
                if n >= 3:
                    row["detection"] = await detection(client, nodes)
                    nodes.start()
                    await registered(client, nodes)
                rows.append(row)
                print(table(rows).split("\n\n")[0].splitlines()[-1], flush=True)
        finally:
            await client.close()
    return rows


def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("--nodes", default="1,3,5,10,20,30,40", help="the cluster sizes to measure, in order")
    parser.add_argument("--window", type=float, default=15.0, help="seconds of each idle measurement")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after the nodes registered")
    parser.add_argument("--per-node", type=int, default=10, help="actors spawned per node")
    parser.add_argument("--max-spawns", type=int, default=200, help="at most this many spawns per N")
    parser.add_argument("--onto", type=int, default=0, help="place the spawns on this many nodes only "
                        "(host_affinity, in turn), not at random on all: the cost of the cluster's size apart "
                        "from that of reaching more processes")
    args = parser.parse_args()
    wanted = [int(n) for n in args.nodes.split(",")]
    if args.quick:
        wanted, args.window, args.settle, args.per_node = [1, 3], 3.0, 2.0, 3
    with tempfile.TemporaryDirectory(prefix="beach-scale-") as tmp:
        rows = asyncio.run(run(args, wanted, tmp))
    header = (f"nodes of n_processes: 1 on one nats-server, this machine ({psutil.cpu_count()} cores, shared with "
              f"other work); idle windows of {args.window:g} s; failure detection bound {FAILURE_DETECTION:g} s\n\n")
    publish(header + table(rows), args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
