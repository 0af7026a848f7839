"""Choosing the actor a request goes to, when the client chooses (affinity, local).

Random routing needs no choice here: it is the NATS queue group on the category's subject.
Affinity uses rendezvous (highest-random-weight) hashing over the live members of the category:
a stable hash (blake2b, not Python's salted ``hash()``), the same answer in every process, and
when one of N actors joins or leaves only about 1/N of the keys move.
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


def _weight(key: bytes, uid: str) -> bytes:
    return hashlib.blake2b(key + b"\x00" + uid.encode(), digest_size=8).digest()


def affinity_choice(key: Any, uids: list[str]) -> str | None:
    """The uid that owns ``key`` among ``uids`` (rendezvous hashing), or None if there are none."""
    if not uids:
        return None
    k = key_bytes(key)
    return max(uids, key=lambda uid: _weight(k, uid))


def local_choice(actors: list[dict[str, Any]], node_id: str | None) -> str | None:
    """A random uid among ``actors`` on node ``node_id``, or None if none is there."""
    if node_id is None:
        return None
    here = [a["uid"] for a in actors if a["node"] == node_id]
    return random.choice(here) if here else None
