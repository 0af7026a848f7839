"""`create_app`: the dashboard as a Starlette application.

Its lifespan opens the cluster client and starts the `ClusterModel` on the server's own loop (and
closes them at shutdown); every page, API route, the live stream and ``/metrics`` read that model.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from beach.dashboard import actions, api, events, metrics, openapi
from beach.dashboard.headers import SecurityHeaders
from beach.dashboard.hosts import AllowedHosts, HostCheck
from beach.dashboard.responses import error
from beach.dashboard.state import Dashboard, dashboard
from beach.dashboard.templating import templates
from beach.dashboard.views import actors, logs, nodes, overview
from beach.metering import HttpMeter

log = logging.getLogger("beach.dashboard")

STATIC = Path(__file__).with_name("static")
MACHINE_PATHS = ("/api", "/events", "/metrics", "/healthz")  # answered in JSON, errors included


def routes() -> list[BaseRoute]:
    """Every route: the pages, their JSON twins and the other API reads, the live stream, the admin
    POSTs, ``/metrics`` and the static assets."""
    return [
        Route("/", overview.PAGE.html, name="overview"),
        Route("/nodes/{node}", nodes.PAGE.html, name="node"),
        Route("/actors/{uid}", actors.PAGE.html, name="actor"),
        Route("/logs", logs.PAGE.html, name="logs"),
        Route("/events", events.stream, name="events"),
        Route("/events/poll", events.poll, name="poll"),
        Route("/metrics", metrics.endpoint, name="metrics"),
        Route("/healthz", api.healthz, name="healthz"),
        Route("/api/openapi.json", openapi.endpoint, name="openapi"),
        Route("/api/cluster", api.cluster),
        Route("/api/nodes", api.node_list),
        Route("/api/nodes/{node}", api.node),
        Route("/api/actors", api.actor_list),
        Route("/api/actors/{uid}", api.actor),
        Route("/api/categories", api.categories),
        Route("/api/requests", api.requests),
        Route("/api/logs", api.log_lines),
        Route("/api/supervision", api.supervision),
        Route("/api/patrols", api.patrols),
        Route("/api/state", api.state),
        Route("/api/history", api.history),
        Route("/api/actors/{uid}/stop", actions.stop, methods=["POST"]),
        Route("/api/flush", actions.flush, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def _machine(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PATHS) or request.method not in ("GET", "HEAD")


def _error_page(request: Request, status: int, message: str) -> Response:
    dash = dashboard(request)
    try:
        summary, admin, notice = dash.model.summary(), dash.admin, dash.open_notice
    except RuntimeError:  # not running (yet): the page still says what went wrong
        summary, admin, notice = {"connected": False}, False, None
    context = {"status": status, "message": message, "summary": summary, "admin": admin, "open_notice": notice,
               "page": "error", "root": request.scope.get("root_path", ""), "stream": None, "csrf_token": None}
    return templates.TemplateResponse(request, "error.html", context, status_code=status)


async def http_error(request: Request, exc: Exception) -> Response:
    """A 4xx: JSON ``{"error": ...}`` for the API, a page for a person."""
    assert isinstance(exc, HTTPException)
    if _machine(request):
        response: Response = error(exc.status_code, exc.detail)
    else:
        response = _error_page(request, exc.status_code, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: the client gets one line, the traceback goes to the dashboard's log only."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"internal error ({type(exc).__name__}); the dashboard's log has the details"
    return error(500, message) if _machine(request) else _error_page(request, 500, message)


def create_app(config_path: str, host: str = "127.0.0.1", allowed_hosts: Iterable[str] = ()) -> Starlette:
    """The dashboard of the cluster that the config at ``config_path`` names (see the module docs),
    listening on ``host`` and answering requests addressed to it, to localhost, or to one of
    ``allowed_hosts`` (`beach.dashboard.hosts`)."""
    dash = Dashboard(config_path, AllowedHosts(host, allowed_hosts))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """Follow the cluster while the app runs."""
        await dash.open()
        try:
            yield
        finally:
            await dash.close()

    middleware = [Middleware(HttpMeter, stats=dash.http), Middleware(HostCheck, allowed=dash.allowed),
                  Middleware(SecurityHeaders)]
    app = Starlette(routes=routes(), lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.dashboard = dash
    return app
