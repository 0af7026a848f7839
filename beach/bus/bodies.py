"""Large bodies: a request's or a reply's payload too large for one NATS message, through the
JetStream object store.

A body over the inline limit (the server's ``max_payload``, or the config's lower
``payloads.inline_bytes``) is stored in the bucket `BUCKET` — a stream laid out as NATS's object
store (``OBJ_beach_payloads``, chunks on ``$O.beach_payloads.C.<id>``) — and the message carries a
`beach.wire.BodyRef` instead: the object's id, its size, its chunk size and the one-time AES-256-GCM
key it is encrypted with. The message is sealed as every message is, so only its receiver can open
the body, although chunk subjects cannot be scoped per user (NATS permissions cannot tell one
client's object from another's). How a body is cut, encrypted and put back together (each chunk on
its own, its index the nonce; a chunk missing, swapped or added is an error, never a wrong body) is
`beach.wire.chunks`, with no I/O; this module moves the chunks.

Objects carry a per-message TTL (``Nats-TTL``: from the request's deadline) and the stream a
`MAX_AGE`, so nothing outlives a crashed sender or receiver; whoever knows that a body is no longer
needed deletes it at once (`delete`: a purge of its subject).

Chunks are written and read with this module's own pipelined code: a write keeps `WINDOW` chunks
in flight and counts their acks on one subscription (nats-py's object store waits for each ack), a
read takes them from an ordered push consumer straight into the body's buffer (nats-py's
concatenates ``bytes``: quadratic).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from beach.bus.connection import JS_TIMEOUT, auto_replicas, translated
from beach.config import Config
from beach.errors import BusError, PayloadTooLarge
from beach.wire import BodyRef
from beach.wire.chunks import Opened, Sealed

BUCKET = "beach_payloads"
STREAM = f"OBJ_{BUCKET}"
WINDOW = 32  # chunks written and not yet acknowledged, at most (8 MiB)
MAX_AGE = 24 * 3600.0  # seconds the stream keeps anything, whatever its TTL: a backstop
MIN_TTL = 10.0  # seconds an object lives at least (a TTL is whole seconds; reading takes time)
IDLE = 10.0  # seconds a read or a write waits for the next chunk or ack before it gives up


def chunk_subject(name: str) -> str:
    """The subject of object ``name``'s chunks."""
    return f"$O.{BUCKET}.C.{name}"


async def create(nc: Client, config: Config) -> None:
    """Create the bucket if it does not exist (nodes do, at start). Raises `BusError` if NATS refuses."""
    js = nc.jetstream(timeout=JS_TIMEOUT)
    with translated(f"cannot set up the payload store {BUCKET}"):
        try:
            await js.stream_info(STREAM)
            return
        except NotFoundError:
            pass
        replicas = config.nats.kv_replicas or auto_replicas(nc)
        try:
            await js.add_stream(StreamConfig(
                name=STREAM, description="beach: large request and reply bodies, each for one message",
                subjects=[f"$O.{BUCKET}.C.>", f"$O.{BUCKET}.M.>"], storage=StorageType.FILE,
                num_replicas=replicas, discard=DiscardPolicy.NEW, max_age=MAX_AGE, allow_rollup_hdrs=True,
                allow_direct=True, allow_msg_ttl=True))
        except Exception:  # another node created it meanwhile
            await js.stream_info(STREAM)


def ttl_for(seconds: float | None) -> int:
    """An object's TTL in whole seconds: ``seconds`` (the time its message can still be read: the
    request's deadline) rounded up, and at least `MIN_TTL`; `MAX_AGE` for None."""
    if seconds is None:
        return int(MAX_AGE)
    return max(int(MIN_TTL), math.ceil(seconds) + int(MIN_TTL))


def check_limit(size: int, limit: int, what: str) -> None:
    """Raise `PayloadTooLarge` if a body of ``size`` bytes is over the config's ``limit``
    (``payloads.max_bytes``): before anything is stored or sent."""
    if size > limit:
        raise PayloadTooLarge(size, limit, what, "the limit of payloads.max_bytes")


async def put(nc: Client, body: bytes | memoryview, ttl: int) -> BodyRef:
    """Store ``body`` encrypted with a new key, in chunks that live ``ttl`` seconds; its reference.
    Raises `BusError` if NATS refuses or stops answering (what was stored is deleted)."""
    name = os.urandom(16).hex()
    subject = chunk_subject(name)
    sealed = Sealed(name, body)
    size, chunks = sealed.ref.size, sealed.ref.chunks
    acked = 0
    failed: list[str] = []
    moved = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal acked
        if msg.data.startswith(b'{"error"') or (msg.headers and msg.headers.get("Status")):
            failed.append(msg.data.decode(errors="replace") or str(msg.headers))
        acked += 1
        moved.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_ack)
    headers = {"Nats-TTL": f"{ttl}s"}
    try:
        with translated(f"cannot store a payload of {size} bytes in {BUCKET}"):
            for index, part in enumerate(sealed.chunks()):
                while index - acked >= WINDOW and not failed:
                    moved.clear()
                    await _wait(moved, "an acknowledgement of a stored chunk")
                if failed:
                    break
                await nc.publish(subject, part, reply=inbox, headers=headers)
            while acked < chunks and not failed:
                moved.clear()
                await _wait(moved, "an acknowledgement of a stored chunk")
    except BaseException:
        await _forget(nc, name)
        raise
    finally:
        await sub.unsubscribe()
    if failed:
        await _forget(nc, name)
        raise BusError(f"cannot store a payload in {BUCKET}: JetStream refused a chunk: {failed[0]}")
    return sealed.ref


