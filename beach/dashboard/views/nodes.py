"""``/nodes/{node}``: one machine — its health, hosts, actors, CPU and memory charts and log lines
(its actors' and beach's own). Its JSON twin is ``/api/nodes/{node}``."""

from __future__ import annotations

import logging
from typing import Any

from beach.dashboard import history, logtail
from beach.dashboard import params as read
from beach.dashboard.state import Dashboard
from beach.dashboard.views.page import NotFound, Page


def data(dash: Dashboard, params: read.Params) -> dict[str, Any]:
    """The node and the actors it runs."""
    node_id = params["node"]
    node = dash.model.node(node_id)
    if node is None:
        raise NotFound(f"no node {node_id!r} in the cluster (it may have left)")
    return {"node": node, "actors": [a for a in dash.model.actors() if a["node"] == node_id]}


PAGE = Page("node", "node.html", data, keys=("node",), fragments=("node", "actors"),
            logs=lambda params: logtail.LogQuery(node=params["node"], kind=None, level=logging.DEBUG),
            history=lambda params: history.Query(node=params["node"]))
