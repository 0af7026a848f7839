"""``/metrics``: the cluster model in the Prometheus text format (version 0.0.4), on the dashboard's
own port, so one scrape job watches the whole cluster.

* ``beach_build_info`` (the dashboard's beach and Python versions), ``beach_connected``, ``beach_nodes``,
  ``beach_actors``;
* per node: ``beach_node_cpu_ratio`` and ``beach_node_memory_ratio`` (0-1), ``beach_node_actors``;
* per realm, category and request type (only the types the actors handle; the rest is ``other``):
  ``beach_requests_total`` (every request an actor got, by ``outcome``: ok, error, exception, busy,
  unauthorized, unsupported, invalid_request, invalid_response, expired, dropped, refused) and the
  histogram ``beach_request_duration_seconds`` (from arrival to reply, the requests that reached a
  handler); as the actors' handles made them: ``beach_calls_total`` (by outcome: the caller's
  ``timeout``, ``no_actor``, ``busy``...), ``beach_call_duration_seconds`` (retries and backoff
  included) and ``beach_call_retries_total``. Each request counts in one category only (the one
  addressed; by uid: the actor's first), so categories do not double-count an actor in several;
* per category: ``beach_category_actors``;
* per actor (labels ``uid``, ``realm``, ``actor`` (its class), ``node``): ``beach_actor_requests_total``
  by outcome, ``beach_actor_inflight``, ``beach_actor_inflight_bound``, ``beach_actor_waiting``,
  ``beach_actor_restarts``, ``beach_actor_log_lines_dropped_total``;
* the dashboard itself: ``beach_dashboard_streams``, ``beach_dashboard_http_requests_total`` and
  ``beach_dashboard_http_request_duration_seconds``.

The sums keep the figures of actors that left, so counters only grow while the dashboard runs (a
restarted dashboard starts them again from the live actors' figures: a counter reset).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from beach.dashboard.params import check_known
from beach.dashboard.state import dashboard
from beach.metering import CONTENT_TYPE, Family, build_info, exposition, request_families
from beach.state.model import ClusterModel


def families(model: ClusterModel) -> Iterable[Family]:
    """Every metric family of the cluster, from the model as it is now."""
    summary = model.summary()
    yield build_info("dashboard")
    yield Family("beach_connected", "gauge", "1 while the dashboard is connected to NATS",
                 [({}, int(summary["connected"]))])
    yield Family("beach_nodes", "gauge", "live nodes", [({}, summary["nodes"])])
    yield Family("beach_actors", "gauge", "live actors", [({}, summary["actors"])])
    cpu = Family("beach_node_cpu_ratio", "gauge", "CPU use of a node, the mean of its cores (0-1)")
    mem = Family("beach_node_memory_ratio", "gauge", "memory use of a node (0-1)")
    count = Family("beach_node_actors", "gauge", "actors running on a node")
    for node in model.nodes():
        labels = {"node": node["id"], "hostname": str(node["hostname"])}
        cpu.add(labels, node["cpu"] / 100)
        mem.add(labels, node["mem"] / 100)
        count.add(labels, node["n_actors"])
    yield from (cpu, mem, count)

    yield from request_families("beach_request", "requests served by actors", model.requests())
    yield from request_families("beach_call", "requests made by actors", model.calls(), retries=True)
    members = Family("beach_category_actors", "gauge", "live actors in a category")
    for realm, categories in model.realms().items():
        for category, n in categories.items():
            members.add({"realm": realm, "category": category}, n)
    yield members

    requests = Family("beach_actor_requests_total", "counter", "requests an actor got, by outcome")
    inflight = Family("beach_actor_inflight", "gauge", "requests an actor is serving now")
    bound = Family("beach_actor_inflight_bound", "gauge", "the most requests an actor serves at once")
    waiting = Family("beach_actor_waiting", "gauge", "reply-less messages waiting for one of an actor's slots")
    restarts = Family("beach_actor_restarts", "gauge", "restarts by the supervisor within its restart window")
    logs_dropped = Family("beach_actor_log_lines_dropped_total", "counter",
                          "log lines of an actor dropped (over its rate limit, or a full queue)")
    for actor in model.actors():
        labels = {"uid": actor["uid"], "realm": actor["realm"], "actor": actor["name"], "node": actor["node"]}
        for outcome, n in sorted(actor["outcomes"].items()):
            requests.add({**labels, "outcome": outcome}, n)
        inflight.add(labels, actor["inflight"])
        bound.add(labels, actor["bound"])
        waiting.add(labels, actor["waiting"])
        restarts.add(labels, actor["restarts"])
        logs_dropped.add(labels, actor["counters"].get("logs_dropped"))
    yield from (requests, inflight, bound, waiting, restarts, logs_dropped)
    state = model.state()
    keys = Family("beach_state_keys", "gauge", "keys of actor state in a category")
    stored = Family("beach_state_bytes", "gauge", "bytes of actor state in a category (stored, sealed)")
    for c in state["categories"]:
        keys.add({"realm": c["realm"], "category": c["category"]}, c["keys"])
        stored.add({"realm": c["realm"], "category": c["category"]}, c["bytes"])
    buckets = Family("beach_bucket_bytes", "gauge", "bytes of one of beach's JetStream buckets or streams")
    for b in state["buckets"]:
        buckets.add({"bucket": b["name"]}, b["bytes"])
    yield from (keys, stored, buckets)


async def endpoint(request: Request) -> Response:
    """``GET /metrics``."""
    check_known(request.query_params, ())
    dash = dashboard(request)
    streams = Family("beach_dashboard_streams", "gauge", "live page streams open", [({}, len(dash.hub))])
    refused = Family("beach_dashboard_streams_refused_total", "counter", "live page streams refused at a cap "
                     "(dashboard.max_streams, max_streams_per_client): those pages poll", [({}, dash.hub.refused)])
    body = exposition((*families(dash.model), streams, refused, *dash.http.families()))
    return Response(body, media_type=CONTENT_TYPE)