async def get(nc: Client, ref: BodyRef) -> bytearray:
    """The body ``ref`` names, read and decrypted into one buffer. Raises `BusError` when it is
    gone (deleted, expired), damaged, or NATS stops answering, or if ``ref`` does not add up."""
    opened = Opened(ref)
    js = nc.jetstream(timeout=JS_TIMEOUT)
    with translated(f"cannot read a payload of {ref.size} bytes from {BUCKET}"):
        try:  # (said at once, rather than after a wait for chunks that will not come)
            await js.get_last_msg(STREAM, chunk_subject(ref.name))
        except NotFoundError:
            raise BusError(f"the payload {ref.name} is gone from {BUCKET} (deleted, or expired: its sender's "
                           f"deadline passed)") from None
        # (nats-py's default pending limits: a lower one drops chunks the ordered consumer does not
        # see missing; the server's flow control keeps what is in flight bounded)
        sub = await js.subscribe(chunk_subject(ref.name), stream=STREAM, ordered_consumer=True)
        try:
            for index in range(ref.chunks):
                try:
                    msg = await sub.next_msg(timeout=IDLE)
                except TimeoutError:
                    raise BusError(f"NATS stopped sending the payload {ref.name} from {BUCKET} (chunk {index + 1} "
                                   f"of {ref.chunks}; deleted or expired meanwhile?)") from None
                opened.add(msg.data)
        finally:
            await sub.unsubscribe()
    return opened.body()


async def delete(nc: Client, ref: BodyRef) -> None:
    """Delete the body ``ref`` names (nothing if it is gone already). Raises `BusError`."""
    with translated(f"cannot delete the payload {ref.name} from {BUCKET}"):
        await _purge(nc, ref.name)


async def _forget(nc: Client, name: str) -> None:
    """Delete what a failed write stored, if NATS lets us (else its TTL does)."""
    try:
        await _purge(nc, name)
    except Exception:
        pass


async def _purge(nc: Client, name: str) -> None:
    js = nc.jetstream(timeout=JS_TIMEOUT)
    try:
        await js.purge_stream(STREAM, subject=chunk_subject(name))
    except NotFoundError:
        pass


async def _wait(event: asyncio.Event, what: str) -> None:
    try:
        async with asyncio.timeout(IDLE):
            await event.wait()
    except TimeoutError:
        raise BusError(f"NATS sent no {what} in {IDLE:g} s") from None


Done = Callable[[BaseException | None], None]
_running: set[asyncio.Task[None]] = set()  # (a task nobody awaits must be kept from the collector)


def _background(work: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> None:
    task = loop.create_task(work)
    _running.add(task)
    task.add_done_callback(_running.discard)


class Outgoing:
    """A body a sender stores once for every message that carries it (a call's attempts, each of
    `requestFromAll` 's), and deletes when the last of them is done with it (`release`)."""

    def __init__(self, nc: Client, body: bytes | memoryview, ttl: int, loop: asyncio.AbstractEventLoop) -> None:
        self.nc = nc
        self.loop = loop
        self.ref: BodyRef | None = None
        self.error: BaseException | None = None
        self.users = 0
        self.abandoned = False  # every user released it before it was stored: deleted once it is
        self._waiting: list[Done] = []
        _background(self._store(body, ttl), loop)

    async def _store(self, body: bytes | memoryview, ttl: int) -> None:
        try:
            self.ref = await put(self.nc, body, ttl)
        except BaseException as err:  # (told to every waiter, as their outcome)
            self.error = err
        finally:
            del body  # (the encoded body is not kept once stored)
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            done(self.error)
        if self.ref is not None and self.abandoned:
            await self._delete()

    def when_stored(self, done: Done) -> None:
        """Call ``done(None)`` once stored (now if it is), or ``done(error)`` if it could not be."""
        if self.ref is not None or self.error is not None:
            done(self.error)
        else:
            self._waiting.append(done)

    async def stored(self) -> BodyRef:
        """Its reference, once stored; raises what storing it raised."""
        if self.ref is None and self.error is None:
            waiter: asyncio.Future[None] = self.loop.create_future()

            def wake(_: BaseException | None) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            self.when_stored(wake)
            await waiter
        if self.error is not None:
            raise self.error
        assert self.ref is not None
        return self.ref

    def acquire(self) -> None:
        """One more message that waits for its reply carries it (its sender deletes it: `release`)."""
        self.users += 1

    def release(self) -> None:
        """A message that carried it is done with it: the last one deletes it (once stored). A body
        nobody acquires (a shot's, a broadcast's) is deleted by its reader, or by its TTL."""
        self.users -= 1
        if self.users:
            return
        if self.ref is not None:
            _background(self._delete(), self.loop)
        else:
            self.abandoned = True

    async def _delete(self) -> None:
        assert self.ref is not None
        try:
            await delete(self.nc, self.ref)
        except Exception:  # its TTL deletes it
            pass

