"""Desired state: what must keep running, in a persistent JetStream KV bucket (no TTL).

Keys in ``beach_desired``:

* ``sup.<realm>.<sid>``  a supervised actor: how to spawn it, its restart policy, its current
  incarnation (uid) and its restart history. ``sid`` is the uid of its first incarnation.
* ``patrol.<owner>``     a patrol spec (see `beach.patrol`).
* ``lease.supervisor``   which node agent acts on the desired state now (one at a time).

This is the only state beach needs to survive the loss of processes; the directory is soft state.
"""

from __future__ import annotations

import time
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from . import subjects, wire
from .kvwatch import BucketWatch

LEASE_KEY = "lease.supervisor"
LEASE_SECONDS = 6.0

RESTART_POLICIES = ("never", "on-failure", "always")


def supervision_key(realm: str, sid: str) -> str:
    """The key of a supervised actor."""
    return f"sup.{subjects.escape(realm)}.{subjects.escape(sid)}"


def patrol_key(owner: str) -> str:
    """The key of a patrol spec."""
    return f"patrol.{subjects.escape(owner)}"


async def get(kv: KeyValue, key: str) -> tuple[Any, int] | None:
    """``(value, revision)`` of ``key``, or None if it is absent."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.operation is not None:
        return None
    return wire.unpack(entry.value), entry.revision


async def put(kv: KeyValue, key: str, value: Any) -> int:
    """Write ``value`` at ``key``; return the revision."""
    return await kv.put(key, wire.pack(value))


async def update(kv: KeyValue, key: str, value: Any, revision: int) -> int | None:
    """Write ``value`` if ``key`` is still at ``revision``; the new revision, or None if it moved."""
    try:
        return await kv.update(key, wire.pack(value), last=revision)
    except KeyWrongLastSequenceError:
        return None


async def delete(kv: KeyValue, key: str) -> None:
    """Remove ``key``."""
    await kv.delete(key)


class Mirror(BucketWatch):
    """A live in-memory copy of the desired-state bucket (``{key: (value, revision)}``)."""

    def __init__(self, kv: KeyValue) -> None:
        super().__init__(kv, self._apply)
        self.entries: dict[str, tuple[Any, int]] = {}

    def _apply(self, entry: Any) -> None:
        if entry.operation is None and entry.value:
            self.entries[entry.key] = (wire.unpack(entry.value), entry.revision)
        else:
            self.entries.pop(entry.key, None)

    def under(self, prefix: str) -> dict[str, tuple[Any, int]]:
        """The entries whose key starts with ``prefix``."""
        return {k: v for k, v in self.entries.items() if k.startswith(prefix)}


async def snapshot(kv: KeyValue, prefix: str) -> dict[str, tuple[Any, int]]:
    """Every live entry under ``prefix`` (e.g. ``'sup.'``): ``{key: (value, revision)}``."""
    mirror = Mirror(kv)
    await mirror.start()
    await mirror.stop()
    return mirror.under(prefix)


async def acquire_lease(kv: KeyValue, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Take or renew the supervisor lease for ``holder``; True if ``holder`` holds it now.

    The lease is ``{holder, expires}`` written with compare-and-set, so two agents never both
    win; an agent takes over a lease whose holder has not renewed it before ``expires``.
    """
    value = {"holder": holder, "expires": time.time() + seconds}
    current = await get(kv, LEASE_KEY)
    try:
        if current is None:
            await kv.create(LEASE_KEY, wire.pack(value))
            return True
        lease, revision = current
        if lease["holder"] != holder and lease["expires"] > time.time():
            return False
        return await update(kv, LEASE_KEY, value, revision) is not None
    except KeyWrongLastSequenceError:
        return False


async def release_lease(kv: KeyValue, holder: str) -> None:
    """Give the lease up (at shutdown), so another agent takes over at once."""
    current = await get(kv, LEASE_KEY)
    if current is not None and current[0]["holder"] == holder:
        await update(kv, LEASE_KEY, {"holder": "", "expires": 0.0}, current[1])
