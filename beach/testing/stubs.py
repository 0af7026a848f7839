"""Stubs: what the actor of an `ActorHarness` reaches when it talks to other categories.

``harness.stub('other/category', fn)`` makes ``fn(requestType, data)`` answer the actor's
messages to that category (and the ones under it); `StubHandle` and `StubGroup` are what
``self.getActorHandle`` and ``self.getActorHandleGroup`` give the actor in the harness: the
methods of `ActorHandle` and `ActorHandleGroup`, answered by the stubs, every message recorded
(`Stubs.calls`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from beach import wire
from beach.client.response import ActorResponse, FutureResults
from beach.errors import UsageError
from beach.names import twinned
from beach.runtime import trace
from beach.wire import subjects

Stub = Callable[[str, Any], Any]
"""A stand-in for the actors of a category: ``fn(requestType, data)`` returns the reply's data, or
``(True, data)`` / ``(False, error[, data])`` as a handler does; raising is an ``'exception'``."""


@dataclass(frozen=True)
class StubCall:
    """One message the actor sent to a stubbed (or empty) category: ``kind`` is ``'request'``,
    ``'shoot'`` or ``'broadcast'``."""

    category: str
    kind: str
    requestType: str
    data: Any
    key: Any = None


class Stubs:
    """The stubs of one harness, and the messages its actor sent, oldest first."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.stubs: list[tuple[str, Stub]] = []
        self.calls: list[StubCall] = []

    def add(self, category: str, fn: Stub) -> None:
        """Answer messages to ``category`` with ``fn`` (replacing a stub of the same category)."""
        category = subjects.normalize(category)
        if not callable(fn):
            raise UsageError(f"stub({category!r}, fn): fn must be callable, not {fn!r}")
        self.stubs = [(c, f) for c, f in self.stubs if c != category] + [(category, fn)]

    def matching(self, category: str) -> list[tuple[str, Stub]]:
        """The stubs a message to ``category`` reaches (those of it and under it), oldest first."""
        return [(c, f) for c, f in self.stubs if subjects.matches(c, category)]

    def send(self, category: str, kind: str, requestType: str, data: Any, key: Any,
              fn: Stub | None) -> ActorResponse | Awaitable[ActorResponse]:
        """Hand a message of the actor to the stub ``fn`` (None: nobody); the response, or an
        awaitable of it when the stub is ``async def``."""
        if not isinstance(requestType, str):
            raise UsageError(f"requestType must be a string, not {type(requestType).__name__}")
        data = wire.unpack_request(wire.pack_request("-" * 24, requestType, {} if data is None else data,
                                                     None, None)).data
        self.calls.append(StubCall(category, kind, requestType, data, key))
        if fn is None:
            return ActorResponse(False, f"{wire.NO_ACTOR} in category '{category}' of realm '{self.realm}' "
                                        f"(no stub: ActorHarness.stub({category!r}, fn))")
        try:
            result = fn(requestType, data)
        except Exception as err:
            return _raised(err)
        if inspect.isawaitable(result):
            return _replied(result)
        return _reply(result)


async def _replied(result: Awaitable[Any]) -> ActorResponse:
    try:
        return _reply(await result)
    except Exception as err:
        return _raised(err)


def _raised(err: Exception) -> ActorResponse:
    """A stub that raised, as an actor's handler that raised comes back."""
    return ActorResponse(False, f"{wire.EXCEPTION}: {trace.describe(err)}", {"st": trace.user_traceback(err)})


def _reply(result: Any) -> ActorResponse:
    """A stub's return as the actor receives it: data, or a handler-style ``(ok, ...)`` tuple."""
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], bool):
        reply = wire.normalize_return(result)
    else:
        reply = wire.Reply(True, "", {} if result is None else result)
    return ActorResponse(*wire.read_reply(wire.pack_reply(*reply), "stub"))



