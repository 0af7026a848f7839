"""Realms' code on the bus: bundles in a JetStream object store, versions in the desired state.

``beach deploy`` packs a realm's directory into a bundle (`beach.code.bundle`), uploads it to the object
store bucket `CODE_BUCKET` under its digest (an immutable, content-addressed name: a bundle already
there is not sent again), and records the version in the desired state:

* ``code.<realm>.v.<version>``  the version: its bundle's digest and size, who deployed it and when;
* ``code.<realm>.current``      which version new actors of the realm run (and the one before).

A node fetches a bundle on the first spawn that needs it, checks its digest and caches it
(`beach.code.bundle.Cache`). With a ``private_key`` the stored bytes are sealed, bound to the digest.
Only nodes create the bucket and write the records (admins ask a node: ``op_desired``); with NATS
credentials only admins and realm admins may write the object store.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any, Protocol

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from beach import bus
from beach.code.bundle import Bundle, BundleError, verify
from beach.config import Config
from beach.errors import BusError, SealError, UsageError
from beach.state import desired
from beach.state.desired import CodeCurrent, CodeVersion
from beach.wire import subjects
from beach.wire.subjects import check_version


class Session(Protocol):
    """What the store needs of a connection (`beach.client.session.Session` has it)."""

    nc: Client
    refusals: bus.Refusals
    config: Config

CODE_BUCKET = "beach_code"
CHUNK = 128 * 1024

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def version_key(realm: str, version: str) -> str:
    """The desired-state key of one version of a realm's code."""
    return f"code.{subjects.escape(subjects.check_realm(realm))}.v.{subjects.escape(check_version(version))}"


def current_key(realm: str) -> str:
    """The desired-state key naming a realm's current version."""
    return f"code.{subjects.escape(subjects.check_realm(realm))}.current"


def object_name(digest: str) -> str:
    """The object store name of a bundle: its digest's hex."""
    return digest.split(":", 1)[-1]


def _context(digest: str) -> str:
    return f"$O.{CODE_BUCKET}.{object_name(digest)}"


STORE_TIMEOUT = 10.0  # seconds an object store call waits (a chunk of a bundle is 128 KiB)
GUARDED = ("$js.api.", "$o.")  # what a refused store call publishes to (as NATS reports it)


async def open_store(session: Session, create: bool = False) -> ObjectStore:
    """The code bucket (created when ``create``, as nodes do). Raises `BusError` when it is not
    there (no node has started yet) or NATS cannot answer, `PermissionDenied` when it refuses."""
    js = session.nc.jetstream(timeout=STORE_TIMEOUT)
    with bus.translated("cannot open the code store"):
        try:
            return await _lookup(session)
        except NotFoundError:
            if not create:
                raise BusError(f"the code store {CODE_BUCKET!r} does not exist yet: start a beach node "
                               f"first (nodes create it)") from None
        replicas = session.config.nats.kv_replicas or bus.auto_replicas(session.nc)
        try:
            return await js.create_object_store(CODE_BUCKET, replicas=replicas,
                                                description="beach: deployed realms' code bundles")
        except Exception:  # another node created it meanwhile
            return await js.object_store(CODE_BUCKET)


LOOKUP_TIMEOUT = 2.0  # seconds one look-up of the code bucket waits (it is a read: asked again)


async def _lookup(session: Session) -> ObjectStore:
    """The code bucket, asked again for up to `STORE_TIMEOUT` while JetStream does not answer: a
    JetStream that lost the server leading its meta group answers nothing until it has elected
    another (seconds), and a look-up is a read, safe to make again."""
    js = session.nc.jetstream(timeout=LOOKUP_TIMEOUT)
    deadline = time.monotonic() + STORE_TIMEOUT
    while True:
        try:
            return await session.refusals.guard(js.object_store(CODE_BUCKET), GUARDED)
        except NatsTimeout:
            if time.monotonic() + LOOKUP_TIMEOUT > deadline:
                raise


class _Reading(io.RawIOBase):
    """The bytes to upload, read chunk by chunk, telling ``progress`` as they go."""

    def __init__(self, data: bytes, progress: Progress | None) -> None:
        self._data = memoryview(data)
        self._at = 0
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._data) - self._at)
        buffer[:n] = self._data[self._at:self._at + n]
        self._at += n
        if self._progress is not None and n:
            self._progress(self._at, len(self._data))
        return n


