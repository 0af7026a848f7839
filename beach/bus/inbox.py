"""Request/reply over one shared inbox subscription.

The same scheme as nats-py's ``request()`` (one wildcard inbox subscription, a token per request),
minus its per-call costs that show at tens of thousands of requests per second: a counter instead
of a fresh NUID and random bytes per token, and no future or task of its own per request. A
request registers what gets its reply (`expect`), publishes (`send`) and keeps its own timer;
`request` does the three for the control calls that simply await their answer.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from beach import bus
from beach.errors import CLOSED, CLOSED_DURING_CALL, ClosedError, PermissionDenied, SealError
from beach.security.seal import Sealer

NO_RESPONDERS_STATUS = "503"  # the status header of NATS's answer when no subscriber has the subject

Answer = Callable[[Msg | BaseException], None]
"""Gets a request's reply, or the error that ends it (closed, refused by NATS), once."""


def no_responders(msg: Msg) -> bool:
    """True if ``msg`` is NATS saying nobody listens on the subject the request went to."""
    return msg.headers is not None and msg.headers.get("Status") == NO_RESPONDERS_STATUS


class Inbox:
    """Sends requests and routes their replies back to whoever expects them."""

    def __init__(self, nc: Client, sealer: Sealer | None = None) -> None:
        self.nc = nc
        self.sealer = sealer
        self.prefix = nc.new_inbox() + "."
        self._waiting: dict[str, tuple[Answer, str]] = {}  # token → (answer, the subject the request went to)
        self._streams: dict[str, tuple[Answer, str]] = {}  # the same, for answers of many messages
        self._tokens = itertools.count()
        self.closed = False
        self.reason = ""  # why it was closed, when it was not by its owner (" (...)", appended to messages)

    async def start(self) -> None:
        """Subscribe to the inbox (once, before the first request)."""
        await self.nc.subscribe(self.prefix + "*", cb=self._on_reply, pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self.prefix):]
        if self.sealer is not None and msg.data:  # (a no-responders status has no body)
            try:
                msg.data = self.sealer.open(f"{msg.subject} ", msg.data)
            except SealError:
                return  # forged or replayed: counted; the real reply may still come
        waiting = self._waiting.pop(token, None) or self._streams.get(token)
        if waiting is not None:
            waiting[0](msg)

    def expect(self, subject: str, answer: Answer, many: bool = False) -> str:
        """The reply subject of a request to ``subject``, whose reply (or end) goes to ``answer``;
        with ``many``, every message to it, until `forget`. Raises `ClosedError` once the
        connection is closed."""
        if self.closed:
            raise ClosedError(CLOSED + self.reason)
        token = format(next(self._tokens), "x")
        (self._streams if many else self._waiting)[token] = (answer, subject)
        return self.prefix + token

    def forget(self, reply: str) -> None:
        """Stop expecting the reply to ``reply`` (its request ended otherwise: a timeout)."""
        self._waiting.pop(reply[len(self.prefix):], None)
        self._streams.pop(reply[len(self.prefix):], None)

    async def send(self, subject: str, payload: bytes, reply: str, failed: Answer,
                   headers: dict[str, str] | None = None) -> None:
        """Publish a request (sealed, with a key; ``headers`` as they are); what NATS refuses goes
        to ``failed`` (`BusError`: not sent) instead of being raised."""
        if self.sealer is not None:
            payload = self.sealer.seal(f"{subject} {reply}", payload)
        try:
            await self.nc.publish(subject, payload, reply=reply, headers=headers)
        except nats.errors.Error as err:
            failed(bus.failure(err, f"cannot send a request to {subject}", self.reason or bus.lost_suffix(self.nc)))

    def refused(self, action: str, subject: str, message: str) -> None:
        """NATS refused to let this connection ``action`` ('publish', 'subscription') on
        ``subject`` (in lower case, as nats-py reports it): end the requests waiting on a publish
        there with `PermissionDenied` (``message`` with the subject as sent)."""
        if action != "publish":
            return
        for token, (answer, sent_to) in list(self._waiting.items()):
            if sent_to.lower() == subject:
                del self._waiting[token]
                answer(PermissionDenied(message.format(subject=sent_to)))

    def close(self, reason: str = "") -> None:
        """End every request still waiting for its reply, and every later one, with `ClosedError`
        (whose message ends with ``reason``, when the connection was lost rather than closed)."""
        self.closed = True
        self.reason = self.reason or (f": {reason}" if reason else "")
        waiting, self._waiting = self._waiting, {}
        streams, self._streams = self._streams, {}
        for answer, _ in [*waiting.values(), *streams.values()]:
            answer(ClosedError(CLOSED_DURING_CALL + self.reason))

    async def request(self, subject: str, payload: bytes, timeout: float,
                      headers: dict[str, str] | None = None) -> Msg:
        """Publish ``payload`` on ``subject`` (with NATS ``headers``, if any) and return the reply.

        Raises nats-py's ``NoRespondersError`` when nobody listens on ``subject`` (the server
        says so at once), its ``TimeoutError`` after ``timeout`` seconds, `ClosedError` once the
        connection is closed, and `BusError` when NATS takes no more (a full reconnect buffer).
        """
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Msg] = loop.create_future()

        def answer(outcome: Msg | BaseException) -> None:
            if answered.done():
                return
            if isinstance(outcome, BaseException):
                answered.set_exception(outcome)
            else:
                answered.set_result(outcome)

        reply = self.expect(subject, answer)
        timer = loop.call_later(timeout, answer, NatsTimeout())
        try:
            await self.send(subject, payload, reply, answer, headers)
            msg = await answered
        finally:
            timer.cancel()
            self.forget(reply)
        if no_responders(msg):
            raise NoRespondersError
        return msg
