"""`ClusterModel`: one live model of the cluster's state, for every tool that shows it.

The CLI tables, the console and the dashboard (its pages, JSON API and ``/metrics``) all read this
model; none keeps a copy of its own. It is fed by what the cluster pushes, never by re-reading
everything in a loop:

* the directory view's watches (actors, nodes) and the nodes' load figures it follows (CPU,
  memory, actors: ``beach.stats.node.<node>`` every second),
* the desired-state bucket's watch (supervised actors, patrol specs),
* each actor host's load figures, published every second on ``beach.stats.<host>``: its actors'
  counters and request figures (`beach.metering`: outcomes and durations per category and request
  type, as served) and its handles' calls (as made: outcomes, durations, retries),
* the sizes of actor state (keys and bytes per category, bytes per bucket), published every few
  seconds on ``beach.stats.state`` by the node holding the supervisor lease,
* the live log lines on ``beach.log.>`` (a bounded tail).

Request figures are summed per realm, category and request type (`requests`, `calls`); the figures
of an actor that left (or of a host not heard from for `STALE_SECONDS`) are kept in the sums, so
that a counter only grows while the model runs. It keeps bounded history (`Series`: 1 s points for
the last minutes, 10 s points for 12 hours) of each node's CPU and memory, of the requests per
second of each realm and actor class, and of each category's latency (p50, p99) and error ratio
over the last `WINDOW_SECONDS`. Readers get plain dicts (ready for JSON); ``listeners`` hear, at
most every `NOTIFY_SECONDS`, which parts changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from itertools import chain
from statistics import fmean
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from beach import bus, logs, metering, wire
from beach.state import desired, patrol, records, stateview
from beach.state.desired import SupervisionRecord
from beach.state.patrol import PatrolSpec
from beach.state.records import NodeEntry, StateStats
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.client.core import AsyncBeach

log = logging.getLogger("beach.model")

NOTIFY_SECONDS = 0.1
TICK_SECONDS = 1.0
STATS_SUBJECT = "beach.stats.*"  # hosts' figures and the state sizes (nodes' are one token deeper: the view's)
FINE_POINTS = 600          # 1 s apart: the last 10 minutes
COARSE_STEP = 10.0         # then one point per 10 s ...
COARSE_POINTS = 4320       # ... for 12 hours (the original dashboard's history)
LOG_TAIL = 2000
WINDOW_SECONDS = 10        # a category's latency and error ratio: over the last 10 s
STALE_SECONDS = 30.0       # a host silent this long has gone: its calls are folded into the sums
NOT_SERVED = (metering.FAILURES[wire.BUSY], metering.DROPPED, metering.REFUSED)  # never reached a handler
Key = tuple[str, str, str]  # realm, category, request type
COUNTERS = ("processed", "busy", "expired", "exceptions", "unauthorized", "invalid", "dropped", "refused", "conflicts",
            "logs_dropped")


class Series:
    """A bounded time series: recent points as they come (at most `FINE_POINTS`), older ones
    averaged into `COARSE_STEP` buckets (at most `COARSE_POINTS`)."""

    __slots__ = ("fine", "coarse", "_bucket")

    def __init__(self, fine: int = FINE_POINTS, coarse: int = COARSE_POINTS) -> None:
        self.fine: deque[tuple[float, float]] = deque(maxlen=fine)
        self.coarse: deque[tuple[float, float]] = deque(maxlen=coarse)
        self._bucket: list[float] = []  # [start, sum, count]

    def add(self, t: float, value: float) -> None:
        """Record ``value`` at time ``t`` (seconds since the epoch)."""
        self.fine.append((t, value))
        start = t - t % COARSE_STEP
        if self._bucket and self._bucket[0] != start:
            self.coarse.append((self._bucket[0], self._bucket[1] / self._bucket[2]))
            self._bucket = []
        if not self._bucket:
            self._bucket = [start, 0.0, 0]
        self._bucket[1] += value
        self._bucket[2] += 1

    def recent(self, seconds: float) -> list[float]:
        """The values of the last ``seconds`` (fine points), oldest first."""
        if not self.fine:
            return []
        since = self.fine[-1][0] - seconds
        return [v for t, v in self.fine if t >= since]

    def points(self, since: float = 0.0) -> list[tuple[float, float]]:
        """Every point after ``since``: coarse ones older than the fine window, then the fine ones."""
        first_fine = self.fine[0][0] if self.fine else float("inf")
        older = [(t, v) for t, v in self.coarse if since <= t < first_fine]
        return older + [(t, v) for t, v in self.fine if t >= since]

    @property
    def last(self) -> float | None:
        """The latest value, or None."""
        return self.fine[-1][1] if self.fine else None


def mean_cpu(node: NodeEntry) -> float:
    """A node's CPU use: the mean of its cores, in percent."""
    cpu = node.cpu or []
    try:
        return float(fmean(cpu)) if cpu else 0.0
    except (TypeError, ValueError):
        return 0.0


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class ClusterModel:
    """The live state of a cluster, as seen by ``client`` (see the module docs).

    ``await start()`` subscribes to what feeds it; ``await stop()`` ends that. Raises `BusError`
    from `start` when NATS cannot answer.
    """

    def __init__(self, client: AsyncBeach, log_tail: int = LOG_TAIL) -> None:
        self.client = client
        self.session = client.session
        self.view = client.session.view
        self.listeners: list[Callable[[set[str]], None]] = []
        self.load: dict[str, dict[str, Any]] = {}          # uid → latest load figures
        self._rates: dict[str, tuple[float, float, float]] = {}  # uid → (t, processed, req/s)
        self.node_cpu: dict[str, Series] = {}
        self.node_mem: dict[str, Series] = {}
        self.realm_rps: dict[str, Series] = {}
        self.class_rps: dict[str, Series] = {}            # 'realm/Class' → req/s
        self.category_p50: dict[str, Series] = {}         # 'realm/category' → seconds
        self.category_p99: dict[str, Series] = {}
        self.category_errors: dict[str, Series] = {}      # 'realm/category' → failed / requests (0-1)
        self._served: dict[str, dict[Key, metering.Row]] = {}   # uid → its rows, as last heard
        self._host_calls: dict[str, tuple[float, dict[Key, metering.Row]]] = {}  # host → (t, rows)
        self._departed: dict[Key, metering.Row] = {}      # the rows of actors that left
        self._departed_calls: dict[Key, metering.Row] = {}
        self._window: deque[dict[tuple[str, str], metering.Row]] = deque(maxlen=WINDOW_SECONDS + 1)
        self.log_lines: deque[logs.LogLine] = deque(maxlen=log_tail)
        self.mirror: desired.Mirror | None = None
        self.state_sizes: StateStats | None = None
        self.connected = True
        self.started = time.time()
        self._pending: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._subs: list[Any] = []
        self._tick: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- feeding

    async def start(self) -> None:
        """Start following the cluster."""
        self.view.listeners.append(self._on_directory)
        for node_id in self.view.nodes:
            self._sample_node(node_id)
        nc = self.session.nc
        with bus.translated("cannot follow the cluster"):
            await self.session.follow_load()
            self._subs.append(await nc.subscribe(STATS_SUBJECT, cb=self._on_stats))
            self._subs.append(await nc.subscribe(logs.SUBJECTS, cb=self._on_log))
            self.mirror = desired.Mirror(await bus.open_desired(nc, self.session.config))
            apply = self.mirror.apply

            def apply_desired(entry: Any) -> None:
                apply(entry)
                self.changed("desired")

            self.mirror.apply = apply_desired
            await self.mirror.start()
        self._tick = asyncio.get_running_loop().create_task(self._ticking())

    async def stop(self) -> None:
        """Stop following the cluster."""
        if self._on_directory in self.view.listeners:
            self.view.listeners.remove(self._on_directory)
        if self._tick is not None:
            self._tick.cancel()
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone
                pass
        self._subs = []
        if self.mirror is not None:
            await self.mirror.stop()
        if self._flush is not None:
            self._flush.cancel()

    async def refresh_load(self) -> None:
        """Ask every node for its actors' load and the sizes of actor state now (for one-shot tools
        that cannot wait for the next figures)."""
        load, sizes = await self.client.node_infos()
        self._take_load(load, time.time())
        if sizes is not None:
            self._take_sizes(sizes)
        self.changed("stats")

    def changed(self, what: str) -> None:
        """Note that ``what`` changed; listeners hear of it soon, coalesced."""
        self._pending.add(what)
        if self._flush is None:
            try:
                self._flush = asyncio.get_running_loop().call_later(NOTIFY_SECONDS, self._notify)
            except RuntimeError:  # no loop (a read from another thread): nobody listens there
                pass

    def _notify(self) -> None:
        self._flush = None
        what, self._pending = self._pending, set()
        for listener in list(self.listeners):
            try:
                listener(what)
            except Exception:
                log.exception("a cluster model listener failed")

    def _on_directory(self, kind: str, ident: str) -> None:
        if kind in ("node", "load"):
            self._sample_node(ident)
            self.changed("nodes")
        else:
            if ident not in self.view.actors:
                self.load.pop(ident, None)
                self._rates.pop(ident, None)
                _fold(self._departed, self._served.pop(ident, {}))
            self.changed("actors")

    def _sample_node(self, node_id: str) -> None:
        node = self.view.health(node_id)
        if node is None:
            return
        t = _number(node.updated) or time.time()
        cpu = self.node_cpu.setdefault(node_id, Series())
        if cpu.fine and cpu.fine[-1][0] >= t:
            return  # the same heartbeat again (a client's own write, a watch restart)
        cpu.add(t, mean_cpu(node))
        self.node_mem.setdefault(node_id, Series()).add(t, _number(node.mem))

    async def _on_stats(self, msg: Msg) -> None:
        if msg.subject == stateview.STATS_SUBJECT:
            try:
                self._take_sizes(wire.unpack(self.session.unseal(msg, fresh=False)))
            except (ValueError, TypeError):
                return  # refused by the seal, or not a record: skip it
            self.changed("state")
            return
        try:
            stats = wire.unpack(self.session.unseal(msg, fresh=False))
            load = stats["load"]
            when = float(stats["t"])
            if not isinstance(load, dict):
                raise TypeError("load is not a map")
        except (ValueError, KeyError, TypeError):
            return  # not ours, from a newer beach, or refused by the seal: skip it
        self._take_load(load, when)
        calls = stats.get("calls")
        if isinstance(calls, dict):
            self._host_calls[str(stats.get("host"))] = (time.time(), {
                (str(realm), *key): row for realm, rows in calls.items() for key, row in metering.rows_of(rows)})
        self.changed("stats")

    def _take_sizes(self, value: Any) -> None:
        sizes = value if isinstance(value, StateStats) else \
            records.check(StateStats, value, "on " + stateview.STATS_SUBJECT)  # RecordError: a ValueError
        if self.state_sizes is None or sizes.t >= self.state_sizes.t:
            self.state_sizes = sizes

    def _take_load(self, load: dict[str, Any], when: float) -> None:
        for uid, figures in load.items():
            if not isinstance(figures, dict) or uid not in self.view.actors:
                continue
            self.load[uid] = figures
            realm = self.view.actors[uid].realm
            rows = {(realm, *key): row for key, row in metering.rows_of(figures.get("meter"))}
            self._served[uid] = rows
            # requests per second: every request that reached the actor's handlers, failures included
            processed = (sum(r.total - sum(r.outcomes.get(k, 0) for k in NOT_SERVED) for r in rows.values())
                         if rows else _number(figures.get("processed")))
            previous = self._rates.get(uid)
            rate = 0.0
            if previous is not None and when > previous[0]:
                rate = max(0.0, (processed - previous[1]) / (when - previous[0]))
            elif previous is not None:
                continue  # the same figures again
            self._rates[uid] = (when, processed, rate)

    async def _on_log(self, msg: Msg) -> None:
        line = logs.from_msg(msg, self.session.sealer)
        if line is not None:
            self.log_lines.append(line)
            self.changed("logs")

    async def _ticking(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            connected = self.session.nc.is_connected
            if connected != self.connected:
                self.connected = connected
                self.changed("connection")
            now = time.time()
            by_realm: dict[str, float] = {}
            by_class: dict[str, float] = {}
            for actor in self.view.live():
                rate = self.rate(actor.uid)
                by_realm[actor.realm] = by_realm.get(actor.realm, 0.0) + rate
                key = f"{actor.realm}/{actor.name}"
                by_class[key] = by_class.get(key, 0.0) + rate
            for name, rate in by_realm.items():
                self.realm_rps.setdefault(name, Series()).add(now, rate)
            for name, rate in by_class.items():
                self.class_rps.setdefault(name, Series()).add(now, rate)
            for series, current in ((self.realm_rps, by_realm), (self.class_rps, by_class)):
                for name, s in series.items():  # gone since: they read 0 now
                    if name not in current and s.last:
                        s.add(now, 0.0)
            self._sample_categories(now)
            self.changed("tick")

    def _sample_categories(self, now: float) -> None:
        """Add each category's latency and error ratio over the last `WINDOW_SECONDS` to its series."""
        for host, (heard, rows) in list(self._host_calls.items()):
            if now - heard > STALE_SECONDS:
                _fold(self._departed_calls, rows)
                del self._host_calls[host]
        by_category: dict[tuple[str, str], metering.Row] = {}
        for (realm, category, _), row in self._served_rows().items():
            by_category.setdefault((realm, category), metering.Row()).merge(row)
        self._window.append(by_category)
        full = len(self._window) == self._window.maxlen
        for (realm, category), row in by_category.items():
            # Against the window's oldest figures. A category not in them is new since, and all it did is
            # recent; unless this model is younger than the window: then what it did before the model saw
            # it is of unknown age, and its first figures seen are the base.
            oldest = self._window[0].get((realm, category))
            if oldest is None and not full:
                oldest = next(w[(realm, category)] for w in self._window if (realm, category) in w)
            delta = row.since(oldest)
            served = delta.total - sum(delta.outcomes.get(k, 0) for k in NOT_SERVED)
            name = f"{realm}/{category}"
            if delta.total > 0:
                self.category_errors.setdefault(name, Series()).add(now, delta.failed / delta.total)
            for q, series in ((0.5, self.category_p50), (0.99, self.category_p99)):
                value = delta.quantile(q) if served > 0 else None
                if value is not None:
                    series.setdefault(name, Series()).add(now, value)

    def _served_rows(self) -> dict[Key, metering.Row]:
        return metering.merged(chain(self._departed.items(), *(rows.items() for rows in self._served.values())))

    # ---------------------------------------------------------------- reading

    def rate(self, uid: str) -> float:
        """Requests per second actor ``uid`` served lately (0 when its figures are stale)."""
        entry = self._rates.get(uid)
        if entry is None or time.time() - entry[0] > 5 * TICK_SECONDS:
            return 0.0
        return entry[2]

    def nodes(self) -> list[dict[str, Any]]:
        """Every live node, sorted by id."""
        result = []
        for node_id in sorted(self.view.nodes):
            node = self.view.health(node_id)
            if node is None:
                continue
            hosts = node.hosts
            result.append({
                "id": node_id, "hostname": node.hostname or "?", "addresses": node.addresses or [],
                "cores": node.cores or len(node.cpu or []) or 1, "cpu": mean_cpu(node),
                "cpu_per_core": node.cpu or [], "mem": _number(node.mem),
                "mem_total": node.mem_total, "n_actors": node.n_actors or 0,
                "actors_by_realm": node.actors_by_realm or {}, "hosts": hosts, "pid": node.pid,
                "started": node.started, "updated": node.updated,
                "cordoned": bool(node.cordoned), "stopping": node.stopping,
            })
        return result

    def node(self, node_id: str) -> dict[str, Any] | None:
        """One node, or None."""
        return next((n for n in self.nodes() if n["id"] == node_id), None)

    def _restarts(self) -> dict[str, SupervisionRecord]:
        """Supervision records by the uid of their current incarnation."""
        if self.mirror is None:
            return {}
        return {v.uid: v for v, _ in self.mirror.under("sup.", SupervisionRecord).values()}

    def actors(self, realm: str | None = None, category: str | None = None) -> list[dict[str, Any]]:
        """Every live actor (of ``realm``, under ``category`` by segment, if given), sorted by realm,
        class and uid."""
        if category is not None:
            live = self.view.find(realm or self.client.realm, category)
        else:
            live = self.view.live(realm)
        supervision = self._restarts()
        now = time.time()
        result = []
        for a in sorted(live, key=lambda a: (a.realm, a.name, a.uid)):
            figures = self.load.get(a.uid, {})
            record = supervision.get(a.uid)
            inflight, bound = figures.get("inflight"), figures.get("bound")
            result.append({
                "uid": a.uid, "realm": a.realm, "name": a.name, "categories": a.categories,
                "node": a.node, "host": a.host, "pid": a.pid, "isolated": bool(a.isolated),
                "params": a.params or {}, "resources": a.resources or {}, "owner": a.owner,
                "started": a.started, "uptime": max(0.0, now - _number(a.started)),
                "sid": a.sid, "restart": a.restart, "version": a.version,
                "restarts": len(record.restarts) if record else 0,
                "inflight": inflight, "bound": bound, "waiting": figures.get("waiting"),
                "counters": {k: figures.get(k, 0) for k in COUNTERS} if figures else {},
                "outcomes": _outcomes(self._served.get(a.uid, {})),
                "rps": self.rate(a.uid),
                "saturated": isinstance(inflight, int) and isinstance(bound, int) and inflight >= bound,
            })
        return result

    def actor(self, uid: str) -> dict[str, Any] | None:
        """One live actor, or None."""
        entry = self.view.actors.get(uid)
        if entry is None:
            return None
        actor = next((a for a in self.actors(entry.realm) if a["uid"] == uid), None)
        if actor is not None:
            actor["requests"] = _rows(self._served.get(uid, {}), None)
        return actor

    def realms(self) -> dict[str, dict[str, int]]:
        """``{realm: {category: number of actors}}`` (the hidden ``_ACTORS/<uid>`` ones left out)."""
        result: dict[str, dict[str, int]] = {}
        for actor in self.view.live():
            categories = result.setdefault(actor.realm, {})
            for category in actor.categories:
                categories[category] = categories.get(category, 0) + 1
        return {realm: dict(sorted(cats.items())) for realm, cats in sorted(result.items())}

    def supervised(self) -> list[dict[str, Any]]:
        """Every supervised actor: what should run against what does."""
        if self.mirror is None:
            return []
        result = []
        for _key, (record, _) in sorted(self.mirror.under("sup.", SupervisionRecord).items()):
            spawn, uid = record.spawn, record.uid
            running = uid in self.view.actors and self.view.is_live(self.view.actors[uid])
            result.append({"sid": record.sid, "name": spawn.actorName, "realm": spawn.realm,
                           "categories": spawn.category, "state": record.state, "uid": uid, "running": running,
                           "restart": record.restart, "restarts": len(record.restarts),
                           "last_error": record.last_error, "last_restart": record.last_restart,
                           "waiting_for": record.waiting_for, "version": record.version})
        return result

    def patrols(self) -> list[dict[str, Any]]:
        """Every patrol spec, each entry with its target and running counts."""
        if self.mirror is None:
            return []
        nodes = self.view.nodes
        cores = sum(int(n.cores or 1) for n in nodes.values())
        result = []
        for _, (spec, _) in sorted(self.mirror.under("patrol.", PatrolSpec).items()):
            entries = []
            for entry in spec.actors:
                tag = patrol.owner_tag(spec.owner, entry.name)
                running = sum(1 for a in self.view.live(spec.realm) if a.owner == tag)
                entries.append({"name": entry.name, "actor": entry.actorName, "category": entry.categories,
                                "target": patrol.instances(entry.instances, len(nodes), cores), "running": running})
            result.append({"owner": spec.owner, "realm": spec.realm, "entries": entries})
        return result

    def logs(self, realm: str | None = None, category: str | None = None, uid: str | None = None,
             level: int = logging.INFO, kind: str | None = "app", limit: int = 200) -> list[logs.LogLine]:
        """The latest live log lines that match, oldest first (at most ``limit``)."""
        prefix = subjects.normalize(category) if category else None
        picked: list[logs.LogLine] = []
        for line in reversed(self.log_lines):
            if line.levelno < level or (kind and line.kind != kind):
                continue
            if (realm and line.realm != realm) or (uid and line.uid != uid):
                continue
            if prefix and not any(subjects.matches(c, prefix) for c in line.categories):
                continue
            picked.append(line)
            if len(picked) >= limit:
                break
        return picked[::-1]

    def requests(self, realm: str | None = None) -> list[dict[str, Any]]:
        """The requests the actors served, per realm, category and request type (see
        `beach.metering`), actors that left included: ``outcomes``, ``buckets`` (the histogram's
        counts per bucket, not cumulative, bounds in ``metering.BUCKETS``), ``sum`` (seconds),
        ``count`` (timed), ``total``, ``failed``, ``p50`` and ``p99`` (seconds, or None)."""
        return _rows(self._served_rows(), realm)

    def calls(self, realm: str | None = None) -> list[dict[str, Any]]:
        """The requests the actors made (their handles), the same way as `requests`, and ``retries``."""
        rows = metering.merged(chain(self._departed_calls.items(),
                                     *(rows.items() for _, rows in self._host_calls.values())))
        return _rows(rows, realm)

    def category_figures(self) -> dict[str, dict[str, float | None]]:
        """Each category's (``realm/category``) latest latency and error ratio: ``p50``, ``p99``
        (seconds) and ``errors`` (0-1) over the last `WINDOW_SECONDS`, None when it served nothing."""
        names = set(self.category_p50) | set(self.category_errors)
        result = {}
        for name in sorted(names):
            figures: dict[str, float | None] = {}
            for key, series in (("p50", self.category_p50), ("p99", self.category_p99),
                                ("errors", self.category_errors)):
                s = series.get(name)
                fresh = s is not None and s.fine and time.time() - s.fine[-1][0] <= 2 * TICK_SECONDS
                figures[key] = s.last if fresh and s is not None else None
            result[name] = figures
        return result

    def state(self) -> dict[str, Any]:
        """The sizes of actor state: ``categories`` (each ``{'realm', 'category', 'keys', 'bytes',
        'actors'}``: its keys, their stored bytes, its live actors), ``buckets`` (each of beach's
        buckets and streams: ``{'name', 'bytes', 'messages'}``) and ``updated`` (when the node
        holding the supervisor lease measured them; None before it has)."""
        sizes = self.state_sizes
        if sizes is None:
            return {"categories": [], "buckets": [], "updated": None}
        realms = self.realms()
        categories = []
        for realm, by_category in sorted(sizes.categories.items()):
            if not isinstance(by_category, dict):
                continue
            for category, figures in sorted(by_category.items()):
                if isinstance(figures, list) and len(figures) == 2:
                    categories.append({"realm": realm, "category": category, "keys": int(_number(figures[0])),
                                       "bytes": int(_number(figures[1])),
                                       "actors": realms.get(realm, {}).get(category, 0)})
        buckets = [{"name": name, "bytes": int(_number(f.get("bytes"))), "messages": int(_number(f.get("messages")))}
                   for name, f in sorted(sizes.buckets.items()) if isinstance(f, dict)]
        return {"categories": categories, "buckets": buckets, "updated": sizes.t}

    def summary(self) -> dict[str, Any]:
        """The counters at the top of a dashboard: nodes, actors, realms, categories, requests/s,
        keys of actor state."""
        live = self.view.live()
        realms = self.realms()
        return {"connected": self.connected, "nodes": len(self.view.nodes), "actors": len(live),
                "realms": len(realms), "categories": sum(len(c) for c in realms.values()),
                "rps": sum(self.rate(a.uid) for a in live),
                "state_keys": sum(c["keys"] for c in self.state()["categories"])}


def _outcomes(rows: dict[Key, metering.Row]) -> dict[str, int]:
    result: dict[str, int] = {}
    for row in rows.values():
        for name, n in row.outcomes.items():
            result[name] = result.get(name, 0) + n
    return dict(sorted(result.items()))


def _fold(into: dict[Key, metering.Row], rows: dict[Key, metering.Row]) -> None:
    for key, row in rows.items():
        if key in into:
            into[key].merge(row)
        else:
            into[key] = row.copy()


def _rows(rows: dict[Key, metering.Row], realm: str | None) -> list[dict[str, Any]]:
    result = []
    for (r, category, request_type), row in sorted(rows.items()):
        if realm is not None and r != realm:
            continue
        result.append({"realm": r, "category": category, "type": request_type, **row.dump(),
                       "count": sum(row.counts), "total": row.total, "failed": row.failed,
                       "p50": row.quantile(0.5), "p99": row.quantile(0.99)})
    return result
