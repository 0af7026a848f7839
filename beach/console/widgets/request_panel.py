"""`RequestPanel`: send a request to a category of the current realm and see the reply."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from rich.highlighter import JSONHighlighter
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Static

from beach.client.handle import DEFAULT_TIMEOUT, ActorHandle
from beach.console.live import Live
from beach.console.text import one_line
from beach.errors import BeachError, UsageError
from beach.output import describe_failure, dumps, parse_data

if TYPE_CHECKING:
    from beach.client.core import AsyncBeach
    from beach.state.model import ClusterModel

# requestFromAll's replies each time out after the timeout: a little more lets the last ones arrive
FROM_ALL_MARGIN = 1.0


class CategorySuggester(Suggester):
    """Completes a category from those of the current realm (kept up to date by the panel)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.categories: list[str] = []

    async def get_suggestion(self, value: str) -> str | None:
        """The first known category that starts with what was typed."""
        return next((c for c in self.categories if c.startswith(value) and c != value), None) if value else None


class RequestPanel(Vertical, Live):
    """A form — category, request type, data (JSON or a Python literal), ident, timeout — and three
    ways to send it: Send (one actor, the reply), Broadcast (every actor, no reply) and From all
    (every actor, every reply). The reply shows as JSON with its round-trip time; a form that cannot
    be read, or a failure, is one line in the panel. Requests run in a worker: the console never waits."""

    PARTS: ClassVar[frozenset[str]] = frozenset({"actors", "realm"})

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._client: AsyncBeach | None = None
        self._suggester = CategorySuggester()
        self._highlight = JSONHighlighter()

    def compose(self) -> ComposeResult:
        """The form, the status line and the reply."""
        with Horizontal(classes="request-row"):
            yield Input(placeholder="category, e.g. myactors/pongers", id="req-category", suggester=self._suggester)
            yield Input(placeholder="request type", id="req-type")
        yield Input(placeholder="data: JSON or a Python literal, e.g. {'a': 1} (empty: {})", id="req-data")
        with Horizontal(classes="request-row"):
            yield Input(placeholder="ident (optional)", id="req-ident")
            yield Input(str(int(DEFAULT_TIMEOUT)), placeholder="seconds", id="req-timeout", type="number")
            yield Button("Send", id="req-send", variant="primary")
            yield Button("Broadcast", id="req-broadcast")
            yield Button("From all", id="req-from-all")
        yield Label("", id="req-categories")
        yield Label("Fill in a category and a request type, then Send (or press Enter).", id="req-status")
        with VerticalScroll(id="req-reply-scroll"):
            yield Static("", id="req-reply")

    def on_mount(self) -> None:
        """Name the fields on their borders."""
        for ident, title in (("req-category", "category"), ("req-type", "type"), ("req-data", "data"),
                             ("req-ident", "ident"), ("req-timeout", "timeout")):
            self.query_one(f"#{ident}", Input).border_title = title

    def show_model(self, model: ClusterModel, parts: set[str]) -> None:
        """Offer the categories of the current realm."""
        self._client = model.client
        realm = model.client.realm
        categories = list(model.realms().get(realm, {}))
        self._suggester.categories = categories
        hint = self.query_one("#req-categories", Label)
        hint.update(f"realm {realm}: " + (" · ".join(categories) if categories else "no actors yet"))

    def use_category(self, category: str) -> None:
        """Put ``category`` in the form and go on to the request type."""
        self.query_one("#req-category", Input).value = category
        self.query_one("#req-type", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.send("send")

    @on(Button.Pressed, "#req-send")
    def _send_pressed(self) -> None:
        self.send("send")

    @on(Button.Pressed, "#req-broadcast")
    def _broadcast_pressed(self) -> None:
        self.send("broadcast")

    @on(Button.Pressed, "#req-from-all")
    def _from_all_pressed(self) -> None:
        self.send("from-all")

    def send(self, how: str) -> None:
        """Read the form and send it ``how``: ``'send'``, ``'broadcast'`` or ``'from-all'``."""
        if self._client is None:
            self._status("not connected to the cluster yet", "error")
            return
        try:
            category, request_type, data, ident, timeout = self._form()
            handle = self._client.getActorHandle(category, timeout=timeout, ident=ident)
        except BeachError as err:
            self._status(one_line(str(err)), "error")
            return
        self._status(f"{how.replace('-', ' ')} {request_type!r} to {category} …", "busy")
        self._run(how, handle, request_type, data, timeout)

    def _form(self) -> tuple[str, str, Any, str | None, float]:
        """The form's values; `UsageError` names the first one that cannot be used."""
        value = {ident: self.query_one(f"#req-{ident}", Input).value.strip()
                 for ident in ("category", "type", "data", "ident", "timeout")}
        if not value["category"]:
            raise UsageError("pick a category first (the realm's categories are listed above)")
        if not value["type"]:
            raise UsageError("type a request type (what the actor handles, e.g. ping)")
        data = parse_data(value["data"], "data")
        try:
            timeout = float(value["timeout"]) if value["timeout"] else DEFAULT_TIMEOUT
        except ValueError:
            raise UsageError(f"timeout {value['timeout']!r} is not a number of seconds") from None
        if timeout <= 0:
            raise UsageError("the timeout must be above 0 seconds")
        return value["category"], value["type"], data, value["ident"] or None, timeout

    @work(exclusive=True, group="request")
    async def _run(self, how: str, handle: ActorHandle, request_type: str, data: Any, timeout: float) -> None:
        """Send, wait (without blocking the console), and show what came back."""
        started = time.perf_counter()
        try:
            if how == "send":
                response = await handle.arequest(request_type, data, timeout=timeout)
                ms = _ms(started)
                if response.isSuccess:
                    self._status(f"✔ success · {ms}", "ok")
                else:
                    self._status(f"✖ {describe_failure(response)} · {ms}", "error")
                trace = response.data.get("st") if isinstance(response.data, dict) else None
                if isinstance(trace, str):  # the handler raised: its traceback, as Python prints it
                    self.query_one("#req-reply", Static).update(Text(trace.rstrip()))
                else:
                    self._reply(response.data if response.data or response.isSuccess else None)
            elif how == "broadcast":
                count = handle.getNumAvailable()
                await handle.abroadcast(request_type, data)
                self._status(f"{'✔' if count else '✖'} broadcast to {count} actor(s) · {_ms(started)} "
                             f"(replies are not awaited)", "ok" if count else "error")
                self._reply(None)
            else:
                future = await handle.arequestFromAll(request_type, data, timeout=timeout)
                responses = await future.wait(timeout + FROM_ALL_MARGIN)
                good = sum(1 for r in responses if r.isSuccess)
                self._status(f"{'✔' if responses and good == len(responses) else '✖'} {good} of {len(responses)} "
                             f"actor(s) answered with success · {_ms(started)}",
                             "ok" if responses and good == len(responses) else "error")
                self._reply([{"ok": r.isSuccess, "error": r.error, "data": r.data} for r in responses])
        except BeachError as err:
            self._status(f"✖ {one_line(str(err))} · {_ms(started)}", "error")
            self._reply(None)
        finally:
            await handle.aclose()

    def _status(self, text: str, state: str) -> None:
        status = self.query_one("#req-status", Label)
        status.update(text)
        for name in ("ok", "error", "busy"):
            status.set_class(name == state, f"-{name}")

    def _reply(self, value: Any) -> None:
        body = self.query_one("#req-reply", Static)
        body.update("" if value is None else self._highlight(Text(dumps(value))))


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.1f} ms"
