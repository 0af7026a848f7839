"""`ActorDetail`: what the actors tree's cursor is on — an actor, a category or a realm."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group, RenderableType
from rich.highlighter import JSONHighlighter
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import var
from textual.widgets import Static

from beach.console.live import Live, component_style
from beach.console.messages import Pick
from beach.console.text import duration, short
from beach.output import dumps
from beach.state.model import COUNTERS

if TYPE_CHECKING:
    from beach.state.model import ClusterModel

NBSP = "\u00a0"
HINT = "Move the cursor in the tree to an actor, a category or a realm."


class ActorDetail(VerticalScroll, Live):
    """For an actor: its class, node, process, load (in-flight against its bound, marked when
    saturated), counters, requests per second, restarts, uptime, parameters (private ones masked),
    categories and owner. For a category or a realm: a table of what is in it."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"actors", "stats", "desired", "tick"})
    COMPONENT_CLASSES: ClassVar[set[str]] = {"actor-detail--title", "actor-detail--label", "actor-detail--muted",
                                             "actor-detail--saturated", "actor-detail--gone"}

    pick: var[Pick | None] = var(None)
    """What to show."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._model: ClusterModel | None = None
        self._highlight = JSONHighlighter()

    def compose(self) -> ComposeResult:
        """The body, a Static that scrolls in this container."""
        yield Static(HINT, id="actor-detail-body")

    def watch_pick(self) -> None:
        """Show the new pick, from its top."""
        self.scroll_home(animate=False)
        if self._model is not None:
            self.show_model(self._model, set())

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show `pick` as the model has it now."""
        self._model = model
        pick = self.pick
        if pick is None:
            body: RenderableType = Text(HINT, style=self._style("muted"))
        elif pick.uid is not None:
            body = self._actor(model, pick.uid)
        elif pick.category is not None:
            body = self._category(model, pick.realm, pick.category)
        else:
            body = self._realm(model, pick.realm)
        self.query_one("#actor-detail-body", Static).update(body)

    def _actor(self, model: ClusterModel, uid: str) -> RenderableType:
        actor = model.actor(uid)
        if actor is None:
            return Text(f"Actor {uid} is gone.", style=self._style("gone"))
        grid = self._grid()
        grid.add_row("class", f"{actor['realm']}/{actor['name']}")
        grid.add_row("categories", "\n".join(actor["categories"]) or "-")
        grid.add_row("node", f"{actor['node']} · host {actor['host']} · pid {actor['pid']}")
        grid.add_row("isolated", "yes" if actor["isolated"] else "no")
        load = Text("-" if actor["inflight"] is None else f"{actor['inflight']} / {actor['bound']}")
        if actor["saturated"]:
            load.append("  SATURATED", self._style("saturated"))
        grid.add_row("in-flight", load)
        grid.add_row("req/s", f"{actor['rps']:.1f}")
        grid.add_row("counters", self._counters(actor["counters"]))
        grid.add_row("restarts", f"{actor['restarts']} (restart: {actor['restart']})")
        grid.add_row("uptime", duration(actor["uptime"]))
        grid.add_row("owner", actor["owner"] or "-")
        grid.add_row("code", f"version {actor['version']} (deployed)" if actor.get("version") else "code directory")
        grid.add_row("parameters", self._highlight(Text(dumps(actor["params"]))) if actor["params"] else "{}")
        if actor["resources"]:
            grid.add_row("resources", self._highlight(Text(dumps(actor["resources"]))))
        grid.add_row("uid", actor["uid"])
        return Group(Text(f"{actor['name']} {short(uid)}", style=self._style("title")), grid)

    def _counters(self, counters: dict[str, Any]) -> Text:
        """``1056 processed · 0 busy · ...``, the zeros muted (they wrap to the pane's width)."""
        if not counters:
            return Text("no load figures yet", style=self._style("muted"))
        text = Text()
        for i, name in enumerate(COUNTERS):
            value = counters.get(name, 0)
            # no-break spaces inside a counter: lines wrap between counters, never within one
            text.append(f"{' · ' if i else ''}{value}{NBSP}{name.replace('_', NBSP)}",
                        "" if value else self._style("muted"))
        return text

    def _category(self, model: ClusterModel, realm: str, category: str) -> RenderableType:
        actors = model.actors(realm, category)
        table = Table(box=None, header_style=self._style("label"), pad_edge=False, expand=False)
        for column in ("actor", "node", "in-flight", "req/s", "served", "up"):
            table.add_column(column, no_wrap=True, justify="left" if column in ("actor", "node") else "right")
        for a in actors:
            inflight = Text("-" if a["inflight"] is None else f"{a['inflight']}/{a['bound']}",
                            style=self._style("saturated") if a["saturated"] else "")
            table.add_row(f"{a['name']} {short(a['uid'])}", a["node"], inflight, f"{a['rps']:.1f}",
                          str(a["counters"].get("processed", "-")), duration(a["uptime"]))
        count = f"  realm {realm} · {len(actors)} actor(s), with those of the categories under it"
        title = Text.assemble((category, self._style("title")), (count, self._style("muted")))
        return Group(title, table)

    def _realm(self, model: ClusterModel, realm: str) -> RenderableType:
        actors = model.actors(realm)
        categories = model.realms().get(realm, {})
        table = Table(box=None, header_style=self._style("label"), pad_edge=False, expand=False)
        table.add_column("category", no_wrap=True)
        table.add_column("actors", justify="right")
        table.add_column("req/s", justify="right")
        for category, count in categories.items():
            rps = sum(a["rps"] for a in actors if category in a["categories"])
            table.add_row(category, str(count), f"{rps:.1f}")
        title = Text.assemble((f"realm {realm}", self._style("title")),
                              (f"  {len(categories)} categories · {len(actors)} actors", self._style("muted")))
        if not actors:
            return Group(title, Text("No actors in this realm.", style=self._style("muted")))
        return Group(title, table)

    def _grid(self) -> Table:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style=self._style("label"), no_wrap=True)
        grid.add_column()
        return grid

    def _style(self, name: str) -> Style:
        return component_style(self, f"actor-detail--{name}")
