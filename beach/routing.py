"""Choosing the actor a request goes to, when the client chooses (affinity, local).

Random routing needs no choice here: it is the NATS queue group on the category's subject.
Affinity uses rendezvous (highest-random-weight) hashing over the live members of the category:
a stable hash (blake2b, not Python's salted ``hash()``), the same answer in every process, and
when one of N actors joins or leaves only the keys of that actor move (about 1/N of them).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from .errors import UsageError

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


_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    # splitmix64's finalizer: a cheap, well-mixed 64-bit hash of an integer
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    return x ^ (x >> 31)


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ring:
    """Rendezvous hashing over a fixed set of uids: `owner(key)` is the uid with the highest
    ``mix(hash(key) ^ hash(uid))``. Build one per membership; lookups cost one blake2b and one
    integer mix per member."""

    __slots__ = ("uids", "_seeds")

    def __init__(self, uids: list[str]) -> None:
        self.uids = sorted(uids)
        self._seeds = [(_digest(uid.encode()), uid) for uid in self.uids]

    def owner(self, key: Any) -> str | None:
        """The uid that owns ``key``, or None if the ring is empty."""
        if not self._seeds:
            return None
        h = _digest(key_bytes(key))
        return max(self._seeds, key=lambda seed: _mix(h ^ seed[0]))[1]


def affinity_choice(key: Any, uids: list[str]) -> str | None:
    """The uid that owns ``key`` among ``uids`` (rendezvous hashing), or None if there are none."""
    return Ring(uids).owner(key)


def random_choice(actors: list[dict[str, Any]], exclude: set[str]) -> str | None:
    """A random uid among ``actors`` outside ``exclude``, or None if none is left."""
    left = [a["uid"] for a in actors if a["uid"] not in exclude]
    return random.choice(left) if left else None


def local_choice(actors: list[dict[str, Any]], node_id: str | None) -> str | None:
    """A random uid among ``actors`` on node ``node_id``, or None if none is there."""
    if node_id is None:
        return None
    here = [a["uid"] for a in actors if a["node"] == node_id]
    return random.choice(here) if here else None
