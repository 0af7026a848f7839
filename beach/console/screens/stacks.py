"""`StacksScreen`: the Python stacks of the process running an actor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Collapsible, Footer, Label, LoadingIndicator, Static

from beach.client.response import ActorResponse
from beach.console.text import short
from beach.errors import BeachError
from beach.output import describe_failure

if TYPE_CHECKING:
    from beach.client.core import AsyncBeach


class StacksScreen(ModalScreen[None]):
    """Asks the actor's node for the stacks (`beach.client.core.AsyncBeach.getStacks`) and shows one
    section per thread: those serving a request of this actor first and open, the others closed;
    then the process's asyncio tasks. ``r`` asks again, Escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_screen", "Close"),
                                             Binding("r", "refresh", "Refresh")]

    def __init__(self, client: AsyncBeach, uid: str, title: str) -> None:
        super().__init__()
        self._client = client
        self._uid = uid
        self._title = title

    def compose(self) -> ComposeResult:
        """The title, then the stacks once they came."""
        with Vertical(classes="dialog", id="stacks"):
            yield Label(f"Stacks of {self._title} {short(self._uid)}", classes="dialog-title")
            yield Label("asking its node…", id="stacks-where", classes="dialog-detail")
            yield LoadingIndicator(id="stacks-loading")
            yield VerticalScroll(id="stacks-threads")
        yield Footer()

    def on_mount(self) -> None:
        """Ask for the stacks."""
        self.action_refresh()

    def action_refresh(self) -> None:
        """Ask for the stacks again (what the actor does now)."""
        self.query_one("#stacks-loading").display = True
        self._load()

    def action_dismiss_screen(self) -> None:
        """Close."""
        self.dismiss(None)

    @work(exclusive=True)
    async def _load(self) -> None:
        try:
            response = await self._client.getStacks(self._uid)
        except BeachError as err:
            response = ActorResponse(False, str(err))
        self.query_one("#stacks-loading").display = False
        where = self.query_one("#stacks-where", Label)
        sections = self.query_one("#stacks-threads", VerticalScroll)
        await sections.remove_children()
        where.set_class(not response.isSuccess, "-error")
        if not response.isSuccess:
            where.update(f"✖ {describe_failure(response)}")
            return
        data: dict[str, Any] = response.data
        threads = sorted(data.get("threads") or [], key=lambda t: not t.get("mine"))
        tasks = data.get("tasks") or []
        serving = "" if any(t.get("mine") for t in threads) else " · none serves this actor right now"
        where.update(f"process {data.get('pid')} · host {data.get('host')} on node {data.get('node')} · "
                     f"{len(threads)} threads · {len(tasks)} asyncio tasks{serving}")
        await sections.mount_all([*map(_thread, threads), *map(_task, tasks)])


def _thread(thread: dict[str, Any]) -> Collapsible:
    """A thread's stack, open if it serves the actor."""
    title = f"thread {thread.get('name')}"
    serving = thread.get("serving")
    if serving:
        title += f" — serving {serving.get('request')!r}" + (
            " (this actor)" if thread.get("mine") else f" of {short(serving.get('uid'))}")
    return Collapsible(Static(Text("".join(thread.get("stack") or []).rstrip())), title=title,
                       collapsed=not thread.get("mine"), classes="-mine" if thread.get("mine") else "")


def _task(task: dict[str, Any]) -> Collapsible:
    """An asyncio task's stack, closed."""
    return Collapsible(Static(Text("\n".join(task.get("stack") or []).rstrip())),
                       title=f"task {task.get('name')} ({task.get('coro')})", collapsed=True)