class _Writing(io.RawIOBase):
    """Where a fetched bundle's chunks go, telling ``progress`` as they come."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.parts: list[bytes] = []
        self._done = 0
        self._total = total
        self._progress = progress

    def writable(self) -> bool:
        return True

    def write(self, chunk: Any) -> int:
        self.parts.append(bytes(chunk))
        self._done += len(chunk)
        if self._progress is not None:
            self._progress(self._done, self._total)
        return len(chunk)


async def has(store: ObjectStore, digest: str) -> int | None:
    """The stored size of bundle ``digest``, or None if the store does not hold it."""
    try:
        info = await store.get_info(object_name(digest))
    except NotFoundError:
        return None
    return None if info.deleted else int(info.size or 0)


async def upload(session: Session, bundle: Bundle, progress: Progress | None = None) -> bool:
    """Store ``bundle`` (sealed with the config's key, if any) in chunks; False if it was there
    already. Raises `BusError` / `PermissionDenied` when NATS refuses."""
    store = await open_store(session)
    with bus.translated("cannot upload the bundle"):
        if await session.refusals.guard(has(store, bundle.digest), GUARDED) is not None:
            if progress is not None:
                progress(bundle.size, bundle.size)
            return False
        sealer = session.config.sealer
        data = bundle.data if sealer is None else sealer.seal(_context(bundle.digest), bundle.data)
        meta = ObjectMeta(name=object_name(bundle.digest), description=f"beach bundle {bundle.digest}",
                          options=ObjectMetaOptions(max_chunk_size=CHUNK))
        await session.refusals.guard(store.put(object_name(bundle.digest), _Reading(data, progress),  # type: ignore[arg-type]
                                               meta=meta), GUARDED)
    return True


async def fetch(session: Session, digest: str, progress: Progress | None = None) -> bytes:
    """The bundle ``digest`` from the store, opened and checked. Raises `BundleError` for a
    missing, unopenable or mismatching bundle, `BusError` when NATS cannot answer."""
    store = await open_store(session)
    with bus.translated(f"cannot fetch bundle {digest}"):
        size = await session.refusals.guard(has(store, digest), GUARDED)
        if size is None:
            raise BundleError(f"bundle {digest} is not in the code store (deleted, or never uploaded)")
        out = _Writing(size, progress)
        await session.refusals.guard(store.get(object_name(digest), writeinto=out), GUARDED)  # type: ignore[arg-type]
    data = b"".join(out.parts)
    sealer = session.config.sealer
    if sealer is not None:
        try:
            data = sealer.open(_context(digest), data, fresh=False)
        except SealError as err:
            raise BundleError(f"bundle {digest} does not open with this node's keys: {err}") from None
    verify(data, digest)
    return data


async def delete(session: Session, digest: str) -> None:
    """Remove bundle ``digest`` from the store (nothing if absent)."""
    store = await open_store(session)
    with bus.translated(f"cannot delete bundle {digest}"):
        try:
            await store.delete(object_name(digest))
        except NotFoundError:
            pass


# ---------------------------------------------------------------- versions


async def versions(kv: KeyValue, realm: str | None = None) -> list[tuple[CodeVersion, bool]]:
    """Every deployed version (of ``realm``, or of all), oldest first, each with whether it is
    its realm's current one."""
    prefix = "code." if realm is None else f"code.{subjects.escape(subjects.check_realm(realm))}."
    current = {v.realm: v.version for v, _ in (await desired.snapshot(kv, prefix, CodeCurrent)).values()}
    found = [(v, current.get(v.realm) == v.version)
             for v, _ in (await desired.snapshot(kv, prefix, CodeVersion)).values()]
    return sorted(found, key=lambda found: (found[0].realm, found[0].when))


async def current(kv: KeyValue, realm: str) -> CodeCurrent | None:
    """The ``code.<realm>.current`` record, or None if the realm was never deployed."""
    found = await desired.get(kv, current_key(realm), CodeCurrent)
    return None if found is None else found[0]


async def resolve(kv: KeyValue, realm: str, version: str | None = None) -> CodeVersion | None:
    """The version record new actors of ``realm`` run: ``version``'s, else the current one's;
    None when the realm has no deployed code (its actors load from the code directory). Raises
    `UsageError` for a version that was never deployed."""
    if version is None:
        pointer = await current(kv, realm)
        if pointer is None:
            return None
        version = pointer.version
    found = await desired.get(kv, version_key(realm, version), CodeVersion)
    if found is None:
        known = [v.version for v, _ in await versions(kv, realm)]
        raise UsageError(f"realm {realm!r} has no version {version!r} (deployed: {', '.join(known) or 'none'})")
    return found[0]


def pointer(realm: str, version: str, who: str, previous: str | None) -> CodeCurrent:
    """The ``code.<realm>.current`` record naming ``version`` (and the one it replaces)."""
    return CodeCurrent(realm=realm, version=version, who=who, when=time.time(), previous=previous)


def version_record(realm: str, version: str, bundle: Bundle, who: str, requirements: list[str],
                   sealed: bool) -> CodeVersion:
    """The desired-state record of a new version."""
    return CodeVersion(realm=realm, version=version, digest=bundle.digest, size=bundle.size, files=bundle.files,
                       who=who, when=time.time(), requirements=requirements, sealed=sealed)
