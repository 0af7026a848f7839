"""``/api/openapi.json``: the OpenAPI 3.1 description of the JSON API, with response schemas
(JSON Schema 2020-12, as OpenAPI 3.1 uses it)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from beach import __version__
from beach.dashboard import history, logtail, params
from beach.dashboard.responses import JSON

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def _object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required}


def _map(values: Schema) -> Schema:
    return {"type": "object", "additionalProperties": values}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STRING, NUMBER, INTEGER, BOOLEAN = ({"type": t} for t in ("string", "number", "integer", "boolean"))
POINTS = _array({"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2,
                 "description": "[time (s since the epoch), value]"})

SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": STRING}),
    "Health": _object({"ok": BOOLEAN, "connected": BOOLEAN, "nodes": INTEGER}),
    "Summary": _object({"connected": BOOLEAN, "nodes": INTEGER, "actors": INTEGER, "realms": INTEGER,
                        "categories": INTEGER, "rps": NUMBER,
                        "state_keys": {"type": "integer", "description": "keys of actor state, every category"}}),
    "Node": _object({
        "id": STRING, "hostname": STRING, "addresses": _array(STRING), "cores": INTEGER, "cpu": NUMBER,
        "cpu_per_core": _array(NUMBER), "mem": NUMBER, "mem_total": _nullable("integer"), "n_actors": INTEGER,
        "actors_by_realm": _map(INTEGER), "hosts": _map({"type": "object"}), "pid": _nullable("integer"),
        "started": _nullable("number"), "updated": _nullable("number"),
        "cordoned": {"type": "boolean", "description": "drained: takes no new actors"},
        "stopping": {"type": "boolean", "description": "shutting down: takes no new actors"}}),
    "Actor": _object({
        "uid": STRING, "realm": STRING, "name": STRING, "categories": _array(STRING), "node": STRING,
        "host": STRING, "pid": _nullable("integer"), "isolated": BOOLEAN,
        "params": {"type": "object", "description": "private parameters (names starting with _) show as <PRIVATE>"},
        "resources": {"type": "object"}, "owner": _nullable("string"), "started": _nullable("number"),
        "uptime": NUMBER, "sid": _nullable("string"), "restart": STRING, "restarts": INTEGER,
        "version": {"type": ["string", "null"], "description": "the deployed version of its realm's code it runs "
                    "(null: the code directory)"},
        "inflight": _nullable("integer"), "bound": _nullable("integer"), "waiting": _nullable("integer"),
        "counters": _map(INTEGER), "rps": NUMBER, "saturated": BOOLEAN,
        "outcomes": {"description": "requests it got, by outcome (ok, error, exception, busy, ...)", **_map(INTEGER)},
        "requests": {"description": "(one actor only) its requests by category and request type",
                     **_array(_ref("Requests"))}},
        required=["uid", "realm", "name", "categories", "node", "host", "pid", "isolated", "params", "resources",
                  "owner", "started", "uptime", "sid", "restart", "restarts", "version", "inflight", "bound",
                  "waiting", "counters", "rps", "saturated", "outcomes"]),
    "Requests": _object({
        "realm": STRING, "category": STRING, "type": {"type": "string", "description": "other: a type not handled"},
        "outcomes": _map(INTEGER), "buckets": {"description": "requests per duration bucket (not cumulative; "
                                                              "the bounds are /api/requests' buckets, then +Inf)",
                                               **_array(INTEGER)},
        "sum": {"type": "number", "description": "seconds"}, "count": INTEGER, "total": INTEGER, "failed": INTEGER,
        "retries": INTEGER, "p50": _nullable("number"), "p99": _nullable("number")}),
    "Latency": {"description": "{realm/category: {p50, p99 (seconds), errors (0-1)}} over the last 10 s",
                **_map(_object({"p50": _nullable("number"), "p99": _nullable("number"),
                                "errors": _nullable("number")}))},
    "Realms": {"description": "{realm: {category: number of actors}}", **_map(_map(INTEGER))},
    "Supervised": _object({
        "sid": _nullable("string"), "name": _nullable("string"), "realm": _nullable("string"),
        "categories": {"type": ["array", "null"], "items": STRING}, "state": _nullable("string"),
        "uid": _nullable("string"), "running": BOOLEAN, "restart": _nullable("string"), "restarts": INTEGER,
        "last_error": _nullable("string"), "last_restart": _nullable("number"),
        "waiting_for": _nullable("string"),
        "version": {"type": ["string", "null"], "description": "the deployed version of its realm's code it runs, "
                    "and runs again when restarted (null: the code directory)"}}),
    "Patrol": _object({
        "owner": _nullable("string"), "realm": _nullable("string"),
        "entries": _array(_object({"name": STRING, "actor": _nullable("string"),
                                   "category": {"type": ["string", "array", "null"]},
                                   "target": _nullable("integer"), "running": INTEGER}))}),
    "LogLine": _object({"t": NUMBER, "level": STRING, "levelno": INTEGER, "msg": STRING, "kind": STRING,
                        "realm": STRING, "uid": STRING, "actor": STRING, "categories": _array(STRING),
                        "node": STRING, "host": STRING, "logger": STRING,
                        "req": {"type": ["string", "null"], "description": "the request being served"},
                        "trace": {"type": ["string", "null"], "description": "its trace id"}},
                       required=["t", "level", "levelno", "msg"]),
    "History": {"description": "{chart: {series name: [[time, value], ...]}}, oldest first",
                "type": "object", "propertyNames": {"enum": list(history.CHARTS)},
                "additionalProperties": _map(POINTS)},
    "Filter": _map({"type": ["string", "integer", "null"]}),
    "State": _object({
        "categories": _array(_object({"realm": STRING, "category": STRING, "keys": INTEGER,
                                      "bytes": {"type": "integer", "description": "the stored (sealed) values"},
                                      "actors": {"type": "integer", "description": "its live actors"}})),
        "buckets": _array(_object({"name": STRING, "bytes": INTEGER, "messages": INTEGER})),
        "updated": {"type": ["number", "null"],
                    "description": "when measured (null: no sizes yet from the node holding the lease)"}}),
}


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    # an empty value is the parameter left out (what a page's form sends for a field left blank)
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or STRING,
            "allowEmptyValue": True}


def _path(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": STRING}


REALM = _query("realm", "a realm")
CATEGORY = _query("category", "a category: actors under it, by segment (realm: global unless given)")
LOG_PARAMS = [REALM, CATEGORY, _query("uid", "one actor's lines"),
              _query("level", "the lowest level shown", {"enum": list(params.LEVELS)}),
              _query("kind", "app (actors'), sys (beach's own) or all", {"enum": list(params.KINDS)}),
              _query("limit", "the most lines", {"type": "integer", "minimum": 1, "maximum": 2000})]
NOT_FOUND = {"description": "not in the cluster", "content": {"application/json": {"schema": _ref("Error")}}}
BAD = {"description": "a bad query parameter", "content": {"application/json": {"schema": _ref("Error")}}}
FORBIDDEN = {"description": "no admin token, or a cross-site request (no CSRF token, wrong Origin)",
             "content": {"application/json": {"schema": _ref("Error")}}}


def _get(summary: str, schema: Schema, parameters: list[Schema] | None = None, not_found: bool = False) -> Schema:
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
                                 "400": BAD}
    if not_found:
        responses["404"] = NOT_FOUND
    return {"get": {"summary": summary, "parameters": parameters or [], "responses": responses}}


def _post(summary: str, schema: Schema, parameters: list[Schema] | None = None) -> Schema:
    return {"post": {
        "summary": summary, "parameters": [*(parameters or []), {
            "name": "X-CSRF-Token", "in": "header", "required": True, "schema": STRING,
            "description": "the token of the page's <meta name=beach-csrf> (or a csrf_token form field)"}],
        "responses": {"200": {"description": "done", "content": {"application/json": {"schema": schema}}},
                      "403": FORBIDDEN, "404": NOT_FOUND,
                      "502": {"description": "a node failed",
                              "content": {"application/json": {"schema": _ref("Error")}}}}}}


LOGS = _array(_ref("LogLine"))
PATHS: dict[str, Schema] = {
    "/api/cluster": _get("the whole cluster (the twin of the overview page /)", _object({
        "summary": _ref("Summary"), "admin": BOOLEAN, "nodes": _array(_ref("Node")), "realms": _ref("Realms"),
        "actors": _array(_ref("Actor")), "filter": _ref("Filter"), "supervision": _array(_ref("Supervised")),
        "patrols": _array(_ref("Patrol")), "latency": _ref("Latency"), "state": _ref("State"),
        "logs": LOGS}), [REALM, CATEGORY]),
    "/api/nodes": _get("every live node", _object({"nodes": _array(_ref("Node"))})),
    "/healthz": {"get": {"summary": "is the dashboard connected to NATS (its health check)", "parameters": [],
                         "responses": {"200": {"description": "connected", "content": {"application/json": {
                                           "schema": _ref("Health")}}},
                                       "503": {"description": "not connected to NATS: nothing it shows is live",
                                               "content": {"application/json": {"schema": _ref("Health")}}}}}},
    "/api/nodes/{node}": _get("one node and its actors (the twin of /nodes/{node})", _object({
        "node": _ref("Node"), "actors": _array(_ref("Actor")), "logs": LOGS}), [_path("node", "a node id")], True),
    "/api/actors": _get("the live actors", _object({"actors": _array(_ref("Actor"))}), [REALM, CATEGORY]),
    "/api/actors/{uid}": _get("one actor (the twin of /actors/{uid})", _object({
        "actor": _ref("Actor"), "logs": LOGS}), [_path("uid", "an actor's uid")], True),
    "/api/categories": _get("realms and their categories with actor counts", _object({"realms": _ref("Realms")}),
                            [REALM]),
    "/api/logs": _get("the live log tail (the twin of /logs)", _object({"filter": _ref("Filter"), "logs": LOGS}),
                      LOG_PARAMS),
    "/api/requests": _get("requests served and made by actors per realm, category and request type",
                          _object({"requests": _array(_ref("Requests")), "calls": _array(_ref("Requests")),
                                   "categories": _ref("Latency"), "buckets": _array(NUMBER)}), [REALM]),
    "/api/supervision": _get("supervised actors: what should run against what does",
                             _object({"supervision": _array(_ref("Supervised"))})),
    "/api/patrols": _get("patrol specs: target against running", _object({"patrols": _array(_ref("Patrol"))})),
    "/api/state": _get("the sizes of actor state: keys and bytes per category, bytes per bucket",
                       _object({"state": _ref("State")}), [REALM]),
    "/api/history": _get("the charts' points: CPU and memory per node, requests/s per realm and class, "
                         "latency (ms) and error rate (%) per category",
                         _ref("History"), [_query("since", "only points after this time (s since the epoch)", NUMBER),
                                           _query("node", "only this node's CPU and memory"),
                                           _query("class", "only this actor class's requests/s (realm/Name)")]),
    "/api/actors/{uid}/stop": _post("stop an actor (admin)", _object({"stopped": _array(STRING),
                                                                      "not_found": _array(STRING)}),
                                    [_path("uid", "an actor's uid")]),
    "/api/flush": _post("stop every actor in every realm, forget supervision and patrols (admin)",
                        _object({"flushed": BOOLEAN})),
}

SPEC: Schema = {
    "openapi": "3.1.0",
    "info": {"title": "beach dashboard", "version": __version__,
             "description": "The live state of a beach cluster, as its dashboard sees it. Every page of the "
                            f"dashboard has a JSON twin here; logs hold at most {logtail.LIMIT} lines by default. "
                            "Beside the API: /metrics (the Prometheus text format) and /events?view=PAGE (a "
                            "page's server-sent events). Bad input is a 4xx with {\"error\": message}; the "
                            "admin POSTs need the config's admin_token and a page's CSRF token."},
    "paths": PATHS,
    "components": {"schemas": SCHEMAS},
}


async def endpoint(request: Request) -> Response:
    """``GET /api/openapi.json``."""
    params.check_known(request.query_params, ())
    return JSON(SPEC)
