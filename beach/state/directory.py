"""The actor and node directory: JetStream KV buckets and a live local view of them.

* ``beach_nodes``: one key per node agent, refreshed every `HEARTBEAT` seconds with a per-message
  TTL of `NODE_TTL` seconds, so a dead node's entry expires by itself (watchers see a PURGE).
* ``beach_actors``: one key per actor (``<realm>.<uid>``), written by its host once ``init()``
  succeeded and deleted when it stops. The node agent deletes the entries of a host that died;
  any node agent deletes the entries of a node that is gone.

An actor is *live* when its node is live. Entries are soft state: every node re-writes its own
actors when it sees them missing, so a lost KV write heals (see DESIGN.md on Jepsen's findings).

`DirectoryView` watches both buckets and keeps them in memory, so routing and ``getDirectory()``
never wait on a lookup. Writes that the caller itself made (spawn, stop) are applied to its own
view at once, ordered by KV revision, so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from beach import wire
from beach.bus.connection import JS_TIMEOUT, through_election
from beach.bus.kvwatch import BucketWatch
from beach.errors import BeachError
from beach.security.sealedkv import seal_value
from beach.state import records
from beach.state.records import ActorEntry, NodeEntry
from beach.wire import subjects

log = logging.getLogger("beach.directory")

HEARTBEAT = 1.0
NODE_TTL = 4  # whole seconds (NATS per-message TTL granularity)
# A node whose heartbeat this view has not heard for this long (1.5 periods) is late: no new actor
# is placed there (it may be dying; its entry expires only after NODE_TTL).
LATE = 1.5 * HEARTBEAT
# A node this view has not heard from for this long is gone, purge marker or not: a JetStream server
# that restarts can bring back entries that had expired (ghosts), and their expiry is not sent again.
SILENCE = NODE_TTL + 2.0
# A heartbeat written this long ago (by the node's clock) is such a ghost from the start.
STALE = 30.0
# Every node silent at once is the registry stalled (a JetStream leader election after a server was
# lost, or this view's watch left behind on that server), not every node dead: the view follows the
# buckets afresh and keeps the nodes this much longer before it lets them go.
STALL_GRACE = 20.0



class DirectoryView:
    """A live in-memory copy of the directory buckets, fed by KV watches."""

    def __init__(self, actors_kv: KeyValue, nodes_kv: KeyValue,
                 connected: Callable[[], bool] = lambda: True) -> None:
        self.connected = connected  # is this process's connection to NATS up now?
        self.actors_kv = actors_kv
        self.nodes_kv = nodes_kv
        self.actors: dict[str, ActorEntry] = {}   # uid → entry
        self.nodes: dict[str, NodeEntry] = {}     # node id → entry
        self._revisions: dict[str, int] = {}      # bucket/key → last revision applied
        self.generation = 0  # bumped on every change, so readers can cache what they derive
        self.departed: dict[str, float] = {}      # node id → when its entry went (monotonic)
        self._departures: dict[str, list[asyncio.Future[None]]] = {}  # node id → who waits for it to go
        self._watches = [BucketWatch(nodes_kv, self._apply_node),
                         BucketWatch(actors_kv, self._apply_actor, self._resync_actors)]
        # called with ("node" | "actor", id) after every change applied, heartbeats included
        self.listeners: list[Callable[[str, str], None]] = []
        self._heard: dict[str, float] = {}  # node id → when this view last heard its heartbeat
        self._down: tuple[str, float] | None = None  # a node's word that JetStream takes no write, and when
        self.traced = True
        """Every live node reads requests of format 2 (`beach.wire.TRACED`: with their trace
        context), so a request may be sent in it; a node of the previous release (its entry says
        nothing) reads format 1 only."""
        self._sweeper: asyncio.Task[None] | None = None
        self._stalled: float | None = None  # when every node was last found silent at once
        self._following: asyncio.Task[None] | None = None  # the watches being restarted
        self._refollowed = -SILENCE  # when they were last restarted (monotonic)

    def _notify(self, kind: str, ident: str) -> None:
        for listener in self.listeners:
            try:
                listener(kind, ident)
            except Exception:
                log.exception("a directory listener failed")

    async def start(self) -> None:
        """Start watching both buckets; return once the current contents are loaded."""
        for watch in self._watches:
            await watch.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        """Stop watching."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._following is not None:
            self._following.cancel()
        for watch in self._watches:
            await watch.stop()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            self.forget_silent()

    def forget_silent(self) -> None:
        """Drop the nodes this view has not heard from for `SILENCE` seconds (as if they expired).
        While this process is cut off from NATS nothing can be heard: the nodes get a whole `SILENCE`
        from the moment it is back."""
        now = time.monotonic()
        if not self.connected():
            self._heard = dict.fromkeys(self.nodes, now)
            return
        silent = [n for n in self.nodes if now - self._heard.get(n, now) > SILENCE]
        if silent and len(silent) == len(self.nodes):
            if self._stalled is None:
                self._stalled = now
            if (self._following is None or self._following.done()) and now - self._refollowed > SILENCE:
                self._refollowed = now
                self._following = asyncio.get_running_loop().create_task(self._follow_afresh())
            if now - self._stalled < STALL_GRACE:
                return
        else:
            self._stalled = None
        for node_id in silent:
            log.info("node %s has been silent for %.0fs: gone", node_id, SILENCE)
            self._depart(node_id)
            self.generation += 1
            if self.listeners:
                self._notify("node", node_id)

    def beacon(self, node_id: str, reason: str) -> None:
        """Node ``node_id`` says it lives, and why JetStream cannot take its heartbeat (it has lost
        its quorum): the node stays in this view, and `jetstream_down` says ``reason`` for a while."""
        now = time.monotonic()
        if node_id in self.nodes:
            self._heard[node_id] = now
        self._down = (reason, now)

    @property
    def jetstream_down(self) -> str | None:
        """Why nothing can be written to JetStream now, as a node said it within `SILENCE` seconds
        (None: no node said so)."""
        if self._down is not None and time.monotonic() - self._down[1] < SILENCE:
            return self._down[0]
        return None

    async def _follow_afresh(self) -> None:
        """Restart both watches (every node went silent at once: see `STALL_GRACE`)."""
        log.info("no node has been heard for %.0fs: following the directory afresh", SILENCE)
        for watch in self._watches:
            try:
                await watch.restart()
            except Exception as err:  # JetStream still away: the next sweep tries again
                log.info("cannot follow the directory afresh yet: %s", err)
                return

    def _resync_actors(self, keys: set[str]) -> None:
        """The actor bucket's current keys, after a (re)start: entries this view holds that are not
        among them were deleted while it was not following."""
        gone = [uid for uid, actor in self.actors.items() if subjects.actor_key(actor.realm, uid) not in keys]
        for uid in gone:
            del self.actors[uid]
        if gone:
            self.generation += 1
            for uid in gone:
                self._notify("actor", uid)

    def _depart(self, node_id: str) -> None:
        if self.nodes.pop(node_id, None) is not None:
            self.departed[node_id] = time.monotonic()
            self._formats()
        self._heard.pop(node_id, None)
        for waiter in self._departures.pop(node_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _newer(self, bucket: str, key: str, revision: int) -> bool:
        slot = f"{bucket}/{key}"
        if revision <= self._revisions.get(slot, 0):
            return False
        self._revisions[slot] = revision
        return True

    def _apply_node(self, entry: Any) -> None:
        if not self._newer("n", entry.key, entry.revision):
            return
        known = len(self.nodes)
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            node_id_changed = subjects.unescape(entry.key)
            self._depart(node_id_changed)
        else:
            try:
                node = records.decode(NodeEntry, entry.value, entry.key)
                if subjects.escape(node.id) != entry.key:
                    raise records.RecordError(f"node record {entry.key}: its id {node.id!r} is another node's")
            except records.RecordError as err:
                records.reject("beach_nodes", entry.key, err)
                return
            node_id_changed = node.id
            if time.time() - node.updated > STALE:  # a ghost a restarted server brought back
                log.info("ignoring node %s's heartbeat of %.0fs ago", node_id_changed, time.time() - node.updated)
                self._depart(node_id_changed)
            else:
                self.nodes[node_id_changed] = node
                self._formats()
                self._heard[node_id_changed] = time.monotonic()
                self.departed.pop(node_id_changed, None)
        if len(self.nodes) != known:  # a heartbeat changes no membership: only joins and leaves do
            self.generation += 1
        if self.listeners:
            self._notify("node", node_id_changed)

    def _formats(self) -> None:
        self.traced = all(wire.TRACED in node.reads for node in self.nodes.values())

    def departure(self, node_id: str) -> asyncio.Future[None]:
        """A future that completes when node ``node_id`` leaves the registry (cancel it when done)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = [w for w in self._departures.get(node_id, ()) if not w.done()]
        self._departures[node_id] = waiters + [future]
        return future

    def _apply_actor(self, entry: Any) -> None:
        removed = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
        actor = None
        if not removed:
            try:
                actor = records.decode(ActorEntry, entry.value, entry.key)
                if subjects.actor_key(actor.realm, actor.uid) != entry.key:
                    raise records.RecordError(f"actor record {entry.key}: its realm and uid say another key")
            except records.RecordError as err:
                # a bad value stands where an entry was: the actor is not known (its host writes it back)
                records.reject("beach_actors", entry.key, err)
        if "." not in entry.key:
            return
        self.apply_actor(entry.key, entry.revision, actor)
        if removed and self._revisions.get(f"a/{entry.key}", 0) <= entry.revision:
            # the (ordered) watch is past every write of this key: nothing older can arrive now
            del self._revisions[f"a/{entry.key}"]

    def apply_actor(self, key: str, revision: int, actor: ActorEntry | None) -> None:
        """Apply one actor entry (None: removed) at ``revision``, unless a newer one is known."""
        if not self._newer("a", key, revision):
            return
        uid = subjects.unescape(key.split(".", 1)[1])
        if actor is None:
            self.actors.pop(uid, None)
        else:
            self.actors[uid] = actor
        self.generation += 1
        if self.listeners:
            self._notify("actor", uid)

    def apply_local(self, key: str, revision: int, actor: ActorEntry | dict[str, Any] | None) -> None:
        """Apply a write this process made itself (read-your-writes): the entry a node's reply
        carries (checked here: it came off the wire), or None for a stop. Raises `RecordError`."""
        if isinstance(actor, dict):
            actor = records.check(ActorEntry, actor, key)
        self.apply_actor(key, revision, actor)

    # ---- queries (no I/O) ----

    def is_live(self, actor: ActorEntry) -> bool:
        """True if the actor's node is live."""
        return actor.node in self.nodes

    def unavailable(self) -> dict[str, str]:
        """The registered nodes that take no new actor now, each with why: stopping, or its heartbeat
        is late (not heard for over `LATE` seconds). Lateness counts only while some node is heard
        on time: when every heartbeat is late, it is this process or the bus that stalled."""
        now = time.monotonic()
        away = {n: "is stopping" for n, entry in self.nodes.items() if entry.stopping}
        silent = {n: now - self._heard.get(n, now) for n in self.nodes}
        if any(age <= LATE for age in silent.values()):
            away.update({n: f"has sent no heartbeat for over {LATE:g}s" for n, age in silent.items()
                         if age > LATE and n not in away})
        return away

    def lost(self, actor: ActorEntry, grace: float) -> bool:
        """True if the actor's node is gone and has stayed gone for ``grace`` seconds: a node whose
        heartbeats stall for a moment (a NATS leader election) is not lost yet."""
        node = actor.node
        if node in self.nodes:
            return False
        departed = self.departed.get(node)
        return departed is None or time.monotonic() - departed >= grace

    def live(self, realm: str | None = None) -> list[ActorEntry]:
        """Every live actor, in ``realm`` if given."""
        return [a for a in self.actors.values()
                if (realm is None or a.realm == realm) and a.node in self.nodes]

    def find(self, realm: str, category: str) -> list[ActorEntry]:
        """The live actors of ``realm`` with a category under ``category`` (by segment)."""
        uid = subjects.actor_uid(category)
        if uid is not None:
            actor = self.actors.get(uid)
            return [actor] if actor and actor.realm == realm and self.is_live(actor) else []
        prefix = subjects.normalize(category)
        return [a for a in self.live(realm) if any(subjects.matches(c, prefix) for c in a.categories)]

    def categories(self, realm: str) -> dict[str, dict[str, str]]:
        """``{category: {uid: location}}`` for ``realm``, with the hidden ``_ACTORS/<uid>`` ones."""
        result: dict[str, dict[str, str]] = {}
        for actor in self.live(realm):
            where = f"{actor.node}/{actor.host}"
            for category in actor.categories:
                result.setdefault(category, {})[actor.uid] = where
            result[f"{subjects.ACTORS_CATEGORY}/{actor.uid}"] = {actor.uid: where}
        return result

    def realms(self) -> list[str]:
        """Every realm with at least one live actor."""
        return sorted({a.realm for a in self.live()})

    def elsewhere(self, realm: str, category: str) -> str:
        """For a category with no live actor in ``realm``: ``"realm 'x' has some"`` when other realms
        have actors under it (``""`` when none has), so a person who forgot ``--realm`` is told."""
        try:
            found = [r for r in self.realms() if r != realm and self.find(r, category)]
        except BeachError:  # a category that cannot be routed has no actor anywhere
            return ""
        if not found:
            return ""
        names = ", ".join(repr(r) for r in found)
        return f"realm {names} has some" if len(found) == 1 else f"realms {names} have some"


# ---- writes ----

async def put_actor(kv: KeyValue, actor: ActorEntry,
                    refused: Callable[[], str | None] = lambda: None) -> tuple[str, int]:
    """Write an actor entry; return ``(key, revision)``. A write that meets a leader election is
    made again (`through_election`), unless ``refused()`` says why not."""
    key = subjects.actor_key(actor.realm, actor.uid)
    body = wire.pack(actor)
    return key, await through_election(lambda: kv.put(key, body), refused=refused)


async def delete_actor(nc: Client, kv: KeyValue, realm: str, uid: str) -> tuple[str, int]:
    """Delete an actor entry; return ``(key, revision)`` of the delete marker."""
    key = subjects.actor_key(realm, uid)
    ack = await nc.jetstream(timeout=JS_TIMEOUT).publish(f"$KV.{kv._name}.{key}", b"", headers={"KV-Operation": "DEL"})
    return key, ack.seq


async def put_node(nc: Client, kv: KeyValue, node: NodeEntry) -> None:
    """Publish a node heartbeat with its TTL, so the entry expires if the node dies."""
    key = subjects.escape(node.id)
    await nc.jetstream(timeout=JS_TIMEOUT).publish(f"$KV.{kv._name}.{key}",
                                          seal_value(kv, key, wire.pack(node)),
                                          msg_ttl=NODE_TTL)


async def delete_node(nc: Client, kv: KeyValue, node_id: str) -> None:
    """Remove a node entry at once (graceful leave)."""
    await kv.purge(subjects.escape(node_id))
