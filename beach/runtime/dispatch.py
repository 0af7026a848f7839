"""`Dispatcher`: serves one actor's requests — from the NATS message to the reply.

Each message is handed on at once (nats-py runs a subscription's callbacks one at a time, and a
slow callback makes the server drop messages). Requests in progress are bounded per actor; past
the bound a request is answered ``'busy'`` at once so the caller can try another actor, and a
reply-less message (a broadcast, a plain shot) waits its turn in a bounded backlog. A request is
checked for trust, run by its handler unless its deadline passed first (then it gets no reply:
the caller has given up), and its return or exception becomes the reply. A request is one turn of
the actor's state (`beach.state.actorstate`): what the handler wrote is committed after it returns
and before the reply goes out; one that raises commits nothing.

Every message is counted once in the dispatcher's `Meter`, under the category it was addressed to
and its request type (``other`` for a type the actor does not handle), with its outcome; a request
that reached its handler also with its duration, from its arrival to its reply. Where a request is
served, it runs in the span of the trace context it carried (`beach.tracing.serve`), ended with
the same outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg

from beach import logs, metering, tracing, wire
from beach.actor import ActorRequest
from beach.client import eager
from beach.client.runner import Background
from beach.client.scope import Scope, current_scope
from beach.client.session import Session, current_deadline
from beach.config import BacklogConfig
from beach.errors import BeachError, PayloadTooLarge, SealError, StateError
from beach.runtime import trace
from beach.runtime.replycache import ReplyCache, Result
from beach.runtime.workers import WorkerPool
from beach.state.actorstate import StateStore, Turn, current_turn
from beach.wire import subjects

log = logging.getLogger("beach.runtime")


MAX_INFLIGHT_ASYNC = 1000
MAX_INFLIGHT_SYNC = 64
COUNTERS = ("processed", "busy", "expired", "exceptions", "unauthorized", "invalid", "dropped", "refused", "conflicts",
            "cancelled")
_EXPIRED = object()
_DONE = object()  # (a sync generator's end, handed back from its worker thread)
_GENERATORS = (types.GeneratorType, types.AsyncGeneratorType)  # what a generator handler returns


class _Streaming:
    """A streamed request being answered: where its items go, how far its reader may lag (``window``
    items), how long to wait for it to read (``wait`` seconds, its per-item timeout), and how many
    were sent (the end says so)."""

    __slots__ = ("reply", "window", "wait", "count")

    def __init__(self, reply: str, window: int, wait: float | None) -> None:
        self.reply = reply
        self.window = window
        self.wait = wait if wait else 30.0
        self.count = -1  # items sent (-1: its handler is no generator, so its reply is the one item)


class _Waker:
    """Sets ``event`` when the request is cancelled (a `Scope` cancels it as it cancels a call)."""

    __slots__ = ("event",)

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def cancel(self, why: str) -> None:
        self.event.set()


def _next(generator: Any) -> Any:
    """The next item of a sync generator, or `_DONE` (run in a worker thread)."""
    return next(generator, _DONE)
# Outcomes of a request that never reached its handler: counted, but not timed.
_NOT_RUN = frozenset(metering.FAILURES[kind] for kind in (wire.UNAUTHORIZED, wire.UNSUPPORTED))

# Worker thread id → (actor uid, request type) while a def handler runs there, for `stacks`.
SERVING: dict[int, tuple[str, str]] = {}


def _run_sync(handler: Callable[..., Any], request: ActorRequest, deadline: float | None) -> Any:
    if deadline is not None and time.monotonic() >= deadline:
        return _EXPIRED
    ident = threading.get_ident()
    SERVING[ident] = (request.dst, request.req)
    try:
        return handler(request)
    finally:
        del SERVING[ident]


class Dispatcher:
    """The requests of actor ``uid``: its handlers by request type, the bound on requests in
    progress (``max_concurrent``, else a default that depends on whether handlers are ``def``),
    the backlog, the trusted idents, the optional reply cache, and the counters the tools show.

    ``context`` is the actor's (each request runs in a copy of it); ``state`` commits each request's
    turn; ``unsupported`` logs a request of a type nobody handles; ``report`` records a handler's
    traceback as the actor's last error.
    """

    def __init__(self, uid: str, session: Session, pool: WorkerPool, context: contextvars.Context, *,
                 state: StateStore, trusted: set[str], max_inflight: int | None, backlog: BacklogConfig,
                 reply_cache: int, unsupported: Callable[[str], None], report: Callable[[str], None],
                 realm: str = "") -> None:
        self.uid = uid
        self.realm = realm
        self.session = session
        self.state = state
        self.pool = pool
        self.context = context
        self.trusted = trusted
        self.max_inflight = max_inflight
        self.backlog = backlog
        self.replies = ReplyCache(reply_cache) if reply_cache > 0 else None
        self._unsupported = unsupported
        self._report = report
        self.handlers: dict[str, Callable[[ActorRequest], Any]] = {}
        self._async_handlers: set[Callable[..., Any]] = set()
        self._async_generators: set[Callable[..., Any]] = set()
        self.bound = max_inflight or MAX_INFLIGHT_ASYNC
        self.inflight = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.meter = metering.Meter()
        # The subjects it subscribes to → the category a request on one is counted under (set by
        # its runtime with its subscriptions): a request counts once, in one category.
        self.categories: dict[str, str] = {}
        self.category = metering.OTHER  # for a subject not in that map
        self._waiting: deque[tuple[Msg, float]] = deque()  # reply-less messages past the bound
        self._waiting_bytes = 0
        # requests being served whose callers may cancel them (format 3), by their reply subject
        self.serving: dict[str, Scope] = {}
        self._background = Background()
        self.idle = asyncio.Event()
        self.idle.set()

    # ---------------------------------------------------------------- handlers

    def handle(self, request_type: str, func: Callable[[ActorRequest], Any]) -> Callable[..., Any] | None:
        """Serve ``request_type`` with ``func``; return the handler it replaces, if any."""
        previous = self.handlers.get(request_type)
        self.handlers[request_type] = func
        self._set_bound()
        return previous

    def unhandle(self, request_type: str) -> bool:
        """Stop serving ``request_type``; True if it was served."""
        removed = self.handlers.pop(request_type, None) is not None
        self._set_bound()
        return removed

    def _set_bound(self) -> None:
        self._async_handlers = {h for h in self.handlers.values() if inspect.iscoroutinefunction(h)}
        # (an async generator runs on the loop: calling it runs nothing, its items are awaited)
        self._async_generators = {h for h in self.handlers.values() if inspect.isasyncgenfunction(h)}
        # Sync handlers hold a worker thread each, so they get the smaller default bound.
        sync = len(self._async_handlers) + len(self._async_generators) < len(self.handlers)
        self.bound = self.max_inflight or (MAX_INFLIGHT_SYNC if sync else MAX_INFLIGHT_ASYNC)

    def load(self) -> dict[str, Any]:
        """The figures the tools show: requests in progress, their bound, messages waiting, the
        request types served, the counters, and the meter's rows (`Meter.snapshot`)."""
        return {"inflight": self.inflight, "bound": self.bound, "waiting": len(self._waiting),
                "handlers": sorted(self.handlers), **self.counters, "meter": self.meter.snapshot()}

    def _count(self, msg: Msg, outcome: str, request_type: str | None = None) -> None:
        """Count a message that was not served (busy, dropped, refused, invalid)."""
        if request_type is None and outcome != metering.REFUSED:  # a sealed one that did not open has no type
            request_type = wire.request_type(msg.data)
        self.meter.add(self.categories.get(msg.subject, self.category), self._type(request_type), outcome)

    def _type(self, request_type: str | None) -> str:
        """The request type label: the type itself if the actor handles it, else ``other``."""
        return request_type if request_type is not None and request_type in self.handlers else metering.OTHER

    async def cancel(self) -> None:
        """Cancel the requests still in progress (the actor stops)."""
        await self._background.cancel()

    # ---------------------------------------------------------------- serving

    async def on_msg(self, msg: Msg) -> None:
        """The subscriptions' callback: admit ``msg`` (or answer busy, or queue it) and start it."""
        # Runs inside nats-py's one-at-a-time callback loop: hand off at once, never block here.
        received = time.monotonic()
        session = self.session
        if session.sealer is not None:
            try:  # at arrival, so that a message waiting its turn does not age out of the replay window
                msg.data = session.unseal(msg)
            except SealError:  # tampered, replayed or not sealed: counted, never run, never answered
                self.counters["refused"] += 1
                self._count(msg, metering.REFUSED)
                return
        if self.inflight >= self.bound:
            if msg.reply:  # the caller hears "busy" at once and can try another actor
                self.counters["busy"] += 1
                self._count(msg, metering.FAILURES[wire.BUSY])
                await session.publish(msg.reply, wire.pack_reply(False, wire.BUSY, {"uid": self.uid},
                                                                 *self._signature(wire.answered(msg.data))))
            elif (len(self._waiting) >= self.backlog.messages
                  or self._waiting_bytes + len(msg.data) > self.backlog.bytes):
                self.counters["dropped"] += 1  # bounded: a burst must not exhaust the host's memory
                self._count(msg, metering.DROPPED)
            else:  # a broadcast or a shot: nobody to tell, so it waits its turn instead
                self._waiting.append((msg, received))
                self._waiting_bytes += len(msg.data)
                self.idle.clear()
            return
        self.inflight += 1
        self.idle.clear()
        try:
            self._started(msg, eager.start(self._serve(msg, received), self._background, self.context.copy()))
        except (Exception, asyncio.CancelledError):  # _serve answers handler errors itself: a bug
            # escaping into nats-py's callback loop would end this subscription (a CancelledError does)
            log.exception("actor %s failed to serve a message", self.uid)

    async def _serve(self, msg: Msg, received: float) -> None:
        try:
            answered = False  # (a request that does not decode is answered in format 1)
            stream: _Streaming | None = None
            try:
                request = wire.unpack_request(msg.data)
            except ValueError as err:
                self.counters["invalid"] += 1
                self._count(msg, metering.FAILURES[wire.INVALID_REQUEST], metering.OTHER)
                result: Result = wire.Reply(False, wire.INVALID_REQUEST, {"reason": str(err)})
            else:
                answered = isinstance(request, wire.AnsweredRequest)
                category = self.categories.get(msg.subject, self.category)
                serving = tracing.serve(request.trace, self.realm, category, request.req, request.id, self.uid,
                                        self.session.node_id, bool(msg.reply))
                # the data of a shot read by reference: its one reader deletes it (a request's, its
                # caller: a retry reads it again; a broadcast's, its TTL: it has many readers)
                last_reader = not msg.reply and not msg.subject.startswith(subjects.BROADCASTS)
                scope = None
                handler = self.handlers.get(request.req)
                if answered and msg.reply:  # (a caller that sends format 3 says when it gives up)
                    scope = self.serving[msg.reply] = Scope(handler in self._async_handlers
                                                            or handler in self._async_generators)
                    if isinstance(request, wire.AnsweredRequest) and request.stream > 0:
                        stream = _Streaming(msg.reply, request.stream, request.ttl)
                try:
                    result = await self._dispatch(request, handler, received, last_reader, scope, stream)
                finally:
                    if scope is not None:
                        del self.serving[msg.reply]
                outcome = self._measure(category, request.req, result, received)
                if serving is not None:
                    serving.end(outcome, "" if result is None else result.error)
            if result is not None and msg.reply:
                ttl = None if not answered else request.ttl  # (how long its caller waits: its data's TTL)
                await self._reply(msg.reply, result, answered, ttl, -1 if stream is None else stream.count)
        finally:
            if self._waiting:  # hand this slot to the oldest message that waits for one
                waiting = self._waiting.popleft()
                self._waiting_bytes -= len(waiting[0].data)
                # (in a context of its own, not this request's: its log fields and span)
                self._started(waiting[0], self._background.start(self._serve(*waiting), self.context.copy()))
            else:
                self.inflight -= 1
                if not self.inflight:
                    self.idle.set()

    def _started(self, msg: Msg, task: asyncio.Task[Any] | None) -> None:
        """``msg`` is being served by ``task`` (None: served already): the task a cancellation of an
        async handler's request cancels."""
        if task is not None and msg.reply:
            scope = self.serving.get(msg.reply)
            if scope is not None and scope.asynchronous:
                scope.task = task

    def cancel_request(self, reply: str) -> bool:
        """The caller of the request whose reply subject is ``reply`` gave up: cancel it (its async
        handler's task, its calls in flight; a def handler sees it). False if it is not served here."""
        scope = self.serving.get(reply)
        if scope is None:
            return False
        self.counters["cancelled"] += 1
        scope.cancel("cancelled: its caller gave up")
        return True

    def _measure(self, category: str, request_type: str, result: Result, received: float) -> str:
        """Count a request that was dispatched, by its result; time it if its handler ran. Return
        its outcome."""
        label = self._type(request_type)
        if result is None:
            self.meter.add(category, label, metering.EXPIRED)
            return metering.EXPIRED
        outcome = metering.outcome(result.ok, result.error)
        ran = outcome not in _NOT_RUN
        self.meter.add(category, label, outcome, time.monotonic() - received if ran else None)
        return outcome

    async def _dispatch(self, request: wire.Request, handler: Callable[[ActorRequest], Any] | None, received: float,
                        last_reader: bool = False, scope: Scope | None = None,
                        stream: _Streaming | None = None) -> Result:
        # What is logged from here on (the handler's lines, its failure) carries the request's id.
        # This task serves this one request, in a context of its own (a copy made for each message):
        # what is set here and in `_run` needs no reset.
        logs.current_request.set(request.id)
        if self.trusted and request.ident not in self.trusted:
            self.counters["unauthorized"] += 1
            return wire.Reply(False, wire.UNAUTHORIZED, {})
        if handler is None:
            self._unsupported(f"request type not supported: {request.req!r}")
            return wire.Reply(False, wire.UNSUPPORTED, {})
        deadline = None if request.ttl is None else received + request.ttl
        data = request.data
        if isinstance(request, wire.AnsweredRequest) and request.body is not None:  # in the object store
            try:
                data = await self.session.incoming(request.body, delete=last_reader)
            except PayloadTooLarge as err:  # larger than this host takes: another attempt would be too
                log.warning("actor %s refused request %r: %s", self.uid, request.req, err)
                return wire.Reply(False, wire.INVALID_REQUEST, {"reason": str(err)})
            except (BeachError, ValueError) as err:
                log.warning("actor %s: the data of request %r could not be read: %s", self.uid, request.req, err)
                return wire.Reply(False, f"{wire.BUS_UNAVAILABLE}: the request's data could not be read: {err}", {})
        actor_request = ActorRequest(request.ident, request.id, request.req, self.uid, data)
        if self.replies is None or stream is not None:
            return await self._run(handler, actor_request, deadline, scope, stream)
        return await self.replies.run_once(request.id, lambda: self._run(handler, actor_request, deadline, scope))

    async def _run(self, handler: Callable[..., Any], request: ActorRequest, deadline: float | None,
                   scope: Scope | None = None, stream: _Streaming | None = None) -> Result:
        """Run the handler unless the request's deadline passed before it started (then no reply:
        the caller has given up); turn its return or its exception into a reply, committing what
        it wrote to the actor's state first (the reply may then become ``conflict``)."""
        if deadline is not None and time.monotonic() >= deadline:
            self.counters["expired"] += 1
            return None
        # (a stream's ttl is the longest wait between two items: its calls inherit no deadline from it)
        current_deadline.set(None if stream is not None else deadline)
        current_scope.set(scope)
        turn = Turn(request.id)
        current_turn.set(turn)
        try:
            if handler in self._async_handlers:
                ret = await handler(request)
            elif handler in self._async_generators:
                ret = handler(request)
            else:
                run = contextvars.copy_context().run
                ret = await self.pool.run(run, _run_sync, handler, request, deadline)
                if ret is _EXPIRED:  # waited for a worker thread past its deadline
                    self.counters["expired"] += 1
                    turn.finish()
                    return None
            if isinstance(ret, _GENERATORS):  # a generator handler: its items
                ret = await self._items(ret, stream, scope)
                if ret is _EXPIRED:  # its reader went away: the generator was closed
                    turn.finish()
                    return None
        except (Exception, asyncio.CancelledError, SystemExit, KeyboardInterrupt) as err:
            turn.finish()  # what it wrote is dropped
            # A handler's CancelledError, sys.exit() or KeyboardInterrupt is its own failure: it must
            # neither end this subscription nor take the shared host down. Only a real cancellation
            # of this task (the actor stopping) goes on up.
            task = asyncio.current_task()
            if isinstance(err, asyncio.CancelledError) and scope is not None and scope.cancelled \
                    and task is not None and task is scope.task and task.cancelling():
                task.uncancel()  # its caller gave up: no reply (nobody waits for it), nothing committed
                return None
            if isinstance(err, asyncio.CancelledError) and task is not None and task.cancelling():
                raise
            if turn.unavailable is not None and err is turn.unavailable:
                # its state could not be read (the bus has no quorum, or is slow): not the handler's
                # fault, and another attempt may find the bus back, so retryable
                log.warning("actor %s: request %r failed reading its state: %s", self.uid, request.req, err)
                return wire.Reply(False, f"{wire.BUS_UNAVAILABLE}: {err}", {})
            self.counters["exceptions"] += 1
            tracing.record_exception(err)
            error = trace.user_traceback(err)
            self._report(error)
            log.error("handler %r of actor %s raised:\n%s", request.req, self.uid, error)
            return wire.Reply(False, f"{wire.EXCEPTION}: {trace.describe(err)}", {"st": error})
        self.counters["processed"] += 1
        reply = wire.normalize_return(ret)
        if not (turn.writes or turn.claims):  # (most requests: no state touched)
            turn.ended = True
            return reply
        try:
            committed = await self.state.commit(turn, reply)
        except StateError as err:  # refused before it was sent (the cap on keys): nothing applied
            self.counters["exceptions"] += 1
            return wire.Reply(False, f"{wire.EXCEPTION}: {trace.describe(err)}", {"st": trace.describe(err)})
        if committed is not None and committed.error == wire.CONFLICT:
            self.counters["conflicts"] += 1
        return committed

    async def _items(self, generator: Any, stream: _Streaming | None, scope: Scope | None) -> Any:
        """A generator handler's items: sent one by one as it yields them to a streamed request's
        caller, waiting while a whole window is unread (then ``(True, None)``, `_EXPIRED` if the
        reader went away or gave up); gathered into a list, the data of the reply, for a plain
        request. Its exception is raised."""
        asynchronous = inspect.isasyncgen(generator)
        run = contextvars.copy_context().run  # (a sync generator's body runs in a worker thread, in this context)

        async def next_item() -> Any:
            if asynchronous:
                return await anext(generator, _DONE)
            return await self.pool.run(run, _next, generator)

        if stream is None:
            items = []
            while (item := await next_item()) is not _DONE:
                items.append(item)
            return (True, items)
        session = self.session
        read = 0
        moved = asyncio.Event()

        def on_read(msg: Msg | BaseException) -> None:
            nonlocal read
            if isinstance(msg, BaseException):  # (the connection closed: the wait for the reader ends it)
                return
            try:
                [taken] = wire.unpack(msg.data)
                read = max(read, int(taken))
            except (ValueError, TypeError):
                return
            moved.set()

        credit = session.inbox.expect(stream.reply, on_read, many=True)
        stream.count = 0
        waker = _Waker(moved)  # (a cancellation wakes a producer waiting for its reader)
        if scope is not None:
            scope.calls.add(waker)
        try:
            while (item := await next_item()) is not _DONE:
                payload = wire.pack_reply(True, "", item, self.uid, session.node_id, None, stream.count, True)
                window = stream.window
                if not session.fits(payload):  # through the object store, read (and deleted) by its reader,
                    body = session.outgoing(payload, f"item {stream.count} of the stream", stream.wait)
                    del payload, item
                    payload = wire.pack_reply(True, "", None, self.uid, session.node_id, await body.stored(),
                                              stream.count, True)
                    window = 1  # who says when it has taken it: one such item at most is stored and unread
                await session.publish(stream.reply, payload, credit)
                stream.count += 1
                while stream.count - read >= window and not (scope is not None and scope.cancelled):
                    moved.clear()
                    try:
                        async with asyncio.timeout(stream.wait):
                            await moved.wait()
                    except TimeoutError:  # its reader is gone
                        return _EXPIRED
                if scope is not None and scope.cancelled:
                    return _EXPIRED
            return (True, None)
        finally:
            session.inbox.forget(credit)
            if scope is not None:
                scope.calls.discard(waker)
            if asynchronous:
                await generator.aclose()
            else:
                await self.pool.run(run, generator.close)

    def _signature(self, answered: bool) -> tuple[str, str | None] | tuple[()]:
        """What a reply names (`wire.pack_reply`'s ``uid`` and ``node``): this actor, to a caller that
        reads reply format 2 (``answered``: its request was of format 3); nothing to one that does not."""
        return (self.uid, self.session.node_id) if answered else ()

    async def _reply(self, to: str, reply: wire.Reply, answered: bool, ttl: float | None = None,
                     seq: int = -1) -> None:
        """Send ``reply``; its data through the object store when too large for a message, to a caller
        that reads it there (``answered``), which deletes it (else its TTL, ``ttl`` seconds and
        some, does)."""
        session = self.session
        signature = self._signature(answered)
        try:
            if seq < 0:
                payload = wire.pack_reply(*reply, *signature)
            else:  # (a stream's end says how many items it had)
                payload = wire.pack_reply(reply.ok, reply.error, reply.data, self.uid, self.session.node_id, None, seq)
            if not session.fits(payload):
                if not answered:  # a caller of the previous release: it reads no reference
                    session.check_size(payload, "reply")
                body = session.outgoing(payload, "reply data", ttl)
                del payload
                payload = wire.pack_reply(reply.ok, reply.error, None, self.uid, self.session.node_id,
                                          await body.stored())
        except BeachError as err:
            log.error("actor %s could not send its reply: %s", self.uid, err)
            payload = wire.pack_reply(False, f"reply could not be sent: {err}", {}, *signature)
        await session.publish(to, payload)
