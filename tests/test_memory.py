"""Memory no burst can exhaust: reply-less messages to a busy actor wait within a bound (the
config's ``backlog``), the rest are dropped and counted, and the node's processes grow by a few MB
under a flood; nats-server by what it holds for a slow reader, at most its ``max_pending`` (64 MB)."""

from __future__ import annotations

import os
import time

import psutil

from beach.testing import LocalCluster

from .conftest import ACTORS, HERE, wait_for

GATE = "beach_test_actors:Gate"
SHOTS = 20_000
SIZE = 8 * 1024


def rss(pids: list[int]) -> dict[int, int]:
    return {pid: psutil.Process(pid).memory_info().rss for pid in pids}


def test_a_flood_of_shots_to_a_slow_actor_is_bounded(monkeypatch):
    # (the node's hosts import the test actors' module: beach_test_actors:Gate)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE / "modules"),
                                                                   os.environ.get("PYTHONPATH")])))
    with LocalCluster(ACTORS, n_processes=1, actor_modules=["beach_test_actors"]) as cluster:
        with cluster.client() as client:
            uid = client.addActor(GATE, "flood", max_concurrent=1).data["uid"]
            pids = [cluster.server.process.pid, cluster.nodes["local-1"].pid,
                    *(h["pid"] for h in client._core.session.view.nodes["local-1"].hosts.values())]
            handle = client.getActorHandle("flood")
            assert handle.request("ping").isSuccess
            before = rss(pids)
            assert handle.shoot("hold", {"seconds": 30, "blob": b""})  # holds the actor's one slot
            blob = b"x" * SIZE
            started = time.monotonic()
            for i in range(SHOTS):
                handle.shoot("hold", {"seconds": 0, "i": i, "blob": blob})

            def received() -> dict:
                load = client.getLoadInfo()[uid]
                return load if load["waiting"] + load["dropped"] >= SHOTS else {}

            load = wait_for(received, 60, 0.2, what="every shot to reach the actor")
            during = rss(pids)
            assert client.stopActors(withId=uid).isSuccess
            after = rss(pids)
            grown = {pid: (during[pid] - before[pid]) / 2**20 for pid in pids}
            print(f"\n{SHOTS} shots of {SIZE // 1024} KiB in {time.monotonic() - started:.1f}s: {load['waiting']} "
                  f"waiting ({load['waiting'] * SIZE / 2**20:.1f} MiB), {load['dropped']} dropped; growth MiB "
                  f"(nats-server, agent, host): {[round(g, 1) for g in grown.values()]}; after the stop: "
                  f"{[round((after[p] - before[p]) / 2**20, 1) for p in pids]}")
            assert load["waiting"] * SIZE <= 4 * 2**20 + SIZE, "the default backlog bound: 4 MiB"
            assert load["dropped"] >= SHOTS - 4 * 2**20 // SIZE - 1
            # beach's own processes: the backlog bound (4 MiB) and a margin. nats-server holds what a
            # slow reader has not read yet up to its max_pending (64 MB by default; past it the reader is
            # cut as a slow consumer): a client on uvloop publishes fast enough to fill part of it
            # (35-64 MiB in 3 runs of 6, against ~4 on asyncio's loop), and Go keeps the heap it grew.
            # Not a reader slower on uvloop: raw nats-py, 20,000 messages of 8 KiB published as fast as
            # possible, made the server hold 16-28 MiB for a subscriber on uvloop and ~48 MiB for one on
            # asyncio's loop (the same asyncio publisher, two rounds, a loaded machine): what the server
            # holds is how far the publisher runs ahead of what the reader's callbacks get through.
            server, *own = grown.values()
            assert sum(own) < 16, grown
            assert server < 64 + 16, grown
        assert cluster.stop_node("local-1") == 0
