"""The REST bridge: HTTP(S) in front of a realm's actors, with the original's contract.

    python -m beach.restbridge PORT CONFIG REALM [-s SECRET] [-g] [--host 127.0.0.1]
                               [--ssl-cert F --ssl-key F] [--ssl-self-signed]

``POST /<category>`` (the whole path is the category: ``/a/b/1.0`` → ``a/b/1.0``) sends one
request to one actor of the category (or, with ``_from_all``, to every one) and answers with its
data. Parameters come from the query string and the form (or a JSON object body):

===============  ==============================================================
``_action``      the request type (required, here or in ``Beach-Action``)
``_ident``       the trust ident to send
``_timeout``     seconds to wait for the reply (default 10)
``_n_retries``   retries after a timeout or "busy"
``_key``         route by this affinity key
``_secret``      must equal ``-s SECRET`` when the bridge has one
``_format``      ``json`` (default) or ``msgpack``, for the answer
``_json_data``   a JSON object merged into the request data
``_from_all``    ``true``: ask every actor, answer the list of the successful replies' data
===============  ==============================================================

Every other parameter becomes a field of the request data (as a string). Without ``_action``, the
headers ``Beach-Action``, ``Beach-Ident``, ``Beach-Timeout``, ``Beach-N-Retries``, ``Beach-Key``,
``Beach-Secret`` and ``Beach-From-All`` are read instead (and the form's ``_`` parameters ignored).

Answers: 200 with the data; 400 ``{error, data}`` when the request failed (or was malformed); 401 on a
wrong secret (compared in constant time); 404 when the category has no actor; 405 for ``GET``
unless ``-g``; 408 on a timeout; 413 for a body over the bus's message size. ``GET /healthz`` tells
whether the bridge is connected; ``GET /openapi.json`` describes all this; ``GET /metrics`` gives, in
the Prometheus text format, the bridge's own HTTP requests (``beach_restbridge_http_requests_total``
by method, route and status, ``beach_restbridge_http_request_duration_seconds``) and the requests it
made to actors (``beach_calls_total`` by outcome, ``beach_call_duration_seconds``,
``beach_call_retries_total``, per realm, category and request type). (These three paths are the
bridge's own: a category named ``healthz``, ``openapi.json`` or ``metrics`` is reached by ``POST``.)

The bridge binds 127.0.0.1 unless ``--host`` says otherwise. ``--ssl-self-signed`` makes a
certificate with ``cryptography`` once and keeps it (in ``--ssl-cert`` / ``--ssl-key``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hmac
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from beach import metering, output, wire
from beach.client.core import AsyncBeach
from beach.client.handle import DEFAULT_TIMEOUT, ActorHandle
from beach.errors import BeachError, CategoryError, UsageError
from beach.state import clusterconfig

HEADERS = {"action": "Beach-Action", "ident": "Beach-Ident", "timeout": "Beach-Timeout",
           "n_retries": "Beach-N-Retries", "key": "Beach-Key", "secret": "Beach-Secret", "from_all": "Beach-From-All"}
DEFAULT_CERT = "rest.beach.crt"
DEFAULT_KEY = "rest.beach.key"


class BadRequest(Exception):
    """A request the bridge cannot send: the status and the text to answer with."""

    def __init__(self, status: int, error: str, data: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.data = {} if data is None else data


class Bridge:
    """The bridge's state: the client, its cached handles, and its settings."""

    def __init__(self, config_path: str, realm: str | None, secret: str | None = None, allow_get: bool = False,
                 client: AsyncBeach | None = None) -> None:
        self.config_path = config_path
        self.realm = realm or (client.realm if client is not None else "")  # else the config's, once connected
        self.secret = secret
        self.allow_get = allow_get
        self.client = client
        self._owns_client = client is None
        self._handles: dict[tuple[str, str | None], ActorHandle] = {}
        self.http = metering.HttpStats("beach_restbridge")  # its own HTTP requests, for /metrics

    def handle(self, category: str, ident: str | None) -> ActorHandle:
        """The handle on ``category`` sending ``ident`` (cached: one per pair)."""
        assert self.client is not None
        key = (category, ident)
        if key not in self._handles:
            self._handles[key] = self.client.getActorHandle(category, ident=ident)
        return self._handles[key]

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Connect at start-up (unless given a client), disconnect at shutdown."""
        if self.client is None:
            self.client = await AsyncBeach.open(self.config_path, realm=self.realm or None)
            self.realm = self.client.realm
        try:
            yield
        finally:
            for handle in self._handles.values():
                await handle.aclose()
            if self._owns_client:
                await self.client.close()


async def _parameters(request: Request, limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(options, data)`` from the query string and the body: the ``_`` parameters, and the rest."""
    body = await request.body()
    if len(body) > limit:
        raise BadRequest(413, f"the request body is {len(body)} bytes, over the bus's limit of {limit}")
    fields: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if body and content_type.startswith("application/json"):
        try:
            parsed = json.loads(body)
        except ValueError as err:
            raise BadRequest(400, f"the body is not valid JSON: {err}") from None
        if not isinstance(parsed, dict):
            raise BadRequest(400, "a JSON body must be an object of parameters")
        fields.update(parsed)
    elif body:
        try:
            form = await request.form()
        except Exception as err:  # malformed multipart or urlencoded data
            raise BadRequest(400, f"the body is not a form: {err}") from None
        fields.update({k: v for k, v in form.items() if isinstance(v, str)})
    options = {k[1:]: v for k, v in fields.items() if k.startswith("_")}
    data = {k: v for k, v in fields.items() if not k.startswith("_")}
    return options, data


