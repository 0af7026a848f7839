"""The REST bridge: HTTP(S) in front of a realm's actors, with the original's contract.

    python -m beach.restbridge PORT CONFIG REALM [-s SECRET] [-g] [--host 127.0.0.1]
                               [--ssl-cert F --ssl-key F] [--ssl-self-signed]

``POST /<category>`` (the whole path is the category: ``/a/b/1.0`` → ``a/b/1.0``) sends one
request to one actor of the category (or, with ``_from_all``, to every one) and answers with its
data. Parameters come from the query string and the form (or a JSON object body):

===============  ==============================================================
``_action``      the request type (required, here or in ``Beach-Action``)
``_ident``       the trust ident to send
``_timeout``     seconds to wait for the reply (default 10, at most ``restbridge.max_timeout``)
``_n_retries``   retries after a timeout or "busy" (at most ``restbridge.max_retries``)
``_key``         route by this affinity key
``_secret``      must equal ``-s SECRET`` when the bridge has one
``_format``      ``json`` (default) or ``msgpack``, for the answer
``_json_data``   a JSON object merged into the request data
``_from_all``    ``true``: ask every actor, answer the list of the successful replies' data
``_stream``      ``true``: stream the items of a generator handler as NDJSON (below)
===============  ==============================================================

Every other parameter becomes a field of the request data (as a string; typed, from a JSON body).
Without ``_action``, the headers ``Beach-Action``, ``Beach-Ident``, ``Beach-Timeout``,
``Beach-N-Retries``, ``Beach-Key``, ``Beach-Secret``, ``Beach-From-All`` and ``Beach-Stream`` are read instead (and
the form's ``_`` parameters ignored). A W3C ``traceparent`` header (with ``tracestate``) makes the
caller's span the parent of the request's (`beach.tracing`).

Answers: 200 with the data. Every error is JSON ``{"error": message, "kind": kind, "data": ...}``
(`KINDS` lists the kinds): 400 when the request failed (the actor's own failure, ``failed``, or a
beach one such as ``busy``) or was malformed; 401 on a wrong secret (compared in constant time);
404 when the category has no actor (or names beach's hidden ``_ACTORS`` one); 405 for a method
the path does not take (with ``Allow``); 408 on a timeout; 413 for a body over the largest payload
(``payloads.max_bytes``); 415 for a body that is neither JSON nor a form; 502 for a reply JSON cannot carry; 503 when
the bridge has lost its bus. An actor that raised is reported by kind and message only
(``exception``, ``data: {exception, message}``): the traceback stays in ``beach logs``. JSON has
no NaN or Infinity: a reply's are sent as ``null``. ``GET /healthz`` tells whether the bridge is
connected; ``GET /openapi.json`` describes all this; ``GET /metrics`` gives, in the Prometheus text
format, the bridge's own HTTP requests (``beach_restbridge_http_requests_total`` by method, route
and status, ``beach_restbridge_http_request_duration_seconds``) and the requests it made to actors
(``beach_calls_total`` by outcome, ``beach_call_duration_seconds``, ``beach_call_retries_total``,
per realm, category and request type). These three paths are the bridge's own, never categories
(any other method there is a 405).

Streams: with ``_stream`` true, the request is sent as `ActorHandle.astream` sends it and the
answer is ``application/x-ndjson``: one JSON line per item, written as the handler yields it (a
handler that is no generator: one line, its reply's data). ``_timeout`` is then the longest wait
between two items. What fails before the first item is answered as any request's failure (its
status and JSON error); a failure after it — the handler raised, an item JSON cannot carry, a
timeout, the bus lost — ends the stream with one last line ``{"error": message, "kind": kind,
"data": ...}`` (`KINDS`), so a stream that ends without such a line ended as its handler did. When
the HTTP client goes away, the stream is closed: the actor's generator stops. A stream is not
retried, not sent to every actor, and is NDJSON only: ``_n_retries``, ``_from_all`` and
``_format=msgpack`` with it are a 400.

Bounds: the body is read as it comes and refused (413) as soon as it passes ``payloads.max_bytes``
of the bridge's config (at once when ``Content-Length`` says so), within `BODY_SECONDS`; a body over
the bus's ``max_payload`` goes to its actor through the object store, as any large request does
(`beach.bus.bodies`). The bridge holds a body in memory while it sends it (a few times its size,
decoded): set ``payloads.max_bytes`` in its config to what its machine can hold; JSON may nest
``restbridge.max_json_depth`` levels; ``_timeout`` and ``_n_retries`` are capped by the config
(`beach.config.RestBridgeConfig`); and when the HTTP client goes away, its request is abandoned
(no more retries, nothing delivered later). If the NATS server closes the bridge's connection for
good, the bridge exits (code 1) naming the server's reason, for its supervisor to restart it.

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
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from beach import loop as beach_loop
from beach import metering, output, tracing, wire
from beach.client import routing
from beach.client.core import AsyncBeach
from beach.client.handle import DEFAULT_TIMEOUT, ActorHandle
from beach.client.stream import Stream
from beach.config import RestBridgeConfig
from beach.errors import BeachError, BusError, CategoryError, ClosedError, PayloadTooLarge, StreamError, UsageError
from beach.state import clusterconfig
from beach.wire import subjects

log = logging.getLogger("beach.restbridge")
T = TypeVar("T")

HEADERS = {"action": "Beach-Action", "ident": "Beach-Ident", "timeout": "Beach-Timeout",
           "n_retries": "Beach-N-Retries", "key": "Beach-Key", "secret": "Beach-Secret", "from_all": "Beach-From-All",
           "stream": "Beach-Stream"}
DEFAULT_CERT = "rest.beach.crt"
DEFAULT_KEY = "rest.beach.key"
BODY_SECONDS = 30.0  # a body must have arrived whole within this long (a trickling client is a 408)
RESERVED = ("healthz", "openapi.json")  # the bridge's own paths: never categories
JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]

KINDS = {
    "bad_request": "the request is malformed: a parameter, the body, the category",
    "wrong_secret": "the secret is missing or wrong (401)",
    "not_found": "the path is not a category the bridge serves (404)",
    "method_not_allowed": "the path does not take this method (405, with Allow)",
    "too_large": "the body, or the request it makes, is over the largest payload, payloads.max_bytes (413)",
    "unsupported_media_type": "the body is neither JSON nor a form (415)",
    "failed": "the actor answered with a failure of its own (400)",
    "exception": "the actor's handler raised: data holds its exception type and message (400)",
    **{failure.name.lower(): f"beach's failure {failure.value!r}" for failure in wire.Failure
       if failure not in (wire.Failure.EXCEPTION,)},
    "bad_reply": "the actor's reply cannot be sent as JSON (502)",
    "unavailable": "the bridge has no bus connection (503)",
    "internal": "a bug in the bridge (500; its log has the details)",
}
"""Every error kind an answer can carry, and what it means."""


class BridgeError(Exception):
    """A request the bridge answers with an error: its status, kind (`KINDS`), message, data and
    extra headers."""

    def __init__(self, status: int, kind: str, error: str, data: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.kind = kind
        self.error = error
        self.data = {} if data is None else data
        self.headers = headers or {}


def _bad(error: str) -> BridgeError:
    return BridgeError(400, "bad_request", error)


class Bridge:
    """The bridge's state: the client, its cached handles, and its settings."""

    def __init__(self, config_path: str, realm: str | None, secret: str | None = None, allow_get: bool = False,
                 client: AsyncBeach | None = None) -> None:
        self.config_path = config_path
        self.realm = realm or (client.realm if client is not None else "")  # else the config's, once connected
        self.secret = secret
        self.allow_get = allow_get
        self.methods = ("GET", "POST") if allow_get else ("POST",)
        self.client = client
        self.limits = client.session.config.restbridge if client is not None else RestBridgeConfig()
        self._owns_client = client is None
        self._handles: dict[tuple[str, str | None, str], ActorHandle] = {}
        self.http = metering.HttpStats("beach_restbridge")  # its own HTTP requests, for /metrics

    def handle(self, category: str, ident: str | None, mode: str = "random") -> ActorHandle:
        """The handle on ``category`` sending ``ident``, routing by ``mode`` (cached: one of each)."""
        assert self.client is not None
        key = (category, ident, mode)
        if key not in self._handles:
            self._handles[key] = self.client.getActorHandle(category, mode=mode, ident=ident)
        return self._handles[key]

    @property
    def connected(self) -> bool:
        """True while the client is connected to the bus (and the server has not closed it for good)."""
        session = self.client.session if self.client is not None else None
        return bool(session and session.lost is None and session.nc.is_connected)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Connect at start-up (unless given a client), disconnect at shutdown."""
        if self.client is None:
            self.client = await AsyncBeach.open(self.config_path, realm=self.realm or None)
            self.realm = self.client.realm
            self.limits = self.client.session.config.restbridge
        try:
            yield
        finally:
            for handle in self._handles.values():
                await handle.aclose()
            if self._owns_client:
                await self.client.close()


def _too_large(size: str, limit: int) -> BridgeError:
    return BridgeError(413, "too_large", f"the request body is {size} bytes, over the bridge's limit of {limit} "
                                         f"(payloads.max_bytes)")


async def _body(request: Request, limit: int) -> bytes | bytearray:
    """The request's body, read as it comes: `BridgeError` 413 as soon as it passes ``limit`` bytes
    (at once when its ``Content-Length`` says it will), 408 when it takes over `BODY_SECONDS`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refused before a byte of it is read
        raise _too_large(declared, limit)
    if declared == "0" and "transfer-encoding" not in request.headers:
        return b""
    body = bytearray()  # (grown in place: a large body is not held twice, as chunks and joined)
    try:
        async with asyncio.timeout(BODY_SECONDS):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise _too_large(f"over {len(body) + len(chunk)}", limit)
                body += chunk
    except TimeoutError:
        raise BridgeError(408, "timeout", f"the request body did not arrive within {BODY_SECONDS:.0f}s") from None
    return body


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def parse_json(text: bytes | bytearray | str, what: str, max_depth: int) -> Any:
    """The JSON value in ``text``; `BridgeError` 400 naming ``what`` when it is not JSON, holds a
    number that is not finite (``NaN``, ``1e999``), or nests deeper than ``max_depth``."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise _bad(f"{what} nests deeper than {max_depth} levels, the bridge's limit "
                   f"(restbridge.max_json_depth)") from None
    except ValueError as err:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        raise _bad(f"{what} is not valid JSON: {err}") from None
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:  # breadth first, without recursion
        item, depth = level.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise _bad(f"{what} nests deeper than {max_depth} levels, the bridge's limit "
                           f"(restbridge.max_json_depth)")
            level.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _parameters(request: Request, limit: int, max_depth: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(options, data)`` from the query string and the body: the ``_`` parameters, and the rest."""
    media = _media_type(request)
    unreadable = BridgeError(415, "unsupported_media_type",
                             f"a body of type {media or '(none given)'!r} cannot be read: send {JSON_TYPE} (an "
                             f"object of parameters) or a form ({', '.join(FORM_TYPES)})")
    supported = media == JSON_TYPE or media in FORM_TYPES
    declared = request.headers.get("content-length", "")
    if not supported and declared.isdigit() and 0 < int(declared) <= limit:
        raise unreadable  # (a body over the limit is a 413 first)
    body = await _body(request, limit)
    if body and not supported:
        raise unreadable
    fields: dict[str, Any] = dict(request.query_params)
    if body and media == JSON_TYPE:
        parsed = parse_json(body, "the body", max_depth)
        if not isinstance(parsed, dict):
            raise _bad("a JSON body must be an object of parameters")
        fields.update(parsed)
    elif body:
        async def replay() -> Message:
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_part_size=limit)
        except Exception as err:  # malformed multipart or urlencoded data
            raise _bad(f"the body is not a form: {err}") from None
        fields.update({k: v for k, v in form.items() if isinstance(v, str)})
    options = {k[1:]: v for k, v in fields.items() if k.startswith("_")}
    data = {k: v for k, v in fields.items() if not k.startswith("_")}
    return options, data


