"""Request/reply over one shared inbox subscription.

The same scheme as nats-py's ``request()`` (one wildcard inbox subscription, a token per request),
minus its per-call costs that show at tens of thousands of requests per second: a counter instead
of a fresh NUID and random bytes per token, and a timer instead of ``asyncio.wait_for``. Every
request passes its own timeout; there is no default.
"""

from __future__ import annotations

import asyncio
import itertools

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from beach import bus
from beach.errors import CLOSED, CLOSED_DURING_CALL, ClosedError, PermissionDenied, SealError
from beach.security.seal import Sealer

NO_RESPONDERS_STATUS = "503"  # the status header of NATS's answer when no subscriber has the subject


class Inbox:
    """Sends requests and routes their replies back to the callers."""

    def __init__(self, nc: Client, sealer: Sealer | None = None) -> None:
        self.nc = nc
        self.sealer = sealer
        self.prefix = nc.new_inbox() + "."
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._subjects: dict[str, str] = {}  # token → subject, to fail the calls NATS refused
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
        future = self._waiting.pop(token, None)
        if future is not None and not future.done():
            future.set_result(msg)

    def refused(self, action: str, subject: str, message: str) -> None:
        """NATS refused to let this connection ``action`` ('publish', 'subscription') on
        ``subject`` (in lower case, as nats-py reports it): fail the requests waiting on a publish
        there with `PermissionDenied` (``message`` with the subject as sent)."""
        if action != "publish":
            return
        for token, sent_to in list(self._subjects.items()):
            future = self._waiting.get(token)
            if sent_to.lower() == subject and future is not None and not future.done():
                future.set_exception(PermissionDenied(message.format(subject=sent_to)))

    def close(self, reason: str = "") -> None:
        """Fail every request still waiting for its reply, and every later one, with `ClosedError`
        (whose message ends with ``reason``, when the connection was lost rather than closed)."""
        self.closed = True
        self.reason = self.reason or (f": {reason}" if reason else "")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ClosedError(CLOSED_DURING_CALL + self.reason))
        self._waiting.clear()

    async def request(self, subject: str, payload: bytes, timeout: float) -> Msg:
        """Publish ``payload`` on ``subject`` and return the reply.

        Raises nats-py's ``NoRespondersError`` when nobody listens on ``subject`` (the server
        says so at once), its ``TimeoutError`` after ``timeout`` seconds, `ClosedError` once the
        connection is closed, and `BusError` when NATS takes no more (a full reconnect buffer).
        """
        if self.closed:
            raise ClosedError(CLOSED + self.reason)
        token = format(next(self._tokens), "x")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = future
        self._subjects[token] = subject
        timer = loop.call_later(timeout, _expire, future)
        reply = self.prefix + token
        if self.sealer is not None:
            payload = self.sealer.seal(f"{subject} {reply}", payload)
        try:
            try:
                await self.nc.publish(subject, payload, reply=reply)
            except nats.errors.Error as err:
                reason = self.reason or bus.lost_suffix(self.nc)
                raise bus.failure(err, f"cannot send a request to {subject}", reason) from None
            msg = await future
        finally:
            timer.cancel()
            self._waiting.pop(token, None)
            del self._subjects[token]
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS_STATUS:
            raise NoRespondersError
        return msg


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(NatsTimeout())
