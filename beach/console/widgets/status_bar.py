"""`StatusBar`: the line at the top — connected or not, the realm, the cluster's counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from beach.console.live import Live

if TYPE_CHECKING:
    from beach.state.model import ClusterModel


PLURALS = {"nodes": "node", "actors": "actor", "realms": "realm", "categories": "category"}


class StatusBar(Horizontal, Live):
    """``● connected  global │ 2 nodes · 5 actors · 12.3 req/s · 1 realm · 3 categories`` (the realm
    first, the counters in order of importance, cut at the right on a narrow terminal) and, on the
    right, ``admin`` or why actions are disabled. While NATS is unreachable the bar turns to
    ``disconnected`` (class ``-disconnected``) until the connection comes back by itself."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"connection", "nodes", "actors", "stats", "tick", "realm"})

    def compose(self) -> ComposeResult:
        """The connection state, the counters and the access mode."""
        yield Label("○ connecting", id="status-connection")
        yield Label("", id="status-counters")
        yield Label("", id="status-access")

    def connecting(self, where: str) -> None:
        """Say where the console is connecting to (before the model exists)."""
        self.query_one("#status-connection", Label).update("○ connecting")
        self.query_one("#status-counters", Label).update(f"to {where} …")

    def set_access(self, read_only: str | None, notice: str | None = None) -> None:
        """Show on the right ``admin`` (``admin (open cluster)`` with an open-cluster ``notice``, in
        full in its tooltip), or (short, the whole reason in its tooltip) why actions are disabled:
        ``read_only``."""
        access = self.query_one("#status-access", Label)
        if read_only is None:
            access.update("admin (open cluster)" if notice else "admin")
            access.tooltip = notice
        else:
            access.update(read_only.split(":")[0] + (": no admin_token" if "admin_token" in read_only
                                                     else ": no admin rights"))
            access.tooltip = read_only
        access.set_class(read_only is not None, "-read-only")
        access.set_class(read_only is None and notice is not None and notice.startswith("WARNING"), "-exposed")

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show the connection, the counters and (the nodes' entries say whether the cluster is
        open) the access mode."""
        if "nodes" in parts:
            session = model.client.session
            self.set_access(session.read_only(), session.open_notice())
        summary = model.summary()
        connected = bool(summary["connected"])
        self.set_class(not connected, "-disconnected")
        self.query_one("#status-connection", Label).update("● connected" if connected else "✖ DISCONNECTED")
        realm = model.client.realm
        if connected:
            count = {k: f"{summary[k]} {one if summary[k] == 1 else k}" for k, one in PLURALS.items()}
            text = (f"{realm} │ {count['nodes']} · {count['actors']} · {summary['rps']:.1f} req/s · "
                    f"{count['realms']} · {count['categories']}")
        else:
            text = f"{realm} │ NATS unreachable: reconnecting… (what is shown may be stale)"
        self.query_one("#status-counters", Label).update(text)
