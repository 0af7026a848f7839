"""Request figures an operator reads: outcomes by kind and a duration histogram, per category and
request type, kept where requests are served (an actor's `Dispatcher`) and where they are made
(a session's handles), and summed by the cluster model into ``/metrics``, the dashboard and the
console.

A `Meter` holds one `Row` per ``(category, request type)``. Served requests are counted under the
types the actor handles; anything else is ``other``, so a caller cannot grow the series. A meter of
calls (the caller's side, where the request type is the caller's own choice) keeps at most
`MAX_ROWS` rows and counts the rest under ``other`` too.

Outcomes are label values: ``ok``; ``error`` (a handler's own failure, ``(False, ...)``); the
kinds of `beach.wire.Failure` in snake case (``exception``, ``timeout``, ``busy``, ``no_actor``,
``unauthorized``, ``unsupported``, ``invalid_request``, ``invalid_response``, ``bus_unavailable``,
...); and the server's own ``expired`` (the deadline passed before the handler started: no reply),
``dropped`` (a reply-less message past a full backlog) and ``refused`` (a message the seal refused).

The durations go into fixed buckets (`BUCKETS`, in seconds). Figures travel (in the hosts' load
messages) as plain lists: `Meter.snapshot` / `rows_of`.

`Family` writes the Prometheus text format; `HttpMeter` (ASGI middleware) counts and times an HTTP
server's own requests into `HttpStats` — by method, route and status, the route being the matched
route's path template (``/actors/{uid}``), never the raw path, so that a client cannot grow the
series (``other`` when no route matched); a response's duration runs to its last byte (a live
stream's: its whole life).
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from bisect import bisect_left
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beach.wire import Failure

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds of the duration histogram's buckets, in seconds: Prometheus's defaults (5 ms to
10 s), with three below them (a beach request on one machine takes well under a millisecond) and
two above (handlers that work for a minute); a last bucket, +Inf, holds the rest."""

OTHER = "other"
MAX_ROWS = 256
OK, ERROR, EXPIRED, DROPPED, REFUSED = "ok", "error", "expired", "dropped", "refused"
FAILURES = {kind: kind.name.lower() for kind in Failure}
"""The outcome label of each kind of failure (``Failure.NO_ACTOR`` → ``no_actor``)."""


def outcome(ok: bool, error: str) -> str:
    """The outcome label of a reply: ``ok``, a failure kind's label, or ``error`` (the handler's own)."""
    if ok:
        return OK
    kind = Failure.of(error)
    return ERROR if kind is None else FAILURES[kind]


class Row:
    """The figures of one ``(category, request type)``: requests by outcome, the histogram of the
    durations measured (``counts[i]`` requests took at most ``BUCKETS[i]`` seconds and more than
    the bucket before; the last entry is the rest), their sum, and the retries made (calls only)."""

    __slots__ = ("outcomes", "counts", "sum", "retries")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.retries = 0

    def add(self, outcome: str, seconds: float | None = None) -> None:
        """Count one request of ``outcome``; ``seconds`` (if measured) goes into the histogram."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if seconds is not None:
            self.counts[bisect_left(BUCKETS, seconds)] += 1
            self.sum += seconds

    def merge(self, other: Row) -> None:
        """Add ``other``'s figures to this row's."""
        for name, n in other.outcomes.items():
            self.outcomes[name] = self.outcomes.get(name, 0) + n
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum
        self.retries += other.retries

    @property
    def total(self) -> int:
        """Every request counted, whatever its outcome."""
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        """The requests that did not end ``ok``."""
        return self.total - self.outcomes.get(OK, 0)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0-1) of the durations, interpolated within its bucket as Prometheus's
        ``histogram_quantile`` does; None when nothing was measured. Past the last bound it is
        that bound (the histogram knows no more)."""
        n = sum(self.counts)
        if not n:
            return None
        rank, seen = q * n, 0
        for i, count in enumerate(self.counts):
            if count and seen + count >= rank:
                if i == len(BUCKETS):
                    return BUCKETS[-1]
                low = BUCKETS[i - 1] if i else 0.0
                return low + (BUCKETS[i] - low) * (rank - seen) / count
            seen += count
        return BUCKETS[-1]

    def since(self, before: Row | None) -> Row:
        """The figures added since ``before`` (an earlier copy of this row)."""
        if before is None:
            return self
        delta = Row()
        delta.outcomes = {k: v - before.outcomes.get(k, 0) for k, v in self.outcomes.items()}
        delta.counts = [a - b for a, b in zip(self.counts, before.counts, strict=True)]
        delta.sum = self.sum - before.sum
        delta.retries = self.retries - before.retries
        return delta

    def copy(self) -> Row:
        """An independent copy."""
        row = Row()
        row.merge(self)
        return row

    def dump(self) -> dict[str, Any]:
        """The row as plain data (JSON, msgpack)."""
        return {"outcomes": dict(self.outcomes), "buckets": list(self.counts), "sum": self.sum,
                "retries": self.retries}


