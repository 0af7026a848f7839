"""The actor developer's loop: how long a `LocalCluster` takes to come up and go, what an
`ActorHarness` request costs, and how long ``beach dev`` takes from a save to the new reply.

* **LocalCluster(nodes=1 | 2)**: seconds from the constructor to every node registered (``with``
  entered), and to everything stopped; beside it, a bare nats-server's start (`EmbeddedServer`),
  the part no cluster can do without. Several rounds, alternating.
* **ActorHarness**: a request to a plain ``def`` handler (encoded and decoded as on the wire, a
  turn of state) against calling the handler method directly, per call.
* **beach dev**: on a one-node local cluster with two ``Echo`` actors under a steady request
  load, the seconds from a saved file to the first reply of the new version, and to the last
  reply of the old one (every reply new from then on).

Run it from the repository root::

    .venv/bin/python benchmarks/devloop.py [--quick] [--out FILE]

Everything it starts listens on 127.0.0.1 only and is stopped at the end, also on an error or
Ctrl-C.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _harness import arguments, free_port, main_guard, publish

from beach.actor import Actor
from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.testing import ActorHarness, LocalCluster

ECHO = """
from beach.actor import Actor
from . import helpers

class Echo(Actor):
    def init(self, parameters):
        self.handle('v', lambda msg: (True, {'v': helpers.VERSION}))
"""


class Plain(Actor):
    def init(self, parameters):
        self.handle("add", self.add)

    def add(self, msg):
        return (True, {"sum": msg.data["a"] + msg.data["b"]})


def cluster_times(rounds: int) -> list[str]:
    starts: dict[str, list[float]] = {"nats-server alone": [], "nodes=1": [], "nodes=2": []}
    stops: dict[str, list[float]] = {"nats-server alone": [], "nodes=1": [], "nodes=2": []}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            server = EmbeddedServer(free_port(), os.path.join(tmp, "js")).start()
            starts["nats-server alone"].append(time.perf_counter() - t)
            t = time.perf_counter()
            server.stop()
            stops["nats-server alone"].append(time.perf_counter() - t)
        for nodes in (1, 2):
            t = time.perf_counter()
            cluster = LocalCluster(nodes=nodes).start()
            starts[f"nodes={nodes}"].append(time.perf_counter() - t)
            t = time.perf_counter()
            cluster.stop()
            stops[f"nodes={nodes}"].append(time.perf_counter() - t)
    rows = [f"| {name} | {statistics.median(starts[name]):.2f} | {max(starts[name]):.2f} | "
            f"{statistics.median(stops[name]):.2f} | {max(stops[name]):.2f} |" for name in starts]
    return [f"### Start and stop ({rounds} rounds, seconds)", "",
            "| | start, median | start, max | stop, median | stop, max |", "|---|---|---|---|---|", *rows, ""]


def harness_cost(n: int) -> list[str]:
    with ActorHarness(Plain) as harness:
        actor = harness.actor
        request = type("Request", (), {"data": {"a": 1, "b": 2}})()
        t = time.perf_counter()
        for _ in range(n):
            actor.add(request)
        direct = (time.perf_counter() - t) / n
        t = time.perf_counter()
        for _ in range(n):
            harness.request("add", {"a": 1, "b": 2})
        through = (time.perf_counter() - t) / n
    return [f"### ActorHarness ({n} calls)", "", "| | µs per call |", "|---|---|",
            f"| the handler called directly | {direct * 1e6:.1f} |",
            f"| harness.request() | {through * 1e6:.1f} |", ""]


def dev_reload(saves: int) -> list[str]:
    firsts, lasts = [], []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(nodes=1, realm="bench") as cluster:
        app = Path(tmp) / "app"
        app.mkdir()
        (app / "Echo.py").write_text(ECHO)
        (app / "helpers.py").write_text("VERSION = 0\n")
        dev = subprocess.Popen([sys.executable, "-m", "beach.cli", "dev", "bench", str(app), "--config",
                                cluster.config_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert dev.stdout is not None
            for line in dev.stdout:
                if "watching" in line:
                    break
            client = Beach(cluster.config_path, realm="bench")
            for _ in range(2):
                assert client.addActor("Echo", "echo").isSuccess
            replies: list[tuple[float, int]] = []
            stop = threading.Event()

            def load() -> None:
                handle = client.getActorHandle("echo")
                while not stop.is_set():
                    response = handle.request("v", timeout=5)
                    if response.isSuccess:
                        replies.append((time.perf_counter(), response.data["v"]))

            worker = threading.Thread(target=load, daemon=True)
            worker.start()
            try:
                for n in range(1, saves + 1):
                    time.sleep(1.0)
                    saved = time.perf_counter()
                    (app / "helpers.py").write_text(f"VERSION = {n}\n")
                    for line in dev.stdout:
                        if re.search(r"serving|not deployed|not rolled out", line):
                            break
                    time.sleep(0.5)
                    after = [(t, v) for t, v in list(replies) if t >= saved]
                    firsts.append(next(t for t, v in after if v == n) - saved)
                    lasts.append(max((t for t, v in after if v != n), default=saved) - saved)
            finally:
                stop.set()
                worker.join(10)
                client.close()
        finally:
            dev.terminate()
            dev.wait(30)
            if dev.stdout is not None:
                dev.stdout.close()
    return [f"### beach dev ({saves} saves, 2 actors, one node, seconds after the save)", "",
            "| | median | max |", "|---|---|---|",
            f"| first reply of the new version | {statistics.median(firsts):.2f} | {max(firsts):.2f} |",
            f"| last reply of the old version | {statistics.median(lasts):.2f} | {max(lasts):.2f} |", ""]


def main() -> int:
    args = arguments(__doc__).parse_args()
    rounds, calls, saves = (1, 1000, 2) if args.quick else (5, 20000, 5)
    lines = ["## The developer's loop (benchmarks/devloop.py)", "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores shared with other work.",
             ""]
    lines += cluster_times(rounds) + harness_cost(calls) + dev_reload(saves)
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
