"""Running beach's async core from blocking code.

Beach has one implementation, on an event loop. Its blocking face (``Beach.addActor``,
``ActorHandle.request``, ...) starts each call on the loop that owns the connection and waits for
its outcome (`Runner.call`; `Runner.run` for a coroutine). In a plain script that loop is a
`DrivenLoop`: the calling thread drives it while it waits (a helper thread only while nobody
calls); in an actor host it is the host's own loop, on its own thread, and blocking calls come
from handler threads, which hand the call over and wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from beach import loop as beach_loop
from beach.errors import CLOSED, CLOSED_DURING_CALL, ClosedError, UsageError

T = TypeVar("T")
Done = Callable[[Any], None]
"""What a started call reports its outcome to, once: a value, or the exception it ends with."""
Start = Callable[[Done], Any]
"""Starts a call on the loop (on the loop's side) and reports its outcome to the `Done` given."""

_TIMED_OUT = object()
ON_THE_LOOP = ("a blocking beach call was made from async code running on beach's event loop; await the "
               "async form instead (e.g. `await handle.arequest(...)`)")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Give ``future`` its outcome (an exception: raised by whoever awaits it), unless it has one."""
    if not future.done():
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _outcome(box: list[Any]) -> Any:
    outcome = box[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class Runner:
    """Starts calls on one event loop, running in another thread, and waits for their outcomes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiting: dict[int, Done] = {}  # calls waited for and not finished, for `abandon`

    def in_loop_thread(self) -> bool:
        """True if the caller runs on this runner's event loop thread."""
        return running_loop() is self.loop

    def _usable(self) -> None:
        if self.in_loop_thread():
            raise UsageError(ON_THE_LOOP)
        if self.loop.is_closed() or not self.loop.is_running():
            raise ClosedError(CLOSED)

    def call(self, start: Start, timeout: float | None = None) -> Any:
        """Start a call on the loop (``start(done)``, on the loop's thread) and block until it
        reports its outcome: return it, or raise it if it is an exception. ``timeout``: give up
        after that many seconds and return `TIMED_OUT` (the call goes on). Raises `UsageError` on
        the loop's own thread (blocking there would deadlock), `ClosedError` once closed."""
        self._usable()
        box: list[Any] = []
        finished = threading.Event()

        def done(outcome: Any) -> None:
            if not box:
                box.append(outcome)
                finished.set()

        self._waiting[id(box)] = done
        try:
            self.loop.call_soon_threadsafe(_begin, start, done, contextvars.copy_context())
            if not finished.wait(timeout):
                return TIMED_OUT
        finally:
            self._waiting.pop(id(box), None)
        return _outcome(box)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop (in a copy of the caller's context, so context variables such as
        the deadline of the request a handler serves carry over) and block until it finishes."""
        try:
            result: T = self.call(lambda done: _task(self.loop, coro, done))
        except (UsageError, ClosedError):
            coro.close()  # (never started: not a coroutine left unawaited)
            raise
        return result

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop without waiting; a concurrent future gets its outcome."""
        result: Future[T] = Future()

        def done(outcome: Any) -> None:
            if not result.done():
                if isinstance(outcome, BaseException):
                    result.set_exception(outcome)
                else:
                    result.set_result(outcome)

        self.soon(lambda: _task(self.loop, coro, done))
        return result

    def soon(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` (which must not block) on the loop's side without waiting for it: at once
        on the loop's own thread, else from the loop soon. Raises `ClosedError` once closed."""
        if self.loop.is_closed():
            raise ClosedError(CLOSED)
        if self.in_loop_thread():
            fn()
        else:
            self.loop.call_soon_threadsafe(fn)

    def abandon(self) -> None:
        """Fail every call still waited for (the loop has stopped and will not finish them)."""
        for done in list(self._waiting.values()):
            done(ClosedError(CLOSED_DURING_CALL))


TIMED_OUT = _TIMED_OUT
"""What `Runner.call` returns when its timeout passed first."""


def _begin(start: Start, done: Done, context: contextvars.Context) -> None:
    try:
        context.run(start, done)
    except BaseException as err:  # raised before the call even started: its outcome
        done(err)


def _task(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], done: Done) -> None:
    """Run ``coro`` as a task in the current context; its result or exception goes to ``done``
    (a cancelled task, which only a closing loop cancels, is a `ClosedError`)."""
    def finished(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            done(ClosedError(CLOSED_DURING_CALL))
        else:
            error = task.exception()
            done(error if error is not None else task.result())

    loop.create_task(coro, context=contextvars.copy_context()).add_done_callback(finished)


GRACE = 0.005  # seconds without a caller before the helper thread drives the loop


_local = threading.local()


def _event() -> threading.Event:
    """This thread's event to wait on (one per thread: a thread waits for one call at a time)."""
    try:
        event: threading.Event = _local.event
    except AttributeError:
        event = _local.event = threading.Event()
    event.clear()
    return event


class DrivenLoop(Runner):
    """A `Runner` for plain scripts, whose event loop the *calling* thread drives while it waits.

    A blocking call starts on the loop from the caller's own thread and the caller runs the loop
    until the call is done: no thread hop, which costs more here than the request itself. One
    thread drives at a time (``_driving``). A thread that finds another driving hands its call
    over and waits for it; when the driver's own call is done and others still wait, it hands the
    loop to one of them. While nobody has called for `GRACE` seconds a daemon helper thread drives
    it, so the connection stays alive (pings answered, the directory followed, reconnects made) while
    the script sleeps; a lone caller takes it back by asking the helper to stop.

    The outcome of the driver's own call stops the loop; the outcomes of the others only wake
    their threads, the driver drives on.
    """

    def __init__(self, name: str = "beach-loop", loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(loop or beach_loop.new())
        self._driving = threading.Lock()
        self._state = threading.Condition()  # guards the fields below; the helper waits on it
        self._helping = False  # the helper drives now
        self._leave = False  # a caller asked the helper for the loop
        self._waiters: list[threading.Event] = []  # threads waiting for calls another thread drives
        self._driver: int | None = None  # the thread running the loop now
        self._released = time.monotonic()
        self._closed = False
        self.thread = threading.Thread(target=self._help, name=name, daemon=True)
        self.thread.start()

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def _usable(self) -> None:
        if self.in_loop_thread():
            raise UsageError(ON_THE_LOOP)
        if self._closed or self.loop.is_closed():
            raise ClosedError(CLOSED)

    # ---------------------------------------------------------------- who drives

    def _take(self) -> bool:
        """Take the loop to drive it: at once if it is free; from the helper if it drives (it is
        asked to stop); never from another caller (False), in a thread running a loop of its own, or
        where entering the loop costs more than a hand-over (`beach.loop.costly_here`)."""
        if running_loop() is not None or beach_loop.costly_here(self.loop):
            return False
        if self._driving.acquire(blocking=False):
            return True
        with self._state:
            if not self._helping or self._waiters:
                return False  # a caller drives, or the helper drives for threads that wait
            self._leave = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        return self._driving.acquire(timeout=0.1)

    def _let_go(self) -> None:
        self._released = time.monotonic()
        self._driving.release()
        try:  # a thread waits for a call nobody drives now: it takes the loop (one that comes after
            self._waiters[0].set()  # this look finds the loop free itself)
        except IndexError:
            pass

    def _drive(self, done: Callable[[], bool]) -> None:
        """Run the loop in this thread (which holds ``_driving``) until ``done()``."""
        self._driver = threading.get_ident()
        try:
            while not done() and not self.loop.is_closed():
                self.loop.run_forever()  # until the outcome of this thread's call stops it
        finally:
            self._driver = None

    def _help(self) -> None:
        asyncio.set_event_loop(self.loop)
        while True:
            with self._state:
                while not self._closed and (self._driving.locked() or (
                        not self._waiters and time.monotonic() - self._released < GRACE)):
                    self._state.wait(GRACE)
                if self._closed:
                    return
                if not self._driving.acquire(blocking=False):
                    continue
                self._helping, self._leave = True, False
            try:
                while not self._leave and not self._closed and not self.loop.is_closed():
                    self.loop.run_forever()  # until a caller asks for the loop (or it closes)
            finally:
                with self._state:
                    self._helping = False
                self._let_go()

    # ---------------------------------------------------------------- calls

    def call(self, start: Start, timeout: float | None = None) -> Any:
        """Start a call and drive the loop (or wait for whoever drives it) until its outcome; return
        it, or raise it (see `Runner.call`)."""
        self._usable()
        box: list[Any] = []
        finished: list[threading.Event] = []  # made only if this thread has to wait for another's driving

        me = threading.get_ident()

        def done(outcome: Any) -> None:
            if not box:
                box.append(outcome)
                if finished:
                    finished[0].set()
                if self._driver == me and not self.loop.is_closed():
                    self.loop.stop()  # (this thread drives for this call: it returns)

        deadline = None if timeout is None else time.monotonic() + timeout

        def ready() -> bool:
            return bool(box)

        self._waiting[id(box)] = done
        try:
            if self._take():  # the usual case: nobody else drives, this thread runs the call itself
                try:
                    self.loop.call_soon(_begin, start, done, contextvars.copy_context())
                    self._drive_until(ready, deadline)
                finally:
                    self._let_go()
            else:
                self.loop.call_soon_threadsafe(_begin, start, done, contextvars.copy_context())
            if not self._wait(ready, finished, deadline):
                return TIMED_OUT
        finally:
            self._waiting.pop(id(box), None)
        return _outcome(box)

    def _drive_until(self, ready: Callable[[], bool], deadline: float | None) -> None:
        if deadline is None:
            self._drive(ready)
            return
        timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self.loop.stop)
        try:
            self._drive(lambda: ready() or time.monotonic() >= deadline)
        finally:
            timer.cancel()

    def _wait(self, ready: Callable[[], bool], events: list[threading.Event], deadline: float | None) -> bool:
        """Wait until ``ready()`` (the event in ``events``, made here if needed, is set then) or the
        deadline, driving the loop whenever it is free; return ``ready()``."""
        while not ready():
            if not events:
                events.append(_event())
                continue  # (the outcome may have come meanwhile)
            finished = events[0]
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self._take():
                try:
                    self._drive_until(ready, deadline)
                finally:
                    self._let_go()
                continue
            self._waiters.append(finished)
            if not self._driving.locked() or self._helping:
                with self._state:
                    self._state.notify()  # the helper drives for the threads that cannot
            try:
                if self._driving.locked() or running_loop() is not None:  # else: let go of meanwhile
                    finished.wait(left)
            finally:
                self._waiters.remove(finished)
                finished.clear()  # (``ready()``, not the event, says whether the outcome came)
        return True

    def soon(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` (which must not block) on the loop's side without waiting: when a thread
        next drives the loop (a poll, the next call, or the helper within `GRACE`, so that many
        started in a row go out together). Raises `ClosedError` once closed."""
        if self._closed or self.loop.is_closed():
            raise ClosedError(CLOSED)
        if running_loop() is None and self._driving.acquire(blocking=False):
            try:
                self.loop.call_soon(fn)  # (nobody runs the loop: no wake-up needed)
            finally:
                self._driving.release()
        else:
            super().soon(fn)

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
            with self._state:
                self._closed = True
                if self._helping:
                    self.loop.call_soon_threadsafe(self.loop.stop)
                self._state.notify_all()
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
