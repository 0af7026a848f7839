"""The wire format: msgpack envelopes for requests and replies (msgspec `Struct` s, decoded and
checked in one step), and the handler-return rules.

A request body is the msgpack array ``[1, id, req, data, ident, ttl]``: format version, request id
(the same on every retry), request type, payload, the caller's trust ident (or nil) and the time
budget left in seconds (or nil). Format 2 appends the W3C trace context,
``[2, id, req, data, ident, ttl, [traceparent, tracestate]]``; its readers ignore elements after
the ones they know, so later fields that a reader may skip are appended to it. The previous
release reads format 1 only (exactly six elements): a sender uses format 2 only when it has
something to put there and every node of the cluster reads it (`REQUEST_FORMATS`, which node
entries advertise). Format 3, ``[3, id, req, data, ident, ttl, trace]``, says its sender reads
reply format 2; it is sent whenever every node reads it.

A reply body is ``[1, ok, error, data]`` (the previous release's ``[ok, error, data]`` is read
too); an actor answers a format-3 request with reply format 2, ``[2, ok, error, data, uid,
node]``, naming itself (the previous release reads only format 1, and a caller of it never sends
format 3). Nothing travels in NATS headers, so the whole-body seal covers everything but the
subject.

Lists stay lists; tuples and sets become lists. What msgspec encodes natively travels as it
defines (dataclasses and structs as maps, enums as their values; datetime, date, time, UUID and
Decimal as text); anything else is an `EncodeError` at the sender, never a silent ``str()``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from enum import StrEnum
from typing import Any, ClassVar

import msgspec

from beach.errors import EncodeError

VERSION = 1
TRACED = 2
ANSWERED = 3
"""Request format 3: its sender reads reply format 2 (`ANSWER`), which names the actor that answered."""
ANSWER = 2
"""Reply format 2: ``[2, ok, error, data, uid, node]``."""
REQUEST_FORMATS = (VERSION, TRACED, ANSWERED)
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


def _refuse(value: Any) -> Any:
    raise TypeError(f"cannot serialize {type(value).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_refuse)  # (thread-safe: msgspec's encoders keep no state between calls)
_any = msgspec.msgpack.Decoder()


def pack(value: Any, what: str = "value") -> bytes:
    """Encode ``value`` with msgpack; raise `EncodeError` naming the type it cannot carry."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as err:
        raise EncodeError(f"{what} cannot be sent: {err} (beach sends msgpack: dict, list, str, bytes, int, "
                          f"float, bool, None, and what msgspec encodes)") from None


def unpack(body: bytes) -> Any:
    """Decode a msgpack body; raise ``ValueError`` if it is not one."""
    try:
        return _any.decode(body)
    except msgspec.DecodeError as err:  # (its text is never empty, but say what it was if it were)
        raise ValueError(f"malformed message body: {str(err) or type(err).__name__}") from None


