"""Running beach's async core from blocking code.

Beach has one implementation, in asyncio. Its blocking face (``Beach.addActor``,
``ActorHandle.request``, ...) runs each call on the event loop that owns the connection. In a plain
script that loop is a `DrivenLoop`: the calling thread drives it while it waits (a helper thread
only while nobody calls); in an actor host it is the host's own loop, and blocking calls come from
handler threads, which hand the call over and wait (`Runner`).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from beach.errors import CLOSED, CLOSED_DURING_CALL, ClosedError, UsageError

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
        return self._schedule(coro)

    def _schedule(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        context = contextvars.copy_context()
        result: Future[T] = Future()
        self._waiting.add(result)
        result.add_done_callback(self._waiting.discard)

        def copy(task: asyncio.Task[T]) -> None:
            if result.done():
                return
            if task.cancelled():  # only the loop's shutdown cancels these tasks
                result.set_exception(ClosedError(CLOSED_DURING_CALL))
            elif (error := task.exception()) is not None:
                result.set_exception(error)
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

    def soon(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` (which must not block) on the loop's side without waiting for it: at once
        on the loop's own thread, else from the loop soon. Raises `ClosedError` once closed."""
        if self.loop.is_closed() or not self.loop.is_running():
            raise ClosedError(CLOSED)
        if self.in_loop_thread():
            fn()
        else:
            self.loop.call_soon_threadsafe(fn)


GRACE = 0.005  # seconds without a caller before the helper thread drives the loop
HELP_WAITING = 0.001  # how often the helper looks while threads wait for a loop another drives
PUMP_SECONDS = 0.0002  # polls closer together than this share one pump
PUMP_TURNS = 32
PUMP_WAIT = 0.001  # a poll that comes back with nothing new waits this long for news, in the selector


def _outcome_unread(task: asyncio.Task[Any]) -> None:
    # read, so that asyncio does not log "exception was never retrieved" for a call nobody awaits
    if not task.cancelled():
        task.exception()


