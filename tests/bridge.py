"""Network namespaces on a bridge, for tests that need machines of their own (tests/test_code.py,
tests/test_node_servers.py): each namespace is a "machine" with one address on a bridge, which the
root namespace reaches at an address of its own. No traffic leaves this machine.

Names and subnets are made unique per test process (other test runs may use namespaces at the same
time). Needs root and iproute2 (``ip``): `bridge` skips the test with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .conftest import HERE, NodeProcess


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def bridge(bridge_name: str, bridge_ip: str, namespaces: list[str], addresses: list[str],
           link_prefix: str) -> Iterator[None]:
    """One namespace per name in ``namespaces``, at the matching address of ``addresses`` (/24),
    all on a bridge ``bridge_name``, which this (root) namespace reaches at ``bridge_ip``; all
    removed at the end. The bridge lives in a namespace of its own (``<bridge_name>``): this
    machine's firewall (Docker's FORWARD policy drops bridged traffic) never sees the namespaces
    talk to each other. Links are named ``<link_prefix>r``/``s`` (this namespace's) and
    ``<link_prefix>h<i>``/``n<i>`` (each namespace's)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (ip)")
    made: list[tuple[str, ...]] = []
    switch = bridge_name

    def inside(ns: str, *args: str) -> None:
        ip("netns", "exec", ns, "ip", *args)

    try:
        try:
            ip("netns", "add", switch)
        except subprocess.CalledProcessError as err:
            pytest.skip(f"cannot create a network namespace here: {err.stderr.decode().strip()}")
        made.append(("netns", "del", switch))
        inside(switch, "link", "add", bridge_name, "type", "bridge")
        inside(switch, "link", "set", bridge_name, "up")
        links = [("", f"{link_prefix}r", f"{link_prefix}s", bridge_ip)]
        links += [(ns, f"{link_prefix}h{i}", f"{link_prefix}n{i}", addresses[i]) for i, ns in enumerate(namespaces)]
        for ns, switch_if, end_if, address in links:
            if ns:
                ip("netns", "add", ns)
                made.append(("netns", "del", ns))
            ip("link", "add", switch_if, "type", "veth", "peer", "name", end_if)
            if not ns:
                made.append(("link", "del", end_if))
            ip("link", "set", switch_if, "netns", switch)
            inside(switch, "link", "set", switch_if, "master", bridge_name)
            inside(switch, "link", "set", switch_if, "up")
            if ns:
                ip("link", "set", end_if, "netns", ns)
                inside(ns, "addr", "add", f"{address}/24", "dev", end_if)
                inside(ns, "link", "set", end_if, "up")
                inside(ns, "link", "set", "lo", "up")
            else:
                ip("addr", "add", f"{address}/24", "dev", end_if)
                ip("link", "set", end_if, "up")
        yield
    finally:
        for args in reversed(made):
            subprocess.run(["ip", *args], capture_output=True)


def pids(namespace: str) -> list[int]:
    """Every process in ``namespace`` (a machine's processes: its agent, hosts and NATS server)."""
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=10).stdout
    return [int(p) for p in out.split()]


class NamespacedNode(NodeProcess):
    """A node agent running inside a network namespace (``python -m nodeagent``, or any argv; no
    namespace: on this machine's own network)."""

    def __init__(self, namespace: str | None, node_id: str, argv: list[str]) -> None:
        self.node_id = node_id
        self.namespace = namespace
        self.started = time.monotonic()
        env = dict(os.environ, PYTHONPATH=str(HERE / "modules"))
        inside = ["ip", "netns", "exec", namespace] if namespace else []
        self.process = subprocess.Popen([*inside, sys.executable, *argv], start_new_session=True, env=env)
