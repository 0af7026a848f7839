"""``/metrics``: the cluster model in the Prometheus text format (version 0.0.4), on the dashboard's
own port, so one scrape job watches the whole cluster.

Per node: CPU and memory. Per actor (labels ``uid``, ``realm``, ``actor`` (its class), ``node``) and
per category (labels ``realm``, ``category``, summed over its actors): requests processed,
in-flight, busy refusals, failures (handlers that raised), and recent restarts. And the dashboard's
own open live streams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from beach.dashboard.params import check_known
from beach.dashboard.state import dashboard
from beach.state.model import ClusterModel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = dict[str, str]


@dataclass
class Family:
    """One metric: its name, type, help text and samples."""

    name: str
    kind: str
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, labels: Labels, value: Any) -> None:
        """Add a sample (skipped when the value is unknown)."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.samples.append((labels, value))

    def text(self) -> str:
        """The family in the text format."""
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{_labels(labels)} {_value(value)}" for labels, value in self.samples]
        return "\n".join(lines)


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


# (name suffix, type, help, what to read from an actor dict) for the per-actor and per-category families
# (suffix, type, help, how to read it from a model actor)
LOAD: tuple[tuple[str, str, str, Callable[[dict[str, Any]], Any]], ...] = (
    ("requests_total", "counter", "requests processed", lambda a: a["counters"].get("processed")),
    ("inflight", "gauge", "requests being served now", lambda a: a["inflight"]),
    ("busy_total", "counter", "requests refused as busy (at the in-flight bound)", lambda a: a["counters"].get("busy")),
    ("failures_total", "counter", "requests whose handler raised", lambda a: a["counters"].get("exceptions")),
    ("restarts", "gauge", "restarts by the supervisor within its restart window", lambda a: a["restarts"]),
)


def families(model: ClusterModel) -> Iterable[Family]:
    """Every metric family, from the model as it is now."""
    summary = model.summary()
    yield Family("beach_connected", "gauge", "1 while the dashboard is connected to NATS",
                 [({}, int(summary["connected"]))])
    yield Family("beach_nodes", "gauge", "live nodes", [({}, summary["nodes"])])
    yield Family("beach_actors", "gauge", "live actors", [({}, summary["actors"])])
    cpu = Family("beach_node_cpu_percent", "gauge", "CPU use of a node, the mean of its cores, in percent")
    mem = Family("beach_node_memory_percent", "gauge", "memory use of a node, in percent")
    count = Family("beach_node_actors", "gauge", "actors running on a node")
    for node in model.nodes():
        labels = {"node": node["id"], "hostname": str(node["hostname"])}
        cpu.add(labels, node["cpu"])
        mem.add(labels, node["mem"])
        count.add(labels, node["n_actors"])
    yield from (cpu, mem, count)

    actors = model.actors()
    per_actor = [Family(f"beach_actor_{suffix}", kind, f"{text} (one actor)") for suffix, kind, text, _ in LOAD]
    bound = Family("beach_actor_inflight_bound", "gauge", "the most requests an actor serves at once")
    waiting = Family("beach_actor_waiting", "gauge", "requests an actor's handlers are waiting on (pending)")
    for actor in actors:
        labels = {"uid": actor["uid"], "realm": actor["realm"], "actor": actor["name"], "node": actor["node"]}
        for family, (_, _, _, read) in zip(per_actor, LOAD, strict=True):
            family.add(labels, read(actor))
        bound.add(labels, actor["bound"])
        waiting.add(labels, actor["waiting"])
    yield from per_actor
    yield from (bound, waiting)

    per_category = [Family(f"beach_category_{suffix}", kind, f"{text} (summed over a category's actors)")
                    for suffix, kind, text, _ in LOAD]
    members = Family("beach_category_actors", "gauge", "live actors in a category")
    for realm, categories in model.realms().items():
        in_realm = [a for a in actors if a["realm"] == realm]
        for category, n in categories.items():
            labels = {"realm": realm, "category": category}
            members.add(labels, n)
            serving = [a for a in in_realm if category in a["categories"]]
            for family, (_, _, _, read) in zip(per_category, LOAD, strict=True):
                values = [v for v in map(read, serving) if isinstance(v, (int, float))]
                if values:
                    family.add(labels, sum(values))
    yield members
    yield from per_category


async def endpoint(request: Request) -> Response:
    """``GET /metrics``."""
    check_known(request.query_params, ())
    dash = dashboard(request)
    streams = Family("beach_dashboard_streams", "gauge", "live page streams open", [({}, len(dash.hub))])
    body = "\n".join(family.text() for family in (*families(dash.model), streams)) + "\n"
    return Response(body, media_type=CONTENT_TYPE)
