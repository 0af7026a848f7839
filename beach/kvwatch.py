"""Following a JetStream KV bucket: every update, in order, and a signal once the current
contents have been applied."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.js.kv import KeyValue

log = logging.getLogger("beach.kvwatch")

# nats-py may queue the watch's "initial values done" marker ahead of values it has already
# received but not yet handed over; values arriving this soon after the marker still count.
SETTLE_SECONDS = 0.05


class BucketWatch:
    """Calls ``apply(entry)`` for every value, delete and purge of ``kv`` (an ordered KV watch).

    ``await start()`` returns once the bucket's current contents have been applied.
    """

    def __init__(self, kv: KeyValue, apply: Callable[[Any], None]) -> None:
        self.kv = kv
        self.apply = apply
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following; return once the current contents are applied."""
        self._watcher = await self.kv.watchall()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._follow(ready))
        await ready

    async def _follow(self, ready: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        async for entry in self._watcher:
            if entry is None:
                loop.call_later(SETTLE_SECONDS, lambda: ready.done() or ready.set_result(None))
                continue
            try:
                self.apply(entry)
            except Exception:
                log.exception("cannot apply KV entry %s of %s", entry.key, entry.bucket)

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
        if self._watcher is not None:
            try:
                await self._watcher.stop()
            except Exception:  # the connection may already be closed
                pass
