"""The actor and node directory: JetStream KV buckets and a live local view of them.

* ``beach_nodes``: the registry, one key per node agent, written when the node's membership
  changes (it joins, leaves, is cordoned or stopping, its actor hosts change), never on a timer.
  Liveness is apart (`nodeagent.liveness`): each node beats on ``beach.hb.live.<node>`` every
  `HEARTBEAT` seconds, heard only by the supervisor's lease holder and its standby, which remove
  a node silent for `SILENT` seconds from the registry (watchers see a PURGE).
* ``beach_actors``: one key per actor (``<realm>.<uid>``), written by its host once ``init()``
  succeeded and deleted when it stops. The node agent deletes the entries of a host that died;
  the lease holder deletes the entries of a node that is gone.

An actor is *live* when its node is live. Entries are soft state: every node re-writes its own
actors when it sees them missing, and its own registry entry, so a lost KV write heals (see
DESIGN.md on Jepsen's findings).

* ``beach_members``: each actor's entry again under each of its categories
  (``<realm>.<segment>....<uid>``: `subjects.member_key`), written and deleted with its own entry
  by the same node processes, so that a watch of ``<realm>.a.b.>`` holds exactly the actors a
  request to ``a/b`` may reach.
* ``beach_placed``: each actor's entry again under its node (``<node>.<realm>.<uid>``:
  `subjects.placed_key`), written and deleted with the others, so that a watch of ``<node>.>``
  holds exactly that node's actors.

`DirectoryView` watches the registry and the actor directory and keeps them in memory, so routing
and ``getDirectory()`` never wait on a lookup. An actor host's view is *partial*: it watches no
actor entry until one of its actors' handles asks for a category (`DirectoryView.want`), then that
category's entries only (a watch of ``beach_members`` filtered by realm and category). A node
agent's view is partial too, with its own node's actors (a watch of ``beach_placed`` filtered by
node, ``mine``), except while it holds the supervisor lease or is its standby: then it holds the
whole directory (`DirectoryView.whole`, awaited by the supervisor before it acts). So a spawn or a
stop is delivered to the clients, the lease holder and its standby, the actor's own agent and the
hosts that call its categories, not to every process. While a node of the previous release (which
writes neither ``beach_members`` nor ``beach_placed``) is in the registry, a partial view watches
the whole actor directory instead, for the rest of its life.

Writes that the caller itself made (spawn, stop) are applied to a whole view at once, ordered by
KV revision, so a client reads its own writes. Nodes' load figures (CPU, memory, actors) travel on
their own subject (``beach.stats.node.<node>``): a view follows them
only once asked to (`DirectoryView.follow_load`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from beach import wire
from beach.bus.connection import JS_TIMEOUT, through_election
from beach.bus.kvwatch import BucketWatch
from beach.errors import BeachError, BusError
from beach.state import records
from beach.state.records import ActorEntry, NodeEntry, NodeLoad
from beach.wire import subjects

log = logging.getLogger("beach.directory")

HEARTBEAT = 1.0  # a node's liveness beat, and its load figures, every second
# The lease holder (and its standby) remove a node from the registry once they have not heard its
# beat for this long; with their check every `CHECK` seconds and the purge's write, a node that dies
# is out of every view within `FAILURE_DETECTION` seconds of its last beat.
SILENT = 3.0
CHECK = 0.25
FAILURE_DETECTION = 4.0
# A node the lease holder has not heard for this long (1.5 periods) is late: it says so on
# ``beach.hb.late.<node>`` and no new actor is placed there (it may be dying: it leaves the registry
# only after SILENT). A view forgets a mark not said again within LATE_MARK seconds.
LATE = 1.5 * HEARTBEAT
LATE_MARK = 2.5 * HEARTBEAT
# How long a view keeps a node's word that JetStream takes no write (its beacon).
BEACON_SECONDS = 6.0


class _Held:
    """The actor entries of one filtered watch of a partial view: one category's (a filter of
    ``beach_members``), one actor's (``_ACTORS/<uid>``: its key of ``beach_actors``) or one node's
    (``<node>.>`` of ``beach_placed``: a node agent's own actors)."""

    __slots__ = ("keys", "watch", "entries", "ready", "task")

    def __init__(self, keys: str) -> None:
        self.keys = keys
        self.watch: BucketWatch
        self.entries: dict[str, tuple[int, ActorEntry]] = {}  # key → (when applied: `DirectoryView._applied`, entry)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None


class DirectoryView:
    """A live in-memory copy of the directory buckets, fed by KV watches: the whole actor
    directory, or (``partial``, with ``members_kv``) only the categories asked for (`want`) and,
    given ``mine`` (a node agent's view, with ``placed_kv``), node ``mine``'s actors; a partial
    view holds the whole directory for a while when asked to (`whole`)."""

    def __init__(self, actors_kv: KeyValue, nodes_kv: KeyValue,
                 connected: Callable[[], bool] = lambda: True, members_kv: KeyValue | None = None,
                 partial: bool = False, placed_kv: KeyValue | None = None, mine: str | None = None) -> None:
        self.connected = connected  # is this process's connection to NATS up now?
        self.actors_kv = actors_kv
        self.nodes_kv = nodes_kv
        self.members_kv = members_kv  # (node processes only: they write it)
        self.placed_kv = placed_kv  # (likewise)
        self.partial = partial and members_kv is not None
        """True while this view holds only the categories its process asked for (`want`) and its
        node's actors (``mine``)."""
        self.mine = mine if self.partial and placed_kv is not None else None
        self._made_partial = self.partial  # (a partial view goes back to partial after `whole`)
        self._previous = False  # a node of the previous release was registered: whole for good
        self._switching_lock = asyncio.Lock()  # one `whole` switch at a time
        self._applied = 0  # a count of the held entries applied (the newest of an actor's wins)
        self.switching: asyncio.Future[None] | None = None
        """While a partial view loads the whole directory instead (`_whole_after_all`): done then."""
        self._held: dict[str, _Held] = {}  # a watch's key filter → what it holds
        self._holders: dict[str, set[tuple[str, str]]] = {}  # uid → (filter, key) of each entry of it held
        self._switch: asyncio.Task[None] | None = None
        self._stopped = False
        self.actors: dict[str, ActorEntry] = {}   # uid → entry
        self.nodes: dict[str, NodeEntry] = {}     # node id → entry
        self._revisions: dict[str, int] = {}      # bucket/key → last revision applied
        self.generation = 0  # bumped on every change, so readers can cache what they derive
        self.departed: dict[str, float] = {}      # node id → when its entry went (monotonic)
        self._departures: dict[str, list[asyncio.Future[None]]] = {}  # node id → who waits for it to go
        self._whole = BucketWatch(actors_kv, self._apply_actor, self._resync_actors)
        self._watches = [BucketWatch(nodes_kv, self._apply_node)] + ([] if self.partial else [self._whole])
        # called with ("node" | "actor", id) after every change applied (and "load", node id, for
        # load figures, once followed)
        self.listeners: list[Callable[[str, str], None]] = []
        self._late: dict[str, float] = {}  # node id → when the lease holder last said its beat is late
        self._down: tuple[str, float] | None = None  # a node's word that JetStream takes no write, and when
        self.loads: dict[str, NodeLoad] = {}  # node id → its latest load figures (once followed)
        self._load_sub: Any = None
        self.reads = frozenset(wire.REQUEST_FORMATS)
        """The request formats every live node reads (`beach.wire.pack_request` sends the newest of
        them); a node of the previous release (its entry says nothing) reads format 1 only."""
        self.traced = True
        """Every live node reads requests of format 2 (`beach.wire.TRACED`: with their trace context)."""

    def _notify(self, kind: str, ident: str) -> None:
        for listener in self.listeners:
            try:
                listener(kind, ident)
            except Exception:
                log.exception("a directory listener failed")

    async def start(self) -> None:
        """Start watching the registry and the actor directory (a partial view: none of it yet);
        return once the current contents are loaded."""
        for watch in list(self._watches):
            await watch.start()
        if self.mine is not None and self.switching is None:  # (a node agent's own actors)
            assert self.placed_kv is not None
            keys = subjects.placed_keys(self.mine)
            held = self._hold(self.placed_kv, keys)
            await asyncio.shield(held.ready)
            if self._held.get(keys) is not held:
                raise BusError(f"cannot load node {self.mine}'s actors from the directory")
        if self.switching is not None:  # a node of the previous release is registered: the whole directory
            await asyncio.shield(self.switching)

    async def stop(self) -> None:
        """Stop watching (and following load figures)."""
        self._stopped = True
        if self._switch is not None:
            self._switch.cancel()
        if self.switching is not None and not self.switching.done():
            self.switching.set_result(None)  # (nobody waits for ever on a view that stopped)
        if self._load_sub is not None:
            try:
                await self._load_sub.unsubscribe()
            except Exception:  # the connection may be gone
                pass
            self._load_sub = None
        held, self._held = list(self._held.values()), {}
        for watch in self._watches + [h.watch for h in held]:
            await watch.stop()

    # ---- a partial view: the categories asked for ----

    def want(self, realm: str, category: str) -> asyncio.Future[None] | None:
        """Have this view hold the live actors of ``category`` in ``realm`` from now on (on the
        loop's thread). Return None if it holds them already, else a future done once they are
        loaded (or could not be: the watch is tried again at the next call). Raises `CategoryError`
        for a category beach cannot route."""
        if self.switching is not None:
            return self.switching
        if not self.partial:
            return None
        uid = subjects.actor_uid(category)
        kv: KeyValue | None = self.actors_kv
        if uid is not None:
            keys = subjects.actor_key(realm, uid)
        else:
            kv, keys = self.members_kv, subjects.member_keys(realm, category)
            # a watch of "r.a.>" holds "r.a.b.>" already
            keys = next((k for k in self._held if k.endswith(".>") and keys.startswith(k[:-1])), keys)
        assert kv is not None
        held = self._hold(kv, keys)
        return None if held.ready.done() else held.ready

    def _hold(self, kv: KeyValue, keys: str) -> _Held:
        """The watch of ``keys`` in ``kv`` (started now if there is none yet)."""
        held = self._held.get(keys)
        if held is None:
            new = held = self._held[keys] = _Held(keys)
            held.watch = BucketWatch(kv, lambda entry: self._apply_held(new, entry),
                                     lambda present: self._resync_held(new, present), keys)
            held.task = asyncio.get_running_loop().create_task(self._start_held(held))
        return held

    async def _start_held(self, held: _Held) -> None:
        try:
            await held.watch.start()
        except Exception as err:  # (the bus is away): forgotten, so that the next call tries again
            log.warning("cannot watch the directory's %s: %s", held.keys, err)
            if self._held.get(held.keys) is held:
                del self._held[held.keys]
        if not held.ready.done():
            held.ready.set_result(None)

    def _apply_held(self, held: _Held, entry: Any) -> None:
        if self._held.get(held.keys) is not held:
            return  # (stopped)
        key = entry.key
        actor = None
        if entry.operation not in (KV_DEL, KV_PURGE) and entry.value:
            try:
                actor = records.decode(ActorEntry, entry.value, key)
                if key not in actor_keys(actor):
                    raise records.RecordError(f"actor record {key}: its realm, categories and uid say other keys")
            except records.RecordError as err:  # a bad value: the actor is not known there
                records.reject(entry.bucket or "beach_members", key, err)
                actor = None
        uid = subjects.key_uid(key)
        holders = self._holders.setdefault(uid, set())
        if actor is None:
            held.entries.pop(key, None)
            holders.discard((held.keys, key))
        else:
            self._applied += 1
            held.entries[key] = (self._applied, actor)
            holders.add((held.keys, key))
        self._settle(uid)

    def _resync_held(self, held: _Held, present: set[str]) -> None:
        for key in [k for k in held.entries if k not in present]:
            del held.entries[key]
            uid = subjects.key_uid(key)
            self._holders.get(uid, set()).discard((held.keys, key))
            self._settle(uid)

    def _settle(self, uid: str) -> None:
        """``actors[uid]``: the newest of its entries the watches hold (the last applied: they come
        from several buckets, whose revisions do not compare), or none. (While the view holds the
        whole directory, that watch says what ``actors`` holds.)"""
        holders = self._holders.get(uid)
        entries = [self._held[f].entries[k] for f, k in holders or () if f in self._held and k in self._held[f].entries]
        if not entries:
            self._holders.pop(uid, None)
        if not self.partial:
            return
        if entries:
            self.actors[uid] = max(entries, key=lambda found: found[0])[1]
        else:
            self.actors.pop(uid, None)
        self.generation += 1
        if self.listeners:
            self._notify("actor", uid)

    async def whole(self, on: bool) -> None:
        """Hold the whole actor directory (``on``), returning once all of it is loaded; or, a view
        made partial, go back to holding only what it held before (the categories asked for, its
        node's actors: those watches go on meanwhile). A node agent holds the whole directory while
        it holds the supervisor lease or is its standby. Nothing changes while a node of the
        previous release keeps the view whole for good (`_whole_after_all`). Raises `BusError` (or
        a NATS error) if the directory cannot be loaded: the view stays partial then."""
        async with self._switching_lock:
            if on and self.partial:
                self.partial = False  # (`apply_actor` takes the whole watch's entries from now on)
                try:
                    await self._whole.start()
                except BaseException:
                    self._back_to_partial()
                    raise
                self._watches.append(self._whole)
                if self._stopped:  # (stopped meanwhile: `stop` did not see this watch)
                    await self._whole.stop()
                log.info("this process holds every actor entry")
            elif not on and not self.partial and self._made_partial and not self._previous:
                self._watches.remove(self._whole)
                await self._whole.stop()
                self._back_to_partial()
                log.info("this process holds its own actors' entries only")

    def _back_to_partial(self) -> None:
        self.partial = True
        # the whole watch's revisions go with it (a later whole watch delivers them again)
        self._revisions = {slot: revision for slot, revision in self._revisions.items() if not slot.startswith("a/")}
        for uid in set(self.actors) | set(self._holders):
            self._settle(uid)

    def _whole_after_all(self) -> None:
        """A node that writes no ``beach_members`` (the previous release) is registered: watch the
        whole actor directory instead (calls wait for it: `switching`), for the rest of this view's life."""
        self._previous = True
        if self.switching is not None:
            return
        switching = self.switching = asyncio.get_running_loop().create_future()
        log.warning("a node of the previous release is in the registry: this process watches every actor entry")

        async def switch() -> None:
            while True:
                try:
                    await self.whole(True)
                    break
                except Exception as err:  # the bus is away: try again (calls wait meanwhile)
                    log.warning("cannot watch the actor directory: %s", err)
                    await asyncio.sleep(1.0)
            held, self._held, self._holders = list(self._held.values()), {}, {}
            for h in held:
                await h.watch.stop()
                if not h.ready.done():
                    h.ready.set_result(None)
            switching.set_result(None)
            self.switching = None

        self._switch = asyncio.get_running_loop().create_task(switch())

    # ---- what travels apart from the registry: late marks, beacons, load figures ----

    def mark_late(self, node_id: str, late: bool) -> None:
        """The lease holder says node ``node_id``'s beat is late (``late``) or heard again: no new
        actor is placed there while the mark stands (`unavailable`)."""
        if late:
            self._late[node_id] = time.monotonic()
        else:
            self._late.pop(node_id, None)

    def beacon(self, node_id: str, reason: str) -> None:
        """Node ``node_id`` says JetStream cannot take its writes (it has lost its quorum), and why:
        `jetstream_down` says ``reason`` for a while."""
        self._down = (reason, time.monotonic())

    @property
    def jetstream_down(self) -> str | None:
        """Why nothing can be written to JetStream now, as a node said it within `BEACON_SECONDS`
        seconds (None: no node said so)."""
        if self._down is not None and time.monotonic() - self._down[1] < BEACON_SECONDS:
            return self._down[0]
        return None

    async def follow_load(self, nc: Client, unseal: Callable[[Any], bytes]) -> None:
        """Start following every node's load figures (``beach.stats.node.*``, every second), which
        `health` merges into the nodes' entries; at once if already following. ``unseal`` opens a
        message (`Session.unseal`)."""
        if self._load_sub is not None:
            return

        async def take(msg: Any) -> None:
            try:
                self.take_load(records.decode(NodeLoad, unseal(msg), msg.subject))
            except (ValueError, TypeError):  # refused by the seal, or not load figures: skip them
                return

        self._load_sub = await nc.subscribe(subjects.NODE_STATS, cb=take)

    @property
    def following_load(self) -> bool:
        """True once `follow_load` started."""
        return self._load_sub is not None

    def take_load(self, load: NodeLoad) -> None:
        """Keep node ``load['node']``'s load figures (the newest only)."""
        node_id = load.node
        known = self.loads.get(node_id)
        if known is not None and known.t > load.t:
            return
        self.loads[node_id] = load
        if self.listeners and node_id in self.nodes:
            self._notify("load", node_id)

    def health(self, node_id: str) -> NodeEntry | None:
        """Node ``node_id``'s registry entry with its latest load figures merged in (those it wrote
        with its entry, when none newer were heard); None if it is not in the registry."""
        entry = self.nodes.get(node_id)
        if entry is None:
            return None
        load = self.loads.get(node_id)
        if load is None or load.t < entry.updated:
            return entry
        hosts = {host: {**about, "n_actors": load.hosts.get(host, about.get("n_actors", 0))}
                 for host, about in entry.hosts.items()}
        return msgspec.structs.replace(entry, cpu=load.cpu, mem=load.mem, mem_available=load.mem_available,
                                       n_actors=load.n_actors, actors_by_realm=load.actors_by_realm, hosts=hosts,
                                       updated=load.t)

    def _resync_actors(self, keys: set[str]) -> None:
        """The actor bucket's current keys, after a (re)start: entries this view holds that are not
        among them were deleted while it was not following. (A partial view: that watch has just
        been stopped again: `whole`.)"""
        if self.partial:
            return
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
        self._late.pop(node_id, None)
        self.loads.pop(node_id, None)
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
            self.nodes[node_id_changed] = node
            if self._made_partial and not node.indexed and not self._previous:
                self._whole_after_all()
            self._formats()
            self.departed.pop(node_id_changed, None)
        if len(self.nodes) != known:  # (an entry written again changes no membership: joins and leaves do)
            self.generation += 1
        if self.listeners:
            self._notify("node", node_id_changed)

    def _formats(self) -> None:
        self.reads = frozenset(wire.REQUEST_FORMATS).intersection(
            *(node.reads or (wire.VERSION,) for node in self.nodes.values()))
        self.traced = wire.TRACED in self.reads

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
        if "." not in entry.key or self.partial:  # (a partial view: the whole watch's last entries as it stops)
            return
        self.apply_actor(entry.key, entry.revision, actor)
        if removed and self._revisions.get(f"a/{entry.key}", 0) <= entry.revision:
            # the (ordered) watch is past every write of this key: nothing older can arrive now
            self._revisions.pop(f"a/{entry.key}", None)

    def apply_actor(self, key: str, revision: int, actor: ActorEntry | None) -> None:
        """Apply one actor entry (None: removed) at ``revision``, unless a newer one is known (a
        partial view takes its categories' entries from their watches only)."""
        if self.partial or not self._newer("a", key, revision):
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
        """The registered nodes that take no new actor now, each with why: stopping, or its beat is
        late (the lease holder said so within `LATE_MARK` seconds: a hung or dying agent)."""
        now = time.monotonic()
        away = {n: "is stopping" for n, entry in self.nodes.items() if entry.stopping}
        away.update({n: f"has sent no heartbeat for over {LATE:g}s" for n, when in self._late.items()
                     if n in self.nodes and n not in away and now - when < LATE_MARK})
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

def actor_keys(actor: ActorEntry) -> set[str]:
    """Every key an actor's entry is written under: its own (``beach_actors``), one per category
    (``beach_members``) and one under its node (``beach_placed``)."""
    return {subjects.actor_key(actor.realm, actor.uid), subjects.placed_key(actor.node, actor.realm, actor.uid),
            *(subjects.member_key(actor.realm, c, actor.uid) for c in actor.categories)}


async def put_actor(kv: KeyValue, actor: ActorEntry, refused: Callable[[], str | None] = lambda: None,
                    members: KeyValue | None = None, before: list[str] | None = None,
                    placed: KeyValue | None = None) -> tuple[str, int]:
    """Write an actor entry, and then (``members`` given) its entry under each of its categories
    and (``placed`` given) under its node, and delete those of the categories it had ``before``
    and has no more; return ``(key, revision)`` of its own. A write that meets a leader election
    is made again (`through_election`), unless ``refused()`` says why not. When one of the others
    cannot be written, its own is deleted again (best effort) and the error raised."""
    key = subjects.actor_key(actor.realm, actor.uid)
    body = wire.pack(actor)
    revision = await through_election(lambda: kv.put(key, body), refused=refused)
    if members is not None:
        def put(bucket: KeyValue, other: str) -> Awaitable[int]:
            return through_election(lambda: bucket.put(other, body), refused=refused)

        keys = [(members, subjects.member_key(actor.realm, c, actor.uid)) for c in actor.categories]
        if placed is not None:
            keys.append((placed, subjects.placed_key(actor.node, actor.realm, actor.uid)))
        try:
            await asyncio.gather(*(put(bucket, other) for bucket, other in keys))
        except BaseException:  # taken back out (what is left, the next sweep finds: its own entry stays)
            await asyncio.gather(*(bucket.delete(other) for bucket, other in keys), return_exceptions=True)
            with contextlib.suppress(Exception):
                await kv.delete(key)
            raise
        dropped = [c for c in before or () if c not in actor.categories]
        await asyncio.gather(*(members.delete(subjects.member_key(actor.realm, c, actor.uid)) for c in dropped))
    return key, revision


async def delete_actor(nc: Client, kv: KeyValue, realm: str, uid: str, members: KeyValue | None = None,
                       categories: Sequence[str] = (), placed: tuple[KeyValue, str] | None = None) -> tuple[str, int]:
    """Delete an actor entry, its entries under ``categories`` (``members`` given) and under its
    node (``placed``: the bucket and the node) first (while one of those stays, so does its own,
    which the next sweep finds); return ``(key, revision)`` of the delete marker of its own."""
    others = [members.delete(subjects.member_key(realm, c, uid)) for c in categories] if members is not None else []
    if placed is not None:
        others.append(placed[0].delete(subjects.placed_key(placed[1], realm, uid)))
    await asyncio.gather(*others)
    key = subjects.actor_key(realm, uid)
    ack = await nc.jetstream(timeout=JS_TIMEOUT).publish(f"$KV.{kv._name}.{key}", b"", headers={"KV-Operation": "DEL"})
    return key, ack.seq


async def put_node(kv: KeyValue, node: NodeEntry) -> int:
    """Write a node's registry entry (no TTL: the lease holder removes a silent node); return its
    revision. A write that meets a leader election is made again."""
    key = subjects.escape(node.id)
    body = wire.pack(node)
    return await through_election(lambda: kv.put(key, body))


async def delete_node(nc: Client, kv: KeyValue, node_id: str) -> None:
    """Remove a node entry at once (graceful leave)."""
    await kv.purge(subjects.escape(node_id))
