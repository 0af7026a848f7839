"""The command palette's beach commands (Ctrl+P): actions, panes, realms, requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from beach.console.text import short

if TYPE_CHECKING:
    from beach.console.app import BeachConsole


class Command(NamedTuple):
    """One palette entry: what it says, its help line, and what it runs."""

    title: str
    help: str
    run: Callable[[], Any]


def commands(app: BeachConsole) -> Iterator[Command]:
    """The palette's entries for the console as it is now: an action that cannot run now is listed
    with the reason as its help, and choosing it says why."""
    pick = app.pick
    actor = app.model.actor(pick.uid) if app.model is not None and pick is not None and pick.uid else None
    name = f"{actor['name']} {short(actor['uid'])}" if actor else "the selected actor"
    target = name if pick is None or pick.uid or not pick.category else f"every actor of {pick.category}"
    entries = (
        ("add_actor", "Add an actor…", "Start an actor: class, categories, strategy, parameters, restart"),
        ("flush", "Flush the cluster…", "Stop every actor in every realm and forget every supervised actor and patrol"),
        ("stop", f"Stop {target}", "Stop it (its in-flight requests finish, its deinit runs)"),
        ("add_category", f"Add a category to {name}…", "It starts receiving that category's requests at once"),
        ("remove_category", f"Remove a category from {name}…", "It stops receiving that category's requests"),
        ("stacks", f"Show the stacks of {name}", "What its process's threads are doing right now"),
    )
    for action, title, description in entries:
        reason = app.unavailable(action)
        yield Command(title, f"unavailable: {reason}" if reason else description, partial(app.palette_run, action))
    for tab, label in app.TABS:
        yield Command(f"Go to {label}", f"Show the {label} pane", partial(app.action_show_tab, tab))
    yield Command("Toggle beach's own log lines", "Show or hide the lines beach itself logs (kind 'sys')",
                  app.action_toggle_system_logs)
    if app.model is None or app.client is None:
        return
    yield Command("Switch realm…", f"Now in realm {app.client.realm}; type any realm name", app.action_switch_realm)
    for realm in app.model.realms():
        if realm != app.client.realm:
            yield Command(f"Switch to realm {realm}", "Requests, stops and new actors then go to this realm",
                          partial(app.set_realm, realm))
    for category in app.model.realms().get(app.client.realm, {}):
        yield Command(f"Send a request to {category}", f"Open the Request pane on {category}",
                      partial(app.request_to, category))


class BeachCommands(Provider):
    """The command palette provider for `BeachConsole` (see `commands`)."""

    async def discover(self) -> Hits:
        """Every command, before anything is typed."""
        for command in commands(cast("BeachConsole", self.app)):
            yield DiscoveryHit(command.title, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        """The commands that match what is typed, best first."""
        matcher = self.matcher(query)
        for command in commands(cast("BeachConsole", self.app)):
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.run, text=command.title, help=command.help)
