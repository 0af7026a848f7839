"""The admin actions, as POSTs: stop an actor, flush the cluster.

Offered only when the dashboard's config has the cluster's ``admin_token`` (the node agents check
it); without it they answer 403. Every one is checked against cross-site requests (`csrf`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from beach.dashboard import csrf
from beach.dashboard.responses import JSON, error
from beach.dashboard.state import Dashboard, dashboard


async def _allowed(request: Request) -> Dashboard:
    dash = dashboard(request)
    if not dash.admin:
        raise csrf.Forbidden(f"admin actions are off: {dash.client.session.read_only()}")
    await csrf.check(request, dash)
    return dash


async def stop(request: Request) -> Response:
    """``POST /api/actors/{uid}/stop``: stop one actor (its supervision ends first, so it stays stopped)."""
    dash = await _allowed(request)
    uid = request.path_params["uid"]
    if uid not in dash.client.session.view.actors:
        return error(404, f"no actor {uid!r} in the directory (it may have stopped)")
    response = await dash.client.stopActors(withId=uid)
    if not response.isSuccess:
        return error(502, f"stopping {uid} failed: {response.error}")
    return JSON(response.data)


async def flush(request: Request) -> Response:
    """``POST /api/flush``: stop every actor in every realm and forget supervision and patrols."""
    dash = await _allowed(request)
    if not await dash.client.flush():
        return error(502, "flush failed on at least one node (see the nodes' logs)")
    return JSON({"flushed": True})
