"""Liveness apart from membership (docs/design.md, "Directory and liveness"; docs/operations.md):
a node that dies, hangs, or holds the supervisor lease leaves the registry within
`FAILURE_DETECTION` seconds; only the lease holder and its standby hear the nodes' beats; the
registry is not written while nothing changes; a closed client's watches leave no consumer behind.
Real node agents on a nats-server of this module's own, real SIGKILL and SIGSTOP."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.state import desired
from beach.state.directory import FAILURE_DETECTION

from .conftest import NodeProcess, free_port, hand_lease_to, lease_holder, wait_for, write_config

BASE = ["live-a", "live-b"]  # they stay up for the whole module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A nats-server with JetStream and its monitoring port (subscriptions are counted there)."""
    store = tmp_path_factory.mktemp("liveness")
    monitor = free_port()
    server = EmbeddedServer(free_port(), str(store / "js"), name="beach-liveness", log_file=str(store / "nats.log"),
                            args=["-m", str(monitor)]).start()
    server.monitor = monitor  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def config(server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("liveness-config") / "beach.yaml", server.url, n_processes=1)


@pytest.fixture(scope="module")
def base(config: Path) -> Iterator[dict[str, NodeProcess]]:
    started = {node_id: NodeProcess(config, node_id) for node_id in BASE}
    try:
        with Beach(config) as client:
            for node in started.values():
                node.wait_registered(client, timeout=60)
        yield started
    finally:
        codes = {node_id: node.terminate() for node_id, node in started.items()}
        assert codes == dict.fromkeys(BASE, 0)


@pytest.fixture
def client(base: dict[str, NodeProcess], config: Path) -> Iterator[Beach]:
    client = Beach(config)
    view = client._core.session.view
    wait_for(lambda: set(view.nodes) == set(BASE), FAILURE_DETECTION + 6, what="the registry to hold the base nodes")
    yield client
    client.close()


