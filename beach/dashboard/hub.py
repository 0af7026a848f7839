"""`Hub`: the model's change notices, fanned out to every open live stream.

The model calls its listeners (at most every `beach.state.model.NOTIFY_SECONDS`) with the parts that
changed; each stream collects them until it is ready to send, so a slow browser never makes the
model wait and never gets a backlog: only "what changed since you last looked".

The hub also bounds the streams: at most ``max_streams`` in all and ``per_client`` from one client
address (``dashboard.max_streams``, ``dashboard.max_streams_per_client``); past either, `subscribe`
raises `Full` (the stream is answered 503, and the page polls instead). It also keeps what was
rendered for each page lately (``rendered``), for its other streams to reuse.
"""

from __future__ import annotations

import asyncio
from typing import Any

from beach.config import DashboardConfig

CLOSING = "closing"  # the part a stream hears when the dashboard shuts down


class Subscription:
    """One stream's pending changes."""

    def __init__(self) -> None:
        self.parts: set[str] = set()
        self._ready = asyncio.Event()

    def add(self, parts: set[str]) -> None:
        """Note ``parts`` as changed."""
        self.parts |= parts
        self._ready.set()

    async def next(self, timeout: float) -> set[str]:
        """The parts changed since the last call, once there are some (empty after ``timeout`` s)."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return set()
        self._ready.clear()
        parts, self.parts = self.parts, set()
        return parts


class Full(Exception):
    """No more live streams now (the message says which cap, and its config key)."""


class Hub:
    """Every open stream's `Subscription`; `notify` is a `ClusterModel` listener."""

    def __init__(self, limits: DashboardConfig | None = None) -> None:
        self._subscriptions: dict[Subscription, str] = {}  # → the client address it serves
        self._per_client: dict[str, int] = {}
        self.closed = False
        self.rendered: dict[Any, tuple[float, Any]] = {}  # page → (when, what): shared by its streams
        self.refused = 0  # streams refused at a cap, since the start
        self.limits = limits or DashboardConfig()  # the caps (see the module docs): the config's, once read

    def subscribe(self, client: str = "") -> Subscription:
        """A new subscription for a stream to ``client`` (already told everything changed, so the
        stream starts complete); `Full` past a cap."""
        if len(self._subscriptions) >= self.limits.max_streams:
            self.refused += 1
            raise Full(f"the dashboard has {len(self._subscriptions)} live streams open, its limit "
                       f"(dashboard.max_streams)")
        if self._per_client.get(client, 0) >= self.limits.max_streams_per_client:
            self.refused += 1
            raise Full(f"{client or 'this client'} has {self._per_client[client]} live streams open, the limit for one "
                       f"client (dashboard.max_streams_per_client)")
        subscription = Subscription()
        if self.closed:
            subscription.add({CLOSING})
        self._subscriptions[subscription] = client
        self._per_client[client] = self._per_client.get(client, 0) + 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget ``subscription``."""
        client = self._subscriptions.pop(subscription, None)
        if client is not None:
            left = self._per_client[client] - 1
            if left:
                self._per_client[client] = left
            else:
                del self._per_client[client]

    def notify(self, parts: set[str]) -> None:
        """Tell every stream that ``parts`` changed."""
        for subscription in list(self._subscriptions):
            subscription.add(parts)

    def close(self) -> None:
        """End every stream (the dashboard is stopping: open streams must not hold it up)."""
        self.closed = True
        self.notify({CLOSING})

    def __len__(self) -> int:
        return len(self._subscriptions)
