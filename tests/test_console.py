"""The console (``beach console``) against the real nats-server, real node agents and their actor
processes, driven through Textual's pilot at 100x32: what another client does to the cluster shows
by itself, a request typed in the panel, a node's death, read-only mode, live logs, an actor's
stacks, the add-actor form and a stop, a lost and regained NATS, and the exit codes. Each test that
runs the console saves a screenshot in its tmp_path."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import nats.aio.client
import pexpect
import psutil
import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Collapsible, Input, Label, RichLog, Static, TabbedContent

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.console import BeachConsole, main
from beach.console.app import READ_ONLY
from beach.console.screens.add_actor import AddActorScreen
from beach.console.screens.confirm import ConfirmScreen
from beach.console.screens.stacks import StacksScreen
from beach.console.widgets.actor_tree import ActorTree
from beach.console.widgets.logs_pane import LogsPane
from beach.console.widgets.nodes_table import NodesTable
from beach.console.widgets.status_bar import StatusBar

from .conftest import NodeProcess, free_port, write_config

SIZE = (100, 32)
ESCAPES = re.compile(r"\x1b(\[[0-9;?<>=]*[a-zA-Z]|[()][A-Z0-9]|[=>])")  # what the screen gets between lines
Scenario = Callable[[BeachConsole, Pilot[None]], Coroutine[Any, Any, None]]


def run_console(config: Path, scenario: Scenario, screenshot: Path) -> None:
    """Run the console on ``config`` in a pilot, once it is connected run ``scenario``, and save a
    screenshot (also when the scenario fails: it shows what the console showed)."""

    async def run() -> None:
        app = BeachConsole(config)
        async with app.run_test(size=SIZE) as pilot:
            try:
                await until(pilot, lambda: app.model is not None, what="the console to connect")
                await scenario(app, pilot)
            finally:
                app.save_screenshot(screenshot.name, str(screenshot.parent))

    asyncio.run(run())


async def until(pilot: Pilot[None], predicate: Callable[[], object], timeout: float = 15.0,
                what: str = "condition") -> None:
    """Let the console run until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.1)


def tree_text(app: BeachConsole) -> str:
    """Every label of the actors tree, one a line."""
    tree = app.query_one(ActorTree)
    lines = []
    stack = list(tree.root.children)
    while stack:
        node = stack.pop(0)
        lines.append(str(node.label))
        stack[:0] = list(node.children)
    return "\n".join(lines)


def node_rows(app: BeachConsole) -> set[str]:
    """The node ids the nodes table shows."""
    return {str(key.value) for key in app.query_one(NodesTable).rows}


def text_of(widget: Static | Label) -> str:
    """What a Static or a Label shows, as plain text."""
    return str(widget.content)


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    """Click an input, empty it and type ``text`` as a person would."""
    await pilot.click(selector)
    pilot.app.screen.query_one(selector, Input).value = ""
    await pilot.press(*text)


def test_an_actor_started_elsewhere_appears_by_itself(beach: Beach, config_path: Path, tmp_path: Path) -> None:
    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        await pilot.press("2")  # the Actors pane, before the actor exists
        response = await asyncio.to_thread(beach.addActor, "Pong", "console/pong")
        assert response.isSuccess, response
        uid = response.data["uid"]
        await until(pilot, lambda: uid[:8] in tree_text(app), what="the new actor in the tree")
        assert "console/pong" in tree_text(app)
        assert "1 actor" in text_of(app.query_one("#status-counters", Label))

    run_console(config_path, scenario, tmp_path / "actor-appears.svg")


