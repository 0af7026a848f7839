"""`Live`: what a widget that shows part of the cluster model implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.style import Style
from textual.widget import Widget

if TYPE_CHECKING:
    from beach.state.model import ClusterModel

ALL_PARTS = frozenset({"nodes", "actors", "stats", "logs", "desired", "connection", "tick", "realm", "state"})


class Live:
    """A mixin for widgets that show the cluster model.

    The app calls `show_model` when one of the widget's `PARTS` changed, and when the widget comes
    into view (a widget in a hidden tab is not kept up to date: it catches up when shown).
    """

    PARTS: ClassVar[frozenset[str]] = frozenset()

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Show the model's current state; ``parts`` says what changed since the last call."""
        raise NotImplementedError


def shown(widget: Widget) -> bool:
    """True if ``widget`` and all its ancestors are displayed (not in a hidden tab)."""
    node: object = widget
    while isinstance(node, Widget):
        if not node.display:
            return False
        node = node.parent
    return True


def component_style(widget: Widget, name: str) -> Style:
    """The text style of ``widget``'s component class ``name`` (set in console.tcss), without a
    background: the text lands on whatever is under it (a table's cursor row, a log's surface).

    (Textual's ``partial=True`` style would keep the background out too, but leaves colours such as
    ``$text-muted``, which are blended with the background, unresolved.)
    """
    style = widget.get_component_rich_style(name)
    return Style(color=style.color, bold=style.bold, dim=style.dim, italic=style.italic, underline=style.underline,
                 strike=style.strike, reverse=style.reverse)