@twinned
class StubHandle:
    """What ``self.getActorHandle(category)`` gives an actor in the harness: `ActorHandle`'s
    methods, answered by the test's stub of the category."""

    def __init__(self, stubs: Stubs, category: str, mode: str) -> None:
        self._stubs = stubs
        self._category = category
        self._mode = mode

    @property
    def category(self) -> str:
        """The category this handle addresses."""
        return self._category

    def __repr__(self) -> str:
        return f"<StubHandle {self._stubs.realm}:{self._category} mode={self._mode}>"

    def _fn(self) -> Stub | None:
        found = self._stubs.matching(self._category)
        return found[-1][1] if found else None

    def _message(self, kind: str, requestType: str, data: Any, key: Any) -> ActorResponse | Awaitable[ActorResponse]:
        if kind == "request" and self._mode == "affinity" and key is None:
            raise UsageError(f"{self!r} routes by key: pass key= to request()")
        return self._stubs.send(self._category, kind, requestType, data, key, self._fn())

    def _now(self, kind: str, requestType: str, data: Any, key: Any) -> ActorResponse:
        response = self._message(kind, requestType, data, key)
        if not isinstance(response, ActorResponse):
            cast(Coroutine[Any, Any, Any], response).close()
            raise UsageError(f"the stub of {self._category!r} is async def: the actor's blocking call cannot "
                             f"await it (make the stub a plain function)")
        return response

    async def arequest(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                       nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> ActorResponse:
        """The stub's response."""
        response = self._message("request", requestType, data, key)
        if not isinstance(response, ActorResponse):
            response = await response
        if not response.isSuccess and onFailure is not None:
            result = onFailure(data)
            if inspect.isawaitable(result):
                await result
        return response

    def request(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                nRetries: int | None = None, isWithFuture: bool = False,
                onFailure: Callable[[Any], Any] | None = None) -> ActorResponse | FutureResults:
        """The stub's response (in a finished `FutureResults` with ``isWithFuture``)."""
        response = self._now("request", requestType, data, key)
        if not response.isSuccess and onFailure is not None:
            onFailure(data)
        if isWithFuture:
            future = FutureResults(1)
            future._add(response)
            return future
        return response

    async def arequestFuture(self, requestType: str, data: Any = None, timeout: float | None = None,
                             key: Any = None, nRetries: int | None = None,
                             onFailure: Callable[[Any], Any] | None = None) -> FutureResults:
        """A finished `FutureResults` holding the stub's response."""
        future = FutureResults(1)
        future._add(await self.arequest(requestType, data, timeout, key, nRetries, onFailure))
        return future

    async def ashoot(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                     nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Hand the message to the stub (its reply is dropped)."""
        response = self._message("shoot", requestType, data, key)
        if not isinstance(response, ActorResponse):
            await response
        return True

    def shoot(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
              nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Hand the message to the stub (its reply is dropped)."""
        self._now("shoot", requestType, data, key)
        return True

    async def abroadcast(self, requestType: str, data: Any = None) -> bool:
        """Hand the message to the stub, as to every actor of the category."""
        response = self._message("broadcast", requestType, data, None)
        if not isinstance(response, ActorResponse):
            await response
        return True

    def broadcast(self, requestType: str, data: Any = None) -> bool:
        """Hand the message to the stub, as to every actor of the category."""
        self._now("broadcast", requestType, data, None)
        return True

    async def arequestFromAll(self, requestType: str, data: Any = None, timeout: float | None = None) -> FutureResults:
        """A finished `FutureResults`: the stub's response (none if nobody is stubbed)."""
        stubbed = self._fn() is not None
        future = FutureResults(1 if stubbed else 0)
        if stubbed:
            future._add(await self.arequest(requestType, data))
        return future

    def requestFromAll(self, requestType: str, data: Any = None, timeout: float | None = None) -> FutureResults:
        """A finished `FutureResults`: the stub's response (none if nobody is stubbed)."""
        stubbed = self._fn() is not None
        future = FutureResults(1 if stubbed else 0)
        if stubbed:
            future._add(self._now("request", requestType, data, None))
        return future

    def getNumAvailable(self) -> int:
        """1 if the category is stubbed, else 0."""
        return 1 if self._fn() is not None else 0

    def isAvailable(self) -> bool:
        """True if the category is stubbed."""
        return self._fn() is not None

    def getPending(self) -> dict[str, int]:
        """Nothing is ever in flight: the stubs answer at once."""
        return {}

    async def aclose(self) -> None:
        """Nothing to cancel."""

    def close(self) -> None:
        """Nothing to cancel."""



@twinned
class StubGroup:
    """What ``self.getActorHandleGroup(root)`` gives an actor in the harness: one answer per
    stubbed category under ``root``."""

    def __init__(self, stubs: Stubs, root: str) -> None:
        self._stubs = stubs
        self._root = root

    def subcategories(self) -> list[str]:
        """The stubbed categories under the root."""
        return sorted({c for c, _ in self._stubs.stubs if subjects.matches(c, self._root) and c != self._root})

    def _handles(self) -> list[StubHandle]:
        return [StubHandle(self._stubs, c, "random") for c in self.subcategories()]

    async def arequest(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                       nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> FutureResults:
        """A finished `FutureResults`: one response per stubbed sub-category."""
        handles = self._handles()
        future = FutureResults(len(handles))
        for handle in handles:
            future._add(await handle.arequest(requestType, data, key=key, onFailure=onFailure))
        return future

    def request(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> FutureResults:
        """A finished `FutureResults`: one response per stubbed sub-category."""
        handles = self._handles()
        future = FutureResults(len(handles))
        for handle in handles:
            future._add(cast(ActorResponse, handle.request(requestType, data, key=key, onFailure=onFailure)))
        return future

    async def ashoot(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                     nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Hand the message to each stubbed sub-category."""
        for handle in self._handles():
            await handle.ashoot(requestType, data, key=key)
        return True

    def shoot(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
              nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Hand the message to each stubbed sub-category."""
        for handle in self._handles():
            handle.shoot(requestType, data, key=key)
        return True

    async def abroadcast(self, requestType: str, data: Any = None) -> bool:
        """Hand the message to each stubbed sub-category."""
        for handle in self._handles():
            await handle.abroadcast(requestType, data)
        return True

    def broadcast(self, requestType: str, data: Any = None) -> bool:
        """Hand the message to each stubbed sub-category."""
        for handle in self._handles():
            handle.broadcast(requestType, data)
        return True

    def getNumAvailable(self) -> int:
        """The number of stubbed sub-categories."""
        return len(self.subcategories())

    def isAvailable(self) -> bool:
        """True if a sub-category is stubbed."""
        return bool(self.subcategories())

    def getPending(self) -> list[dict[str, int]]:
        """Nothing is ever in flight."""
        return []

    def forceRefresh(self) -> None:
        """Nothing to refresh: the stubs are read at each call."""

    async def aclose(self) -> None:
        """Nothing to cancel."""

    def close(self) -> None:
        """Nothing to cancel."""

