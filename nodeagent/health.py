"""What a node reports about itself: identity, addresses, cores, CPU and memory."""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil

from beach.errors import ConfigError
from beach.utils import _getIpv4ForIface


def default_node_id() -> str:
    """A node id derived from the hostname, unique per process: ``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def announced(interface: str | None) -> list[str]:
    """The addresses a node announces: its ``interface``'s IPv4 address (the original's ``-i``), or
    with none every IPv4 address of the machine (`addresses`). Raises `ConfigError` for an
    interface that has no IPv4 address, naming those that have one."""
    if not interface:
        return addresses()
    address = _getIpv4ForIface(interface)
    if address is None:
        known = sorted(name for name, addrs in psutil.net_if_addrs().items()
                       if any(a.family == socket.AF_INET for a in addrs))
        raise ConfigError(f"interface {interface!r} has no IPv4 address (interfaces with one: {', '.join(known)})")
    return [address]


def addresses() -> list[str]:
    """The machine's IPv4 addresses, loopback last."""
    found: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and addr.address not in found:
                found.append(addr.address)
    return sorted(found, key=lambda a: a.startswith("127."))


def sample() -> dict[str, Any]:
    """CPU per core (percent since the last sample) and memory figures, without blocking."""
    mem = psutil.virtual_memory()
    return {
        "cores": psutil.cpu_count() or 1,
        "cpu": psutil.cpu_percent(percpu=True, interval=None),
        "mem": mem.percent,
        "mem_total": mem.total,
        "mem_available": mem.available,
    }
