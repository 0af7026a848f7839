"""What requests return: `ActorResponse`, and `FutureResults` for replies that come later."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from beach import wire
from beach.client.runner import DrivenLoop, Runner


class ActorResponse:
    """The outcome of one request: ``isSuccess``, ``isTimedOut``, ``error`` and ``data``.

    A success has ``error == ''``. A failure's ``error`` is the handler's error string, or one of
    beach's: ``'timeout'``, ``'unauthorized'``, ``'exception: KeyError: ...'`` (the handler raised;
    data ``{'st': traceback}``, trimmed to the actor's own frames),
    ``'busy'``, ``'request type not supported by actor'``, ``'invalid response format'``,
    ``'no actor available ...'``; ``failure`` names the kind (`beach.wire.Failure`, None for a
    handler's own error). ``bool(response)`` is ``isSuccess``.
    """

    __slots__ = ("isSuccess", "isTimedOut", "error", "data")

    def __init__(self, isSuccess: bool, error: str = "", data: Any = None, isTimedOut: bool = False) -> None:
        self.isSuccess = isSuccess
        self.isTimedOut = isTimedOut
        self.error = error
        self.data = {} if data is None else data

    @classmethod
    def timeout(cls) -> ActorResponse:
        """A timed-out failure."""
        return cls(False, wire.TIMEOUT, {}, isTimedOut=True)

    @property
    def failure(self) -> wire.Failure | None:
        """The kind of failure this is (None for a success, or a handler's own error string)."""
        return None if self.isSuccess else wire.Failure.of(self.error)

    @property
    def is_success(self) -> bool:
        """PEP 8 name of ``isSuccess``."""
        return self.isSuccess

    @property
    def is_timed_out(self) -> bool:
        """PEP 8 name of ``isTimedOut``."""
        return self.isTimedOut

    def __bool__(self) -> bool:
        return self.isSuccess

    # The original's ops calls returned envelopes {'status': {'success', 'error'}, 'data'}; code that
    # reads them that way keeps working.
    def get(self, key: str, default: Any = None) -> Any:
        """Envelope-style access: ``'status'`` → ``{'success', 'error'}``, ``'data'`` → data."""
        if key == "status":
            status: dict[str, Any] = {"success": self.isSuccess}
            if not self.isSuccess:
                status["error"] = self.error
            return status
        if key == "data":
            return self.data
        return default

    def __getitem__(self, key: str) -> Any:
        if key not in ("status", "data"):
            raise KeyError(key)
        return self.get(key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActorResponse):
            return NotImplemented
        return (self.isSuccess, self.isTimedOut, self.error, self.data) == (
            other.isSuccess, other.isTimedOut, other.error, other.data)

    def __repr__(self) -> str:
        return (f"ActorResponse( isSuccess: {self.isSuccess}, isTimedOut: {self.isTimedOut}, "
                f"error: {self.error}, data: {self.data} )")

    __str__ = __repr__


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FutureResults:
    """Replies that arrive over time: ``n`` expected `ActorResponse` objects.

    Usable from threads (``waitForResults``, ``getNewResults``, ``isFinished``) and from async
    code (``await future.wait()``). With ``n == 0`` it is finished at once.
    """

    def __init__(self, n: int, runner: Runner | None = None) -> None:
        self._expected = n
        # A DrivenLoop has nobody driving it while its caller waits here: waits drive it themselves
        self._driver = runner if isinstance(runner, DrivenLoop) else None
        self._all: list[ActorResponse] = []
        self._unread: list[ActorResponse] = []
        # A plain lock and a flag: one of these is made per request of the futures API, and a
        # Condition or an Event costs more than the rest of it; threads that wait without a driver
        # make the condition they wait on (`_sleeper`).
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None
        self._finished = n == 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def _add(self, response: ActorResponse) -> None:
        with self._lock:
            self._all.append(response)
            self._unread.append(response)
            finished = self._finished = len(self._all) >= self._expected
            waiters, self._waiters = (self._waiters, []) if finished else ([], self._waiters)
            cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_wake, fut)
        if self._driver is not None:
            self._driver.changed()  # a thread driving the loop until this has news looks again

    def _sleeper(self) -> threading.Condition:
        with self._lock:
            if self._cond is None:
                self._cond = threading.Condition()
            return self._cond

    def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``ready()`` or ``timeout`` seconds (None: no limit); return ``ready()``."""
        if ready():
            return True
        if self._driver is not None:
            return self._driver.wait(ready, timeout)
        cond = self._sleeper()
        with cond:
            return cond.wait_for(ready, timeout)

    def waitForResults(self, timeout: float = 0) -> bool:
        """Wait up to ``timeout`` seconds (0: don't wait) for unread results; True if there are some."""
        self._wait_until(lambda: bool(self._unread) or self._finished, timeout or 0)
        return bool(self._unread)

    def getNewResults(self) -> list[ActorResponse]:
        """Return the results not handed out yet (each result is handed out once)."""
        with self._lock:
            new, self._unread = self._unread, []
            return new

    def isFinished(self) -> bool:
        """True once all ``n`` results have arrived."""
        if not self._finished and self._driver is not None:
            self._driver.pump()  # what has arrived is handled now, in this thread: no hop
        return self._finished

    def getAllResults(self) -> list[ActorResponse]:
        """Every result received so far, read or not."""
        with self._lock:
            return list(self._all)

    def waitAll(self, timeout: float | None = None) -> list[ActorResponse]:
        """Block until finished (or ``timeout``); return every result received."""
        self._wait_until(lambda: self._finished, timeout)
        return self.getAllResults()

    async def wait(self, timeout: float | None = None) -> list[ActorResponse]:
        """Await until finished (or ``timeout``); return every result received."""
        with self._lock:
            if not self._finished:
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append((asyncio.get_running_loop(), fut))
            else:
                fut = None
        if fut is not None:
            try:
                await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                pass
        return self.getAllResults()

    # PEP 8 names
    wait_for_results = waitForResults
    get_new_results = getNewResults
    is_finished = isFinished
