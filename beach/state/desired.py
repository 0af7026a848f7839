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
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from msgspec import Meta
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from beach import wire
from beach.bus import DESIRED_BUCKET, through_election
from beach.bus.kvwatch import BucketWatch
from beach.state import records
from beach.state.patrol import PatrolSpec
from beach.state.records import Name, Record
from beach.state.spawn import RESTART_POLICIES, Restart, SpawnSpec
from beach.wire import subjects

LEASE_KEY = "lease.supervisor"
LEASE_SECONDS = 6.0  # a lease whose revision has not moved this long is free
LEASE_RENEW = 2.0  # its holder writes it again this often

__all__ = ["RESTART_POLICIES"]


class SupervisionRecord(Record, kw_only=True):
    """A supervised actor (``sup.<realm>.<sid>``): how to spawn it, its restart policy, its
    current incarnation (``uid``) and its restart history."""

    what: ClassVar[str] = "supervision record"
    kind: str = "actor"
    sid: Name
    spawn: SpawnSpec
    restart: Restart
    max_restarts: int = 5
    restart_window: float = 60.0
    uid: Name
    state: Literal["running", "failed"] = "running"
    restarts: list[float] = []
    created: float = 0.0
    last_restart: float | None = None
    last_error: str | None = None
    waiting_for: str | None = None
    failed_at: float | None = None
    # the deployed version of its realm's code the current incarnation runs, which a restart or a
    # re-placement runs again (a rollout moves it); None: the code directory, or a record written
    # before versions were kept (a restart then runs the realm's current version)
    version: str | None = None


class LeaseRecord(Record, kw_only=True):
    """The supervisor lease as stored (``lease.supervisor``; see `Lease`)."""

    what: ClassVar[str] = "lease record"
    holder: str


class CodeVersion(Record, kw_only=True):
    """One deployed version of a realm's code (``code.<realm>.v.<version>``): the bundle in the
    object store it names by digest, who deployed it and when."""

    what: ClassVar[str] = "code version record"
    realm: Name
    version: Name
    digest: Annotated[str, Meta(pattern="^sha256:[0-9a-f]{64}$")]
    size: int
    files: int = 0
    who: str = "?"
    when: float = 0.0
    requirements: list[Name] = []
    sealed: bool = False


class CodeCurrent(Record, kw_only=True):
    """Which version of a realm new actors run (``code.<realm>.current``)."""

    what: ClassVar[str] = "current code record"
    realm: Name
    version: Name
    who: str = "?"
    when: float = 0.0
    previous: str | None = None


class Cordon(Record, kw_only=True):
    """A cordoned node: no new actor is placed there (``cordon.<node>``)."""

    what: ClassVar[str] = "cordon record"
    node: Name
    who: str = "?"
    when: float = 0.0


Desired = SupervisionRecord | PatrolSpec | LeaseRecord | CodeVersion | CodeCurrent | Cordon
"""A desired-state record: which one its key says."""
D = TypeVar("D", bound=Desired)


def supervision_key(realm: str, sid: str) -> str:
    """The key of a supervised actor."""
    return f"sup.{subjects.escape(realm)}.{subjects.escape(sid)}"


def patrol_key(owner: str) -> str:
    """The key of a patrol spec; `CategoryError` for an owner too long for a key."""
    return subjects.check_key(f"patrol.{subjects.escape(owner)}", "patrol owner", owner)


def cordon_key(node: str) -> str:
    """The key that marks a node cordoned."""
    return f"cordon.{subjects.escape(node)}"


def type_of(key: str) -> type[Desired]:
    """The record type stored at ``key``; raises `RecordError` for a key that is not a desired-state one."""
    for prefix, type_ in (("sup.", SupervisionRecord), ("patrol.", PatrolSpec), ("lease.", LeaseRecord),
                          ("cordon.", Cordon)):
        if key.startswith(prefix):
            return type_
    if key.startswith("code."):
        return CodeCurrent if key.endswith(".current") else CodeVersion
    raise records.RecordError(f"{key!r} is not a desired-state key (sup.*, patrol.*, lease.*, code.*, cordon.*)")


def check(key: str, value: object) -> Desired:
    """A desired-state record by its key (decoded msgpack); raises `RecordError` for a bad one or
    an unknown key."""
    return records.check(type_of(key), value, key)


def realm_of(record: Desired) -> str:
    """The realm a record acts in ("global" for those of the whole cluster: lease, cordon)."""
    if isinstance(record, SupervisionRecord):
        return record.spawn.realm
    return getattr(record, "realm", "global")


def read(key: str, body: bytes) -> Desired | None:
    """The checked record stored at ``key``, or None if it is not one (skipped, logged once, counted)."""
    try:
        return records.decode(type_of(key), body, key)
    except records.RecordError as err:
        records.reject(DESIRED_BUCKET, key, err)
        return None


