"""Desired state: what must keep running, in a persistent JetStream KV bucket (no TTL).

Keys in ``beach_desired``:

* ``sup.<realm>.<sid>``  a supervised actor: how to spawn it, its restart policy, its current
  incarnation (uid) and its restart history. ``sid`` is the uid of its first incarnation.
* ``patrol.<owner>``     a patrol spec (see `beach.patrol`).
* ``lease.supervisor``   which node agent acts on the desired state now (one at a time, see `Lease`).
* ``code.<realm>.v.<version>``, ``code.<realm>.current``   deployed code (see `beach.code.store`).
* ``cordon.<node>``      a node that takes no new actors (``beach drain``), until uncordoned.

This is the only state beach needs to survive the loss of processes; the directory is soft state.
"""

from __future__ import annotations

import time
from typing import Any, cast

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from beach import wire
from beach.bus import DESIRED_BUCKET, through_election
from beach.bus.kvwatch import BucketWatch
from beach.errors import BeachError
from beach.state import patrol, records
from beach.wire import subjects

LEASE_KEY = "lease.supervisor"
LEASE_SECONDS = 6.0  # a lease whose revision has not moved this long is free

RESTART_POLICIES = records.RESTART_POLICIES


def supervision_key(realm: str, sid: str) -> str:
    """The key of a supervised actor."""
    return f"sup.{subjects.escape(realm)}.{subjects.escape(sid)}"


def patrol_key(owner: str) -> str:
    """The key of a patrol spec; `CategoryError` for an owner too long for a key."""
    return subjects.check_key(f"patrol.{subjects.escape(owner)}", "patrol owner", owner)


def cordon_key(node: str) -> str:
    """The key that marks a node cordoned."""
    return f"cordon.{subjects.escape(node)}"


def realm_of(record: dict[str, Any]) -> str:
    """The realm a supervision record or a patrol spec acts in."""
    spawn = record.get("spawn")
    return str(spawn["realm"] if isinstance(spawn, dict) else record.get("realm") or "global")


def _patrol(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, dict):
        version = value.get("v", 0)
        if isinstance(version, int) and version > records.FORMAT:
            raise records.RecordError(f"patrol record {where}: written by a newer beach (format {version}; this one "
                                      f"reads formats up to {records.FORMAT}): upgrade this process")
        value = {k: v for k, v in value.items() if k != "v"}
    try:
        return {**patrol.check(value, f"patrol record {where}"), "v": records.FORMAT}
    except (BeachError, TypeError, ValueError, KeyError, AttributeError) as err:  # a spec no check foresaw
        raise records.RecordError(f"patrol record {where}: {err}" if not str(err).startswith("patrol record")
                                  else str(err)) from None


def check(key: str, value: Any) -> dict[str, Any]:
    """A desired-state record by its key (a `SupervisionRecord`, a patrol spec, a `Lease`, a
    `CodeVersion` or `CodeCurrent`, a `Cordon`: which one the key says); raises `RecordError` for a
    bad one or an unknown key."""
    schema: records.Schema[Any]
    if key.startswith("sup."):
        schema = records.SUPERVISION
    elif key.startswith("patrol."):
        return _patrol(value, key)
    elif key.startswith("lease."):
        schema = records.LEASE
    elif key.startswith("code."):
        schema = records.CODE_CURRENT if key.endswith(".current") else records.CODE_VERSION
    elif key.startswith("cordon."):
        schema = records.CORDON
    else:
        raise records.RecordError(f"{key!r} is not a desired-state key (sup.*, patrol.*, lease.*, code.*, cordon.*)")
    return cast(dict[str, Any], schema.check(value, key))


def read(key: str, body: bytes) -> dict[str, Any] | None:
    """The checked record stored at ``key``, or None if it is not one (skipped, logged once, counted)."""
    try:
        return check(key, wire.unpack(body))
    except (ValueError, records.RecordError) as err:
        records.reject(DESIRED_BUCKET, key, err)
        return None


def _body(value: Any) -> bytes:
    return wire.pack({**value, "v": records.FORMAT})


async def get(kv: KeyValue, key: str) -> tuple[dict[str, Any], int] | None:
    """``(record, revision)`` of ``key``, or None if it is absent (or not a record beach can read)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.operation is not None or entry.revision is None:
        return None
    record = read(key, entry.value)
    return None if record is None else (record, entry.revision)


async def put(kv: KeyValue, key: str, value: Any) -> int:
    """Write ``value`` at ``key`` (in this release's format); return the revision."""
    body = _body(value)
    return await through_election(lambda: kv.put(key, body))


async def update(kv: KeyValue, key: str, value: Any, revision: int) -> int | None:
    """Write ``value`` if ``key`` is still at ``revision``; the new revision, or None if it moved."""
    try:
        return await kv.update(key, _body(value), last=revision)
    except KeyWrongLastSequenceError:
        return None


async def delete(kv: KeyValue, key: str) -> None:
    """Remove ``key``."""
    await through_election(lambda: kv.delete(key))


class Mirror(BucketWatch):
    """A live in-memory copy of the desired-state bucket (``{key: (value, revision)}``)."""

    def __init__(self, kv: KeyValue) -> None:
        super().__init__(kv, self._apply)
        self.entries: dict[str, tuple[dict[str, Any], int]] = {}

    def _apply(self, entry: Any) -> None:
        record = read(entry.key, entry.value) if entry.operation is None and entry.value else None
        if record is not None:
            self.entries[entry.key] = (record, entry.revision)
        else:
            self.entries.pop(entry.key, None)

    def under(self, prefix: str) -> dict[str, tuple[dict[str, Any], int]]:
        """The entries whose key starts with ``prefix``."""
        return {k: v for k, v in self.entries.items() if k.startswith(prefix)}


async def snapshot(kv: KeyValue, prefix: str) -> dict[str, tuple[dict[str, Any], int]]:
    """Every live entry under ``prefix`` (e.g. ``'sup.'``): ``{key: (value, revision)}``."""
    mirror = Mirror(kv)
    await mirror.start()
    await mirror.stop()
    return mirror.under(prefix)


class Lease:
    """The supervisor lease: at most one holder at a time, taken over when the holder stops renewing.

    The holder renews it (a compare-and-set write) every round; another agent takes it over once
    its revision has not moved for `LEASE_SECONDS` by the other agent's own monotonic clock, so
    clock differences between machines do not matter.
    """

    def __init__(self, kv: KeyValue, holder: str, seconds: float = LEASE_SECONDS) -> None:
        self.kv = kv
        self.holder = holder
        self.seconds = seconds
        self._watched: tuple[int, float] | None = None  # (revision, when this agent first saw it)

    async def acquire(self) -> bool:
        """Take or renew the lease; True if this agent holds it now."""
        mine = _body({"holder": self.holder})
        current = await get(self.kv, LEASE_KEY)
        try:
            if current is None:
                await self.kv.create(LEASE_KEY, mine)
                return True
            lease, revision = current
            if lease.get("holder") not in (self.holder, ""):
                now = time.monotonic()
                if self._watched is None or self._watched[0] != revision:
                    self._watched = (revision, now)
                    return False
                if now - self._watched[1] < self.seconds:
                    return False
            return await self.kv.update(LEASE_KEY, mine, last=revision) is not None
        except KeyWrongLastSequenceError:
            return False

    async def release(self) -> None:
        """Give the lease up (at shutdown), so another agent takes over at once."""
        current = await get(self.kv, LEASE_KEY)
        if current is not None and current[0].get("holder") == self.holder:
            await update(self.kv, LEASE_KEY, {"holder": ""}, current[1])
