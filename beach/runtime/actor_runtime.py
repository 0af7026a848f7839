"""`ActorRuntime`: what runs one actor — its lifecycle, subscriptions, dispatch, timers and stop.

It lives beside `beach.actor.Actor` in the library; the process that hosts actors (the node
agent's actor host, `nodeagent.host`) gives it what it needs through the `Host` protocol.

Each NATS message is handed to a task at once (nats-py runs a subscription's callbacks one at a
time, and a slow callback makes the server drop messages). Requests in progress are bounded per
actor; past the bound the actor answers ``'busy'`` at once so the caller can try another actor.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Protocol

from nats.aio.msg import Msg

from beach import wire
from beach.actor import Actor, ActorRequest
from beach.client.group import ActorHandleGroup
from beach.client.handle import ActorHandle
from beach.client.runner import Background, Runner
from beach.client.session import Session, current_deadline
from beach.config import Config
from beach.errors import ActorInitError, BeachError, SealError
from beach.logs import Source, current_source
from beach.runtime.workers import WorkerPool
from beach.state import records
from beach.state.records import ActorEntry
from beach.wire import subjects

log = logging.getLogger("beach.runtime")

MAX_INFLIGHT_ASYNC = 1000
MAX_INFLIGHT_SYNC = 64
STOP_DRAIN_SECONDS = 10.0
HOOK_SECONDS = 5.0  # drain() and deinit() each; with the drain above, a stop stays within the agent's 30 s


class Host(Protocol):
    """What an actor runtime needs of the process hosting it (`nodeagent.host.actorhost.ActorHost`)."""

    config: Config
    session: Session
    runner: Runner
    pool: WorkerPool
    background: Background
    node_id: str
    host_id: str
    pid: int

    async def stop_actor(self, uid: str, by_itself: bool = False, grace: float = 0.0) -> tuple[str, int] | None:
        """Stop actor ``uid`` of this host (see `nodeagent.host.actorhost.ActorHost.stop_actor`)."""
        ...


Result = wire.Reply | None  # None: no reply (the caller has given up)
_EXPIRED = object()


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func)


class _Started:
    """Awaitable carrying on a coroutine already run up to its first suspension, where it yielded
    ``waiting_on`` (what a task must wait for before resuming it)."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Any, waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Any:
        coro, value = self.coro, self.waiting_on
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown into the task (cancellation): pass it on
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _carry_on(coro: Any, waiting_on: Any) -> Any:
    return await _Started(coro, waiting_on)


# Worker thread id → (actor uid, request type) while a def handler runs there, for `stacks`.
SERVING: dict[int, tuple[str, str]] = {}


def _run_sync(handler: Callable[..., Any], request: ActorRequest, deadline: float | None) -> Any:
    if deadline is not None and time.monotonic() >= deadline:
        return _EXPIRED
    ident = threading.get_ident()
    SERVING[ident] = (request.dst, request.req)
    try:
        return handler(request)
    finally:
        del SERVING[ident]


