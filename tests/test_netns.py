"""host_affinity by network address: a second node in a network namespace this test creates.

Needs root and iproute2 (``ip netns``); skipped with the reason otherwise. The addresses are on a
veth pair between the test's own namespace and the root namespace: no traffic leaves the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer

from .conftest import HERE, NodeProcess, free_port, write_config

NS = f"beach-t{os.getpid()}"
HOST_IF, NS_IF = f"vbh{os.getpid() % 100000}", f"vbn{os.getpid() % 100000}"
SUBNET = 200 + os.getpid() % 50
HOST_IP, NS_IP = f"10.213.{SUBNET}.1", f"10.213.{SUBNET}.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (ip)")
    try:
        ip("netns", "add", NS)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot create a network namespace here: {err.stderr.decode().strip()}")
    try:
        ip("link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        ip("link", "set", NS_IF, "netns", NS)
        ip("addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        ip("link", "set", HOST_IF, "up")
        ip("netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF)
        ip("netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
        ip("netns", "exec", NS, "ip", "link", "set", "lo", "up")
        yield NS
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


class NamespacedNode(NodeProcess):
    """A node agent running inside a network namespace."""

    def __init__(self, config: Path, node_id: str, namespace: str) -> None:
        self.node_id = node_id
        env = dict(os.environ, PYTHONPATH=str(HERE / "modules"))
        self.process = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-m", "nodeagent",
                                         str(config), "--node-id", node_id], start_new_session=True, env=env)


@contextlib.contextmanager
def two_nodes(namespace: str, tmp_path: Path) -> Iterator[Beach]:
    """A nats-server on the host's side of the veth, a node there and one in the namespace, and a
    client; at the end both nodes must stop cleanly (exit 0)."""
    server = EmbeddedServer(free_port(), str(tmp_path / "js"), host=HOST_IP, log_file=str(tmp_path / "nats.log"))
    server.start()
    config = write_config(tmp_path / "beach.yaml", server.url, n_processes=1)
    root_node = NodeProcess(config, "root-node")
    ns_node = NamespacedNode(config, "ns-node", namespace)
    try:
        with Beach(config) as client:
            root_node.wait_registered(client, 60)
            ns_node.wait_registered(client, 60)
            yield client
            assert client.flush()
        assert ns_node.terminate() == 0
        assert root_node.terminate() == 0
    finally:
        ns_node.terminate()
        root_node.terminate()
        server.stop()


def test_host_affinity_by_address(namespace, tmp_path):
    with two_nodes(namespace, tmp_path) as client:
        health = client.getClusterHealth()
        assert NS_IP in health["ns-node"]["addresses"]
        assert NS_IP not in health["root-node"]["addresses"] and HOST_IP in health["root-node"]["addresses"]
        for hint, expected in ((NS_IP, "ns-node"), (HOST_IP, "root-node")):
            for _ in range(3):
                resp = client.addActor("Pong", "where", strategy="host_affinity", strategy_hint=hint)
                assert resp.isSuccess and resp.data["node"] == expected
        # requests cross the veth both ways
        uids = {client.getActorHandle("where").request("ping").data["uid"] for _ in range(40)}
        assert len(uids) >= 4


def test_a_node_cut_off_by_the_network_and_healed(namespace, tmp_path):
    """docs/operations.md: a node cut off from NATS (its link down) is a node that hangs, for the rest
    of the cluster: it leaves the registry after the TTL, its supervised actors start elsewhere and
    requests (nRetries >= 2) go to the actors that answer; healed, it comes back and the older
    incarnation of each supervised actor is stopped."""
    import threading
    import time

    from beach.state.directory import FAILURE_DETECTION

    from .conftest import LEDGER, holds_for, wait_for

    with two_nodes(namespace, tmp_path) as client:
        view = client._core.session.view
        anchor = client.addActor("Pong", "part/anchor", strategy="host_affinity", strategy_hint="root-node")
        assert anchor.isSuccess
        first = client.addActor(LEDGER, "part/sup", strategy="repulsion", strategy_hint="part/anchor",
                                restart="on-failure")
        assert first.isSuccess and first.data["node"] == "ns-node", first
        assert client.addActor(LEDGER, "part/sup", strategy="host_affinity", strategy_hint="root-node").isSuccess
        [sid] = [s for s, r in client.getSupervised().items() if r["uid"] == first.data["uid"]]
        counts = {"sent": 0, "succeeded": 0, "failed": 0}
        errors: list[str] = []
        stop = threading.Event()

        def load() -> None:
            handle = client.getActorHandle("part/sup")
            while not stop.is_set():
                counts["sent"] += 1
                resp = handle.request("work", {"tag": counts["sent"]}, timeout=1.0, nRetries=3)
                counts["succeeded" if resp.isSuccess else "failed"] += 1
                if not resp.isSuccess:
                    errors.append(resp.error)
                time.sleep(0.01)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(0.5)
        ip("link", "set", HOST_IF, "down")  # the partition
        cut = time.monotonic()
        try:
            wait_for(lambda: "ns-node" not in view.nodes, FAILURE_DETECTION + 2, what="the cut-off node to leave")
            gone = time.monotonic() - cut
            wait_for(lambda: any(a.sid == sid and a.node == "root-node" for a in view.live()),
                     FAILURE_DETECTION + 10, what="the supervised actor to start on the root node")
            moved = time.monotonic() - cut
        finally:
            ip("link", "set", HOST_IF, "up")  # healed
        healed = time.monotonic()
        wait_for(lambda: "ns-node" in view.nodes, 30, what="the node to come back")
        wait_for(lambda: [a.uid for a in view.live() if a.sid == sid] != [first.data["uid"]]
                 and first.data["uid"] not in view.actors, 20, what="the old incarnation to be stopped")
        settled = time.monotonic() - healed
        holds_for(lambda: len([a for a in view.live() if a.sid == sid]) == 1, 3.0,
                  "one incarnation of the supervised actor")
        stop.set()
        loader.join(30)
        print(f"\npartition: node out after {gone:.2f}s, supervised actor re-placed after {moved:.2f}s; "
              f"healed: back and deduplicated within {settled:.2f}s; requests {counts}")
        assert not loader.is_alive() and counts["sent"] >= 20
        assert counts["failed"] == 0, errors[:5]
