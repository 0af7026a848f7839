"""The wire format: msgpack envelopes for requests and replies, and the handler-return rules.

A request body is the msgpack array ``[1, id, req, data, ident, ttl]``: format version, request id
(the same on every retry), request type, payload, the caller's trust ident (or nil) and the time
budget left in seconds (or nil). Format 2 appends the W3C trace context,
``[2, id, req, data, ident, ttl, [traceparent, tracestate]]``; its readers ignore elements after
the ones they know, so later fields that a reader may skip are appended to it. The previous
release reads format 1 only (exactly six elements): a sender uses format 2 only when it has
something to put there and every node of the cluster reads it (`REQUEST_FORMATS`, which node
entries advertise). A reply body is ``[1, ok, error, data]`` (the previous release's
``[ok, error, data]`` is read too). Nothing travels in NATS
headers, so a future whole-body AEAD seal covers everything but the subject.

Lists stay lists. Sets become lists. Anything else msgpack cannot carry is an `EncodeError` at the
sender, never a silent ``str()``.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Any, NamedTuple, cast

import msgpack

from beach.errors import EncodeError

VERSION = 1
TRACED = 2
REQUEST_FORMATS = (VERSION, TRACED)
"""The request formats this beach reads (its node entries say so: ``reads``)."""

class Failure(StrEnum):
    """The kinds of failure a request can come back with. Each is carried on the wire as the start
    of the reply's error text — the original's strings, where it had them — so a caller reading
    ``ActorResponse.error`` sees what it always saw, and one reading ``ActorResponse.failure``
    gets the kind (`of` reads it back from the text)."""

    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"
    EXCEPTION = "exception"
    UNSUPPORTED = "request type not supported by actor"
    INVALID_RESPONSE = "invalid response format"
    INVALID_REQUEST = "invalid request"
    BUSY = "busy"
    NO_ACTOR = "no actor available"  # in the category (NATS had no responder for its subject)
    BUS_UNAVAILABLE = "bus unavailable"  # NATS takes no more for now (reconnecting, its buffer full; no quorum)
    PERMISSION_DENIED = "permission denied"  # the NATS credentials do not allow it
    MALFORMED_REPLY = "malformed reply"
    CONFLICT = "conflict"  # the turn's actor state changed under it (another actor wrote a key it used)

    @classmethod
    def of(cls, error: str) -> Failure | None:
        """The kind of an error text, or None (a handler's own error string). The kinds that carry
        details (``no actor available in category ...``, ``bus unavailable: ...``) are read by
        their first words; the others are the whole text, so a handler's ``'timeout calling
        the bank'`` is its own error, not a timeout."""
        try:
            return cls(error)
        except ValueError:
            if error.startswith(f"{cls.EXCEPTION.value}: "):  # 'exception: KeyError: ...' (a handler raised)
                return cls.EXCEPTION
            return next((kind for kind in _DETAILED if error.startswith(kind.value)), None)


_DETAILED = (Failure.NO_ACTOR, Failure.BUS_UNAVAILABLE, Failure.PERMISSION_DENIED, Failure.MALFORMED_REPLY)
RETRYABLE = frozenset({Failure.TIMEOUT, Failure.BUSY, Failure.NO_ACTOR, Failure.BUS_UNAVAILABLE, Failure.CONFLICT})
"""The failures worth another attempt (``nRetries``): the next one may find a free actor (or, after
a ``conflict``, fresh state: the turn committed nothing and runs again on the current values)."""

# The names the code used before the enum (each is the kind itself: a str)
TIMEOUT, UNAUTHORIZED, EXCEPTION = Failure.TIMEOUT, Failure.UNAUTHORIZED, Failure.EXCEPTION
UNSUPPORTED, INVALID_RESPONSE, INVALID_REQUEST = Failure.UNSUPPORTED, Failure.INVALID_RESPONSE, Failure.INVALID_REQUEST
BUSY, NO_ACTOR, BUS_UNAVAILABLE = Failure.BUSY, Failure.NO_ACTOR, Failure.BUS_UNAVAILABLE
CONFLICT = Failure.CONFLICT


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


_local = threading.local()


def _packer() -> msgpack.Packer:
    # A Packer per thread: reusing one is twice as fast as packb(), and Packers are not thread-safe.
    try:
        return _local.packer
    except AttributeError:
        _local.packer = msgpack.Packer(default=_default, use_bin_type=True, datetime=False)
        return _local.packer


def pack(value: Any, what: str = "value") -> bytes:
    """Encode ``value`` with msgpack; raise `EncodeError` naming the type it cannot carry."""
    packer = _packer()
    try:
        return cast(bytes, packer.pack(value))  # (msgpack is untyped)
    except (TypeError, ValueError, OverflowError) as err:
        packer.reset()  # a failed pack may leave partial output in the buffer
        raise EncodeError(f"{what} cannot be sent: {err} (beach sends msgpack: dict, list, str, "
                          f"bytes, int, float, bool, None)") from None


def unpack(body: bytes) -> Any:
    """Decode a msgpack body; raise ``ValueError`` if it is not one."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as err:  # msgpack raises several unrelated types on garbage
        # (some with no text at all: FormatError() for a reserved byte)
        raise ValueError(f"malformed message body: {str(err) or type(err).__name__}") from None


class TraceContext(NamedTuple):
    """W3C trace context as a request carries it: the ``traceparent`` and ``tracestate`` header
    values (``tracestate`` ``''`` when there is none). Checked by `beach.tracing`, which ignores
    one that is not well formed, as W3C asks of a receiver."""

    traceparent: str
    tracestate: str


class Request(NamedTuple):
    """A decoded request, as the receiving host sees it (``trace``: None in format 1)."""

    id: str
    req: str
    data: Any
    ident: str | None
    ttl: float | None
    trace: TraceContext | None = None


def pack_request(req_id: str, req: str, data: Any, ident: str | None, ttl: float | None,
                 trace: TraceContext | None = None) -> bytes:
    """Encode a request envelope: format 1, or format 2 with ``trace`` (pass one only where every
    reader reads format 2)."""
    if trace is None:
        return pack([VERSION, req_id, req, data, ident, ttl], what=f"data of request {req!r}")
    return pack([TRACED, req_id, req, data, ident, ttl, trace], what=f"data of request {req!r}")


def unpack_request(body: bytes) -> Request:
    """Decode a request envelope (format 1 or 2); raise ``ValueError`` naming what is wrong with it."""
    value = unpack(body)
    if not isinstance(value, list) or not (len(value) == 6 and value[0] == VERSION
                                           or len(value) >= 7 and value[0] == TRACED):
        raise ValueError("not a beach request envelope")
    req_id, req, data, ident, ttl = value[1:6]
    trace = None
    if len(value) > 6 and value[6] is not None:
        trace = value[6]
        if not (isinstance(trace, list) and len(trace) == 2 and all(isinstance(x, str) for x in trace)):
            raise ValueError("a request's trace context must be [traceparent, tracestate]")
        trace = TraceContext(*trace)
    if not isinstance(req_id, str) or not isinstance(req, str):
        raise ValueError("request id and type must be strings")
    if ident is not None and not isinstance(ident, str):
        raise ValueError("request ident must be a string")
    if ttl is not None and not isinstance(ttl, (int, float)):
        raise ValueError("request ttl must be a number")
    return Request(req_id, req, data, ident, ttl, trace)


def request_type(body: bytes) -> str | None:
    """The request type of a request envelope, read without decoding its data (for counting a
    request that is refused before it is served); None if ``body`` is not a request envelope."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(body)
    try:
        length, version = unpacker.read_array_header(), unpacker.unpack()
        if not (length == 6 and version == VERSION or length >= 7 and version == TRACED):
            return None
        unpacker.skip()  # the request id
        req = unpacker.unpack()
    except Exception:  # msgpack raises several unrelated types on garbage
        return None
    return req if isinstance(req, str) else None


class Reply(NamedTuple):
    """A reply as it travels, the one shape every answer has: an actor's to a request, a node
    agent's or an actor host's to a control operation. ``error`` is ``''`` for a success; a
    failure's starts with its kind (`Failure`) where beach made it, else it is the handler's own
    text. A client sees it as an `ActorResponse`."""

    ok: bool
    error: str
    data: Any


def pack_reply(ok: bool, error: str, data: Any) -> bytes:
    """Encode a reply envelope."""
    return pack([VERSION, ok, error, data], what="reply data")


def unpack_reply(body: bytes) -> Reply:
    """Decode a reply envelope (this format, or the previous one without a version); raise
    ``ValueError`` if it is not one, or comes from a newer beach."""
    value = unpack(body)
    if isinstance(value, list) and len(value) == 3:  # format 0: [ok, error, data]
        value = [0, *value]
    if not isinstance(value, list) or len(value) != 4 or not isinstance(value[1], bool):
        raise ValueError("not a beach reply envelope")
    version, ok, error, data = value
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(f"a reply of format {version!r} (from a newer beach?); this one reads up to {VERSION}")
    if not isinstance(error, str) and error is not None:
        raise ValueError("a reply's error must be a string")
    return Reply(ok, error or "", data)


def read_reply(body: bytes, source: str) -> Reply:
    """`unpack_reply`, never raising: a body that is not a reply is the failure ``malformed reply
    from <source>: <why>`` (`Failure.MALFORMED_REPLY`)."""
    try:
        return unpack_reply(body)
    except ValueError as err:
        return Reply(False, f"{Failure.MALFORMED_REPLY.value} from {source}: {err}", {})


def normalize_return(ret: Any) -> Reply:
    """Turn a handler's return value into ``(ok, error, data)`` by the original's rules.

    ``(True,)`` → ok, ``{}``; ``(True, d)`` → ok, ``d``; ``(True, a, b)`` → ok, ``{}``;
    ``(False,)`` → ``'error'``; ``(False, e)`` → ``e``; ``(False, e, d)`` → ``e`` with ``d``.
    Anything else (not a non-empty tuple or list with a bool first) → ``'invalid response format'``
    with the raw value as data (where a dict used to kill the handler without a reply).
    """
    if isinstance(ret, (tuple, list)) and ret and isinstance(ret[0], bool):
        if ret[0]:
            return Reply(True, "", ret[1] if len(ret) == 2 else {})
        error = ret[1] if len(ret) >= 2 else "error"
        data = ret[2] if len(ret) >= 3 else {}
        return Reply(False, str(error), data)
    return Reply(False, INVALID_RESPONSE, ret)
