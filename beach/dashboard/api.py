"""The JSON API under ``/api``: the pages' twins (``/api/cluster``, ``/api/nodes/{node}``,
``/api/actors/{uid}``, ``/api/logs``) and the model's other reads. Described by ``/api/openapi.json``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from beach import metering
from beach.dashboard import history as charts
from beach.dashboard import params as read
from beach.dashboard.responses import JSON
from beach.dashboard.state import dashboard
from beach.dashboard.views import actors, logs, nodes, overview

cluster = overview.PAGE.json
node = nodes.PAGE.json
actor = actors.PAGE.json
log_lines = logs.PAGE.json


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the dashboard is connected to NATS, 503 when it is not (so a
    health check sees a dashboard that shows nothing live)."""
    read.check_known(request.query_params, ())
    summary = dashboard(request).model.summary()
    return JSON({"ok": summary["connected"], "connected": summary["connected"], "nodes": summary["nodes"]},
                200 if summary["connected"] else 503)


async def node_list(request: Request) -> Response:
    """``GET /api/nodes``: every live node."""
    read.check_known(request.query_params, ())
    return JSON({"nodes": dashboard(request).model.nodes()})


async def actor_list(request: Request) -> Response:
    """``GET /api/actors?realm=&category=``: the live actors (of a realm, under a category)."""
    query = request.query_params
    read.check_known(query, ("realm", "category"))
    return JSON({"actors": dashboard(request).model.actors(read.realm(query), read.category(query))})


async def categories(request: Request) -> Response:
    """``GET /api/categories?realm=``: ``{realm: {category: number of actors}}``."""
    query = request.query_params
    read.check_known(query, ("realm",))
    realm, realms = read.realm(query), dashboard(request).model.realms()
    return JSON({"realms": realms if realm is None else {realm: realms.get(realm, {})}})


async def requests(request: Request) -> Response:
    """``GET /api/requests?realm=``: the requests served (``requests``) and made by actors (``calls``),
    per realm, category and request type, each category's latest latency and error ratio
    (``categories``), and the histogram's bucket bounds in seconds (``buckets``)."""
    query = request.query_params
    read.check_known(query, ("realm",))
    model, realm = dashboard(request).model, read.realm(query)
    figures = model.category_figures()
    if realm is not None:
        figures = {name: f for name, f in figures.items() if name.startswith(realm + "/")}
    return JSON({"requests": model.requests(realm), "calls": model.calls(realm), "categories": figures,
                 "buckets": list(metering.BUCKETS)})


async def supervision(request: Request) -> Response:
    """``GET /api/supervision``: every supervised actor, what should run against what does."""
    read.check_known(request.query_params, ())
    return JSON({"supervision": dashboard(request).model.supervised()})


async def patrols(request: Request) -> Response:
    """``GET /api/patrols``: every patrol spec, with its target and running counts."""
    read.check_known(request.query_params, ())
    return JSON({"patrols": dashboard(request).model.patrols()})


async def state(request: Request) -> Response:
    """``GET /api/state?realm=``: the sizes of actor state — keys and bytes per category, bytes per
    bucket (sizes only: ``beach state`` reads keys and values, with admin rights)."""
    query = request.query_params
    read.check_known(query, ("realm",))
    realm, sizes = read.realm(query), dashboard(request).model.state()
    if realm is not None:
        sizes = {**sizes, "categories": [c for c in sizes["categories"] if c["realm"] == realm]}
    return JSON({"state": sizes})


async def history(request: Request) -> Response:
    """``GET /api/history?since=&node=&class=``: the charts' points (12 h at most)."""
    query = request.query_params
    read.check_known(query, ("since", "node", "class"))
    node_id, klass = read.text(query, "node"), read.text(query, "class")
    if node_id is not None and klass is not None:
        raise read.BadParameter("give node or class, not both")
    picked = charts.Query(node=node_id, klass=klass)
    return JSON(charts.history(dashboard(request).model, picked, read.number(query, "since", 0.0)))
