"""`ActorHandle`: send requests to the actors of a category, wherever they are.

Every operation exists as a coroutine (``arequest``, ``ashoot``, ...) — the one implementation —
and as a blocking method with the original's name (``request``, ``shoot``, ...) that runs the
coroutine on the session's loop. In ``async def`` handlers, await the coroutines.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, overload

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from beach import metering, tracing, wire
from beach.backoff import backoff
from beach.client import routing
from beach.client.response import ActorResponse, FutureResults
from beach.client.runner import Background
from beach.client.session import Session, remaining
from beach.errors import BusError, ClosedError, PermissionDenied, UsageError
from beach.wire import subjects

DEFAULT_TIMEOUT = 10.0
"""Seconds a request waits for its reply when neither the call nor the handle says otherwise."""

# Waits before retrying: an empty category (or no bus) is usually an actor being restarted, which
# takes 0.5-2.5 s: 0.5, 1, 2, 4 s covers one with nRetries=3 (3.5 s). A busy actor frees up fast.
ABSENT_BACKOFF, ABSENT_BACKOFF_MAX = 0.5, 4.0
BUSY_BACKOFF, BUSY_BACKOFF_MAX = 0.05, 1.0
# After a state conflict the same actor is as good as any (it dropped the stale values): a short,
# random wait keeps two callers that collided from colliding again in step.
CONFLICT_BACKOFF, CONFLICT_BACKOFF_MAX = 0.005, 0.2


log = logging.getLogger("beach.handle")


def new_id() -> str:
    """A fresh request id: 96 random bits, hex (a fifth of the cost of ``uuid4().hex``)."""
    return os.urandom(12).hex()


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
        self._calls = session.calls_in(self._realm)
        self._broadcast_subject = subjects.broadcast_subject(realm, category)
        self._targets = routing.Targets(session.view, self._realm, category, mode, session.node_id)  # checks mode
        self._mode = mode
        self._retries = nRetries or 0
        self._timeout = timeout or DEFAULT_TIMEOUT
        self._ident = ident
        self._pending: dict[str, int] = {}
        self._background = Background(session.runner.loop)

    @property
    def category(self) -> str:
        """The category this handle addresses."""
        return self._category

    def __repr__(self) -> str:
        return f"<ActorHandle {self._realm}:{self._category} mode={self._mode}>"

    # ---------------------------------------------------------------- async core

    def _no_actor(self) -> ActorResponse:
        elsewhere = self._session.view.elsewhere(self._realm, self._category)
        return ActorResponse(False, f"{wire.NO_ACTOR} in category '{self._category}' "
                                    f"of realm '{self._realm}'" + (f" ({elsewhere})" if elsewhere else ""))

    async def _send(self, subject: str, payload: bytes, budget: float) -> ActorResponse:
        try:
            msg = await self._session.inbox.request(subject, payload, budget)
        except NoRespondersError:
            return self._no_actor()
        except (TimeoutError, NatsTimeout):
            return ActorResponse.timeout()
        except ClosedError:
            raise
        except PermissionDenied as err:  # the credentials do not allow it: retrying will not help
            return ActorResponse(False, str(err))
        except BusError as err:  # NATS takes no more for now (reconnecting, its buffer full): retryable
            return ActorResponse(False, f"{wire.BUS_UNAVAILABLE}: {err}")
        return ActorResponse(*wire.read_reply(msg.data, subject))

    def _encode(self, requestType: str, data: Any, req_id: str, budget: float | None,
                trace: wire.TraceContext | None = None) -> bytes:
        if not isinstance(requestType, str):
            raise UsageError(f"requestType must be a string, not {type(requestType).__name__}")
        if trace is not None and not self._session.view.traced:  # a node of the previous release may get it
            trace = None
        payload = wire.pack_request(req_id, requestType, {} if data is None else data, self._ident, budget, trace)
        self._session.check_size(payload, f"request {requestType!r}")
        return payload

    async def arequest(self, requestType: str, data: Any = None, timeout: float | None = None,
                       key: Any = None, nRetries: int | None = None,
                       onFailure: Callable[[Any], Any] | None = None) -> ActorResponse:
        """Send a request to one actor of the category and await its `ActorResponse`.

        Each attempt waits up to ``timeout`` seconds (capped by the deadline of the request being
        served, inside a handler). Timeouts, "busy", an empty category and a state ``conflict``
        are retried up to ``nRetries`` times with the same request id; application errors are not. ``onFailure(data)``
        is called once if the final result is a failure. Raises `EncodeError` / `PayloadTooLarge`
        for data that cannot be sent, and `UsageError` for an affinity handle without ``key``.
        """
        self._check_arguments(key, nRetries)
        data = {} if data is None else data
        retries = self._retries if nRetries is None else nRetries
        req_id = new_id()
        started = time.monotonic()  # the call (a client span's extent): every attempt, backoff included
        spans = tracing.call("request", self._realm, self._category, requestType, req_id)
        attempt_timeout = timeout or self._timeout
        payload = b""
        response = ActorResponse.timeout()
        tried: set[str] = set()
        encoded_budget: float | None = None
        for attempt in range(retries + 1):
            budget = remaining(attempt_timeout)
            if budget is not None and budget <= 0:
                response = ActorResponse.timeout()
                break
            if attempt:
                self._calls.row(self._label, requestType).retries += 1
            subject, target = self._targets.route(key, attempt, tried)
            sending = None if spans is None else spans.attempt(attempt, target)
            if attempt == 0 or budget != encoded_budget or sending is not None:
                payload = self._encode(requestType, data, req_id, budget, None if sending is None else sending.context)
                encoded_budget = budget
            self._pending[target] = self._pending.get(target, 0) + 1
            try:
                response = await self._send(subject, payload, budget or attempt_timeout)
            except BaseException as err:  # the connection closed, or the call was cancelled
                if spans is not None and sending is not None:
                    sending.end("closed", f"{type(err).__name__}: {err}")
                    spans.end("closed", f"{type(err).__name__}: {err}")
                raise
            finally:
                left = self._pending[target] - 1
                if left:
                    self._pending[target] = left
                else:
                    del self._pending[target]
            if sending is not None:
                sending.end(metering.outcome(response.isSuccess, response.error), response.error)
            if response.isSuccess or not self._retryable(response):
                break
            if response.failure == wire.CONFLICT:
                if attempt < retries:
                    await asyncio.sleep(random.uniform(0, backoff(attempt, CONFLICT_BACKOFF, CONFLICT_BACKOFF_MAX)))
                continue
            self._targets.failed(target, response.failure == wire.NO_ACTOR, tried)
            if response.failure == wire.BUSY and isinstance(response.data, dict) and "uid" in response.data:
                tried.add(response.data["uid"])
            if attempt < retries:  # nobody else to ask now: back off before the next attempt
                if response.failure in (wire.NO_ACTOR, wire.BUS_UNAVAILABLE):
                    await asyncio.sleep(backoff(attempt, ABSENT_BACKOFF, ABSENT_BACKOFF_MAX))
                elif response.failure == wire.BUSY and not self._targets.others(tried):
                    await asyncio.sleep(backoff(attempt, BUSY_BACKOFF, BUSY_BACKOFF_MAX))
        outcome = metering.outcome(response.isSuccess, response.error)
        self._calls.add(self._label, requestType, outcome, time.monotonic() - started)
        if spans is not None:
            spans.end(outcome, response.error)
        if not response.isSuccess and onFailure is not None:
            await _call_back(onFailure, data)
        return response

    @staticmethod
    def _retryable(response: ActorResponse) -> bool:
        return response.isTimedOut or response.failure in wire.RETRYABLE

    def _check_arguments(self, key: Any, nRetries: int | None) -> None:
        if self._mode == "affinity" and key is None:
            raise UsageError(f"{self!r} routes by key: pass key= to request()")
        if nRetries is not None and (not isinstance(nRetries, int) or nRetries < 0):
            raise UsageError(f"nRetries must be a whole number 0 or more, not {nRetries!r}")

    def _check(self, requestType: str, data: Any, key: Any, nRetries: int | None) -> None:
        """Raise now, in the caller, what would make a request fail before it is sent (for the
        forms that send in the background)."""
        self._check_arguments(key, nRetries)
        self._encode(requestType, {} if data is None else data, "-" * 24, None)

    def _into(self, future: FutureResults, coro: Any) -> None:
        """Run ``coro`` (returning an `ActorResponse`) in the background; its result, or a failure
        naming its exception, goes into ``future`` — which therefore always finishes."""

        async def run() -> None:
            try:
                response = await coro
            except Exception as err:
                response = ActorResponse(False, f"request failed: {type(err).__name__}: {err}")
            future._add(response)

        def cancelled(task: asyncio.Task[None]) -> None:
            if task.cancelled():  # the handle was closed, maybe before the task even started
                coro.close()
                future._add(ActorResponse(False, "cancelled: the handle was closed"))

        self._background.start(run()).add_done_callback(cancelled)

    async def arequestFuture(self, requestType: str, data: Any = None, timeout: float | None = None,
                             key: Any = None, nRetries: int | None = None,
                             onFailure: Callable[[Any], Any] | None = None) -> FutureResults:
        """Start a request and return at once a `FutureResults` that will hold its response."""
        self._check(requestType, data, key, nRetries)
        future = FutureResults(1, self._session.runner)
        self._into(future, self.arequest(requestType, data, timeout, key, nRetries, onFailure))
        return future

    async def ashoot(self, requestType: str, data: Any = None, timeout: float | None = None,
                     key: Any = None, nRetries: int | None = None,
                     onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Send a request without waiting for its reply.

        With ``nRetries`` or ``onFailure`` it is a request whose reply a background task awaits
        (to retry, or to report the failure). Without, it is a plain publish, as cheap as NATS
        makes it: the receiving actor serves it when it can (it is never answered "busy"), and an
        empty category loses it, as a fire-and-forget message is lost anywhere.
        """
        self._check_arguments(key, nRetries)
        if (self._retries if nRetries is None else nRetries) or onFailure is not None:
            self._check(requestType, data, key, nRetries)
            self._background.start(self.arequest(requestType, data, timeout, key, nRetries, onFailure))
        else:
            await self._publish("shoot", self._targets.route(key, 0, set())[0], requestType, data, None)
        return True

    async def _publish(self, operation: str, subject: str, requestType: str, data: Any, budget: float | None) -> None:
        """Send a message nobody waits a reply to (a PRODUCER span, if traced)."""
        req_id = new_id()
        spans = tracing.call(operation, self._realm, self._category, requestType, req_id, tracing.PRODUCER)
        trace = None if spans is None else spans.own()
        payload = self._encode(requestType, {} if data is None else data, req_id, budget, trace)
        try:
            await self._session.publish(subject, payload)
        finally:
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
        members = self._targets.members()
        budget = remaining(timeout or self._timeout) or 0.0
        req_id = new_id()
        payload = self._encode(requestType, data, req_id, budget)
        spans = tracing.call("requestFromAll", self._realm, self._category, requestType, req_id)
        future = FutureResults(len(members), self._session.runner)
        left = [len(members)]

        async def ask(actor: str, sending: tracing.Attempt | None) -> ActorResponse:
            body = payload if sending is None else self._encode(requestType, data, req_id, budget, sending.context)
            response = await self._send(subjects.actor_subject(self._realm, actor), body, budget)
            if spans is not None and sending is not None:  # each actor's is a child of the call: siblings
                sending.end(metering.outcome(response.isSuccess, response.error), response.error)
                left[0] -= 1
                if not left[0]:
                    spans.end(metering.OK)
            return response

        for number, actor in enumerate(members):
            if budget <= 0:  # the request being served has no time left
                future._add(ActorResponse.timeout())
            else:
                self._into(future, ask(actor.uid, None if spans is None else spans.attempt(number, actor.uid)))
        if spans is not None and (budget <= 0 or not members):
            spans.end(metering.FAILURES[wire.TIMEOUT] if members else metering.OK)
        return future

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
        """Cancel this handle's background requests."""
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
            self._check(requestType, data, key, nRetries)
            future = FutureResults(1, self._session.runner)
            request = self.arequest(requestType, data, timeout, key, nRetries, onFailure)
            try:
                self._session.runner.soon(lambda: self._into(future, request))
            except BaseException:
                request.close()  # never started: not a coroutine left unawaited
                raise
            return future
        return self._session.runner.run(self.arequest(requestType, data, timeout, key, nRetries, onFailure))

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
        """Cancel this handle's background requests."""
        if self._session.runner.in_loop_thread():
            self._session.runner.loop.create_task(self.aclose())
        else:
            self._session.runner.run(self.aclose())

    # PEP 8 names
    request_from_all = requestFromAll
    arequest_from_all = arequestFromAll
    arequest_future = arequestFuture
    get_num_available = getNumAvailable
    is_available = isAvailable
    get_pending = getPending


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
