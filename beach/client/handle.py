"""`ActorHandle`: send requests to the actors of a category, wherever they are.

Every operation exists as a coroutine (``arequest``, ``ashoot``, ...) — the one implementation —
and as a blocking method with the original's name (``request``, ``shoot``, ...) that runs the
coroutine on the session's loop. In ``async def`` handlers, await the coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any, Literal, overload

from nats.aio.msg import Msg

from beach import loop as beach_loop
from beach import metering, tracing, wire
from beach.bus import bodies
from beach.bus.inbox import no_responders
from beach.client import routing
from beach.client.call import Call, Done
from beach.client.response import ActorResponse, FutureResults
from beach.client.runner import Background, Runner, settle
from beach.client.session import Session, current_deadline, remaining
from beach.client.stream import Stream
from beach.errors import ClosedError, PermissionDenied, UsageError
from beach.names import twinned
from beach.wire import subjects

DEFAULT_TIMEOUT = 10.0
"""Seconds a request waits for its reply when neither the call nor the handle says otherwise."""


log = logging.getLogger("beach.handle")


def new_id() -> str:
    """A fresh request id: 96 random bits, hex (a fifth of the cost of ``uuid4().hex``)."""
    return os.urandom(12).hex()


@twinned
class ActorHandle:
    """A handle on every actor whose category starts with ``category`` (by segment) in ``realm``.

    ``mode`` is ``'random'`` (any one actor; the NATS queue group), ``'local'`` (an actor on the
    caller's node if there is one) or ``'affinity'`` (the actor that owns ``key``). ``timeout`` is
    the default per-attempt timeout (None or 0: `DEFAULT_TIMEOUT`), ``nRetries`` the default number
    of retries, and ``ident`` the trust token sent with each request.
    """

    def __init__(self, session: Session, realm: str, category: str, mode: str = "random",
                 nRetries: int | None = None, timeout: float | None = None, ident: str | None = None) -> None:
        self._session = session
        self._realm = subjects.check_realm(realm)
        self._category = category
        self._label = subjects.normalize(category)  # what its calls are counted under, in:
        self._meter = session.calls_in(self._realm)
        self._broadcast_subject = subjects.broadcast_subject(realm, category)
        self._targets = routing.Targets(session.view, self._realm, category, mode, session.node_id)  # checks mode
        session.hold(self._realm, category)  # (an actor host's view holds only the categories asked for)
        self._mode = mode
        self._retries = nRetries or 0
        self._timeout = timeout or DEFAULT_TIMEOUT
        self._ident = ident
        self._pending: dict[str, int] = {}
        self._calls: set[Call] = set()  # in flight
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()  # streams being read (a stream dropped
        # unread is closed when collected: `Stream.__del__`)
        self._background = Background(session.runner.loop)

    @property
    def category(self) -> str:
        """The category this handle addresses."""
        return self._category

    def __repr__(self) -> str:
        return f"<ActorHandle {self._realm}:{self._category} mode={self._mode}>"

    # ---------------------------------------------------------------- async core

    @property
    def session(self) -> Session:
        """The session this handle sends through."""
        return self._session

    async def _held(self) -> None:
        """Return once the session's view holds the category's actors (at once but in an actor
        host whose view of it is still loading)."""
        waiting = self._targets.waiting()
        if waiting is not None:
            await asyncio.shield(waiting)

    def _no_actor(self) -> ActorResponse:
        elsewhere = self._session.view.elsewhere(self._realm, self._category)
        return ActorResponse(False, f"{wire.NO_ACTOR} in category '{self._category}' "
                                    f"of realm '{self._realm}'" + (f" ({elsewhere})" if elsewhere else ""))

    def _response(self, outcome: Msg | wire.Reply | BaseException, target: str = "") -> ActorResponse:
        """What one attempt's end means to the caller: its reply (as it came, or read), or the
        failure that ended it. ``target``: the attempt's (an actor's uid, when the caller chose it)."""
        if isinstance(outcome, Msg):
            if no_responders(outcome):
                return self._no_actor()
            outcome = wire.read_reply(outcome.data, outcome.subject)
        if isinstance(outcome, wire.Reply):
            return ActorResponse.of(outcome, self._session.view.actors.get(target))
        if isinstance(outcome, TimeoutError):
            return ActorResponse.timeout()
        if isinstance(outcome, PermissionDenied):  # the credentials do not allow it: retrying will not help
            return ActorResponse(False, str(outcome))
        # NATS takes no more for now (reconnecting, its buffer full): retryable
        return ActorResponse(False, f"{wire.BUS_UNAVAILABLE}: {outcome}")

    def _encode(self, requestType: str, data: Any, req_id: str, budget: float | None,
                trace: wire.TraceContext | None = None, body: wire.BodyRef | None = None) -> bytes:
        """A request's envelope: its data in it, or at ``body`` (in the object store). It may be too
        large for a message (`Session.fits`): the caller decides what to do then."""
        if not isinstance(requestType, str):
            raise UsageError(f"requestType must be a string, not {type(requestType).__name__}")
        if body is not None:
            return wire.pack_referenced(req_id, requestType, body, self._ident, budget, trace)
        # in the newest format every node reads (a node of the previous release may get it)
        return wire.pack_request(req_id, requestType, {} if data is None else data, self._ident, budget, trace,
                                 self._session.view.reads)

    def _call(self, requestType: str, data: Any, timeout: float | None, key: Any, nRetries: int | None,
              done: Done, to: tuple[str, str] | None = None, req_id: str | None = None,
              spans: tracing.Call | None = None, body: bodies.Outgoing | None = None) -> Call:
        """Start the request (on the loop's thread; ``req_id``: its id, else a new one; ``spans`` and
        ``body``: a fan-out's, whose attempt this call is, and its data stored for all); its outcome
        goes to ``done``. Raises what makes it unsendable (`EncodeError`, `PayloadTooLarge`,
        `UsageError`, `ClosedError`)."""
        self._check_arguments(key, nRetries)
        call = Call(self, requestType, {} if data is None else data, timeout or self._timeout, key,
                    self._retries if nRetries is None else nRetries, current_deadline.get(), req_id or new_id(),
                    done, to, spans, body)
        call.start()
        return call

    async def arequest(self, requestType: str, data: Any = None, timeout: float | None = None,
                       key: Any = None, nRetries: int | None = None,
                       onFailure: Callable[[Any], Any] | None = None) -> ActorResponse:
        """Send a request to one actor of the category and await its `ActorResponse`.

        Each attempt waits up to ``timeout`` seconds (capped by the deadline of the request being
        served, inside a handler). Timeouts, "busy", an empty category and a state ``conflict``
        are retried up to ``nRetries`` times with the same request id; application errors are not. ``onFailure(data)``
        is called once if the final result is a failure. Raises `EncodeError` / `PayloadTooLarge`
        for data that cannot be sent, `UsageError` for an affinity handle without ``key``, and
        `ClosedError` once the client is closed.
        """
        outcome: asyncio.Future[ActorResponse] = asyncio.get_running_loop().create_future()
        call = self._call(requestType, data, timeout, key, nRetries, partial(settle, outcome))
        try:
            response = await outcome
        except asyncio.CancelledError:  # whoever awaited it gave up: no attempt or retry goes on
            call.cancel("cancelled: the caller stopped waiting")
            raise
        if onFailure is not None and not response.isSuccess:
            await _call_back(onFailure, {} if data is None else data)
        return response

    def _reported(self, onFailure: Callable[[Any], Any] | None, data: Any, then: Done | None = None) -> Done:
        """A `Done` that passes the outcome on to ``then`` and, for a failure, calls ``onFailure(data)``
        in the background (what the forms that do not wait do)."""
        def done(outcome: Any) -> None:
            if then is not None:
                then(outcome)
            if onFailure is not None and not (isinstance(outcome, ActorResponse) and outcome.isSuccess):
                self._background.start(_call_back(onFailure, {} if data is None else data))
            elif isinstance(outcome, BaseException) and not isinstance(outcome, ClosedError):
                log.warning("a request sent in the background failed: %s", outcome)
        return done

    def _check_arguments(self, key: Any, nRetries: int | None) -> None:
        if self._mode == "affinity" and key is None:
            raise UsageError(f"{self!r} routes by key: pass key= to request()")
        if nRetries is not None and (not isinstance(nRetries, int) or nRetries < 0):
            raise UsageError(f"nRetries must be a whole number 0 or more, not {nRetries!r}")

    def _check(self, requestType: str, data: Any, key: Any, nRetries: int | None) -> bytes:
        """Raise now, in the caller, what would make a request fail before it is sent (for the
        forms that send in the background); return its envelope (its data in it)."""
        self._check_arguments(key, nRetries)
        envelope = self._encode(requestType, {} if data is None else data, "-" * 24, None)
        if not self._session.fits(envelope):
            self._session.check_large(envelope, f"data of request {requestType!r}")
        return envelope

    def _future(self, requestType: str, data: Any, timeout: float | None, key: Any, nRetries: int | None,
                onFailure: Callable[[Any], Any] | None) -> FutureResults:
        """A request started from the blocking face's thread (handed to the loop), in a `FutureResults`."""
        self._check(requestType, data, key, nRetries)
        future = FutureResults(1, self._session.runner)
        done = self._reported(onFailure, data, future._add)

        def start() -> None:
            try:
                future._started(self._call(requestType, data, timeout, key, nRetries, done))
            except Exception as err:  # (the connection closed meanwhile)
                done(err)

        self._session.runner.soon(start)
        return future

    async def arequestFuture(self, requestType: str, data: Any = None, timeout: float | None = None,
                             key: Any = None, nRetries: int | None = None,
                             onFailure: Callable[[Any], Any] | None = None) -> FutureResults:
        """Start a request and return at once a `FutureResults` that will hold its response."""
        future = FutureResults(1, self._session.runner)
        future._started(self._call(requestType, data, timeout, key, nRetries,
                                   self._reported(onFailure, data, future._add)))
        return future

    async def ashoot(self, requestType: str, data: Any = None, timeout: float | None = None,
                     key: Any = None, nRetries: int | None = None,
                     onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Send a request without waiting for its reply.

        With ``nRetries`` or ``onFailure`` it is a request whose reply comes back to be retried,
        or reported. Without, it is a plain publish, as cheap as NATS makes it: the receiving actor
        serves it when it can (it is never answered "busy"), and an empty category loses it, as a
        fire-and-forget message is lost anywhere.
        """
        self._check_arguments(key, nRetries)
        if (self._retries if nRetries is None else nRetries) or onFailure is not None:
            self._call(requestType, data, timeout, key, nRetries, self._reported(onFailure, data))
        else:
            await self._held()
            await self._publish("shoot", self._targets.route(key, 0, set())[0], requestType, data, None)
        return True

    async def _publish(self, operation: str, subject: str, requestType: str, data: Any, budget: float | None) -> None:
        """Send a message nobody waits a reply to (a PRODUCER span, if traced)."""
        req_id = new_id()
        spans = tracing.call(operation, self._realm, self._category, requestType, req_id, tracing.PRODUCER)
        trace = None if spans is None else spans.own()
        try:
            envelope = self._encode(requestType, {} if data is None else data, req_id, budget, trace)
            if not self._session.fits(envelope):  # through the object store: its reader deletes it, or its TTL
                body = self._session.outgoing(envelope, f"data of request {requestType!r}", budget or self._timeout)
                del envelope
                envelope = self._encode(requestType, None, req_id, budget, trace, await body.stored())
            await self._session.publish(subject, envelope)
        except BaseException as err:  # unsendable, or the connection closed
            if spans is not None:
                spans.end(*tracing.raised(err))
            raise
        if spans is not None:
            spans.end(metering.OK)

    async def abroadcast(self, requestType: str, data: Any = None) -> bool:
        """Send a request to every actor of the category; replies are not awaited."""
        await self._publish("broadcast", self._broadcast_subject, requestType, data, remaining(self._timeout))
        return True

    async def arequestFromAll(self, requestType: str, data: Any = None,
                              timeout: float | None = None) -> FutureResults:
        """Send a request to every actor of the category; return a `FutureResults` of all replies.

        The future is finished at once when the category is empty.
        """
        await self._held()
        members = self._targets.members()
        envelope = self._check(requestType, data, None, None)
        body = None  # its data, when too large for a message: stored once, for every actor
        if members and not self._session.fits(envelope):
            body = self._session.outgoing(envelope, f"data of request {requestType!r}",
                                          remaining(timeout or self._timeout))
        del envelope
        future = FutureResults(len(members), self._session.runner)
        req_id = new_id()  # one request, served by each actor: one id (its log lines, its reply cache)
        # one call span, each actor's attempt its child: siblings
        spans = tracing.call("requestFromAll", self._realm, self._category, requestType, req_id)
        add: Done = future._add
        if spans is not None:
            left = [len(members)]

            def add(outcome: Any) -> None:
                future._add(outcome)
                left[0] -= 1
                if not left[0]:
                    spans.end(metering.OK)

            if not members:
                spans.end(metering.OK)
        try:
            for actor in members:
                future._started(self._call(
                    requestType, data, timeout, None, 0, add, to=(subjects.actor_subject(self._realm, actor.uid),
                                                                  actor.uid), req_id=req_id, spans=spans, body=body))
        except BaseException as err:  # the connection closed meanwhile (the actors not asked never add)
            if spans is not None:
                spans.end(*tracing.raised(err))
            raise
        return future

    def astream(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None) -> Stream:
        """Send a request whose handler is a generator, and read its items as it yields them:
        ``async for item in handle.astream('rows', query): ...``. ``timeout`` is the longest wait
        between two items (default: the handle's timeout). The actor waits while 64 items are
        unread (flow control); leaving the loop early (``break``) stops it. A handler that is not a
        generator gives one item, its reply's data. The stream raises `StreamError` (a `BeachError`
        naming the failure: the handler raised, no actor, a timeout between items). Raises
        `UsageError` (a key missing for an affinity handle; a node of the previous release is
        live), `EncodeError`, `PayloadTooLarge` (data over ``payloads.max_bytes``) at once. Data, and
        items, too large for a message go through the object store. Not retried."""
        self._check_arguments(key, None)
        if not isinstance(requestType, str):
            raise UsageError(f"requestType must be a string, not {type(requestType).__name__}")
        if not self._session.runner.in_loop_thread():
            raise UsageError("astream() is for async code on the client's event loop: use stream() from blocking code")
        stream = Stream(self, requestType, {} if data is None else data, timeout or self._timeout, key, new_id())
        stream.start()
        return stream

    def stream(self, requestType: str, data: Any = None, timeout: float | None = None,
               key: Any = None) -> Iterator[Any]:
        """`astream` from blocking code: ``for item in handle.stream('rows', query): ...`` (a
        ``break`` stops the producer)."""
        runner = self._session.runner
        opened: Stream = runner.call(lambda done: done(self.astream(requestType, data, timeout, key)))
        return _read(runner, opened)

    def getNumAvailable(self) -> int:
        """The number of live actors in the category (from the directory view; no I/O)."""
        return len(self._targets.members())

    def isAvailable(self) -> bool:
        """True if the category has at least one live actor."""
        return bool(self._targets.members())

    def getPending(self) -> dict[str, int]:
        """In-flight requests: ``{target: count}``; the target is the actor uid when the client chose
        the actor (affinity, local), else the category (the queue group chose)."""
        return dict(self._pending)

    async def aclose(self) -> None:
        """End this handle's requests in flight (each a failure: ``cancelled: the handle was
        closed``) and cancel what it runs in the background."""
        for call in list(self._calls):
            call.cancel("cancelled: the handle was closed")
        for stream in list(self._streams):
            await stream.aclose()
        await self._background.cancel()

    # ---------------------------------------------------------------- blocking face

    @overload
    def request(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                nRetries: int | None = None, isWithFuture: Literal[False] = False,
                onFailure: Callable[[Any], Any] | None = None) -> ActorResponse: ...

    @overload
    def request(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                nRetries: int | None = None, *, isWithFuture: Literal[True],
                onFailure: Callable[[Any], Any] | None = None) -> FutureResults: ...

    @overload
    def request(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                nRetries: int | None = None, isWithFuture: bool = False,
                onFailure: Callable[[Any], Any] | None = None) -> ActorResponse | FutureResults: ...

    def request(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                nRetries: int | None = None, isWithFuture: bool = False,
                onFailure: Callable[[Any], Any] | None = None) -> ActorResponse | FutureResults:
        """Blocking `arequest`: the `ActorResponse`; with ``isWithFuture=True`` a `FutureResults`
        returned at once instead, the request sent in the background. Raises what `arequest`
        raises (`EncodeError`, `PayloadTooLarge`, `UsageError`), at once also with a future, and
        `ClosedError` once the client is closed."""
        if isWithFuture:  # started, not waited for: no trip into the loop before the future is returned
            return self._future(requestType, data, timeout, key, nRetries, onFailure)
        started: list[Call] = []

        def start(done: Done) -> None:
            started.append(self._call(requestType, data, timeout, key, nRetries, done))

        try:
            response: ActorResponse = self._session.runner.call(start)
        except KeyboardInterrupt:  # Ctrl-C: the call ends, and its actor is told (its handler cancelled)
            if started:
                with contextlib.suppress(Exception):  # (the interrupt is what the caller gets, whatever happens)
                    self._session.runner.run(self._interrupted(started[0]))
            raise
        if onFailure is not None and not response.isSuccess:
            self._session.runner.run(_call_back(onFailure, {} if data is None else data))
        return response

    async def _interrupted(self, call: Call) -> None:
        """End ``call`` (its caller was interrupted) and see its actor told before the process goes on."""
        call.cancel("cancelled: interrupted (Ctrl-C)")
        await beach_loop.within(self._session.nc.flush(), 1.0)

    def shoot(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
              nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> bool:
        """`ashoot` from blocking code: returns once the message is handed to NATS, and raises
        what `ashoot` raises. On the event loop's own thread (an ``async def`` handler that should
        have awaited `ashoot`) it cannot wait: it returns at once and a failure is only logged."""
        self._check(requestType, data, key, nRetries)  # raise here, in the caller's thread
        shot = self.ashoot(requestType, data, timeout, key, nRetries, onFailure)
        if self._session.runner.in_loop_thread():
            self._session.runner.submit(shot).add_done_callback(_log_lost_shot)
            return True
        return self._session.runner.run(shot)

    def broadcast(self, requestType: str, data: Any = None) -> bool:
        """`abroadcast` from blocking code."""
        return self._session.runner.run(self.abroadcast(requestType, data))

    def requestFromAll(self, requestType: str, data: Any = None, timeout: float | None = None) -> FutureResults:
        """`arequestFromAll` from blocking code."""
        return self._session.runner.run(self.arequestFromAll(requestType, data, timeout))

    def close(self) -> None:
        """`aclose` from blocking code."""
        if self._session.runner.in_loop_thread():
            self._session.runner.loop.create_task(self.aclose())
        else:
            self._session.runner.run(self.aclose())


def _read(runner: Runner, stream: Stream) -> Iterator[Any]:
    """The items of ``stream``, awaited on ``runner``'s loop (those that have arrived, at once);
    closing it stops the producer."""
    try:
        while items := runner.run(stream.batch(stream.window)):
            yield from items
    finally:
        runner.run(stream.aclose())


async def _call_back(callback: Callable[[Any], Any], data: Any) -> None:
    """Run a user callback: awaited if async, in a worker thread if not."""
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(data)
        else:
            await asyncio.get_running_loop().run_in_executor(None, callback, data)
    except Exception:
        log.exception("onFailure callback %r raised", callback)



def _log_lost_shot(sent: Future[bool]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.warning("a shoot from the event loop's thread was not sent: %s", sent.exception())
