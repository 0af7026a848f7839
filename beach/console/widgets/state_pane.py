"""`StatePane`: the sizes of actor state — keys and bytes per category — and of beach's buckets."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label

from beach.console.live import Live
from beach.console.widgets.live_table import Column, LiveTable
from beach.output import size

if TYPE_CHECKING:
    from beach.state.model import ClusterModel

CATEGORIES = (Column("realm", "realm"), Column("category", "category"), Column("keys", "keys"),
              Column("bytes", "bytes"), Column("actors", "actors"))
BUCKETS = (Column("bucket", "bucket"), Column("bytes", "bytes"), Column("messages", "messages"))
WAITING = "No sizes yet: the node holding the supervisor lease sends them every few seconds."
NONE = "No actor keeps state yet ('self.state' in an actor; 'beach state CONFIG CATEGORY' lists the keys)."


class StatePane(Vertical, Live):
    """Two tables: each category's actor state (its keys, their stored bytes, its live actors: a
    category whose actors are gone keeps its state) and each of beach's buckets and streams."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"state", "actors"})

    def compose(self) -> ComposeResult:
        """Each table under its title, with a line for when it is empty."""
        yield Label("Actor state", classes="pane-title")
        yield Label(WAITING, id="state-empty", classes="empty")
        yield LiveTable(CATEGORIES, id="state-categories", cursor=False)
        yield Label("Buckets", classes="pane-title")
        yield LiveTable(BUCKETS, id="state-buckets", cursor=False)

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show the latest sizes."""
        state = model.state()
        categories = {f"{c['realm']}/{c['category']}": [
            c["realm"], c["category"], Text(str(c["keys"]), justify="right"), Text(size(c["bytes"]), justify="right"),
            Text(str(c["actors"]), justify="right")] for c in state["categories"]}
        buckets = {b["name"]: [b["name"], Text(size(b["bytes"]), justify="right"),
                               Text(str(b["messages"]), justify="right")] for b in state["buckets"]}
        for name, rows in (("categories", categories), ("buckets", buckets)):
            table = self.query_one(f"#state-{name}", LiveTable)
            table.sync(rows)
            table.display = bool(rows)
        empty = self.query_one("#state-empty", Label)
        empty.update(WAITING if state["updated"] is None else NONE)
        empty.display = not categories
