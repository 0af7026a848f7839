"""`PromptScreen`: one line of input (a category, a realm), with completion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label


class PromptScreen(ModalScreen[str | None]):
    """Asks for one value; dismisses with it (stripped, never empty), or None when cancelled.
    ``choices`` are offered as completions and listed under the input."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", choices: Sequence[str] = (), value: str = "",
                 ok: str = "OK") -> None:
        super().__init__()
        self._title = title
        self._placeholder = placeholder
        self._choices = list(choices)
        self._value = value
        self._ok = ok

    def compose(self) -> ComposeResult:
        """The title, the input, the choices and two buttons."""
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Input(self._value, placeholder=self._placeholder, id="prompt-input",
                        suggester=SuggestFromList(self._choices) if self._choices else None)
            if self._choices:
                yield Label(" · ".join(self._choices), classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self._ok, variant="primary", id="prompt-ok")
                yield Button("Cancel", id="prompt-cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#prompt-ok")
    def _ok_pressed(self) -> None:
        value = self.query_one("#prompt-input", Input).value.strip()
        if value:
            self.dismiss(value)

    @on(Button.Pressed, "#prompt-cancel")
    def action_cancel(self) -> None:
        """Dismiss with None."""
        self.dismiss(None)
