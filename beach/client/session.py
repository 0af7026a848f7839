"""A `Session`: one NATS connection, the directory view, and the loop they live on.

Clients (`beach.Beach`) and actor hosts each open one session; every handle made from them shares
it. Nothing here blocks: the blocking faces go through the session's `Runner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from beach import bus, metering, tracing, wire
from beach import loop as beach_loop
from beach.bus import bodies, kvwatch
from beach.bus.inbox import Inbox
from beach.client.runner import Runner
from beach.config import Config
from beach.errors import CLOSED, ClosedError, PayloadTooLarge, SealError
from beach.security import authority
from beach.security.seal import OVERHEAD
from beach.state.directory import SILENT, DirectoryView
from beach.wire import subjects

log = logging.getLogger("beach.bus")  # (the connection's)
CANCEL_WAIT = 5.0  # seconds `Session.unless_lost` waits for its work to end once cancelled
T = TypeVar("T")

# The monotonic deadline of the request the current handler serves (None outside handlers):
# requests made while serving it get no more than the time it has left.
current_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("beach_deadline", default=None)


def remaining(timeout: float | None) -> float | None:
    """The time budget for a new request: ``timeout`` capped by the inherited deadline, if any."""
    deadline = current_deadline.get()
    if deadline is None:
        return timeout
    left = max(0.0, deadline - time.monotonic())
    return left if timeout is None else min(timeout, left)


class Session:
    """The shared state behind a client or an actor host."""

    def __init__(self, config: Config, runner: Runner, nc: Client, view: DirectoryView, inbox: Inbox,
                 node_id: str | None = None, refusals: bus.Refusals | None = None) -> None:
        self.config = config
        self.refusals = refusals or bus.Refusals(config.nats.user)  # the server's permission errors
        self.runner = runner
        self.nc = nc
        self.view = view
        self.inbox = inbox
        self.node_id = node_id
        self.sealer = config.sealer
        self.lost: str | None = None  # why the server closed the connection for good, once it did
        self.lost_listeners: list[Callable[[str], None]] = []  # told that reason (the process must act)
        self.calls: dict[str, metering.Meter] = {}  # by realm: the requests its handles made

    def calls_in(self, realm: str) -> metering.Meter:
        """The meter of the requests this session's handles make in ``realm`` (`ActorHandle.arequest`)."""
        meter = self.calls.get(realm)
        if meter is None:
            meter = self.calls[realm] = metering.Meter()
        return meter

    @classmethod
    async def open(cls, config: Config, runner: Runner, name: str, node_id: str | None = None,
                   partial: bool = False, own: bool = False, **options: Any) -> Session:
        """Connect, open the directory buckets and load the view; raise `BusError` on failure. A
        node's process (``node_id`` given) opens the members and by-node buckets too, which it
        writes; with ``partial`` (an actor host, a node agent), its view holds only the categories
        its handles ask for (`DirectoryView.want`) and, with ``own`` (a node agent), node
        ``node_id``'s actors (the whole directory when asked: `DirectoryView.whole`).

        If the server later closes the connection for good, every call waiting on it and every
        later one raises `ClosedError` naming the server's reason, and ``lost_listeners`` hear it."""
        refusals = bus.Refusals(config.nats.user)
        opened: list[Session] = []  # the session, once made (the connection comes first)
        # spans exported as the OTEL_* variables say, where the application has not set that up itself
        tracing.configure(name.split()[0])

        def lost(reason: str) -> None:
            for session in opened:
                session._on_lost(reason)

        nc = await bus.connect(config, name, on_lost=lost, error_cb=refusals.error_cb, **options)
        try:
            actors_kv, nodes_kv = await bus.open_buckets(nc, config)
            members_kv, placed_kv = (None, None) if node_id is None else await bus.open_indexes(nc, config)
            with bus.translated("cannot load the directory from NATS"):
                view = DirectoryView(actors_kv, nodes_kv, lambda: nc.is_connected, members_kv, partial, placed_kv,
                                     node_id if own else None)
                await view.start()
                inbox = Inbox(nc, config.sealer)
                refusals.listeners.append(inbox.refused)
                await inbox.start()
            session = cls(config, runner, nc, view, inbox, node_id, refusals)
            opened.append(session)
            await nc.subscribe(subjects.BEACONS, cb=session._beacon)
            await nc.subscribe(subjects.LATE_MARKS, cb=session._late)
        except BaseException:
            await bus.close(nc)
            raise
        return session

    async def unless_lost(self, work: Awaitable[T]) -> T:
        """``work``'s result; or, if the server closes the connection for good first, ``work``
        cancelled and `ClosedError` naming the server's reason (for a tool that would otherwise wait
        for ever on a connection that is gone: ``beach logs --follow``)."""
        task = asyncio.ensure_future(work)
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def listener(reason: str) -> None:
            if not lost.done():
                lost.set_result(reason)

        if self.lost is not None:
            listener(self.lost)
        self.lost_listeners.append(listener)
        waiting: set[asyncio.Future[Any]] = {task, lost}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.lost_listeners.remove(listener)
            if not task.done():
                task.cancel()
                # (bounded: a cancellation the work dropped — Python 3.11's wait_for can, gh-86296 —
                # must not keep a tool running after Ctrl-C)
                await asyncio.wait({task}, timeout=CANCEL_WAIT)
                if not task.done():
                    log.warning("a tool's work did not stop %g s after it was cancelled: left behind", CANCEL_WAIT)
        if lost.done() and (not task.done() or task.cancelled() or task.exception() is not None):
            raise ClosedError(f"{CLOSED}: the NATS server closed it for good ({lost.result()})")
        if isinstance(task.exception(), ClosedError) and bus.lost_suffix(self.nc):  # (before closed_cb ran)
            raise ClosedError(CLOSED + bus.lost_suffix(self.nc))
        return task.result()

    def _on_lost(self, reason: str) -> None:
        self.lost = reason
        self.inbox.close(f"the NATS server closed it for good ({reason})")
        if not self.lost_listeners:  # a library client: its next call raises ClosedError saying so
            log.warning("the NATS server closed this beach connection for good (%s): every call now raises "
                        "ClosedError", reason)
        for listener in list(self.lost_listeners):
            listener(reason)

    async def _late(self, msg: Msg) -> None:
        """The lease holder's word that a node's beat is late (a body), or heard again (none):
        `subjects.late_subject`."""
        try:
            late = bool(self.unseal(msg))
        except (SealError, ValueError):  # not a node's
            return
        self.view.mark_late(subjects.unescape(msg.subject.rsplit(".", 1)[1]), late)

    @contextlib.asynccontextmanager
    async def silence(self, node_id: str, watch: bool = True) -> AsyncIterator[asyncio.Future[None]]:
        """A future that completes once node ``node_id``'s beat has gone unheard for `SILENT`
        seconds (counted from now), while the block runs; with ``watch`` False, one that never does."""
        loop = asyncio.get_running_loop()
        silent: asyncio.Future[None] = loop.create_future()
        if not watch:
            try:
                yield silent
            finally:
                silent.cancel()
            return

        def fire() -> None:
            if not silent.done():
                silent.set_result(None)

        timer = loop.call_later(SILENT, fire)

        async def beat(msg: Msg) -> None:
            nonlocal timer
            timer.cancel()
            timer = loop.call_later(SILENT, fire)

        sub = await self.nc.subscribe(subjects.live_subject(node_id), cb=beat)
        try:
            yield silent
        finally:
            timer.cancel()
            silent.cancel()
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone
                pass

    def hold(self, realm: str, category: str) -> None:
        """Have this session's view hold the actors of ``category`` in ``realm`` (an actor host's
        holds only what its actors' handles ask for: `DirectoryView.want`); off the loop's thread,
        wait until they are loaded (on it, calls wait for them). Raises `CategoryError` for a
        category beach cannot route."""
        if not self.view.partial and self.view.switching is None:
            return
        if self.runner.in_loop_thread():
            self.view.want(realm, category)
            return

        def start(done: Callable[[Any], None]) -> None:
            try:
                waiting = self.view.want(realm, category)
            except BaseException as err:
                done(err)
                return
            if waiting is None:
                done(None)
            else:
                waiting.add_done_callback(lambda _: done(None))

        with contextlib.suppress(ClosedError):  # (closed: every call of the handle says so)
            self.runner.call(start, kvwatch.READY_SECONDS)

    async def follow_load(self) -> None:
        """Have the view follow every node's load figures from now on (`DirectoryView.follow_load`)."""
        await self.view.follow_load(self.nc, self.unseal)

    async def _beacon(self, msg: Msg) -> None:
        """A node's beacon (`subjects.beacon_subject`): JetStream cannot take its writes, and why."""
        try:
            reason = self.unseal(msg).decode()
        except (SealError, ValueError):  # not a node's (refused by the seal, or not text)
            return
        self.view.beacon(subjects.unescape(msg.subject.rsplit(".", 1)[1]), reason)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the view and drain the connection (closing it if the drain takes over ``timeout``)."""
        try:
            await beach_loop.within(self.view.stop(), timeout)
        except (TimeoutError, Exception):
            pass
        await bus.close(self.nc, timeout)
        self.inbox.close()  # after the drain, which delivers the replies already on their way

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Publish ``payload`` (sealed, with a key) on ``subject``; raise `ClosedError` once the
        connection is closed, `BusError` when NATS takes no more (a full reconnect buffer)."""
        if self.sealer is not None:
            payload = self.sealer.seal(f"{subject} {reply}", payload)
        try:
            await self.nc.publish(subject, payload, reply=reply)
        except nats.errors.Error as err:
            reason = self.inbox.reason or bus.lost_suffix(self.nc)
            raise bus.failure(err, f"cannot publish to {subject}", reason) from None

    def unseal(self, msg: Msg, fresh: bool = True) -> bytes:
        """The body of a received message: opened (and checked fresh, for live messages) when
        messages are sealed. Raises `SealError` for one that must be refused."""
        if self.sealer is None:
            return msg.data
        return self.sealer.open(f"{msg.subject} {msg.reply or ''}", msg.data, fresh)

    def read_only(self) -> str | None:
        """Why this session may not run admin operations, or None if it may (one rule for the
        library and every tool: `beach.security.authority.read_only`, with the nodes' entries)."""
        return authority.read_only(self.config, self.view.nodes.values())

    def require_admin(self, what: str) -> None:
        """Raise `UsageError` saying why ``what`` needs rights this session lacks (before any of it
        is sent)."""
        authority.require_admin(self.config, what, self.view.nodes.values())

    def open_notice(self) -> str | None:
        """The one line to say on an open cluster (louder when NATS listens beyond loopback), or None."""
        return authority.open_notice(self.config, self.view.nodes.values(), bus.exposed(self.nc))

    def fits(self, payload: bytes) -> bool:
        """True if ``payload`` may travel in one message (sealed, with a key): not over the server's
        max_payload, nor the config's ``payloads.inline_bytes``; a larger request's or reply's data
        goes through the object store (`outgoing`)."""
        limit = self.nc.max_payload or 0
        inline = self.config.payloads.inline_bytes
        if inline and (not limit or inline < limit):
            limit = inline
        return not limit or len(payload) + (OVERHEAD if self.sealer is not None else 0) <= limit

    def outgoing(self, envelope: bytes, what: str, ttl: float | None) -> bodies.Outgoing:
        """Start storing the data of ``envelope`` (a request or a reply too large to travel inline:
        see `fits`) in the object store, for messages that carry it by reference, living ``ttl``
        seconds at most. Raises `PayloadTooLarge` as `check_large` does: before anything is stored."""
        data = self.check_large(envelope, what)
        return bodies.Outgoing(self.nc, data, bodies.ttl_for(ttl), self.runner.loop)

    def check_large(self, envelope: bytes, what: str) -> memoryview:
        """The data of ``envelope`` (too large to travel inline), to be stored; raise `PayloadTooLarge`
        when it is over ``payloads.max_bytes``, or a node of the previous release is live (it reads no
        payload references, so nothing is sent larger than the server's max_payload)."""
        if wire.ANSWERED not in self.view.reads:
            raise PayloadTooLarge(len(envelope), self.nc.max_payload, what, "the NATS server's max_payload (a node of "
                                  "the previous release is live: it reads no payload references)")
        data = wire.data_of(envelope)
        bodies.check_limit(len(data), self.config.payloads.max_bytes, what)
        return data

    async def incoming(self, body: wire.BodyRef, delete: bool = True) -> Any:
        """The data a message carries by reference (``body``), read from the object store and
        decoded, then deleted there when ``delete`` (its reader is the last). Raises `BusError`
        when it cannot be read, ``ValueError`` when it does not decode, `PayloadTooLarge` when it
        says it is larger than this process takes (``payloads.max_bytes``), before reading any of it."""
        try:  # (the size is the sender's word: checked before a buffer of that size is made for it)
            bodies.check_limit(body.size, self.config.payloads.max_bytes, f"the payload {body.name}")
            return wire.unpack_data(await bodies.get(self.nc, body))
        finally:
            if delete:
                try:
                    await bodies.delete(self.nc, body)
                except Exception as err:  # its TTL deletes it
                    log.warning("could not delete payload %s after reading it: %s", body.name, err)

    async def tell_cancelled(self, realm: str, reply: str) -> None:
        """Tell the actor serving the attempt (or stream) whose reply subject is ``reply`` that its
        caller gave up: its host cancels the handler (`beach.client.scope`). Nothing if the connection
        is gone (nobody to tell: the actor's deadline, or its wait for a reader, ends it)."""
        try:
            await self.publish(subjects.cancel_subject(realm), wire.pack([reply]))
        except Exception:
            pass

    def check_size(self, payload: bytes, what: str) -> None:
        """Raise `PayloadTooLarge` if ``payload`` (sealed, with a key) exceeds the server's max_payload."""
        limit = self.nc.max_payload
        size = len(payload) + (OVERHEAD if self.sealer is not None else 0)
        if limit and size > limit:
            raise PayloadTooLarge(size, limit, what)