def _options(request: Request, options: dict[str, Any]) -> dict[str, Any]:
    """The request's options: from the ``_`` parameters when ``_action`` is given, else the headers."""
    if options.get("action"):
        return options
    return {name: request.headers[header] for name, header in HEADERS.items() if header in request.headers}


def _text(options: dict[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(f"_{name} must be a string, not {type(value).__name__}")
    return value


def _number(options: dict[str, Any], name: str, kind: type, default: Any, most: float, setting: str) -> Any:
    value = options.get(name)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise _bad(f"_{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise _bad(f"_{name} must be a finite number, not {value!r}")
    if number < 0:
        raise _bad(f"_{name} must be 0 or more, not {value!r}")
    if number > most:
        raise _bad(f"_{name} {value!r} is over the bridge's limit of {most:g} (restbridge.{setting})")
    return number


def _flag(options: dict[str, Any], name: str) -> bool:
    value = options.get(name)
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and value.lower() in TRUE + FALSE:
        return value.lower() in TRUE
    raise _bad(f"_{name} must be true or false, not {value!r}")


def _category(request: Request) -> str:
    """The category the path names; `BridgeError` for the bridge's own paths and beach's hidden
    one-actor category (the bridge reaches categories, not single actors)."""
    category = str(request.path_params.get("category", ""))
    try:
        parts = subjects.segments(category)
    except CategoryError as err:
        raise _bad(str(err)) from None
    if parts[0] == subjects.ACTORS_CATEGORY:
        raise BridgeError(404, "not_found", f"{subjects.ACTORS_CATEGORY}/... is beach's hidden one-actor category: "
                                            f"the bridge reaches categories only")
    return category


def _answer(value: Any, fmt: str, status: int = 200) -> Response:
    """``value`` in the format asked for; 502 ``bad_reply`` when it cannot be written in it."""
    try:
        if fmt == "msgpack":
            return Response(wire.pack(value, what="the reply"), status, media_type="application/msgpack")
        return Response(output.dumps_line(value), status, media_type=JSON_TYPE)
    except ValueError as err:  # (EncodeError is a TypeError and a BeachError)
        return error_response(502, "bad_reply", f"the actor's reply cannot be sent as {fmt}: {err}")
    except BeachError as err:
        return error_response(502, "bad_reply", str(err))


def error_body(kind: str, error: str, data: Any = None) -> str:
    """An error as JSON ``{"error", "kind", "data"}`` (see `KINDS`), on one line."""
    try:
        return output.dumps_line({"error": error, "kind": kind, "data": {} if data is None else data})
    except ValueError:  # data JSON cannot carry: the error alone
        return output.dumps_line({"error": error, "kind": kind, "data": {}})


def error_response(status: int, kind: str, error: str, data: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    """An error answer: JSON ``{"error", "kind", "data"}`` (see `KINDS`)."""
    return Response(error_body(kind, error, data), status, headers=headers, media_type=JSON_TYPE)


def _failure(error: str, data: Any, timed_out: bool) -> BridgeError:
    """The HTTP answer to a failed reply: its kind and status; an exception by type and message only."""
    failure = wire.Failure.of(error)
    if timed_out or failure is wire.Failure.TIMEOUT:
        return BridgeError(408, "timeout", error or "timeout", data)
    if failure is wire.Failure.EXCEPTION:  # 'exception: KeyError: ...' (an older host: its traceback's last line)
        said = error.removeprefix(f"{wire.EXCEPTION.value}: ") if error != wire.EXCEPTION.value else ""
        if not said:
            trace = data.get("st") if isinstance(data, dict) else None
            lines = [line.strip() for line in str(trace or "").splitlines() if line.strip()]
            said = lines[-1] if lines else "an exception"
        name, _, message = said.partition(": ")
        return BridgeError(400, "exception", f"{wire.EXCEPTION.value}: {said}", {"exception": name, "message": message})
    if failure is None:
        return BridgeError(400, "failed", error, data)
    return BridgeError(404 if failure is wire.Failure.NO_ACTOR else 400, failure.name.lower(), error, data)


async def _disconnected(receive: Receive) -> None:
    """Return once the HTTP client has gone away (the body is read by then: what is left to receive
    is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _until_gone(receive: Receive, work: Awaitable[T]) -> asyncio.Future[T]:
    """``work`` run until it ends or the HTTP client goes away (``receive`` says so), whichever
    comes first; then it is cancelled (also when this is) and waited for. Return its task, done."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    return task


async def _unless_gone(request: Request, work: Awaitable[Response]) -> Response:
    """``work``'s answer, or — when the client goes away first — ``work`` cancelled: no retry goes
    on, nothing is delivered later, for nobody."""
    task = await _until_gone(request.receive, work)
    if task.cancelled():
        return Response(status_code=499)  # nobody reads it (nginx's "client closed request")
    return task.result()


def _stream_failure(err: BeachError) -> BridgeError:
    """What ended a stream, as the bridge answers it (a status and a kind, `KINDS`)."""
    if isinstance(err, StreamError):
        return _failure(err.error, err.data, err.failure is wire.Failure.TIMEOUT)
    if isinstance(err, ClosedError):
        return BridgeError(503, "unavailable", str(err))
    return BridgeError(400, "bad_request", str(err))


class NDJSONStream(Response):
    """A stream's items as NDJSON, each line sent as its item comes (``first`` is the first item,
    read already); a failure ends it with an error line; the HTTP client going away closes the
    stream (its producer stops)."""

    media_type = NDJSON_TYPE

    def __init__(self, stream: Stream, first: Any) -> None:
        self.stream = stream
        self.first = first
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    async def _lines(self, send: Send) -> None:
        item = self.first
        while True:
            try:
                line = output.dumps_line(item)
            except ValueError as err:
                failed = BridgeError(502, "bad_reply", f"an item of the stream cannot be sent as JSON: {err}")
                await send({"type": "http.response.body", "body": _error_line(failed), "more_body": True})
                return
            await send({"type": "http.response.body", "body": line.encode() + b"\n", "more_body": True})
            try:
                item = await anext(self.stream)
            except StopAsyncIteration:
                return
            except BeachError as err:
                await send({"type": "http.response.body", "body": _error_line(_stream_failure(err)), "more_body": True})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:  # (the client going away, or the server stopping, stops the producer)
            lines = await _until_gone(receive, self._lines(send))
        finally:
            await self.stream.aclose()
        if not lines.cancelled() and lines.exception() is None:  # (`_until_gone` returns it done)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif not lines.cancelled() and isinstance(lines.exception(), OSError):
            raise ClientDisconnect()  # (a write to a closed connection)
        elif not lines.cancelled():
            raise lines.exception()  # type: ignore[misc]


def _error_line(err: BridgeError) -> bytes:
    """The last line of a stream that failed: its error, as an error answer's body says it."""
    return error_body(err.kind, err.error, err.data).encode() + b"\n"


async def _open_stream(handle: ActorHandle, action: str, data: dict[str, Any], timeout: float,
                       key: Any) -> Response:
    """Send a streamed request and wait for its first item: the NDJSON answer, or — when it fails
    before any item — `BridgeError` saying why as any request's failure would."""
    stream = handle.astream(action, data, timeout=timeout, key=key)
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return Response(b"", 200, media_type=NDJSON_TYPE)  # a generator that yielded nothing
    except BeachError as err:
        raise _stream_failure(err) from None
    except BaseException:  # (the client went away meanwhile: the producer stops)
        await stream.aclose()
        raise
    return NDJSONStream(stream, first)


async def _send(bridge: Bridge, handle: ActorHandle, action: str, data: dict[str, Any], options: dict[str, Any],
                key: Any, fmt: str) -> Response:
    limits = bridge.limits
    timeout = _number(options, "timeout", float, DEFAULT_TIMEOUT, limits.max_timeout, "max_timeout") or DEFAULT_TIMEOUT
    retries = _number(options, "n_retries", int, 0, limits.max_retries, "max_retries")
    if _flag(options, "stream"):
        if _flag(options, "from_all"):
            raise _bad("_stream and _from_all cannot be combined: a stream is read from one actor")
        if retries:
            raise _bad("_n_retries cannot be given with _stream: a stream is not retried (its items may have "
                       "been read)")
        if fmt != "json":
            raise _bad("a stream is sent as NDJSON: _format must be json")
        return await _open_stream(handle, action, data, timeout, key)
    if _flag(options, "from_all"):
        if not handle.getNumAvailable():
            raise BridgeError(404, "no_actor", f"no actor available in category {handle.category!r} of realm "
                                               f"{bridge.realm!r}")
        future = await handle.arequestFromAll(action, data, timeout=timeout)
        replies = await future.wait(timeout + 1)
        return _answer([r.data for r in replies if r.isSuccess], fmt)
    response = await handle.arequest(action, data, timeout=timeout, nRetries=retries, key=key)
    if response.isSuccess:
        return _answer(response.data, fmt)
    raise _failure(response.error, response.data, response.isTimedOut)


async def serve(request: Request) -> Response:
    """``POST /<category>``: send one request (or one to every actor) and answer with its data."""
    bridge: Bridge = request.app.state.bridge
    try:
        _allow(request, bridge.methods)
        category = _category(request)
        if not bridge.connected or bridge.client is None:
            raise ClosedError("the bridge is not connected to the bus")
        limit = bridge.client.session.config.payloads.max_bytes
        raw_options, data = await _parameters(request, limit, bridge.limits.max_json_depth)
        options = _options(request, raw_options)
        fmt = _text(options, "format") or "json"
        if fmt not in ("json", "msgpack"):
            raise _bad(f"_format must be json or msgpack, not {fmt!r}")
        if bridge.secret is not None and not hmac.compare_digest(
                (_text(options, "secret") or "").encode(), bridge.secret.encode()):
            raise BridgeError(401, "wrong_secret", "wrong or missing secret")
        action = _text(options, "action")
        if not action:
            raise _bad("no request type: give _action (or the Beach-Action header)")
        extra = options.get("json_data")
        if isinstance(extra, str) and extra:
            extra = parse_json(extra, "_json_data", bridge.limits.max_json_depth)
        if extra not in (None, ""):
            if not isinstance(extra, dict):
                raise _bad("_json_data must be a JSON object")
            data.update(extra)
        key = options.get("key")
        if key in (None, ""):
            key = None
        else:
            routing.key_bytes(key)  # a key that is not one is a UsageError (400) here
        try:
            handle = bridge.handle(category, _text(options, "ident"), "random" if key is None else "affinity")
        except CategoryError as err:
            raise _bad(str(err)) from None
        # a caller's W3C trace context (the traceparent header) is the parent of the request's span
        with tracing.parent(_trace_context(request)):
            return await _unless_gone(request, _send(bridge, handle, action, data, options, key, fmt))
    except BridgeError as err:
        return error_response(err.status, err.kind, err.error, err.data, err.headers)
    except ClientDisconnect:
        return Response(status_code=499)
    except PayloadTooLarge as err:
        return error_response(413, "too_large", str(err))
    except ClosedError as err:
        return error_response(503, "unavailable", str(err))
    except BusError as err:
        return error_response(503, "bus_unavailable", str(err))
    except BeachError as err:  # data the bus cannot carry, a category too long, an affinity handle without key...
        return error_response(400, "bad_request", str(err))


def _trace_context(request: Request) -> wire.TraceContext | None:
    traceparent = request.headers.get("traceparent")
    return None if traceparent is None else wire.TraceContext(traceparent, request.headers.get("tracestate", ""))


def _allow(request: Request, methods: tuple[str, ...]) -> None:
    """`BridgeError` 405 (with ``Allow``) unless ``request`` uses one of ``methods``."""
    if request.method not in methods:
        hint = ": use POST (or run the bridge with -g)" if request.method == "GET" else ""
        raise BridgeError(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}{hint}",
                          headers={"Allow": ", ".join(methods)})


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the bridge is connected to the bus, 503 when it is not."""
    _allow(request, ("GET",))
    bridge: Bridge = request.app.state.bridge
    ok = bridge.connected
    body = {"ok": ok, "realm": bridge.realm, "nodes": len(bridge.client.session.view.nodes) if bridge.client else 0}
    return Response(output.dumps_line(body), 200 if ok else 503, media_type=JSON_TYPE)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: the bridge's HTTP requests and its calls to actors, for Prometheus."""
    _allow(request, ("GET",))
    bridge: Bridge = request.app.state.bridge
    calls = []
    if bridge.client is not None:
        for realm, meter in sorted(bridge.client.session.calls.items()):
            for (category, request_type), row in sorted(meter.rows.items()):
                calls.append({"realm": realm, "category": category, "type": request_type, **row.dump()})
    families = [metering.build_info("REST bridge"), *bridge.http.families(),
                *metering.request_families("beach_call", "requests the bridge made to actors", calls, retries=True)]
    return Response(metering.exposition(families), media_type=metering.CONTENT_TYPE)


def _schema_error() -> dict[str, Any]:
    return {"type": "object", "required": ["error", "kind"], "properties": {
        "error": {"type": "string", "description": "what went wrong"},
        "kind": {"type": "string", "enum": list(KINDS),
                 "description": "; ".join(f"{k}: {v}" for k, v in KINDS.items())},
        "data": {"description": "the failure's data (an exception: its type and message)"}}}


def openapi_document(bridge: Bridge) -> dict[str, Any]:
    """This bridge described in OpenAPI 3 (every status code it answers with, every error's shape)."""
    limits = bridge.limits
    string: dict[str, Any] = {"type": "string"}
    # an empty value is the parameter left out (what a form sends for a field left blank), but for _action
    params = [{"name": f"_{name}", "in": "query", "required": False, "schema": schema, "description": text,
               "allowEmptyValue": name != "action"} for name, schema, text in (
        ("action", {"type": "string", "minLength": 1}, "the request type (or the Beach-Action header)"),
        ("ident", string, "the trust ident"),
        ("timeout", {"type": "number", "minimum": 0, "maximum": limits.max_timeout},
         f"seconds to wait (default {DEFAULT_TIMEOUT:g}, 0: the default)"),
        ("n_retries", {"type": "integer", "minimum": 0, "maximum": limits.max_retries},
         "retries after a timeout or busy"),
        ("key", string, "affinity key"), ("secret", string, "the bridge's secret"),
        ("format", {"type": "string", "enum": ["json", "msgpack"]}, "the answer's format"),
        ("json_data", string, "a JSON object merged into the data"),
        ("from_all", {"type": "string", "enum": list(TRUE + FALSE)}, "true: every actor"),
        ("stream", {"type": "string", "enum": list(TRUE + FALSE)},
         f"true: a generator handler's items as {NDJSON_TYPE}, one line each as it yields them; a failure "
         f"after the first is a last line {{error, kind, data}}"))]
    error = {"content": {JSON_TYPE: {"schema": _schema_error()}}}
    allow = {"Allow": {"description": "the methods the path takes", "schema": string}}
    errors = {code: {"description": text, **error} for code, text in (
        ("400", "the request failed (the actor's failure, busy...), or was malformed"),
        ("401", "wrong or missing secret"),
        ("404", "no actor in the category (or the hidden _ACTORS category)"),
        ("408", "timeout (of the reply, or of the body's arrival)"),
        ("413", "body (or the request it makes) over the largest payload, payloads.max_bytes"),
        ("415", "a body that is neither JSON nor a form"),
        ("502", "a reply that cannot be sent in the format asked for"),
        ("503", "the bridge is not connected to the bus"))}
    errors["405"] = {"description": "a method the path does not take (and the bridge's own paths)",
                     "headers": allow, **error}
    responses = {"200": {"description": "the reply's data (a list of them with _from_all); NaN and Infinity "
                                        "are written as null",
                         "content": {JSON_TYPE: {"schema": {}}, "application/msgpack": {}, NDJSON_TYPE: {}}},
                 **errors}
    body = {"type": "object", "additionalProperties": True}
    operation = {"summary": "send a request to one actor of the category", "parameters": params,
                 "requestBody": {"required": False, "content": {
                     "application/x-www-form-urlencoded": {"schema": body},
                     "multipart/form-data": {"schema": body}, JSON_TYPE: {"schema": body}}},
                 "responses": responses}
    paths: dict[str, Any] = {"/{category}": {"post": operation, "parameters": [
        {"name": "category", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
         "description": "the category (its segments separated by /)"}]}}
    if bridge.allow_get:
        paths["/{category}"]["get"] = operation
    own = {"405": errors["405"]}
    paths["/healthz"] = {"get": {"summary": "is the bridge connected to the bus", "responses": {
        "200": {"description": "connected", "content": {JSON_TYPE: {"schema": {"type": "object"}}}},
        "503": {"description": "not connected", "content": {JSON_TYPE: {"schema": {"type": "object"}}}}, **own}}}
    paths["/metrics"] = {"get": {"summary": "its HTTP requests and its calls to actors (Prometheus text format)",
                                 "responses": {"200": {"description": "the metrics", "content": {"text/plain": {}}},
                                               **own}}}
    paths["/openapi.json"] = {"get": {"summary": "this document", "responses": {
        "200": {"description": "OpenAPI 3", "content": {JSON_TYPE: {"schema": {"type": "object"}}}}, **own}}}
    return {"openapi": "3.0.3", "info": {"title": f"beach REST bridge, realm {bridge.realm}", "version": "1",
                                         "description": "See beach/restbridge.py: " + "; ".join(KINDS)},
            "paths": paths}


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: this bridge described in OpenAPI 3."""
    _allow(request, ("GET",))
    return Response(output.dumps_line(openapi_document(request.app.state.bridge)), media_type=JSON_TYPE)


async def _bridge_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BridgeError)
    return error_response(exc.status, exc.kind, exc.error, exc.data, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return error_response(exc.status_code, kind, exc.detail, headers=dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", f"internal error ({type(exc).__name__}); the bridge's log has the details")


def create_app(config_path: str, realm: str | None = None, secret: str | None = None, allow_get: bool = False,
               client: AsyncBeach | None = None) -> Starlette:
    """The bridge as an ASGI app: it uses ``client``, or connects to the cluster of ``config_path``
    when it starts."""
    bridge = Bridge(config_path, realm, secret, allow_get, client)
    # every route takes every method and checks its own, so that each 405 says Allow and none falls
    # through to the category route (POST /healthz is not the category "healthz")
    app = Starlette(routes=[Route("/healthz", healthz, methods=ANY_METHOD),
                            Route("/openapi.json", openapi, methods=ANY_METHOD),
                            Route("/metrics", metrics, methods=ANY_METHOD),
                            Route("/{category:path}", serve, methods=ANY_METHOD)],
                    lifespan=bridge.lifespan, middleware=[Middleware(metering.HttpMeter, stats=bridge.http)],
                    exception_handlers={BridgeError: _bridge_error, HTTPException: _http_error,
                                        Exception: _server_error})
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
    return beach_loop.run(_serve(args, tls))


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
        lost: list[str] = []

        def stop(reason: str) -> None:  # deaf, the bridge must not go on answering 503s: it exits
            lost.append(reason)
            server.should_exit = True

        client.session.lost_listeners.append(stop)
        with beach_loop.after_uvicorn():
            await server.serve()
        if lost:
            print(f"beach: the NATS server closed the REST bridge's connection for good ({lost[0]}): exiting",
                  file=sys.stderr)
            return 1
        return 0 if server.started else 1
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(main())