class TraceContext(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """W3C trace context as a request carries it, ``[traceparent, tracestate]``: the header values
    (``tracestate`` ``''`` when there is none). Checked by `beach.tracing`, which ignores one that
    is not well formed, as W3C asks of a receiver; one that is not two strings is an invalid
    request."""

    traceparent: str
    tracestate: str


class BodyRef(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """Where a payload too large for one message is (`beach.bus.bodies`), ``[name, size, chunk,
    chunks, key]``: its object in the payload store, its size in bytes (the msgpack encoding of the
    data), the size of its chunks and their count, and the one-time AES-256-GCM key it is
    encrypted with (the message carrying it is sealed)."""

    name: str
    size: int
    chunk: int
    chunks: int
    key: bytes


class Request(msgspec.Struct, array_like=True, tag=VERSION):
    """A request as it travels, ``[1, id, req, data, ident, ttl]``: the format (the tag), the
    request id (the same on every retry), its type, its payload, the caller's trust ident (or nil)
    and the time budget left in seconds (or nil). Format 1 carries no trace context (``trace`` is
    None)."""

    id: str
    req: str
    data: Any
    ident: str | None
    ttl: float | None
    trace: ClassVar[TraceContext | None] = None


class TracedRequest(Request, tag=TRACED):
    """Format 2, ``[2, id, req, data, ident, ttl, trace]``: format 1's fields, then the trace
    context (or nil). The one that grows: a field a reader may skip is appended after it, with a
    default (a reader ignores elements after those it knows)."""

    trace: TraceContext | None  # type: ignore[misc]  # (a field here; format 1's is always None)


class AnsweredRequest(TracedRequest, tag=ANSWERED):
    """Format 3, ``[3, id, req, data, ident, ttl, trace, body]``: format 2's fields, sent by a
    caller that reads reply format 2 (`AnsweredReply`: the reply names the actor that answered, and
    may carry its data by reference), so it is answered in it. ``body``: where the data is, when it
    was too large to travel in the message (then ``data`` is nil)."""

    body: BodyRef | None = None
    stream: int = 0  # a streamed request: the caller's window, in items (0: not a stream)


_request: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request | TracedRequest | AnsweredRequest)


def pack_request(req_id: str, req: str, data: Any, ident: str | None, ttl: float | None,
                 trace: TraceContext | None = None, reads: Collection[int] = REQUEST_FORMATS,
                 stream: int = 0) -> bytes:
    """Encode a request envelope in the newest format its readers read (``reads``: the formats
    every node reads): format 3 where they read it; else format 2 with ``trace``, where they read
    that; else format 1 (without the trace context)."""
    if ANSWERED in reads:
        request: Request = AnsweredRequest(req_id, req, data, ident, ttl, trace, None, stream)
    elif trace is not None and TRACED in reads:
        request = TracedRequest(req_id, req, data, ident, ttl, trace)
    else:
        request = Request(req_id, req, data, ident, ttl)
    return pack(request, what=f"data of request {req!r}")


def unpack_request(body: bytes) -> Request:
    """Decode a request envelope (format 1, 2 or 3); raise ``ValueError`` naming what is wrong with it."""
    try:
        return _request.decode(body)
    except msgspec.ValidationError as err:
        raise ValueError(f"not a beach request envelope: {err}") from None
    except msgspec.DecodeError as err:
        raise ValueError(f"malformed message body: {err}") from None


class _Head(msgspec.Struct, array_like=True, tag=VERSION):
    """A request envelope with its data left encoded (see `request_type`)."""

    id: str
    req: str
    data: msgspec.Raw
    ident: str | None
    ttl: float | None


class _TracedHead(_Head, tag=TRACED):
    """A format-2 request envelope with its data and trace context left encoded."""

    trace: msgspec.Raw


class _AnsweredHead(_TracedHead, tag=ANSWERED):
    """A format-3 request envelope, its data and trace context left encoded."""


_head: msgspec.msgpack.Decoder[_Head] = msgspec.msgpack.Decoder(_Head | _TracedHead | _AnsweredHead)


def request_type(body: bytes) -> str | None:
    """The request type of a request envelope, read without decoding its data (for counting a
    request that is refused before it is served); None if ``body`` is not a request envelope."""
    try:
        return _head.decode(body).req
    except msgspec.DecodeError:
        return None


def answered(body: bytes) -> bool:
    """True if ``body`` is a request envelope whose sender reads reply format 2 (format 3), read
    without decoding its data (for answering a request refused before it is decoded: ``busy``)."""
    try:
        return isinstance(_head.decode(body), _AnsweredHead)
    except msgspec.DecodeError:
        return False


class Reply(msgspec.Struct, array_like=True, tag=VERSION):
    """A reply as it travels, ``[1, ok, error, data]``, the one shape every answer has: an actor's
    to a request, a node agent's or an actor host's to a control operation. ``error`` is ``''``
    for a success; a failure's starts with its kind (`Failure`) where beach made it, else it is
    the handler's own text. A client sees it as an `ActorResponse`. It unpacks as ``ok, error, data``."""

    ok: bool
    error: str
    data: Any = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.ok, self.error, self.data))


