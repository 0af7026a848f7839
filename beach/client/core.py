"""`AsyncBeach`: the cluster API as coroutines — the one implementation behind `beach.Beach`.

Spawns choose a node from the live directory view (see `beach.state.placement`) and ask its node agent
(``beach.n.<node>.spawn``), which replies once the actor's ``init()`` ran. Replies are applied to
the view at once, so ``getDirectory()`` shows a successful spawn (or stop) immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.kv import KeyValue

from beach import bus, metering, tracing, wire
from beach import config as beach_config
from beach.client.group import ActorHandleGroup
from beach.client.handle import ActorHandle
from beach.client.response import ActorResponse
from beach.client.runner import Runner
from beach.client.session import Session
from beach.errors import BeachError, BusError, ClosedError, NotFound, PermissionDenied, UsageError
from beach.names import twinned
from beach.security import authority
from beach.state import clusterconfig, desired, patrol, placement, records, stateview
from beach.state.directory import SILENT
from beach.state.records import RecordError, StateStats
from beach.state.spawn import HOST_START_SECONDS, SpawnOptions, SpawnSpec
from beach.wire import subjects, typed

CONTROL_TIMEOUT = 60.0  # seconds a control operation (stop, flush, associate, desired writes) may take
INFO_TIMEOUT = 10.0  # seconds each node has to report its load figures
STACK_TIMEOUT = 15.0  # a node's stacks: its agent asks the actor host, which has HOST_CALL_SECONDS
LOAD_TIMEOUT = 2.0  # seconds a node has to say its load to a `resource` placement
FIGURES_WAIT = 1.5  # seconds the first `cluster_health` waits for every node's load figures (sent every second)
NODE_POLL = 0.05  # seconds between two looks at an empty registry


@twinned
class AsyncBeach:
    """A connection to a beach cluster, for async code. Open it with ``await AsyncBeach.open(...)``."""

    def __init__(self, session: Session, realm: str | None = None) -> None:
        self._session = session
        self._realm = subjects.check_realm(realm or session.config.realm)
        self._admin_token = session.config.admin_token
        self._scoped = authority.scope(session.config) is not None  # a realm admin's subjects name the realm
        self._who = authority.caller(session.config)
        self._placer = placement.Placer()
        self._desired_kv: KeyValue | None = None

    @classmethod
    async def open(cls, configFile: str | os.PathLike[str] | beach_config.Config | None, realm: str | None = None,
                   runner: Runner | None = None) -> AsyncBeach:
        """Connect to the cluster ``configFile`` names: a config file, a loaded `Config`, or a NATS
        URL (``nats://host:4222``: the cluster's pushed config is read from the bus, see
        `beach.state.clusterconfig.resolve`). ``realm``: default the config's ``realm:`` (else
        ``global``). Raise `ConfigError` or `BusError` if it cannot."""
        config = await clusterconfig.resolve(configFile)
        runner = runner or Runner(asyncio.get_running_loop())
        session = await Session.open(config, runner, "beach-client")
        return cls(session, realm)

    @property
    def session(self) -> Session:
        """The session (connection and directory view) this client uses."""
        return self._session

    async def close(self) -> None:
        """Disconnect."""
        await self._session.close()

    def setRealm(self, realm: str) -> str:
        """Use ``realm`` for later handles, spawns and stops; return the previous realm."""
        previous, self._realm = self._realm, subjects.check_realm(realm)
        return previous

    @property
    def realm(self) -> str:
        """The current realm."""
        return self._realm

    @property
    def caller(self) -> str:
        """Who this client says it is on control subjects (its NATS user, else ``user@host``)."""
        return self._who

    # ---------------------------------------------------------------- node control

    async def _exchange(self, node: str, op: str, args: Any, timeout: float, realm: str | None,
                        headers: dict[str, str] | None) -> Any:
        scope = (realm or self._realm) if self._scoped else None
        subject = authority.control_subject(node, op, scope, self._who)
        token = None
        if op in authority.ADMIN_OPS and self._admin_token and not authority.nats_authority(self._session.config):
            token = self._admin_token
        body = await authority.control_body(self._session.inbox, subject,
                                            authority.control_subject(node, "challenge", scope, self._who),
                                            args, token, f"{op} arguments", timeout)
        return await self._session.inbox.request(subject, body, timeout, headers)

    async def _node_call(self, node: str, op: str, args: Any, timeout: float,
                         realm: str | None = None) -> ActorResponse:
        """Run control operation ``op`` on ``node`` (acting on ``realm``, default the current one);
        a failed response says why it did not run. Raises `PermissionDenied` when the NATS
        credentials do not allow it, `ClosedError` once closed."""
        wire.pack(args, what=f"{op} arguments")  # data that cannot be sent fails here, at once
        down = self._session.view.jetstream_down
        if down is not None and op in authority.WRITE_OPS:  # it would be refused, or hang: say why at once
            return ActorResponse(False, down, {"refused": True})
        spans = tracing.operation("beach.node", op, node, realm or self._realm)
        try:
            response = await self._node_exchange(node, op, args, timeout, realm,
                                                 None if spans is None else tracing.headers(spans.own()))
        except BaseException as err:
            if spans is not None:
                spans.end(*tracing.raised(err))
            raise
        if spans is not None:
            spans.end(metering.outcome(response.isSuccess, response.error), response.error)
        return response

    async def _node_exchange(self, node: str, op: str, args: Any, timeout: float, realm: str | None,
                             headers: dict[str, str] | None) -> ActorResponse:
        call = asyncio.ensure_future(self._exchange(node, op, args, timeout, realm, headers))
        if node in self._session.view.nodes:
            # a node that stops or dies while working on the call will never answer: say so at once
            # (when it leaves the registry; or, on a call longer than that takes, when its beat
            # stops: with no node agent left alive, nobody would remove it)
            gone = self._session.view.departure(node)
            async with self._session.silence(node, watch=timeout > SILENT) as silent:
                try:
                    await asyncio.wait({call, gone, silent}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gone.cancel()
                    left = not call.done()
                    if left:
                        call.cancel()
            if left:
                return ActorResponse(False, f"node {node} left the cluster before answering {op}", {"gone": True})
        try:
            msg = await call
        except NoRespondersError:
            # no node agent behind the subject: the node is gone, and its actors with it
            return ActorResponse(False, f"node {node} is not answering (it left the cluster?)", {"gone": True})
        except (TimeoutError, NatsTimeout):
            return ActorResponse(False, f"node {node} did not answer {op} within {timeout}s", isTimedOut=True)
        except (ClosedError, PermissionDenied):
            raise
        except BusError as err:
            return ActorResponse(False, f"{op} on node {node} not sent: {err}")
        except ValueError as err:  # a malformed challenge (an old node, or not a node at all)
            return ActorResponse(False, f"{op} on node {node} not sent: {err}")
        return ActorResponse(*wire.read_reply(msg.data, f"node {node} to {op}"))

    def _apply_stops(self, stopped: dict[str, Any]) -> None:
        for key, revision in stopped.values():
            self._session.view.apply_local(key, revision, None)

    @typed.arguments(SpawnOptions, "addActor", UsageError)
    async def addActor(self, options: SpawnOptions) -> ActorResponse:
        """Start actor class ``actorName`` in ``category`` (a name or a list) on a node chosen by
        ``strategy``; return once its ``init()`` has run. The arguments are `SpawnOptions`' fields
        (in the seed's order; each says what it does).

        Success: ``ActorResponse`` with ``data = {'uid', 'node', 'host', 'version'}``, visible in
        ``getDirectory()`` at once. Failure (unknown class, import error, init raising, no node
        fitting the strategy, ``'unprivileged'``) comes back as a failed response with the reason
        (and ``data['st']``, the traceback, where there is one).

        ``restart`` keeps the actor alive: ``'on-failure'`` restarts it (on any node, by the same
        strategy) when it dies, its host dies or its node is lost; ``'always'`` also when it stopped
        itself; ``'never'`` (default) does not. Restarts back off exponentially; more than
        ``max_restarts`` in ``restart_window`` seconds marks it failed (see `getSupervised`).

        ``version``: run that deployed version of the realm's code (default: the realm's current
        version, or the code directory for a realm never deployed; see `beach.code.deploy`). A
        supervised actor keeps the version it started with through its restarts; only a rollout
        moves it (``data['version']``: the one it runs, None for the code directory).

        Raises `CategoryError` for a bad category or realm and `UsageError` for any other argument
        that is not what its type says (naming it); ``log_dest`` is accepted and ignored (hosts log
        to their stderr).
        """
        if options.owner is not None and options.owner.startswith("patrol/"):
            raise UsageError(f"owner {options.owner!r}: owners starting with 'patrol/' belong to patrol specs")
        supervised = options.restart != "never"
        spec = options.spec(self._realm, sid=uuid.uuid4().hex if supervised else None)
        response = await self.place_actor(spec)
        if response.isSuccess and spec.sid is not None:
            record = desired.SupervisionRecord(
                sid=spec.sid, spawn=spec, restart=options.restart, max_restarts=options.max_restarts,
                restart_window=options.restart_window, uid=response.data["uid"], created=time.time(),
                version=response.data["version"])  # what it runs, its restarts run too
            await self._change_desired(put={desired.supervision_key(spec.realm, spec.sid): record})
        return response

    async def place_actor(self, spec: SpawnSpec) -> ActorResponse:
        """Place and start one actor from its spawn spec (what `addActor` builds).

        Only a node that is up is chosen (see `beach.state.placement`). A node that fails the spawn
        on its side — gone, stopping, no actor host — is skipped for a while and the next choice is
        tried at once; one that does not answer in time is skipped too, but not retried at once (the
        actor may still start there). Success: ``data = {'uid', 'node', 'host', 'version'}``. A
        failure with ``data['unavailable']`` says no node could take the actor now: a missing node,
        not the actor's fault."""
        view = self._session.view
        await self.waitForNodes()
        counted = placement.counted_category(spec.strategy, spec.strategy_hint, spec.category)
        if counted and view.partial:  # (a host's or an agent's view: that category loaded first)
            with contextlib.suppress(BeachError):  # (one beach cannot route: no actor has it)
                waiting = view.want(spec.realm, counted)
                if waiting is not None:
                    await waiting
        # the node enforces the timeout (plus a new host's start-up for an isolated actor): wait a bit longer
        budget = spec.timeout + 10 + (HOST_START_SECONDS if spec.isIsolated else 0)
        tried: list[str] = []
        while True:
            try:
                if spec.strategy == "resource":
                    node = await self._lightest(spec.realm)
                else:
                    node = self._placer.choose(spec.strategy, spec.strategy_hint, view.nodes,
                                               lambda: view.live(spec.realm), spec.category, view.unavailable())
            except placement.PlacementError as err:  # (after a failed try, say that first: it is why)
                return ActorResponse(False, "; then ".join([*tried, str(err)]), {"unavailable": err.unavailable})
            response = await self._node_call(node, "spawn", spec, budget, spec.realm)
            if response.isSuccess:
                data = response.data
                try:
                    view.apply_local(data["key"], data["revision"], data["entry"])
                    response.data = {"uid": data["uid"], "node": node, "host": data["entry"]["host"],
                                     "version": data["entry"].get("version")}
                except (KeyError, TypeError, AttributeError, RecordError) as err:
                    why = f"{wire.Failure.MALFORMED_REPLY.value} from node {node} to spawn: {err}"
                    return ActorResponse(False, why)
                return response
            node_side = response.isTimedOut or (isinstance(response.data, dict) and (
                response.data.get("gone") or response.data.get("unavailable")))
            if not node_side:
                return response  # the actor's own failure (its class, its init)
            self._placer.spawn_failed(node, response.error)
            tried.append(response.error)
            if response.isTimedOut or len(tried) > len(view.nodes):
                return ActorResponse(False, "; ".join(tried), {"unavailable": True}, isTimedOut=response.isTimedOut)

    async def _lightest(self, realm: str) -> str:
        """`resource` placement: ask `placement.CHOICES` nodes that are up, drawn at random, for their
        load now, and take the lighter (`placement.least_loaded`). One that is gone (nobody answers
        on its subject) is skipped like a node that failed a spawn; one that does not answer within
        `LOAD_TIMEOUT` (a hung or overloaded agent) is not asked again for this spawn; one that
        answers without figures (the previous release has no ``load``) is judged by its registry
        entry. Raises `PlacementError` when no node is left."""
        view = self._session.view
        slow: dict[str, str] = {}
        while True:
            asked = self._placer.candidates(view.nodes, {**view.unavailable(), **slow})
            responses = await asyncio.gather(*(self._node_call(n, "load", {}, LOAD_TIMEOUT, realm) for n in asked))
            loads: dict[str, records.NodeLoad] = {}
            for node, response in zip(asked, responses, strict=True):
                entry = view.nodes.get(node)
                if response.isSuccess:
                    try:
                        loads[node] = records.check(records.NodeLoad, response.data, f"of node {node}")
                        continue
                    except records.RecordError as err:
                        response = ActorResponse(False, str(err))
                if response.isTimedOut:
                    slow[node] = f"did not say its load within {LOAD_TIMEOUT:g}s"
                elif entry is None or (isinstance(response.data, dict) and response.data.get("gone")):
                    self._placer.spawn_failed(node, response.error)
                else:
                    loads[node] = records.NodeLoad(node=node, t=entry.updated, cores=entry.cores, cpu=entry.cpu,
                                                   mem=entry.mem, n_actors=entry.n_actors)
            if loads:
                return placement.least_loaded(loads)

    async def _desired(self) -> KeyValue:
        if self._desired_kv is None:
            self._desired_kv = await bus.open_desired(self._session.nc, self._session.config)
        return self._desired_kv

    async def applyPatrol(self, spec: str | os.PathLike[str] | dict[str, Any],
                          owner: str | None = None, realm: str | None = None) -> patrol.PatrolSpec:
        """Store a patrol spec (a file path, YAML or the original's ``.py``, or a parsed mapping);
        the supervising node agent makes the cluster match it and keeps it matched. Applying a spec
        again with the same owner replaces it. ``realm``: the realm of a Python patrol file (a YAML
        spec names its own; default: the current realm). Raises `ConfigError` for a bad spec."""
        checked = patrol.check(spec) if isinstance(spec, dict) else patrol.load(os.fspath(spec), owner,
                                                                                 realm or self._realm)
        response = await self._change_desired(put={desired.patrol_key(checked.owner): checked})
        if not response.isSuccess:
            raise UsageError(f"patrol spec {checked.owner!r} not applied: {response.error}")
        return checked

    async def removePatrol(self, owner: str) -> bool:
        """Forget a patrol spec: the supervisor stops its actors. False if there was none."""
        key = desired.patrol_key(owner)
        with bus.translated("cannot read the desired state"):
            if await desired.get(await self._desired(), key, patrol.PatrolSpec) is None:
                return False
        return (await self._change_desired(delete=[key])).isSuccess

    async def getPatrols(self) -> dict[str, patrol.PatrolSpec]:
        """Every patrol spec, by owner. Raises `BusError` when NATS cannot answer."""
        with bus.translated("cannot read the desired state"):
            specs = await desired.snapshot(await self._desired(), "patrol.", patrol.PatrolSpec)
        return {v.owner: v for v, _ in specs.values()}

    async def getSupervised(self) -> dict[str, dict[str, Any]]:
        """Every supervised actor: ``{sid: {'name', 'realm', 'categories', 'state' ('running' or
        'failed'), 'uid' (current incarnation), 'restarts' (recent restart times), 'last_error'
        (of the last attempt that failed, None once it runs again), 'waiting_for' (the node a
        host_affinity actor waits for, or None), 'version' (of its realm's code it runs)}}``.
        Raises `BusError` when NATS cannot answer."""
        with bus.translated("cannot read the desired state"):
            entries = await desired.snapshot(await self._desired(), "sup.", desired.SupervisionRecord)
        return {v.sid: {"name": v.spawn.actorName, "realm": v.spawn.realm, "categories": v.spawn.category,
                        "state": v.state, "uid": v.uid, "restart": v.restart, "restarts": v.restarts,
                        "last_error": v.last_error, "waiting_for": v.waiting_for, "version": v.version}
                for v, _ in entries.values()}

    async def stopActors(self, withId: str | Iterable[str] | None = None,
                         withCategory: str | Iterable[str] | None = None, delay: float | None = None,
                         keepSupervision: bool = False) -> ActorResponse:
        """Stop actors by uid (one or several) and/or by category prefix (current realm); each one
        leaves the directory, finishes its in-flight requests and runs ``deinit``. With ``delay``,
        stop them one at a time, ``delay`` seconds apart (a rolling stop). A stop on purpose ends
        the actors' supervision first; ``keepSupervision=True`` leaves it (the supervisor stopping a
        leftover duplicate of an actor it keeps).

        Returns a response with ``data = {'stopped': [uids], 'not_found': [uids]}``.
        """
        uids: list[str] = [withId] if isinstance(withId, str) else list(withId or [])
        if withCategory is not None:
            cats = [withCategory] if isinstance(withCategory, str) else list(withCategory)
            for cat in cats:
                uids += [a.uid for a in self._session.view.find(self._realm, cat) if a.uid not in uids]
        if not keepSupervision:  # end their supervision first (else the supervisor would restart them)
            sids = {desired.supervision_key(a.realm, sid) for a in map(self._session.view.actors.get, uids)
                    if a is not None and (sid := a.sid)}
            if sids:
                response = await self._change_desired(delete=sorted(sids))
                if not response.isSuccess:
                    return response
        return await self._stop_on_nodes(uids, delay)

    async def _stop_on_nodes(self, uids: list[str], delay: float | None) -> ActorResponse:
        by_node: dict[str, list[str]] = {}
        missing: list[str] = []
        for uid in uids:
            actor = self._session.view.actors.get(uid)
            if actor is None:
                missing.append(uid)
            else:
                by_node.setdefault(actor.node, []).append(uid)
        if delay:  # one at a time, delay apart
            calls = []
            for i, (node, uid) in enumerate((n, u) for n, node_uids in by_node.items() for u in node_uids):
                if i:
                    await asyncio.sleep(delay)
                calls.append(([uid], await self._node_call(node, "stop", {"uids": [uid]}, CONTROL_TIMEOUT)))
        else:
            responses = await asyncio.gather(*(self._node_call(node, "stop", {"uids": node_uids}, CONTROL_TIMEOUT)
                                               for node, node_uids in by_node.items()))
            calls = list(zip(by_node.values(), responses, strict=True))
        stopped: list[str] = []
        errors = []
        for asked, response in calls:
            if isinstance(response.data, dict):
                self._apply_stops(response.data.get("stopped", {}))
                stopped += list(response.data.get("stopped", {}))
                missing += response.data.get("not_found", [])
                if response.data.get("gone"):  # the node left, and its actors with it
                    missing += asked
                    continue
            if not response.isSuccess:
                errors.append(response.error)
        return ActorResponse(not errors, "; ".join(errors), {"stopped": stopped, "not_found": missing})

    async def _change_desired(self, put: dict[str, Any] | None = None, delete: list[str] | None = None,
                              prefixes: list[str] | None = None, realm: str | None = None) -> ActorResponse:
        """Change the desired state through a node agent, which checks the admin token (the
        supervisor acts on it with the token's authority); ``realm``: the one the change acts on."""
        return await self._any_node_call("desired", {"put": put or {}, "delete": delete or [],
                                                     "prefixes": prefixes or []}, CONTROL_TIMEOUT, realm)

    async def _any_node_call(self, op: str, args: dict[str, Any], timeout: float, realm: str | None = None,
                             avoid: str | None = None) -> ActorResponse:
        """Run control operation ``op`` on one node (not ``avoid`` while another is there), once
        there is one (`waitForNodes`): the first in the registry, else the next while a node is
        gone — a node lost a moment ago stays in a view until its entry expires, and an operation
        it never answered is safe to ask of another (these set state, they do not add to it)."""
        await self.waitForNodes()
        nodes = sorted(self._session.view.nodes)
        nodes = [n for n in nodes if n != avoid] or nodes
        response = ActorResponse(False, "no beach node is running (the node registry is empty)")
        for node in nodes:
            response = await self._node_call(node, op, args, timeout, realm)
            if not (isinstance(response.data, dict) and response.data.get("gone")):
                break
        return response

    async def flush(self, state: bool = False) -> bool:
        """Stop every actor on every node, in every realm, and forget every supervised actor and
        patrol spec (so nothing comes back); True if every node succeeded. Actor state stays
        (new actors of the same categories find it) unless ``state=True``, which deletes it too. A
        realm admin's flush is of its realm only."""
        if not (await self._change_desired(prefixes=["sup.", "patrol."])).isSuccess:
            return False
        responses = await asyncio.gather(*(self._node_call(node, "flush", {}, CONTROL_TIMEOUT)
                                           for node in list(self._session.view.nodes)))
        for response in responses:
            if isinstance(response.data, dict):
                self._apply_stops(response.data.get("stopped", {}))
        flushed = all(r.isSuccess or r.data.get("gone") for r in responses)
        if state and flushed:
            realm = self._realm if self._scoped else None
            flushed = (await self._change_state({"realm": realm, "purge": True}, realm)).isSuccess
        return flushed

    async def _change_state(self, args: dict[str, Any], realm: str | None) -> ActorResponse:
        """Run the ``state`` operation (admin) on a node."""
        nodes = sorted(self._session.view.nodes)
        if not nodes:
            return ActorResponse(False, "no beach node is running (the node registry is empty)")
        return await self._node_call(nodes[0], "state", args, CONTROL_TIMEOUT, realm)

    async def getState(self, category: str, realm: str | None = None) -> dict[str, Any]:
        """The actor state of ``category`` (in the current realm, or ``realm``): ``{key: value}``,
        read with this client's NATS rights (an admin's; a realm admin's, of its realm). Raises
        `BusError` (`PermissionDenied` without the right to read it)."""
        found = await stateview.read(self._session, realm or self._realm, category)
        return {item["key"]: wire.unpack(item["value"]) for item in found}

    async def deleteState(self, category: str, key: str, realm: str | None = None) -> ActorResponse:
        """Delete ``key`` of ``category``'s actor state (in the current realm, or ``realm``): an
        admin operation, carried out by a node and written to the audit log."""
        subjects.state_token(key)
        realm = realm or self._realm
        return await self._change_state({"realm": realm, "category": subjects.normalize(category),
                                         "delete": [key]}, realm)

    async def _recategorize(self, op: str, actorId: str, category: str) -> bool:
        actor = self._session.view.actors.get(actorId)
        if actor is None:
            return False
        subjects.routable(actor.realm, category)  # a bad category is a CategoryError here, not a failed call
        response = await self._node_call(actor.node, op, {"uid": actorId, "category": category}, CONTROL_TIMEOUT,
                                         actor.realm)
        if response.isSuccess:
            data = response.data
            self._session.view.apply_local(data["key"], data["revision"], data["entry"])
        return response.isSuccess

    async def addToCategory(self, actorId: str, category: str) -> bool:
        """Add ``category`` to a running actor (it starts receiving its requests at once)."""
        return await self._recategorize("associate", actorId, category)

    async def removeFromCategory(self, actorId: str, category: str) -> bool:
        """Remove ``category`` from a running actor; False if it is not in it."""
        return await self._recategorize("disassociate", actorId, category)

    # ---------------------------------------------------------------- reading the cluster

    def getActorHandle(self, category: str, mode: str = "random", nRetries: int | None = None,
                       timeout: float | None = None, ident: str | None = None) -> ActorHandle:
        """A handle on ``category`` in the current realm (see `ActorHandle`)."""
        return ActorHandle(self._session, self._realm, category, mode, nRetries, timeout, ident)

    def getActorHandleGroup(self, categoryRoot: str, mode: str = "random", nRetries: int | None = None,
                            timeout: float | None = None, ident: str | None = None) -> ActorHandleGroup:
        """A group on the sub-categories of ``categoryRoot`` in the current realm (see `ActorHandleGroup`)."""
        return ActorHandleGroup(self._session, self._realm, categoryRoot, mode, nRetries, timeout, ident)

    def getDirectory(self, timeout: float = 10, isForce: bool = False, nRetries: int = 3) -> dict[str, Any]:
        """``{'realms': {realm: {category: {uid: 'node/host'}}}, 'reverse': {uid: 'node/host'},
        'is_inited': True}`` from the live view (the arguments are accepted for compatibility)."""
        view = self._session.view
        realms = {realm: view.categories(realm) for realm in view.realms()}
        reverse = {a.uid: f"{a.node}/{a.host}" for a in view.live()}
        return {"realms": realms, "reverse": reverse, "is_inited": True}

    def getNodeCount(self) -> int:
        """The number of live nodes now (`waitForNodes` waits for the first one; the blocking
        ``Beach.getNodeCount`` does, as the original did)."""
        return len(self._session.view.nodes)

    async def waitForNodes(self, timeout: float | None = None) -> int:
        """The number of live nodes, once there is one: while the registry is empty (a client
        started with its node, a node restarting) wait up to ``timeout`` seconds (default: the
        config's ``node_wait``, 10 s) for the first to register; 0 if none did."""
        view = self._session.view
        if not view.nodes:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + (self._session.config.node_wait if timeout is None else timeout)
            while not view.nodes and loop.time() < deadline:
                await asyncio.sleep(NODE_POLL)
        return len(view.nodes)

    def getClusterHealth(self) -> dict[str, dict[str, Any]]:
        """``{node: {'cpu': [percent per core], 'mem': percent, ...}}``: the node registry, with each
        node's load figures as it last said them (every second) once this client follows them —
        from its first call of this (the blocking face's first call waits for them); until then,
        the figures each node registered with."""
        view = self._session.view
        if not view.following_load:
            try:
                asyncio.get_running_loop().create_task(self._session.follow_load())
            except RuntimeError:  # not on the loop's thread: `_current_health` follows them
                pass
        keys = ("cpu", "mem", "cores", "mem_total", "mem_available", "n_actors", "hostname", "addresses", "updated")
        return {node_id: {k: getattr(node, k) for k in keys} for node_id in list(view.nodes)
                if (node := view.health(node_id)) is not None}

    async def _current_health(self) -> dict[str, dict[str, Any]]:
        """`getClusterHealth`, with every node's current load figures: the first call starts
        following them and waits up to `FIGURES_WAIT` seconds for each node's (the blocking face's
        ``getClusterHealth``)."""
        view = self._session.view
        if not view.following_load:
            await self._session.follow_load()
            deadline = asyncio.get_running_loop().time() + FIGURES_WAIT
            while set(view.nodes) - set(view.loads) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        return self.getClusterHealth()

    async def getLoadInfo(self) -> dict[str, Any]:
        """``{uid: {'inflight', 'bound', 'handlers'}}`` for every actor, asked of every node."""
        return (await self.node_infos())[0]

    async def node_infos(self) -> tuple[dict[str, Any], StateStats | None]:
        """Ask every node for its ``info`` at once: the load of every actor (as `getLoadInfo`),
        and the sizes of actor state (None until the node holding the supervisor lease has them,
        or when what it sent is not such a record)."""
        await self.waitForNodes()
        nodes = list(self._session.view.nodes)
        responses = await asyncio.gather(*(self._node_call(n, "info", {}, INFO_TIMEOUT) for n in nodes))
        load: dict[str, Any] = {}
        sizes = None
        for response in responses:
            if response.isSuccess:
                load.update(response.data["load"])
                figures = response.data.get("figures")
                try:  # (a node of the previous release says none)
                    if figures is not None:
                        self._session.view.take_load(records.check(records.NodeLoad, figures, "of an info reply"))
                except RecordError as err:
                    records.reject("info replies", "figures", err)
                sizes = response.data.get("state") or sizes
        try:  # (decoded: fields at their defaults, an empty ``categories``, are left out of the bytes)
            return load, None if sizes is None else records.check(StateStats, sizes, "in a node's info")
        except RecordError:
            return load, None

    async def getStacks(self, uid: str) -> ActorResponse:
        """The current Python stacks of the process running actor ``uid``: ``data = {'pid', 'host',
        'node', 'actor', 'threads': [{'name', 'serving', 'mine', 'stack'}], 'tasks': [...]}``;
        ``mine`` marks the threads serving a request of this actor now. A failed response if the
        actor is not in the directory or its node does not answer."""
        actor = self._session.view.actors.get(uid)
        if actor is None:
            return ActorResponse(False, f"no actor {uid!r} in the directory")
        return await self._node_call(actor.node, "stack", {"uid": uid}, STACK_TIMEOUT, actor.realm)

    def resolveUid(self, uid: str) -> str:
        """The uid of the one live actor (of any realm) whose uid starts with ``uid``, as git takes
        a unique hash prefix. Raises `UsageError` for an empty one or one that several actors have
        (naming them), and `NotFound` when none has it."""
        prefix = uid.strip().lower()
        actors = self._session.view.actors
        if prefix in actors and self._session.view.is_live(actors[prefix]):
            return prefix
        if not prefix:
            raise UsageError("an empty uid: give an actor's uid, or the first characters of it")
        found = sorted((a for a in self._session.view.live() if a.uid.startswith(prefix)), key=lambda a: a.uid)
        if not found:
            raise NotFound(f"no live actor has a uid starting with {uid!r}")
        if len(found) > 1:
            shown = ", ".join(f"{a.uid} ({a.realm}/{a.name} on {a.node})" for a in found[:10])
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            raise UsageError(f"uid prefix {uid!r} is ambiguous: {len(found)} actors have it: {shown}{more}")
        return found[0].uid

    def getAllNodeMetadata(self) -> dict[str, dict[str, Any]]:
        """``{node: {'status': {'success': True}, 'data': {'mtd': {uid: metadata}}}}``; private
        parameters (names starting with ``_``) show as ``'<PRIVATE>'``."""
        result: dict[str, dict[str, Any]] = {node: {"status": {"success": True}, "data": {"mtd": {}}}
                                             for node in self._session.view.nodes}
        for a in self._session.view.live():
            result[a.node]["data"]["mtd"][a.uid] = {
                "name": a.name, "realm": a.realm, "categories": a.categories, "instance_id": a.host,
                "pid": a.pid, "isolated": a.isolated, "owner": a.owner, "resources": a.resources,
                "time_to_drain": a.time_to_drain, "start": int(a.started), "params": a.params,
            }
        return result