class ActorRuntime:
    """Runs one actor: init, subscriptions, request dispatch, timers, stop and deinit."""

    def __init__(self, host: Host, actor: Actor, spec: dict[str, Any], version: str | None = None) -> None:
        self.host = host
        self.actor = actor
        self.spec = spec
        self.version = version  # the deployed version of the realm's code it runs (None: code directory)
        self.uid: str = spec["uid"]
        self.realm: str = spec["realm"]
        self.categories: list[str] = list(spec["categories"])
        self.trusted = set(spec.get("trusted") or ())
        self.handlers: dict[str, Callable[[ActorRequest], Any]] = {}
        self.handles: list[ActorHandle] = []
        self._handle_cache: dict[tuple[Any, ...], ActorHandle] = {}
        self._waiting: deque[tuple[Msg, float]] = deque()  # reply-less messages past the bound
        self._waiting_bytes = 0
        self.backlog = host.config.backlog
        self.groups: list[ActorHandleGroup] = []
        self.inflight = 0
        self.max_inflight: int | None = spec.get("max_concurrent")
        self.bound = self.max_inflight or MAX_INFLIGHT_ASYNC
        self._async_handlers: set[Callable[..., Any]] = set()
        self.last_error: str | None = None
        self.counters = dict.fromkeys(("processed", "busy", "expired", "exceptions", "unauthorized", "invalid",
                                       "dropped", "refused"), 0)
        self.log_source = Source("app", host.node_id, host.host_id, self.realm, self.uid, type(actor).__name__,
                                 self.categories)
        # Requests run in copies of this context: what the actor logs is known to be its own.
        self._context = contextvars.copy_context()
        self._context.run(current_source.set, self.log_source)
        # Opt-in reply cache (the actor class sets reply_cache = N): a retry of a request that
        # already ran, or is running, gets the first run's reply instead of running it again.
        self.reply_cache = int(getattr(actor, "reply_cache", 0) or 0)
        self.replies: OrderedDict[str, Result] | None = OrderedDict() if self.reply_cache > 0 else None
        self._running: dict[str, asyncio.Future[Result]] = {}
        self.started = time.time()
        self._subs: dict[str, Any] = {}
        self._background = Background()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.stop_requested = False
        self.loop = asyncio.get_running_loop()
        actor.name = self.uid
        actor.stopEvent = threading.Event()
        actor._realm = self.realm
        actor._parameters = dict(spec.get("parameters") or {})
        actor._resources = dict(spec.get("resources") or {})
        actor._ident = spec.get("ident")
        actor._trusted = list(self.trusted)
        actor._runtime = self
        actor._logger = logging.getLogger(f"beach.actor.{type(actor).__name__}")
        level = spec.get("log_level")
        if level is not None:
            actor._logger.setLevel(level)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Run ``init`` and subscribe; raise `ActorInitError` (with the traceback) if init raises."""
        init = self.actor.init
        params = inspect.signature(init).parameters
        args: tuple[Any, ...] = (self.actor._parameters,)
        if len(params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params.values()):
            args += (self.actor._resources,)
        try:
            await self.call(init, *args)
        except Exception:
            self.actor.stopEvent.set()
            await self._background.cancel()
            raise ActorInitError(traceback.format_exc()) from None
        await self.subscribe()

    async def subscribe(self) -> None:
        """Subscribe to every subject this actor answers on (adding the missing ones only)."""
        wanted: dict[str, str | None] = {subjects.actor_subject(self.realm, self.uid): None}
        for prefix in subjects.prefix_categories(self.categories):
            wanted[subjects.request_subject(self.realm, prefix)] = subjects.QUEUE
            wanted[subjects.broadcast_subject(self.realm, prefix)] = None
        nc = self.host.session.nc
        for subject in list(self._subs):
            if subject not in wanted:
                await self._subs.pop(subject).unsubscribe()
        for subject, queue in wanted.items():
            if subject not in self._subs:
                self._subs[subject] = await nc.subscribe(subject, queue=queue or "", cb=self._on_msg,
                                                         pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def unsubscribe(self) -> None:
        """Stop receiving requests; messages already delivered to this process are still served."""
        subs, self._subs = self._subs, {}

        async def drain(sub: Any) -> None:
            try:
                await asyncio.wait_for(sub.drain(), HOOK_SECONDS)
            except Exception:  # connection closing, or a message that never finishes: go on
                pass

        await asyncio.gather(*(drain(sub) for sub in subs.values()))

    async def stop(self, drain_seconds: float = STOP_DRAIN_SECONDS) -> None:
        """Stop gracefully: unsubscribe, call ``drain()``, wait (bounded) for the requests in
        progress, stop timers and handles, then run ``deinit``."""
        if self._stopping:
            return
        self._stopping = True
        self.actor.stopEvent.set()
        await self.unsubscribe()
        await self._hook(self.actor.drain, "drain")
        try:
            await asyncio.wait_for(self._idle.wait(), drain_seconds)
        except TimeoutError:
            log.warning("actor %s stopped with %d requests still in progress", self.uid, self.inflight)
        await self._background.cancel()
        for handle in self.handles:
            await handle.aclose()
        for group in self.groups:
            await group.aclose()
        await self._hook(self.actor.deinit, "deinit")

    async def _hook(self, hook: Callable[[], Any], name: str) -> None:
        try:
            await asyncio.wait_for(self.call(hook), HOOK_SECONDS)
        except TimeoutError:  # a def hook's thread cannot be stopped: it is left to finish alone
            self.last_error = f"{name}() did not finish within {HOOK_SECONDS:g}s"
            log.error("%s of actor %s did not finish within %gs: going on without it", name, self.uid, HOOK_SECONDS)
        except Exception:
            self.last_error = traceback.format_exc()
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
        if _is_async(func):
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

    def _in_loop(self) -> bool:
        return self.host.runner.in_loop_thread()

    def _soon(self, coro_fn: Callable[[], Any]) -> None:
        if self._in_loop():
            self._background.start(coro_fn())
        else:
            self.loop.call_soon_threadsafe(lambda: self._background.start(coro_fn()))

    # ---------------------------------------------------------------- Actor API backends

    def handle(self, request_type: str, func: Callable[[ActorRequest], Any]) -> Callable[..., Any] | None:
        previous = self.handlers.get(request_type)
        self.handlers[request_type] = func
        self._set_bound()
        return previous

    def unhandle(self, request_type: str) -> bool:
        removed = self.handlers.pop(request_type, None) is not None
        self._set_bound()
        return removed

    def schedule(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first_delay = 0.0
        if not self._in_loop() and not _is_async(func):
            first_delay = delay
            func(*args, **kwargs)  # the original calls it at once, in the caller

        async def repeat() -> None:
            await asyncio.sleep(first_delay)
            while not self._stopping:
                await self._guarded(func, args, kwargs)
                await asyncio.sleep(delay)

        self._soon(repeat)

    def delay(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            if not self._stopping:
                await self._guarded(func, args, kwargs)

        self._soon(later)

    async def _guarded(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            await self.call(func, *args, **kwargs)
        except Exception:
            self.last_error = traceback.format_exc()
            log.error("timer %s of actor %s raised:\n%s", getattr(func, "__name__", func), self.uid, self.last_error)

    def make_handle(self, category: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandle:
        # one handle per set of arguments: a handler that asks for a handle per request must not
        # grow the actor's list of handles for ever
        key = (category, mode, retries, timeout)
        if key not in self._handle_cache:
            self._handle_cache[key] = ActorHandle(self.host.session, self.realm, category, mode, retries, timeout,
                                                  self.actor._ident)
            self.handles.append(self._handle_cache[key])
        return self._handle_cache[key]

    def make_group(self, root: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandleGroup:
        group = ActorHandleGroup(self.host.session, self.realm, root, mode, retries, timeout, self.actor._ident)
        self.groups.append(group)
        return group

    # ---------------------------------------------------------------- requests

    def _set_bound(self) -> None:
        self._async_handlers = {h for h in self.handlers.values() if _is_async(h)}
        # Sync handlers hold a worker thread each, so they get the smaller default bound.
        sync = len(self._async_handlers) < len(self.handlers)
        self.bound = self.max_inflight or (MAX_INFLIGHT_SYNC if sync else MAX_INFLIGHT_ASYNC)

    async def _on_msg(self, msg: Msg) -> None:
        # Runs inside nats-py's one-at-a-time callback loop: hand off at once, never block here.
        received = time.monotonic()
        session = self.host.session
        if session.sealer is not None:
            try:  # at arrival, so that a message waiting its turn does not age out of the replay window
                msg.data = session.unseal(msg)
            except SealError:  # tampered, replayed or not sealed: counted, never run, never answered
                self.counters["refused"] += 1
                return
        if self.inflight >= self.bound:
            if msg.reply:  # the caller hears "busy" at once and can try another actor
                self.counters["busy"] += 1
                await session.publish(msg.reply, wire.pack_reply(False, wire.BUSY, {"uid": self.uid}))
            elif (len(self._waiting) >= self.backlog.messages
                  or self._waiting_bytes + len(msg.data) > self.backlog.bytes):
                self.counters["dropped"] += 1  # bounded: a burst must not exhaust the host's memory
            else:  # a broadcast or a shot: nobody to tell, so it waits its turn instead
                self._waiting.append((msg, received))
                self._waiting_bytes += len(msg.data)
                self._idle.clear()
            return
        self.inflight += 1
        self._idle.clear()
        self._start(self._serve(msg, received))

    def _start(self, coro: Any) -> None:
        # Run the request at once, up to its first suspension: a quick handler is done by then
        # and needs no task at all (a task per message was a fifth of a busy host's time).
        # Otherwise a task carries on from there, in the same context.
        context = self._context.copy()
        try:
            waiting_on = context.run(coro.send, None)
        except StopIteration:
            return
        except (Exception, asyncio.CancelledError):  # _serve answers handler errors itself: a bug
            # escaping into nats-py's callback loop would end this subscription (a CancelledError does)
            log.exception("actor %s failed to serve a message", self.uid)
            return
        self._background.start(_carry_on(coro, waiting_on), context)

    async def _serve(self, msg: Msg, received: float) -> None:
        try:
            try:
                request = wire.unpack_request(msg.data)
            except ValueError as err:
                self.counters["invalid"] += 1
                result: Result = wire.Reply(False, wire.INVALID_REQUEST, {"reason": str(err)})
            else:
                result = await self._dispatch(request, received)
            if result is not None and msg.reply:
                await self._reply(msg.reply, result)
        finally:
            if self._waiting:  # hand this slot to the oldest message that waits for one
                waiting = self._waiting.popleft()
                self._waiting_bytes -= len(waiting[0].data)
                self._background.start(self._serve(*waiting))
            else:
                self.inflight -= 1
                if not self.inflight:
                    self._idle.set()

    async def _dispatch(self, request: wire.Request, received: float) -> Result:
        if self.trusted and request.ident not in self.trusted:
            self.counters["unauthorized"] += 1
            return wire.Reply(False, wire.UNAUTHORIZED, {})
        handler = self.handlers.get(request.req)
        if handler is None:
            self.actor.logCritical(f"request type not supported: {request.req!r}")
            return wire.Reply(False, wire.UNSUPPORTED, {})
        deadline = None if request.ttl is None else received + request.ttl
        actor_request = ActorRequest(request.ident, request.id, request.req, self.uid, request.data)
        if self.replies is None:
            return await self._run(handler, actor_request, deadline)
        return await self._run_once(handler, actor_request, deadline)

    async def _run_once(self, handler: Callable[..., Any], request: ActorRequest, deadline: float | None) -> Result:
        """Run a request at most once per id: a retry gets the first run's reply (reply cache)."""
        assert self.replies is not None
        if request.id in self.replies:
            return self.replies[request.id]
        running = self._running.get(request.id)
        if running is not None:
            result = await asyncio.shield(running)
            if result is not None:
                return result
            # the first run expired before it started: this retry still has time of its own
        future: asyncio.Future[Result] = self.loop.create_future()
        self._running[request.id] = future
        result = None
        try:
            result = await self._run(handler, request, deadline)
        finally:
            if self._running.get(request.id) is future:
                del self._running[request.id]
            future.set_result(result)
            if result is not None:
                self.replies[request.id] = result
                while len(self.replies) > self.reply_cache:
                    self.replies.popitem(last=False)
        return result

    async def _run(self, handler: Callable[..., Any], request: ActorRequest, deadline: float | None) -> Result:
        """Run the handler unless the request's deadline passed before it started (then no reply:
        the caller has given up); turn its return or its exception into a reply."""
        if deadline is not None and time.monotonic() >= deadline:
            self.counters["expired"] += 1
            return None
        token = current_deadline.set(deadline)
        try:
            if handler in self._async_handlers:
                ret = await handler(request)
            else:
                run = contextvars.copy_context().run
                ret = await self.host.pool.run(run, _run_sync, handler, request, deadline)
                if ret is _EXPIRED:  # waited for a worker thread past its deadline
                    self.counters["expired"] += 1
                    return None
        except (Exception, asyncio.CancelledError, SystemExit, KeyboardInterrupt) as err:
            # A handler's CancelledError, sys.exit() or KeyboardInterrupt is its own failure: it must
            # neither end this subscription nor take the shared host down. Only a real cancellation
            # of this task (the actor stopping) goes on up.
            task = asyncio.current_task()
            if isinstance(err, asyncio.CancelledError) and task is not None and task.cancelling():
                raise
            self.counters["exceptions"] += 1
            self.last_error = traceback.format_exc()
            log.error("handler %r of actor %s raised:\n%s", request.req, self.uid, self.last_error)
            return wire.Reply(False, wire.EXCEPTION, {"st": self.last_error})
        finally:
            current_deadline.reset(token)
        self.counters["processed"] += 1
        return wire.normalize_return(ret)

    async def _reply(self, to: str, reply: wire.Reply) -> None:
        session = self.host.session
        try:
            payload = wire.pack_reply(*reply)
            session.check_size(payload, "reply")
        except BeachError as err:
            log.error("actor %s could not send its reply: %s", self.uid, err)
            payload = wire.pack_reply(False, f"reply could not be sent: {err}", {})
        await session.publish(to, payload)

    @property
    def waiting(self) -> int:
        """Reply-less messages past the bound, waiting for a free slot."""
        return len(self._waiting)

    def category_available(self, category: str) -> bool:
        """True if ``category`` has at least one live actor in this actor's realm (the view)."""
        return bool(self.host.session.view.find(self.realm, category))

    # ---------------------------------------------------------------- directory

    def entry(self) -> ActorEntry:
        """The actor's public directory entry (private ``_`` parameters masked)."""
        spec = self.spec
        params = {k: ("<PRIVATE>" if isinstance(k, str) and k.startswith("_") else v)
                  for k, v in (spec.get("parameters") or {}).items()}
        return {
            "v": records.FORMAT,
            "uid": self.uid, "realm": self.realm, "name": spec["name"], "categories": self.categories,
            "node": self.host.node_id, "host": self.host.host_id, "pid": self.host.pid,
            "isolated": bool(spec.get("isolated")), "params": params,
            "resources": spec.get("resources") or {}, "owner": spec.get("owner"),
            "started": self.started, "is_drainable": bool(spec.get("is_drainable")),
            "time_to_drain": spec.get("time_to_drain"), "n_concurrent": spec.get("n_concurrent", 1),
            "sid": spec.get("sid"), "restart": spec.get("restart", "never"),
            "strategy": spec.get("strategy", "random"), "strategy_hint": spec.get("strategy_hint"),
            "version": self.version,
        }
