"""The command palette's beach commands (Ctrl+P): actions, panes, realms, requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider


class Command(NamedTuple):
    """One palette entry: what it says, its help line, and what it runs."""

    title: str
    help: str
    run: Callable[[], Any]


class Palette(Protocol):
    """What the provider asks of the app (`beach.console.app.BeachConsole`)."""

    def palette_commands(self) -> Iterator[Command]: ...


class BeachCommands(Provider):
    """The command palette provider for `BeachConsole` (its `palette_commands`)."""

    async def discover(self) -> Hits:
        """Every command, before anything is typed."""
        for command in cast(Palette, self.app).palette_commands():
            yield DiscoveryHit(command.title, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        """The commands that match what is typed, best first."""
        matcher = self.matcher(query)
        for command in cast(Palette, self.app).palette_commands():
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.run, text=command.title, help=command.help)
