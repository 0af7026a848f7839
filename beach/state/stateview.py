"""Actor state seen from outside the actors: what the tools, backups and node agents read.

* `read` — the keys and values of a category (or a realm, or every realm): for ``beach state``,
  the dashboard, ``beach backup``. It reads the bucket with the caller's own NATS rights — an
  admin every realm, a realm admin its own (its permissions name the realm in the subjects a
  read uses: a consumer whose filter is in its create subject, direct gets by subject).
* `SizeTracker` — keys and bytes per category, followed by the node agent that holds the
  supervisor lease (a headers-only watch of every category), and bytes per bucket; published on
  ``beach.stats.state`` for every tool, so an observer sees sizes without any right to read keys.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from beach import bus, wire
from beach.errors import BusError, StateError
from beach.security.sealedkv import context as seal_context
from beach.state.records import StateStats
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.client.session import Session

log = logging.getLogger("beach.state")

STREAM = f"KV_{bus.STATE_BUCKET}"
PREFIX = f"$KV.{bus.STATE_BUCKET}."
STATS_SUBJECT = "beach.stats.state"
PURGED_SUBJECT = "beach.state.purged"  # a node purged actor state: counts of it are 0 now
SIZES_SECONDS = 2.0       # how often the lease holder publishes the sizes
BUCKETS_SECONDS = 4.0     # how often it asks the streams for their sizes
READ_IDLE = 30.0          # seconds a reading consumer outlives its last use (the server removes it)
# beach's streams, for "bytes per bucket" (names as JetStream has them)
STREAMS = ("KV_beach_actors", "KV_beach_members", "KV_beach_placed", "KV_beach_nodes", "KV_beach_desired",
           "KV_beach_config", STREAM, "OBJ_beach_code", "beach_logs", "beach_audit")


def _filter(realm: str | None, category: str | None) -> str:
    if realm is None:
        if category is None:
            return f"{PREFIX}*.k.>"
        return f"{PREFIX}*.k.{subjects.escape(subjects.normalize(category))}.*"
    if category is None:
        return f"{PREFIX}{subjects.escape(subjects.check_realm(realm))}.k.>"
    return f"{PREFIX}{subjects.state_scope(realm, category)}*"


def _open(session: Session, kv_key: str, stored: bytes) -> bytes:
    sealer = session.sealer
    if sealer is None:
        return stored
    try:
        return sealer.open(seal_context(bus.STATE_BUCKET, kv_key), stored, fresh=False)
    except Exception as err:
        raise StateError(f"the value of state key {kv_key!r} does not open: {err}") from None


async def _last_values(session: Session, filter_subject: str, headers_only: bool,
                       timeout: float) -> list[tuple[str, int, dict[str, str], bytes]]:
    """The last message of each subject under ``filter_subject`` in the state stream: ``(subject,
    sequence, headers, body)``, through a consumer of its own whose filter is in its create subject
    (so a realm admin's permissions can confine it), removed by the server once idle. Raises
    `BusError` (`PermissionDenied` where the credentials may not read it); none if the stream
    does not exist yet."""
    nc = session.nc
    js = nc.jetstream(timeout=bus.JS_TIMEOUT)
    inbox = nc.new_inbox()
    found: list[tuple[str, int, dict[str, str], bytes]] = []
    done = asyncio.get_running_loop().create_future()

    async def take(msg: Msg) -> None:
        meta = msg.metadata
        found.append((msg.subject, meta.sequence.stream, msg.headers or {}, msg.data))
        if meta.num_pending == 0 and not done.done():
            done.set_result(None)

    sub = await nc.subscribe(inbox, cb=take)
    try:
        config = ConsumerConfig(name=f"read-{os.urandom(8).hex()}", filter_subject=filter_subject,
                                deliver_subject=inbox, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                                ack_policy=AckPolicy.NONE, inactive_threshold=READ_IDLE, mem_storage=True,
                                num_replicas=1, headers_only=headers_only or None)
        try:
            info = await session.refusals.guard(js.add_consumer(STREAM, config), ("$js.api.consumer.create",))
        except NotFoundError:
            return []  # no state bucket yet: no state
        except nats.errors.Error as err:
            raise bus.failure(err, "cannot read the actor state") from None
        if info.num_pending:
            try:
                async with asyncio.timeout(timeout):
                    await done
            except TimeoutError:
                raise BusError(f"reading the actor state took over {timeout:g}s") from None
    finally:
        await sub.unsubscribe()
    return found


def _deleted(headers: dict[str, str], body: bytes, headers_only: bool = False) -> bool:
    return headers.get("KV-Operation") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers or (
        not headers_only and not body)


async def read(session: Session, realm: str | None = None, category: str | None = None,
               timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every key with a value of ``category`` in ``realm`` (every category when ``category`` is
    None; every realm when ``realm`` is None): ``[{'realm', 'category', 'key', 'revision',
    'value': packed}]``, sorted. Raises `BusError` (`PermissionDenied` where the credentials may not read them)."""
    found = []
    for subject, revision, headers, body in await _last_values(session, _filter(realm, category), False, timeout):
        parsed = subjects.parse_state_key(subject[len(PREFIX):])
        if parsed is None or _deleted(headers, body):
            continue
        try:
            value = _open(session, subject[len(PREFIX):], body)
        except StateError as err:
            log.warning("%s", err)
            continue
        found.append({"realm": parsed[0], "category": parsed[1], "key": parsed[2], "revision": revision,
                      "value": value})
    return sorted(found, key=lambda item: (item["realm"], item["category"], item["key"]))


async def list_keys(session: Session, scope: str, timeout: float = 30.0) -> list[str]:
    """The tokens of the live keys under ``scope`` (a `beach.wire.subjects.state_scope`), sorted:
    the stream's latest headers only."""
    start = len(PREFIX) + len(scope)
    return sorted(subject[start:] for subject, _, headers, body
                  in await _last_values(session, f"{PREFIX}{scope}*", True, timeout)
                  if not _deleted(headers, body, headers_only=True))


async def read_key(session: Session, realm: str, category: str, key: str) -> tuple[int, bytes | None]:
    """``(revision, packed value)`` of one key (``(0, None)`` if it never had one, value None if
    deleted): a direct get by subject. Raises `BusError`, `StateError`."""
    kv_key = subjects.state_key(subjects.state_scope(realm, category), subjects.state_token(key))
    js = session.nc.jetstream(timeout=bus.JS_TIMEOUT)
    try:
        msg = await session.refusals.guard(js.get_msg(STREAM, subject=PREFIX + kv_key, direct=True),
                                           ("$js.api.direct.get",))
    except NotFoundError:
        return 0, None
    except nats.errors.Error as err:
        raise bus.failure(err, f"cannot read state key {key!r}") from None
    headers = msg.headers or {}
    if headers.get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
        return int(msg.seq or 0), None
    return int(msg.seq or 0), _open(session, kv_key, msg.data)


async def bucket_sizes(session: Session) -> dict[str, dict[str, int]]:
    """``{stream: {'bytes', 'messages'}}`` of beach's buckets and streams that exist."""
    js = session.nc.jetstream(timeout=bus.JS_TIMEOUT)
    sizes: dict[str, dict[str, int]] = {}
    for stream in STREAMS:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            continue
        except nats.errors.Error as err:
            log.debug("no size for stream %s: %s", stream, err)
            continue
        sizes[stream] = {"bytes": int(info.state.bytes or 0), "messages": int(info.state.messages or 0)}
    return sizes


def purge_notice(realm: str | None, category: str | None) -> bytes:
    """The body of a notice on `PURGED_SUBJECT`: what was purged (None: every realm / category)."""
    return wire.pack({"realm": realm, "category": category})


def purged(body: bytes) -> tuple[str | None, str | None] | None:
    """``(realm, category)`` a purge notice names (None: all of them), or None for a bad notice."""
    try:
        notice = wire.unpack(body)
    except ValueError:
        return None
    if not isinstance(notice, dict):
        return None
    realm, category = notice.get("realm"), notice.get("category")
    if not all(v is None or isinstance(v, str) for v in (realm, category)):
        return None
    return realm, category


def covers(notice: tuple[str | None, str | None], realm: str, category: str) -> bool:
    """True if a purge notice's ``(realm, category)`` covers ``category`` of ``realm``."""
    return notice[0] in (None, realm) and notice[1] in (None, category)


class SizeTracker:
    """Keys and bytes of every category's actor state, followed from a headers-only watch of the
    whole bucket (the node agent holding the supervisor lease runs it), and bytes per bucket."""

    def __init__(self, session: Session, node_id: str) -> None:
        self.session = session
        self.node_id = node_id
        self.keys: dict[tuple[str, str], dict[str, int]] = {}  # (realm token, category token) → key → size
        self.buckets: dict[str, dict[str, int]] = {}
        self._sub: Any = None
        self._loaded: asyncio.Future[None] | None = None
        self._buckets_at = 0.0
        self._lock = asyncio.Lock()  # one start or stop at a time: the beat and a node's info both start it

    async def start(self, timeout: float = 10.0) -> None:
        """Start following, unless it already does (a bucket that does not exist yet is created,
        as a node may); return once the current keys are counted (`loaded`), or ``timeout``
        seconds have passed. Concurrent calls start one watch."""
        async with self._lock:
            if self._sub is None:
                kv = await bus.open_state(self.session.nc, self.session.config)
                js = self.session.nc.jetstream(timeout=bus.JS_TIMEOUT)
                self.keys = {}
                self._loaded = asyncio.get_running_loop().create_future()
                self._sub = await js.subscribe(f"{PREFIX}*.k.>", stream=kv._stream, cb=self._on_key,
                                               ordered_consumer=True, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                                               headers_only=True, inactive_threshold=bus.CONSUMER_INACTIVE)
                info = await self._sub.consumer_info()
                if not info.num_pending and not self._sub.delivered and not self._loaded.done():
                    self._loaded.set_result(None)
        assert self._loaded is not None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._loaded)
        except TimeoutError:
            log.warning("the sizes of actor state are still being counted after %gs", timeout)

    async def stop(self) -> None:
        """Stop following."""
        async with self._lock:
            if self._sub is not None:
                try:
                    await self._sub.unsubscribe()
                except Exception:  # the connection may be gone
                    pass
                self._sub = None

    async def rescan(self, notice: tuple[str | None, str | None] | None = None) -> None:
        """Follow again from the start (after a purge, which a watch does not see); the
        categories ``notice`` names are forgotten at once, so no sizes published meanwhile count them."""
        for realm, category in list(self.keys):
            if notice is None or covers(notice, subjects.unescape(realm), subjects.unescape(category)):
                del self.keys[(realm, category)]
        if self._sub is not None:
            await self.stop()
            await self.start()

    @property
    def running(self) -> bool:
        """True while it follows the bucket."""
        return self._sub is not None

    @property
    def loaded(self) -> bool:
        """True once the keys there were when it started following are counted."""
        return self._sub is not None and self._loaded is not None and self._loaded.done()

    async def _on_key(self, msg: Msg) -> None:
        parts = msg.subject[len(PREFIX):].split(".")
        if len(parts) == 4:
            headers = msg.headers or {}
            category = self.keys.setdefault((parts[0], parts[2]), {})
            if headers.get("KV-Operation") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers:
                category.pop(parts[3], None)
            else:
                try:
                    category[parts[3]] = int(headers.get("Nats-Msg-Size") or 0)
                except ValueError:
                    category[parts[3]] = 0
        if msg.metadata.num_pending == 0 and self._loaded is not None and not self._loaded.done():
            self._loaded.set_result(None)

    async def stats(self) -> StateStats:
        """Keys and bytes per category (the sealed size of values), bytes per bucket."""
        now = time.monotonic()
        if now - self._buckets_at > BUCKETS_SECONDS:
            self._buckets_at = now
            self.buckets = await bucket_sizes(self.session)
        categories: dict[str, dict[str, list[int]]] = {}
        for (realm, category), keys in self.keys.items():
            if keys:
                categories.setdefault(subjects.unescape(realm), {})[subjects.unescape(category)] = [
                    len(keys), sum(keys.values())]
        return StateStats(t=time.time(), node=self.node_id, categories=categories, buckets=dict(self.buckets))