def listeners(server: EmbeddedServer) -> list[str]:
    """The names of the connections subscribed to the nodes' beats, as the server says."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.monitor}/connz?subs=1&limit=1024",  # type: ignore[attr-defined]
                                timeout=5) as answer:
        connections = json.load(answer)["connections"]
    return sorted(c.get("name", "?") for c in connections if "beach.hb.live.*" in (c.get("subscriptions_list") or []))


def removal_time(view, node_id: str, since: float, bound: float) -> float:
    wait_for(lambda: node_id not in view.nodes, bound, interval=0.02, what=f"{node_id} to leave the registry")
    return time.monotonic() - since


def test_two_agents_hear_the_beats_and_the_registry_rests(client, server):
    """Only the lease holder and its standby subscribe to the beats; no process else gets one, and
    the registry (a KV stream) takes no write while nothing changes."""
    wait_for(lambda: len(listeners(server)) == 2, 10, what="the holder and the standby to listen")
    assert listeners(server) == sorted(f"beach-node {n}" for n in BASE)

    async def last_write() -> int:
        info = await client._core.session.nc.jetstream().stream_info("KV_beach_nodes")
        return info.state.last_seq

    before = client._runner.run(last_write())
    time.sleep(3.5)
    assert client._runner.run(last_write()) == before, "a node wrote the registry while nothing changed"
    # the tools still see every node's load figures, fresh
    first = client.getClusterHealth()
    time.sleep(2.2)
    again = client.getClusterHealth()
    assert set(again) == set(BASE)
    assert all(again[n]["updated"] > first[n]["updated"] and again[n]["cpu"] for n in BASE), (first, again)


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_a_node_that_dies_or_hangs_leaves_within_the_bound(client, config, fault):
    victim = NodeProcess(config, f"live-{fault.lower()}")
    try:
        victim.wait_registered(client, timeout=60)
        view = client._core.session.view
        time.sleep(1.5)  # beating for a while
        struck = time.monotonic()
        os.kill(victim.process.pid, getattr(signal, fault))
        try:
            took = removal_time(view, victim.node_id, struck, FAILURE_DETECTION + 3)
        finally:
            if fault == "SIGSTOP":
                os.kill(victim.process.pid, signal.SIGCONT)
        print(f"\nnode {fault}: out of the registry after {took:.2f}s (bound {FAILURE_DETECTION}s)")
        assert took <= FAILURE_DETECTION
        if fault == "SIGSTOP":  # it lives: it writes its entry again
            wait_for(lambda: victim.node_id in view.nodes, 10, what="the resumed node to register again")
    finally:
        victim.terminate()


@pytest.mark.parametrize("fault", ["holder SIGKILL", "holder SIGSTOP while a node dies", "holder and standby SIGKILL"])
def test_the_lease_holder_lost_leaves_within_the_bound_and_its_standby_takes_over(client, config, fault):
    """The holder is heard by its standby (the member after it by node id: here ``live-other``),
    which removes it within the bound and takes the lease. A node dying at the same time (``live-c``,
    not the standby) is removed within the bound too. The holder and its standby lost together:
    nobody hears them until another agent takes the lease over (`LEASE_SECONDS` after its last
    renewal), then the bound again (docs/operations.md)."""
    holder = NodeProcess(config, "live-holder")
    standby = NodeProcess(config, "live-other")
    third = NodeProcess(config, "live-c")
    try:
        for node in (holder, standby, third):
            node.wait_registered(client, timeout=60)
        hand_lease_to(client, "live-holder")
        view = client._core.session.view
        time.sleep(1.5)
        struck = time.monotonic()
        if fault == "holder SIGKILL":
            os.killpg(holder.process.pid, signal.SIGKILL)
            lost, alive = ["live-holder"], {*BASE, "live-other", "live-c"}
        elif fault == "holder SIGSTOP while a node dies":
            os.kill(holder.process.pid, signal.SIGSTOP)
            os.killpg(third.process.pid, signal.SIGKILL)
            lost, alive = ["live-holder", "live-c"], {*BASE, "live-other"}
        else:
            os.killpg(holder.process.pid, signal.SIGKILL)
            os.killpg(standby.process.pid, signal.SIGKILL)
            lost, alive = ["live-holder", "live-other"], {*BASE, "live-c"}
        bound = FAILURE_DETECTION if fault != "holder and standby SIGKILL" else \
            desired.LEASE_SECONDS + FAILURE_DETECTION + 1
        try:
            took = {node: removal_time(view, node, struck, bound + 3) for node in lost}
            wait_for(lambda: lease_holder(client) in alive, 5, what="a live node to take the lease")
            handed = time.monotonic() - struck
        finally:
            if fault == "holder SIGSTOP while a node dies":
                os.kill(holder.process.pid, signal.SIGCONT)
        print(f"\n{fault}: out of the registry after {', '.join(f'{n} {t:.2f}s' for n, t in took.items())}; "
              f"the lease taken by {lease_holder(client)} after {handed:.2f}s (bound {bound:g}s)")
        assert max(took.values()) <= bound, took
    finally:
        for node in (holder, standby, third):
            node.terminate()


def test_a_closed_clients_watches_leave_no_consumer(client, config):
    """docs/operations.md: a watch's consumer goes 5 s (`CONSUMER_INACTIVE`) after its client."""
    async def consumers() -> int:
        js = client._core.session.nc.jetstream()
        return sum([(await js.stream_info(s)).state.consumer_count for s in ("KV_beach_nodes", "KV_beach_actors")])

    time.sleep(6)  # the consumers of processes an earlier test stopped go first (5 s after them)
    before = client._runner.run(consumers())
    for _ in range(3):
        Beach(config).close()
    assert client._runner.run(consumers()) >= before + 1, "the clients' watches had consumers (the case at hand)"
    closed = time.monotonic()
    wait_for(lambda: client._runner.run(consumers()) <= before, 10, interval=0.5,  # documented: 5 s, and a margin
             what="the closed clients' consumers to go")
    print(f"\nconsumers of 3 closed clients gone after {time.monotonic() - closed:.1f}s")
