"""The node agent: one per machine. It registers the node, runs its actor hosts and executes
spawn and stop requests; it stays off the request path.

Control subjects ``beach.n.<node>.<op>``: ``spawn``, ``stop``, ``flush``, ``associate``,
``disassociate``, ``state`` (admin-gated when the config has an ``admin_token``), ``info``, and
``hello`` (from its own hosts).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import time
import uuid
from typing import Any

import nats.errors
from msgspec.structs import replace

from beach import bus, logs, wire
from beach import loop as beach_loop
from beach.bus import bodies
from beach.client.core import AsyncBeach
from beach.client.runner import Background, Runner
from beach.client.session import Session
from beach.code import store as codestore
from beach.config import Config, warn_ignored
from beach.errors import BeachError, BusError
from beach.operations.rollout import LEAVE_GRACE
from beach.security import audit, authority
from beach.state import clusterconfig, desired, directory, records, stateview
from beach.state.actorstate import StateStore, Turn
from beach.state.records import (
    ActorArgs,
    CategoryArgs,
    ConfigArgs,
    CordonArgs,
    DesiredArgs,
    HelloArgs,
    NodeEntry,
    NodeLoad,
    RecordError,
    RemoveNodeArgs,
    ReplaceArgs,
    StateArgs,
    StateStats,
    StopArgs,
)
from beach.state.spawn import SpawnSpec
from beach.wire import Reply, subjects
from nodeagent import control, health
from nodeagent.busserver import NodeBus
from nodeagent.cleanup import ORPHAN_CHECK, Cleanup
from nodeagent.control import ControlServer, OutOfScope, in_scope, scope
from nodeagent.hosts import HOST_STOP_SECONDS, HostPool
from nodeagent.liveness import Liveness
from nodeagent.recycling import RECYCLE_CHECK, Recycler
from nodeagent.supervisor import Supervisor

log = logging.getLogger("beach.nodeagent")

HOST_CHECK = 0.25  # how often exited actor hosts are looked for (and replaced)
REPUBLISH_CHECK = 1.0  # how often this node's actors are looked for in the directory (and written back)
HOST_CALL_SECONDS = 10.0  # an actor host's answer to spec, associate, stack
HOST_INFO_SECONDS = 5.0  # an actor host's load figures (asked of every host at once)
SPAWN_MARGIN = 5.0  # a spawn at a host: the actor's init() timeout, plus loading its class and publishing



class NodeAgent(ControlServer):
    """Runs one node: its registry entry and its control API, over its actor hosts (a `HostPool`),
    the clean-up after dead hosts and vanished nodes (`Cleanup`), the recycling of drainable
    actors (`Recycler`) and, on the node that holds the lease, supervision (`Supervisor`)."""

    kind = "node"
    privileged = authority.ADMIN_OPS

    def __init__(self, config: Config, node_id: str | None = None, log_dest: str | None = None) -> None:
        self.config = config
        self.admin_token = config.admin_token
        self.node_id = node_id or health.default_node_id()
        self.node_name_hint = node_id  # a server's name is made from the node's id, when it is given
        self.addresses = health.announced(config.interface)
        self.pool = HostPool(config, self.node_id, log_dest)
        self.stopping = asyncio.Event()
        self.background = Background()
        self.ready = asyncio.Event()  # set once the node is registered and its hosts are up
        self.started = time.time()
        self.bus_server: NodeBus | None = None  # this node's own NATS server (none where the operator runs NATS)
        self.session: Session
        self.cordoned = False  # no new actor is placed here (``beach drain``), until uncordoned
        self.spawning = 0  # spawns under way here now (the ``load`` operation says it)
        self._missing: set[str] = set()  # this node's actors its view missed at the last look (`republish`)
        self._registered = 0.0  # when this node last wrote its registry entry (monotonic)

    # ---------------------------------------------------------------- life

    async def run(self) -> None:
        """Start the node, serve until SIGTERM, SIGINT or SIGHUP (or `stopping` is set), then stop
        cleanly: every actor's ``deinit`` runs."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # a closed terminal stops it gracefully too
            loop.add_signal_handler(sig, self.stopping.set)
        warn_ignored(self.config)
        if self.config.nats.embedded:
            self.bus_server = NodeBus(self.config, self.node_id, self.node_name_hint)
        try:
            if self.bus_server is not None:
                await self.bus_server.start()  # from this thread: the servers die with it (PR_SET_PDEATHSIG)
            # its view holds this node's actors (the whole directory while it supervises: `Supervisor`)
            self.session = await Session.open(self.config, Runner(loop), f"beach-node {self.node_id}", self.node_id,
                                              partial=True, own=True)
            lost = control.lost_bus(self.session, self.stopping.set)  # deaf, the node stops (exit 1)
            if self.bus_server is not None:
                await self.bus_server.attach(self.session, self._leading)
            self.state = StateStore(self.session)
            self.sizes = stateview.SizeTracker(self.session, self.node_id)
            await self.session.nc.subscribe(stateview.PURGED_SUBJECT, cb=self._on_purged)
            await self._start_logs()
            self.cleanup = Cleanup(self.session, self.node_id, self.pool)
            await self.cleanup.previous_life()
            await self._read_cordon()
            try:
                await codestore.open_store(self.session, create=True)
            except Exception as err:  # deployed code will not load until a node makes it
                log.warning("cannot set up the code store %s: %s", codestore.CODE_BUCKET, err)
            try:
                await bodies.create(self.session.nc, self.config)
            except Exception as err:  # large payloads fail until a node makes it
                log.warning("cannot set up the payload store %s: %s", bodies.BUCKET, err)
            self.liveness = Liveness(self.session, self.node_id, self._listens,
                                     lambda: self.refusal("spawn") is None)
            await self.serve_control(subjects.node_subject(self.node_id, ""))
            health.sample()  # prime psutil's CPU counters
            await asyncio.gather(*(self.pool.start() for _ in range(self.config.processes)))
            # Register only now: a node in the registry must be able to take spawns.
            self.ready.set()
            try:
                await self.heartbeat()
            except Exception as err:  # JetStream still electing (this node restores its quorum): not fatal
                log.warning("first heartbeat failed: %s; the heartbeat loop registers this node", err)
            log.info("node %s up: %d actor hosts, NATS %s, announcing %s", self.node_id, self.config.processes,
                     ", ".join(self.config.nats.urls), ", ".join(self.addresses))
            exposed = bus.exposed(self.session.nc)
            notice = authority.open_notice(self.config, (), exposed)
            if notice:
                (log.warning if exposed else log.info)("%s", notice)
            self.client = AsyncBeach(self.session)
            self.recycler = Recycler(self.config, self.node_id, self.session.view, self.replace, self.background)
            self.supervisor = Supervisor(self.client, self.node_id, lambda: self.refusal("desired") is None)
            beating = loop.create_task(self._every(directory.HEARTBEAT, self.heartbeat))
            tasks = [loop.create_task(self._every(RECYCLE_CHECK, self.recycler.recycle_due)),
                     loop.create_task(self._every(HOST_CHECK, self.watch_hosts)),
                     loop.create_task(self._every(REPUBLISH_CHECK, self.republish)),
                     loop.create_task(self._every(ORPHAN_CHECK, self._orphans)),
                     loop.create_task(self._every(directory.CHECK, self.liveness.check)),
                     loop.create_task(self._every(stateview.SIZES_SECONDS, self.state_sizes)),
                     loop.create_task(self.supervisor.run())]
            await self.stopping.wait()
            for task in tasks:
                task.cancel()
            # say "stopping" first, so no new actor is placed here while the actors stop (they
            # leave the directory one by one, and their supervisor re-places them elsewhere); the
            # heartbeat goes on until the node leaves the registry
            if self.session.nc.is_connected:
                try:
                    await beach_loop.within(self.heartbeat(), directory.HEARTBEAT)
                except Exception as err:
                    log.warning("node %s could not say it is stopping: %s", self.node_id, err)
            await self.sizes.stop()
            await self.liveness.stop()
            await self.supervisor.stop()
            await self.shutdown(beating)
            logs.uninstall(self.log_handler)
            if lost:
                raise BusError(f"node {self.node_id} stops: the NATS server closed its connection for good ({lost[0]})")
        finally:
            if self.bus_server is not None:
                await self.bus_server.stop()

    def _leading(self) -> bool:
        supervisor: Supervisor | None = getattr(self, "supervisor", None)
        return supervisor is not None and supervisor.leading

    def _listens(self) -> str | None:
        """This agent's part in liveness: "holder" (of the supervisor lease), "standby", or None."""
        supervisor: Supervisor | None = getattr(self, "supervisor", None)
        if supervisor is None or self.stopping.is_set():
            return None
        return "holder" if supervisor.leading else "standby" if supervisor.standby() else None

    async def _orphans(self) -> None:
        """Collect the entries of actors whose node is gone: the lease holder deletes them (every
        agent keeps count of how long they have been orphans, so a new holder need not start over)."""
        await self.cleanup.orphans(act=self._leading())

    async def _start_logs(self) -> None:
        """Make sure the cluster's log stream exists with the config's limits, and send this agent's
        warnings there."""
        try:
            await logs.open_stream(self.session.nc, self.config,
                                   self.config.nats.kv_replicas or bus.auto_replicas(self.session.nc))
        except Exception as err:  # logs are a convenience: the node runs without them
            log.warning("cannot set up the log stream %s: %s", logs.STREAM, err)
        try:
            await audit.open_stream(self.session.nc, self.config.nats.kv_replicas or bus.auto_replicas(self.session.nc))
        except Exception as err:
            log.warning("cannot set up the audit stream %s: %s", audit.STREAM, err)
        self.log_handler = logs.ClusterLogHandler(logs.Source("sys", self.node_id, "agent"),
                                                  self.config.logs.rate, self.config.logs.burst)
        logs.install(self.log_handler, self.session.nc, self.config.sealer)

    async def _read_cordon(self) -> None:
        """Stay cordoned across a restart (maintenance may restart the agent)."""
        try:
            kv = await bus.open_desired(self.session.nc, self.config)
            self.cordoned = await desired.get(kv, desired.cordon_key(self.node_id), desired.Cordon) is not None
        except Exception as err:
            log.warning("cannot read whether node %s is cordoned: %s", self.node_id, err)
        if self.cordoned:
            log.warning("node %s is cordoned: no new actor is placed here ('beach uncordon' to undo)", self.node_id)

    async def _every(self, seconds: float, job: Any) -> None:
        """Run ``job`` every ``seconds``, on a fixed beat: a job that takes a while does not push
        the next one later (heartbeats stay one period apart, and others see them on time)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("%s failed: %s", job.__name__, err)
            due = max(due + seconds, loop.time())  # (a job longer than the period: no burst to catch up)
            await asyncio.sleep(due - loop.time())

    async def shutdown(self, beating: asyncio.Task[None] | None = None) -> None:
        """Stop every host (their actors' ``deinit`` runs), leave the registry, disconnect;
        ``beating``: the heartbeat task, ended just before the node leaves the registry."""
        log.info("node %s stopping", self.node_id)
        stopped = await self.pool.stop_all()
        if beating is not None:
            beating.cancel()
        down = self.refusal("stop")
        if self.session.nc.is_connected and down is None:
            await self.cleanup.dead_hosts(stopped)
            try:
                await directory.delete_node(self.session.nc, self.session.view.nodes_kv, self.node_id)
            except Exception as err:
                log.warning("could not remove node %s from the registry: %s", self.node_id, err)
        else:  # writes would only wait out their timeouts; the entry expires and others collect the rest
            log.warning("node %s leaves without %s: its registry entry will expire", self.node_id,
                        "NATS" if down is None else "writing to JetStream (it has lost its quorum)")
        await self.session.close()

    # ---------------------------------------------------------------- hosts

    async def watch_hosts(self) -> None:
        """Notice host processes that exited; clean up after them and replace shared ones."""
        dead = self.pool.reap(self.stopping.is_set())
        if not dead:
            return
        if not self.stopping.is_set():  # keep n_processes shared hosts (a failed start is retried here too)
            for _ in range(self.pool.shared_missing()):
                self.background.start(self._replace_host())
        await self.cleanup.dead_hosts(dead)
        await self.heartbeat()

    async def republish(self) -> None:
        """Have this node's hosts write back the directory entries of their actors that left the
        directory while they run (an entry lost in KV, or removed while this node seemed dead). A
        host's own view holds only the categories its actors call: this agent's holds this node's
        actors (by their entries under the node, ``beach_placed``, which every removal takes out
        with the others; the whole directory while it supervises). An actor missed at two looks in
        a row is asked for (a spawn under way is placed a moment before its entry is in the view);
        one its host no longer runs is no longer placed."""
        view = self.session.view
        missing = {uid for uid in self.pool.placed if uid not in view.actors}
        due, self._missing = missing & self._missing, missing
        for host, uids in self.pool.of(sorted(due), view).items():
            ok, error, data = await self._to_host(host, "republish", {"uids": uids}, HOST_CALL_SECONDS)
            if not ok:
                log.warning("host %s could not write its actors' entries back: %s", host, error)
                continue
            for uid in data.get("gone", []):
                self.pool.placed.pop(uid, None)

    async def _replace_host(self) -> None:
        try:
            await self.pool.start()
        except BeachError as err:
            log.error("could not replace a shared actor host: %s", err)

    # ---------------------------------------------------------------- replacement

    async def replace(self, uid: str, version: str | None = None, grace: float = 0.0, away: bool = False) -> Reply:
        """Replace one of this node's actors with a new one: same spec, strategy and supervision
        (running ``version`` of its realm's code, if given), started first; then the old one leaves
        the directory, keeps serving for ``grace`` seconds (clients that have not seen it leave
        yet still reach it) and stops gracefully, so no request is lost. ``away`` (a drain): an
        actor pinned here by ``host_affinity`` is placed by ``resource`` instead (it cannot stay)."""
        hosts = self._hosts_of([uid])
        if not hosts:
            return Reply(False, f"actor {uid} is not hosted on node {self.node_id}", {"gone": True})
        ok, error, data = await self._to_host(next(iter(hosts)), "spec", {"uid": uid}, HOST_CALL_SECONDS)
        if not ok:
            return Reply(False, error, {"gone": True})
        spec = replace(records.check(SpawnSpec, data["spec"], f"of actor {uid}"), uid=None, node=None)
        in_scope(spec.realm)
        old = self.session.view.actors.get(uid)
        if version is None and old is not None and old.version is not None:
            version = old.version  # a drain or a recycle keeps the version it runs
        if version is not None:
            spec.version = version
        if away and spec.strategy == "host_affinity":
            log.warning("actor %s is pinned to %s by host_affinity: its replacement goes where there is room",
                        uid, spec.strategy_hint)
            spec.strategy, spec.strategy_hint = "resource", None
        response = await self.client.place_actor(spec)
        if not response.isSuccess:
            st = response.data.get("st") if isinstance(response.data, dict) else None  # (init's traceback)
            return Reply(False, f"no replacement for actor {uid} started: {response.error}",
                         {"st": st} if isinstance(st, str) else {})
        new = response.data["uid"]
        if spec.sid:
            await self._move_supervision(spec.realm, spec.sid, uid, new, response.data["version"])
        await self._stop([uid], grace)
        return Reply(True, "", {"uid": new, "node": response.data["node"], "old": uid})

    async def op_replace(self, args: dict[str, Any]) -> Reply:
        """Replace actor ``uid`` (of this node) with one running ``version`` (see `replace`);
        reply ``{'uid': new, 'node', 'old'}``."""
        checked = records.check(ReplaceArgs, args)
        if checked.version is not None:
            subjects.check_version(checked.version)
        self._check_scope(checked.uid)
        return await self.replace(checked.uid, checked.version, LEAVE_GRACE if checked.grace is None else checked.grace,
                                  checked.away)

    async def op_cordon(self, args: dict[str, Any]) -> Reply:
        """Cordon this node (``on``: no new actor is placed here; kept across restarts in the
        desired state) or uncordon it."""
        if scope.get() is not None:
            raise OutOfScope("permission denied: cordoning a node is an operation on the whole cluster")
        on = records.check(CordonArgs, args).on
        kv = await bus.open_desired(self.session.nc, self.config)
        key = desired.cordon_key(self.node_id)
        if on:
            await desired.put(kv, key, desired.Cordon(node=self.node_id, who=control.caller.get(), when=time.time()))
        else:
            await desired.delete(kv, key)
        self.cordoned = on
        await self.heartbeat()
        return Reply(True, "", {"node": self.node_id, "cordoned": on})

    async def _move_supervision(self, realm: str, sid: str, old: str, new: str, version: str | None) -> None:
        """Point a supervised actor's record at its replacement ``new``, which runs ``version``."""
        kv = await bus.open_desired(self.session.nc, self.config)
        key = desired.supervision_key(realm, sid)
        while (current := await desired.get(kv, key, desired.SupervisionRecord)) is not None:
            record, revision = current
            moved = replace(record, uid=new, version=version)
            if record.uid != old or await desired.update(kv, key, moved, revision) is not None:
                return

    # ---------------------------------------------------------------- actor state

    async def state_sizes(self) -> None:
        """On the node holding the supervisor lease: publish the sizes of actor state
        (``beach.stats.state``) for every tool; elsewhere, do nothing."""
        sizes = await self._sizes_here()
        if sizes is None:
            return
        body = wire.pack(sizes)
        if len(body) <= (self.session.nc.max_payload or len(body)):
            await self.session.publish(stateview.STATS_SUBJECT, body)

    async def _sizes_here(self, wait: float = 10.0) -> StateStats | None:
        """The sizes of actor state, on the node holding the supervisor lease: it follows them from
        the first time they are needed once it holds the lease (the beat, or a tool's ``info`` just
        after the lease was taken), waiting up to ``wait`` seconds for the keys to be counted.
        None elsewhere (where it stops following), or while they are still being counted."""
        if not self._leading():
            if self.sizes.running:
                await self.sizes.stop()
            return None
        try:
            await self.sizes.start(wait)
            return await self.sizes.stats() if self.sizes.loaded else None
        except (BeachError, nats.errors.Error) as err:  # the bus: the next beat or info tries again
            log.warning("cannot count the sizes of actor state: %s", err)
            return None

    async def _on_purged(self, msg: Any) -> None:
        if self.sizes.running:
            try:
                notice = stateview.purged(self.session.unseal(msg, fresh=False))
            except (ValueError, TypeError):
                return  # refused by the seal: not a node's
            if notice is not None:
                self.background.start(self.sizes.rescan(notice))

    async def op_state(self, args: dict[str, Any]) -> Reply:
        """Change actor state as an admin: set keys (``put``: key → packed value, from a backup),
        ``delete`` keys, or ``purge`` a category (a realm without one; every realm, cluster-wide,
        without either)."""
        checked = records.check(StateArgs, args)
        realm, category = checked.realm, checked.category
        if realm is None and (scope.get() is not None or category is not None or not checked.purge):
            raise ValueError("a realm is needed (only a cluster-wide purge names none)")
        if realm is not None:
            in_scope(subjects.check_realm(realm))
        if checked.purge:
            await self.state.bucket()
            js = self.session.nc.jetstream(timeout=bus.JS_TIMEOUT)
            target = "every realm" if realm is None else f"realm {realm!r}"
            where = None
            if realm is not None:
                where = (f"{stateview.PREFIX}{subjects.state_scope(realm, category)}*" if category is not None
                         else f"{stateview.PREFIX}{subjects.escape(realm)}.>")
                target = f"category {category!r} of {target}" if category is not None else target
            await js.purge_stream(stateview.STREAM, subject=where)
            await self.session.publish(stateview.PURGED_SUBJECT, stateview.purge_notice(realm, category))
            log.warning("actor state of %s purged by %s", target, control.caller.get())
            return Reply(True, "", {"purged": target})
        if category is None:
            raise ValueError("a category is needed to set or delete keys")
        if not checked.put and not checked.delete:
            return Reply(True, "", {"put": 0, "deleted": 0})
        turn = Turn(None)
        user = f"op-{id(turn):x}"
        scope_ = self.state.scope(realm or "", category, user)
        try:
            for key, packed in checked.put.items():
                if not isinstance(packed, bytes):
                    raise ValueError(f"the value of state key {key!r} must be packed (bytes)")
                wire.unpack(packed)  # raises ValueError for bytes that are no value
                self.state.write(turn, scope_, subjects.state_token(key), packed)
            for key in checked.delete:
                self.state.write(turn, scope_, subjects.state_token(key), None)
            outcome = await self.state.commit(turn, None)
        finally:
            turn.finish()
            self.state.release(user)
        if outcome is not None:
            return Reply(False, f"actor state not changed: {outcome.error}", outcome.data)
        return Reply(True, "", {"put": len(checked.put), "deleted": len(checked.delete)})

    # ---------------------------------------------------------------- registry

    def _counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """This node's actors: ``({host: n}, {realm: n})``, as the directory says, with those spawned
        here whose entry the view does not show yet (a view holding this node's actors only takes
        no write of its own at once: `DirectoryView.apply_local`)."""
        mine = dict(self.pool.placed)
        mine.update({a.uid: (a.host, a.realm) for a in self.session.view.actors.values() if a.node == self.node_id})
        per_host: dict[str, int] = {}
        per_realm: dict[str, int] = {}
        for host, realm in mine.values():
            per_host[host] = per_host.get(host, 0) + 1
            per_realm[realm] = per_realm.get(realm, 0) + 1
        return per_host, per_realm

    def entry(self) -> NodeEntry:
        """This node's registry entry: identity, health, its hosts and how many actors it runs."""
        per_host, per_realm = self._counts()
        hosts = {h.id: {"pid": h.process.pid, "isolated": h.isolated, "n_actors": per_host.get(h.id, 0)}
                 for h in self.pool.running()}
        return NodeEntry(
            id=self.node_id, hostname=socket.gethostname(), addresses=self.addresses, pid=os.getpid(),
            started=self.started, updated=time.time(), hosts=hosts, n_actors=sum(per_realm.values()),
            actors_by_realm=per_realm, cordoned=self.cordoned, open=authority.open_node(self.config),
            stopping=self.stopping.is_set(), reads=list(wire.REQUEST_FORMATS), indexed=True,
            **health.sample(),
        )

    def load(self) -> NodeLoad:
        """This node's load figures now: CPU, memory, its actors (a spawn done here is counted at
        once: `_counts`), the spawns under way."""
        per_host, per_realm = self._counts()
        figures = health.sample()
        return NodeLoad(
            node=self.node_id, t=time.time(), cores=figures["cores"], cpu=figures["cpu"], mem=figures["mem"],
            mem_available=figures["mem_available"], n_actors=sum(per_realm.values()), actors_by_realm=per_realm,
            hosts={h.id: per_host.get(h.id, 0) for h in self.pool.running()},
            spawning=self.spawning)

    async def heartbeat(self) -> None:
        """Once the node is ready: its beat (liveness, for the lease holder and its standby), its
        load figures (for the tools), and its registry entry, written only when what it says of
        the node's membership changed or the registry lost it. While JetStream has lost its quorum
        (a write could only wait out its timeout), a beacon saying so instead of the write."""
        if not self.ready.is_set():
            return
        await self.liveness.beat()
        await self.session.publish(subjects.node_stats_subject(self.node_id), wire.pack(self.load()))
        down = self.refusal("spawn")
        if down is None:
            await self.register()
        else:  # the tools say why writes are refused
            await self.session.publish(subjects.beacon_subject(self.node_id), down.encode())

    async def register(self) -> None:
        """Write this node's registry entry if the registry says otherwise of its membership (its
        hosts, cordon, stopping, addresses...) or does not hold it (a node removed while it was
        cut off, or a write lost, writes it again); at most once a `HEARTBEAT` while it is missing."""
        entry = self.entry()
        known = self.session.view.nodes.get(self.node_id)
        if known is not None and _membership(known) == _membership(entry):
            return
        now = time.monotonic()
        if known is None and now - self._registered < directory.HEARTBEAT:
            return  # written just now: the view has not shown it yet
        if known is None and self._registered:
            log.warning("node %s is not in the registry (removed while it was silent?): registering again",
                        self.node_id)
        self._registered = now
        revision = await directory.put_node(self.session.view.nodes_kv, entry)
        log.debug("node %s registry entry written (revision %d)", self.node_id, revision)

    def refusal(self, op: str) -> str | None:
        """Operations that write JetStream are refused at once while it has lost its quorum."""
        if op in authority.WRITE_OPS and self.bus_server is not None:
            return self.bus_server.lost
        return None

    # ---------------------------------------------------------------- control

    async def op_hello(self, args: dict[str, Any]) -> Reply:
        """A host of this node is connected and ready."""
        self.pool.announced(records.check(HelloArgs, args).host)
        await self.heartbeat()
        return Reply(True, "", {})

    async def _to_host(self, host_id: str, op: str, args: Any, timeout: float) -> Reply:
        token = self.admin_token if op in authority.HOST_ADMIN_OPS and self._token_needed else None
        return await self.pool.call(self.session, host_id, op, args, timeout, token)

    async def op_spawn(self, args: dict[str, Any]) -> Reply:
        """Start an actor in a shared host (or a new isolated one) and return once ``init()`` ran."""
        spec = records.check(SpawnSpec, args)
        in_scope(spec.realm)
        if self.stopping.is_set():  # ("unavailable": the caller tries another node at once)
            return Reply(False, f"node {self.node_id} is stopping", {"unavailable": True})
        spec.uid = uid = uuid.uuid4().hex
        spec.node = self.node_id
        self.spawning += 1
        try:
            if spec.isIsolated:
                try:
                    host = await self.pool.start(isolated=True)
                except BeachError as err:
                    return Reply(False, str(err), {})
            else:
                shared = self.pool.running(shared_only=True)
                if not shared:
                    return Reply(False, f"node {self.node_id} has no running actor host", {"unavailable": True})
                host = random.choice(shared)
            # the host enforces the timeout itself; the margin lets its answer arrive
            reply = await self._to_host(host.id, "spawn", spec, spec.timeout + SPAWN_MARGIN)
        finally:
            self.spawning -= 1
        if reply.ok:
            self.pool.placed[uid] = (host.id, spec.realm)
            try:  # its entry in this agent's view at once: the next `load` counts it (not after the watch)
                self.session.view.apply_local(reply.data["key"], reply.data["revision"], reply.data["entry"])
            except (KeyError, TypeError, RecordError) as err:
                log.warning("the spawn reply of actor %s does not say its entry: %s", uid, err)
        else:  # the caller hears "failed": if the host got it running all the same (its answer was
            # lost or late), it must not stay up
            self.background.start(self._to_host(host.id, "stop", {"uids": [uid]}, HOST_STOP_SECONDS))
        return reply

    def _hosts_of(self, uids: list[str]) -> dict[str, list[str]]:
        return self.pool.of(uids, self.session.view)

    def audited(self, op: str, realm: str | None, who: str, args: dict[str, Any], reply: Reply) -> None:
        """Write the operation to the audit log (in the background: the caller does not wait)."""
        entry = audit.record(self.node_id, op, realm, who, args, reply.ok, reply.error)

        async def publish() -> None:
            try:
                await self.session.publish(audit.subject(self.node_id), wire.pack(entry))
            except Exception as err:  # the bus is away: said in this node's own log at least
                log.warning("audit record of %s by %s not written (%s): %s", op, who, err, entry)

        self.background.start(publish())

    def _check_scope(self, uid: str) -> None:
        """Raise `OutOfScope` if actor ``uid`` (when this node knows it) is outside the realm the
        operation being served is confined to."""
        if scope.get() is None:
            return
        realm = self.pool.placed.get(uid, (None, None))[1]
        if realm is None:
            actor = self.session.view.actors.get(uid)
            realm = actor.realm if actor is not None else None
        if realm is not None:
            in_scope(realm)

    async def op_stop(self, args: dict[str, Any]) -> Reply:
        """Stop the given actors of this node (unknown uids are listed as not found)."""
        uids = records.check(StopArgs, args).uids
        for uid in uids:
            self._check_scope(uid)
        return await self._stop(uids)

    async def _stop(self, uids: list[str], grace: float = 0.0) -> Reply:
        """Stop ``uids`` in their hosts (each serving on ``grace`` seconds once out of the directory)."""
        replies = await asyncio.gather(*(self._to_host(h, "stop", {"uids": u, "grace": grace},
                                                       HOST_STOP_SECONDS + grace)
                                         for h, u in self._hosts_of(uids).items()))
        errors, stopped = self.pool.stopped(replies)
        missing = [uid for uid in uids if uid not in stopped]
        if errors:
            return Reply(False, "; ".join(errors), {"stopped": stopped, "not_found": missing})
        return Reply(True, "", {"stopped": stopped, "not_found": missing})

    async def op_flush(self, args: dict[str, Any]) -> Reply:
        """Stop every actor of this node (of its realm only, for a realm admin)."""
        realm = scope.get()
        replies = await asyncio.gather(*(self._to_host(h.id, "flush", {} if realm is None else {"realm": realm},
                                                       HOST_STOP_SECONDS)
                                         for h in self.pool.running()))
        errors, stopped = self.pool.stopped(replies)
        return Reply((not errors), "; ".join(errors), {"stopped": stopped})

    async def _recategorize(self, op: str, args: dict[str, Any]) -> Reply:
        checked = records.check(CategoryArgs, args)
        self._check_scope(checked.uid)
        subjects.normalize(checked.category)
        hosts = self._hosts_of([checked.uid])
        if not hosts:
            return Reply(False, f"actor {checked.uid} is not hosted on node {self.node_id}", {})
        return await self._to_host(next(iter(hosts)), op, checked, HOST_CALL_SECONDS)

    async def op_associate(self, args: dict[str, Any]) -> Reply:
        """Add a category to one of this node's actors."""
        return await self._recategorize("associate", args)

    async def op_disassociate(self, args: dict[str, Any]) -> Reply:
        """Remove a category from one of this node's actors."""
        return await self._recategorize("disassociate", args)

    async def op_desired(self, args: dict[str, Any]) -> Reply:
        """Change the desired state (supervision records, patrol specs): ``put`` {key: value},
        ``delete`` [keys], ``prefixes`` [key prefixes to delete]."""
        change = records.check(DesiredArgs, args)
        kv = await bus.open_desired(self.session.nc, self.config)
        realm = scope.get()
        puts = {}
        for key, value in change.put.items():
            if not key.startswith(("sup.", "patrol.", "code.", "cordon.")):
                raise ValueError(f"not a desired-state key: {key!r}")
            record = puts[key] = desired.check(key, value)  # a bad record is refused, not stored
            if key.startswith("cordon.") and realm is not None:
                raise OutOfScope("permission denied: cordoning a node is an operation on the whole cluster")
            in_scope(desired.realm_of(record))
            if isinstance(record, desired.CodeVersion):
                await self._check_bundle(record)
            elif isinstance(record, desired.CodeCurrent):  # the version it names must exist (or come in this change)
                version = codestore.version_key(record.realm, record.version)
                if version not in change.put and await desired.get(kv, version, desired.CodeVersion) is None:
                    raise ValueError(f"realm {record.realm!r} has no version {record.version!r}")
        doomed = list(change.delete)
        if realm is not None:  # a realm admin deletes only its realm's records
            for key in doomed:
                current = await desired.get(kv, key, desired.type_of(key))
                if current is not None:
                    in_scope(desired.realm_of(current[0]))
        for prefix in change.prefixes:
            doomed += [key for key, (record, _) in (await desired.everything(kv)).items()
                       if key.startswith(prefix) and (realm is None or desired.realm_of(record) == realm)]
        for key, record in puts.items():
            await desired.put(kv, key, record)
        for key in doomed:
            await desired.delete(kv, key)
        return Reply(True, "", {"deleted": len(doomed)})

    async def _check_bundle(self, record: desired.CodeVersion) -> None:
        """Refuse a code version whose bundle the store does not hold (or holds at another size)."""
        store = await codestore.open_store(self.session, create=True)
        size = await codestore.has(store, record.digest)
        if size is None:
            raise ValueError(f"bundle {record.digest} of realm {record.realm!r} version "
                             f"{record.version!r} is not in the code store: upload it first")
        if not record.sealed and size != record.size:
            raise ValueError(f"bundle {record.digest} in the code store has {size} bytes, the version "
                             f"record says {record.size}")

    async def op_config(self, args: dict[str, Any]) -> Reply:
        """Store the cluster's shareable config (``beach config push``) for nodes that join with
        a NATS URL only; secrets and local paths in it are left out (and named in the reply)."""
        if scope.get() is not None:
            raise OutOfScope("permission denied: the cluster's config is not a realm's to push")
        pushed, left = clusterconfig.shareable(records.check(ConfigArgs, args).config)
        revision = await clusterconfig.store(self.session.nc, self.config, pushed)
        return Reply(True, "", {"pushed": sorted(pushed), "left_out": left, "revision": revision})

    async def op_remove_node(self, args: dict[str, Any]) -> Reply:
        """Take node ``args['node']``, gone for good, out of the JetStream peer set and forget its
        servers (``beach nodes remove``): its JetStream place goes to the next node that joins."""
        if scope.get() is not None:
            raise OutOfScope("permission denied: removing a node is an operation on the whole cluster")
        node = records.check(RemoveNodeArgs, args).node
        if node in self.session.view.nodes:
            return Reply(False, f"node {node} is running: stop it first ('beach nodes remove' is for a node gone "
                                f"for good)", {})
        if self.bus_server is None:
            return Reply(False, f"node {self.node_id} runs no NATS server (the operator runs NATS: remove the "
                                f"server from the JetStream peer set with the nats CLI)", {})
        removed = await self.bus_server.remove(node)
        if not removed:
            return Reply(False, f"no server of node {node} is known to the cluster", {})
        return Reply(True, "", {"node": node, "servers": removed})

    async def op_stack(self, args: dict[str, Any]) -> Reply:
        """The Python stacks of the process running actor ``args['uid']`` (every thread)."""
        uid = records.check(ActorArgs, args).uid
        self._check_scope(uid)
        hosts = self._hosts_of([uid])
        if not hosts:
            return Reply(False, f"actor {uid} is not hosted on node {self.node_id}", {})
        return await self._to_host(next(iter(hosts)), "stack", {"uid": uid}, HOST_CALL_SECONDS)

    async def op_load(self, args: dict[str, Any]) -> Reply:
        """This node's load figures now (`beach.state.records.NodeLoad`): `resource` placement asks
        a few candidate nodes for them at spawn time."""
        return Reply(True, "", self.load())

    async def op_info(self, args: dict[str, Any]) -> Reply:
        """This node's entry, the load of each of its actors, whether each of its actor hosts
        answered (``hosts``: {host id: None, or why not}) and, on the node holding the supervisor
        lease, the sizes of actor state (``state``; None elsewhere)."""
        hosts = self.pool.running()
        replies, sizes = await asyncio.gather(
            asyncio.gather(*(self._to_host(h.id, "info", {}, HOST_INFO_SECONDS) for h in hosts)),
            self._sizes_here(HOST_INFO_SECONDS))
        load: dict[str, Any] = {}
        for ok, _, data in replies:
            if ok:
                load.update(data["load"])
        answered = {h.id: None if ok else error for h, (ok, error, _) in zip(hosts, replies, strict=True)}
        return Reply(True, "", {"node": self.entry(), "figures": self.load(), "load": load, "hosts": answered,
                                "state": sizes})


MEMBERSHIP = ("id", "hostname", "addresses", "pid", "started", "cordoned", "open", "stopping", "reads", "cores",
              "mem_total")


def _membership(entry: NodeEntry) -> tuple[Any, ...]:
    """What a registry entry says of the node's membership (not its load): a change is written."""
    hosts = sorted((h, about.get("pid"), about.get("isolated")) for h, about in entry.hosts.items())
    return (*(repr(getattr(entry, name)) for name in MEMBERSHIP), hosts)

