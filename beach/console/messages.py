"""The console's own messages."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


class ModelChanged(Message):
    """Parts of the cluster model changed (the model's listener posts this, so widgets are updated
    from the app's message loop). ``parts`` holds the model's names ('nodes', 'actors', 'stats',
    'logs', 'desired', 'connection', 'tick') and the console's own 'realm'."""

    def __init__(self, parts: set[str]) -> None:
        super().__init__()
        self.parts = parts


@dataclass(frozen=True)
class Pick:
    """What the actors tree points at: a realm, a category of it, or an actor (found under a category)."""

    realm: str
    category: str | None = None
    uid: str | None = None

    @property
    def kind(self) -> str:
        """``'realm'``, ``'category'`` or ``'actor'``."""
        return "actor" if self.uid else "category" if self.category else "realm"


class Picked(Message):
    """The actors tree's cursor moved to another realm, category or actor (None: to nothing)."""

    def __init__(self, pick: Pick | None) -> None:
        super().__init__()
        self.pick = pick
