"""`AddActorScreen`: the form for starting an actor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select, Switch

from beach.console.text import one_line
from beach.errors import BeachError, UsageError
from beach.output import parse_mapping
from beach.state.spawn import RESTART_POLICIES, STRATEGIES, SpawnOptions, help_of


class AddActorScreen(ModalScreen[dict[str, Any] | None]):
    """Class name, categories, strategy and its hint, parameters, isolated, restart policy.

    Dismisses with the keyword arguments of `beach.client.core.AsyncBeach.addActor` once they pass its
    own checks (`beach.state.spawn.SpawnOptions`, whose help the fields show), or None when cancelled;
    what is wrong shows in one line.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, realm: str, classes: Sequence[str] = ()) -> None:
        super().__init__()
        self._realm = realm
        self._known_classes = list(classes)

    def compose(self) -> ComposeResult:
        """The form."""
        with Vertical(classes="dialog", id="add-actor"):
            yield Label(f"Add an actor to realm {self._realm}", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Input(placeholder="class, e.g. Pong", id="add-name",
                            suggester=SuggestFromList(self._known_classes) if self._known_classes else None)
                yield Input(placeholder="a/b, c/d", id="add-categories")
            with Horizontal(classes="form-row"):
                yield Select([(f"strategy: {s}", s) for s in STRATEGIES], value="random", allow_blank=False,
                             id="add-strategy")
                yield Input(placeholder=help_of("strategy_hint"), id="add-hint")
            yield Input(placeholder=help_of("parameters"), id="add-parameters")
            with Horizontal(classes="form-row"):
                yield Select([(f"restart: {p}", p) for p in RESTART_POLICIES], value="never", allow_blank=False,
                             id="add-restart")
                yield Switch(False, id="add-isolated")
                yield Label(help_of("isIsolated"), classes="switch-label")
            yield Label("", id="add-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Add", variant="primary", id="add-ok")
                yield Button("Cancel", id="add-cancel")

    def on_mount(self) -> None:
        """Name the fields on their borders; start on the class name."""
        for ident, title in (("add-name", "class"), ("add-categories", "categories"), ("add-hint", "hint"),
                             ("add-parameters", "parameters")):
            self.query_one(f"#{ident}", Input).border_title = title
        self.query_one("#add-name", Input).focus()

    def arguments(self) -> dict[str, Any]:
        """The form as `addActor` keyword arguments; raises `BeachError` naming what is wrong."""
        name = self.query_one("#add-name", Input).value.strip()
        if not name:
            raise UsageError("the actor's class name is missing (a file <code_directory>/<realm>/<Name>.py)")
        categories = [c.strip() for c in self.query_one("#add-categories", Input).value.split(",") if c.strip()]
        parameters = parse_mapping(self.query_one("#add-parameters", Input).value, "parameters")
        kwargs: dict[str, Any] = {
            "actorName": name, "category": categories, "realm": self._realm,
            "strategy": self.query_one("#add-strategy", Select).value,
            "strategy_hint": self.query_one("#add-hint", Input).value.strip() or None,
            "parameters": parameters, "isIsolated": self.query_one("#add-isolated", Switch).value,
            "restart": self.query_one("#add-restart", Select).value,
        }
        SpawnOptions.checked(**kwargs)  # addActor's own checks, here, so that a mistake is fixed in the form
        return kwargs

    @on(Input.Submitted)
    @on(Button.Pressed, "#add-ok")
    def _ok(self) -> None:
        try:
            kwargs = self.arguments()
        except BeachError as err:
            self.query_one("#add-error", Label).update(one_line(str(err)))
            return
        self.dismiss(kwargs)

    @on(Button.Pressed, "#add-cancel")
    def action_cancel(self) -> None:
        """Dismiss with None."""
        self.dismiss(None)
