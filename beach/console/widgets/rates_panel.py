"""`RatesPanel`: requests per second of each realm and actor class, over the last minutes; and per
category its latency (p50, p99) and error rate over the last 10 seconds, with its p99 over the
last minutes."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.widgets import Static

from beach.console.live import Live, component_style
from beach.console.text import duration, recent, spark, window
from beach.state.model import FINE_POINTS

if TYPE_CHECKING:
    from beach.state.model import ClusterModel, Series

SPARK_SECONDS = float(FINE_POINTS)
NAME_WIDTH = 24
VALUE_WIDTH = 9


class RatesPanel(Static, Live):
    """One sparkline per realm, and under it one per actor class of the realm (busiest first), each
    scaled to its own peak (written beside it), over up to the last 10 minutes; then a line per
    category that served requests: p50, p99, error rate, and a sparkline of its p99."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"tick"})
    COMPONENT_CLASSES: ClassVar[set[str]] = {"rates-panel--title", "rates-panel--realm", "rates-panel--class",
                                             "rates-panel--spark", "rates-panel--muted"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._model: ClusterModel | None = None
        self._width = 0

    def on_resize(self, event: events.Resize) -> None:
        """Fit the sparklines to the new width."""
        if self._model is not None and event.size.width != self._width:
            self.show_model(self._model, set())

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show the rates as the model has them now."""
        self._model = model
        self._width = self.size.width
        if not model.realm_rps:
            self.update(Group(Text("requests per second", style=self._style("title")),
                              Text("No actors yet.", style=self._style("muted"))))
            return
        width = max(0, self.content_size.width - NAME_WIDTH - 2 * VALUE_WIDTH - 3)
        # one time scale for every line: that of the realm seen longest
        seconds = max(window(recent(s, SPARK_SECONDS), SPARK_SECONDS, width) for s in model.realm_rps.values())
        title = Text.assemble(("requests per second", self._style("title")),
                              (f"  last {duration(seconds)}, each line scaled to its own peak", self._style("muted")))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=NAME_WIDTH, no_wrap=True, overflow="ellipsis")
        grid.add_column(width=VALUE_WIDTH, justify="right", no_wrap=True)
        grid.add_column(no_wrap=True, style=self._style("spark"))
        grid.add_column(width=VALUE_WIDTH, no_wrap=True, style=self._style("muted"))
        for realm, series in sorted(model.realm_rps.items()):
            self._row(grid, Text(realm, style=self._style("realm")), series, seconds, width)
            classes = [(name, s) for name, s in model.class_rps.items() if name.startswith(f"{realm}/")]
            for name, s in sorted(classes, key=lambda item: -(item[1].last or 0.0)):
                self._row(grid, Text(f"  {name.split('/', 1)[1]}", style=self._style("class")), s, seconds, width)
        self.update(Group(title, grid, *self._latency(model, seconds)))

    def _latency(self, model: ClusterModel, seconds: float) -> list[Table | Text]:
        """Each category's p50, p99 and error rate now, and its p99 over the time scale of the rates."""
        figures = model.category_figures()
        if not figures:
            return []
        width = max(0, self.content_size.width - NAME_WIDTH - 3 * VALUE_WIDTH - 4)
        title = Text.assemble(("\nlatency and errors per category", self._style("title")),
                              ("  p50 · p99 · failed, last 10 s; the line: p99", self._style("muted")))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=NAME_WIDTH, no_wrap=True, overflow="ellipsis")
        for _ in range(3):
            grid.add_column(width=VALUE_WIDTH, justify="right", no_wrap=True)
        grid.add_column(no_wrap=True, style=self._style("spark"))
        for name, now in figures.items():
            points = recent(model.category_p99[name], seconds) if name in model.category_p99 else []
            peak = max((v for _, v in points), default=0.0)
            errors = now["errors"]
            grid.add_row(Text(name, style=self._style("class")), _ms(now["p50"]), _ms(now["p99"]),
                         Text("–" if errors is None else f"{errors:.1%}",
                              style="bold red" if errors else self._style("muted")),
                         spark(points, seconds, width, top=max(peak, 0.001)))
        return [title, grid]

    def _row(self, grid: Table, name: Text, series: Series, seconds: float, width: int) -> None:
        points = recent(series, seconds)
        peak = max((v for _, v in points), default=0.0)
        last = points[-1][1] if points else 0.0
        grid.add_row(name, f"{last:.1f}/s", spark(points, seconds, width, top=max(peak, 1.0)),
                     f"peak {peak:.0f}")

    def _style(self, name: str) -> Style:
        return component_style(self, f"rates-panel--{name}")


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f} ms"
