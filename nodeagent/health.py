"""What a node reports about itself: identity, addresses, cores, CPU and memory."""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil


def default_node_id() -> str:
    """A node id derived from the hostname, unique per process: ``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


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
