"""Running beach's async core from blocking code.

Beach has one implementation, in asyncio. Its blocking face (``Beach.addActor``,
``ActorHandle.request``, ...) hands each call to the event loop that owns the connection and waits
for the result. In a plain script that loop runs in a daemon thread started for it; in an actor
host it is the host's own loop, and blocking calls come from handler threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from .errors import CLOSED, CLOSED_DURING_CALL, ClosedError, UsageError

T = TypeVar("T")


class Runner:
    """Submits coroutines to one event loop from other threads and waits for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiting: set[Future[Any]] = set()  # calls submitted and not finished, for `abandon`

    def in_loop_thread(self) -> bool:
        """True if the caller runs on this runner's event loop thread."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop; return a concurrent future for its result.

        The coroutine runs in a copy of the caller's context, so context variables (the deadline
        of the request a handler is serving) carry over from a handler thread into the core.
        """
        if self.loop.is_closed() or not self.loop.is_running():
            coro.close()
            raise ClosedError(CLOSED)
        context = contextvars.copy_context()
        result: Future[T] = Future()
        self._waiting.add(result)
        result.add_done_callback(self._waiting.discard)

        def copy(task: asyncio.Task[T]) -> None:
            if result.done():
                return
            if task.cancelled():  # only the loop's shutdown cancels these tasks
                result.set_exception(ClosedError(CLOSED_DURING_CALL))
            elif task.exception() is not None:
                result.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                result.set_result(task.result())

        def start() -> None:
            if result.set_running_or_notify_cancel():
                self.loop.create_task(coro, context=context).add_done_callback(copy)
            else:
                coro.close()

        self.loop.call_soon_threadsafe(start)
        return result

    def abandon(self) -> None:
        """Fail every call still waiting (the loop has stopped and will not finish them)."""
        for waiting in list(self._waiting):
            if not waiting.done():
                waiting.set_exception(ClosedError(CLOSED_DURING_CALL))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block until it finishes; return its result or raise its error.

        Raises `UsageError` when called on the loop's own thread (an ``async def`` handler or
        callback), where blocking would deadlock: use the awaitable form (``await h.arequest(...)``).
        """
        if self.in_loop_thread():
            coro.close()
            raise UsageError("a blocking beach call was made from async code running on beach's event "
                             "loop; await the async form instead (e.g. `await handle.arequest(...)`)")
        return self.submit(coro).result()


class LoopThread(Runner):
    """A `Runner` whose event loop runs in a daemon thread of its own (for plain scripts)."""

    def __init__(self, name: str = "beach-loop") -> None:
        loop = asyncio.new_event_loop()
        super().__init__(loop)
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        self.thread = threading.Thread(target=main, name=name, daemon=True)
        self.thread.start()
        started.wait()

    def close(self) -> None:
        """Stop the loop and its thread (pending tasks are cancelled)."""
        if not self.loop.is_running():
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if threading.current_thread() is not self.thread:
            self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        if threading.current_thread() is not self.thread:
            self.thread.join(5)
            self.loop.close()
        self.abandon()


class Background:
    """Fire-and-forget tasks, referenced until they finish (the event loop keeps only weak
    references to tasks, so an unreferenced one may vanish mid-flight)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task on the running loop (in ``context`` if given)."""
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
