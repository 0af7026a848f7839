"""`Scope`: the request an actor serves, as its caller's cancellation reaches it.

A caller that gives up on an attempt (its timeout, an awaiter cancelled, a handle closed) says so
on ``beach.cancel.<realm>`` naming the attempt's reply subject; the actor host serving it finds the
request's scope by that subject (`beach.runtime.dispatch`) and cancels it: an ``async def``
handler's task is cancelled, a ``def`` handler sees ``self.isCancelled()`` (and ``self.cancelled``,
an event it can wait on), and the calls the handler made that are still in flight are cancelled
with it — which tells their actors in turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Protocol


class Cancellable(Protocol):
    """What a scope cancels: a call in flight (`beach.client.call.Call`)."""

    def cancel(self, why: str) -> None: ...


class Scope:
    """One request being served: whether its caller gave up, the calls it made that are in flight,
    and (an ``async def`` handler's) the task serving it."""

    __slots__ = ("asynchronous", "cancelled", "_event", "calls", "task")

    def __init__(self, asynchronous: bool = False) -> None:
        self.asynchronous = asynchronous  # served by an async def handler: its task is cancelled with it
        self.cancelled = False
        self._event: threading.Event | None = None
        self.calls: set[Cancellable] = set()  # (touched on the loop's thread only)
        self.task: asyncio.Task[None] | None = None  # an async handler's: cancelled with the request

    @property
    def event(self) -> threading.Event:
        """An event set when the request is cancelled (made when first asked for)."""
        if self._event is None:
            self._event = threading.Event()
            if self.cancelled:
                self._event.set()
        return self._event

    def cancel(self, why: str) -> None:
        """Cancel the request (on the loop's thread): its calls in flight, its async handler's task;
        a def handler sees `cancelled`."""
        if self.cancelled:
            return
        self.cancelled = True
        if self._event is not None:
            self._event.set()
        for call in list(self.calls):
            call.cancel(why)
        if self.task is not None and not self.task.done():
            self.task.cancel(why)


current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("beach_scope", default=None)
"""The scope of the request the current handler serves (None outside handlers)."""
