"""The event loop of the processes and threads beach runs itself: uvloop where it is installed (a
default dependency where it has wheels), asyncio's own elsewhere.

Node agents, actor hosts, the blocking face's loop, the ``beach`` commands, the dashboard and the
REST bridge run on `new` loops. A user's own loop is never replaced: ``AsyncBeach.open`` runs on
whatever loop awaits it, and no event loop policy is installed. ``BEACH_EVENT_LOOP=asyncio`` in the
environment chooses asyncio's loop even where uvloop is installed (to compare the two, or where
uvloop misbehaves); processes a node starts inherit it.

Also what waiting on those loops needs: `within` (a bounded wait that loses no cancellation) and
`after_uvicorn` (a web tool's cleanup, run to its end after uvicorn re-raises its stop signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "BEACH_EVENT_LOOP"


def kind() -> str:
    """``'uvloop'`` or ``'asyncio'``: the loop `new` makes in this process."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def new() -> asyncio.AbstractEventLoop:
    """A new event loop of `kind`."""
    if kind() == "uvloop":
        import uvloop

        # (where asyncio's own loop says which selector it uses, at DEBUG: a node run at DEBUG shows it)
        logging.getLogger("asyncio").debug("Using uvloop")
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def costly_here(loop: asyncio.AbstractEventLoop) -> bool:
    """True where entering ``loop`` (``run_forever``) costs more than handing work to a thread that
    runs it: uvloop on the main thread, where each run sets up and tears down a signal self-pipe
    (measured: ~80-250 µs a run, against ~5 µs in another thread and ~15 µs for asyncio's loop)."""
    return type(loop).__module__.startswith("uvloop") and threading.current_thread() is threading.main_thread()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a `new` loop."""
    with asyncio.Runner(loop_factory=new) as runner:
        return runner.run(main)


@contextlib.contextmanager
def after_uvicorn() -> Iterator[None]:
    """Around ``uvicorn.Server.serve``: uvicorn re-raises the signal that stopped it once it is done,
    to the handler it found (`run`'s, which would cancel the main coroutine mid-cleanup and exit
    with a traceback); in this block that handler does nothing, so what follows the server (closing
    the connection, flushing) runs to its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``awaitable``'s result, run in a task of its own for ``timeout`` seconds at most (then it is
    cancelled and waited for, and `TimeoutError` raised); cancelling the caller cancels it too.

    What ``asyncio.wait_for`` is meant to be, without Python 3.11's flaw (it returns the result when
    the awaited thing ends in the turn its caller is cancelled: the cancellation is lost). Its own
    task keeps inside it what it does with a cancellation: nats-py's ``drain`` swallows one, which,
    awaited inline under ``asyncio.timeout``, would swallow the timeout (and a cancel of the caller).
    For a future or event of beach's own, ``async with asyncio.timeout(...)`` is enough."""
    task = asyncio.ensure_future(awaitable)
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.shield(task)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # (a second cancel of the caller meanwhile goes on up)
        if not task.cancelled():
            task.exception()  # (retrieved: an outcome nobody waits for any more is not reported as lost)
