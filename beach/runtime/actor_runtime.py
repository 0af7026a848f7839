"""`ActorRuntime`: what runs one actor — its lifecycle (init, subscriptions, stop, deinit), the
calls into its code, and the backends of the `beach.actor.Actor` API.

It lives beside `Actor` in the library; the process that hosts actors (the node agent's actor
host, `nodeagent.host`) gives it what it needs through the `Host` protocol. Serving requests is
the `beach.runtime.dispatch.Dispatcher`'s; timers are `beach.runtime.timers.Timers`'.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from beach import loop as beach_loop
from beach import metering
from beach.actor import Actor, ActorRequest, Backend
from beach.client.group import ActorHandleGroup
from beach.client.handle import ActorHandle
from beach.client.runner import Background, Runner
from beach.client.session import Session
from beach.config import Config
from beach.errors import ActorInitError
from beach.logs import Source, current_source
from beach.runtime import trace
from beach.runtime.dispatch import Dispatcher
from beach.runtime.timers import Timers
from beach.runtime.workers import WorkerPool
from beach.state.actorstate import StateStore
from beach.state.records import ActorEntry
from beach.state.spawn import SpawnSpec
from beach.state.stateapi import State
from beach.wire import subjects

log = logging.getLogger("beach.runtime")

STOP_DRAIN_SECONDS = 10.0
HOOK_SECONDS = 5.0  # drain() and deinit() each; with the drain above, a stop stays within the agent's 30 s


class Host(Protocol):
    """What an actor runtime needs of the process hosting it (`nodeagent.host.actorhost.ActorHost`)."""

    config: Config
    session: Session
    runner: Runner
    pool: WorkerPool
    background: Background
    state: StateStore
    node_id: str
    host_id: str
    pid: int

    async def stop_actor(self, uid: str, by_itself: bool = False, grace: float = 0.0) -> tuple[str, int] | None:
        """Stop actor ``uid`` of this host (see `nodeagent.host.actorhost.ActorHost.stop_actor`)."""
        ...


def bind(actor: Actor, backend: Backend, spec: SpawnSpec) -> None:
    """Give ``actor`` what its methods need before ``init``: its uid, realm, parameters, resources,
    ident, trusted idents (from ``spec``), its stop event, logger, and the ``backend`` its methods
    call (an `ActorRuntime`, or `beach.testing.ActorHarness`'s stand-in)."""
    actor.name = spec.uid or ""
    actor.stopEvent = threading.Event()
    actor._realm = spec.realm
    actor._parameters = dict(spec.parameters or {})
    actor._resources = dict(spec.resources or {})
    actor._ident = spec.secretIdent
    actor._trusted = list(spec.trustedIdents)
    actor._runtime = backend
    actor._logger = logging.getLogger(f"beach.actor.{type(actor).__name__}")
    if spec.log_level is not None:
        actor._logger.setLevel(spec.log_level)


def init_args(actor: Actor) -> tuple[Any, ...]:
    """What ``actor.init`` is called with: its parameters, and its resources if it takes two."""
    params = inspect.signature(actor.init).parameters
    if len(params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params.values()):
        return (actor._parameters, actor._resources)
    return (actor._parameters,)


class ActorRuntime:
    """Runs one actor: init, subscriptions, stop and deinit, and what its `Actor` methods do."""

    def __init__(self, host: Host, actor: Actor, spec: SpawnSpec, version: str | None = None) -> None:
        assert spec.uid is not None, "a spawn spec's uid is chosen by the node agent"
        self.host = host
        self.actor = actor
        self.spec = spec
        self.version = version  # the deployed version of the realm's code it runs (None: code directory)
        self.uid: str = spec.uid
        self.realm: str = spec.realm
        self.categories: list[str] = list(spec.category)
        self.trusted = set(spec.trustedIdents)
        self.handles: list[ActorHandle] = []
        self._handle_cache: dict[tuple[Any, ...], ActorHandle] = {}
        self.groups: list[ActorHandleGroup] = []
        self.last_error: str | None = None
        self.log_source = Source("app", host.node_id, host.host_id, self.realm, self.uid, type(actor).__name__,
                                 self.categories)
        # Requests run in copies of this context: what the actor logs is known to be its own.
        self._context = contextvars.copy_context()
        self._context.run(current_source.set, self.log_source)
        self.loop = asyncio.get_running_loop()
        self.dispatcher = Dispatcher(
            self.uid, host.session, host.pool, self._context, state=host.state, trusted=self.trusted,
            max_inflight=spec.max_concurrent, backlog=host.config.backlog,
            # opt-in (the actor class sets reply_cache = N): a retry gets the first run's reply
            reply_cache=int(getattr(actor, "reply_cache", 0) or 0),
            unsupported=actor.logCritical, report=self._report, realm=self.realm)
        self.timers = Timers(self.uid, self.loop, self.call, host.runner.in_loop_thread, self._report,
                             self.actor_context)
        self._states: dict[str, State] = {}
        self.started = time.time()
        self._subs: dict[str, Any] = {}
        self._stopping = False
        self.stop_requested = False
        bind(actor, self, spec)
        actor.state = self.state_for(self.categories[0])

    def _report(self, error: str) -> None:
        self.last_error = error

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Run ``init`` and subscribe; raise `ActorInitError` (with the traceback) if init raises."""
        try:
            await self.call(self.actor.init, *init_args(self.actor))
        except Exception as err:
            self.actor.stopEvent.set()
            await self.timers.cancel()
            raise ActorInitError(trace.user_traceback(err)) from None
        await self.subscribe()

    async def subscribe(self) -> None:
        """Subscribe to every subject this actor answers on (adding the missing ones only)."""
        wanted: dict[str, str | None] = {subjects.actor_subject(self.realm, self.uid): None}
        # What each subject's requests are counted under: one of the actor's own categories (the
        # first under the prefix addressed; its first one when addressed by uid), so that a request
        # counts once, in a category the tools list.
        first = self.categories[0] if self.categories else metering.OTHER
        counted = {subjects.actor_subject(self.realm, self.uid): first}
        for prefix in subjects.prefix_categories(self.categories):
            category = next((c for c in self.categories if subjects.matches(subjects.normalize(c), prefix)), first)
            for subject, queue in ((subjects.request_subject(self.realm, prefix), subjects.QUEUE),
                                   (subjects.broadcast_subject(self.realm, prefix), None)):
                wanted[subject] = queue
                counted[subject] = category
        self.dispatcher.categories, self.dispatcher.category = counted, first
        nc = self.host.session.nc
        for subject in list(self._subs):
            if subject not in wanted:
                await self._subs.pop(subject).unsubscribe()
        for subject, queue in wanted.items():
            if subject not in self._subs:
                self._subs[subject] = await nc.subscribe(subject, queue=queue or "", cb=self.dispatcher.on_msg,
                                                         pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def unsubscribe(self) -> None:
        """Stop receiving requests; messages already delivered to this process are still served."""
        subs, self._subs = self._subs, {}

        async def drain(sub: Any) -> None:
            try:
                await beach_loop.within(sub.drain(), HOOK_SECONDS)
            except Exception:  # connection closing, or a message that never finishes: go on
                pass

        await asyncio.gather(*(drain(sub) for sub in subs.values()))

    async def stop(self, drain_seconds: float = STOP_DRAIN_SECONDS) -> None:
        """Stop gracefully: unsubscribe, call ``drain()``, wait (bounded) for the requests in
        progress, stop timers and handles, then run ``deinit``."""
        if self._stopping:
            return
        self._stopping = True
        self.timers.stopped = True  # no timer fires once the actor is stopping
        self.actor.stopEvent.set()
        await self.unsubscribe()
        await self._hook(self.actor.drain, "drain")
        try:
            async with asyncio.timeout(drain_seconds):
                await self.dispatcher.idle.wait()
        except TimeoutError:
            log.warning("actor %s stopped with %d requests still in progress", self.uid, self.dispatcher.inflight)
        await self.timers.cancel()
        await self.dispatcher.cancel()
        for handle in self.handles:
            await handle.aclose()
        for group in self.groups:
            await group.aclose()
        await self._hook(self.actor.deinit, "deinit")
        self.host.state.release(self.uid)

    async def _hook(self, hook: Callable[[], Any], name: str) -> None:
        try:
            await beach_loop.within(self.call(hook), HOOK_SECONDS)  # (its own task: what it sets stays there)
        except TimeoutError:  # a def hook's thread cannot be stopped: it is left to finish alone
            self.last_error = f"{name}() did not finish within {HOOK_SECONDS:g}s"
            log.error("%s of actor %s did not finish within %gs: going on without it", name, self.uid, HOOK_SECONDS)
        except Exception as err:
            self.last_error = trace.user_traceback(err)
            log.error("%s of actor %s raised:\n%s", name, self.uid, self.last_error)

    def request_stop(self) -> None:
        """Ask the host to stop this actor (from any thread)."""
        self.stop_requested = True  # seen by a spawn whose init() called stop()
        stop = self.host.stop_actor
        self.loop.call_soon_threadsafe(lambda: self.host.background.start(stop(self.uid, by_itself=True)))

    # ---------------------------------------------------------------- calling user code

    async def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call user code: await it if ``async def``, else run it in a host worker thread; either
        way, what it logs is this actor's."""
        if inspect.iscoroutinefunction(func):
            token = current_source.set(self.log_source)
            try:
                return await func(*args, **kwargs)
            finally:
                current_source.reset(token)
        context = contextvars.copy_context()
        context.run(current_source.set, self.log_source)
        return await self.host.pool.run(lambda: context.run(func, *args, **kwargs))

    def actor_context(self) -> contextvars.Context:
        """A fresh copy of this actor's context (for threads the actor starts)."""
        return self._context.copy()

    # ---------------------------------------------------------------- Actor API backends

    def handle(self, request_type: str, func: Callable[[ActorRequest], Any]) -> Callable[..., Any] | None:
        """`Actor.handle`: serve ``request_type`` with ``func`` (the handler replaced, if any)."""
        return self.dispatcher.handle(request_type, func)

    def unhandle(self, request_type: str) -> bool:
        """`Actor.unhandle`: stop serving ``request_type``."""
        return self.dispatcher.unhandle(request_type)

    def schedule(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """`Actor.schedule`: ``func`` now and every ``delay`` seconds."""
        self.timers.schedule(delay, func, args, kwargs)

    def delay(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """`Actor.delay`: ``func`` once, in ``delay`` seconds."""
        self.timers.delay(delay, func, args, kwargs)

    def make_handle(self, category: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandle:
        """`Actor.getActorHandle`: one handle per set of arguments (a handler asking for a handle
        per request must not grow the actor's list of handles for ever)."""
        key = (category, mode, retries, timeout)
        if key not in self._handle_cache:
            self._handle_cache[key] = ActorHandle(self.host.session, self.realm, category, mode, retries, timeout,
                                                  self.actor._ident)
            self.handles.append(self._handle_cache[key])
        return self._handle_cache[key]

    def make_group(self, root: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandleGroup:
        """`Actor.getActorHandleGroup`."""
        group = ActorHandleGroup(self.host.session, self.realm, root, mode, retries, timeout, self.actor._ident)
        self.groups.append(group)
        return group

    def state_for(self, category: str) -> State:
        """`Actor.stateFor`: the state of ``category`` in this actor's realm (one `State` each)."""
        state = self._states.get(category)
        if state is None:
            state = self._states[category] = State(self.host.state, self.realm, category, self.uid, self.host.runner)
        return state

    def category_available(self, category: str) -> bool:
        """True if ``category`` has at least one live actor in this actor's realm (the view, which
        holds the category from now on)."""
        self.host.session.hold(self.realm, category)
        return bool(self.host.session.view.find(self.realm, category))

    # ---------------------------------------------------------------- directory

    def entry(self) -> ActorEntry:
        """The actor's public directory entry (private ``_`` parameters masked)."""
        spec = self.spec
        params = {k: ("<PRIVATE>" if isinstance(k, str) and k.startswith("_") else v)
                  for k, v in (spec.parameters or {}).items()}
        return ActorEntry(
            uid=self.uid, realm=self.realm, name=spec.actorName, categories=self.categories, node=self.host.node_id,
            host=self.host.host_id, pid=self.host.pid, isolated=spec.isIsolated, params=params,
            resources=spec.resources or {}, owner=spec.owner, started=self.started, is_drainable=spec.is_drainable,
            time_to_drain=spec.time_to_drain, n_concurrent=spec.n_concurrent, sid=spec.sid, restart=spec.restart,
            strategy=spec.strategy, strategy_hint=spec.strategy_hint, version=self.version)
