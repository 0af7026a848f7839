"""`Recycler`: replacing a node's drainable actors with fresh ones, one at a time — when an
actor's ``time_to_drain`` is up, or the oldest one while the machine's memory is over
``high_mem_watermark`` (the original's memory recycling)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from beach.client.runner import Background
from beach.config import Config
from beach.state.directory import DirectoryView
from beach.state.records import ActorEntry
from beach.wire import Reply
from nodeagent import health

log = logging.getLogger("beach.nodeagent")

RECYCLE_CHECK = 1.0  # how often the agent looks for actors due
MEMORY_RECYCLE_PERIOD = 10.0  # at most one actor recycled for memory per this many seconds


class Recycler:
    """Recycles the drainable actors of node ``node_id`` through ``replace(uid)`` (the agent's
    replacement: the new actor first, then the old one leaves and stops gracefully)."""

    def __init__(self, config: Config, node_id: str, view: DirectoryView,
                 replace: Callable[[str], Awaitable[Reply]], background: Background) -> None:
        self.config = config
        self.node_id = node_id
        self.view = view
        self.replace = replace
        self.background = background
        self._recycling: set[str] = set()
        self._memory_recycled = 0.0

    async def recycle_due(self) -> None:
        """Start recycling the next actor that is due, if any (one at a time: a rolling restart)."""
        now = time.time()
        mine = sorted((a for a in self.view.actors.values()
                       if a.node == self.node_id and a.is_drainable and a.uid not in self._recycling),
                      key=lambda a: a.started)
        due = [a for a in mine if a.time_to_drain and now > a.started + a.time_to_drain]
        if (mine and now - self._memory_recycled > MEMORY_RECYCLE_PERIOD
                and health.sample()["mem"] >= self.config.high_mem_watermark):
            self._memory_recycled = now
            log.warning("memory at or over %s%%: recycling actor %s", self.config.high_mem_watermark, mine[0].uid)
            due.insert(0, mine[0])
        for actor in due[:1]:
            self._recycling.add(actor.uid)
            self.background.start(self.recycle(actor))

    async def recycle(self, actor: ActorEntry) -> None:
        """Replace one drainable actor whose time is up with a fresh one."""
        try:
            ok, error, data = await self.replace(actor.uid)
            if ok:
                log.info("recycled actor %s as %s", actor.uid, data["uid"])
            elif not data.get("gone"):
                log.error("could not recycle actor %s: %s", actor.uid, error)
        finally:
            self._recycling.discard(actor.uid)
