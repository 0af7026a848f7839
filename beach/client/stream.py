"""`Stream`: the items a generator handler yields, as they come (`ActorHandle.astream`, `stream`).

A streamed request is a format-3 request whose ``stream`` is the caller's window, in items. The
actor sends each item as the handler yields it — ``[2, True, '', item, uid, node, None, seq,
True]`` to the request's reply subject, with a reply subject of its own — and then the end
(``more`` False: its ``seq`` the number of items, ``ok`` and ``error`` the handler's outcome).
Flow control is the caller's: as its consumer takes items it tells the actor which it has taken
(``[seq]`` to an item's reply subject, every quarter window), and the actor waits while a whole
window is unread. A caller that stops reading (``break``, ``aclose``, its timeout) says so as a
caller that gives up on a request does (`beach.client.scope`): the producer stops.

Large data goes through the object store (`beach.bus.bodies`) as a request's and a reply's does:
the request's (stored by the caller, deleted when the stream ends), and an item too large for a
message (stored by the actor, read and deleted by the caller when its consumer takes it, and told
at once: the actor sends nothing more until its reader has taken such an item, so that one at most
is stored and unread).
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from nats.aio.msg import Msg

from beach import metering, tracing, wire
from beach.bus import bodies
from beach.bus.inbox import no_responders
from beach.client import routing
from beach.client.eager import start as eagerly
from beach.client.response import ActorResponse
from beach.client.runner import Background
from beach.client.session import Session
from beach.errors import ClosedError, StreamError, UsageError
from beach.wire import Failure

WINDOW = 64
"""Items an actor sends ahead of what its caller's consumer has taken, at most."""
CANCELLED = "cancelled"  # (a stream's outcome when its reader stopped: its span's)
CHECK = 1.0
"""Seconds between two looks at the directory while no item comes: is the actor producing it still there?"""


class Reader(Protocol):
    """What a stream asks of the handle it is read from (`beach.client.handle.ActorHandle`)."""

    _targets: routing.Targets
    _ident: str | None
    _realm: str
    _background: Background
    _streams: weakref.WeakSet[Stream]

    @property
    def session(self) -> Session: ...
    @property
    def category(self) -> str: ...
    def _no_actor(self) -> ActorResponse: ...


