"""Spawn strategies: which node a new actor goes to.

Every strategy reads the client's live directory view, which already holds the client's own
earlier placements (a spawn's reply is applied to the view at once), so back-to-back ``addActor``
calls see each other: ten ``repulsion`` spawns over three nodes end up 4/3/3.

Only nodes that are up take a new actor: not cordoned, not stopping, heard from on time (the view
says which are not, `DirectoryView.unavailable`), and not one that failed a spawn on its side
(gone, stopping, no actor host, no answer) in the last `FAILED_SPAWN_SECONDS` (the `Placer`
remembers).

``resource`` is the power of two choices: the client asks `CHOICES` nodes drawn at random from
those that are up for their load now (the ``load`` operation: `beach.state.records.NodeLoad`) and
takes the lighter (`least_loaded`). Figures a second old would send every spawn of that second to
the one node that looked idlest; counting the actors a node runs and the spawns under way there,
where CPU figures of idle nodes tie, is what spreads a burst.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from statistics import fmean
from typing import TYPE_CHECKING

from beach.errors import BeachError
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.state.records import ActorEntry, NodeEntry, NodeLoad

CHOICES = 2  # nodes asked for their load by a `resource` placement
FAILED_SPAWN_SECONDS = 10.0  # a node that failed a spawn on its side takes no new actor for this long


class PlacementError(BeachError):
    """No node fits the strategy (reported to the caller as a failed spawn, not raised).
    ``unavailable``: nodes are missing or not up, so it may fit later (not the spawn's own fault)."""

    def __init__(self, message: str, unavailable: bool = True) -> None:
        super().__init__(message)
        self.unavailable = unavailable


def node_load(node: NodeEntry) -> float:
    """What the resource strategy minimises: the mean of CPU (over the cores) and memory use, in percent."""
    cpu = node.cpu or [0.0]
    return (fmean(cpu) + float(node.mem)) / 2


def load_key(load: NodeLoad) -> tuple[float, float]:
    """What `resource` placement minimises: actors and spawns under way per core, then CPU and memory."""
    cpu = load.cpu or [0.0]
    return (load.n_actors + load.spawning) / max(1, load.cores), (fmean(cpu) + load.mem) / 2


def least_loaded(loads: dict[str, NodeLoad]) -> str:
    """The node whose load figures are the lightest (`load_key`; a tie: any of them)."""
    return min(sorted(loads), key=lambda n: (load_key(loads[n]), random.random()))


def _count(actors: list[ActorEntry], category: str) -> dict[str, int]:
    prefix = subjects.normalize(category)
    counts: dict[str, int] = {}
    for actor in actors:
        if any(subjects.matches(c, prefix) for c in actor.categories):
            counts[actor.node] = counts.get(actor.node, 0) + 1
    return counts


def counted_category(strategy: str, hint: str | None, categories: list[str]) -> str | None:
    """The category whose actors per node ``strategy`` places by: ``affinity``, the hinted one (none
    without a hint); ``repulsion``, the hinted one, else the new actor's first; other strategies, none."""
    if strategy == "affinity":
        return hint or None
    if strategy == "repulsion":
        return hint or categories[0]
    return None


def hosts_matching(hint: str, nodes: dict[str, NodeEntry]) -> list[str]:
    """The ids of the nodes a ``host_affinity`` hint names: by node id, hostname or address, sorted."""
    return [n for n in sorted(nodes) if hint == n or hint == nodes[n].hostname
            or hint in (nodes[n].addresses or [])]


def _why(away: dict[str, str]) -> str:
    return "; ".join(f"{node} {why}" for node, why in sorted(away.items()))


class Placer:
    """Chooses nodes for spawns; keeps the round-robin position and the nodes that failed a spawn
    lately between calls."""

    def __init__(self) -> None:
        self._next = 0
        self._failed: dict[str, tuple[float, str]] = {}  # node → (monotonic time, error) of its last failure

    def spawn_failed(self, node: str, error: str) -> None:
        """Note that ``node`` failed a spawn on its side: it is skipped for `FAILED_SPAWN_SECONDS`."""
        self._failed[node] = (time.monotonic(), error)

    def _recently_failed(self) -> dict[str, str]:
        now = time.monotonic()
        self._failed = {n: failure for n, failure in self._failed.items() if now - failure[0] < FAILED_SPAWN_SECONDS}
        return {n: f"failed a spawn lately ({error})" for n, (_, error) in self._failed.items()}

    def candidates(self, nodes: dict[str, NodeEntry], unavailable: dict[str, str] | None = None,
                   k: int = CHOICES) -> list[str]:
        """Up to ``k`` nodes drawn at random among those that can take a new actor now (for
        `resource`: the caller asks them for their load); raise `PlacementError` if none can."""
        ids = [self.choose("random", None, nodes, list, [], unavailable)]
        up = [n for n in nodes if n != ids[0] and n not in (unavailable or {}) and n not in self._recently_failed()
              and not nodes[n].cordoned]
        return ids + random.sample(up, min(k - 1, len(up)))

    def choose(self, strategy: str, hint: str | None, nodes: dict[str, NodeEntry],
               actors: Callable[[], list[ActorEntry]], categories: list[str],
               unavailable: dict[str, str] | None = None) -> str:
        """The id of the node to spawn on; raise `PlacementError` if no node fits. ``actors``
        gives the live actors of the realm (only affinity and repulsion need them);
        ``unavailable``: registered nodes that are not up, with why (they are skipped)."""
        if not nodes:
            raise PlacementError("no beach node is running (the node registry is empty)")
        if all(entry.cordoned for entry in nodes.values()):
            raise PlacementError(f"every node is cordoned ({', '.join(sorted(nodes))}): 'beach uncordon' one")
        # a cordoned node (drained for maintenance) takes no new actor, nor one that is not up
        away = {n: "is cordoned" for n, entry in nodes.items() if entry.cordoned}
        away.update({n: why for n, why in {**(unavailable or {}), **self._recently_failed()}.items()
                     if n in nodes and n not in away})
        if strategy == "host_affinity":
            if not hint:
                raise PlacementError("strategy 'host_affinity' needs strategy_hint: a node id, hostname or address",
                                     unavailable=False)
            fit = hosts_matching(hint, nodes)
            if not fit:
                raise PlacementError(f"no node matches host_affinity hint {hint!r} (nodes: {', '.join(sorted(nodes))})")
            up = [n for n in fit if n not in away]
            if not up:
                raise PlacementError(f"no node that host_affinity hint {hint!r} names can take it now: "
                                     f"{_why({n: away[n] for n in fit})}")
            return random.choice(up)
        nodes = {n: entry for n, entry in nodes.items() if n not in away}
        if not nodes:
            raise PlacementError(f"no node can take a new actor now: {_why(away)}")
        ids = sorted(nodes)
        if strategy == "random":
            return random.choice(ids)
        if strategy == "resource":  # (without the nodes' answers: the registry's figures)
            return min(ids, key=lambda n: (node_load(nodes[n]), random.random()))
        if strategy == "roundrobin":
            self._next = (self._next + 1) % len(ids)
            return ids[self._next]
        if strategy == "affinity":
            counted = counted_category(strategy, hint, categories)
            counts = _count(actors(), counted) if counted else {}
            fit = [n for n in ids if counts.get(n)]
            return random.choice(fit or ids)
        # repulsion: the node with the fewest actors of the hinted category (default: the first
        # category of the new actor)
        counts = _count(actors(), counted_category("repulsion", hint, categories) or categories[0])
        fewest = min(counts.get(n, 0) for n in ids)
        return random.choice([n for n in ids if counts.get(n, 0) == fewest])
