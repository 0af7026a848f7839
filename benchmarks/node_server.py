"""What carrying the bus costs a node at idle: the CPU and memory of its own nats-server.

Every node runs a nats-server (issue 23); before, only the first did. The script starts, on
127.0.0.1 only and each from a fresh state directory, the way a person does:

1. a one-node cluster, ``beach up CONFIG`` (its server, with JetStream, and the anchor beside it);
2. that node plus two joined with ``beach node nats://127.0.0.1:PORT --nats-port N --route-port M``
   (three JetStream servers, the anchor retired once the replicas are raised), and a fourth that
   joins the same way and routes without JetStream;
3. as the baseline, what the first node ran before: one standalone ``nats-server -js``, with a node
   agent on it (``nats.servers``).

Once each set is up and settled (``--settle`` seconds, default 20), it samples every process for
``--idle`` seconds (default 60): CPU time (user + system, psutil) over the window as a share of one
core, and RSS at the end. Nothing is sent meanwhile but what beach sends by itself (heartbeats,
lease renewals, load figures). The table gives, per node, its server (and anchor), its agent and its
actor host, and the server's share of what the node costs.

Run it from the repository root::

    .venv/bin/python benchmarks/node_server.py [--quick] [--idle SECONDS] [--out FILE]

``--quick`` is a smoke test (10 s windows). Everything it started is stopped at the end, also on an
error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import yaml
from _harness import ACTORS, arguments, free_port, main_guard, publish, running

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer

TOKEN = "bench-token"


@dataclass
class Sample:
    """One process over the idle window."""

    node: str
    role: str
    cpu: float  # percent of one core
    rss: float  # MiB at the end


def config(directory: str, port: int, **nats: object) -> str:
    path = os.path.join(directory, "beach.yaml")
    raw = {"code_directory": str(ACTORS), "n_processes": 1, "log_level": "WARNING", "admin_token": TOKEN,
           "code": {"cache": os.path.join(directory, "cache")},
           "nats": {"port": port, "cluster_port": 0, "store_dir": os.path.join(directory, "nats"), **nats}}
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(raw, f)
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "beach.cli", *args]


@contextlib.contextmanager
def node(tmp: str, name: str, args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    with open(os.path.join(tmp, f"{name}.log"), "ab") as log, \
            running(command(*args, "--node-id", name), stdout=log, stderr=subprocess.STDOUT) as process:
        yield process


def wait_nodes(config_path: str, names: list[str], timeout: float = 120.0) -> None:
    with Beach(config_path) as client:
        deadline = time.monotonic() + timeout
        while not set(names) <= set(client._core.session.view.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes {names} did not all register within {timeout:g}s")
            time.sleep(0.2)


def roles(name: str, process: subprocess.Popen[bytes]) -> dict[str, psutil.Process]:
    """A node's processes: ``agent``, ``host``, ``server``, ``anchor``."""
    agent = psutil.Process(process.pid)
    found = {"agent": agent}
    for child in agent.children(recursive=True):
        if child.name() == "nats-server":
            found["anchor" if "anchor" in " ".join(child.cmdline()) else "server"] = child
        else:
            found["host"] = child
    return found


def measure(processes: dict[str, dict[str, psutil.Process]], idle: float) -> list[Sample]:
    """CPU share (the process's own user + system time) and RSS of every process over an
    ``idle``-second window."""
    def used(p: psutil.Process) -> float:
        times = p.cpu_times()
        return float(times.user + times.system)

    before = {(n, r): used(p) for n, procs in processes.items() for r, p in procs.items()}
    time.sleep(idle)
    return [Sample(n, r, (used(p) - before[(n, r)]) / idle * 100, p.memory_info().rss / 2**20)
            for n, procs in processes.items() for r, p in procs.items()]


