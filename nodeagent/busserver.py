"""The node's own NATS server: every node carries the bus, so no node is special.

A node whose config names no ``nats.servers`` runs a ``nats-server`` (a child of the agent, ending
with it) joined to the other nodes' servers by routes; its agent and hosts connect to it first and
to the others when it is gone. `NodeBus` is that server's life:

* **joining** (`start`): a node with ``nats.join`` (``beach node nats://HOST:PORT`` wrote it)
  connects there as a client first, reads the servers the cluster runs (their routes) and takes one
  of the three JetStream places if one is free; it keeps what it learned in its state directory
  (`beach.bus.clustering.Identity`), to rejoin by itself when those URLs are gone. The first node
  (no ``join``) starts in clustered mode with its anchor (a clustered JetStream elects no leader
  with one server: see `beach.bus.clustering`);
* **keeping it up** (`watch`): a server that exits is started again as itself; the routes the
  cluster's servers publish are kept for the next start;
* **the JetStream quorum**: from the routes its server has, the agent knows at once when a
  majority of the JetStream servers is out of reach (`lost`), and refuses writes with a clear
  error instead of letting them hang (NATS itself takes 10 to 20 s to notice);
* **growth**: once three machines carry JetStream, the supervisor lease holder raises beach's
  buckets and streams to three replicas (`raise_replicas`) and the first node retires its anchor
  (`retire_anchor`);
* **removal** (`remove`): ``beach nodes remove NODE`` takes a node gone for good out of the
  JetStream peer set (NATS's system account: only the local agent knows its password).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

import msgspec
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from beach import bus, logs
from beach import loop as beach_loop
from beach.backoff import backoff
from beach.bus import clustering
from beach.bus.clustering import Identity, ServerSpec
from beach.bus.embedded import EmbeddedServer, default_store_dir
from beach.client.session import Session
from beach.code.store import CODE_BUCKET
from beach.config import Config
from beach.errors import BusError, ConfigError
from beach.security import audit
from beach.state import clusterconfig
from beach.state.records import ServerRecord

log = logging.getLogger("beach.nodeagent")

WATCH_SECONDS = 1.0  # how often the servers and the quorum are checked
GROWTH_SECONDS = 5.0  # how often the lease holder and the anchor look at the cluster's growth
REJOIN_WAIT = 5.0  # seconds a node that knows the routes asks the cluster before it rejoins through them
# A node that has just come up publishes its servers once JetStream takes the write (`grow`, tried
# again every GROWTH_SECONDS): a node joining through it in that moment waits for them this long.
ROUTES_WAIT = 3 * GROWTH_SECONDS
# The streams the issue of a lost machine must not touch: directory, desired state, pushed config
# and servers, code, logs, audit (their replicas are raised once three machines carry JetStream).
REPLICATED_STREAMS = (f"KV_{bus.ACTORS_BUCKET}", f"KV_{bus.MEMBERS_BUCKET}", f"KV_{bus.PLACED_BUCKET}",
                      f"KV_{bus.NODES_BUCKET}", f"KV_{bus.DESIRED_BUCKET}", f"KV_{clusterconfig.CONFIG_BUCKET}",
                      f"OBJ_{CODE_BUCKET}",
                      logs.STREAM, audit.STREAM)
LEGACY_HELP = ("to let it grow: 'beach backup CONFIG FILE', stop the node, move {store} away, start the node "
               "again (it starts clustered) and 'beach restore CONFIG FILE' (docs/operations.md)")


class NodeBus:
    """The NATS server(s) node ``node_id`` runs, from ``config``'s ``nats`` section."""

    def __init__(self, config: Config, node_id: str, name_hint: str | None = None) -> None:
        self.config = config
        self.node_id = node_id
        self.store_dir = os.path.abspath(config.nats.store_dir or default_store_dir(config.nats.port))
        self.name_hint = name_hint or socket.gethostname()
        self.identity: Identity
        self.spec: ServerSpec
        self.anchor_spec: ServerSpec | None = None
        self.server: EmbeddedServer | None = None
        self.anchor: EmbeddedServer | None = None
        self.system: Client | None = None  # this agent's system-account connection to its server
        self.lost: str | None = None  # why JetStream takes no write now (None: it does, or unknown)
        self.kv: Any = None
        self.table: clusterconfig.Servers | None = None  # the cluster's servers (a live copy)
        self._lock: IO[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._restarts: dict[str, list[float]] = {}
        self._placed = False  # asked for a JetStream place (once per start)
        self._stopping = False

    # ---------------------------------------------------------------- start

    async def start(self) -> None:
        """Take this node's state directory, join the cluster (learning its routes) and start the
        server(s); return once they accept connections. Raises `BusError` (cannot join, port taken)
        or `ConfigError` (a state directory in use, or unreadable)."""
        os.makedirs(self.store_dir, exist_ok=True)
        self._take_lock()
        identity = Identity.load(self.store_dir)
        if identity is None:
            identity = Identity.new(self.name_hint)
            if clustering.legacy_store(self.store_dir):
                identity.clustered, identity.anchor = False, False
            else:  # the first node starts the cluster: JetStream and its anchor; a joining one asks
                identity.anchor = not self.config.nats.join
        self.identity = identity
        if not identity.clustered:
            log.warning("%s holds a one-node JetStream store from an earlier version of beach: NATS cannot make it "
                        "clustered, so this node runs it alone and no node can join it; %s", self.store_dir,
                        LEGACY_HELP.format(store=self.store_dir))
        elif self.config.nats.join:
            await self._join()
        identity.route_port = self.config.nats.cluster_port or identity.route_port or \
            clustering.free_port(self.config.nats.listen)
        identity.save(self.store_dir)
        self.spec = self._spec()
        if identity.anchor and identity.jetstream:
            self.anchor_spec = self._anchor_spec()
        await self._launch()

    def _take_lock(self) -> None:
        path = os.path.join(self.store_dir, "lock")
        self._lock = open(path, "a", encoding="utf-8")  # noqa: SIM115 (held for the node's life)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise ConfigError(f"{self.store_dir} is in use by another node on this machine: give each node its "
                              f"own nats.store_dir (beach node URL: --state DIR) and ports (--nats-port, "
                              f"--route-port)") from None

    def _join_config(self) -> Config:
        """This node's config, as a client of the servers it joins through."""
        return msgspec.structs.replace(self.config, nats=msgspec.structs.replace(self.config.nats,
                                                                                 servers=list(self.config.nats.join)))

    async def _join(self) -> None:
        """Learn the cluster's routes through ``nats.join`` and whether this server carries
        JetStream (a free place, taken; kept for good once taken). Without an answer there (nobody
        at those URLs, or a JetStream without its quorum, which this very node may restore), a node
        that was in the cluster before rejoins through the routes it kept."""
        identity = self.identity
        try:  # a node that knows routes does not wait long for a JetStream that may need it back
            known, jetstream = await beach_loop.within(self._ask_cluster(),
                                                       REJOIN_WAIT if identity.routes else bus.JETSTREAM_WAIT + 10)
        except TimeoutError:
            err = BusError(f"the cluster's JetStream did not answer through {', '.join(self.config.nats.join)}")
            if identity.routes:
                log.warning("%s; rejoining through the routes this node kept: %s", err, ", ".join(identity.routes))
                return
            raise BusError(f"cannot join the cluster: {err}") from None
        except BusError as err:
            if identity.routes:
                log.warning("%s; rejoining through the routes this node kept: %s", err, ", ".join(identity.routes))
                return
            raise BusError(f"cannot join the cluster: {err}") from None
        if identity.jetstream and identity.routes and not jetstream:
            log.warning("server %s carried JetStream but holds none of the cluster's JetStream places now "
                        "(removed with 'beach nodes remove'?): it routes without JetStream", identity.name)
        identity.jetstream = jetstream
        routes = [r.route for r in known.values() if r.name not in (identity.name,
                                                                            clustering.anchor_name(identity.name))]
        identity.routes = sorted(set(routes) | set(identity.routes))
        log.info("joining the cluster through %s: routes %s; JetStream %s", ", ".join(self.config.nats.join),
                 ", ".join(identity.routes), "on" if identity.jetstream else "off (three servers carry it)")

    async def _ask_cluster(self) -> tuple[dict[str, ServerRecord], bool]:
        """``(the cluster's servers, whether this one carries JetStream)``, asked through
        ``nats.join`` (a free JetStream place is taken). Raises `BusError` saying what failed."""
        nc = await bus.connect(self._join_config(), f"beach-node {self.node_id} joining")
        try:
            with bus.translated(f"cannot read the cluster's servers through {', '.join(self.config.nats.join)}"):
                kv = await clusterconfig.open_bucket(nc, self.config)
                deadline = time.monotonic() + ROUTES_WAIT
                while not (known := (await clusterconfig.servers(kv)).servers) and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                if not known:
                    raise BusError(f"the cluster's nodes publish no routes (its first node runs NATS alone: a one-node "
                                   f"store from an earlier version? {LEGACY_HELP.format(store='its store directory')})")
                return known, await clusterconfig.take_slot(kv, self.identity.name, self.node_id)
        finally:
            await bus.close(nc)

    def _spec(self) -> ServerSpec:
        nats = self.config.nats
        return ServerSpec(name=self.identity.name, listen=nats.listen, port=nats.port,
                          advertise=clustering.advertised_host(self.config), route_port=self.identity.route_port,
                          store_dir=self.store_dir, jetstream=self.identity.jetstream,
                          routes=list(self.identity.routes), system_password=self.identity.system_password)

    def _anchor_spec(self) -> ServerSpec:
        spec = self.spec
        return ServerSpec(name=clustering.anchor_name(spec.name), listen=spec.listen,
                          port=clustering.free_port(spec.listen), advertise=spec.advertise,
                          route_port=clustering.free_port(spec.listen),
                          store_dir=os.path.join(self.store_dir, "anchor"),
                          jetstream=True, routes=[spec.route], system_password=spec.system_password,
                          advertise_clients=False)

    def _server(self, spec: ServerSpec) -> EmbeddedServer:
        """Write ``spec``'s configuration and make (not start) its process."""
        routes = list(spec.routes)
        if spec is self.spec and self.anchor_spec is not None:
            routes.append(self.anchor_spec.route)
        os.makedirs(spec.store_dir, exist_ok=True)
        text = clustering.server_config(dataclasses.replace(spec, routes=routes), self.config, spec.store_dir,
                                        clustered=self.identity.clustered)
        path = clustering.write_config(os.path.join(spec.store_dir, clustering.SERVER_CONFIG_FILE), text)
        return EmbeddedServer(spec.port, spec.store_dir, name=spec.name, config_file=path, flags=False,
                              host=spec.listen, log_file=os.path.join(spec.store_dir, "nats-server.log"))

    async def _launch(self) -> None:
        self.server = self._server(self.spec)
        self.server.launch()  # from the agent's own thread: it dies with the agent (PR_SET_PDEATHSIG)
        if self.anchor_spec is not None:
            self.anchor = self._server(self.anchor_spec)
            self.anchor.launch()
            await self.anchor.started()
        await self.server.started()
        log.info("NATS server %s on %s (routes %s; JetStream %s%s; state in %s)", self.spec.name, self.spec.client_url,
                 self.spec.route if self.identity.clustered else "none: standalone",
                 "on" if self.spec.jetstream else "off", ", with its anchor" if self.anchor else "", self.store_dir)

    # ---------------------------------------------------------------- attached to the agent's session

    async def attach(self, session: Session, leading: Callable[[], bool]) -> None:
        """Once the agent's session is open: connect to the local server as its system user and
        start watching (``leading``: whether this agent holds the supervisor lease). What needs
        JetStream — publishing this node's servers, taking a JetStream place (the first node),
        following the cluster's servers — is done by `grow`, again until it works: a node that
        restores a lost quorum starts before JetStream can take a write."""
        self.session = session
        self.leading = leading
        system = msgspec.structs.replace(self.config.nats, servers=[self.config.nats.local_url],
                                         user=clustering.SYSTEM_USER, password=self.identity.system_password,
                                         token=None, credentials=None, inbox_prefix=None, auth_file=None)
        self.system = await bus.connect(msgspec.structs.replace(self.config, nats=system),
                                        f"beach-node {self.node_id} system")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._every(WATCH_SECONDS, self.check))]
        if self.identity.clustered:
            self._tasks.append(loop.create_task(self._every(GROWTH_SECONDS, self.grow)))

    async def _follow(self) -> None:
        """Publish this node's servers, take a JetStream place if this server carries JetStream and
        holds none (the first node), and start following the cluster's servers."""
        if self.kv is None:
            self.kv = await clusterconfig.open_bucket(self.session.nc, self.config)
        if self.identity.jetstream and not self._placed:
            if not await clusterconfig.take_slot(self.kv, self.spec.name, self.node_id):
                log.warning("server %s carries JetStream but the cluster's three JetStream places are taken",
                            self.spec.name)
            self._placed = True
        await self._publish()
        table = clusterconfig.Servers(self.kv)
        await table.start()
        self.table = table

    async def _publish(self) -> None:
        for spec in (self.spec, self.anchor_spec):
            if spec is not None:
                await clusterconfig.publish_server(self.kv, ServerRecord(
                    name=spec.name, node=self.node_id, client=spec.client_url, route=spec.route,
                    jetstream=spec.jetstream, anchor=spec is self.anchor_spec, updated=time.time()))

    @property
    def known(self) -> dict[str, ServerRecord]:
        """The cluster's servers, by name, as last heard."""
        return self.table.servers if self.table is not None else {}

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        said = ""
        while True:
            try:
                await job()
                said = ""
            except asyncio.CancelledError:
                raise
            except Exception as err:  # said once while it lasts (a lost quorum fails every round)
                if str(err) != said:
                    log.warning("%s failed: %s", getattr(job, "__name__", job), err)
                said = str(err)
            await asyncio.sleep(seconds)

    # ---------------------------------------------------------------- watching

    async def check(self) -> None:
        """Start a server of this node that exited again (as itself), keep the routes the cluster
        publishes for the next start, and know whether JetStream's quorum is in reach."""
        for server, spec in ((self.server, self.spec), (self.anchor, self.anchor_spec)):
            if server is not None and spec is not None and not server.running and not self._stopping:
                await self._restart(server, spec)
        routes = sorted({r.route for r in self.known.values() if r.name not in self._mine()})
        if routes and routes != self.identity.routes:
            self.identity.routes = routes
            self.identity.save(self.store_dir)
        self.lost = await self._quorum()

    def _mine(self) -> set[str]:
        return {self.spec.name, clustering.anchor_name(self.spec.name)}

    async def _restart(self, server: EmbeddedServer, spec: ServerSpec) -> None:
        """Start server ``spec`` again (its routes refreshed), backing off if it keeps dying."""
        now = time.monotonic()
        recent = [t for t in self._restarts.get(spec.name, []) if now - t < 60]
        if recent and now - recent[-1] < backoff(len(recent) - 1, 1.0, 30.0):
            return
        self._restarts[spec.name] = recent + [now]
        code = server.process.returncode if server.process is not None else None
        log.warning("NATS server %s exited (code %s): starting it again", spec.name, code)
        if spec is self.spec:
            self.spec = spec = dataclasses.replace(spec, routes=list(self.identity.routes))
        fresh = self._server(spec)
        try:
            fresh.launch()
            await fresh.started()
        except BusError as err:
            log.error("cannot start NATS server %s again: %s", spec.name, err)
        if spec.name == self.spec.name:
            self.server = fresh
        else:
            self.anchor = fresh

    async def _quorum(self) -> str | None:
        """Why JetStream can take no write now — a majority of its servers out of reach of this
        node's server — or None (it can, or this node cannot tell). A JetStream server knows its
        meta group; another node goes by the servers the cluster publishes."""
        if self.system is None or not self.system.is_connected:
            return None
        try:
            reachable = await clustering.routed(self.system) | {self.spec.name}
            group = await clustering.meta_group(self.system) if self.spec.jetstream else None
        except BusError:
            return None
        if group is not None:
            peers, quorum = group[0] | {self.spec.name}, group[1]
        else:
            peers = {name for name, r in self.known.items() if r.jetstream}
            quorum = len(peers) // 2 + 1
        missing = sorted(peers - reachable)
        if not peers or len(peers) - len(missing) >= quorum:
            return None
        return (f"the cluster's JetStream has lost its quorum: {len(missing)} of its {len(peers)} JetStream servers "
                f"({', '.join(missing)}) are out of reach, so nothing can be written (directory, desired state, "
                f"code) until a majority is back; requests to running actors still work")

    # ---------------------------------------------------------------- growth

    def _machines(self) -> list[str]:
        """The servers (not anchors) that carry JetStream."""
        return sorted(name for name, r in self.known.items() if r.jetstream and not r.anchor)

    async def _all_routed(self, names: list[str]) -> bool:
        if self.system is None or not self.system.is_connected:
            return False
        try:
            reachable = await clustering.routed(self.system) | {self.spec.name}
        except BusError:
            return False
        return set(names) <= reachable

    async def grow(self) -> None:
        """Follow the cluster's servers (publishing this node's); once three machines carry
        JetStream, the lease holder raises the replicas, and the anchor's node retires it when every
        replicated stream has its three current replicas."""
        if self.lost:
            return
        if self.table is None:
            await self._follow()
        elif self.spec.name not in self.known:
            await self._publish()  # removed by someone ('beach nodes remove' of a node that came back)
        retired = clustering.anchor_name(self.spec.name)
        if self.anchor is None and retired in self.known:  # a retirement cut short: its record stayed
            await clusterconfig.forget_server(self.kv, retired)
        machines = self._machines()
        if len(machines) < clustering.JETSTREAM_SERVERS or not await self._all_routed(machines):
            return
        if self.leading():
            await self.raise_replicas()
        if self.anchor is not None:
            await self.retire_anchor()

    async def _streams(self) -> AsyncIterator[tuple[str, Any]]:
        """``(name, info)`` of each replicated stream that exists (`REPLICATED_STREAMS`)."""
        js = self.session.nc.jetstream(timeout=bus.JS_TIMEOUT)
        for name in REPLICATED_STREAMS:
            try:
                yield name, await js.stream_info(name)
            except NotFoundError:
                continue

    async def raise_replicas(self) -> None:
        """Raise every replicated stream below ``nats.kv_replicas`` (default 3) replicas to that many."""
        target = self.config.nats.kv_replicas or clustering.JETSTREAM_SERVERS
        async for name, info in self._streams():
            if (info.config.num_replicas or 1) < target:
                info.config.num_replicas = target
                await self.session.nc.jetstream(timeout=bus.JS_TIMEOUT).update_stream(info.config)
                log.info("stream %s raised to %d replicas (%d servers carry JetStream)", name, target,
                         len(self._machines()))

    async def _replicated(self) -> bool:
        """True if every replicated stream has its replicas, all of them current."""
        target = self.config.nats.kv_replicas or clustering.JETSTREAM_SERVERS
        async for _, info in self._streams():
            cluster = info.cluster
            replicas = cluster.replicas or [] if cluster is not None else []
            if ((info.config.num_replicas or 1) < target or cluster is None or not cluster.leader
                    or len(replicas) < target - 1 or not all(r.current for r in replicas)):
                return False
        return True

    async def retire_anchor(self) -> None:
        """Take the anchor out of the JetStream peer set (its replicas move to the machines), stop
        it and forget it: three machines now elect JetStream's leaders without it."""
        if self.anchor is None or self.anchor_spec is None or self.system is None or not await self._replicated():
            return
        name = self.anchor_spec.name
        log.info("three machines carry JetStream: retiring the anchor %s", name)
        await clustering.remove_peer(self.system, name)
        await clusterconfig.forget_server(self.kv, name)  # (again by `grow` if this fails: see there)
        anchor, self.anchor, self.anchor_spec = self.anchor, None, None
        await anchor.astop()
        shutil.rmtree(anchor.store_dir, ignore_errors=True)
        self.identity.anchor = False
        self.identity.save(self.store_dir)
        # the server's route to the anchor goes with a reload (a route left would be retried for ever)
        if self.server is not None and self.server.running and self.server.process is not None:
            self._server(self.spec)  # rewrites its configuration without the anchor
            self.server.process.send_signal(signal.SIGHUP)

    # ---------------------------------------------------------------- removal

    async def remove(self, node: str) -> list[str]:
        """Take node ``node``'s servers out of the JetStream peer set and forget them (their
        JetStream places become free for the next node that joins); return their names."""
        if self.system is None or self.kv is None:
            raise BusError("this node runs no NATS server of the cluster: ask a node that does")
        names = sorted(name for name, r in self.known.items() if r.node == node)
        for name in names:
            if self.known[name].jetstream:
                await clustering.remove_peer(self.system, name)
            await clusterconfig.forget_server(self.kv, name)
        return names

    # ---------------------------------------------------------------- stop

    async def stop(self) -> None:
        """Stop watching, disconnect, stop the server(s), release the state directory."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self.table is not None:
            await self.table.stop()
        if self.system is not None:
            await bus.close(self.system, 2.0)
        for server in (self.anchor, self.server):
            if server is not None:
                await server.astop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