def _options(request: Request, options: dict[str, Any]) -> dict[str, Any]:
    """The request's options: from the ``_`` parameters when ``_action`` is given, else the headers."""
    if options.get("action"):
        return options
    return {name: request.headers[header] for name, header in HEADERS.items() if header in request.headers}


def _number(options: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = options.get(name)
    if value in (None, ""):
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise BadRequest(400, f"_{name} must be a number, not {value!r}") from None
    if number < 0:
        raise BadRequest(400, f"_{name} must be 0 or more, not {value!r}")
    return number


def _answer(value: Any, fmt: str, status: int = 200) -> Response:
    if fmt == "msgpack":
        return Response(wire.pack(value, what="the answer"), status, media_type="application/msgpack")
    return Response(output.dumps_line(value), status, media_type="application/json")


async def serve(request: Request) -> Response:
    """``POST /<category>``: send one request (or one to every actor) and answer with its data."""
    bridge: Bridge = request.app.state.bridge
    fmt = "json"
    try:
        if request.method == "GET" and not bridge.allow_get:
            raise BadRequest(405, "GET is not allowed: use POST (or run the bridge with -g)")
        assert bridge.client is not None
        limit = bridge.client.session.nc.max_payload or 1024 * 1024
        raw_options, data = await _parameters(request, limit)
        options = _options(request, raw_options)
        fmt = str(options.get("format") or "json")
        if fmt not in ("json", "msgpack"):
            fmt = "json"
            raise BadRequest(400, f"_format must be json or msgpack, not {options.get('format')!r}")
        if bridge.secret is not None and not hmac.compare_digest(
                str(options.get("secret") or "").encode(), bridge.secret.encode()):
            raise BadRequest(401, "wrong or missing secret")
        action = options.get("action")
        if not action:
            raise BadRequest(400, "no request type: give _action (or the Beach-Action header)")
        if options.get("json_data"):
            try:
                extra = json.loads(options["json_data"])
            except ValueError as err:
                raise BadRequest(400, f"_json_data is not valid JSON: {err}") from None
            if not isinstance(extra, dict):
                raise BadRequest(400, "_json_data must be a JSON object")
            data.update(extra)
        category = request.path_params["category"]
        try:
            handle = bridge.handle(category, options.get("ident") or None)
        except CategoryError as err:
            raise BadRequest(400, str(err)) from None
        timeout = _number(options, "timeout", float, DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        if str(options.get("from_all", "")).lower() in ("true", "1", "yes"):
            if not handle.getNumAvailable():
                raise BadRequest(404, f"no actor available in category {category!r} of realm {bridge.realm!r}")
            future = await handle.arequestFromAll(str(action), data, timeout=timeout)
            replies = await future.wait(timeout + 1)
            return _answer([r.data for r in replies if r.isSuccess], fmt)
        response = await handle.arequest(str(action), data, timeout=timeout,
                                         nRetries=_number(options, "n_retries", int, 0),
                                         key=options.get("key") or None)
    except BadRequest as err:
        return _answer({"error": err.error, "data": err.data}, fmt, err.status)
    except BeachError as err:  # data the bus cannot carry, an affinity handle without key...
        return _answer({"error": str(err), "data": {}}, fmt, 400)
    if response.isSuccess:
        return _answer(response.data, fmt)
    status = 408 if response.isTimedOut else 404 if response.failure == wire.NO_ACTOR else 400
    return _answer({"error": response.error, "data": response.data}, fmt, status)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the bridge is connected to the bus, 503 when it is not."""
    bridge: Bridge = request.app.state.bridge
    nc = bridge.client.session.nc if bridge.client else None
    ok = bool(nc and nc.is_connected)
    return JSONResponse({"ok": ok, "realm": bridge.realm,
                         "nodes": len(bridge.client.session.view.nodes) if bridge.client else 0}, 200 if ok else 503)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: the bridge's HTTP requests and its calls to actors, for Prometheus."""
    bridge: Bridge = request.app.state.bridge
    calls = []
    if bridge.client is not None:
        for realm, meter in sorted(bridge.client.session.calls.items()):
            for (category, request_type), row in sorted(meter.rows.items()):
                calls.append({"realm": realm, "category": category, "type": request_type, **row.dump()})
    families = [metering.build_info("REST bridge"), *bridge.http.families(),
                *metering.request_families("beach_call", "requests the bridge made to actors", calls, retries=True)]
    return Response(metering.exposition(families), media_type=metering.CONTENT_TYPE)


def openapi(request: Request) -> Response:
    """``GET /openapi.json``: this bridge described in OpenAPI 3."""
    params = [{"name": f"_{name}", "in": "query", "required": False, "schema": {"type": "string"},
               "description": text} for name, text in (
        ("action", "the request type (or the Beach-Action header)"), ("ident", "the trust ident"),
        ("timeout", "seconds to wait (default 10)"), ("n_retries", "retries after a timeout or busy"),
        ("key", "affinity key"), ("secret", "the bridge's secret"), ("format", "json or msgpack"),
        ("json_data", "a JSON object merged into the data"), ("from_all", "true: every actor"))]
    error = {"type": "object", "properties": {"error": {"type": "string"}, "data": {}}, "required": ["error"]}
    responses = {
        "200": {"description": "the reply's data (a list of them with _from_all)",
                "content": {"application/json": {"schema": {}}, "application/msgpack": {}}},
        **{code: {"description": text, "content": {"application/json": {"schema": error}}} for code, text in (
            ("400", "the request failed, or was malformed"), ("401", "wrong secret"),
            ("404", "no actor in the category"), ("405", "GET without -g"), ("408", "timeout"),
            ("413", "body too large"))}}
    operation = {"summary": "send a request to one actor of the category", "parameters": params,
                 "requestBody": {"required": False, "content": {
                     "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                     "application/json": {"schema": {"type": "object"}}}},
                 "responses": responses}
    bridge: Bridge = request.app.state.bridge
    paths: dict[str, Any] = {"/{category}": {"post": operation, "parameters": [
        {"name": "category", "in": "path", "required": True, "schema": {"type": "string"}}]}}
    if bridge.allow_get:
        paths["/{category}"]["get"] = operation
    paths["/healthz"] = {"get": {"summary": "is the bridge connected", "responses": {
        "200": {"description": "connected"}, "503": {"description": "not connected"}}}}
    paths["/metrics"] = {"get": {"summary": "its HTTP requests and its calls to actors (Prometheus text format)",
                                 "responses": {"200": {"description": "the metrics",
                                                       "content": {"text/plain": {}}}}}}
    return JSONResponse({"openapi": "3.0.3", "info": {"title": f"beach REST bridge, realm {bridge.realm}",
                                                       "version": "1"}, "paths": paths})


def create_app(config_path: str, realm: str | None = None, secret: str | None = None, allow_get: bool = False,
               client: AsyncBeach | None = None) -> Starlette:
    """The bridge as an ASGI app: it uses ``client``, or connects to the cluster of ``config_path``
    when it starts."""
    bridge = Bridge(config_path, realm, secret, allow_get, client)
    app = Starlette(routes=[Route("/healthz", healthz, methods=["GET"]),
                            Route("/openapi.json", openapi, methods=["GET"]),
                            Route("/metrics", metrics, methods=["GET"]),
                            Route("/{category:path}", serve, methods=["GET", "POST"])],
                    lifespan=bridge.lifespan, middleware=[Middleware(metering.HttpMeter, stats=bridge.http)])
    app.state.bridge = bridge
    return app


def self_signed(cert_path: str, key_path: str, hostname: str = "restbridge.beach") -> None:
    """Make a self-signed certificate and key with ``cryptography``, unless both files exist (the
    original made a new one at every start, so clients could never pin it)."""
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname), x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def main(argv: list[str] | None = None, prog: str = "python -m beach.restbridge") -> int:
    """Run the bridge in the foreground until Ctrl-C; return the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description="HTTP(S) in front of a realm's actors: "
                                     "POST /<category> with _action and data. See beach/restbridge.py.")
    parser.add_argument("port", type=int, metavar="PORT", help="the port to listen on")
    parser.add_argument("config", metavar="CONFIG", help="the cluster's config file (YAML), or a NATS URL")
    parser.add_argument("realm", metavar="REALM", nargs="?",
                        help="the realm whose actors it reaches (default: the config's realm, else global)")
    parser.add_argument("-s", "--secret", help="callers must send this as _secret (or Beach-Secret)")
    parser.add_argument("-g", "--allow-get", action="store_true", help="also accept GET requests")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--ssl-cert", help=f"the TLS certificate (PEM); with --ssl-self-signed, default {DEFAULT_CERT}")
    parser.add_argument("--ssl-key", help=f"the TLS key (PEM); with --ssl-self-signed, default {DEFAULT_KEY}")
    parser.add_argument("--ssl-self-signed", action="store_true",
                        help="serve HTTPS with a self-signed certificate, made once and kept")
    args = parser.parse_args(argv)
    try:
        clusterconfig.check(args.config)  # a bad config is a one-line error before anything starts
        if bool(args.ssl_cert) != bool(args.ssl_key) and not args.ssl_self_signed:
            raise UsageError("give both --ssl-cert and --ssl-key (or --ssl-self-signed)")
        tls: dict[str, Any] = {}
        if args.ssl_self_signed:
            args.ssl_cert, args.ssl_key = args.ssl_cert or DEFAULT_CERT, args.ssl_key or DEFAULT_KEY
            self_signed(args.ssl_cert, args.ssl_key)
        if args.ssl_cert:
            for path in (args.ssl_cert, args.ssl_key):
                if not os.path.exists(path):
                    raise UsageError(f"no such file: {path}")
            tls = {"ssl_certfile": args.ssl_cert, "ssl_keyfile": args.ssl_key}
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args, tls))


async def _serve(args: argparse.Namespace, tls: dict[str, Any]) -> int:
    import uvicorn

    try:  # connect first: an unreachable bus is one line, not a web server's traceback
        client = await AsyncBeach.open(args.config, realm=args.realm)
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 1
    notice = client.session.open_notice()
    if notice:
        print(f"beach: {notice}", file=sys.stderr)
    try:
        app = create_app(args.config, client.realm, args.secret, args.allow_get, client=client)
        server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                               lifespan="on", **tls))
        await server.serve()
        return 0 if server.started else 1
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(main())
