"""`SupervisionPane`: supervised actors (desired against running) and patrol specs."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label

from beach.console.live import Live, component_style
from beach.console.text import one_line, short
from beach.console.widgets.live_table import Column, LiveTable

if TYPE_CHECKING:
    from beach.state.model import ClusterModel

SUPERVISED = (Column("sid", "sid"), Column("actor", "actor"), Column("categories", "categories"),
              Column("state", "state"), Column("running", "running"), Column("restarts", "restarts"),
              Column("error", "last error"))
PATROLS = (Column("owner", "owner"), Column("realm", "realm"), Column("entry", "entry"), Column("actor", "actor"),
           Column("category", "category"), Column("count", "running / target"))


class SupervisionPane(Vertical, Live):
    """Two tables: every actor started with ``restart=`` (its state, whether its current incarnation
    runs, its restarts and last error) and every patrol entry (how many run against its target)."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"desired", "actors", "nodes"})
    COMPONENT_CLASSES: ClassVar[set[str]] = {"supervision-pane--bad", "supervision-pane--good",
                                             "supervision-pane--other"}

    def compose(self) -> ComposeResult:
        """Each table under its title, with a line for when it is empty."""
        yield Label("Supervised actors", classes="pane-title")
        yield Label("None: actors started with restart='on-failure' or 'always' show here.",
                    id="supervised-empty", classes="empty")
        yield LiveTable(SUPERVISED, id="supervised", cursor=False)
        yield Label("Patrols", classes="pane-title")
        yield Label("None: 'beach patrol apply CONFIG SPEC' keeps declared numbers of actors running.",
                    id="patrols-empty", classes="empty")
        yield LiveTable(PATROLS, id="patrols", cursor=False)

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show the desired state against what runs."""
        bad, good = self._style("bad"), self._style("good")
        state_style = {"running": good, "failed": bad}  # any other state (waiting for its node, ...) stands out
        supervised = {
            s["sid"]: [short(s["sid"]), f"{s['realm']}/{s['name']}", _joined(s["categories"]),
                       Text(str(s["state"]), style=state_style.get(s["state"], self._style("other"))),
                       Text("yes" if s["running"] else "no", style=good if s["running"] else bad),
                       Text(str(s["restarts"]), justify="right"), one_line(s["last_error"] or "")]
            for s in model.supervised() if s["sid"]}
        patrols = {
            f"{p['owner']}/{e['name']}": [
                p["owner"], p["realm"] or "-", e["name"], e["actor"] or "-", _joined(e["category"]),
                Text(f"{e['running']} / {e['target'] if e['target'] is not None else '?'}",
                     style=good if e["running"] == e["target"] else bad)]
            for p in model.patrols() for e in p["entries"]}
        for name, rows in (("supervised", supervised), ("patrols", patrols)):
            self.query_one(f"#{name}", LiveTable).sync(rows)
            self.query_one(f"#{name}", LiveTable).display = bool(rows)
            self.query_one(f"#{name}-empty", Label).display = not rows

    def _style(self, name: str) -> Style:
        return component_style(self, f"supervision-pane--{name}")


def _joined(categories: object) -> str:
    """A category, or a list of them, as text."""
    if isinstance(categories, (list, tuple)):
        return ", ".join(map(str, categories)) or "-"
    return str(categories) if categories else "-"
