"""`Actor`: the base class of user actors.

Subclass it, give it an ``init(self, parameters)`` (or ``init(self, parameters, resources)``),
register handlers with ``self.handle('type', self.method)``, and deploy it with
``Beach.addActor('Name', 'category')``. Handlers receive an `ActorRequest` and return
``(True, data)`` or ``(False, error[, data])``; a handler that raises answers ``'exception'``
with the traceback text. Handlers and hooks may be ``def`` (run in a worker thread of the host, so
blocking code and blocking ``request()`` calls are fine) or ``async def`` (run on the host's event
loop: await the handle's ``a*`` methods there).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from beach.client.group import ActorHandleGroup
from beach.client.handle import ActorHandle
from beach.client.scope import current_scope
from beach.logs import Source
from beach.names import twinned

if TYPE_CHECKING:
    from beach.state.stateapi import ActorState


class ActorRequest:
    """One request as a handler sees it: ``ident``, ``id`` (same on every retry), ``req``, ``dst``, ``data``."""

    __slots__ = ("ident", "id", "req", "dst", "data")

    def __init__(self, ident: str | None, id: str, req: str, dst: str, data: Any) -> None:
        self.ident = ident
        self.id = id
        self.req = req
        self.dst = dst
        self.data = data

    def __repr__(self) -> str:
        return f"ActorRequest(id={self.id!r}, req={self.req!r}, ident={self.ident!r}, data={self.data!r})"


class Backend(Protocol):
    """What an actor's methods call: the node's `beach.runtime.actor_runtime.ActorRuntime`, or the
    in-process stand-in of `beach.testing.ActorHarness` (no NATS)."""

    log_source: Source
    last_error: str | None
    handles: list[ActorHandle]

    def handle(self, request_type: str, func: Callable[[ActorRequest], Any]) -> Callable[..., Any] | None:
        """`Actor.handle`."""
        ...

    def unhandle(self, request_type: str) -> bool:
        """`Actor.unhandle`."""
        ...

    def schedule(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """`Actor.schedule`."""
        ...

    def delay(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """`Actor.delay`."""
        ...

    def actor_context(self) -> contextvars.Context:
        """A context in which what runs is this actor's (for `Actor.newThread`)."""
        ...

    def make_handle(self, category: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandle:
        """`Actor.getActorHandle`."""
        ...

    def make_group(self, root: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandleGroup:
        """`Actor.getActorHandleGroup`."""
        ...

    def category_available(self, category: str) -> bool:
        """`Actor.isCategoryAvailable`."""
        ...

    def request_stop(self) -> None:
        """`Actor.stop`."""
        ...

    def state_for(self, category: str) -> ActorState:
        """`Actor.stateFor`."""
        ...


@twinned
class Actor:
    """Base class of beach actors. The node's actor host creates, starts and stops them.

    Attributes set by the host before ``init``: ``name`` (the actor's uid), ``stopEvent`` (set when
    the actor stops), ``state`` (the actor state of its first category: a keyed store every actor
    of the category shares, that outlives them; see `beach.state.stateapi.State`), and the
    original's ``_realm``, ``_parameters``, ``_resources``, ``_ident``, ``_trusted``.

    Class attribute a subclass may set: ``reply_cache = N`` keeps the last N replies by request id,
    so a retried request (retries reuse the id) that already ran, or is still running, gets the
    first run's reply instead of running twice.
    """

    reply_cache: int = 0

    name: str
    stopEvent: threading.Event
    state: ActorState
    _realm: str
    _parameters: dict[str, Any]
    _resources: dict[str, Any]
    _ident: str | None
    _trusted: list[str]
    _runtime: Backend
    _logger: logging.Logger

    # ---- hooks (override) ----

    def init(self, parameters: dict[str, Any], resources: dict[str, Any] | None = None) -> Any:
        """Called once before the actor receives requests. Raising makes ``addActor`` fail."""

    def deinit(self) -> Any:
        """Called once when the actor stops, after its in-flight requests finished (bounded)."""

    def drain(self) -> Any:
        """Called when the actor starts stopping: it gets no new requests, and the host waits
        (bounded) for the ones in progress once this returns. Override to flush buffers early."""

    # ---- handlers ----

    def handle(self, requestType: str, handlerFunction: Callable[[ActorRequest], Any]) -> Callable[..., Any] | None:
        """Route requests of type ``requestType`` to ``handlerFunction``; return the previous handler."""
        return self._runtime.handle(requestType, handlerFunction)

    def unhandle(self, requestType: str) -> bool:
        """Stop handling ``requestType``; True if a handler was removed."""
        return self._runtime.unhandle(requestType)

    # ---- timers ----

    def schedule(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``func(*args, **kwargs)`` now, then again ``delay`` seconds after each call ends, for
        as long as the actor runs. From a ``def`` caller the first call runs in the caller (its
        exception reaches the caller); later exceptions are logged and the schedule goes on."""
        self._runtime.schedule(delay, func, args, kwargs)

    def delay(self, inDelay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``func(*args, **kwargs)`` once, ``inDelay`` seconds from now; exceptions are logged."""
        self._runtime.delay(inDelay, func, args, kwargs)

    def newThread(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
        """Run ``func(stopEvent, *args, **kwargs)`` in a new daemon thread; ``stopEvent`` is set at stop."""
        context = self._runtime.actor_context()  # what the thread logs is this actor's
        thread = threading.Thread(target=context.run, args=(func, self.stopEvent, *args), kwargs=kwargs, daemon=True)
        thread.start()
        return thread

    def sleep(self, seconds: float) -> None:
        """Sleep in a ``def`` handler or hook (a worker thread)."""
        time.sleep(seconds)

    # ---- logging ----

    def log(self, msg: str) -> None:
        """Log ``msg`` at INFO: to the host's stderr, and to the cluster's logs (``beach logs``)
        with this actor's realm, category and uid, from whatever thread calls it."""
        self._logger.info("%s", msg, extra={"beach_source": self._runtime.log_source})

    def logCritical(self, msg: str) -> None:
        """Log ``msg`` at ERROR, like `log` (the original's name, and its level: ``log_error``
        is the same method under a name that says so)."""
        self._logger.error("%s", msg, extra={"beach_source": self._runtime.log_source})

    # ---- state ----

    def stateFor(self, category: str) -> ActorState:
        """The actor state of ``category`` in this actor's realm (``self.state`` is its first
        category's): the same keys every actor of that category sees. A request's reads and writes
        of every category it touches are one turn, committed together."""
        return self._runtime.state_for(category)

    # ---- other actors ----

    def getActorHandle(self, category: str, mode: str = "local", nRetries: int | None = None,
                       timeout: float | None = None) -> ActorHandle:
        """A handle on ``category`` in this actor's realm, sending this actor's ``secretIdent``.

        The default mode ``'local'`` prefers an actor on this node. Handles are closed when the
        actor stops.
        """
        return self._runtime.make_handle(category, mode, nRetries, timeout)

    def getActorHandleGroup(self, categoryRoot: str, mode: str = "local", nRetries: int | None = None,
                            timeout: float | None = None) -> ActorHandleGroup:
        """A group on the sub-categories of ``categoryRoot`` in this actor's realm."""
        return self._runtime.make_group(categoryRoot, mode, nRetries, timeout)

    def isCategoryAvailable(self, category: str) -> bool:
        """True if ``category`` has at least one live actor in this actor's realm."""
        return self._runtime.category_available(category)

    def getPending(self) -> list[dict[str, int]]:
        """The in-flight requests of each of this actor's handles (see `ActorHandle.getPending`)."""
        return [h.getPending() for h in self._runtime.handles]

    # ---- lifecycle ----

    def stop(self) -> None:
        """Ask the host to stop this actor (it leaves the directory, then ``deinit`` runs)."""
        self._runtime.request_stop()

    def isRunning(self) -> bool:
        """True until the actor starts stopping."""
        return not self.stopEvent.is_set()

    # ---- the request being served ----

    def isCancelled(self) -> bool:
        """True once the caller of the request this handler serves gave up on it (its timeout, a
        cancel, Ctrl-C): a ``def`` handler checks it and stops early (an ``async def`` handler's
        task is cancelled instead). False outside a handler."""
        scope = current_scope.get()
        return scope is not None and scope.cancelled

    @property
    def cancelled(self) -> threading.Event:
        """An event set when the caller of the request this handler serves gives up on it (a ``def``
        handler may ``self.cancelled.wait(seconds)`` instead of sleeping); outside a handler, one
        that is never set."""
        scope = current_scope.get()
        return threading.Event() if scope is None else scope.event

    def getLastError(self) -> str | None:
        """The traceback text of the last exception a handler or timer raised, or None."""
        return self._runtime.last_error
