"""`BeachConsole`: the live Textual console of a beach cluster."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, TabbedContent, TabPane

from beach import config as beach_config
from beach.client.core import AsyncBeach
from beach.console.commands import BeachCommands, Command
from beach.console.live import ALL_PARTS, Live, shown
from beach.console.messages import ModelChanged, Pick, Picked
from beach.console.screens.add_actor import AddActorScreen
from beach.console.screens.confirm import ConfirmScreen
from beach.console.screens.prompt import PromptScreen
from beach.console.screens.stacks import StacksScreen
from beach.console.text import one_line, short
from beach.console.widgets.actor_detail import ActorDetail
from beach.console.widgets.actor_tree import ActorTree
from beach.console.widgets.logs_pane import LogsPane
from beach.console.widgets.node_detail import NodeDetail
from beach.console.widgets.nodes_table import NodesTable
from beach.console.widgets.rates_panel import RatesPanel
from beach.console.widgets.request_panel import RequestPanel
from beach.console.widgets.state_pane import StatePane
from beach.console.widgets.status_bar import StatusBar
from beach.console.widgets.supervision_pane import SupervisionPane
from beach.errors import BeachError, ClosedError, ConfigError
from beach.output import describe_failure
from beach.security import authority
from beach.state.model import ClusterModel

READ_ONLY = authority.NO_TOKEN
ADMIN_ACTIONS = frozenset({"add_actor", "flush", "stop", "add_category", "remove_category"})
ACTOR_ACTIONS = frozenset({"stacks", "add_category", "remove_category"})
GUARDED_ACTIONS = ADMIN_ACTIONS | ACTOR_ACTIONS
FOCUS = {"cluster": "#nodes", "actors": "#actor-tree", "request": "#req-category", "logs": "#logs-lines",
         "supervision": "#supervised", "state": "#state-categories"}  # what each pane's key focuses


class ActionFailed(Exception):
    """An action the cluster refused or could not do (its message is the reason, in one line)."""


class BeachConsole(App[None]):
    """The console of the cluster named by ``config_path``, working in ``realm``.

    It connects on mount (on Textual's own loop), follows the cluster through one `ClusterModel`
    and updates only the widgets whose part of the model changed, as it changes. A connection that
    cannot be made ends the app with `error` set (see `beach.console.main`). Actions that change the
    cluster need admin rights (the config's ``admin_token`` where the nodes have one, an admin role
    where NATS credentials rule; anyone on an open cluster, which the console says once); without
    them they show disabled, with the reason. Keys that switch panes are ignored while a text field
    has focus (they are typed there).
    """

    TABS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("cluster", "Cluster"), ("actors", "Actors"), ("request", "Request"), ("logs", "Logs"),
        ("supervision", "Supervision"), ("state", "State"))
    """The panes: (id, title), in order; keys 1 to 6 show them."""
    CSS_PATH = "console.tcss"
    TITLE = "beach console"
    COMMANDS = App.COMMANDS | {BeachCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "add_actor", "Add actor", tooltip="Start an actor (needs the config's admin_token)"),
        Binding("f", "flush", "Flush", tooltip="Stop every actor in every realm (needs the config's admin_token)"),
        Binding("r", "switch_realm", "Realm", tooltip="Work in another realm"),
        *(Binding(str(i), f"show_tab('{tab}')", label, show=False) for i, (tab, label) in enumerate(TABS, 1)),
    ]

    def __init__(self, config_path: str | os.PathLike[str], realm: str | None = None) -> None:
        super().__init__()
        self.config_path = os.fspath(config_path)
        self.start_realm = realm
        self.client: AsyncBeach | None = None
        self.model: ClusterModel | None = None
        self.error: BeachError | None = None
        """Why the console could not connect (it exits then)."""
        self.pick: Pick | None = None
        """What the actors tree's cursor is on."""
        self._live: list[Any] = []  # the `Live` widgets (Widget and Live: no single type says both)

    # ---------------------------------------------------------------- layout and model

    def compose(self) -> ComposeResult:
        """The status line, one tab per pane, the key bindings."""
        yield StatusBar(id="status")
        with TabbedContent(initial="cluster", id="tabs"):
            with TabPane("Cluster", id="cluster"):
                yield NodesTable(id="nodes")
                yield NodeDetail(id="node-detail")
                yield RatesPanel(id="rates")
            with TabPane("Actors", id="actors"), Horizontal(id="actors-split"):
                yield ActorTree(id="actor-tree")
                yield ActorDetail(id="actor-detail")
            with TabPane("Request", id="request"):
                yield RequestPanel(id="request-panel")
            with TabPane("Logs", id="logs"):
                yield LogsPane(id="logs-pane")
            with TabPane("Supervision", id="supervision"):
                yield SupervisionPane(id="supervision-pane")
            with TabPane("State", id="state"):
                yield StatePane(id="state-pane")
        yield Footer()

    def on_mount(self) -> None:
        """Start connecting (in a worker: the console answers keys meanwhile)."""
        self._live = [widget for widget in self.query("*") if isinstance(widget, Live)]
        self.query_one(NodesTable).focus()
        if beach_config.is_url(self.config_path):
            self.query_one(StatusBar).connecting(self.config_path)
            self._connect(self.config_path)
            return
        try:
            config = beach_config.load(self.config_path)
        except BeachError as err:
            self.error = err
            self.exit(return_code=2)
            return
        self.query_one(StatusBar).connecting(", ".join(config.nats.urls))
        self._connect(config)

    @work(exclusive=True, group="connect")
    async def _connect(self, config: beach_config.Config | str) -> None:
        try:
            client = await AsyncBeach.open(config, realm=self.start_realm)
        except ConfigError as err:
            self.error = err
            self.exit(return_code=2)
            return
        except BeachError as err:
            self.error = err
            self.exit(return_code=1)
            return
        model = ClusterModel(client)
        try:
            await model.start()
        except BeachError as err:
            await client.close()
            self.error = err
            self.exit(return_code=1)
            return
        self.client, self.model = client, model
        client.session.lost_listeners.append(self._lost)
        model.listeners.append(self._model_changed)
        notice = client.session.open_notice()
        self.query_one(StatusBar).set_access(self.read_only, notice)
        if notice:  # said once: the status bar keeps it (its tooltip)
            self.notify(notice, title="open cluster", severity="warning" if notice.startswith("WARNING") else
                        "information", timeout=10)
        self.refresh_bindings()
        self._show(set(ALL_PARTS))
        try:  # the sizes of actor state now, not at the lease holder's next push
            await model.refresh_load()
        except BeachError:
            pass

    def _lost(self, reason: str) -> None:
        """The server closed the connection for good: the console would only show a frozen cluster."""
        self.error = ClosedError(f"the NATS server closed the console's connection for good ({reason})")
        self.exit(return_code=1)

    async def on_unmount(self) -> None:
        """Stop following the cluster and disconnect."""
        if self.model is not None:
            self.model.listeners.clear()
            await self.model.stop()
        if self.client is not None:
            await self.client.close()

    def _model_changed(self, parts: set[str]) -> None:
        # the model calls this from its own callback: hand it to the app's message loop
        self.post_message(ModelChanged(set(parts)))

    def on_model_changed(self, message: ModelChanged) -> None:
        """Update the widgets that show what changed (those in view: the others catch up when shown)."""
        if "connection" in message.parts and self.model is not None:
            if self.model.connected:
                self.notify("Connected to NATS again.", title="connection")
            else:
                self.notify("Lost the connection to NATS: reconnecting…", title="connection", severity="error")
        self._show(message.parts)

    def _show(self, parts: set[str]) -> None:
        if self.model is None:
            return
        for widget in self._live:
            if widget.PARTS & parts and shown(widget):
                widget.show_model(self.model, parts)

    @on(TabbedContent.TabActivated)
    def _tab_shown(self) -> None:
        # the widgets of a hidden pane were left alone: bring them up to date now
        self.call_after_refresh(self._show, set(ALL_PARTS))

    @on(Picked)
    def _picked(self, message: Picked) -> None:
        self.pick = message.pick
        self.query_one(ActorDetail).pick = message.pick
        self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#nodes")
    def _node_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.query_one(NodeDetail).node_id = event.row_key.value

    # ---------------------------------------------------------------- what may run

    @property
    def admin(self) -> bool:
        """True when this console may change the cluster (see `read_only`)."""
        return self.client is not None and self.read_only is None

    @property
    def read_only(self) -> str | None:
        """Why the actions are disabled (no admin token, or NATS credentials without admin rights),
        or None when they are enabled."""
        if self.client is None:
            return READ_ONLY
        return self.client.session.read_only()

    def unavailable(self, action: str) -> str | None:
        """Why ``action`` cannot run now, or None if it can."""
        if action not in GUARDED_ACTIONS:
            return None
        if self.model is None:
            return "not connected to the cluster yet"
        if action in ADMIN_ACTIONS and not self.admin:
            return self.read_only
        pick = self.pick
        if action in ACTOR_ACTIONS and (pick is None or pick.uid is None):
            return "select an actor in the Actors pane first"
        if action == "stop" and (pick is None or pick.kind == "realm"):
            return "select an actor or a category in the Actors pane first"
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Unavailable actions show disabled (None): their keys do nothing. The pane keys do nothing
        while a text field has focus: what is typed there goes there."""
        if action == "show_tab" and isinstance(self.focused, Input):
            return False
        return None if self.unavailable(action) else True

    def palette_commands(self) -> Iterator[Command]:
        """The palette's entries for the console as it is now: an action that cannot run now is listed
        with the reason as its help, and choosing it says why."""
        pick = self.pick
        actor = self.model.actor(pick.uid) if self.model is not None and pick is not None and pick.uid else None
        name = f"{actor['name']} {short(actor['uid'])}" if actor else "the selected actor"
        target = name if pick is None or pick.uid or not pick.category else f"every actor of {pick.category}"
        entries = (
            ("add_actor", "Add an actor…", "Start an actor: class, categories, strategy, parameters, restart"),
            ("flush", "Flush the cluster…",
             "Stop every actor in every realm and forget every supervised actor and patrol"),
            ("stop", f"Stop {target}", "Stop it (its in-flight requests finish, its deinit runs)"),
            ("add_category", f"Add a category to {name}…", "It starts receiving that category's requests at once"),
            ("remove_category", f"Remove a category from {name}…", "It stops receiving that category's requests"),
            ("stacks", f"Show the stacks of {name}", "What its process's threads are doing right now"),
        )
        for action, title, description in entries:
            reason = self.unavailable(action)
            yield Command(title, f"unavailable: {reason}" if reason else description, partial(self.palette_run, action))
        for tab, label in self.TABS:
            yield Command(f"Go to {label}", f"Show the {label} pane", partial(self.action_show_tab, tab))
        yield Command("Toggle beach's own log lines", "Show or hide the lines beach itself logs (kind 'sys')",
                      self.action_toggle_system_logs)
        if self.model is None or self.client is None:
            return
        yield Command("Switch realm…", f"Now in realm {self.client.realm}; type any realm name",
                      self.action_switch_realm)
        for realm in self.model.realms():
            if realm != self.client.realm:
                yield Command(f"Switch to realm {realm}", "Requests, stops and new actors then go to this realm",
                              partial(self.set_realm, realm))
        for category in self.model.realms().get(self.client.realm, {}):
            yield Command(f"Send a request to {category}", f"Open the Request pane on {category}",
                          partial(self.request_to, category))

    async def palette_run(self, action: str) -> None:
        """Run ``action`` from the command palette, or say why it cannot run."""
        reason = self.unavailable(action)
        if reason:
            self.notify(reason, title="unavailable", severity="warning")
        else:
            await self.run_action(action)

    # ---------------------------------------------------------------- actions

    def action_show_tab(self, tab: str) -> None:
        """Show pane ``tab`` and focus its main widget."""
        self.query_one(TabbedContent).active = tab
        self.query_one(FOCUS[tab]).focus()

    def action_toggle_system_logs(self) -> None:
        """Show or hide beach's own log lines."""
        self.query_one(LogsPane).toggle_system()

    def request_to(self, category: str) -> None:
        """Open the request pane on ``category``."""
        self.action_show_tab("request")
        self.query_one(RequestPanel).use_category(category)

    def action_switch_realm(self) -> None:
        """Ask for a realm to work in."""
        if self.model is None or self.client is None:
            return
        self.push_screen(PromptScreen("Work in realm", "a realm name", choices=list(self.model.realms()),
                                      value=self.client.realm, ok="Switch"),
                         lambda realm: self.set_realm(realm) if realm else None)

    def set_realm(self, realm: str) -> None:
        """Work in ``realm``: requests, stops by category and new actors go there."""
        if self.client is None:
            return
        try:
            self.client.setRealm(realm)
        except BeachError as err:
            self.notify(one_line(str(err)), title="realm", severity="error")
            return
        self.notify(f"Now working in realm {realm}.", title="realm")
        self._show({"realm"})

    def action_add_actor(self) -> None:
        """Ask for an actor to start, then start it."""
        assert self.client is not None and self.model is not None
        realm = self.client.realm
        classes = {a["name"] for a in self.model.actors(realm)}
        try:  # the classes of the code directory, when this machine sees it
            classes |= {p.stem for p in Path(self.client.session.config.code_directory, realm).glob("[!_]*.py")}
        except OSError:
            pass

        def spawn(kwargs: dict[str, Any] | None) -> None:
            if kwargs:
                self._act("add actor", self._spawn_actor(kwargs))

        self.push_screen(AddActorScreen(realm, sorted(classes)), spawn)

    async def _spawn_actor(self, kwargs: dict[str, Any]) -> str:
        assert self.client is not None
        response = await self.client.addActor(**kwargs)
        if not response.isSuccess:
            raise ActionFailed(describe_failure(response))
        return f"Started {kwargs['actorName']} {short(response.data['uid'])} on {response.data['node']}."

    def action_flush(self) -> None:
        """Stop every actor of the cluster, after a confirmation."""

        def flush(yes: bool | None) -> None:
            if yes:
                self._act("flush", self._flush_cluster())

        self.push_screen(ConfirmScreen("Flush the whole cluster?", "Every actor on every node, in every realm, "
                                       "stops; supervised actors and patrol specs are forgotten (actor state "
                                       "is kept).", yes="Flush"), flush)

    async def _flush_cluster(self) -> str:
        assert self.client is not None
        if not await self.client.flush():
            raise ActionFailed("not every node flushed (see the Logs pane, with beach's own lines)")
        return "Flushed: every actor stopped."

    def action_stop(self) -> None:
        """Stop the selected actor, or every actor of the selected category, after a confirmation."""
        assert self.model is not None and self.pick is not None
        pick = self.pick
        if pick.uid is not None:
            uids, question = [pick.uid], f"Stop actor {short(pick.uid)}?"
        else:
            uids = [a["uid"] for a in self.model.actors(pick.realm, pick.category)]
            question = f"Stop the {len(uids)} actor(s) of {pick.category} in realm {pick.realm}?"

        def stop(yes: bool | None) -> None:
            if yes:
                self._act("stop", self._stop_actors(uids))

        self.push_screen(ConfirmScreen(question, "In-flight requests finish, deinit runs; a supervised actor "
                                       "is not restarted.", yes="Stop"), stop)

    async def _stop_actors(self, uids: list[str]) -> str:
        assert self.client is not None
        response = await self.client.stopActors(withId=uids)
        if not response.isSuccess:
            raise ActionFailed(describe_failure(response))
        stopped, missing = response.data["stopped"], response.data["not_found"]
        return f"Stopped {len(stopped)} actor(s)" + (f"; {len(missing)} were already gone." if missing else ".")

    def action_add_category(self) -> None:
        """Ask for a category to add to the selected actor."""
        assert self.pick is not None and self.pick.uid is not None
        uid = self.pick.uid

        def add(category: str | None) -> None:
            if category:
                self._act("add category", self._recategorize(True, uid, category))

        self.push_screen(PromptScreen(f"Add a category to actor {short(uid)}", "a/b", ok="Add"), add)

    def action_remove_category(self) -> None:
        """Ask which category to take from the selected actor."""
        assert self.pick is not None and self.pick.uid is not None and self.model is not None
        uid = self.pick.uid
        actor = self.model.actor(uid)

        def remove(category: str | None) -> None:
            if category:
                self._act("remove category", self._recategorize(False, uid, category))

        self.push_screen(PromptScreen(f"Remove a category from actor {short(uid)}", "a/b",
                                      choices=actor["categories"] if actor else [], value=self.pick.category or "",
                                      ok="Remove"), remove)

    async def _recategorize(self, add: bool, uid: str, category: str) -> str:
        assert self.client is not None
        if add:
            if not await self.client.addToCategory(uid, category):
                raise ActionFailed(f"actor {short(uid)} did not take category {category} (is it still running?)")
            return f"Actor {short(uid)} is now in {category} too."
        if not await self.client.removeFromCategory(uid, category):
            raise ActionFailed(f"actor {short(uid)} is not in category {category}")
        return f"Actor {short(uid)} left {category}."

    def action_stacks(self) -> None:
        """Show the stacks of the selected actor's process."""
        assert self.client is not None and self.model is not None and self.pick is not None
        uid = self.pick.uid
        assert uid is not None
        actor = self.model.actor(uid)
        title = f"{actor['realm']}/{actor['name']}" if actor else "actor"
        self.push_screen(StacksScreen(self.client, uid, title))

    @work(group="actions")
    async def _act(self, what: str, work: Awaitable[str]) -> None:
        """Run an action's coroutine; its outcome becomes a notification."""
        try:
            self.notify(await work, title=what)
        except (ActionFailed, BeachError) as err:
            self.notify(one_line(str(err)), title=f"{what} failed", severity="error")

