"""``/events?view=PAGE&...``: a page's live stream, as server-sent events.

The stream is fed by the model's listeners (through the `Hub`), never by polling. It sends:

* ``fragments`` ``{element id: html}``: the page's fragments that changed, re-rendered from the
  same templates and data as the page itself (plus ``status``, the connection indicator);
* ``logs`` ``{"html": rows, "replace": bool}``: the log lines that came since the last frame;
* ``history`` ``{chart: {series: [[t, v], ...]}}``: the chart points added since the last frame;
* ``gone`` ``{"message": ...}``: what the page is about (a node, an actor) left the cluster.

The first frames bring the page up to date (``?since=`` is the time of its latest chart point).

Streams are bounded (`beach.dashboard.hub`): past ``dashboard.max_streams`` in all, or
``dashboard.max_streams_per_client`` from one address, ``/events`` answers 503 (JSON, with
``Retry-After``) and the page polls ``/events/poll`` instead: the same frames, once, as one JSON
object. A page's fragments are rendered at most once a second, for every stream and poll of that
page, and a stream sends at most a frame a second: open streams cost the rest of the dashboard
little.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from beach import output
from beach.dashboard import history
from beach.dashboard import params as read
from beach.dashboard.hub import CLOSING, Full, Subscription
from beach.dashboard.responses import JSON
from beach.dashboard.state import Dashboard, dashboard
from beach.dashboard.templating import render
from beach.dashboard.views import actors, logs, nodes, overview
from beach.dashboard.views.page import NotFound, Page
from beach.logs import LogLine

PAGES = {page.name: page for page in (overview.PAGE, nodes.PAGE, actors.PAGE, logs.PAGE)}
KEEPALIVE = 15.0       # seconds: a comment line, so a dead connection is noticed
MIN_INTERVAL = 1.0     # seconds between frames: bursts of changes are sent as one
RENDER_SECONDS = 1.0   # a page's fragments are rendered at most this often, for all its streams
RETRY_MS = 2000        # the browser reconnects after this long when the stream drops
FULL_RETRY_SECONDS = 30  # a stream refused at a cap: when to try again (Retry-After)
EVERYTHING = frozenset({"nodes", "actors", "stats", "desired", "connection", "tick", "logs", "state"})
FRAGMENT_PARTS = EVERYTHING - {"logs"}
HISTORY_PARTS = frozenset({"nodes", "tick"})


Frame = tuple[str, Any]  # (event, data)


def frame(event: str, data: Any) -> str:
    """One server-sent event (JSON data on one line)."""
    return f"event: {event}\ndata: {output.dumps_line(data)}\n\n"


class LiveView:
    """What one stream already sent, so each frame carries only what changed."""

    def __init__(self, dash: Dashboard, page: Page, params: dict[str, str], since: float, root: str) -> None:
        self.dash = dash
        self.page = page
        self.params = params
        self.root = root
        self.since = since
        self.html: dict[str, str] = {}
        self.points: dict[tuple[str, str], float] = {}
        self.log_query = page.logs(params) if page.logs else None
        self.history_query = page.history(params) if page.history else None
        self.last_line: LogLine | None = None
        self.logs_started = False
        self.gone = False

    def frames(self, parts: set[str] | frozenset[str]) -> list[Frame]:
        """The frames for a change of ``parts``."""
        result = []
        if parts & FRAGMENT_PARTS:
            result += self.fragments()
        if "logs" in parts and self.log_query is not None:
            result += self.logs()
        if parts & HISTORY_PARTS and self.history_query is not None:
            points = history.increments(self.dash.model, self.history_query, self.points, self.since)
            if points:
                result.append(("history", points))
        return result

    def _base(self) -> dict[str, Any]:
        return {"root": self.root, "admin": self.dash.admin, "open_notice": self.dash.open_notice,
                "page": self.page.name}

    def _render(self) -> dict[str, str] | NotFound:
        """The page's fragments now, or why its subject is gone: rendered at most every
        `RENDER_SECONDS` for all the streams and polls of the same page (`Hub.rendered`), however
        many they are and however often the model changes."""
        hub = self.dash.hub
        key = (self.page.name, tuple(sorted(self.params.items())), self.root)
        now = time.monotonic()
        found = hub.rendered.get(key)
        if found is not None and now - found[0] < RENDER_SECONDS:
            return found[1]  # type: ignore[no-any-return]
        if len(hub.rendered) > 1000:  # pages nobody looks at any more
            hub.rendered = {k: v for k, v in hub.rendered.items() if now - v[0] < RENDER_SECONDS}
        base = self._base()
        html = {"status": render("_status.html", {**base, "summary": self.dash.model.summary()})}
        result: dict[str, str] | NotFound = html
        try:
            context = {**self.page.context(self.dash, self.params), **base}
        except NotFound as err:
            result = err
        else:
            html.update({name: render(f"_{name}.html", context) for name in self.page.fragments})
        hub.rendered[key] = (now, result)
        return result

    def fragments(self) -> list[Frame]:
        """The fragments that changed (and ``gone``, once, when the page's subject left)."""
        rendered = self._render()
        result: list[Frame] = []
        if isinstance(rendered, NotFound):
            if not self.gone:
                self.gone = True
                result.append(("gone", {"message": rendered.detail}))
            html = {"status": render("_status.html", {**self._base(), "summary": self.dash.model.summary()})}
        else:
            html = rendered
        changed = {name: text for name, text in html.items() if self.html.get(name) != text}
        self.html.update(changed)
        return ([("fragments", changed)] if changed else []) + result

    def logs(self) -> list[Frame]:
        """The log lines that came since the last frame (all of them, ``replace``, the first time or
        when more came than the page shows)."""
        assert self.log_query is not None
        lines = self.log_query.lines(self.dash.model)
        fresh, replace = lines, True
        if self.logs_started:
            for i in range(len(lines) - 1, -1, -1):
                if lines[i] is self.last_line:
                    fresh, replace = lines[i + 1:], False
                    break
        self.logs_started = True
        if lines:
            self.last_line = lines[-1]
        if not fresh and not replace:
            return []
        rows = render("_log_rows.html", {"lines": fresh[::-1], "root": self.root,
                                         "empty": replace and not fresh})
        return [("logs", {"html": rows, "replace": replace})]


def _live_view(request: Request) -> LiveView:
    """The `LiveView` of the page ``request`` names (``view=`` and the page's own parameters);
    `BadParameter` (400) for one it cannot show."""
    dash = dashboard(request)
    params = dict(request.query_params)
    name = params.pop("view", "overview")
    page = PAGES.get(name)
    if page is None:
        raise read.BadParameter(f"view {name!r}: give one of {', '.join(PAGES)}")
    since = read.number(params, "since", 0.0)
    params.pop("since", None)
    for key in page.keys:
        if not params.get(key):
            raise read.BadParameter(f"view {name!r} needs ?{key}=")
    try:
        page.read(dash, params)  # a bad parameter is a 400 now, not a broken stream later
    except NotFound:
        pass  # the stream says so itself ("gone")
    return LiveView(dash, page, params, since, request.scope.get("root_path", ""))


class LiveStream(StreamingResponse):
    """A stream that gives its place back (``release``) however it ends: finished, dropped, or
    never started (a client gone before its first byte)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None], headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


async def stream(request: Request) -> Response:
    """``GET /events?view=overview|node|actor|logs&...`` (the page's own parameters, and ``since``);
    503 past a cap on streams (the page then polls `poll`)."""
    dash = dashboard(request)
    live = _live_view(request)
    try:  # the place is taken now (not when the stream starts): 300 pages at once get at most the cap
        subscription = dash.hub.subscribe(request.client.host if request.client else "")
    except Full as err:
        raise HTTPException(503, f"{err}: the page updates by polling instead",
                            headers={"Retry-After": str(FULL_RETRY_SECONDS)}) from None
    return LiveStream(_events(live, subscription), lambda: dash.hub.unsubscribe(subscription),
                      headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def poll(request: Request) -> Response:
    """``GET /events/poll?view=...&since=``: the frames a new stream would start with, once, as
    ``{"fragments", "logs", "history", "gone"}`` (each null when there is none): what a page refused
    a stream polls."""
    frames = dict(_live_view(request).frames(EVERYTHING))
    return JSON({name: frames.get(name) for name in ("fragments", "logs", "history", "gone")},
                headers={"Cache-Control": "no-store"})


async def _events(live: LiveView, subscription: Subscription) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    for event, data in live.frames(EVERYTHING):
        yield frame(event, data)
    while True:
        parts = await subscription.next(KEEPALIVE)
        if CLOSING in parts:
            return
        if not parts:
            yield ": keepalive\n\n"
            continue
        for event, data in live.frames(parts):
            yield frame(event, data)
        await asyncio.sleep(MIN_INTERVAL)
