"""`ActorTree`: realms → categories → actors, kept live without losing the person's place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from beach.console.live import Live, component_style
from beach.console.messages import Pick, Picked
from beach.console.text import short

if TYPE_CHECKING:
    from beach.state.model import ClusterModel


class ActorTree(Tree[Pick], Live):
    """Every realm, its categories and, under each category, its actors (an actor with several
    categories shows under each). Nodes are added, relabelled and removed in place, so what is
    expanded and where the cursor is survive every change; `Picked` tells the app what the cursor is
    on. An actor whose node is gone disappears; if the cursor was on it, it moves up to its category."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"actors", "stats", "desired", "realm"})
    COMPONENT_CLASSES: ClassVar[set[str]] = {"actor-tree--muted", "actor-tree--current", "actor-tree--hot",
                                             "actor-tree--saturated", "actor-tree--restarts"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "app.stacks", "Stacks", tooltip="The Python stacks of the actor's process"),
        Binding("x", "app.stop", "Stop", tooltip="Stop the actor, or every actor of the category"),
        Binding("plus", "app.add_category", "+Cat", key_display="+", tooltip="Add a category to the actor"),
        Binding("minus", "app.remove_category", "-Cat", key_display="-",
                tooltip="Remove a category from the actor"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("cluster", id=id)
        self.show_root = False
        self.guide_depth = 3
        self._by_pick: dict[Pick, TreeNode[Pick]] = {}
        self._order: dict[Pick, Any] = {}  # where each node sorts among its siblings
        self._picked: Pick | None = None

    @property
    def pick(self) -> Pick | None:
        """What the cursor is on."""
        node = self.cursor_node
        return node.data if node is not None and node.data in self._by_pick else None

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Bring the tree in line with the model's realms, categories and actors."""
        current = model.client.realm
        wanted: set[Pick] = set()
        for realm in sorted(set(model.realms()) | {current}):
            actors = model.actors(realm)  # sorted by class and uid: new nodes mostly go at the end
            members: dict[str, list[dict[str, Any]]] = {}
            for actor in actors:
                for category in actor["categories"]:
                    members.setdefault(category, []).append(actor)
            realm_pick = Pick(realm)
            wanted.add(realm_pick)
            realm_node = self._ensure(self.root, realm_pick, realm, self._realm_label(realm, current, len(members),
                                                                                          len(actors)))
            for category in sorted(members):
                category_pick = Pick(realm, category)
                wanted.add(category_pick)
                category_node = self._ensure(realm_node, category_pick, category, Text.assemble(
                    category, " ", (str(len(members[category])), self._style("muted"))))
                for actor in members[category]:
                    pick = Pick(realm, category, actor["uid"])
                    wanted.add(pick)
                    self._ensure(category_node, pick, (actor["name"], actor["uid"]), self._actor_label(actor))
        self._prune(wanted)
        if self.cursor_line < 0 and self._by_pick:
            self.cursor_line = 0
        self.call_after_refresh(self._announce)

    def _ensure(self, parent: TreeNode[Pick], pick: Pick, order: Any, label: Text) -> TreeNode[Pick]:
        """The node of ``pick`` under ``parent``, labelled ``label``: added in ``order`` if new."""
        node = self._by_pick.get(pick)
        if node is not None:
            if node.label != label:
                node.set_label(label)
            return node
        siblings = parent.children
        before = None
        if siblings and self._place(siblings[-1]) > order:  # (not after the last one: look for its place)
            before = next(child for child in siblings if self._place(child) > order)
        leaf = pick.uid is not None
        node = parent.add(label, pick, before=before, expand=not leaf, allow_expand=not leaf)
        self._by_pick[pick] = node
        self._order[pick] = order
        return node

    def _place(self, node: TreeNode[Pick]) -> Any:
        """Where ``node`` sorts among its siblings."""
        assert node.data is not None  # every node below the root is added by `_ensure`, with its pick
        return self._order[node.data]

    def _prune(self, wanted: set[Pick]) -> None:
        """Remove what is no longer there; a cursor on a removed node moves to what is left above it."""
        gone = [pick for pick in self._by_pick if pick not in wanted]
        if not gone:
            return
        cursor = self.cursor_node
        landing = None
        if cursor is not None and cursor.data in gone:
            landing = cursor.parent
            while landing is not None and landing.data is not None and landing.data in gone:
                landing = landing.parent
        for pick in gone:
            node = self._by_pick.pop(pick)
            del self._order[pick]
            parent = node.parent
            if parent is not None and (parent.data is None or parent.data in self._by_pick):
                node.remove()  # (its children go with it)
        if landing is not None and landing.data is not None:
            self.move_cursor(landing)

    def _announce(self) -> None:
        """Tell the app if the cursor is now on something else (a change under it, not a key press)."""
        pick = self.pick
        if pick != self._picked:
            self._picked = pick
            self.post_message(Picked(pick))

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Pick]) -> None:
        """The cursor moved: tell the app."""
        event.stop()
        self._announce()

    def _realm_label(self, realm: str, current: str, n_categories: int, n_actors: int) -> Text:
        counts = f"{n_categories} cat · {n_actors} actor{'' if n_actors == 1 else 's'}"
        return Text.assemble((realm, self._style("current") if realm == current else ""), " ",
                             (counts, self._style("muted")))

    def _actor_label(self, actor: dict[str, Any]) -> Text:
        label = Text.assemble(actor["name"], " ", (short(actor["uid"]), self._style("muted")))
        if actor["rps"] >= 0.05:
            label.append(f" {actor['rps']:.1f}/s", self._style("hot"))
        if actor["saturated"]:
            label.append(" FULL", self._style("saturated"))
        if actor["restarts"]:
            label.append(f" ↻{actor['restarts']}", self._style("restarts"))
        return label

    def _style(self, name: str) -> Style:
        return component_style(self, f"actor-tree--{name}")
