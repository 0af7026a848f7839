"""`State`: ``self.state``, the API actors keep their state with (the turns and commits behind it
are `beach.state.actorstate`'s).

One implementation: the ``a``-prefixed coroutines are the API; the plain methods are their
blocking face for ``def`` code (handlers, hooks and timers run in worker threads), which waits in
its thread while the host's event loop does the work — except where no wait is needed (a value
the host holds, a write staged in the request's turn), which they do in the thread at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from beach import wire
from beach.errors import BusError, StateError, UsageError
from beach.state.actorstate import Scope, StateStore, Turn, current_turn
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.client.runner import Runner

T = TypeVar("T")

ALONE_TRIES = 8  # a write outside a request, made again on conflict this many times


class ActorState(Protocol):
    """What ``self.state`` offers an actor: `State` on a node, `beach.testing.state.MemoryState`
    in `beach.testing.ActorHarness`."""

    def get(self, key: str, default: Any = None) -> Any:
        """`State.get`."""
        ...

    def set(self, key: str, value: Any) -> None:
        """`State.set`."""
        ...

    def delete(self, key: str) -> None:
        """`State.delete`."""
        ...

    def update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """`State.update`."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """`State.keys`."""
        ...

    async def aget(self, key: str, default: Any = None) -> Any:
        """`State.aget`."""
        ...

    async def aset(self, key: str, value: Any) -> None:
        """`State.aset`."""
        ...

    async def adelete(self, key: str) -> None:
        """`State.adelete`."""
        ...

    async def aupdate(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """`State.aupdate`."""
        ...

    async def akeys(self, prefix: str = "") -> list[str]:
        """`State.akeys`."""
        ...


class State:
    """``self.state``: the actor state of one category of the actor's realm, shared by every actor
    of the category (``self.stateFor(category)`` gives another's).

    Keys are non-empty strings (any: escaped for the bus, given back as they were); values are what
    request data may be (msgpack: dict, list, str, bytes, int, float, bool, None), each at most
    ``state.max_value_bytes`` encoded. Inside a request, reads see the request's turn and writes
    wait for the handler to return; outside one (``init``, timers, threads), each ``set``,
    ``delete`` and ``update`` commits at once, alone. The plain forms are for ``def`` code; in
    ``async def`` code await the ``a`` forms (``await self.state.aget(key)``): the plain ones that
    may wait raise `UsageError` on the event loop, where waiting would stall every actor of the
    host (``set`` and ``delete`` inside a request never wait, so they work anywhere).
    """

    __slots__ = ("_store", "_realm", "_category", "_user", "_runner", "_opened")

    def __init__(self, store: StateStore, realm: str, category: str, user: str, runner: Runner) -> None:
        self._store = store
        self._realm = realm
        self._category = subjects.normalize(category)
        self._user = user
        self._runner = runner
        self._opened: Scope | None = None

    def __repr__(self) -> str:
        return f"<State {self._realm}:{self._category}>"

    @property
    def category(self) -> str:
        """The category whose state this is."""
        return self._category

    @property
    def _scope(self) -> Scope:
        # Made on first use: an actor that never uses its state costs nothing.
        if self._opened is None:
            self._opened = self._store.scope(self._realm, self._category, self._user)
        return self._opened

    def _wait(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run ``coro`` on the loop and wait for it, from a worker thread (never on the loop)."""
        if self._runner.in_loop_thread():
            coro.close()
            raise UsageError(f"self.state.{what}() waits for the bus: in async def code, await "
                             f"self.state.a{what}(...) instead")
        return self._runner.run(coro)

    @staticmethod
    def _request_turn() -> Turn | None:
        """The turn of the request being served, or None outside one (or after its handler
        returned: a task it left running reads alone, and may not write)."""
        turn = current_turn.get()
        return None if turn is None or turn.ended else turn

    @staticmethod
    def _open_turn() -> Turn | None:
        turn = current_turn.get()
        if turn is not None:
            turn.check_open()
        return turn

    @staticmethod
    def _pack(key: str, value: Any) -> bytes:
        return wire.pack(value, what=f"the value of state key {key!r}")

    # ---------------------------------------------------------------- reading

    async def aget(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it has none."""
        token = subjects.state_token(key)
        turn = self._request_turn()
        if turn is None:  # outside a request: the latest value, in a turn of its own
            turn = Turn(None)
            try:
                packed = await self._store.read(turn, self._scope, token)
            finally:
                turn.finish()
        else:
            packed = await self._store.read(turn, self._scope, token)
        return default if packed is None else wire.unpack(packed)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it has none (`aget` in async code)."""
        turn = self._request_turn()
        if turn is None or self._runner.in_loop_thread():
            # (on the loop: refused by _wait, even when no wait would be needed this time)
            return self._wait(self.aget(key, default), "get")
        token = subjects.state_token(key)
        held, packed = self._store.read_held(turn, self._scope, token)
        if not held:
            packed = self._wait(self._store.read(turn, self._scope, token), "get")
        return default if packed is None else wire.unpack(packed)

    async def akeys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted: the category's keys as the bucket has them
        now, and this turn's own writes (one listing of the category: not for every request of a
        large one)."""
        if not isinstance(prefix, str):
            raise StateError(f"a key prefix must be a string, not {type(prefix).__name__}")
        scope = self._scope
        token = subjects.escape(prefix) if prefix else ""
        found = set(await self._store.keys(scope, token))
        turn = self._request_turn()
        if turn is not None:
            for (s, t), packed in turn.writes.items():
                if s is scope and t.startswith(token):
                    if packed is None:
                        found.discard(t)
                    else:
                        found.add(t)
        return sorted(subjects.unescape(t) for t in found)

    def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted (`akeys` in async code)."""
        return self._wait(self.akeys(prefix), "keys")

    # ---------------------------------------------------------------- writing

    async def aset(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value``. Raises `EncodeError` for a value msgpack cannot carry (naming
        its type), `StateError` for one over the size limit (a new key past the category's cap
        fails the request at its commit, with a `StateError` too)."""
        token, packed = subjects.state_token(key), self._pack(key, value)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, packed)
            return

        async def alone(turn: Turn) -> None:
            self._store.write(turn, self._scope, token, packed)

        await self._alone(alone, key)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (see `aset`)."""
        token, packed = subjects.state_token(key), self._pack(key, value)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, packed)
        else:
            self._wait(self.aset(key, value), "set")

    async def adelete(self, key: str) -> None:
        """Delete ``key`` (a key without a value stays without)."""
        token = subjects.state_token(key)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, None)
            return

        async def alone(turn: Turn) -> None:
            self._store.write(turn, self._scope, token, None)

        await self._alone(alone, key)

    def delete(self, key: str) -> None:
        """Delete ``key`` (see `adelete`)."""
        token = subjects.state_token(key)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, None)
        else:
            self._wait(self.adelete(key), "delete")

    async def aupdate(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Set ``key`` to ``fn(its value)`` (None for a key without one) and return the new value;
        ``fn`` may be a coroutine function. Outside a request it is read, changed and written as
        one commit, again while another writer changes the key in between."""
        token = subjects.state_token(key)

        async def change(turn: Turn) -> Any:
            current = await self._store.read(turn, self._scope, token, writing=True)
            new = fn(None if current is None else wire.unpack(current))
            if inspect.isawaitable(new):
                new = await new
            self._store.write(turn, self._scope, token, self._pack(key, new))
            return new

        turn = self._open_turn()
        if turn is not None:
            return await change(turn)
        return await self._alone(change, key)

    def update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Set ``key`` to ``fn(its value)`` and return the new value (see `aupdate`; inside a
        request ``fn`` runs in the calling thread, outside one on the host's event loop)."""
        turn = self._open_turn()
        if turn is None or self._runner.in_loop_thread():
            return self._wait(self.aupdate(key, fn), "update")
        token = subjects.state_token(key)
        held, packed = self._store.read_held(turn, self._scope, token, writing=True)
        if not held:
            packed = self._wait(self._store.read(turn, self._scope, token, writing=True), "update")
        new = fn(None if packed is None else wire.unpack(packed))
        self._store.write(turn, self._scope, token, self._pack(key, new))
        return new

    async def _alone(self, body: Callable[[Turn], Awaitable[T]], key: str) -> T:
        """Run ``body`` in a turn of its own and commit it (outside a request), again on conflict.
        Raises `StateError`, or `BusError` when the commit's outcome is unknown."""
        for _ in range(ALONE_TRIES):
            turn = Turn(None)
            token = current_turn.set(turn)
            try:
                result = await body(turn)
            except BaseException:
                turn.finish()
                raise
            finally:
                current_turn.reset(token)
            outcome = await self._store.commit(turn, None)
            if outcome is None:
                return result
            if outcome.error == wire.CONFLICT:
                continue
            raise BusError(outcome.error)  # (bus unavailable: the commit's outcome is unknown)
        raise StateError(f"state key {key!r} kept changing under this write ({ALONE_TRIES} conflicts in a row)")
