"""Choosing the actor a request goes to, when the client chooses (affinity, local, a retry).

Random routing needs no choice here: it is the NATS queue group on the category's subject.
`Targets` holds one category's live actors (from the directory view) and says, attempt by
attempt, which subject a request goes to.
Affinity uses a consistent-hash ring over the live members of the category: a stable hash
(blake2b, not Python's salted ``hash()``), the same answer in every process, and when one of N
actors joins or leaves only the keys of that actor move (about 1/N of them).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import random
from typing import TYPE_CHECKING, Any

from beach.errors import UsageError
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.state.directory import DirectoryView
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
    left = [a.uid for a in actors if a.uid not in exclude]
    return random.choice(left) if left else None


def local_choice(actors: list[ActorEntry], node_id: str | None) -> str | None:
    """A random uid among ``actors`` on node ``node_id``, or None if none is there."""
    if node_id is None:
        return None
    here = [a.uid for a in actors if a.node == node_id]
    return random.choice(here) if here else None


class Targets:
    """The live actors of category ``category`` of ``realm`` (the directory view's, re-read when
    it changes) and where each attempt of a request goes under routing ``mode``."""

    __slots__ = ("_view", "_realm", "_category", "_mode", "_node_id", "_subject", "_generation", "_members",
                 "_ring", "_actor_subjects", "_held")

    def __init__(self, view: DirectoryView, realm: str, category: str, mode: str, node_id: str | None) -> None:
        self._view = view
        self._realm = realm
        self._category = category
        self._mode = check_mode(mode)
        self._node_id = node_id
        self._subject = subjects.request_subject(realm, category)
        self._generation = -1
        self._members: list[ActorEntry] = []
        self._ring: Ring | None = None
        self._actor_subjects: dict[str, str] = {}
        self._held = False  # the view holds the category's actors (a partial view once loaded)

    def waiting(self) -> asyncio.Future[None] | None:
        """None if the view holds the category's live actors; else (an actor host's partial view,
        on the loop's thread) a future done once it does (`DirectoryView.want`)."""
        view = self._view
        if view.switching is not None:
            return view.switching
        if self._held or not view.partial:
            return None
        waiting = view.want(self._realm, self._category)
        self._held = waiting is None
        return waiting

    def members(self) -> list[ActorEntry]:
        """The category's live actors."""
        view = self._view
        if self._generation != view.generation:
            self._generation = view.generation
            self._members = view.find(self._realm, self._category)
            self._ring = None
            self._actor_subjects = {}
        return self._members

    def others(self, tried: set[str]) -> bool:
        """True if some live actor of the category is not in ``tried``."""
        return any(a.uid not in tried for a in self.members())

    def failed(self, target: str, absent: bool, tried: set[str]) -> None:
        """Add to ``tried`` what a request should not ask again after ``target`` failed an attempt
        (nothing when the queue group was asked): the actor, and — when it was ``absent`` (no
        responder on its subject: its subscription is gone, most likely with its node, whose entries
        outlive it by their TTL) — its node's other actors too, so the retries go to other nodes.
        When every actor has been tried, the next attempt asks the queue group again."""
        if target == self._category:
            return
        tried.add(target)
        if absent:
            node = next((a.node for a in self.members() if a.uid == target), None)
            tried.update(a.uid for a in self.members() if a.node == node)

    def _owner(self, key: Any, exclude: set[str]) -> str | None:
        members = self.members()
        if exclude:
            return Ring([a.uid for a in members if a.uid not in exclude]).owner(key)
        if self._ring is None:
            self._ring = Ring([a.uid for a in members])
        return self._ring.owner(key)

    def route(self, key: Any, attempt: int, tried: set[str]) -> tuple[str, str]:
        """``(subject, target)`` for attempt ``attempt`` (0 first) of a request, ``tried`` holding
        the actors that failed it: the target is the actor's uid when this side chose the actor,
        else the category (the queue group chooses)."""
        uid: str | None = None
        if self._mode == "affinity":
            uid = self._owner(key, tried)
        elif self._mode == "local" and attempt == 0:
            uid = local_choice(self.members(), self._node_id)
        elif attempt:  # a retry: pick the actor ourselves, never one that already failed this request
            # (a timeout through the queue group says nothing of who failed: choosing lets it count)
            uid = random_choice(self.members(), tried)
        if uid is None:
            return self._subject, self._category
        subject = self._actor_subjects.get(uid)
        if subject is None:
            subject = self._actor_subjects[uid] = subjects.actor_subject(self._realm, uid)
        return subject, uid
