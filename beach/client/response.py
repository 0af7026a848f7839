"""What requests return: `ActorResponse`, and `FutureResults` for replies that come later."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from beach import wire
from beach.client.runner import Done, DrivenLoop, Runner, settle
from beach.client.scope import Cancellable
from beach.names import twinned

if TYPE_CHECKING:
    from beach.state.records import ActorEntry


@twinned
class ActorResponse:
    """The outcome of one request: ``isSuccess``, ``isTimedOut``, ``error`` and ``data``.

    A success has ``error == ''``. A failure's ``error`` is the handler's error string, or one of
    beach's: ``'timeout'``, ``'unauthorized'``, ``'exception: KeyError: ...'`` (the handler raised;
    data ``{'st': traceback}``, trimmed to the actor's own frames),
    ``'busy'``, ``'request type not supported by actor'``, ``'invalid response format'``,
    ``'no actor available ...'``; ``failure`` names the kind (`beach.wire.Failure`, None for a
    handler's own error). ``bool(response)`` is ``isSuccess``.

    ``uid`` and ``node`` name the actor that answered (its reply says so), or None where no actor
    did (a timeout, an empty category: beach's own failures) — and where an actor of the previous
    release answered a request the caller did not address to it by uid (its replies do not say;
    one the caller addressed, as `requestFromAll` does, is named from the directory). They are
    not part of the outcome: two responses are equal when their outcomes are.
    """

    __slots__ = ("isSuccess", "isTimedOut", "error", "data", "uid", "node")
    isSuccess: bool
    isTimedOut: bool
    error: str
    data: Any
    uid: str | None
    node: str | None

    def __init__(self, isSuccess: bool, error: str = "", data: Any = None, isTimedOut: bool = False,
                 uid: str | None = None, node: str | None = None) -> None:
        self.isSuccess = isSuccess
        self.isTimedOut = isTimedOut
        self.error = error
        self.data = {} if data is None else data
        self.uid = uid
        self.node = node

    @classmethod
    def of(cls, reply: wire.Reply, addressed: ActorEntry | None = None) -> ActorResponse:
        """The response a reply makes: named by the reply (format 2), else by ``addressed``, the
        directory entry of the actor the request was sent to, if the caller chose one."""
        if isinstance(reply, wire.AnsweredReply):
            return cls(reply.ok, reply.error, reply.data, uid=reply.uid, node=reply.node)
        if addressed is not None:
            return cls(reply.ok, reply.error, reply.data, uid=addressed.uid, node=addressed.node)
        return cls(reply.ok, reply.error, reply.data)

    @classmethod
    def timeout(cls) -> ActorResponse:
        """A timed-out failure."""
        return cls(False, wire.TIMEOUT, {}, isTimedOut=True)

    @property
    def failure(self) -> wire.Failure | None:
        """The kind of failure this is (None for a success, or a handler's own error string)."""
        return None if self.isSuccess else wire.Failure.of(self.error)

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


POLL_WAIT = 0.001  # seconds an `isFinished` poll waits at most


@twinned
class FutureResults:
    """Replies that arrive over time: ``n`` expected `ActorResponse` objects.

    Usable from threads (``waitForResults``, ``getNewResults``, ``isFinished``) and from async
    code (``await future.wait()``). With ``n == 0`` it is finished at once. Waiting has one
    mechanism: a waiter gives a condition and a `Done`, called once (on the loop's thread) when a
    result makes the condition true; the runner decides how its thread waits for that.
    """

    def __init__(self, n: int, runner: Runner | None = None) -> None:
        self._expected = n
        self._runner = runner
        self._all: list[ActorResponse] = []
        self._unread: list[ActorResponse] = []
        self._lock = threading.Lock()  # results come on the loop's thread, are read from the caller's
        self._finished = n == 0
        self._waiters: list[tuple[Callable[[], bool], Done]] = []  # touched on the loop's thread only
        self._calls: list[Cancellable] = []  # the requests whose results it waits for (on the loop's thread)

    def _started(self, call: Cancellable) -> None:
        """One of its requests is in flight (on the loop's thread): `cancel` ends it."""
        self._calls.append(call)

    def cancel(self) -> None:
        """Give up on the results still to come: each request still in flight ends now as a
        failure (``cancelled: ...``, so a wait returns) and the actor serving it is told, which
        cancels its handler."""
        def cancel_all() -> None:
            for call in self._calls:
                call.cancel("cancelled: its FutureResults was cancelled")

        if self._runner is None:
            cancel_all()
        else:
            self._runner.soon(cancel_all)

    def _add(self, outcome: ActorResponse | BaseException) -> None:
        """One result (on the loop's thread): a response, or the error a request ended with."""
        response = outcome if isinstance(outcome, ActorResponse) else ActorResponse(
            False, f"request failed: {type(outcome).__name__}: {outcome}")
        with self._lock:
            self._all.append(response)
            self._unread.append(response)
            self._finished = len(self._all) >= self._expected
        if self._waiters:
            waiting, self._waiters = self._waiters, []
            for ready, done in waiting:
                self._when(ready, done)

    def _when(self, ready: Callable[[], bool], done: Done) -> None:
        """Call ``done(None)`` once ``ready()`` (now, or at the result that makes it so); on the loop's thread."""
        if ready():
            done(None)
        else:
            self._waiters.append((ready, done))

    def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``ready()`` or ``timeout`` seconds (None: no limit); return ``ready()``."""
        if ready():
            return True
        if self._runner is not None:
            self._runner.call(lambda done: self._when(ready, done), timeout)
        else:  # (filled by hand, as the testing kit's stubs do: no loop)
            woken = threading.Event()
            self._when(ready, lambda _: woken.set())
            woken.wait(timeout)
        return ready()

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
        """True once all ``n`` results have arrived. With a `DrivenLoop` (a plain script), a poll
        runs the loop until this future finishes or `POLL_WAIT` passes: what has arrived is handled
        in the polling thread, and a script spinning on ``isFinished()`` waits where raw asyncio
        would instead of burning a core the server and the actors need."""
        if not self._finished and isinstance(self._runner, DrivenLoop):
            self._wait_until(lambda: self._finished, POLL_WAIT)
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
        if not self._finished:
            loop = asyncio.get_running_loop()
            finished: asyncio.Future[None] = loop.create_future()
            if self._runner is None or loop is self._runner.loop:
                self._when(lambda: self._finished, partial(settle, finished))
            else:  # awaited on another loop than the connection's

                def wake(_: Any) -> None:
                    loop.call_soon_threadsafe(settle, finished, None)

                self._runner.soon(lambda: self._when(lambda: self._finished, wake))
            try:
                async with asyncio.timeout(timeout):
                    await finished
            except TimeoutError:
                pass
        return self.getAllResults()
