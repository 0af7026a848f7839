"""Replacing running actors without losing a request: ``beach rollout`` and ``beach drain``.

Both replace actors one by one (or a batch at a time) through their node agents
(``op_replace``): the new actor starts first, with the old one's spec, strategy and supervision;
then the old one leaves the directory, keeps serving for a grace period (clients that have not
yet seen it leave still reach it) and stops gracefully, finishing what it has in flight. A rollout
moves a category to a version of its realm's code; a drain cordons a node (no new actor is placed
there) and moves every actor off it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from beach.code import deploy
from beach.code import store as codestore
from beach.errors import Refused, UsageError
from beach.state.records import ActorEntry
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.client.core import AsyncBeach

REPLACE_SECONDS = 120.0
LEAVE_GRACE = 1.0
CORDON_SECONDS = 30.0  # a cordon is one desired-state write on the node

Step = Callable[[int, int, str], None]  # (done, total, what just happened)


async def _replace(client: AsyncBeach, actor: ActorEntry, version: str | None, grace: float,
                   away: bool) -> Any:
    args: dict[str, Any] = {"uid": actor.uid, "grace": grace, "away": away}
    if version is not None:
        args["version"] = version
    return await client._node_call(actor.node, "replace", args, REPLACE_SECONDS + grace, actor.realm)


async def replace_all(client: AsyncBeach, pick: Callable[[], list[ActorEntry]], version: str | None,
                      batch: int = 1, grace: float = LEAVE_GRACE, progress: Step | None = None,
                      away: bool = False) -> dict[str, Any]:
    """Replace what ``pick()`` returns with actors running ``version`` (None: the same), ``batch``
    at a time, until it returns nothing (actors that appear meanwhile are picked too) or an actor
    cannot be replaced. Returns ``{'replaced': [{old, new, node}], 'failed': {uid: error},
    'tracebacks': {uid: traceback}}`` (the tracebacks of replacements whose ``init`` raised)."""
    if batch < 1:
        raise UsageError(f"batch must be 1 or more, not {batch}")
    replaced: list[dict[str, str]] = []
    failed: dict[str, str] = {}
    tracebacks: dict[str, str] = {}
    total = len(pick())
    while True:
        todo = [a for a in pick() if a.uid not in failed]
        if not todo:
            break
        total = max(total, len(replaced) + len(todo))
        step = todo[:batch]
        responses = await asyncio.gather(*(_replace(client, a, version, grace, away) for a in step))
        for actor, response in zip(step, responses, strict=True):
            if response.isSuccess:
                replaced.append({"old": actor.uid, "new": response.data["uid"], "node": response.data["node"]})
                what = f"{actor.uid} → {response.data['uid']} on {response.data['node']}"
            elif isinstance(response.data, dict) and response.data.get("gone"):
                what = f"{actor.uid} was gone already"  # stopped or moved meanwhile: nothing to do
                failed[actor.uid] = ""
            else:
                failed[actor.uid] = response.error
                if isinstance(response.data, dict) and isinstance(response.data.get("st"), str):
                    tracebacks[actor.uid] = response.data["st"]
                what = f"{actor.uid} NOT replaced: {response.error}"
            if progress is not None:
                progress(len(replaced) + len(failed), total, what)
        if any(failed.values()) or len(replaced) > 2 * total + 10:
            break  # (actors of the old version that keep appearing: the supervisor restarting them elsewhere)
        await _seen_gone(client, [a.uid for a in step])
    return {"replaced": replaced, "failed": {uid: e for uid, e in failed.items() if e}, "tracebacks": tracebacks}


async def _seen_gone(client: AsyncBeach, uids: list[str], timeout: float = 10.0) -> None:
    """Wait until this client's directory view no longer shows ``uids`` (so they are not picked again)."""
    view = client.session.view
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(uid in view.actors for uid in uids) and loop.time() < deadline:
        await asyncio.sleep(0.05)


async def rollout(client: AsyncBeach, realm: str, category: str, version: str | None = None, batch: int = 1,
                  rollback: bool = False, grace: float = LEAVE_GRACE, progress: Step | None = None) -> dict[str, Any]:
    """Replace every actor of ``category`` in ``realm`` that does not run ``version`` (default: the
    realm's current version) with one that does; with ``rollback``, first make the version before
    the current one current again and roll back to it. Returns ``{'version', 'replaced': [{old,
    new, node}], 'failed': {uid: error}}`` once no actor of another version is left (or one could
    not be replaced). Raises `UsageError` for a realm with no deployed code or an unknown version."""
    realm = subjects.check_realm(realm)
    category = subjects.normalize(category)
    client.session.require_admin("rollout")
    if rollback:
        if version is not None:
            raise UsageError("rollout: give --version or --rollback, not both")
        version = (await deploy.rollback(client, realm)).version
    record = await codestore.resolve(await client._desired(), realm, version)
    if record is None:
        raise UsageError(f"realm {realm!r} has no deployed code: 'beach deploy' it first")
    target = record.version

    def pick() -> list[ActorEntry]:
        return sorted((a for a in client.session.view.find(realm, category) if a.version != target),
                      key=lambda a: a.started)

    result = await replace_all(client, pick, target, batch, grace, progress)
    return {"version": target, **result}


async def drain(client: AsyncBeach, node: str, batch: int = 1, grace: float = LEAVE_GRACE,
                progress: Step | None = None) -> dict[str, Any]:
    """Cordon ``node`` and move every actor off it (new ones first, elsewhere; one pinned there by
    ``host_affinity`` goes where there is room); return ``{'node', 'replaced', 'failed'}``. Raises
    `UsageError` for an unknown node."""
    await cordon(client, node, True)

    def pick() -> list[ActorEntry]:
        return sorted((a for a in client.session.view.actors.values() if a.node == node),
                      key=lambda a: a.started)

    return {"node": node, **await replace_all(client, pick, None, batch, grace, progress, away=True)}


async def cordon(client: AsyncBeach, node: str, on: bool = True) -> dict[str, Any]:
    """Cordon ``node`` (no new actors; ``on=False``: uncordon it). Raises `UsageError` for a node
    that is not in the registry or refuses."""
    client.session.require_admin("cordoning a node")
    if node not in client.session.view.nodes:
        raise UsageError(f"no node {node!r} in the registry (nodes: {', '.join(sorted(client.session.view.nodes))})")
    response = await client._node_call(node, "cordon", {"on": on}, CORDON_SECONDS, None)
    if not response.isSuccess:
        raise Refused(f"node {node} not {'cordoned' if on else 'uncordoned'}: {response.error}")
    await _seen(client, node, on)
    return dict(response.data)


async def _seen(client: AsyncBeach, node: str, cordoned: bool, timeout: float = 10.0) -> None:
    """Wait until the view shows ``node``'s new state: placements read it there."""
    view = client.session.view
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (node in view.nodes and view.nodes[node].cordoned) != cordoned and loop.time() < deadline:
        await asyncio.sleep(0.05)
