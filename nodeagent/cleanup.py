"""`Cleanup`: taking the directory entries of actors that are gone out of the directory — those of
this node's dead actor hosts, those a previous run of this node left behind, and (the holder of
the supervisor lease does it) those of nodes that vanished without saying so.

The directory is soft state: an entry whose actor is gone must not stay, or requests are routed
to nobody. A delete that fails is logged; the next sweep, here or on another node, gets it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from beach.client.session import Session
from beach.state import directory
from nodeagent.hosts import HostPool

log = logging.getLogger("beach.nodeagent")

ORPHAN_GRACE = 10.0  # seconds an actor's node must be out of the registry before its entry goes
ORPHAN_CHECK = 2.0  # how often the directory is swept for actors of vanished nodes


class Cleanup:
    """Removes the directory entries of node ``node_id``'s actors that died, and of actors whose
    node is gone."""

    def __init__(self, session: Session, node_id: str, pool: HostPool) -> None:
        self.session = session
        self.node_id = node_id
        self.pool = pool
        self._missing_since: dict[str, float] = {}  # uid → when its node was first seen missing

    async def previous_life(self) -> None:
        """Remove the entries a previous agent with this node id left (a machine that died and came
        back under the same id): those actors died with it, and must not look alive again when
        this node registers; nor must the node look up before its hosts are (its registry entry,
        which nobody removed if no agent was left alive to hear it fall silent)."""
        stale = {a.uid: a.realm for a in list(self.session.view.actors.values()) if a.node == self.node_id}
        await self.forget(stale, "of this node's previous run")
        if self.node_id in self.session.view.nodes:  # (this run registers once its hosts are up)
            log.warning("node %s: removing the registry entry its previous run left", self.node_id)
            try:
                await directory.delete_node(self.session.nc, self.session.view.nodes_kv, self.node_id)
            except Exception as err:  # the lease holder removes it (no beat), or this run's entry replaces it
                log.warning("could not remove node %s's previous registry entry: %s", self.node_id, err)
        if stale:
            log.warning("node %s: removed %d actor(s) left in the directory by its previous run", self.node_id,
                        len(stale))

    async def dead_hosts(self, host_ids: list[str]) -> None:
        """Remove the entries of actors that lived in the given (dead or stopped) hosts."""
        view = self.session.view
        gone = {uid: realm for uid, (host, realm) in self.pool.placed.items() if host in host_ids}
        gone.update({a.uid: a.realm for a in view.actors.values()
                     if a.node == self.node_id and a.host in host_ids})
        await self.forget(gone, "of a dead host")

    async def forget(self, actors: dict[str, str], whose: str) -> None:
        """Delete the entries of ``actors`` (``{uid: realm}``), all at once (with the bus down, each
        delete waits out its own timeout); ``whose`` says why, in the log of a delete that fails."""
        view = self.session.view

        async def forget(uid: str, realm: str) -> None:
            self.pool.placed.pop(uid, None)
            known = view.actors.get(uid)  # (its entries by category and node go first: its view holds
            # this node's actors, and the lease holder's, which sweeps other nodes', holds them all)
            node = known.node if known is not None else self.node_id
            try:
                key, revision = await directory.delete_actor(
                    self.session.nc, view.actors_kv, realm, uid, view.members_kv, known.categories if known else (),
                    (view.placed_kv, node) if view.placed_kv is not None else None)
                view.apply_local(key, revision, None)
            except Exception as err:
                log.warning("could not remove actor %s %s: %s", uid, whose, err)

        await asyncio.gather(*(forget(uid, realm) for uid, realm in actors.items()))

    async def orphans(self, act: bool = True) -> None:
        """Delete the entries whose node has been out of the registry for `ORPHAN_GRACE` seconds;
        without ``act``, only note since when (so an agent that takes the lease over acts on time:
        the standby, whose view holds the whole directory too; another agent's holds only its own
        node's actors, none of them orphans, and a new holder of the lease starts counting)."""
        view = self.session.view
        now = time.monotonic()
        orphans = {a.uid: a.realm for a in view.actors.values() if a.node not in view.nodes}
        self._missing_since = {uid: self._missing_since.get(uid, now) for uid in orphans}
        if act:
            await self.forget({uid: realm for uid, realm in orphans.items()
                               if now - self._missing_since[uid] >= ORPHAN_GRACE}, "of a vanished node")
