"""`WorkerPool`: the threads that run plain (``def``) handlers and hooks.

A standard ``ThreadPoolExecutor`` starts a new thread whenever none is idle at the moment of a
submit, so a burst of 64 quick requests makes 64 threads fight over the GIL (measured here: a
third of the throughput of 4 threads). This pool keeps a few threads and adds one only when
work has waited `GROW_AFTER` seconds with no thread free to take it — when handlers block
(sleeping, I/O, a blocking request to another actor), which is what threads are for. Threads
beyond the core ones leave after `IDLE_EXIT` idle seconds.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

CORE_THREADS = 4
MAX_THREADS = 128
GROW_AFTER = 0.005
IDLE_EXIT = 60.0

Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class WorkerPool(Executor):
    """An executor with `CORE_THREADS` threads that grows to ``maximum`` while work waits."""

    def __init__(self, maximum: int = MAX_THREADS, name: str = "worker") -> None:
        self.maximum = maximum
        self.name = name
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._work = threading.Event()
        self._finished: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._wakeup_pending = False
        self._shutdown = False
        self._watcher = threading.Thread(target=self._watch, name=f"{name}-grow", daemon=True)
        self._watcher.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)``; return its future."""
        if self._shutdown:
            raise RuntimeError("cannot submit to a pool that is shut down")
        future: Future[Any] = Future()
        self._enqueue((future, fn, args, kwargs))
        return future

    def _enqueue(self, work: Work) -> None:
        self._queue.put(work)
        with self._lock:
            if self._threads < CORE_THREADS:
                self._start()
        self._work.set()

    def _start(self) -> None:
        self._threads += 1
        threading.Thread(target=self._run, name=f"{self.name}-{self._threads}", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                item = self._queue.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._threads > CORE_THREADS:
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            future, fn, args, kwargs = item
            if isinstance(future, asyncio.Future):  # from run(): hand the outcome back in a batch
                try:
                    outcome: tuple[Any, BaseException | None] = (fn(*args, **kwargs), None)
                except BaseException as exc:
                    outcome = (None, exc)
                self._finished.append((future, *outcome))
                if not self._wakeup_pending:
                    self._wakeup_pending = True
                    try:
                        future.get_loop().call_soon_threadsafe(self._deliver)
                    except RuntimeError:  # the loop is closed: the host is gone, nobody waits
                        pass
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in a worker thread; an asyncio future of its result.

        Cheaper than ``loop.run_in_executor``: outcomes that finish close together reach the event
        loop in one wake-up instead of one each (under load, most of a def handler's cost on the
        host was these wake-ups).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue((future, fn, args, {}))  # type: ignore[arg-type]
        return future

    def _deliver(self) -> None:
        # On the event loop. Reset the flag before draining: a worker finishing meanwhile either
        # sees it reset (and schedules another delivery) or is drained here.
        self._wakeup_pending = False
        while self._finished:
            future, result, exc = self._finished.popleft()
            if future.done():
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

    def _watch(self) -> None:
        # Add a thread when work has been waiting and no thread is idle to take it.
        while not self._shutdown:
            self._work.wait()
            time.sleep(GROW_AFTER)
            with self._lock:
                if self._queue.empty():
                    self._work.clear()
                elif self._idle == 0 and self._threads < self.maximum:
                    self._start()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads (after the queued work, unless ``cancel_futures``)."""
        self._shutdown = True
        self._work.set()
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in range(self._threads):
            self._queue.put(None)