Key = tuple[str, str]  # (category, request type)


class Meter:
    """Rows by ``(category, request type)``; at most ``max_rows`` of them (then ``other``)."""

    __slots__ = ("rows", "max_rows")

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.rows: dict[Key, Row] = {}
        self.max_rows = max_rows

    def row(self, category: str, request_type: str) -> Row:
        """The row of ``(category, request_type)``, made if new (``other`` past ``max_rows``)."""
        key = (category, request_type)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= self.max_rows:
                key = (category, OTHER)
                row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = Row()
        return row

    def add(self, category: str, request_type: str, outcome: str, seconds: float | None = None) -> None:
        """Count one request (see `Row.add`)."""
        self.row(category, request_type).add(outcome, seconds)

    def snapshot(self) -> list[list[Any]]:
        """The rows as plain lists, for the wire: ``[category, type, outcomes, buckets, sum, retries]``."""
        return [[c, t, dict(r.outcomes), list(r.counts), r.sum, r.retries] for (c, t), r in self.rows.items()]


def rows_of(snapshot: Any) -> Iterator[tuple[Key, Row]]:
    """The rows of a `Meter.snapshot` off the wire; malformed entries are skipped (a newer or
    broken sender must not break the reader)."""
    if not isinstance(snapshot, list):
        return
    for item in snapshot:
        try:
            category, request_type, outcomes, counts, total, retries = item
            row = Row()
            row.outcomes = {str(k): int(v) for k, v in outcomes.items()}
            if len(counts) != len(row.counts):
                continue
            row.counts = [int(n) for n in counts]
            row.sum, row.retries = float(total), int(retries)
        except (TypeError, ValueError, AttributeError):
            continue
        yield (str(category), str(request_type)), row


K = TypeVar("K", bound=Hashable)


def merged(rows: Iterable[tuple[K, Row]]) -> dict[K, Row]:
    """Rows summed by key (copies: the rows given are left as they are)."""
    result: dict[K, Row] = {}
    for key, row in rows:
        into = result.get(key)
        if into is None:
            result[key] = row.copy()
        else:
            into.merge(row)
    return result


# ---------------------------------------------------------------- the Prometheus text format

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = dict[str, str]


