"""Run a coroutine at once, up to its first suspension, and make it a task only if it suspends.

A quick request handler is done before it ever waits, and then needs no task at all: a task per
message was a fifth of a busy actor host's time. One that does wait is carried on by a task from
where it stopped, in the same context.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from beach.client.runner import Background

_RESUME = object()  # what _Started yields first when its coroutine is to be resumed at once


class _Started:
    """Awaitable carrying on a coroutine already run up to its first suspension, where it yielded
    ``waiting_on`` (what a task must wait for before resuming it; `_RESUME`: nothing)."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Any:
        coro, value = self.coro, self.waiting_on
        sent: Any = None
        if value is _RESUME:
            try:
                value = coro.send(None)
            except StopIteration as stop:
                return stop.value
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
    if asyncio.isfuture(waiting_on):  # wait for it here, then resume the coroutine (see `start`)
        try:
            await asyncio.wait({waiting_on})
        except BaseException as exc:  # cancelled while waiting: the coroutine gets it
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            return await _Started(coro, waiting_on)
        return await _Started(coro, _RESUME)
    return await _Started(coro, waiting_on)


def start(coro: Coroutine[Any, Any, None], context: contextvars.Context, background: Background) -> None:
    """Run ``coro`` in ``context`` until it first waits; if it does, ``background`` carries it on
    as a task. What ``coro`` raises before its first wait is raised here."""
    try:
        waiting_on = context.run(coro.send, None)
    except StopIteration:
        return
    if asyncio.isfuture(waiting_on):
        # A coroutine stopping in a future's await marks the future as awaited and expects a
        # task to take the mark off as it starts waiting (asyncio's protocol for future-likes);
        # a second coroutine reaching the same future (a shared "ready") while the mark is on
        # fails at once. Here the caller is that task: take it off now, and wait in `_carry_on`.
        waiting_on._asyncio_future_blocking = False
    background.start(_carry_on(coro, waiting_on), context)
