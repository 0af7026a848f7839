"""`Beach`: the cluster API for plain (blocking) code, as in the original.

``Beach(configFile, realm='global')`` connects; ``addActor``, ``stopActors``, ``flush``,
``getActorHandle``, ... work as the original's. Each blocking method runs the `AsyncBeach` coroutine
of the same name on a private event loop, driven by the calling thread while it waits (see
`beach.client.runner.DrivenLoop`): one implementation, two faces. PEP 8 names
(``add_actor``, ``get_actor_handle``, ...) are the same methods.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from beach import config as beach_config
from beach.client.core import AsyncBeach
from beach.client.runner import DrivenLoop
from beach.names import twinned

P = ParamSpec("P")
R = TypeVar("R")


def _blocking(method: Callable[Concatenate[AsyncBeach, P], Coroutine[Any, Any, R]]
              ) -> Callable[Concatenate[Beach, P], R]:
    """``method`` of `AsyncBeach` (a coroutine) as a method of `Beach` that runs it and returns its
    result: the same parameters and result, to callers and to mypy."""
    def call(self: Beach, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._runner.run(method(self._core, *args, **kwargs))
    return functools.update_wrapper(call, method)


def _plain(method: Callable[Concatenate[AsyncBeach, P], R]) -> Callable[Concatenate[Beach, P], R]:
    """``method`` of `AsyncBeach` (no I/O: it reads the view) as a method of `Beach`."""
    def call(self: Beach, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self._core, *args, **kwargs)
    return functools.update_wrapper(call, method)


@twinned
class Beach:
    """A connection to a beach cluster for blocking code: ``configFile`` is a config file, a loaded
    `Config` or a NATS URL (the cluster's pushed config is read from the bus); ``realm`` defaults to
    the config's ``realm:`` (else ``global``). Raises `ConfigError` for a bad config and `BusError`
    when NATS cannot be reached."""

    def __init__(self, configFile: str | os.PathLike[str] | beach_config.Config | None = None,
                 realm: str | None = None) -> None:
        self._runner = DrivenLoop()
        try:
            self._core: AsyncBeach = self._runner.run(AsyncBeach.open(configFile, realm, self._runner))
        except BaseException:
            self._runner.close()
            raise

    @property
    def _admin_token(self) -> str | None:
        return self._core._admin_token

    @_admin_token.setter
    def _admin_token(self, token: str | None) -> None:
        self._core._admin_token = token

    @property
    def realm(self) -> str:
        """The current realm."""
        return self._core.realm

    def close(self) -> None:
        """Disconnect and stop the private loop thread; blocking calls still in flight in other
        threads fail with `ClosedError`."""
        if not self._runner.closed:
            try:
                self._runner.run(self._core.close())
            finally:
                self._runner.close()

    def __enter__(self) -> Beach:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    addActor = _blocking(AsyncBeach.addActor)
    stopActors = _blocking(AsyncBeach.stopActors)
    flush = _blocking(AsyncBeach.flush)
    addToCategory = _blocking(AsyncBeach.addToCategory)
    removeFromCategory = _blocking(AsyncBeach.removeFromCategory)
    getLoadInfo = _blocking(AsyncBeach.getLoadInfo)
    getSupervised = _blocking(AsyncBeach.getSupervised)
    applyPatrol = _blocking(AsyncBeach.applyPatrol)
    removePatrol = _blocking(AsyncBeach.removePatrol)
    getPatrols = _blocking(AsyncBeach.getPatrols)
    getStacks = _blocking(AsyncBeach.getStacks)
    getState = _blocking(AsyncBeach.getState)
    deleteState = _blocking(AsyncBeach.deleteState)
    getActorHandle = _plain(AsyncBeach.getActorHandle)
    getActorHandleGroup = _plain(AsyncBeach.getActorHandleGroup)
    getDirectory = _plain(AsyncBeach.getDirectory)
    # the original's getNodeCount waited for the first node: so does this one (see `waitForNodes`)
    getNodeCount = waitForNodes = _blocking(AsyncBeach.waitForNodes)
    getClusterHealth = _blocking(AsyncBeach._current_health)  # (waits for the nodes' figures the first time)
    getAllNodeMetadata = _plain(AsyncBeach.getAllNodeMetadata)
    setRealm = _plain(AsyncBeach.setRealm)
    resolveUid = _plain(AsyncBeach.resolveUid)