def table(title: str, samples: list[Sample]) -> str:
    lines = [f"### {title}", "", "| node | process | CPU (% of a core) | RSS (MiB) |", "|---|---|---|---|"]
    for s in samples:
        lines.append(f"| {s.node} | {s.role} | {s.cpu:.2f} | {s.rss:.1f} |")
    by_node: dict[str, list[Sample]] = {}
    for s in samples:
        by_node.setdefault(s.node, []).append(s)
    lines += ["", "| node | its servers: CPU | its servers: RSS | share of the node's CPU | of its RSS |",
              "|---|---|---|---|---|"]
    for name, found in by_node.items():
        servers = [s for s in found if s.role in ("server", "anchor")]
        cpu, rss = sum(s.cpu for s in servers), sum(s.rss for s in servers)
        total_cpu, total_rss = sum(s.cpu for s in found), sum(s.rss for s in found)
        lines.append(f"| {name} | {cpu:.2f}% | {rss:.1f} MiB | {cpu / total_cpu * 100 if total_cpu else 0:.0f}% | "
                     f"{rss / total_rss * 100:.0f}% |")
    return "\n".join(lines) + "\n\n"


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds each idle window lasts (default 60)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to let a set settle first (default 20)")
    args = parser.parse_args()
    idle, settle = (10.0, 5.0) if args.quick else (args.idle, args.settle)
    report = [f"# Idle cost of a node's own NATS server ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"{idle:g} s windows after {settle:g} s; other work shares this machine)\n\n"]
    with tempfile.TemporaryDirectory() as tmp:
        # 1. one node: its server and the anchor
        first_port = free_port()
        first = config(os.path.join(tmp, "one", "n1"), first_port)
        with node(tmp, "one-n1", ["up", first]) as n1:
            wait_nodes(first, ["one-n1"])
            time.sleep(settle)
            report.append(table("One node (`beach up`): its server and the anchor",
                                measure({"n1": roles("n1", n1)}, idle)))
        # 2. three JetStream nodes and a fourth without JetStream
        port = free_port()
        first = config(os.path.join(tmp, "four", "n1"), port)
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write(TOKEN)
        with contextlib.ExitStack() as stack:
            nodes = {"n1": stack.enter_context(node(tmp, "four-n1", ["up", first]))}
            wait_nodes(first, ["four-n1"])
            pushed = subprocess.run(command("config", "push", first), capture_output=True, text=True, timeout=120)
            if pushed.returncode:
                raise RuntimeError(f"config push failed: {pushed.stderr}")
            for i in (2, 3, 4):
                nodes[f"n{i}"] = stack.enter_context(node(tmp, f"four-n{i}", [
                    "node", f"nats://127.0.0.1:{port}", "--nats-port", str(free_port()), "--route-port", "0",
                    "--state", os.path.join(tmp, "four", f"n{i}"), "--admin-token-file", token]))
                wait_nodes(first, [f"four-n{i}"])
            time.sleep(settle)
            report.append(table("Four nodes joined by URL: three carry JetStream (n1-n3), n4 routes without it",
                                measure({n: roles(n, p) for n, p in nodes.items()}, idle)))
        # 3. the baseline: one standalone server, a node agent on it (what the first node ran before)
        with EmbeddedServer(free_port(), os.path.join(tmp, "base", "js"), name="baseline") as server:
            assert server.process is not None
            base = config(os.path.join(tmp, "base"), free_port())
            with open(base) as f:
                raw = yaml.safe_load(f)
            raw["nats"] = {"servers": [server.url]}
            with open(base, "w") as f:
                yaml.safe_dump(raw, f)
            with node(tmp, "base-n1", ["node", base]) as n1:
                wait_nodes(base, ["base-n1"])
                time.sleep(settle)
                procs = roles("n1", n1)
                procs["server"] = psutil.Process(server.process.pid)
                report.append(table("Baseline: one standalone `nats-server -js` and a node agent on it (before)",
                                    measure({"n1": procs}, idle)))
    publish("".join(report), args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