class Family:
    """One metric in the Prometheus text format (version 0.0.4): its name, type, help text and
    samples (a histogram's carry their ``_bucket`` / ``_sum`` / ``_count`` suffix)."""

    def __init__(self, name: str, kind: str, help: str, samples: Iterable[tuple[Labels, Any]] = ()) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.samples: list[tuple[str, Labels, float]] = []
        for labels, value in samples:
            self.add(labels, value)

    def add(self, labels: Labels, value: Any, suffix: str = "") -> None:
        """Add a sample (skipped when the value is unknown)."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.samples.append((suffix, labels, value))

    def histogram(self, labels: Labels, row: Row) -> None:
        """Add ``row``'s durations as a histogram (cumulative buckets, ``+Inf``, sum and count)."""
        seen = 0
        for bound, count in zip((*BUCKETS, float("inf")), row.counts, strict=True):
            seen += count
            self.add({**labels, "le": "+Inf" if bound == float("inf") else repr(bound)}, seen, "_bucket")
        self.add(labels, row.sum, "_sum")
        self.add(labels, seen, "_count")

    def text(self) -> str:
        """The family in the text format."""
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{suffix}{_labels(labels)} {_value(value)}" for suffix, labels, value in self.samples]
        return "\n".join(lines)


def build_info(what: str) -> Family:
    """``beach_build_info``: always 1, labelled with the beach and Python versions of the ``what``
    serving it."""
    try:
        version = importlib.metadata.version("beach")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    return Family("beach_build_info", "gauge", f"always 1: the beach and Python versions of the {what}",
                  [({"version": version, "python": platform.python_version()}, 1)])


def exposition(families: Iterable[Family]) -> str:
    """Families as one ``/metrics`` body."""
    return "".join(family.text() + "\n" for family in families)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items()) + "}"


def _value(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def request_families(prefix: str, what: str, rows: Iterable[dict[str, Any]], retries: bool = False) -> list[Family]:
    """``<prefix>s_total`` by outcome and ``<prefix>_duration_seconds`` (and, with ``retries``,
    ``<prefix>_retries_total``) per realm, category and request type, from the model's rows
    (`ClusterModel.requests` / `ClusterModel.calls`)."""
    total = Family(f"{prefix}s_total", "counter", f"{what}, by outcome (ok, error, exception, timeout, busy, "
                                                  "no_actor, unauthorized, expired, dropped, refused, ...)")
    duration = Family(f"{prefix}_duration_seconds", "histogram", f"how long {what} took, in seconds")
    retried = Family(f"{prefix}_retries_total", "counter", f"retries of {what} (after a timeout, busy, no actor)")
    for item in rows:
        labels = {"realm": item["realm"], "category": item["category"], "request_type": item["type"]}
        for name, n in sorted(item["outcomes"].items()):
            total.add({**labels, "outcome": name}, n)
        row = Row()
        row.counts, row.sum = list(item["buckets"]), item["sum"]
        duration.histogram(labels, row)
        retried.add(labels, item["retries"])
    return [total, duration, retried] if retries else [total, duration]


# ---------------------------------------------------------------- an HTTP server's own requests


class HttpStats:
    """An HTTP server's figures: ``requests[(method, route, status)]``, ``durations[(method, route)]``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.requests: dict[tuple[str, str, str], int] = {}
        self.durations: dict[tuple[str, str], Row] = {}

    def add(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request."""
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        self.durations.setdefault((method, route), Row()).add("ok", seconds)

    def families(self) -> list[Family]:
        """``<prefix>_http_requests_total`` and ``<prefix>_http_request_duration_seconds``."""
        total = Family(f"{self.prefix}_http_requests_total", "counter", "HTTP requests answered, by method, "
                                                                         "route and status")
        for (method, route, status), n in sorted(self.requests.items()):
            total.add({"method": method, "route": route, "status": status}, n)
        duration = Family(f"{self.prefix}_http_request_duration_seconds", "histogram",
                          "how long HTTP requests took to answer, in seconds")
        for (method, route), row in sorted(self.durations.items()):
            duration.histogram({"method": method, "route": route}, row)
        return [total, duration]


class HttpMeter:
    """ASGI middleware counting every HTTP request into ``stats``."""

    def __init__(self, app: ASGIApp, stats: HttpStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # unless the app starts a response

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            route = getattr(scope.get("route"), "path", None) or OTHER
            method = scope["method"] if scope["method"] in _METHODS else OTHER
            self.stats.add(method, route, status, time.monotonic() - started)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
