"""`ReplyCache`: run a request at most once per request id (opt-in, ``reply_cache = N`` on the
actor class).

A caller retries with the same request id (a timeout, a lost reply): an actor whose requests
must not run twice keeps its last ``N`` replies, so a retry of a request that already ran gets
the first run's reply, and a retry of one still running waits for it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from beach import wire

Result = wire.Reply | None
"""What serving a request gives: its reply, or None when there is none to send (the caller has
given up)."""


class ReplyCache:
    """The last ``size`` replies by request id, and the runs in progress."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._replies: OrderedDict[str, Result] = OrderedDict()
        self._running: dict[str, asyncio.Future[Result]] = {}

    async def run_once(self, req_id: str, run: Callable[[], Awaitable[Result]]) -> Result:
        """``await run()`` unless request ``req_id`` ran already (its reply) or is running (wait
        for that run's reply)."""
        if req_id in self._replies:
            return self._replies[req_id]
        running = self._running.get(req_id)
        if running is not None:
            result = await asyncio.shield(running)
            if result is not None:
                return result
            # the first run expired before it started: this retry still has time of its own
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._running[req_id] = future
        result = None
        try:
            result = await run()
        finally:
            if self._running.get(req_id) is future:
                del self._running[req_id]
            future.set_result(result)
            if result is not None:
                self._replies[req_id] = result
                while len(self._replies) > self.size:
                    self._replies.popitem(last=False)
        return result
