"""``/``: the whole cluster — counters, charts, nodes, realms and categories, actors, supervision,
patrols, actor state (keys and bytes per category, bytes per bucket) and the live log tail. Its
JSON twin is ``/api/cluster``."""

from __future__ import annotations

from typing import Any

from beach.dashboard import history, logtail
from beach.dashboard import params as read
from beach.dashboard.state import Dashboard
from beach.dashboard.views.page import Page


def data(dash: Dashboard, params: read.Params) -> dict[str, Any]:
    """Everything the overview shows; ``?realm=&category=`` narrow the actor table."""
    model = dash.model
    realm, category = read.realm(params), read.category(params)
    return {"summary": model.summary(), "admin": dash.admin, "nodes": model.nodes(), "realms": model.realms(),
            "actors": model.actors(realm, category), "filter": {"realm": realm, "category": category},
            "latency": model.category_figures(),
            "supervision": model.supervised(), "patrols": model.patrols(),
            "state": model.state()}


PAGE = Page("overview", "overview.html", data, params=("realm", "category"),
            fragments=("summary", "nodes", "realms", "actors", "supervision", "patrols", "state"),
            logs=lambda params: logtail.LogQuery(), history=lambda params: history.Query())
