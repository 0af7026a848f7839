"""`NodeDetail`: everything about the node under the nodes table's cursor."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.reactive import var
from textual.widgets import Static

from beach.console.live import Live, component_style
from beach.console.text import bar, duration, level, meter, recent, size, window
from beach.state.model import FINE_POINTS

if TYPE_CHECKING:
    from beach.state.model import ClusterModel

LABEL_WIDTH = 9
SPARK_SECONDS = float(FINE_POINTS)  # all the fine history the model keeps: the last 10 minutes
METER_EXTRA = 5
SPACED_CORES = 32  # up to this many cores, their bars are spaced out


class NodeDetail(Static, Live):
    """Identity, addresses, wide CPU and memory sparklines (up to the last 10 minutes, labelled with
    the time they cover), per-core load and the actor host processes of node `node_id`."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"nodes"})
    COMPONENT_CLASSES: ClassVar[set[str]] = {"meter--low", "meter--mid", "meter--high", "node-detail--label",
                                             "node-detail--title"}

    node_id: var[str | None] = var(None)
    """The node shown (None: the first one)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._model: ClusterModel | None = None
        self._width = 0  # the width last drawn for (a new height alone needs no redraw)

    def watch_node_id(self) -> None:
        """Show the newly chosen node."""
        if self._model is not None:
            self.show_model(self._model, set())

    def on_resize(self, event: events.Resize) -> None:
        """Fit the sparklines to the new width."""
        if self._model is not None and event.size.width != self._width:
            self.show_model(self._model, set())

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show node `node_id` as the model has it now."""
        self._model = model
        nodes = model.nodes()
        node = next((n for n in nodes if n["id"] == self.node_id), nodes[0] if nodes else None)
        if node is None:
            self.update(Text("No node is running: start one with 'beach up CONFIG' or 'python -m nodeagent CONFIG'.",
                             style=self._style("label")))
            return
        self._width = self.size.width
        width = max(0, self.content_size.width - LABEL_WIDTH - 1 - METER_EXTRA)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=LABEL_WIDTH, style=self._style("label"), no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        grid.add_row("addresses", ", ".join(node["addresses"]) or "-")
        for name, series in (("cpu", model.node_cpu), ("mem", model.node_mem)):
            value = node[name]
            points = recent(series.get(node["id"]), SPARK_SECONDS)
            seconds = window(points, SPARK_SECONDS, width)
            grid.add_row(f"{name} {duration(seconds)}", meter(points, seconds, value, width,
                                                               self._style(level(value))))
            cores = [c for c in node["cpu_per_core"] if isinstance(c, (int, float))]
            if name == "cpu" and len(cores) > 1:
                per_core = Text()
                for core in cores:
                    per_core.append(bar(core), self._style(level(core)))
                    if len(cores) <= SPACED_CORES:
                        per_core.append(" ")
                grid.add_row("per core", per_core)
        hosts = " · ".join(f"{host_id} (pid {h.get('pid')}{', isolated' if h.get('isolated') else ''}): "
                           f"{h.get('n_actors', 0)}" for host_id, h in sorted(node["hosts"].items())
                           if isinstance(h, dict))
        grid.add_row("hosts", hosts or "-")
        realms = ", ".join(f"{realm} {n}" for realm, n in sorted(node["actors_by_realm"].items()))
        grid.add_row("actors", f"{node['n_actors']}" + (f" ({realms})" if realms else ""))
        up = duration(time.time() - node["started"]) if isinstance(node["started"], (int, float)) else "-"
        title = Text.assemble((node["id"], self._style("title")))
        title.append(f"  {node['hostname']} · {node['cores']} cores · {size(node['mem_total'])} · pid {node['pid']} · "
                     f"up {up}", self._style("label"))
        self.update(Group(title, grid))

    def _style(self, name: str) -> Style:
        """The style of a component class: a meter level, or one of this widget's parts."""
        key = f"meter--{name}" if name in ("low", "mid", "high") else f"node-detail--{name}"
        return component_style(self, key)
