"""The supervisor: keeps the desired state true — restarts supervised actors, re-places them when
their node is lost, and makes the cluster match the patrol specs.

Every node agent runs one; only the holder of the lease in the desired-state bucket acts, so the
cluster has one supervisor at a time and keeps one as long as any node agent lives. The lease is
read from the desired-state copy the supervisor watches anyway (`desired.Mirror`). When its holder
dies, its standby (`nodeagent.liveness.standby`) removes it from the registry and takes the lease at
once; were the standby gone too, any agent takes it once it has not been renewed for
`desired.LEASE_SECONDS`.

The holder and its standby hold the whole actor directory; every other agent's view holds its own
node's actors only (`DirectoryView.whole`, switched each round as the roles move): an agent that
takes the lease loads the whole directory before its first round acts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from msgspec.structs import replace

from beach import bus
from beach.backoff import backoff as exponential
from beach.client.core import AsyncBeach
from beach.client.runner import Background
from beach.state import desired, patrol
from beach.state.desired import Lease, Mirror, SupervisionRecord
from nodeagent import liveness

log = logging.getLogger("beach.supervisor")

TICK = 0.5
UNSEEN_GRACE = 2.0       # an incarnation never seen live gets this long to show up in the view
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
SCALE_DOWN_GRACE = 3.0   # a patrol entry must be over its target this long before actors are stopped
NODE_GRACE = 1.0         # a node whose entry expired counts as lost one heartbeat later (a stalled heartbeat)


def backoff(failures: int) -> float:
    """Seconds to wait before the next attempt after ``failures`` recent ones (0 for the first)."""
    return 0.0 if failures == 0 else exponential(failures - 1, BACKOFF_BASE, BACKOFF_MAX)


class Supervisor:
    """Acts on the desired state while this node agent holds the supervisor lease: through
    ``client`` (the agent's own, over its session), as node ``node_id``."""

    def __init__(self, client: AsyncBeach, node_id: str, writable: Callable[[], bool] = lambda: True) -> None:
        self.client = client
        self.writable = writable  # False while JetStream cannot take a write (a lost quorum): rounds wait
        self.session = client.session
        self.node_id = node_id
        self.view = client.session.view
        self.kv: Any = None
        self.lease: Lease | None = None
        self.mirror: Mirror | None = None
        self.leading = False
        self._seen: set[str] = set()
        self._noticed: dict[str, float] = {}
        self._busy: set[str] = set()
        self._patrol_pending: dict[str, int] = {}
        self._patrol_failures: dict[str, list[float]] = {}
        self._over_since: dict[str, float] = {}
        self._background = Background()

    async def run(self) -> None:
        """Take the lease when it is free and reconcile every `TICK` seconds while holding it."""
        self.kv = await bus.open_desired(self.session.nc, self.session.config)
        self.mirror = Mirror(self.kv)
        await self.mirror.start()
        self.lease = Lease(self.kv, self.node_id, self.mirror)
        failing = ""  # the error of the rounds failing now: said once while it lasts (an election: every round)
        while True:
            if not self.writable():
                await asyncio.sleep(TICK)
                continue
            try:
                leading = await self.lease.acquire(free=self._holder_gone())
                if leading != self.leading:
                    log.info("node %s %s the supervisor lease", self.node_id, "holds" if leading else "lost")
                    self.leading = leading
                # the holder and its standby hold the whole directory, every other agent its own
                # node's actors; the holder acts only once all of it is loaded (from a half-loaded
                # view it would re-place or stop actors that run)
                await self.view.whole(leading or self.standby())
                if leading:
                    await self.reconcile()
                else:
                    self._watch()
                if failing:
                    log.info("supervisor rounds work again")
                failing = ""
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if str(err) != failing:
                    log.warning("supervisor round failed: %s (said once while it lasts)", err)
                failing = str(err)
            await asyncio.sleep(TICK)

    def holder(self) -> str | None:
        """The node holding the lease now, as this agent knows it (None: nobody, or not known yet)."""
        current = self.lease.current() if self.lease is not None else None
        return (current[0] or None) if current is not None else None

    def standby(self) -> bool:
        """True if this agent is the lease holder's standby (it listens to the nodes' beats too)."""
        members = [n for n, entry in self.view.nodes.items() if not entry.stopping]
        return not self.leading and liveness.standby(self.holder(), members) == self.node_id

    def _holder_gone(self) -> bool:
        """True if this agent is the standby and the holder has left the registry (removed as
        silent, or gone): the lease is taken at once, not when it runs out."""
        holder = self.holder()
        return holder is not None and holder not in self.view.nodes and holder in self.view.departed \
            and self.standby()

    async def stop(self) -> None:
        """Stop acting and hand the lease over."""
        await self._background.cancel()
        if self.mirror is not None:
            await self.mirror.stop()
        if self.leading and self.lease is not None and self.session.nc.is_connected:  # else it runs out
            try:  # to its standby, which hears the beats already (not to every agent at once)
                members = [n for n, entry in self.view.nodes.items() if not entry.stopping]
                await self.lease.release(liveness.standby(self.node_id, members))
            except Exception:
                pass

    async def reconcile(self) -> None:
        """One round: every supervised actor, every patrol spec."""
        assert self.mirror is not None
        now = time.time()
        records = self.mirror.under("sup.", SupervisionRecord)
        for key, (record, revision) in records.items():
            await self._supervise(key, record, revision, now)
        await self._stop_duplicates(records)
        # forget what concerns records that are gone
        self._seen &= {record.uid for record, _ in records.values()}
        self._noticed = {k: t for k, t in self._noticed.items() if k in records}
        specs = [spec for spec, _ in self.mirror.under("patrol.", patrol.PatrolSpec).values()]
        for spec in specs:
            await self._patrol(spec, now)
        await self._stop_unowned(specs)

    # ---------------------------------------------------------------- supervised actors

    def _watch(self) -> None:
        """While another agent supervises: note which incarnations run, so that on taking over this
        one restarts an actor that died meanwhile at once (not after `UNSEEN_GRACE`). (The standby
        sees them all; another agent's view, its own node's only: it gives the others their grace.)"""
        assert self.mirror is not None
        uids = {record.uid for record, _ in self.mirror.under("sup.", SupervisionRecord).values()}
        self._seen = {uid for uid in self._seen if uid in uids} | {uid for uid in uids if self._alive(uid)}

    def _alive(self, uid: str) -> bool:
        actor = self.view.actors.get(uid)
        return actor is not None and not self.view.lost(actor, NODE_GRACE)

    async def _supervise(self, key: str, record: SupervisionRecord, revision: int, now: float) -> None:
        if record.state != "running" or key in self._busy:
            return
        uid = record.uid
        if self._alive(uid):
            self._seen.add(uid)
            self._noticed.pop(key, None)
            if record.last_error or record.waiting_for:  # it runs (again): that is past
                await desired.update(self.kv, key, replace(record, last_error=None, waiting_for=None), revision)
            return
        if uid not in self._seen and now - self._noticed.setdefault(key, now) < UNSEEN_GRACE:
            return  # written just now by a client whose spawn the view has not shown yet
        restarts = [t for t in record.restarts if now - t < record.restart_window]
        spawn = record.spawn
        if len(restarts) >= record.max_restarts:
            log.error("actor %s (%s) restarted %d times in %ss: marked failed", record.sid, spawn.actorName,
                      len(restarts), record.restart_window)
            await desired.update(self.kv, key, replace(record, state="failed", restarts=restarts, failed_at=now),
                                 revision)
            return
        if now < (record.last_restart or 0.0) + backoff(len(restarts)):
            return
        self._busy.add(key)
        self._background.start(self._restart(key, record, revision, restarts, now))

    async def _restart(self, key: str, record: SupervisionRecord, revision: int, restarts: list[float],
                       now: float) -> None:
        try:
            spawn = record.spawn
            # the version it ran before, not whatever the realm's current one is now
            response = await self.client.place_actor(
                spawn if record.version is None else replace(spawn, version=record.version))
            if not response.isSuccess and isinstance(response.data, dict) and response.data.get("unavailable"):
                await self._wait(key, record, revision, response.error)
                return
            record = replace(record, restarts=[*restarts, now], last_restart=now, waiting_for=None)
            if response.isSuccess:
                record.uid, record.version, record.last_error = response.data["uid"], response.data["version"], None
                self._seen.add(record.uid)
                log.info("restarted actor %s (%s) as %s on %s", record.sid, spawn.actorName, record.uid,
                         response.data["node"])
            else:
                record.last_error = response.error
                log.warning("restarting actor %s (%s) failed: %s", record.sid, spawn.actorName, response.error)
            if await desired.update(self.kv, key, record, revision) is None and response.isSuccess:
                # the record moved meanwhile (stopped on purpose, or another supervisor restarted
                # it): unless it names this incarnation, this one is a duplicate and must go
                current = await desired.get(self.kv, key, SupervisionRecord)
                if current is None or current[0].uid != record.uid:
                    await self.client.stopActors(withId=record.uid, keepSupervision=True)
        finally:
            self._busy.discard(key)

    async def _wait(self, key: str, record: SupervisionRecord, revision: int, error: str) -> None:
        """No node can take the actor now (none is up, or the one it is pinned to by host_affinity is
        away): not the actor's failure, so nothing is counted; it is tried again next round, and its
        record says what it waits for."""
        spawn = record.spawn
        hint = spawn.strategy_hint if spawn.strategy == "host_affinity" else None
        if (record.waiting_for, record.last_error) == (hint, error):
            return
        if hint:
            log.warning("actor %s (%s) waits for node %s: %s", record.sid, spawn.actorName, hint, error)
        else:
            log.warning("actor %s (%s) waits for a node: %s", record.sid, spawn.actorName, error)
        await desired.update(self.kv, key, replace(record, waiting_for=hint, last_error=error), revision)

    async def _stop_duplicates(self, records: dict[str, tuple[SupervisionRecord, int]]) -> None:
        """Stop older incarnations of supervised actors that came back: a node that was cut off
        (paused, partitioned) keeps running its actors while the supervisor starts them elsewhere,
        and they reappear with it. The record names the incarnation that counts; one started before
        it is a leftover. (A newer one is a replacement whose record is being moved to it.)"""
        current = {record.sid: record.uid for record, _ in records.values() if record.state == "running"}
        stale = []
        for actor in self.view.live():
            sid = actor.sid
            if not sid or sid not in current or actor.uid == current[sid]:
                continue
            keeper = self.view.actors.get(current[sid])
            if keeper is not None and self.view.is_live(keeper) and actor.started < keeper.started:
                stale.append(actor.uid)
        if stale:
            log.warning("stopping %d leftover incarnation(s) of supervised actors: %s", len(stale), ", ".join(stale))
            await self.client.stopActors(withId=stale, keepSupervision=True)

    # ---------------------------------------------------------------- patrol

    async def _patrol(self, spec: patrol.PatrolSpec, now: float) -> None:
        nodes = self.view.nodes
        cores = sum(int(n.cores or 1) for n in nodes.values())
        for entry in spec.actors:
            tag = patrol.owner_tag(spec.owner, entry.name)
            target = patrol.instances(entry.instances, len(nodes), cores)
            live = [a for a in self.view.actors.values()
                    if a.owner == tag and a.realm == spec.realm and not self.view.lost(a, NODE_GRACE)]
            pending = self._patrol_pending.get(tag, 0)
            missing = target - len(live) - pending
            if missing > 0:
                self._over_since.pop(tag, None)
                failures = [t for t in self._patrol_failures.get(tag, []) if now - t < 60]
                self._patrol_failures[tag] = failures
                if failures and now < failures[-1] + backoff(len(failures)):
                    continue
                self._patrol_pending[tag] = pending + missing
                self._background.start(self._scale_up(spec.realm, tag, entry, missing))
            elif missing < 0 and not pending:
                if now - self._over_since.setdefault(tag, now) >= SCALE_DOWN_GRACE:
                    # the oldest go first: an actor being recycled is already on its way out
                    oldest = sorted(live, key=lambda a: a.started)[:-missing]
                    log.info("patrol %s: %d over target, stopping the oldest", tag, -missing)
                    await self.client.stopActors(withId=[a.uid for a in oldest])
                    self._over_since.pop(tag, None)
            else:
                self._over_since.pop(tag, None)

    async def _scale_up(self, realm: str, tag: str, entry: patrol.PatrolEntry, count: int) -> None:
        try:
            spec = entry.spec(realm, owner=tag)
            for _ in range(count):  # one at a time, so each placement sees the previous ones
                response = await self.client.place_actor(spec)
                self._patrol_pending[tag] -= 1
                if not response.isSuccess:
                    self._patrol_failures.setdefault(tag, []).append(time.time())
                    log.warning("patrol %s: spawning %s failed: %s", tag, entry.actorName, response.error)
                    break
        finally:
            self._patrol_pending.pop(tag, None)

    async def _stop_unowned(self, specs: list[patrol.PatrolSpec]) -> None:
        """Stop patrol actors whose spec or entry was removed."""
        wanted = {patrol.owner_tag(s.owner, e.name) for s in specs for e in s.actors}
        stale = [a.uid for a in self.view.live()
                 if (a.owner or "").startswith("patrol/") and a.owner not in wanted]
        if stale:
            log.info("patrol: stopping %d actors of removed entries", len(stale))
            await self.client.stopActors(withId=stale)
