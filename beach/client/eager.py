"""Run a coroutine at once, up to its first suspension, and make it a task only if it suspends.

A quick request handler is done before it ever waits, and then needs no task at all: a task per
message was a fifth of a busy actor host's time. A publish to NATS is done at once too, unless its
buffer is full. One that does wait is carried on by a task from where it stopped, in the same context.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from beach.client.runner import Background


class _Started:
    """Awaitable carrying on a coroutine already run up to its first suspension, where it yielded
    ``waiting_on`` (what a task must wait for before resuming it)."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Any:
        coro, value = self.coro, self.waiting_on
        if asyncio.isfuture(value):
            # put back the mark `start` took off (see there), also on a future done meanwhile:
            # the task takes a marked future as awaited, an unmarked one as a bare yield (an error)
            value._asyncio_future_blocking = True
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown into the task (cancellation): pass it on
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _carry_on(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    return await _Started(coro, waiting_on)


def start(coro: Coroutine[Any, Any, None], background: Background,
          context: contextvars.Context | None = None) -> asyncio.Task[Any] | None:
    """Run ``coro`` (on the loop's thread; in ``context`` if given) until it first waits; if it does,
    ``background`` carries it on as a task, which is returned (None: it is done). What ``coro``
    raises before its first wait is raised here."""
    try:
        waiting_on = coro.send(None) if context is None else context.run(coro.send, None)
    except StopIteration:
        return None
    if asyncio.isfuture(waiting_on):
        # A coroutine stopping in a future's await marks the future as awaited and expects a
        # task to take the mark off as it starts waiting (asyncio's protocol for future-likes,
        # `_asyncio_future_blocking`); a second coroutine reaching the same future (a shared
        # "ready") while the mark is on fails at once. Take it off now; `_Started` puts it back
        # for the task that carries the coroutine on.
        waiting_on._asyncio_future_blocking = False
    return background.start(_carry_on(coro, waiting_on), context)