class AnsweredReply(Reply, tag=ANSWER):
    """Reply format 2, ``[2, ok, error, data, uid, node, body]``: format 1's fields, then the uid and
    the node of the actor that answered (the answer to a format-3 request: `AnsweredRequest`), and
    where the data is when it was too large to travel in the message (then ``data`` is nil)."""

    uid: str | None = None
    node: str | None = None
    body: BodyRef | None = None
    seq: int = -1  # in a stream: an item's index, or (its end: ``more`` False) the number of items; else -1
    more: bool = False  # an item of a stream (its end, and any other reply: False)


_reply = msgspec.msgpack.Decoder(Reply | AnsweredReply)
_reply_format_0 = msgspec.msgpack.Decoder(tuple[bool, str | None, Any])  # the previous release's [ok, error, data]
_reply_numbered = msgspec.msgpack.Decoder(tuple[int, bool, str | None, Any])


def pack_reply(ok: bool, error: str, data: Any, uid: str | None = None, node: str | None = None,
               body: BodyRef | None = None, seq: int = -1, more: bool = False) -> bytes:
    """Encode a reply envelope: format 1, or format 2 naming actor ``uid`` on ``node`` (when
    ``uid`` is given: the answer to a format-3 request only, which only a reader of it sends), its
    data at ``body`` if given."""
    reply = Reply(ok, error, data) if uid is None else AnsweredReply(ok, error, data, uid, node, body, seq, more)
    return pack(reply, what="reply data")


def pack_referenced(req_id: str, req: str, body: BodyRef, ident: str | None, ttl: float | None,
                    trace: TraceContext | None = None, stream: int = 0) -> bytes:
    """Encode a request whose data is at ``body`` (format 3: only where every reader reads it)."""
    return pack(AnsweredRequest(req_id, req, None, ident, ttl, trace, body, stream))


class _Data(msgspec.Struct, array_like=True):
    """Any envelope with its data left encoded (`data_of`)."""

    tag: Any
    a: Any
    b: Any
    data: msgspec.Raw


_data_of = msgspec.msgpack.Decoder(_Data)


def data_of(envelope: bytes) -> memoryview:
    """The encoded data of a request or reply envelope this module packed (its fourth element):
    a view into ``envelope``, not a copy, to be stored as a large body."""
    return memoryview(_data_of.decode(envelope).data)  # (msgspec's Raw references the bytes it was decoded from)


def unpack_data(body: bytes | bytearray | memoryview) -> Any:
    """Decode a large body's data (the msgpack encoding `data_of` stored); raise ``ValueError``."""
    try:
        return _any.decode(body)
    except msgspec.DecodeError as err:
        raise ValueError(f"malformed payload: {err}") from None


def unpack_reply(body: bytes) -> Reply:
    """Decode a reply envelope (format 1 or 2, or the previous release's without a version); raise
    ``ValueError`` if it is not one, or comes from a newer beach."""
    try:
        return _reply.decode(body)
    except msgspec.ValidationError as err:
        problem = str(err)
    except msgspec.DecodeError as err:
        raise ValueError(f"malformed message body: {err}") from None
    try:
        ok, error, data = _reply_format_0.decode(body)
        return Reply(ok, error or "", data)
    except msgspec.ValidationError:
        pass
    try:  # a format number other than this one's, or a nil error (which the previous release read as none)
        version, ok, error, data = _reply_numbered.decode(body)
    except msgspec.ValidationError:
        raise ValueError(f"not a beach reply envelope: {problem}") from None
    if version > ANSWER:
        raise ValueError(f"a reply of format {version!r} (from a newer beach?); this one reads up to {ANSWER}")
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
