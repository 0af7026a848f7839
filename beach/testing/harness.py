"""`ActorHarness`: one actor in this process, no NATS — a handler's unit test in a few lines.

The actor is created and its ``init`` runs as on a node; requests go through the wire encoding
both ways (data a cluster could not carry fails here too, and a tuple comes back a list), its
handlers' returns become `ActorResponse` by the same rules, and it gets:

* handles to other categories that call the test's stubs (``stub('other/category', fn)``; every
  call is in `ActorHarness.calls`); a category nobody stubbed answers "no actor available", as an
  empty category does;
* a fake clock: ``schedule`` and ``delay`` run when the test moves the clock (`advance`);
* ``self.state`` in memory (`beach.testing.state.MemoryState`), a request's writes applied when
  its handler returns;
* what it logs captured (`logs`, `log_records`), and what raised in a timer or hook in `errors`;
* generator handlers: ``stream`` (``astream``) reads their items one by one, each through the wire
  encoding; an exception ends it with `StreamError`, as on a node; leaving the loop early closes
  the generator, its request cancelled first (``self.isCancelled()`` is then True, as it is on a
  node when the caller breaks off); ``request`` gets the list of the items. A request can be served
  as cancelled from the start (``cancelled=True``) to test what a handler does then.

Blocking methods (``request``, ``shoot``, ``advance``, ``stop``) run ``async def`` handlers on a
private event loop; in async code await their ``a*`` forms instead (``async with ActorHarness(...)``).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import inspect
import itertools
import logging
import os
import sys
import traceback
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from beach import loop as beach_loop
from beach import wire
from beach.actor import Actor, ActorRequest
from beach.client.group import ActorHandleGroup
from beach.client.handle import ActorHandle
from beach.client.response import ActorResponse
from beach.client.scope import Scope, current_scope
from beach.errors import ActorInitError, BeachError, StreamError, UsageError
from beach.logs import Source, current_source
from beach.runtime import trace
from beach.runtime.actor_runtime import bind, init_args
from beach.runtime.loader import load_actor_class
from beach.runtime.replycache import ReplyCache
from beach.state.spawn import SpawnSpec
from beach.testing.state import MemoryState
from beach.testing.stubs import Stub, StubCall, StubGroup, StubHandle, Stubs
from beach.wire import subjects

T = TypeVar("T")
@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    func: Callable[..., Any] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    kwargs: dict[str, Any] = field(compare=False)
    every: float | None = field(compare=False, default=None)  # a schedule's period; None: a delay


class _Capture(logging.Handler):
    """Keeps the log records of one actor: those its code emits (from any thread it started)."""

    def __init__(self, source: Source) -> None:
        super().__init__(logging.DEBUG)
        self.source = source
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "beach_source", None) is self.source or current_source.get() is self.source:
            self.records.append(record)


def _close(loop: asyncio.AbstractEventLoop | None, capture: _Capture) -> None:
    """What a harness holds outside itself (run at `ActorHarness.stop`, or when it is collected)."""
    logging.getLogger().removeHandler(capture)
    if loop is not None and not loop.is_closed():
        loop.close()


class ActorHarness:
    """Runs one actor in this process, without NATS.

    ``actor`` is an `Actor` subclass, or the name of one (``'Counter'``, ``'sub/Name'``) loaded
    from ``<code_directory>/<realm>/`` as a node loads it (the same import rule). ``parameters``
    and ``resources`` go to ``init``; ``category`` (one, or a list) is what the actor serves, and
    its first category's state is ``self.state``; ``trusted`` idents are checked as on a node.

    ``init`` runs at once (in async code: at ``async with`` or the first awaited call); one that
    raises makes the constructor raise `ActorInitError` with its traceback.
    """

    def __init__(self, actor: type[Actor] | str, parameters: dict[str, Any] | None = None, *,
                 code_directory: str | os.PathLike[str] | None = None, realm: str = "global",
                 category: str | Sequence[str] = "test", resources: dict[str, Any] | None = None,
                 trusted: Sequence[str] = (), uid: str | None = None) -> None:
        self.realm = subjects.check_realm(realm)
        categories = [category] if isinstance(category, str) else list(category)
        if not categories:
            raise UsageError("an actor needs at least one category")
        self.categories = [subjects.routable(self.realm, c) for c in categories]
        cls = self._resolve(actor, code_directory)
        self.uid = uid or uuid.uuid4().hex
        self.clock = 0.0
        """Seconds of fake time since the harness started (moved by `advance`)."""
        self.errors: list[str] = []
        """Tracebacks of what raised in a timer, a hook or a handler, oldest first."""
        self.state = MemoryState(self.realm, self.categories[0])
        """The actor's ``self.state``: seed it before a request, read it after."""
        self._states = {self.categories[0]: self.state}
        self._stubs = Stubs(self.realm)
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._in_async = False  # the harness is awaiting the actor's async code (timers then wait for the clock)
        self._stop_requested = False
        self._started = False
        self.stopped = False
        """True once the actor has stopped (`stop`, or its own ``self.stop()``)."""
        self.actor = cls()
        """The actor instance."""
        self.source = Source("app", "harness", "harness", self.realm, self.uid, cls.__name__, self.categories)
        self._backend = _Backend(self)
        self._context = contextvars.copy_context()
        self._context.run(current_source.set, self.source)
        self._capture = _Capture(self.source)
        logging.getLogger().addHandler(self._capture)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer = weakref.finalize(self, _close, None, self._capture)
        self._replies = ReplyCache(int(getattr(cls, "reply_cache", 0) or 0)) if getattr(cls, "reply_cache", 0) else None
        bind(self.actor, self._backend, SpawnSpec(
            actorName=cls.__name__, category=self.categories, realm=self.realm, uid=self.uid, parameters=parameters,
            resources=resources, trustedIdents=list(trusted), log_level=logging.DEBUG))
        setattr(self.actor, "state", self.state)  # (as a node sets it: the state of its first category)  # noqa: B010
        if not hasattr(cls, "stateFor"):  # (Actor.stateFor asks the backend's state_for where it has one)
            self.actor.__dict__["stateFor"] = self.state_for
        self._trusted = set(trusted)
        if not _loop_running():
            self.start()

    def _resolve(self, actor: type[Actor] | str, code_directory: str | os.PathLike[str] | None) -> type[Actor]:
        if isinstance(actor, str):
            if ":" in actor and "://" not in actor:  # module:Class (the test names the module: it may be imported)
                return load_actor_class("", self.realm, actor, [actor.partition(":")[0]])
            if code_directory is None:
                raise UsageError(f"ActorHarness({actor!r}): give code_directory= to load an actor by name")
            return load_actor_class(os.fspath(code_directory), self.realm, actor)
        if not (isinstance(actor, type) and issubclass(actor, Actor)):
            raise UsageError(f"ActorHarness needs an Actor subclass or its name, not {actor!r}")
        return actor

    def __repr__(self) -> str:
        return f"<ActorHarness {type(self.actor).__name__} {self.realm}:{self.categories[0]} t={self.clock:g}>"

    # ---------------------------------------------------------------- the blocking face

    def start(self) -> None:
        """Run the actor's ``init`` (the constructor does, outside async code)."""
        self._run(self.astart())

    def request(self, requestType: str, data: Any = None, *, ident: str | None = None,
                request_id: str | None = None, cancelled: bool = False) -> ActorResponse:
        """Send the actor a request and return its `ActorResponse` (``ident``: the trust token
        the caller sends; ``request_id``: the same one twice is a retry; ``cancelled``: serve it as
        a request whose caller has given up, ``self.isCancelled()`` True from the start)."""
        return self._run(self.arequest(requestType, data, ident=ident, request_id=request_id, cancelled=cancelled))

    def stream(self, requestType: str, data: Any = None, *, ident: str | None = None) -> Iterator[Any]:
        """Send the actor a streamed request and read the items its generator handler yields, one
        at a time (a handler that is no generator: one item, its reply's data). Raises
        `StreamError` when the handler raises or fails, or no actor serves it; a ``break`` (closing
        this iterator) cancels the request and closes the generator."""
        items = self.astream(requestType, data, ident=ident)

        async def next_item() -> Any:
            return await anext(items)

        try:
            while True:
                try:
                    item = self._run(next_item())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._run(items.aclose())

    def shoot(self, requestType: str, data: Any = None, *, ident: str | None = None) -> bool:
        """Send the actor a request without a reply; it has been served when this returns."""
        return self._run(self.ashoot(requestType, data, ident=ident))

    def advance(self, seconds: float) -> int:
        """Move the fake clock ``seconds`` on, running every ``schedule`` and ``delay`` that falls
        due meanwhile, in order; return how many ran."""
        return self._run(self.aadvance(seconds))

    def stop(self) -> None:
        """Stop the actor: ``drain()``, then ``deinit()``; later requests find no actor."""
        if not self.stopped:
            self._run(self.astop())
        self._finalizer()

    def __enter__(self) -> ActorHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- the async core

    async def astart(self) -> None:
        """Run the actor's ``init``; raise `ActorInitError` (with the traceback) if it raises."""
        if self._started:
            return
        self._started = True
        try:
            await self._turn(self.actor.init, *init_args(self.actor))
        except Exception as err:
            self.actor.stopEvent.set()
            self._timers.clear()
            self.stopped = True
            logging.getLogger().removeHandler(self._capture)
            raise ActorInitError(f"init() of {type(self.actor).__name__} raised:\n{traceback.format_exc()}") from err
        if self._stop_requested:
            await self.astop()
            raise ActorInitError(f"{type(self.actor).__name__} stopped itself during init()")

    async def _admit(self, requestType: str, data: Any, ident: str | None, request_id: str | None
                     ) -> tuple[Callable[..., Any], ActorRequest] | ActorResponse:
        """The handler and the request it gets; or the answer of a request that reaches none."""
        await self.astart()
        request = self._encode(requestType, data, ident, request_id)
        if self.stopped:
            return self._no_actor()
        if self._trusted and request.ident not in self._trusted:
            return ActorResponse(False, wire.UNAUTHORIZED, {})
        handler = self._backend.handlers.get(request.req)
        if handler is None:
            self.actor.logCritical(f"request type not supported: {request.req!r}")
            return ActorResponse(False, wire.UNSUPPORTED, {})
        return handler, ActorRequest(request.ident, request.id, request.req, self.uid, request.data)

    async def arequest(self, requestType: str, data: Any = None, *, ident: str | None = None,
                       request_id: str | None = None, cancelled: bool = False) -> ActorResponse:
        """`request`, awaited."""
        admitted = await self._admit(requestType, data, ident, request_id)
        if isinstance(admitted, ActorResponse):
            return admitted
        handler, actor_request = admitted
        scope = Scope()
        scope.cancelled = cancelled

        async def run() -> wire.Reply:
            return await self._serve(handler, actor_request, scope)

        reply = await (run() if self._replies is None else self._replies.run_once(actor_request.id, run))
        assert reply is not None
        await self._after()
        try:  # (named as a node's actor names itself: its uid, and the harness's node, "harness")
            payload = wire.pack_reply(reply.ok, reply.error, reply.data, self.uid, "harness")
        except BeachError as err:
            self.actor.logCritical(f"could not send its reply: {err}")
            payload = wire.pack_reply(False, f"reply could not be sent: {err}", {}, self.uid, "harness")
        return ActorResponse.of(wire.read_reply(payload, self.uid))

    async def astream(self, requestType: str, data: Any = None, *, ident: str | None = None
                      ) -> AsyncGenerator[Any, None]:
        """`stream`, for ``async for``."""
        admitted = await self._admit(requestType, data, ident, None)
        if isinstance(admitted, ActorResponse):
            raise StreamError(admitted.failure, admitted.error, admitted.data)
        handler, request = admitted
        if not _generator(handler):  # one item: its reply's data
            response = await self.arequest(requestType, data, ident=ident)
            if not response.isSuccess:
                raise StreamError(response.failure, response.error, response.data)
            yield response.data
            return
        seq = 0
        try:
            async for item in self._items(handler, request, Scope()):
                try:  # (through the wire, as a node sends it: what it cannot carry fails here too)
                    payload = wire.pack_reply(True, "", item, self.uid, "harness", None, seq, True)
                except BeachError as err:
                    self._failed(f"handler {request.req!r}")
                    raise StreamError(wire.Failure.EXCEPTION, f"{wire.EXCEPTION}: {trace.describe(err)}") from None
                seq += 1
                yield wire.read_reply(payload, self.uid).data
        except StreamError:
            raise
        except Exception as err:
            error = self._failed(f"handler {request.req!r}")
            raise StreamError(wire.Failure.EXCEPTION, f"{wire.EXCEPTION}: {trace.describe(err)}", {"st": error}) \
                from None
        await self._after()

    async def _items(self, handler: Callable[..., Any], request: ActorRequest, scope: Scope) -> AsyncIterator[Any]:
        """A generator handler's items, run as a node runs it: in the actor's context, the request's
        scope current, one turn of its state (applied if it ends well). Closed early (its reader
        stopped), the request is cancelled, then the generator closed, and nothing is applied."""
        context = self._context.copy()
        context.run(current_scope.set, scope)
        states = list(self._states.values())
        for state in states:
            state.begin()
        generator = context.run(handler, request)
        loop = asyncio.get_running_loop()

        async def step() -> Any:
            return await anext(generator, _DONE)

        ended = False
        try:
            while True:
                if inspect.isasyncgen(generator):
                    item = await loop.create_task(step(), context=context)
                else:
                    item = context.run(next, generator, _DONE)
                if item is _DONE:
                    break
                yield item
            ended = True
        finally:
            if not ended:
                scope.cancel("cancelled: its caller gave up")
            if inspect.isasyncgen(generator):
                await loop.create_task(generator.aclose(), context=context)
            else:
                context.run(generator.close)
            for state in states:
                state.commit() if ended else state.discard()

    async def ashoot(self, requestType: str, data: Any = None, *, ident: str | None = None) -> bool:
        """`shoot`, awaited."""
        await self.arequest(requestType, data, ident=ident)
        return True

    async def aadvance(self, seconds: float) -> int:
        """`advance`, awaited."""
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise UsageError(f"advance() takes a number of seconds, 0 or more, not {seconds!r}")
        await self.astart()
        until = self.clock + seconds
        fired = 0
        while self._timers and self._timers[0].due <= until and not self.stopped:
            timer = heapq.heappop(self._timers)
            self.clock = max(self.clock, timer.due)
            fired += 1
            try:
                await self._turn(timer.func, *timer.args, **timer.kwargs)
            except Exception:
                self._failed(f"timer {getattr(timer.func, '__name__', timer.func)}")
            if timer.every is not None and not self.stopped:
                self._add(self.clock + timer.every, timer.func, timer.args, timer.kwargs, timer.every)
            await self._after()
        self.clock = max(self.clock, until)
        return fired

    async def astop(self) -> None:
        """`stop`, awaited."""
        if self.stopped:
            return
        self.stopped = True
        self.actor.stopEvent.set()
        self._timers.clear()
        for hook in (self.actor.drain, self.actor.deinit):
            try:
                await self._turn(hook)
            except Exception:
                self._failed(f"{hook.__name__}()")
        logging.getLogger().removeHandler(self._capture)

    async def __aenter__(self) -> ActorHarness:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()
        self._finalizer()

    # ---------------------------------------------------------------- stubs, state, logs

    def stub(self, category: str, fn: Stub) -> None:
        """Answer the actor's messages to ``category`` (and the categories under it) with
        ``fn(requestType, data)``: it returns the data, or ``(True, data)`` / ``(False, error[,
        data])`` as a handler does, and raising is an ``'exception'``; a later stub of the same
        category replaces it."""
        self._stubs.add(category, fn)

    @property
    def calls(self) -> list[StubCall]:
        """Every message the actor sent to other categories (`StubCall`), oldest first."""
        return self._stubs.calls

    def state_for(self, category: str) -> MemoryState:
        """The state of another category of the actor's realm (``self.stateFor(category)``)."""
        category = subjects.normalize(category)
        if category not in self._states:
            self._states[category] = MemoryState(self.realm, category)
        return self._states[category]

    @property
    def log_records(self) -> list[logging.LogRecord]:
        """What the actor logged (``self.log``, ``self.logCritical``, its own ``logging`` calls at
        the level the test's logging lets through), oldest first."""
        return list(self._capture.records)

    @property
    def logs(self) -> list[str]:
        """The messages of `log_records`."""
        return [r.getMessage() for r in self._capture.records]

    @property
    def last_error(self) -> str | None:
        """The traceback of the last exception a handler or timer raised (``getLastError()``)."""
        return self._backend.last_error

    # ---------------------------------------------------------------- inside

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if _loop_running():
            coro.close()
            raise UsageError("this ActorHarness method blocks: in async code, await its a* form "
                             "(arequest, ashoot, aadvance, astop) or use 'async with ActorHarness(...)'")
        if self._loop is None or self._loop.is_closed():
            self._loop = beach_loop.new()
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close, self._loop, self._capture)
        return self._loop.run_until_complete(coro)

    def _encode(self, requestType: str, data: Any, ident: str | None, request_id: str | None) -> wire.Request:
        if not isinstance(requestType, str):
            raise UsageError(f"requestType must be a string, not {type(requestType).__name__}")
        payload = wire.pack_request(request_id or uuid.uuid4().hex[:24], requestType, {} if data is None else data,
                                    ident, None)
        return wire.unpack_request(payload)

    def _no_actor(self) -> ActorResponse:
        return ActorResponse(False, f"{wire.NO_ACTOR} in category '{self.categories[0]}' of realm '{self.realm}' "
                                    f"(the actor has stopped)")

    async def _serve(self, handler: Callable[..., Any], request: ActorRequest, scope: Scope) -> wire.Reply:
        try:
            if _generator(handler):  # (a plain request to a generator handler: the list of its items)
                return wire.Reply(True, "", [item async for item in self._items(handler, request, scope)])
            ret = await self._turn_in(scope, handler, request)
        except Exception as err:
            error = self._failed(f"handler {request.req!r}")
            return wire.Reply(False, f"{wire.EXCEPTION}: {trace.describe(err)}", {"st": error})
        return wire.normalize_return(ret)

    async def _turn(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the actor's code as its host does (awaited, or called: it is this actor's for
        logging), in a turn of its state: applied if it returns, forgotten if it raises."""
        return await self._turn_in(None, func, *args, **kwargs)

    async def _turn_in(self, scope: Scope | None, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`_turn`, serving a request whose `Scope` is ``scope`` (None: a timer's, a hook's)."""
        states = list(self._states.values())
        for state in states:
            state.begin()
        try:
            if inspect.iscoroutinefunction(func):
                token = current_source.set(self.source)
                scoped = current_scope.set(scope)
                was, self._in_async = self._in_async, True
                try:
                    result = await func(*args, **kwargs)
                finally:
                    self._in_async = was
                    current_scope.reset(scoped)
                    current_source.reset(token)
            else:
                context = self._context.copy()
                context.run(current_scope.set, scope)
                result = context.run(func, *args, **kwargs)
        except BaseException:
            for state in states:
                state.discard()
            raise
        for state in states:
            state.commit()
        return result

    async def _after(self) -> None:
        if self._stop_requested and not self.stopped:
            await self.astop()

    def _failed(self, what: str) -> str:
        raised = sys.exc_info()[1]  # as a node reports it: the actor's own frames
        error = trace.user_traceback(raised) if raised is not None else traceback.format_exc()
        self._backend.last_error = error
        self.errors.append(error)
        logging.getLogger("beach.runtime").error("%s of actor %s raised:\n%s", what, self.uid, error)
        return error

    def _add(self, due: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             every: float | None = None) -> None:
        heapq.heappush(self._timers, _Timer(due, next(self._seq), func, args, kwargs, every))