class Stream(AsyncIterator[Any]):
    """A streamed request's items, in the order yielded; ends when the handler ends. Raises
    `StreamError` (a `BeachError`) when the handler raised or failed, no actor answered, or no item
    came for ``timeout`` seconds. `aclose` stops the producer: ``async with handle.astream(...) as
    items`` calls it at the block's end, and a stream left unread is closed when it is collected
    (an ``async for``'s ``break`` calls nothing: Python's rule for async iterators)."""

    def __init__(self, handle: Reader, request_type: str, data: Any, timeout: float, key: Any, req_id: str,
                 window: int = WINDOW) -> None:
        self.handle = handle
        self.req_id = req_id
        self.request_type = request_type
        self.data = data
        self.timeout = timeout
        self.key = key
        self.window = window
        self.reply = ""
        self.uid: str | None = None  # the actor producing it, once its first message came
        self.node: str | None = None
        self._arrived: collections.deque[Msg | BaseException] = collections.deque()
        self._wake: asyncio.Future[None] | None = None
        self._taken = 0  # items handed out
        self._told = 0  # items the actor has been told were taken
        self._unread = 0  # items of the blocking face's current `batch`: handed out, not yet read
        self._credit_to = ""  # where to tell it (the last item's reply subject)
        self._seen = False  # its actor was seen in the directory (its leaving it is then its end)
        self.spans: tracing.Call | None = None
        self.trace: wire.TraceContext | None = None
        self._ended = False
        self._body: bodies.Outgoing | None = None  # its request's data, when stored (deleted at its end)
        self._failed: BaseException | None = None  # what ended it, after the items of a `batch`

    def start(self) -> None:
        """Send the request (on the loop's thread). Raises what makes it unsendable."""
        handle = self.handle
        session = handle.session
        if wire.ANSWERED not in session.view.reads:
            raise UsageError("a stream needs every node to read request format 3 (a node of the previous release "
                             "is live)")
        # one CLIENT span for the whole stream (the actor's SERVER span, its child, spans its items too)
        self.spans = tracing.call("stream", handle._realm, handle.category, self.request_type, self.req_id)
        self.trace = None if self.spans is None else self.spans.own()
        payload: bytes | None = wire.pack_request(self.req_id, self.request_type, self.data, handle._ident,
                                                  self.timeout, self.trace, stream=self.window)
        assert payload is not None
        if not session.fits(payload):  # its data through the object store, once stored
            self._body = session.outgoing(payload, f"data of request {self.request_type!r}", self.timeout)
            self._body.acquire()
            payload = None
        handle._streams.add(self)
        waiting = handle._targets.waiting()
        if waiting is None:
            self._go(payload)
        else:  # an actor host's view of the category is loading: sent once it is there
            waiting.add_done_callback(lambda _: self._later(payload))

    def _later(self, payload: bytes | None) -> None:
        if self._ended:
            return
        try:
            self._go(payload)
        except Exception as err:  # (the connection closed meanwhile): the reader hears it
            self._on_message(err)

    def _go(self, payload: bytes | None) -> None:
        """Route the request and send it (its data stored first when ``payload`` is None)."""
        handle = self.handle
        subject, _ = handle._targets.route(self.key, 0, set())
        self.reply = handle.session.inbox.expect(subject, _weakly(self), many=True)
        eagerly(self._send(subject, payload), handle._background)

    async def _send(self, subject: str, payload: bytes | None) -> None:
        """Send the request (its data stored first when ``payload`` is None)."""
        session = self.handle.session
        if payload is None:
            assert self._body is not None
            try:
                ref = await self._body.stored()
            except Exception as err:
                self._on_message(StreamError(Failure.BUS_UNAVAILABLE, f"{Failure.BUS_UNAVAILABLE.value}: the "
                                             f"request's data could not be stored: {err}"))
                return
            payload = wire.pack_referenced(self.req_id, self.request_type, ref, self.handle._ident, self.timeout,
                                           self.trace, stream=self.window)
        await session.inbox.send(subject, payload, self.reply, _weakly(self))

    def _on_message(self, outcome: Msg | BaseException) -> None:
        self._arrived.append(outcome)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def __aiter__(self) -> Stream:
        return self

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # dropped unread (an async for's break): its producer is told, as by aclose, on the loop
        if self._ended or not self.reply:
            return
        session, realm, reply = self.handle.session, self.handle._realm, self.reply
        if self.spans is not None:
            self.spans.end(CANCELLED, "cancelled: its reader dropped it", {"beach.stream.items": self._taken})
        try:
            session.runner.loop.call_soon_threadsafe(_abandon, session, realm, reply, self._body,
                                                     self.handle._background)
        except RuntimeError:  # (the loop is closed: so is the connection)
            pass

    async def batch(self, most: int) -> list[Any]:
        """The next item (waited for) and those that arrived after it, ``most`` at most; ``[]`` at
        its end. Raises what ends it (after the items that came before: at the next call). For the
        blocking face: one hop to the loop's thread per batch, not per item."""
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        items: list[Any] = []
        self._unread = 0  # (the previous batch has been read: its items are told now)
        self._credit(self._credit_to, now=True)
        try:
            while True:
                self._unread = len(items) + 1  # (this batch's items are told once read: at the next batch)
                items.append(await self.__anext__())
                if not (self._arrived and len(items) < most):
                    break
        except StopAsyncIteration:
            pass
        except BaseException as err:
            if not items:
                raise
            self._failed = err
        return items

    async def __anext__(self) -> Any:
        if self._ended:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not self._arrived:
            self._wake = loop.create_future()
            try:
                async with asyncio.timeout(max(0.0, min(CHECK, deadline - loop.time()))):
                    await self._wake
            except TimeoutError:
                await self._if_silent(loop.time() >= deadline)
            finally:
                self._wake = None
        outcome = self._arrived.popleft()
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, (ClosedError, StreamError)):
                outcome = StreamError(Failure.BUS_UNAVAILABLE, f"{Failure.BUS_UNAVAILABLE.value}: {outcome}")
            self._end(*_outcome(outcome))
            raise outcome
        if no_responders(outcome):
            response = self.handle._no_actor()
            self._end(metering.outcome(False, response.error), response.error)
            raise StreamError(response.failure, response.error)
        reply = wire.read_reply(outcome.data, outcome.subject)
        if isinstance(reply, wire.AnsweredReply):
            self.uid, self.node = reply.uid, reply.node
            if reply.more:
                data = reply.data if reply.body is None else await self._stored(reply.body)
                self._taken += 1
                self._credit_to = outcome.reply
                self._seen = self._seen or reply.uid in self.handle.session.view.actors
                # (an item in the object store is told at once: its producer waits for it)
                self._credit(outcome.reply, now=reply.body is not None)
                return data
            if reply.body is not None:  # the end of a stream of one item (a handler that is no generator)
                reply = wire.AnsweredReply(reply.ok, reply.error, await self._stored(reply.body), reply.uid,
                                           reply.node)
        self._end(metering.outcome(reply.ok, reply.error), reply.error)  # the end: the handler's outcome
        if not reply.ok:
            raise StreamError(Failure.of(reply.error), reply.error, reply.data)
        if isinstance(reply, wire.AnsweredReply) and reply.seq >= 0:
            raise StopAsyncIteration
        return reply.data  # a handler that is not a generator: its data is the one item (then the end)

    async def _if_silent(self, timed_out: bool) -> None:
        """No item came for a while: end the stream (`StreamError`) if the actor producing it has
        left the directory (its process or node died: the stream would be incomplete), or if
        ``timed_out``; else return (go on waiting)."""
        uid = self.uid
        here = uid is not None and uid in self.handle.session.view.actors
        self._seen = self._seen or here  # (gone: once seen in this client's view, which may lag a new actor)
        failed = None
        if self._seen and not here:
            failed = StreamError(Failure.NO_ACTOR, f"{Failure.NO_ACTOR.value}: the actor {uid} on node {self.node} "
                                 f"producing stream {self.request_type!r} is gone after {self._taken} items (its "
                                 f"process or node ended): the stream is incomplete")
        elif timed_out:
            failed = StreamError(Failure.TIMEOUT, f"{Failure.TIMEOUT.value}: no item of stream "
                                 f"{self.request_type!r} came in {self.timeout:g} s")
        if failed is not None:
            await self._close(*_outcome(failed))
            raise failed

    async def _stored(self, body: wire.BodyRef) -> Any:
        """An item's data, read from the object store (and deleted there); `StreamError` when it
        cannot be read (the stream ends)."""
        try:
            return await self.handle.session.incoming(body)
        except Exception as err:
            failed = StreamError(Failure.BUS_UNAVAILABLE, f"{Failure.BUS_UNAVAILABLE.value}: item {self._taken} of "
                                 f"stream {self.request_type!r} could not be read: {err}")
            await self._close(*_outcome(failed))
            raise failed from None

    def _credit(self, subject: str, now: bool = False) -> None:
        """Tell the actor how many items its reader has taken (read, for the blocking face): every
        quarter window, or ``now``."""
        taken = self._taken - self._unread
        if subject and taken > self._told and (now or taken - self._told >= max(1, self.window // 4)):
            self._told = taken
            self.handle._background.start(self._tell(subject, taken))

    async def _tell(self, subject: str, taken: int) -> None:
        try:
            await self.handle.session.publish(subject, wire.pack([taken]))
        except Exception:  # (the connection closed: the stream ends with it)
            pass

    def _end(self, outcome: str, text: str = "") -> None:
        """The stream ended with ``outcome`` (`beach.metering.outcome`, or ``cancelled``): its span
        ends, what it holds is let go."""
        self._ended = True
        if self.spans is not None:
            self.spans.end(outcome, text, {"beach.stream.items": self._taken})
        if self._body is not None:  # (its actor has read it by now, or never will)
            self._body.release()
            self._body = None
        if self.reply:
            self.handle.session.inbox.forget(self.reply)
        self.handle._streams.discard(self)

    async def aclose(self) -> None:
        """Stop reading: the actor's producer stops (nothing if the stream ended)."""
        await self._close(CANCELLED, "cancelled: its reader stopped")

    async def _close(self, outcome: str, text: str) -> None:
        if self._ended:
            return
        reply = self.reply
        self._end(outcome, text)
        if reply:
            await self.handle.session.tell_cancelled(self.handle._realm, reply)


def _outcome(err: BaseException) -> tuple[str, str]:
    """The outcome (`beach.metering.outcome`) and text a stream that ``err`` ended ends its span with."""
    if isinstance(err, StreamError):
        return metering.outcome(False, err.error), err.error
    return tracing.raised(err)


def _weakly(stream: Stream) -> Callable[[Msg | BaseException], None]:
    """``stream._on_message``, holding the stream weakly: a stream its reader dropped is collected
    (and closed: `Stream.__del__`) although its inbox entry is still there."""
    ref = weakref.ref(stream)

    def on_message(outcome: Msg | BaseException) -> None:
        found = ref()
        if found is not None:
            found._on_message(outcome)
    return on_message


def _abandon(session: Session, realm: str, reply: str, body: bodies.Outgoing | None, background: Background) -> None:
    """A stream collected unread: forget its inbox entry, let its request's stored data go, and
    tell its producer to stop."""
    session.inbox.forget(reply)
    if body is not None:
        body.release()
    eagerly(session.tell_cancelled(realm, reply), background)
