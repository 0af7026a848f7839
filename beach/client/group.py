"""`ActorHandleGroup`: one actor in each sub-category under a root.

With categories ``foo/bars/1.0``, ``foo/bars/2.0``, ``foo/barz`` and ``some/other``, a group on
``foo`` has the sub-categories ``foo/bars`` and ``foo/barz``: a request goes to one actor of each.
Sub-categories come from the live directory view at each call, so ones created later are picked
up without the caller doing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from beach.client.handle import ActorHandle
from beach.client.response import FutureResults
from beach.client.session import Session
from beach.names import twinned
from beach.wire import subjects


@twinned
class ActorHandleGroup:
    """Requests to one actor in each sub-category of ``categoryRoot`` (see module docs)."""

    def __init__(self, session: Session, realm: str, categoryRoot: str, mode: str = "random",
                 nRetries: int | None = None, timeout: float | None = None, ident: str | None = None) -> None:
        self._session = session
        self._realm = subjects.check_realm(realm)
        self._root = subjects.routable(self._realm, categoryRoot)  # (a root too long can have nothing under it)
        session.hold(self._realm, self._root)  # (an actor host's view holds only the categories asked for)
        self._options = (mode, nRetries, timeout, ident)
        self._handles: dict[str, ActorHandle] = {}
        self._generation = -1
        self._subcategories: list[str] = []

    def subcategories(self) -> list[str]:
        """The sub-categories under the root that have at least one live actor, sorted."""
        view = self._session.view
        if self._generation != view.generation:
            self._generation, self._subcategories = view.generation, self._find()
        return self._subcategories

    def _find(self) -> list[str]:
        found = set()
        depth = len(subjects.segments(self._root))
        for actor in self._session.view.live(self._realm):
            for category in actor.categories:
                parts = category.split("/")
                if len(parts) > depth and subjects.matches(category, self._root):
                    found.add("/".join(parts[: depth + 1]))
        return sorted(found)

    def _current(self) -> list[ActorHandle]:
        handles = []
        for category in self.subcategories():
            if category not in self._handles:
                mode, retries, timeout, ident = self._options
                self._handles[category] = ActorHandle(self._session, self._realm, category, mode, retries,
                                                      timeout, ident)
            handles.append(self._handles[category])
        return handles

    async def arequest(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                       nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> FutureResults:
        """Send the request to one actor of each sub-category; return a `FutureResults` of the replies."""
        handles = self._current()
        future = FutureResults(len(handles), self._session.runner)
        for handle in handles:
            handle._check(requestType, data, key, nRetries)
        for handle in handles:
            future._started(handle._call(requestType, data, timeout, key, nRetries,
                                         handle._reported(onFailure, data, future._add)))
        return future

    async def ashoot(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                     nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Send the request to one actor of each sub-category without waiting for replies."""
        for handle in self._current():
            await handle.ashoot(requestType, data, timeout, key, nRetries, onFailure)
        return True

    async def abroadcast(self, requestType: str, data: Any = None) -> bool:
        """Send the request to every actor of every sub-category."""
        await asyncio.gather(*(h.abroadcast(requestType, data) for h in self._current()))
        return True

    def getNumAvailable(self) -> int:
        """The number of sub-categories with live actors (not the number of actors)."""
        return len(self.subcategories())

    def isAvailable(self) -> bool:
        """True if at least one sub-category has a live actor."""
        return bool(self.subcategories())

    def getPending(self) -> list[dict[str, int]]:
        """Each sub-handle's in-flight requests."""
        return [h.getPending() for h in self._handles.values()]

    def forceRefresh(self) -> None:
        """Nothing to do: the group reads the live directory view (kept for compatibility)."""

    async def aclose(self) -> None:
        """Cancel the background requests of every sub-handle."""
        for handle in self._handles.values():
            await handle.aclose()

    # ---- blocking face ----

    def request(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
                nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> FutureResults:
        """Blocking-face `arequest` (returns the `FutureResults` at once)."""
        return self._session.runner.run(self.arequest(requestType, data, timeout, key, nRetries, onFailure))

    def shoot(self, requestType: str, data: Any = None, timeout: float | None = None, key: Any = None,
              nRetries: int | None = None, onFailure: Callable[[Any], Any] | None = None) -> bool:
        """Blocking-face `ashoot`."""
        return self._session.runner.run(self.ashoot(requestType, data, timeout, key, nRetries, onFailure))

    def broadcast(self, requestType: str, data: Any = None) -> bool:
        """Blocking-face `abroadcast`."""
        return self._session.runner.run(self.abroadcast(requestType, data))

    def close(self) -> None:
        """Blocking-face `aclose`."""
        self._session.runner.run(self.aclose())
