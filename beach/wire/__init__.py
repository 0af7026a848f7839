"""The wire protocol: what travels on the bus, with no I/O.

* `beach.wire.messages`  request and reply envelopes (msgpack), failure kinds, handler returns
  (its names are re-exported here: ``from beach import wire; wire.pack_request(...)``);
* `beach.wire.subjects`  the NATS subjects: categories, actors, control, broadcasts, and their names;
* `beach.wire.chunks`    a large body as the payload store holds it: encrypted chunks, its reference checked.

Sealing (encrypting and authenticating a message) is `beach.security.seal`.
"""

from beach.wire.messages import (
    ANSWER,
    ANSWERED,
    BUS_UNAVAILABLE,
    BUSY,
    CONFLICT,
    EXCEPTION,
    INVALID_REQUEST,
    INVALID_RESPONSE,
    NO_ACTOR,
    REQUEST_FORMATS,
    RETRYABLE,
    TIMEOUT,
    TRACED,
    UNAUTHORIZED,
    UNSUPPORTED,
    VERSION,
    AnsweredReply,
    AnsweredRequest,
    BodyRef,
    Failure,
    Reply,
    Request,
    TraceContext,
    TracedRequest,
    answered,
    data_of,
    normalize_return,
    pack,
    pack_referenced,
    pack_reply,
    pack_request,
    read_reply,
    request_type,
    unpack,
    unpack_data,
    unpack_reply,
    unpack_request,
)

__all__ = [
    "ANSWER", "ANSWERED", "AnsweredReply", "AnsweredRequest", "BodyRef", "answered", "data_of", "pack_referenced",
    "unpack_data",
    "BUSY", "BUS_UNAVAILABLE", "CONFLICT", "EXCEPTION", "INVALID_REQUEST", "INVALID_RESPONSE", "NO_ACTOR",
    "REQUEST_FORMATS", "RETRYABLE", "TIMEOUT", "TRACED", "UNAUTHORIZED", "UNSUPPORTED", "VERSION", "Failure", "Reply",
    "Request", "TraceContext", "TracedRequest", "normalize_return", "pack", "pack_reply", "pack_request", "read_reply",
    "request_type", "unpack", "unpack_reply", "unpack_request",
]
