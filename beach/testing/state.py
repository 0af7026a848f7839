"""`MemoryState`: an actor's ``self.state`` in memory, for `beach.testing.ActorHarness`.

It has the API of the keyed store every actor gets (``get``, ``set``, ``delete``, ``update``,
``keys``; ``aget``, ``aset``... in ``async def`` code) and its rules, so a handler tested with it
behaves the same on a cluster: values are encoded as request data is (an unencodable value raises
`EncodeError` at once, naming its type, and what ``get`` returns is a decoded copy: a tuple comes
back a list), and the writes of one request are kept aside until its handler returns, then
applied together — a handler that raises applies none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beach import wire
from beach.errors import StateError
from beach.wire import subjects

_DELETED = None  # in a turn's writes: the key is deleted


class MemoryState:
    """The state of one category of one realm, in memory. Outside a request (in a test, before
    or after one) reads and writes apply at once."""

    def __init__(self, realm: str, category: str) -> None:
        self.realm = realm
        self.category = category
        self._values: dict[str, bytes] = {}
        self._turn: dict[str, bytes | None] | None = None

    def __repr__(self) -> str:
        return f"<MemoryState {self.realm}:{self.category} {len(self.keys())} keys>"

    # ---------------------------------------------------------------- the store's API

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` as of this request (its own writes included), or ``default``."""
        body = self._read(_check_key(key))
        return default if body is None else wire.unpack(body)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value``; raise `EncodeError` if the value cannot be encoded."""
        self._write(_check_key(key), wire.pack(value, what=f"the value of state key {key!r}"))

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens if it is not there)."""
        self._write(_check_key(key), _DELETED)

    def update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Set ``key`` to ``fn(current value, or None)``; return the new value."""
        value = fn(self.get(key))
        self.set(key, value)
        return value

    def keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted (this request's writes included)."""
        if not isinstance(prefix, str):
            raise StateError(f"a key prefix must be a string, not {type(prefix).__name__}")
        found = set(self._values)
        for key, body in (self._turn or {}).items():
            (found.discard if body is _DELETED else found.add)(key)
        return sorted(k for k in found if k.startswith(prefix))

    # the awaitable forms, for async def handlers (nothing to wait for in memory)

    async def aget(self, key: str, default: Any = None) -> Any:
        """`get`, awaited."""
        return self.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        """`set`, awaited."""
        self.set(key, value)

    async def adelete(self, key: str) -> None:
        """`delete`, awaited."""
        self.delete(key)

    async def aupdate(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """`update`, awaited."""
        return self.update(key, fn)

    async def akeys(self, prefix: str = "") -> list[str]:
        """`keys`, awaited."""
        return self.keys(prefix)

    # ---------------------------------------------------------------- turns (the harness's)

    def begin(self) -> None:
        """Start a request's turn: its writes are kept aside until `commit` or `discard`."""
        self._turn = {}

    def commit(self) -> None:
        """Apply the turn's writes, all of them."""
        turn, self._turn = self._turn or {}, None
        for key, body in turn.items():
            if body is _DELETED:
                self._values.pop(key, None)
            else:
                self._values[key] = body

    def discard(self) -> None:
        """Forget the turn's writes (its handler raised)."""
        self._turn = None

    def _read(self, key: str) -> bytes | None:
        if self._turn is not None and key in self._turn:
            return self._turn[key]
        return self._values.get(key)

    def _write(self, key: str, body: bytes | None) -> None:
        if self._turn is not None:
            self._turn[key] = body
        elif body is _DELETED:
            self._values.pop(key, None)
        else:
            self._values[key] = body


def _check_key(key: Any) -> str:
    # the node's checks: `StateError` for a key that is not a non-empty string, `CategoryError` for
    # one NATS could not carry
    token = subjects.state_token(key)
    subjects.check_key(token, "state key", key)
    return str(key)
