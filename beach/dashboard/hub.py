"""`Hub`: the model's change notices, fanned out to every open live stream.

The model calls its listeners (at most every `beach.state.model.NOTIFY_SECONDS`) with the parts that
changed; each stream collects them until it is ready to send, so a slow browser never makes the
model wait and never gets a backlog: only "what changed since you last looked".
"""

from __future__ import annotations

import asyncio

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
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return set()
        self._ready.clear()
        parts, self.parts = self.parts, set()
        return parts


class Hub:
    """Every open stream's `Subscription`; `notify` is a `ClusterModel` listener."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.closed = False

    def subscribe(self) -> Subscription:
        """A new subscription (already told everything changed, so the stream starts complete)."""
        subscription = Subscription()
        if self.closed:
            subscription.add({CLOSING})
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget ``subscription``."""
        self._subscriptions.discard(subscription)

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
