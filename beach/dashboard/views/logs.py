"""``/logs``: the live log tail, filtered by ``?realm=&category=&uid=&level=&kind=&limit=``. Its JSON
twin is ``/api/logs``."""

from __future__ import annotations

from typing import Any

from beach.dashboard import logtail
from beach.dashboard import params as read
from beach.dashboard.state import Dashboard
from beach.dashboard.views.page import Page


def data(dash: Dashboard, params: read.Params) -> dict[str, Any]:
    """The filter, as read (the lines come with the page's log tail)."""
    query = logtail.from_params(params)
    return {"filter": {"realm": query.realm, "category": query.category, "uid": query.uid,
                       "level": query.level_name, "kind": read.text(params, "kind") or "app", "limit": query.limit}}


PAGE = Page("logs", "logs.html", data, params=logtail.PARAMS, logs=logtail.from_params)