def rendered(widget: Static) -> str:
    """What a Static shows (any rich renderable), as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


def test_the_cluster_pane_shows_latency_and_error_rate_per_category(beach: Beach, config_path: Path,
                                                                    tmp_path: Path) -> None:
    beach.addActor("Pong", "console/latency")
    beach.addActor("Faulty", "console/failing")

    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        done = threading.Event()

        def traffic() -> None:  # steady: the figures are those of the last seconds
            latency, failing = beach.getActorHandle("console/latency"), beach.getActorHandle("console/failing")
            for _ in range(200):
                assert latency.request("ping").isSuccess
                assert [failing.request(t).isSuccess for t in ("raise", "ok1")] == [False, True]
                if done.wait(0.1):
                    return

        sender = asyncio.create_task(asyncio.to_thread(traffic))
        try:
            rates = app.query_one("#rates", Static)
            lines = lambda: rendered(rates).splitlines()  # noqa: E731
            await until(pilot, lambda: any("global/console/failing" in x and "50.0%" in x for x in lines()),
                        what="the failing category's error rate")
            latency = next(x for x in lines() if "global/console/latency" in x)
            assert re.search(r"global/console/latency\s+\d+\.\d ms\s+\d+\.\d ms\s+0\.0%", latency), latency
        finally:
            done.set()
            await sender

    run_console(config_path, scenario, tmp_path / "latency.svg")


def test_a_request_typed_in_the_panel_shows_its_reply(beach: Beach, config_path: Path, tmp_path: Path) -> None:
    assert beach.addActor("Pong", "console/pong").isSuccess

    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        await pilot.press("3")
        status, reply = app.query_one("#req-status", Label), app.query_one("#req-reply", Static)
        await type_into(pilot, "#req-category", "console/pong")
        await type_into(pilot, "#req-type", "ping")
        await type_into(pilot, "#req-data", "{'a': ")  # not JSON, not a literal: one line, no crash
        await pilot.click("#req-send")
        await until(pilot, lambda: "neither JSON nor a Python literal" in text_of(status), what="the parse error")
        assert "\n" not in text_of(status)
        await type_into(pilot, "#req-data", "{'a': 1}")
        await pilot.click("#req-send")
        await until(pilot, lambda: "success" in text_of(status), what="the reply")
        assert " ms" in text_of(status)
        assert '"echo": {\n        "a": 1\n    }' in text_of(reply)

    run_console(config_path, scenario, tmp_path / "request.svg")


def test_the_state_pane_shows_keys_and_bytes_per_category(beach: Beach, config_path: Path, tmp_path: Path) -> None:
    from beach.console.widgets.live_table import LiveTable

    assert beach.addActor("Counter", "console/counter").isSuccess
    handle = beach.getActorHandle("console/counter")
    for word in ("don't", "café"):
        assert handle.request("add", {"key": word}).isSuccess

    def row(app: BeachConsole) -> list[str] | None:
        table = app.query_one("#state-categories", LiveTable)
        if "global/console/counter" not in {str(k.value) for k in table.rows}:
            return None
        return [str(cell) for cell in table.get_row("global/console/counter")]

    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        await pilot.press("6")
        await until(pilot, lambda: row(app), what="the category's state")
        assert row(app)[2:] == ["2", "2 B", "1"]
        assert await asyncio.to_thread(lambda: handle.request("add", {"key": "river"}).isSuccess)
        await until(pilot, lambda: (row(app) or [])[2:3] == ["3"], what="the new key to be counted")
        assert "KV_beach_state" in {str(k.value) for k in app.query_one("#state-buckets", LiveTable).rows}

    run_console(config_path, scenario, tmp_path / "state.svg")


def test_a_killed_node_disappears_from_the_nodes_pane(node: NodeProcess, config_path: Path, tmp_path: Path) -> None:
    doomed = NodeProcess(config_path, "console-doomed")
    hosts: list[psutil.Process] = []  # its actor hosts (in sessions of their own): they go too
    try:
        async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
            await until(pilot, lambda: "console-doomed" in node_rows(app), timeout=30, what="the new node")
            assert node.node_id in node_rows(app)
            hosts.extend(psutil.Process(doomed.process.pid).children(recursive=True))
            os.killpg(doomed.process.pid, signal.SIGKILL)
            await until(pilot, lambda: "console-doomed" not in node_rows(app), timeout=10,
                        what="the killed node to go")
            assert node.node_id in node_rows(app)

        run_console(config_path, scenario, tmp_path / "node-killed.svg")
    finally:
        if doomed.process.poll() is None:
            os.killpg(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait(10)
        for host in hosts:
            try:
                host.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(hosts, timeout=10)


def test_actions_are_disabled_without_the_admin_token(nats_server: EmbeddedServer, node: NodeProcess,
                                                      tmp_path: Path) -> None:
    read_only = write_config(tmp_path / "ro.yaml", nats_server.url, admin_token=None)

    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        before = {a["uid"] for a in app.model.actors()} if app.model else set()
        assert "read-only" in text_of(app.query_one("#status-access", Label))
        for action in ("add_actor", "flush"):
            assert app.unavailable(action) == READ_ONLY
            assert app.check_action(action, ()) is None  # shown, disabled
        bindings = app.active_bindings
        assert not bindings["n"].enabled and not bindings["f"].enabled
        await until(pilot, lambda: {"add_actor", "flush"} <= {k.action for k in app.query("FooterKey.-disabled")},
                    what="the footer to show them disabled")
        palette = {c.title: c.help for c in app.palette_commands()}
        assert READ_ONLY in palette["Add an actor…"] and READ_ONLY in palette["Flush the cluster…"]
        await app.palette_run("add_actor")  # from the palette: it says why, and does nothing
        await pilot.press("n")
        await pilot.press("f")
        await pilot.pause(0.5)
        assert len(app.screen_stack) == 1, app.screen_stack  # no form, no confirmation
        assert app.model is not None and {a["uid"] for a in app.model.actors()} == before

    run_console(read_only, scenario, tmp_path / "read-only.svg")


def test_a_line_an_actor_logs_shows_in_the_logs_pane(beach: Beach, config_path: Path, tmp_path: Path) -> None:
    text = f"hello from the console test {os.getpid()}"

    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        await pilot.press("4")
        assert app.query_one(LogsPane).with_system is False  # beach's own lines: behind the toggle
        assert (await asyncio.to_thread(beach.addActor, "Chatty", "console/chatty")).isSuccess
        chatty = beach.getActorHandle("console/chatty")
        assert (await asyncio.to_thread(chatty.request, "say", {"text": text}, 10)).isSuccess
        lines = app.query_one("#logs-lines", RichLog)
        await until(pilot, lambda: text in " ".join(" ".join(strip.text.split()) for strip in lines.lines),
                    what="the log line")

    run_console(config_path, scenario, tmp_path / "logs.svg")


def test_the_stacks_of_the_selected_actor_open_in_a_modal(beach: Beach, config_path: Path, tmp_path: Path) -> None:
    response = beach.addActor("Sleeper", "console/sleeper")
    assert response.isSuccess
    uid = response.data["uid"]
    sleeper = beach.getActorHandle("console/sleeper")

    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        # (long enough for a loaded machine to walk the tree and ask for the stacks while it sleeps)
        busy = asyncio.ensure_future(asyncio.to_thread(sleeper.request, "sleep", {"seconds": 8}, 15))
        await pilot.press("2")
        for _ in range(20):  # down the tree to the actor
            if app.pick is not None and app.pick.uid == uid:
                break
            await pilot.press("down")
            await pilot.pause(0.05)
        assert app.pick is not None and app.pick.uid == uid
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StacksScreen) and app.screen.query(Collapsible),
                    what="the stacks")
        first = app.screen.query(Collapsible).first()
        assert "serving 'sleep' (this actor)" in str(first.title), first.title  # the actor's thread first
        assert not first.collapsed
        app.save_screenshot("stacks.svg", str(tmp_path))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, StacksScreen), what="the modal to close")
        assert (await busy).isSuccess

    run_console(config_path, scenario, tmp_path / "after-stacks.svg")


def test_an_actor_added_with_the_form_and_stopped_from_the_tree(beach: Beach, config_path: Path,
                                                               tmp_path: Path) -> None:
    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        assert app.model is not None
        await pilot.press("2", "n")
        await until(pilot, lambda: isinstance(app.screen, AddActorScreen), what="the form")
        await pilot.press(*"Pong")
        await type_into(pilot, "#add-categories", "console/added")
        await type_into(pilot, "#add-parameters", "[1]")  # not a mapping: said in the form, which stays
        await pilot.click("#add-ok")
        await until(pilot, lambda: "must be a mapping" in text_of(app.screen.query_one("#add-error", Label)),
                    what="the form's error")
        await type_into(pilot, "#add-parameters", "{'tag': 'form'}")
        await pilot.click("#add-ok")
        model = app.model
        await until(pilot, lambda: model.actors(category="console/added"), what="the actor to start")
        uid = model.actors(category="console/added")[0]["uid"]
        assert model.actor(uid)["params"] == {"tag": "form"}
        await until(pilot, lambda: uid[:8] in tree_text(app), what="the actor in the tree")
        app.query_one(ActorTree).focus()
        for _ in range(20):
            if app.pick is not None and app.pick.uid == uid:
                break
            await pilot.press("down")
            await pilot.pause(0.05)
        assert app.pick is not None and app.pick.uid == uid
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.click("#confirm-yes")
        await until(pilot, lambda: uid not in tree_text(app) and model.actor(uid) is None, what="the actor to stop")

    run_console(config_path, scenario, tmp_path / "added-and-stopped.svg")


def test_a_lost_nats_shows_as_disconnected_until_it_comes_back(tmp_path: Path) -> None:
    server = EmbeddedServer(free_port(), str(tmp_path / "js"), name="console-reconnect",
                            log_file=str(tmp_path / "nats.log")).start()
    try:
        async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
            connection = app.query_one("#status-connection", Label)
            await until(pilot, lambda: "connected" in text_of(connection), what="connected")
            await asyncio.to_thread(server.stop)
            await until(pilot, lambda: "DISCONNECTED" in text_of(connection), what="the lost connection to show")
            assert app.query_one(StatusBar).has_class("-disconnected")
            app.save_screenshot("disconnected.svg", str(tmp_path))
            await asyncio.to_thread(server.start)  # the same port and store: nats-py reconnects by itself
            await until(pilot, lambda: "DISCONNECTED" not in text_of(connection), timeout=30,
                        what="the connection to come back")
            assert not app.query_one(StatusBar).has_class("-disconnected")

        run_console(write_config(tmp_path / "own.yaml", server.url), scenario, tmp_path / "reconnected.svg")
    finally:
        server.stop()


def test_a_connection_the_server_closes_for_good_ends_the_console_saying_why(nats_server: EmbeddedServer,
                                                                            config_path: Path, tmp_path: Path) -> None:
    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        assert app.client is not None
        # an over-long line, the raw nats-py way (beach's client refuses it): the server closes the connection
        await nats.aio.client.Client.publish(app.client.session.nc, "x" * 5000, b"")
        await until(pilot, lambda: app.return_code == 1, what="the console to end")
        assert "closed the console's connection for good (maximum control line exceeded)" in str(app.error)

    run_console(config_path, scenario, tmp_path / "lost.svg")  # (main() prints app.error, one line)


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("beach: config file not found") and err.count("\n") == 1, err


def test_an_unreachable_nats_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path / "dead.yaml", f"nats://127.0.0.1:{free_port()}")
    child = pexpect.spawn(sys.executable, ["-m", "beach.console", str(config)], encoding="utf-8", timeout=30,
                          dimensions=(24, 80))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1, child.before
    lines = re.findall(r"beach: [^\r\n]*", ESCAPES.sub("", child.before))  # (after the screen's last frame)
    assert len(lines) == 1 and "cannot connect to NATS" in lines[0], child.before
    assert "Traceback" not in child.before


def test_keys_go_to_the_focused_input_and_tab_moves_on(beach: Beach, config_path: Path, tmp_path: Path) -> None:
    assert beach.addActor("Pong", "console/pong").isSuccess

    async def scenario(app: BeachConsole, pilot: Pilot[None]) -> None:
        tabs = app.query_one(TabbedContent)
        await pilot.press("3")
        category = app.query_one("#req-category", Input)
        await until(pilot, lambda: category.has_focus and "console/pong" in text_of(app.query_one("#req-categories",
                                                                                                   Label)),
                    what="the category field, with the realm's categories")
        await pilot.press(*"cons")
        await until(pilot, lambda: category._suggestion == "console/pong", what="the suggestion")
        await pilot.press("tab")  # moves on; the suggestion is not taken
        assert app.focused is not None and app.focused.id == "req-type", app.focused
        assert category.value == "cons"
        await pilot.press(*"top12345")  # digits typed into a field stay there: no pane switch
        await pilot.pause(0.2)
        assert tabs.active == "request" and app.query_one("#req-type", Input).value == "top12345"
        await pilot.press("tab")
        assert app.focused is not None and app.focused.id == "req-data", app.focused
        await pilot.press(*"{'n': 5}", "1", "2")
        assert tabs.active == "request" and app.query_one("#req-data", Input).value == "{'n': 5}12"
        status = app.query_one("#req-status", Label)
        await type_into(pilot, "#req-data", "{'n': five}")
        await pilot.press("enter")  # bad data: one line naming what is wrong
        await until(pilot, lambda: "neither JSON nor a Python literal" in text_of(status), what="the data error")
        assert "five is a name, not a value: quote text ('five')" in text_of(status), text_of(status)
        assert "\n" not in text_of(status) and "object at 0x" not in text_of(status)
        await pilot.press("tab", "tab", "tab")  # past ident and timeout to the Send button
        assert app.focused is not None and app.focused.id == "req-send", app.focused
        await pilot.press("2")  # no text field has focus: the key shows the Actors pane
        await until(pilot, lambda: tabs.active == "actors", what="the Actors pane")

    run_console(config_path, scenario, tmp_path / "keys.svg")
