"""`Call`: one request from a handle, from its first attempt to its outcome — the one request path.

A call is driven by callbacks, not by a task: each attempt is a publish (run at once, carried on
by a task only if NATS makes it wait), an entry in the connection's inbox that the reply is handed
to, and a timer for the attempt's deadline; a retry is a timer too. Whoever wants the outcome
gives ``done``: ``await handle.arequest(...)`` a future it awaits, a `FutureResults` its own
``_add``, the blocking face its runner's waiter — one implementation, three faces.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from nats.aio.msg import Msg

from beach import metering, tracing, wire
from beach.backoff import backoff
from beach.bus import bodies
from beach.bus.inbox import no_responders
from beach.client.eager import start as eagerly
from beach.client.response import ActorResponse
from beach.client.routing import Targets
from beach.client.runner import Background
from beach.client.scope import Scope, current_scope
from beach.client.session import Session
from beach.errors import ClosedError, PayloadTooLarge
from beach.wire import Failure

# Waits before retrying: an empty category (or no bus) is usually an actor being restarted, which
# takes 0.5-2.5 s: 0.5, 1, 2, 4 s covers one with nRetries=3 (3.5 s). A busy actor frees up fast.
ABSENT_BACKOFF, ABSENT_BACKOFF_MAX = 0.5, 4.0
BUSY_BACKOFF, BUSY_BACKOFF_MAX = 0.05, 1.0
# After a state conflict the same actor is as good as any (it dropped the stale values): a short,
# random wait keeps two callers that collided from colliding again in step.
CONFLICT_BACKOFF, CONFLICT_BACKOFF_MAX = 0.005, 0.2

Done = Callable[[Any], None]
"""Gets the outcome once: an `ActorResponse`, or the exception the call ended with (`ClosedError`,
or what encoding the request raised)."""


class Sender(Protocol):
    """What a call asks of the handle it is made from (`beach.client.handle.ActorHandle`)."""

    _targets: Targets
    _pending: dict[str, int]
    _calls: set[Call]
    _background: Background
    _meter: metering.Meter  # where its calls are counted, under
    _label: str
    _realm: str

    @property
    def session(self) -> Session: ...
    @property
    def category(self) -> str: ...
    def _encode(self, requestType: str, data: Any, req_id: str, budget: float | None,
                trace: wire.TraceContext | None = None, body: wire.BodyRef | None = None) -> bytes: ...
    def _response(self, outcome: Msg | wire.Reply | BaseException, target: str = "") -> ActorResponse: ...


class Call:
    """One request: its attempts (each to the target its handle's `Targets` picks) and retries,
    with the same request id, until a reply that is not worth retrying or the last attempt."""

    __slots__ = ("handle", "loop", "request_type", "data", "timeout", "key", "retries", "deadline", "done", "to",
                 "req_id", "attempt", "tried", "payload", "encoded_budget", "target", "reply", "timer", "started",
                 "spans", "owns_spans", "sending", "body", "fetching", "scope", "abandoned")

    def __init__(self, handle: Sender, request_type: str, data: Any, timeout: float, key: Any, retries: int,
                 deadline: float | None, req_id: str, done: Done, to: tuple[str, str] | None = None,
                 spans: tracing.Call | None = None, body: bodies.Outgoing | None = None) -> None:
        self.handle = handle
        self.loop = handle.session.runner.loop
        self.request_type = request_type
        self.data = data
        self.timeout = timeout  # each attempt's
        self.key = key
        self.retries = retries
        self.deadline = deadline  # the monotonic deadline inherited from the request being served
        self.done: Done | None = done
        self.to = to  # (subject, target): one actor, not the one the handle's routing picks
        self.req_id = req_id
        self.attempt = 0
        self.tried: set[str] = set()
        self.payload = b""
        self.encoded_budget: float | None = None
        self.target = ""
        self.reply = ""
        self.timer: asyncio.TimerHandle | None = None
        self.started = 0.0
        self.spans = spans  # (given: a fan-out's, whose attempts this call's are, ended by the fan-out)
        self.owns_spans = spans is None
        self.sending: tracing.Attempt | None = None  # the span of the attempt in flight
        # its data in the object store, when too large for a message (stored once for every attempt;
        # given: a fan-out's, stored once for all its calls); the last call done with it deletes it
        self.body = body
        if body is not None:
            body.acquire()
        self.fetching: asyncio.Task[None] | None = None  # a reply's data being read from the object store
        self.scope: Scope | None = None  # the request served by the handler that made it: cancelled with it
        self.abandoned: list[str] = []  # the reply subjects of its attempts that timed out (their actors are
        # told to stop when the call ends: not before, since a retry may join the same run, a reply cache's)

    def _budget(self) -> float:
        """This attempt's time: its timeout, capped by the deadline inherited, if any (it travels
        with the request, so that the actor's own requests inherit what is left)."""
        if self.deadline is None:
            return self.timeout
        return min(self.timeout, max(0.0, self.deadline - time.monotonic()))

    def start(self) -> None:
        """Send the first attempt (on the loop's thread). What makes the request unsendable
        (`EncodeError`, `PayloadTooLarge`, `ClosedError`) is raised here."""
        self.handle._calls.add(self)
        self.scope = current_scope.get()
        if self.scope is not None:
            self.scope.calls.add(self)
        self.started = time.monotonic()  # the call's extent (a client span's): every attempt, backoff included
        if self.owns_spans:  # (the current span, the caller's, is its parent)
            self.spans = tracing.call("request", self.handle._realm, self.handle.category, self.request_type,
                                      self.req_id)
        budget = self._budget()
        if budget <= 0:
            self._finish(ActorResponse.timeout())
            return
        try:
            self._send(budget)
        except BaseException as err:  # unsendable: the caller gets the exception, and no outcome
            self.done = None
            self._end_attempt()
            self._finish(err)
            raise

    def _lifetime(self) -> float:
        """The longest this call may still take, every attempt and back-off: how long its data must
        stay in the object store, when it goes there."""
        longest = self.timeout * (self.retries + 1) + ABSENT_BACKOFF_MAX * self.retries
        return longest if self.deadline is None else min(longest, max(0.0, self.deadline - time.monotonic()))

    def _send(self, budget: float) -> None:
        handle = self.handle
        body = self.body
        if body is not None and body.ref is None and body.error is None:  # its data is being stored: then
            body.when_stored(self._stored)
            return
        if self.to is None and (waiting := handle._targets.waiting()) is not None:
            # an actor host's view of the category is loading: the attempt goes once it is there
            waiting.add_done_callback(lambda _: self._resume() if self.done is not None else None)
            return
        subject, self.target = self.to or handle._targets.route(self.key, self.attempt, self.tried)
        # each attempt carries its own span's context (a retry is that span's sibling; an attempt
        # that waited for its data to be stored has it already)
        if self.sending is None and self.spans is not None:
            self.sending = self.spans.attempt(self.attempt, self.target)
        if self.attempt == 0 or budget != self.encoded_budget or self.sending is not None:
            context = None if self.sending is None else self.sending.context
            if body is None:
                payload = handle._encode(self.request_type, self.data, self.req_id, budget, context)
                if not handle.session.fits(payload):  # too large for a message: through the object store
                    self.body = handle.session.outgoing(payload, f"data of request {self.request_type!r}",
                                                        self._lifetime())
                    self.body.acquire()
                    del payload  # (the store holds what it needs of it, until stored)
                    self._send(budget)
                    return
                self.payload = payload
            else:
                if body.error is not None:
                    raise body.error
                assert body.ref is not None
                self.payload = handle._encode(self.request_type, None, self.req_id, budget, context, body.ref)
            self.encoded_budget = budget
        inbox = handle.session.inbox
        self.reply = inbox.expect(subject, self._answered)
        handle._pending[self.target] = handle._pending.get(self.target, 0) + 1
        self.timer = self.loop.call_later(budget, self._answered, TimeoutError())
        eagerly(inbox.send(subject, self.payload, self.reply, self._answered), handle._background)

    def _stored(self, error: BaseException | None) -> None:
        """The call's data is in the object store (or could not be put there): its attempt goes now."""
        if self.done is None:
            return  # (ended meanwhile)
        if error is not None:
            self._finish(ActorResponse(False, f"{wire.BUS_UNAVAILABLE}: the request's data could not be stored: "
                                              f"{error}"))
            return
        self._resume()

    def _end_attempt(self) -> bool:
        """Clear the attempt in flight away (timer, inbox entry, pending count); False if none was."""
        if not self.reply:
            return False  # (it ended already: a late timer, or a reply after a timeout)
        assert self.timer is not None
        self.timer.cancel()
        self.handle.session.inbox.forget(self.reply)
        self.reply = ""
        pending = self.handle._pending
        left = pending[self.target] - 1
        if left:
            pending[self.target] = left
        else:
            del pending[self.target]
        return True

    def cancel(self, why: str) -> None:
        """End the call now with a failure saying ``why`` (its handle is closed, or its awaiter gave up);
        nothing if it has ended already."""
        if self.done is None:
            return
        if self.reply:
            self.abandoned.append(self.reply)
        self._end_attempt()
        self._finish(ActorResponse(False, why))

    def _tell_cancelled(self, reply: str) -> None:
        """Tell the actor serving the attempt whose reply subject is ``reply`` that its caller gave
        up: its host cancels the handler (`beach.client.scope`)."""
        eagerly(self.handle.session.tell_cancelled(self.handle._realm, reply), self.handle._background)

    def _answered(self, outcome: Msg | BaseException) -> None:
        """An attempt's end: its reply, or what ended it (a timeout, the bus refusing or closing)."""
        if isinstance(outcome, TimeoutError) and self.reply:  # (its actor may still be at it)
            self.abandoned.append(self.reply)
        if not self._end_attempt():
            return
        if isinstance(outcome, ClosedError):
            self._finish(outcome)
            return
        if isinstance(outcome, Msg) and not no_responders(outcome):
            reply = wire.read_reply(outcome.data, outcome.subject)
            if isinstance(reply, wire.AnsweredReply) and reply.body is not None:  # its data: in the object store
                self.fetching = self.handle._background.start(self._fetch(reply, reply.body))
                return
            self._decide(self.handle._response(reply, self.target))
            return
        self._decide(self.handle._response(outcome, self.target))

    async def _fetch(self, reply: wire.AnsweredReply, body: wire.BodyRef) -> None:
        """Read a reply's data from the object store (and delete it there), then go on with the reply."""
        try:
            data = await self.handle.session.incoming(body)
        except PayloadTooLarge as err:  # larger than this caller takes: not worth another attempt
            response = ActorResponse(False, f"{Failure.MALFORMED_REPLY}: {err}", uid=reply.uid, node=reply.node)
        except Exception as err:
            response = ActorResponse(False, f"{wire.BUS_UNAVAILABLE}: the reply's data could not be read: {err}",
                                     uid=reply.uid, node=reply.node)
        else:
            response = ActorResponse(reply.ok, reply.error, data, uid=reply.uid, node=reply.node)
        self.fetching = None
        if self.done is not None:
            self._decide(response)

    def _decide(self, response: ActorResponse) -> None:
        """An attempt's response: the call's outcome, or a retry."""
        self._end_span(response)
        if response.isSuccess or not (response.isTimedOut or response.failure in wire.RETRYABLE):
            self._finish(response)
            return
        conflict = response.failure is Failure.CONFLICT
        if not conflict:  # (a conflict says nothing against the actor: it is not marked failed)
            self.handle._targets.failed(self.target, response.failure is Failure.NO_ACTOR, self.tried)
        if response.failure is Failure.BUSY and isinstance(response.data, dict) and "uid" in response.data:
            self.tried.add(response.data["uid"])
        if self.attempt >= self.retries:
            self._finish(response)
            return
        # nobody else to ask now: back off before the next attempt
        pause = 0.0
        if conflict:
            pause = random.uniform(0, backoff(self.attempt, CONFLICT_BACKOFF, CONFLICT_BACKOFF_MAX))
        elif response.failure in (Failure.NO_ACTOR, Failure.BUS_UNAVAILABLE):
            pause = backoff(self.attempt, ABSENT_BACKOFF, ABSENT_BACKOFF_MAX)
        elif response.failure is Failure.BUSY and not self.handle._targets.others(self.tried):
            pause = backoff(self.attempt, BUSY_BACKOFF, BUSY_BACKOFF_MAX)
        self.attempt += 1
        if pause:
            self.loop.call_later(pause, self._retry)
        else:
            self._retry()

    def _retry(self) -> None:
        if self.done is None:
            return  # (ended meanwhile: cancelled during its back-off)
        self._resume(retry=True)

    def _resume(self, retry: bool = False) -> None:
        """Send the next attempt (a ``retry`` is counted), within the time the call has left; or end
        the call: its time is up, or the attempt cannot be sent."""
        budget = self._budget()
        if budget <= 0:
            self._finish(ActorResponse.timeout())
            return
        if retry:
            self.handle._meter.row(self.handle._label, self.request_type).retries += 1
        try:
            self._send(budget)
        except Exception as err:  # the connection closed, or NATS took no more meanwhile
            self._finish(err)

    def _end_span(self, outcome: ActorResponse | BaseException) -> tuple[str, str]:
        """End the span of the attempt in flight, if any, with ``outcome``; return the outcome's
        label (`beach.metering.outcome`, or ``closed`` / ``error`` for an exception) and text."""
        if isinstance(outcome, ActorResponse):
            label, text = metering.outcome(outcome.isSuccess, outcome.error), outcome.error
        else:
            label, text = tracing.raised(outcome)
        sending, self.sending = self.sending, None
        if sending is not None:
            sending.end(label, text)
        return label, text

    def _finish(self, outcome: ActorResponse | BaseException) -> None:
        handle = self.handle
        handle._calls.discard(self)
        if self.scope is not None:
            self.scope.calls.discard(self)
        for reply in self.abandoned:  # its attempts' actors still at it stop: nobody waits for them now
            self._tell_cancelled(reply)
        self.abandoned.clear()
        label, text = self._end_span(outcome)  # (an attempt cut short: cancelled, closed)
        if self.spans is not None and self.owns_spans:
            self.spans.end(label, text)
        if isinstance(outcome, ActorResponse):  # counted in the session's meter of calls
            handle._meter.add(handle._label, self.request_type, label, time.monotonic() - self.started)
        if self.body is not None:
            self.body.release()
            self.body = None
        if self.fetching is not None:  # (cancelled while it read its reply's data: the read stops)
            self.fetching.cancel()
            self.fetching = None
        done, self.done = self.done, None
        if done is not None:
            done(outcome)

