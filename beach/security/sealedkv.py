"""A JetStream KV bucket whose values are sealed (see `beach.security.seal`), with nats-py's own API.

Every reader and writer of beach's buckets (directory, desired state, lease) keeps calling ``get``,
``put``, ``create``, ``update``, ``watch`` and ``watchall`` as on nats-py's ``KeyValue``; this wrapper seals on
the way in and opens on the way out, each value bound to its bucket and key. A value that does not
open (written by someone without the key, tampered, or copied from another key) is handed on as
`REFUSED`, which no record decoder accepts: it is refused and counted where records are, never
mistaken for a deletion.
"""

from __future__ import annotations

from typing import Any

from nats.js.kv import KeyValue

from beach.errors import SealError
from beach.security.seal import Sealer

# A msgpack byte that starts no value: decoding it fails, so a refused value reads as a bad record.
REFUSED = b"\xc1"


def context(bucket: str, key: str) -> str:
    """What a value of ``bucket`` under ``key`` is sealed for."""
    return f"$KV.{bucket}.{key}"


class SealedBucket:
    """``kv`` (a nats-py ``KeyValue``) with sealed values; any other attribute is ``kv``'s."""

    def __init__(self, kv: KeyValue, sealer: Sealer) -> None:
        self._kv = kv
        self._sealer = sealer
        self._name = kv._name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    def seal_value(self, key: str, value: bytes) -> bytes:
        """``value`` sealed for ``key`` of this bucket (for writers that publish to it directly)."""
        return self._sealer.seal(context(self._name, key), value)

    def open_entry(self, entry: Any) -> Any:
        """Open ``entry.value`` in place (deletes and purges have none); a value that does not open
        becomes `REFUSED`."""
        if entry is not None and entry.value:
            try:
                entry.value = self._sealer.open(context(entry.bucket or self._name, entry.key), entry.value,
                                                fresh=False)
            except SealError:
                entry.value = REFUSED
        return entry

    async def get(self, key: str, revision: int | None = None, validate_keys: bool = True) -> Any:
        """nats-py's ``get``, opened."""
        return self.open_entry(await self._kv.get(key, revision, validate_keys))

    async def put(self, key: str, value: bytes, validate_keys: bool = True) -> int:
        """nats-py's ``put``, sealed."""
        return await self._kv.put(key, self.seal_value(key, value), validate_keys)

    async def create(self, key: str, value: bytes, validate_keys: bool = True, msg_ttl: float | None = None) -> int:
        """nats-py's ``create``, sealed."""
        return await self._kv.create(key, self.seal_value(key, value), validate_keys, msg_ttl)

    async def update(self, key: str, value: bytes, last: int | None = None, validate_keys: bool = True) -> int:
        """nats-py's ``update``, sealed."""
        return await self._kv.update(key, self.seal_value(key, value), last, validate_keys)

    async def watchall(self, **kwargs: Any) -> _OpenedWatch:
        """nats-py's ``watchall``, every entry opened."""
        return _OpenedWatch(await self._kv.watchall(**kwargs), self)

    async def watch(self, keys: str, **kwargs: Any) -> _OpenedWatch:
        """nats-py's ``watch``, every entry opened."""
        return _OpenedWatch(await self._kv.watch(keys, **kwargs), self)


class _OpenedWatch:
    def __init__(self, watcher: Any, bucket: SealedBucket) -> None:
        self._watcher = watcher
        self._bucket = bucket

    def __aiter__(self) -> _OpenedWatch:
        return self

    async def __anext__(self) -> Any:
        return self._bucket.open_entry(await self._watcher.__anext__())

    async def updates(self, timeout: float = 5.0) -> Any:
        return self._bucket.open_entry(await self._watcher.updates(timeout))

    async def stop(self) -> None:
        await self._watcher.stop()


def seal_value(kv: Any, key: str, value: bytes) -> bytes:
    """``value`` as it is stored under ``key`` of ``kv``: sealed if the bucket is, else as it is."""
    return kv.seal_value(key, value) if isinstance(kv, SealedBucket) else value