async def get(kv: KeyValue, key: str, type_: type[D]) -> tuple[D, int] | None:
    """``(record, revision)`` of ``key``, or None if it is absent (or not a ``type_`` beach can read)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.operation is not None or entry.revision is None:
        return None
    record = read(key, entry.value)
    return (record, entry.revision) if isinstance(record, type_) else None


async def put(kv: KeyValue, key: str, record: Desired) -> int:
    """Write ``record`` at ``key``; return the revision."""
    body = wire.pack(record)
    return await through_election(lambda: kv.put(key, body))


async def update(kv: KeyValue, key: str, record: Desired, revision: int) -> int | None:
    """Write ``record`` if ``key`` is still at ``revision``; the new revision, or None if it moved."""
    try:
        return await kv.update(key, wire.pack(record), last=revision)
    except KeyWrongLastSequenceError:
        return None


async def delete(kv: KeyValue, key: str) -> None:
    """Remove ``key``."""
    await through_election(lambda: kv.delete(key))


class Mirror(BucketWatch):
    """A live in-memory copy of the desired-state bucket (``{key: (record, revision)}``)."""

    def __init__(self, kv: KeyValue) -> None:
        super().__init__(kv, self._apply)
        self.entries: dict[str, tuple[Desired, int]] = {}

    def _apply(self, entry: Any) -> None:
        record = read(entry.key, entry.value) if entry.operation is None and entry.value else None
        if record is not None:
            self.entries[entry.key] = (record, entry.revision)
        else:
            self.entries.pop(entry.key, None)

    def under(self, prefix: str, type_: type[D]) -> dict[str, tuple[D, int]]:
        """The entries whose key starts with ``prefix`` (records of ``type_``)."""
        return {k: (v, r) for k, (v, r) in self.entries.items() if k.startswith(prefix) and isinstance(v, type_)}


async def snapshot(kv: KeyValue, prefix: str, type_: type[D]) -> dict[str, tuple[D, int]]:
    """Every live entry under ``prefix`` (e.g. ``'sup.'``, of ``type_``): ``{key: (record, revision)}``."""
    mirror = Mirror(kv)
    await mirror.start()
    await mirror.stop()
    return mirror.under(prefix, type_)


async def everything(kv: KeyValue) -> dict[str, tuple[Desired, int]]:
    """Every live entry of the bucket."""
    mirror = Mirror(kv)
    await mirror.start()
    await mirror.stop()
    return mirror.entries


class Lease:
    """The supervisor lease: at most one holder at a time, taken over when the holder stops renewing.

    Read from ``mirror`` (the desired-state copy the supervisor watches anyway), never asked of the
    JetStream API: a round costs nothing but the holder's renewal, a compare-and-set write every
    ``renew`` seconds. Another agent takes the lease over once its revision has not moved for
    ``seconds`` by that agent's own monotonic clock (clock differences between machines do not
    matter), or at once when told the holder is gone (``acquire(free=True)``: the standby, once the
    holder left the registry).
    """

    def __init__(self, kv: KeyValue, holder: str, mirror: Mirror, seconds: float = LEASE_SECONDS,
                 renew: float = LEASE_RENEW) -> None:
        self.kv = kv
        self.holder = holder
        self.mirror = mirror
        self.seconds = seconds
        self.renew = renew
        self._mine: int | None = None  # the revision of this agent's last write of the lease
        self._renewed = -renew  # when it was made (monotonic)
        self._watched: tuple[int, float] | None = None  # (revision, when this agent first saw it)

    def current(self) -> tuple[str, int] | None:
        """``(holder, revision)`` of the lease as this agent knows it (its own write, until the
        mirror shows it), or None while nobody has taken it."""
        entry = self.mirror.entries.get(LEASE_KEY)
        mirrored = (entry[0].holder, entry[1]) if entry is not None and isinstance(entry[0], LeaseRecord) else None
        if self._mine is not None and (mirrored is None or mirrored[1] < self._mine):
            return self.holder, self._mine
        return mirrored

    async def acquire(self, free: bool = False) -> bool:
        """Take or renew the lease; True if this agent holds it now. ``free``: the holder is known
        to be gone, so its lease is taken without waiting for it to run out."""
        current = self.current()
        now = time.monotonic()
        mine = wire.pack(LeaseRecord(holder=self.holder))
        try:
            if current is None:
                revision = await self.kv.create(LEASE_KEY, mine)
            else:
                holder, revision = current
                if holder == self.holder:
                    if now - self._renewed < self.renew:
                        return True
                elif holder and not free:
                    if self._watched is None or self._watched[0] != revision:
                        self._watched = (revision, now)
                        return False
                    if now - self._watched[1] < self.seconds:
                        return False
                revision = await self.kv.update(LEASE_KEY, mine, last=revision)
        except KeyWrongLastSequenceError:  # another agent wrote it first
            self._mine = None
            return False
        self._mine, self._renewed = revision, now
        return True

    async def release(self, successor: str | None = None) -> None:
        """Give the lease up (at shutdown) to ``successor``, which holds it from its next round (it
        renews a lease that names it); without one, to whichever agent takes it first."""
        current = self.current()
        if current is not None and current[0] == self.holder:
            await update(self.kv, LEASE_KEY, LeaseRecord(holder=successor or ""), current[1])
