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
from typing import Any

from beach import config as beach_config
from beach.client.core import AsyncBeach
from beach.client.runner import DrivenLoop


def _blocking(coro_fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(coro_fn)
    def method(self: Beach, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(coro_fn(self._core, *args, **kwargs))
    return method


def _plain(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def method(self: Beach, *args: Any, **kwargs: Any) -> Any:
        return fn(self._core, *args, **kwargs)
    return method


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

    addActor = add_actor = _blocking(AsyncBeach.addActor)
    stopActors = stop_actors = _blocking(AsyncBeach.stopActors)
    flush = _blocking(AsyncBeach.flush)
    addToCategory = add_to_category = _blocking(AsyncBeach.addToCategory)
    removeFromCategory = remove_from_category = _blocking(AsyncBeach.removeFromCategory)
    getLoadInfo = get_load_info = _blocking(AsyncBeach.getLoadInfo)
    getSupervised = get_supervised = _blocking(AsyncBeach.getSupervised)
    applyPatrol = apply_patrol = _blocking(AsyncBeach.applyPatrol)
    removePatrol = remove_patrol = _blocking(AsyncBeach.removePatrol)
    getPatrols = get_patrols = _blocking(AsyncBeach.getPatrols)
    getStacks = get_stacks = _blocking(AsyncBeach.getStacks)
    getState = get_state = _blocking(AsyncBeach.getState)
    deleteState = delete_state = _blocking(AsyncBeach.deleteState)
    getActorHandle = get_actor_handle = _plain(AsyncBeach.getActorHandle)
    getActorHandleGroup = get_actor_handle_group = _plain(AsyncBeach.getActorHandleGroup)
    getDirectory = get_directory = _plain(AsyncBeach.getDirectory)
    # the original's getNodeCount waited for the first node: so does this one (see `waitForNodes`)
    getNodeCount = get_node_count = waitForNodes = wait_for_nodes = _blocking(AsyncBeach.waitForNodes)
    getClusterHealth = get_cluster_health = _plain(AsyncBeach.getClusterHealth)
    getAllNodeMetadata = get_all_node_metadata = _plain(AsyncBeach.getAllNodeMetadata)
    setRealm = set_realm = _plain(AsyncBeach.setRealm)
    resolveUid = resolve_uid = _plain(AsyncBeach.resolveUid)
