"""`LogsPane`: the cluster's live log lines, filtered by realm, category and level."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Input, RichLog, Select

from beach.console.live import Live, component_style
from beach.logs import LogLine, format_line

if TYPE_CHECKING:
    from beach.state.model import ClusterModel

SHOWN = 500  # lines kept on screen (the model keeps its own, longer, tail)
LEVELS = (("debug", logging.DEBUG), ("info", logging.INFO), ("warning", logging.WARNING),
          ("error", logging.ERROR), ("critical", logging.CRITICAL))
TIME_CELLS = 19   # format_line starts with 'YYYY-mm-dd HH:MM:SS', then the level in 8 cells
LEVEL_CELLS = 8


class LogsPane(Vertical, Live):
    """The lines actors log (and, behind the switch, beach's own), newest at the bottom, as they come.

    New lines are appended; changing a filter redraws the pane from the model's tail.
    """

    PARTS: ClassVar[frozenset[str]] = frozenset({"logs", "actors"})
    COMPONENT_CLASSES: ClassVar[set[str]] = {"logs-pane--time", "logs-pane--debug", "logs-pane--info",
                                             "logs-pane--warning", "logs-pane--error", "logs-pane--sys"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._model: ClusterModel | None = None
        self._realms: list[str] = []
        self._last: LogLine | None = None  # the newest line shown

    def compose(self) -> ComposeResult:
        """The filters, then the lines."""
        with Horizontal(id="logs-filters"):
            yield Select[str]([], prompt="every realm", id="logs-realm")
            yield Input(placeholder="category", id="logs-category")
            yield Select[int]([(name, value) for name, value in LEVELS], value=logging.INFO, allow_blank=False,
                              id="logs-level")
            yield Checkbox("beach's own", False, id="logs-sys", tooltip="Show beach's own warnings and errors too")
        yield RichLog(max_lines=SHOWN, wrap=True, markup=False, highlight=False, auto_scroll=True, id="logs-lines")

    @property
    def with_system(self) -> bool:
        """True when beach's own lines are shown too."""
        return self.query_one("#logs-sys", Checkbox).value

    def toggle_system(self) -> None:
        """Show or hide beach's own lines."""
        self.query_one("#logs-sys", Checkbox).toggle()

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Append the lines that came since the last call (all of them after a filter change)."""
        self._model = model
        realms = list(model.realms())
        if realms != self._realms:
            self._realms = realms
            self._offer_realms(realms)
        lines = model.logs(**self._filters(), limit=SHOWN)
        log = self.query_one("#logs-lines", RichLog)
        start = 0
        if self._last is not None:
            # lines are the model's own dicts: the one shown last is found by identity
            start = next((i + 1 for i in range(len(lines) - 1, -1, -1) if lines[i] is self._last), 0)
            if start == 0:
                log.clear()
        width = log.scrollable_content_region.width or None  # wrap at the pane's width, not the terminal's
        for line in lines[start:]:
            log.write(self._line_text(line), width=width)
        if lines:
            self._last = lines[-1]

    def _filters(self) -> dict[str, Any]:
        realm = self.query_one("#logs-realm", Select).value
        category = self.query_one("#logs-category", Input).value.strip()
        return {"realm": realm if isinstance(realm, str) else None, "category": category or None,
                "level": self.query_one("#logs-level", Select).value, "kind": None if self.with_system else "app"}

    def _offer_realms(self, realms: list[str]) -> None:
        select = self.query_one("#logs-realm", Select)
        chosen = select.value
        with self.prevent(Select.Changed):
            select.set_options([(realm, realm) for realm in realms])
            if chosen in realms:
                select.value = chosen

    @on(Select.Changed)
    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _filter_changed(self, event: Any) -> None:
        event.stop()
        self._last = None
        self.query_one("#logs-lines", RichLog).clear()
        if self._model is not None:
            self.show_model(self._model, {"logs"})

    def _line_text(self, line: LogLine) -> Text:
        text = Text(format_line(line))
        levelno = line.levelno
        name = "debug" if levelno < logging.INFO else "info" if levelno < logging.WARNING else \
            "warning" if levelno < logging.ERROR else "error"
        text.stylize(self._style("time"), 0, TIME_CELLS)
        text.stylize(self._style(name), TIME_CELLS + 1, TIME_CELLS + 1 + LEVEL_CELLS)
        if line.kind != "app":
            text.stylize(self._style("sys"), TIME_CELLS + 1 + LEVEL_CELLS)
        return text

    def _style(self, name: str) -> Style:
        return component_style(self, f"logs-pane--{name}")
