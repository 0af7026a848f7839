"""Choosing the actor a request goes to, when the client chooses (affinity, local).

Random routing needs no choice here: it is the NATS queue group on the category's subject.
Affinity uses a consistent-hash ring over the live members of the category: a stable hash
(blake2b, not Python's salted ``hash()``), the same answer in every process, and when one of N
actors joins or leaves only the keys of that actor move (about 1/N of them).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from typing import TYPE_CHECKING, Any

from beach.errors import UsageError

if TYPE_CHECKING:
    from beach.state.records import ActorEntry

MODES = ("random", "local", "affinity")


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a routing mode, else raise `UsageError`."""
    if mode not in MODES:
        raise UsageError(f"unknown request mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def key_bytes(key: Any) -> bytes:
    """A stable byte form of an affinity key (str, bytes, int, or a tuple/list of those)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (tuple, list)):
        return b"\x1f".join(key_bytes(k) for k in key)
    if isinstance(key, (int, float, bool)):
        return repr(key).encode("ascii")
    raise UsageError(f"an affinity key must be str, bytes, a number or a tuple of those, "
                     f"not {type(key).__name__}")


VNODES = 64  # points per actor on the ring: enough to spread keys evenly, cheap to build


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ring:
    """A consistent-hash ring over a fixed set of uids: each uid owns `VNODES` points, a key
    belongs to the first point at or after its hash. Build one per membership; a lookup costs
    one blake2b and a binary search."""

    __slots__ = ("uids", "_points", "_owners")

    def __init__(self, uids: list[str]) -> None:
        self.uids = sorted(uids)
        ring = sorted((_digest(f"{uid}#{i}".encode()), uid) for uid in self.uids for i in range(VNODES))
        self._points = [point for point, _ in ring]
        self._owners = [uid for _, uid in ring]

    def owner(self, key: Any) -> str | None:
        """The uid that owns ``key``, or None if the ring is empty."""
        if not self._points:
            return None
        i = bisect.bisect_left(self._points, _digest(key_bytes(key)))
        return self._owners[i if i < len(self._owners) else 0]


def affinity_choice(key: Any, uids: list[str]) -> str | None:
    """The uid that owns ``key`` among ``uids`` (consistent hashing), or None if there are none."""
    return Ring(uids).owner(key)


def random_choice(actors: list[ActorEntry], exclude: set[str]) -> str | None:
    """A random uid among ``actors`` outside ``exclude``, or None if none is left."""
    left = [a["uid"] for a in actors if a["uid"] not in exclude]
    return random.choice(left) if left else None


def local_choice(actors: list[ActorEntry], node_id: str | None) -> str | None:
    """A random uid among ``actors`` on node ``node_id``, or None if none is there."""
    if node_id is None:
        return None
    here = [a["uid"] for a in actors if a["node"] == node_id]
    return random.choice(here) if here else None
