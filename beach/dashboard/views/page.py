"""`Page`: one HTML page and everything derived from it — its JSON twin and its live stream.

A page is the data it shows (a function of the model), a template, the fragments of that template
the live stream re-renders when the model changes, and optionally a log tail and charts. The HTML
view, the JSON twin and ``/events`` all go through the same `Page.data`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from beach.dashboard import csrf, history
from beach.dashboard.logtail import LogQuery
from beach.dashboard.params import Params, check_known
from beach.dashboard.responses import JSON
from beach.dashboard.state import Dashboard, dashboard
from beach.dashboard.templating import templates


class NotFound(HTTPException):
    """What a page is about (a node, an actor) is not in the cluster (HTTP 404)."""

    def __init__(self, detail: str) -> None:
        super().__init__(404, detail)


@dataclass(frozen=True)
class Page:
    """One page of the dashboard (see the module docs).

    ``keys`` name what the page is about (path parameters of its URL: ``/nodes/{node}``), ``params``
    the query parameters it takes; ``fragments`` are element ids, each re-rendered from the template
    ``_<id>.html`` with the page's data.
    """

    name: str
    template: str
    data: Callable[[Dashboard, Params], dict[str, Any]]
    keys: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    fragments: tuple[str, ...] = ()
    logs: Callable[[Params], LogQuery] | None = None
    history: Callable[[Params], history.Query] | None = None

    def read(self, dash: Dashboard, params: Params) -> dict[str, Any]:
        """The page's data for ``params`` (its keys and query parameters); raises `BadParameter`
        or `NotFound`."""
        check_known({k: v for k, v in params.items() if k not in self.keys}, self.params)
        return self.data(dash, params)

    def context(self, dash: Dashboard, params: Params) -> dict[str, Any]:
        """What the page's templates (and fragments) are rendered with."""
        return {"summary": dash.model.summary(), **self.read(dash, params), "admin": dash.admin,
                "open_notice": dash.open_notice, "page": self.name}

    def stream_url(self, params: Params) -> str:
        """The query of this page's live stream (``/events?...``)."""
        return urlencode({"view": self.name, **params})

    async def html(self, request: Request) -> Response:
        """The page, rendered with its data (then kept live by ``/events``)."""
        dash = dashboard(request)
        params = {**request.query_params, **request.path_params}
        context = self.context(dash, params)
        context.update(root=request.scope.get("root_path", ""), stream=self.stream_url(params), query=request.url.query,
                       csrf_token=None, lines=None, history=None)
        if self.logs is not None:
            query = self.logs(params)
            context.update(lines=query.lines(dash.model)[::-1], log_query=query)
        if self.history is not None:
            context["history"] = history.history(dash.model, self.history(params))
        issued = csrf.issue(request, dash) if dash.admin else None
        if issued is not None:
            context["csrf_token"] = issued.token
        response = templates.TemplateResponse(request, self.template, context)
        if issued is not None:
            issued.set_cookie(response)
        return response

    async def json(self, request: Request) -> Response:
        """The page's JSON twin: the same data (and log lines), for scripts."""
        dash = dashboard(request)
        params = {**request.query_params, **request.path_params}
        data = self.read(dash, params)
        if self.logs is not None:
            data["logs"] = self.logs(params).lines(dash.model)
        return JSON(data)
