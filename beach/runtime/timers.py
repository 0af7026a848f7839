"""`Timers`: an actor's ``schedule`` (every N seconds) and ``delay`` (once, after N seconds).

A timer calls user code through the actor runtime (so what it logs is the actor's); one that
raises is logged and keeps its schedule. Timers end when the actor stops.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from beach.client.runner import Background
from beach.runtime import trace

log = logging.getLogger("beach.runtime")


class Timers:
    """The timers of one actor. ``call`` runs user code (awaited or in a worker thread),
    ``in_loop`` tells whether the caller is on the event loop's thread, ``report`` records a
    timer's traceback as the actor's last error, ``context`` gives the context timers run in."""

    def __init__(self, uid: str, loop: asyncio.AbstractEventLoop, call: Callable[..., Awaitable[Any]],
                 in_loop: Callable[[], bool], report: Callable[[str], None],
                 context: Callable[[], contextvars.Context]) -> None:
        self.uid = uid
        self._context = context
        self.loop = loop
        self._call = call
        self._in_loop = in_loop
        self._report = report
        self._background = Background()
        self.stopped = False

    def schedule(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Call ``func(*args, **kwargs)`` now and then every ``delay`` seconds until the actor
        stops (from a plain thread, the first call happens at once, in the caller, as the
        original did)."""
        first_delay = 0.0
        if not self._in_loop() and not inspect.iscoroutinefunction(func):
            first_delay = delay
            func(*args, **kwargs)

        async def repeat() -> None:
            await asyncio.sleep(first_delay)
            while not self.stopped:
                await self._guarded(func, args, kwargs)
                await asyncio.sleep(delay)

        self._soon(repeat)

    def delay(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Call ``func(*args, **kwargs)`` once, ``delay`` seconds from now, unless the actor has
        stopped by then."""
        async def later() -> None:
            await asyncio.sleep(delay)
            if not self.stopped:
                await self._guarded(func, args, kwargs)

        self._soon(later)

    async def cancel(self) -> None:
        """End every timer (the actor stops)."""
        self.stopped = True
        await self._background.cancel()

    def _soon(self, coro_fn: Callable[[], Any]) -> None:
        # In the actor's own context: a timer set by a handler is not part of that request (its
        # deadline, its state turn).
        if self._in_loop():
            self._background.start(coro_fn(), self._context())
        else:
            self.loop.call_soon_threadsafe(lambda: self._background.start(coro_fn(), self._context()))

    async def _guarded(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            await self._call(func, *args, **kwargs)
        except Exception as err:
            error = trace.user_traceback(err)
            self._report(error)
            log.error("timer %s of actor %s raised:\n%s", getattr(func, "__name__", func), self.uid, error)
