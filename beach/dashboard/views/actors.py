"""``/actors/{uid}``: one actor — where it runs, its load and counters, its parameters (private
ones masked by the model) and its log lines. Its JSON twin is ``/api/actors/{uid}``."""

from __future__ import annotations

import logging
from typing import Any

from beach.dashboard import logtail
from beach.dashboard import params as read
from beach.dashboard.state import Dashboard
from beach.dashboard.views.page import NotFound, Page


def data(dash: Dashboard, params: read.Params) -> dict[str, Any]:
    """The actor."""
    uid = params["uid"]
    actor = dash.model.actor(uid)
    if actor is None:
        raise NotFound(f"no actor {uid!r} in the directory (it may have stopped)")
    return {"actor": actor}


PAGE = Page("actor", "actor.html", data, keys=("uid",), fragments=("actor",),
            logs=lambda params: logtail.LogQuery(uid=params["uid"], level=logging.DEBUG))
