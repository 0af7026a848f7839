"""`NodesTable`: the live nodes, their load as sparklines, and how many actors each runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events

from beach.console.live import Live, component_style
from beach.console.text import address, level, meter, recent
from beach.console.widgets.live_table import Column, LiveTable

if TYPE_CHECKING:
    from beach.state.model import ClusterModel, Series

SPARK_SECONDS = 180.0   # the table's sparklines: the last 3 minutes
MIN_SPARK, MAX_SPARK = 6, 40
METER_EXTRA = 5         # '100% ' before the bars

COLUMNS = (Column("node", "node"), Column("address", "address"), Column("cpu", "cpu (3 min)"),
           Column("mem", "mem (3 min)"), Column("actors", "actors"), Column("hosts", "hosts"))


class NodesTable(LiveTable, Live):
    """One row per live node (see `beach.state.model.ClusterModel.nodes`); the sparklines take the width
    the other columns leave. The highlighted row's node is detailed by `NodeDetail`."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"nodes"})
    COMPONENT_CLASSES: ClassVar[set[str]] = {"meter--low", "meter--mid", "meter--high"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, id=id)
        self._model: ClusterModel | None = None

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show every live node."""
        self._model = model
        nodes = model.nodes()
        fixed = {n["id"]: [n["id"], address(n), _right(n["n_actors"]), _right(len(n["hosts"]))] for n in nodes}
        width = self._spark_width(fixed.values())
        rows = {n["id"]: [*fixed[n["id"]][:2], self._meter(model.node_cpu.get(n["id"]), n["cpu"], width),
                          self._meter(model.node_mem.get(n["id"]), n["mem"], width), *fixed[n["id"]][2:]]
                for n in nodes}
        self.set_widths({"cpu": width + METER_EXTRA, "mem": width + METER_EXTRA}, rows)
        self.sync(rows)

    def _meter(self, series: Series | None, current: float, width: int) -> Text:
        style = component_style(self, f"meter--{level(current)}")
        return meter(recent(series, SPARK_SECONDS), SPARK_SECONDS, current, width, style)

    def _spark_width(self, rows: Any) -> int:
        """The bars each sparkline gets: what the table's width leaves after the other columns."""
        others = [c for c in COLUMNS if c.key not in ("cpu", "mem")]
        widths = [len(c.label) for c in others]
        for cells in rows:
            widths = [max(w, len(str(cell))) for w, cell in zip(widths, cells, strict=True)]
        padding = 2 * self.cell_padding * len(COLUMNS) + 2  # and the vertical scrollbar
        spare = self.size.width - sum(widths) - padding
        return max(MIN_SPARK, min(MAX_SPARK, spare // 2 - METER_EXTRA))

    def on_resize(self, event: events.Resize) -> None:
        """Give the sparklines the new width."""
        if self._model is not None:
            self.show_model(self._model, set())


def _right(value: object) -> Text:
    return Text(str(value), justify="right")
