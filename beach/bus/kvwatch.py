"""Following a JetStream KV bucket: every update, in order, and a signal once the current
contents have been applied."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.js.errors import ServiceUnavailableError
from nats.js.kv import KeyValue

from beach.bus.connection import CONSUMER_INACTIVE
from beach.errors import BusError

log = logging.getLogger("beach.kvwatch")

# nats-py may queue the watch's "initial values done" marker ahead of values it has already
# received but not yet handed over; values arriving this soon after the marker still count.
SETTLE_SECONDS = 0.05
READY_SECONDS = 20.0  # a new cluster's JetStream may take a while; a lost connection must not hang us


class BucketWatch:
    """Calls ``apply(entry)`` for every value, delete and purge of ``kv`` (an ordered KV watch),
    of the keys ``keys`` matches (a KV key filter, wildcards allowed: every key by default).

    ``await start()`` returns once the current contents have been applied; then ``resynced(keys)``,
    if given, hears which keys those were (after a `restart`, a key it holds that is not among them
    was deleted meanwhile).
    """

    def __init__(self, kv: KeyValue, apply: Callable[[Any], None],
                 resynced: Callable[[set[str]], None] | None = None, keys: str = ">") -> None:
        self.kv = kv
        self.apply = apply
        self.resynced = resynced
        self.keys = keys
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following; return once the current contents are applied. Raises `BusError` if
        they do not arrive within `READY_SECONDS`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        while True:  # during a JetStream leader election the consumer cannot be made yet
            try:
                self._watcher = await self.kv.watch(self.keys, inactive_threshold=CONSUMER_INACTIVE)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.5)
        ready: asyncio.Future[None] = loop.create_future()
        self._task = asyncio.create_task(self._follow(ready))
        try:
            async with asyncio.timeout(READY_SECONDS):
                await asyncio.shield(ready)
        except TimeoutError:
            await self.stop()
            raise BusError(f"the watch of KV bucket {self.kv._name} did not deliver its contents "
                           f"within {READY_SECONDS:g}s (is NATS reachable?)") from None

    async def _follow(self, ready: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        initial: set[str] | None = set()  # the keys of the current contents, until they are all here

        def settled() -> None:
            nonlocal initial
            if initial is not None and self.resynced is not None:
                try:
                    self.resynced(initial)
                except Exception:
                    log.exception("cannot resynchronize with KV bucket %s", self.kv._name)
            initial = None
            if not ready.done():
                ready.set_result(None)

        async for entry in self._watcher:
            if entry is None:
                loop.call_later(SETTLE_SECONDS, settled)
                continue
            if initial is not None and entry.operation is None:
                initial.add(entry.key)
            try:
                self.apply(entry)
            except Exception:
                log.exception("cannot apply KV entry %s of %s", entry.key, entry.bucket)

    async def restart(self) -> None:
        """Follow again from the bucket's current contents (a watch whose server went away may stay
        silent for a long while: nats-py retries its consumer only every two missed heartbeats).
        Raises as `start` does."""
        await self.stop()
        self._watcher, self._task = None, None
        await self.start()

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except Exception:  # the connection may already be closed
                pass
