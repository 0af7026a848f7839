"""The event loops beach runs on: uvloop where it owns the loop and uvloop is installed, asyncio's
own with ``BEACH_EVENT_LOOP=asyncio`` (what a machine without uvloop gets); a user's loop is never
replaced. Nodes, hosts and clients of either kind work together."""

from __future__ import annotations

import asyncio

import pytest

from beach import loop
from beach.beach_api import Beach
from beach.client.core import AsyncBeach

from .conftest import NodeProcess, write_config

uvloop = pytest.importorskip("uvloop")  # (a default dependency where it has wheels)


def test_beach_runs_its_own_loops_on_uvloop_and_on_asyncio_when_asked(monkeypatch):
    made = loop.new()
    assert loop.kind() == "uvloop" and isinstance(made, uvloop.Loop)
    made.close()
    monkeypatch.setenv(loop.ENV, "asyncio")
    made = loop.new()
    try:
        assert loop.kind() == "asyncio" and isinstance(made, asyncio.BaseEventLoop)
        assert not isinstance(made, uvloop.Loop)
    finally:
        made.close()


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_nodes_hosts_and_the_blocking_face_on_either_loop(nats_server, tmp_path, monkeypatch, kind):
    # a node on each loop (its hosts inherit the environment) and a blocking client on ``kind``:
    # requests go to both, and from a def handler on one to an actor on the other
    config = write_config(tmp_path / "beach.yaml", nats_server.url, n_processes=1)
    nodes = {"uvloop": NodeProcess(config, "loop-uv", module="nodeagent")}
    monkeypatch.setenv(loop.ENV, "asyncio")
    nodes["asyncio"] = NodeProcess(config, "loop-asyncio", module="nodeagent")
    if kind == "uvloop":
        monkeypatch.delenv(loop.ENV)
    try:
        with Beach(config) as client:
            assert type(client._runner.loop).__module__.split(".")[0] == kind
            for name, node in nodes.items():
                node.wait_registered(client)
                spawned = client.addActor("LoopKind", f"loops/{name}", strategy="host_affinity",
                                          strategy_hint=node.node_id)
                assert spawned.isSuccess, spawned
            for name in nodes:
                handle = client.getActorHandle(f"loops/{name}")
                assert handle.request("loop").data == {"loop": name}
                futures = [handle.request("loop", isWithFuture=True) for _ in range(20)]
                assert all(f.waitAll(10)[0].data == {"loop": name} for f in futures)
                other = "asyncio" if name == "uvloop" else "uvloop"
                relayed = handle.request("relay", {"category": f"loops/{other}"}, timeout=15)
                assert relayed.data == {"loop": other}, relayed
            assert client.flush()
    finally:
        assert all(node.terminate() == 0 for node in nodes.values())


def test_a_users_own_loop_is_never_replaced(config_path, node):
    async def main() -> str:
        client = await AsyncBeach.open(config_path)
        try:
            assert client.session.runner.loop is asyncio.get_running_loop()
            return type(asyncio.get_running_loop()).__module__.split(".")[0]
        finally:
            await client.close()

    assert asyncio.run(main()) == "asyncio"  # (asyncio.run: the user's stock loop, not uvloop)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == "uvloop"