class DrivenLoop(Runner):
    """A `Runner` for plain scripts whose event loop the *calling* thread drives while it waits.

    A blocking call runs its coroutine on the loop from the caller's own thread (no thread hop: a
    hop into a loop on another thread costs 110-210 µs here, more than the request itself). While
    no caller has driven it for `GRACE` seconds, a daemon helper thread drives it, so that the
    connection stays alive, pings are answered, the directory follows and reconnects happen while
    the script sleeps; a caller alone takes it back by stopping the helper's run. One thread drives
    at a time (``_driving``); a caller that finds another caller driving hands its coroutine over
    and waits, and while threads wait the helper drives for them all (as a loop thread would):
    several threads calling at once pay a thread switch per call, one thread pays none.
    """

    def __init__(self, name: str = "beach-loop") -> None:
        super().__init__(asyncio.new_event_loop())
        self._driving = threading.Lock()
        self._changed = threading.Condition()  # guards the helper's state; the helper waits on it
        self._helping = False  # the helper thread drives now
        self._claimed = False  # a lone caller asked the helper for the loop
        self._starving = 0     # callers that cannot drive (their thread runs a loop of its own)
        self._released = time.monotonic()
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()  # calls run directly, not through submit
        # callers waiting while another thread drives, each woken alone when its own call is done
        # (waking them all at each reply would be a herd)
        self._waiting_threads: list[threading.Event] = []
        self._pumped = 0.0
        self._news = 0  # calls to `changed`: a poll that saw none since the last pump waits for one
        self._news_seen = 0
        # the calls in `wait` or a waiting pump, for which `changed` stops the loop (a set: adding
        # and discarding are atomic, where a count's += from several threads may lose an update)
        self._watching: set[object] = set()
        self.thread = threading.Thread(target=self._help, name=name, daemon=True)
        self.thread.start()

    # ---------------------------------------------------------------- driving

    def _drive(self, done: Callable[[], bool]) -> None:
        """Run the loop in this thread until ``done()``; the caller holds ``_driving``."""
        loop = self.loop
        try:
            while not done() and not loop.is_closed():
                loop.run_forever()  # until a done callback (or the helper's ask) stops it
        finally:
            self._released = time.monotonic()

    def _let_go(self) -> None:
        # Nobody is woken: a caller that lets go usually calls again at once. While threads wait,
        # the helper looks every millisecond (HELP_WAITING) and drives the loop for them once free.
        self._driving.release()

    def _help(self) -> None:
        asyncio.set_event_loop(self.loop)
        while True:
            with self._changed:
                while not self._closed and (self._driving.locked() or (
                        not self._starving and not self._waiting_threads
                        and time.monotonic() - self._released < GRACE)):
                    idle = GRACE - (time.monotonic() - self._released)
                    if self._waiting_threads:
                        self._changed.wait(HELP_WAITING)
                    else:
                        self._changed.wait(GRACE if self._driving.locked() else max(idle, 0.001))
                if self._closed:
                    return
                if not self._driving.acquire(blocking=False):
                    continue
                self._helping = True
                self._claimed = False
            try:
                while not self.loop.is_closed() and not self._closed:
                    self.loop.run_forever()  # until a lone caller asks for the loop (`_claim`)
                    if not self._waiting_threads and not self._starving or self._claimed:
                        break  # (a call finishing stops the loop too: drive on while others wait)
            finally:
                with self._changed:
                    self._helping = False
                self._released = time.monotonic()
                self._let_go()

    def _take(self, patience: float) -> bool:
        """Take the loop to drive it: at once if it is free; from the helper if it drives (asking
        it to stop, waiting up to ``patience`` seconds); never from another caller (False)."""
        if self._driving.acquire(blocking=False):
            return True
        if not self._helping:
            return False
        self._claim()
        return self._driving.acquire(timeout=patience) if patience > 0 else False

    def _claim(self) -> None:
        """Ask the helper thread, if it drives, to stop so that a caller can."""
        with self._changed:
            if self._helping:
                self._claimed = True
                self.loop.call_soon_threadsafe(self.loop.stop)

    # ---------------------------------------------------------------- calls

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop (see `Runner.submit`); whoever drives next runs it."""
        if self._closed or self.loop.is_closed():
            coro.close()
            raise ClosedError(CLOSED)
        result = super()._schedule(coro)
        result.add_done_callback(self._finished)
        return result

    def soon(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` (which must not block: it typically creates a task) on the loop's side
        without waiting: here and now when the loop is free, holding it (the tasks it creates run
        when a thread next drives the loop: a poll, the next call, or the helper within `GRACE`,
        so that many started in a row go out together); else handed to whoever drives it.
        Raises `ClosedError` once closed."""
        if self._closed or self.loop.is_closed():
            raise ClosedError(CLOSED)
        if asyncio._get_running_loop() is None and self._driving.acquire(blocking=False):
            try:
                fn()
            finally:
                self._driving.release()  # (nobody to wake: the loop has only work for later)
        elif self.in_loop_thread():
            fn()
        else:
            self.loop.call_soon_threadsafe(fn)

    def _finished(self, result: Future[Any]) -> None:
        self.changed()

    def changed(self) -> None:
        """Something a waiting thread may wait for has happened (a call finished, a result came):
        the thread driving the loop, if this runs on it, stops to look (and drives on if it was
        not its own)."""
        self._news += 1
        if self._watching and self.in_loop_thread():
            self.loop.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` and return its result (or raise its error), driving the loop from this
        thread while it runs. Raises `UsageError` on the loop's own thread (see `Runner.run`)."""
        if self.in_loop_thread():
            coro.close()
            raise UsageError("a blocking beach call was made from async code running on beach's event "
                             "loop; await the async form instead (e.g. `await handle.arequest(...)`)")
        if self._closed or self.loop.is_closed():
            coro.close()
            raise ClosedError(CLOSED)
        if not self._waiting_threads and asyncio._get_running_loop() is None and self._take(0.05):
            # the loop is free: run the call as a task here, without a future or a wake-up
            try:
                task = self.loop.create_task(self._stopping_after(coro), context=contextvars.copy_context())
                self._tasks.add(task)
                try:
                    self._drive(task.done)
                except BaseException:  # a KeyboardInterrupt while driving: the caller has gone
                    if not task.done():
                        task.cancel()
                        task.add_done_callback(_outcome_unread)
                    raise
                finally:
                    self._tasks.discard(task)
            finally:
                self._let_go()
            if task.cancelled():  # only close() cancels calls
                raise ClosedError(CLOSED_DURING_CALL)
            return task.result()
        result = self.submit(coro)
        wake = threading.Event()
        result.add_done_callback(lambda _: wake.set())
        self.wait(result.done, wake=wake)
        return result.result()

    async def _stopping_after(self, coro: Coroutine[Any, Any, T]) -> T:
        # stopping the loop from inside the call's last step saves an iteration per call
        try:
            return await coro
        finally:
            self.loop.stop()

    def wait(self, done: Callable[[], bool], timeout: float | None = None,
             wake: threading.Event | None = None) -> bool:
        """Drive the loop (or wait for whoever drives it) until ``done()`` or ``timeout`` seconds;
        return ``done()``. ``wake``: an event set when ``done()`` may have become true (else
        another thread's driving is watched every 50 ms)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wake = wake or threading.Event()
        foreign = asyncio._get_running_loop() is not None  # this thread runs a loop of its own
        if foreign:
            with self._changed:
                self._starving += 1
                self._changed.notify_all()
        watch = object()
        self._watching.add(watch)
        try:
            while not done():
                # With other threads waiting, the helper drives for them all (as a loop thread of
                # its own would): callers taking turns would cost a thread switch per call.
                alone = not self._waiting_threads
                if not foreign and alone and self._take(0.05 if deadline is None else
                                                        max(0.0, min(0.05, deadline - time.monotonic()))):
                    try:
                        if deadline is None:
                            self._drive(done)
                        else:
                            timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self.loop.stop)
                            try:
                                self._drive(lambda: done() or time.monotonic() >= deadline)
                            finally:
                                timer.cancel()
                    finally:
                        self._let_go()
                    if done():
                        return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return done()
                if (foreign or self._driving.locked()) and not done():
                    self._waiting_threads.append(wake)
                    try:
                        if foreign or self._driving.locked():
                            wake.wait(0.05 if left is None else min(left, 0.05))
                    finally:
                        self._waiting_threads.remove(wake)
                        wake.clear()
        finally:
            self._watching.discard(watch)
            if foreign:
                with self._changed:
                    self._starving -= 1
        return True

    def pump(self) -> None:
        """Let the loop handle what has arrived, if nobody else drives it: what a poll
        (`FutureResults.isFinished`) calls. Polls closer together than `PUMP_SECONDS` share one
        pump; one that finds nothing new since the last pump waits up to `PUMP_WAIT` for news in
        the loop's selector. A script spinning on ``isFinished()`` thus sleeps where raw asyncio
        would, instead of burning a core the server and the actors need."""
        now = time.monotonic()
        wait = 0.0
        if now - self._pumped < PUMP_SECONDS:
            if self._news != self._news_seen:
                return
            wait = PUMP_WAIT
        # (the helper, if it drives, is asked for the loop: else it drives on while this thread
        # spins on its polls, the two passing the GIL back and forth)
        if asyncio._get_running_loop() is None and self._take(PUMP_WAIT):
            loop = self.loop
            try:
                self._news_seen = self._news
                # a reply takes a few iterations (socket, parser, subscription, the waiting call):
                # turn until nothing is ready (asyncio has no public way to ask, hence _ready)
                for _ in range(PUMP_TURNS):
                    loop.call_soon(loop.stop)
                    loop.run_forever()
                    if not getattr(loop, "_ready", None):
                        break
                if wait and self._news == self._news_seen:
                    timer = loop.call_later(wait, loop.stop)  # `changed` stops it sooner
                    watch = object()
                    self._watching.add(watch)
                    try:
                        loop.run_forever()
                    finally:
                        self._watching.discard(watch)
                        timer.cancel()
                self._news_seen = self._news
            finally:
                self._pumped = self._released = time.monotonic()
                self._let_go()

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop the loop and its helper thread (pending tasks are cancelled; calls in flight in
        other threads fail with `ClosedError`)."""
        if self._closed:
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            if not self.in_loop_thread():
                self.run(shutdown())
        finally:
            with self._changed:
                self._closed = True
                if self._helping:
                    self.loop.call_soon_threadsafe(self.loop.stop)
                self._changed.notify_all()
            if threading.current_thread() is not self.thread:
                self.thread.join(5)
            if self._driving.acquire(timeout=5):
                try:
                    self.loop.close()
                finally:
                    self._driving.release()
            self.abandon()


class Background:
    """Fire-and-forget tasks, referenced until they finish (the event loop keeps only weak
    references to tasks, so an unreferenced one may vanish mid-flight)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop  # None: the running loop of each start
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task on the loop given (or the running one; in ``context`` if given).
        Off the loop's thread, only a thread that holds a `DrivenLoop` may call this."""
        task = (self._loop or asyncio.get_running_loop()).create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
