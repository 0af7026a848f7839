"""`resource` placement spreads a burst (issue 30): 80 spawns made 8 at a time onto 10 idle nodes
land on at least 8 of them, none with more than twice its share. (The issue's figure is 20 nodes; 10
node agents with one actor host each is what this 2-core test machine runs alongside the rest of the
suite: the criterion is the same share.) Real node agents on a nats-server of this module's own."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer

from .conftest import NodeProcess, free_port, write_config

N_NODES = 10
SPAWNS = 80
IN_FLIGHT = 8


@pytest.fixture(scope="module")
def spread_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    store = tmp_path_factory.mktemp("spread")
    server = EmbeddedServer(free_port(), str(store / "js"), name="beach-spread", log_file=str(store / "nats.log"))
    server.start()
    config = write_config(store / "beach.yaml", server.url, n_processes=1)
    nodes = [NodeProcess(config, f"spread-{i:02d}") for i in range(N_NODES)]
    try:
        with Beach(config) as client:
            for node in nodes:
                node.wait_registered(client, timeout=120)
        yield config
    finally:
        codes = [node.terminate() for node in nodes]
        server.stop()
        assert codes == [0] * N_NODES


def test_resource_spreads_a_burst_over_idle_nodes(spread_cluster):
    with Beach(spread_cluster) as client:
        core = client._core

        async def burst() -> list:
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one():
                async with gate:
                    return await core.addActor("Pong", "spread", strategy="resource")

            return await asyncio.gather(*(one() for _ in range(SPAWNS)))

        responses = client._runner.run(burst())
        assert all(r.isSuccess for r in responses), [r.error for r in responses if not r.isSuccess][:3]
        counts = Counter(r.data["node"] for r in responses)
        share = SPAWNS / N_NODES
        print(f"\n{SPAWNS} resource spawns, {IN_FLIGHT} at a time, over {N_NODES} idle nodes: "
              f"{dict(sorted(counts.items()))}")
        assert len(counts) >= 0.8 * N_NODES, counts
        assert max(counts.values()) <= 2 * share, counts
        assert client.flush()
