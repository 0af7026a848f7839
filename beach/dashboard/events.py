"""``/events?view=PAGE&...``: a page's live stream, as server-sent events.

The stream is fed by the model's listeners (through the `Hub`), never by polling. It sends:

* ``fragments`` ``{element id: html}``: the page's fragments that changed, re-rendered from the
  same templates and data as the page itself (plus ``status``, the connection indicator);
* ``logs`` ``{"html": rows, "replace": bool}``: the log lines that came since the last frame;
* ``history`` ``{chart: {series: [[t, v], ...]}}``: the chart points added since the last frame;
* ``gone`` ``{"message": ...}``: what the page is about (a node, an actor) left the cluster.

The first frames bring the page up to date (``?since=`` is the time of its latest chart point).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from beach import output
from beach.dashboard import history, logtail
from beach.dashboard import params as read
from beach.dashboard.hub import CLOSING
from beach.dashboard.state import Dashboard, dashboard
from beach.dashboard.templating import render
from beach.dashboard.views import actors, logs, nodes, overview
from beach.dashboard.views.page import NotFound, Page

PAGES = {page.name: page for page in (overview.PAGE, nodes.PAGE, actors.PAGE, logs.PAGE)}
KEEPALIVE = 15.0       # seconds: a comment line, so a dead connection is noticed
MIN_INTERVAL = 0.25    # seconds between frames: bursts of changes are sent as one
RETRY_MS = 2000        # the browser reconnects after this long when the stream drops
EVERYTHING = frozenset({"nodes", "actors", "stats", "desired", "connection", "tick", "logs"})
FRAGMENT_PARTS = EVERYTHING - {"logs"}
HISTORY_PARTS = frozenset({"nodes", "tick"})


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
        self.last_line: dict[str, Any] | None = None
        self.logs_started = False
        self.gone = False

    def frames(self, parts: set[str] | frozenset[str]) -> list[str]:
        """The frames for a change of ``parts``."""
        result = []
        if parts & FRAGMENT_PARTS:
            result += self.fragments()
        if "logs" in parts and self.log_query is not None:
            result += self.logs()
        if parts & HISTORY_PARTS and self.history_query is not None:
            points = history.increments(self.dash.model, self.history_query, self.points, self.since)
            if points:
                result.append(frame("history", points))
        return result

    def fragments(self) -> list[str]:
        """The fragments that changed (and ``gone``, once, when the page's subject left)."""
        model = self.dash.model
        base = {"root": self.root, "admin": self.dash.admin, "open_notice": self.dash.open_notice,
                "page": self.page.name}
        html = {"status": render("_status.html", {**base, "summary": model.summary()})}
        result = []
        try:
            context = {**self.page.context(self.dash, self.params), **base}
        except NotFound as err:
            if not self.gone:
                self.gone = True
                result.append(frame("gone", {"message": err.detail}))
        else:
            html.update({name: render(f"_{name}.html", context) for name in self.page.fragments})
        changed = {name: text for name, text in html.items() if self.html.get(name) != text}
        self.html.update(changed)
        return ([frame("fragments", changed)] if changed else []) + result

    def logs(self) -> list[str]:
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
        rows = render("_log_rows.html", {"lines": logtail.shown(fresh[::-1]), "root": self.root,
                                         "empty": replace and not fresh})
        return [frame("logs", {"html": rows, "replace": replace})]


async def stream(request: Request) -> Response:
    """``GET /events?view=overview|node|actor|logs&...`` (the page's own parameters, and ``since``)."""
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
    live = LiveView(dash, page, params, since, request.scope.get("root_path", ""))
    return StreamingResponse(_events(dash, live), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _events(dash: Dashboard, live: LiveView) -> AsyncIterator[str]:
    subscription = dash.hub.subscribe()
    try:
        yield f"retry: {RETRY_MS}\n\n"
        for text in live.frames(EVERYTHING):
            yield text
        while True:
            parts = await subscription.next(KEEPALIVE)
            if CLOSING in parts:
                return
            if not parts:
                yield ": keepalive\n\n"
                continue
            for text in live.frames(parts):
                yield text
            await asyncio.sleep(MIN_INTERVAL)
    finally:
        dash.hub.unsubscribe(subscription)