_DONE = object()  # (a generator's end)


def _generator(handler: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(handler) or inspect.isasyncgenfunction(handler)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Backend:
    """What the actor's methods call (`beach.actor.Backend`), in the harness."""

    def __init__(self, harness: ActorHarness) -> None:
        self._harness = harness
        self.log_source = harness.source
        self.handlers: dict[str, Callable[[ActorRequest], Any]] = {}
        self.handles: list[ActorHandle] = []
        self.last_error: str | None = None
        self._handle_cache: dict[tuple[Any, ...], ActorHandle] = {}

    def handle(self, request_type: str, func: Callable[[ActorRequest], Any]) -> Callable[..., Any] | None:
        previous = self.handlers.get(request_type)
        self.handlers[request_type] = func
        return previous

    def unhandle(self, request_type: str) -> bool:
        return self.handlers.pop(request_type, None) is not None

    def schedule(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        harness = self._harness
        if harness.stopped:
            return
        if not harness._in_async and not inspect.iscoroutinefunction(func):
            func(*args, **kwargs)  # as on a node: from plain code, the first call runs in the caller
            harness._add(harness.clock + delay, func, args, kwargs, delay)
        else:
            harness._add(harness.clock, func, args, kwargs, delay)

    def delay(self, delay: float, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        harness = self._harness
        if not harness.stopped:
            harness._add(harness.clock + delay, func, args, kwargs)

    def actor_context(self) -> contextvars.Context:
        return self._harness._context.copy()

    def make_handle(self, category: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandle:
        key = (category, mode, retries, timeout)
        if key not in self._handle_cache:
            if mode not in ("random", "local", "affinity"):
                raise UsageError(f"unknown handle mode {mode!r}: use 'random', 'local' or 'affinity'")
            # (a stand-in with ActorHandle's methods: typed as one, for the actor's code)
            stub = StubHandle(self._harness._stubs, subjects.routable(self._harness.realm, category), mode)
            self._handle_cache[key] = cast(ActorHandle, stub)
            self.handles.append(self._handle_cache[key])
        return self._handle_cache[key]

    def make_group(self, root: str, mode: str, retries: int | None, timeout: float | None) -> ActorHandleGroup:
        return cast(ActorHandleGroup, StubGroup(self._harness._stubs, subjects.routable(self._harness.realm, root)))

    def category_available(self, category: str) -> bool:
        return bool(self._harness._stubs.matching(subjects.normalize(category)))

    def state_for(self, category: str) -> MemoryState:
        return self._harness.state_for(category)

    def request_stop(self) -> None:
        self._harness._stop_requested = True
