"""The charts' series: CPU and memory per node (percent), requests per second per realm and per
actor class, and per category (``realm/category``) the p50 and p99 latency (milliseconds) and the
error rate (percent of its requests that failed) over the model's last ten seconds.

The model keeps them (bounded: 1 s points for 10 minutes, then 10 s points for 12 hours); this
module only picks and shapes them: ``{chart: {series name: [[t, value], ...]}}``, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from beach.state.model import ClusterModel, Series

CHARTS = ("node_cpu", "node_mem", "realm_rps", "class_rps", "category_p50", "category_p99", "category_errors")
SCALE = {"category_p50": 1000.0, "category_p99": 1000.0, "category_errors": 100.0}  # s → ms, ratio → %

Points = list[list[float]]


@dataclass(frozen=True)
class Query:
    """Which series: only node ``node``'s (its CPU and memory), only actor class ``klass``
    (``realm/Name``: its requests/s), or (neither) all of them."""

    node: str | None = None
    klass: str | None = None

    @property
    def charts(self) -> tuple[str, ...]:
        """The charts this query draws."""
        if self.node is not None:
            return ("node_cpu", "node_mem")
        if self.klass is not None:
            return ("class_rps",)
        return CHARTS


def _series(model: ClusterModel, query: Query) -> Iterator[tuple[str, str, Series]]:
    # (the charts of categories are only drawn for the whole cluster: Query picks none of them otherwise)
    for chart in query.charts:
        wanted = query.node if chart.startswith("node_") else query.klass
        for name, series in sorted(getattr(model, chart).items()):
            if wanted is None or name == wanted:
                yield chart, name, series


def _shape(points: list[tuple[float, float]], chart: str) -> Points:
    scale = SCALE.get(chart, 1.0)
    return [[round(t, 2), round(v * scale, 2)] for t, v in points]


def history(model: ClusterModel, query: Query = Query(), since: float = 0.0) -> dict[str, dict[str, Points]]:
    """Every point after ``since`` of the series ``query`` picks."""
    result: dict[str, dict[str, Points]] = {chart: {} for chart in query.charts}
    for chart, name, series in _series(model, query):
        result[chart][name] = _shape(series.points(since), chart)
    return result


def increments(model: ClusterModel, query: Query, sent: dict[tuple[str, str], float],
               since: float) -> dict[str, dict[str, Points]] | None:
    """The points each series gained after the last one in ``sent`` (updated), or after ``since`` for a
    series not sent yet; None when none did. Series are timed by their own source (node heartbeats,
    the model's tick), so each is followed on its own."""
    result: dict[str, dict[str, Points]] = {}
    for chart, name, series in _series(model, query):
        last = sent.get((chart, name), since)
        fresh = [(t, v) for t, v in series.points(last) if t > last]
        if fresh:
            sent[(chart, name)] = fresh[-1][0]
            result.setdefault(chart, {})[name] = _shape(fresh, chart)
    return result or None
