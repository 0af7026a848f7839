"""Health probes, as a readiness check asks them (``beach health``, compose's health checks): each
checks the thing it names.

* The bus is ready when NATS answers and JetStream has a leader (its API answers; a new cluster
  has none until its servers elect one).
* A node is up when its own agent is in the registry, says its load figures now (they come every
  second: one arrives within `LATE` seconds; a frozen agent's do not, even while it is still in the
  registry), is not stopping, and each of its actor hosts answers the agent.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import psutil

from beach.client.core import AsyncBeach
from beach.errors import Unhealthy, UsageError
from beach.state.directory import FAILURE_DETECTION, LATE
from beach.wire import subjects

HOSTS_SECONDS = 7.0  # the node's answer to info: it asks each of its hosts, each given 5 s
LOCAL = "local"  # the node argument meaning "the node agent of this machine"


async def bus_ready(client: AsyncBeach) -> None:
    """Raise `Unhealthy` unless JetStream answers through ``client`` (it has a leader)."""
    try:
        await client.session.nc.jetstream(timeout=5.0).account_info()
    except Exception as err:
        raise Unhealthy(f"JetStream does not answer (no leader yet?): {err or type(err).__name__}") from None


def local_node(client: AsyncBeach) -> str:
    """The id of the node agent that runs on this machine (same hostname, its process alive here).
    Raise `Unhealthy` if there is none, `UsageError` if there are several (name one)."""
    hostname = socket.gethostname()
    mine = sorted(node_id for node_id, entry in client.session.view.nodes.items()
                  if entry.hostname == hostname and entry.pid is not None and psutil.pid_exists(entry.pid))
    if not mine:
        raise Unhealthy(f"no node agent of this machine ({hostname}) is in the registry")
    if len(mine) > 1:
        raise UsageError(f"several node agents run on this machine ({', '.join(mine)}): name one")
    return mine[0]


async def node_up(client: AsyncBeach, node_id: str) -> dict[str, Any]:
    """Check that node ``node_id`` (or `LOCAL`) is up; return ``{'node', 'hosts'}``, or raise
    `Unhealthy` saying what is wrong."""
    view = client.session.view
    if node_id == LOCAL:
        node_id = local_node(client)
    if node_id not in view.nodes:
        raise Unhealthy(f"node {node_id} is not in the registry (not running, or silent for over "
                        f"{FAILURE_DETECTION:g}s)")
    heard = asyncio.get_running_loop().create_future()

    async def figures(msg: Any) -> None:
        if not heard.done():
            heard.set_result(None)

    sub = await client.session.nc.subscribe(subjects.node_stats_subject(node_id), cb=figures)
    try:
        async with asyncio.timeout(LATE):
            await heard
    except TimeoutError:
        raise Unhealthy(f"node {node_id} has sent no heartbeat for {LATE:g}s (its agent hangs?)") from None
    finally:
        await sub.unsubscribe()
    entry = view.nodes.get(node_id)
    if entry is None:
        raise Unhealthy(f"node {node_id} left the registry")
    if entry.stopping:
        raise Unhealthy(f"node {node_id} is stopping")
    response = await client._node_call(node_id, "info", {}, HOSTS_SECONDS)
    if not response.isSuccess:
        raise Unhealthy(f"node {node_id} does not answer: {response.error}")
    hosts: dict[str, str | None] = response.data.get("hosts") or {}
    if not hosts:
        raise Unhealthy(f"node {node_id} has no running actor host")
    silent = {host: why for host, why in hosts.items() if why}
    if silent:
        raise Unhealthy(f"node {node_id}: {len(silent)} of its {len(hosts)} actor hosts do not answer: "
                        + "; ".join(f"{host}: {why}" for host, why in sorted(silent.items())))
    return {"node": node_id, "hosts": sorted(hosts)}


async def probe(client: AsyncBeach, node: str | None = None) -> dict[str, Any]:
    """The bus is ready, and ``node`` (if given; `LOCAL`: this machine's) is up: what was checked,
    or `Unhealthy` saying what is not."""
    await bus_ready(client)
    result: dict[str, Any] = {"bus": "ready", "nodes": len(client.session.view.nodes)}
    if node is not None:
        result.update(await node_up(client, node))
    return result
