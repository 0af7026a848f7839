"""Spawn strategies: which node a new actor goes to.

Every strategy reads the client's live directory view, which already holds the client's own
earlier placements (a spawn's reply is applied to the view at once), so back-to-back ``addActor``
calls see each other: ten ``repulsion`` spawns over three nodes end up 4/3/3.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from statistics import fmean
from typing import TYPE_CHECKING

from beach.errors import BeachError, UsageError
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.state.records import ActorEntry, NodeEntry

STRATEGIES = ("random", "resource", "affinity", "host_affinity", "repulsion", "roundrobin")


class PlacementError(BeachError):
    """No node fits the strategy (reported to the caller as a failed spawn, not raised)."""


def check_strategy(strategy: str | None) -> str:
    """Return the strategy name (None → ``'random'``); raise `UsageError` for an unknown one."""
    strategy = strategy or "random"
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown spawn strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    return strategy


def node_load(node: NodeEntry) -> float:
    """What the resource strategy minimises: the mean of CPU (over the cores) and memory use, in percent."""
    cpu = node.get("cpu") or [0.0]
    return (fmean(cpu) + float(node.get("mem", 0.0))) / 2


def _count(actors: list[ActorEntry], category: str) -> dict[str, int]:
    prefix = subjects.normalize(category)
    counts: dict[str, int] = {}
    for actor in actors:
        if any(subjects.matches(c, prefix) for c in actor["categories"]):
            counts[actor["node"]] = counts.get(actor["node"], 0) + 1
    return counts


def hosts_matching(hint: str, nodes: dict[str, NodeEntry]) -> list[str]:
    """The ids of the nodes a ``host_affinity`` hint names: by node id, hostname or address, sorted."""
    return [n for n in sorted(nodes) if hint == n or hint == nodes[n].get("hostname")
            or hint in (nodes[n].get("addresses") or [])]


class Placer:
    """Chooses nodes for spawns; keeps the round-robin position between calls."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, strategy: str, hint: str | None, nodes: dict[str, NodeEntry],
               actors: Callable[[], list[ActorEntry]], categories: list[str]) -> str:
        """The id of the node to spawn on; raise `PlacementError` if no node fits. ``actors``
        gives the live actors of the realm (only affinity and repulsion need them)."""
        if not nodes:
            raise PlacementError("no beach node is running (the node registry is empty)")
        open_nodes = {n: entry for n, entry in nodes.items() if not entry.get("cordoned")}
        if not open_nodes:
            raise PlacementError(f"every node is cordoned ({', '.join(sorted(nodes))}): 'beach uncordon' one")
        nodes = open_nodes  # a cordoned node (drained for maintenance) takes no new actor
        ids = sorted(nodes)
        if strategy == "random":
            return random.choice(ids)
        if strategy == "resource":
            return min(ids, key=lambda n: (node_load(nodes[n]), random.random()))
        if strategy == "roundrobin":
            self._next = (self._next + 1) % len(ids)
            return ids[self._next]
        if strategy == "host_affinity":
            if not hint:
                raise PlacementError("strategy 'host_affinity' needs strategy_hint: a node id, hostname or address")
            fit = hosts_matching(hint, nodes)
            if not fit:
                raise PlacementError(f"no node matches host_affinity hint {hint!r} "
                                     f"(nodes: {', '.join(ids)})")
            return random.choice(fit)
        if strategy == "affinity":
            counts = _count(actors(), hint) if hint else {}
            fit = [n for n in ids if counts.get(n)]
            return random.choice(fit or ids)
        # repulsion: the node with the fewest actors of the hinted category (default: the first
        # category of the new actor)
        counts = _count(actors(), hint or categories[0])
        fewest = min(counts.get(n, 0) for n in ids)
        return random.choice([n for n in ids if counts.get(n, 0) == fewest])
