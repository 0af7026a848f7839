"""Trace context across requests (W3C Trace Context) and their OpenTelemetry spans.

A request carries the trace context of the span that sent it (``traceparent`` and ``tracestate``,
inside its sealed body: `beach.wire.TraceContext`, request format 2). Where it is served, the
handler runs in a span whose parent that is, so the requests the handler makes are its children
— in ``def`` handlers too: their worker thread runs in a copy of the request's context, and a
blocking call hands that context on to the event loop (`beach.client.runner`), as it does the
request's deadline.

What beach does depends on what the process has:

* nothing of OpenTelemetry installed: it carries the context of the request being served onto the
  requests its handler makes, unchanged, and does nothing else (no span, no import);
* the API (``opentelemetry-api``) but no tracer provider: the same, through the API's current span
  (the application's own context, if it has one, is the parent); nothing is recorded;
* a tracer provider — the application's own, or the one `configure` builds from the standard
  ``OTEL_*`` variables where the SDK is installed (``beach[otel]``): spans.

The spans (OpenTelemetry's messaging conventions, ``messaging.system=nats``): a call is a CLIENT
span ``request <category>`` (``requestFromAll``, ``shoot``... as its operation) with a CLIENT child
``send <category>`` per attempt, whose context the attempt carries (a retry is a second child; a
fan-out's actors are sibling children); a fire-and-forget message is a PRODUCER span ``publish
<category>``; the handler runs in a SERVER span ``process <category>`` (CONSUMER for a message
without a reply). A failure sets the span's status to ERROR with ``error.type`` the outcome
(`beach.metering.outcome`); a handler's exception is recorded on its span. The sampler decides as
OpenTelemetry's does (a request's sampled flag is its parent's decision).

The OpenTelemetry API is imported lazily, once (`_api`): the library does not depend on it, and a
process that does not trace pays nothing for it.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from beach.errors import ClosedError
from beach.wire import TraceContext

log = logging.getLogger("beach.tracing")

# The context the request being served carried, where no OpenTelemetry API is installed (with the
# API, its current span is the one place a context lives).
_carried: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("beach_trace", default=None)

# W3C traceparent: version (ff is invalid), trace id, parent span id, flags (a later version may
# append fields after a dash: read as version 00)
_TRACEPARENT = re.compile(r"(?!ff)([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")

RECHECK = 1.0
SYSTEM = "nats"
CLIENT, PRODUCER, SERVER, CONSUMER = "CLIENT", "PRODUCER", "SERVER", "CONSUMER"


class _Otel:
    """The parts of the OpenTelemetry API beach uses, imported once."""

    def __init__(self) -> None:
        from opentelemetry import context, trace

        self.context = context
        self.trace = trace
        self.kinds = {CLIENT: trace.SpanKind.CLIENT, PRODUCER: trace.SpanKind.PRODUCER,
                      SERVER: trace.SpanKind.SERVER, CONSUMER: trace.SpanKind.CONSUMER}
        self.error = trace.StatusCode.ERROR
        self.no_provider = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        self.invalid = trace.INVALID_SPAN
        try:
            version = importlib.metadata.version("beach")
        except importlib.metadata.PackageNotFoundError:
            version = None
        self.tracer = trace.get_tracer("beach", version)  # (a proxy until a provider is set: it follows)
        self._recording = False
        self._next_check = 0.0

    def recording(self) -> bool:
        """True if a tracer provider is set (spans can be recorded; the sampler decides which).
        Once set it stays (the API sets one once); while none is, a provider the application sets
        later is seen within `RECHECK` seconds (looking costs an environment lookup per call)."""
        if self._recording:
            return True
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + RECHECK
            self._recording = not isinstance(self.trace.get_tracer_provider(), self.no_provider)
        return self._recording


_loaded: list[_Otel | None] = []


def _api() -> _Otel | None:
    """The OpenTelemetry API, or None where it is not installed (looked for once)."""
    if not _loaded:
        try:
            _loaded.append(_Otel())
        except ImportError:
            _loaded.append(None)
    return _loaded[0]


def _context_of(span: Any) -> TraceContext | None:
    """The W3C context naming ``span`` as the parent, or None for a span without a valid context."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return TraceContext(f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}",
                        context.trace_state.to_header())


def _parse(trace: TraceContext | None) -> tuple[int, int, int] | None:
    """Trace id, parent span id and flags of a well-formed context (W3C's rules), else None."""
    if trace is None:
        return None
    match = _TRACEPARENT.fullmatch(trace.traceparent)
    if match is None or (match.group(1) == "00" and match.group(5)):
        return None
    trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
    return (trace_id, span_id, int(match.group(4), 16)) if trace_id and span_id else None


def trace_id(trace: TraceContext | None) -> str | None:
    """The trace id (32 hex digits) of a well-formed context, else None."""
    parsed = _parse(trace)
    return None if parsed is None else f"{parsed[0]:032x}"


def current_trace_id() -> str | None:
    """The trace id of the code running now (a handler's request, or the application's own span),
    or None: what a log line carries."""
    api = _api()
    if api is None:
        return trace_id(_carried.get())
    context = api.trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def current() -> TraceContext | None:
    """The context a message sent now would carry as its parent (None: none)."""
    api = _api()
    if api is None:
        return _carried.get()
    return _context_of(api.trace.get_current_span())


def _attributes(operation: str, realm: str, category: str, request_type: str, request_id: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.operation.name": operation,
            "messaging.destination.name": category, "messaging.message.id": request_id,
            "beach.realm": realm, "beach.request_type": request_type}


def raised(err: BaseException) -> tuple[str, str]:
    """The outcome and description a span ends with when ``err`` ended its call: ``closed`` (the
    connection closed) or ``error``."""
    return "closed" if isinstance(err, ClosedError) else "error", f"{type(err).__name__}: {err}"


def _end(span: Any, api: _Otel, outcome: str, description: str = "") -> None:
    span.set_attribute("beach.outcome", outcome)
    if outcome != "ok":
        span.set_attribute("error.type", outcome)
        span.set_status(api.error, description or outcome)
    span.end()


class Attempt:
    """One attempt of a call: a CLIENT span whose context the attempt carries (`context`)."""

    __slots__ = ("span", "context")

    def __init__(self, span: Any, context: TraceContext | None) -> None:
        self.span = span
        self.context = context

    def end(self, outcome: str, description: str = "") -> None:
        """End the attempt with its ``outcome`` (`beach.metering.outcome`)."""
        if self.span is not None and (api := _api()) is not None:
            _end(self.span, api, outcome, description)


class Call:
    """The spans of one call: a span for the call, a child span per attempt (`attempt`)."""

    __slots__ = ("span", "carried", "category", "kind")

    def __init__(self, span: Any, carried: TraceContext | None, category: str, kind: str) -> None:
        self.span = span  # None: no API, ``carried`` is passed on as it is
        self.carried = carried
        self.category = category
        self.kind = kind

    def attempt(self, number: int, target: str) -> Attempt:
        """Start attempt ``number`` (0 first), sent to ``target`` (an actor uid, or the category
        when the queue group picks the actor)."""
        api = _api()
        if self.span is None or api is None:
            return Attempt(None, self.carried)
        attributes: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "send",
                                      "messaging.destination.name": self.category, "beach.attempt": number}
        if target != self.category:
            attributes["beach.actor.uid"] = target
        span = api.tracer.start_span(f"send {self.category}", api.trace.set_span_in_context(self.span),
                                     api.kinds[self.kind], attributes)
        return Attempt(span, _context_of(span))

    def own(self) -> TraceContext | None:
        """The context naming the call's own span as the parent (a message sent once, no attempts)."""
        return self.carried if self.span is None else _context_of(self.span)

    def end(self, outcome: str, description: str = "", attributes: dict[str, Any] | None = None) -> None:
        """End the call with its final ``outcome`` (`beach.metering.outcome`), and ``attributes``
        (a stream's: the items it read)."""
        if self.span is not None and (api := _api()) is not None:
            if attributes:
                self.span.set_attributes(attributes)
            _end(self.span, api, outcome, description)


def call(operation: str, realm: str, category: str, request_type: str, request_id: str,
         kind: str = CLIENT) -> Call | None:
    """Start the spans of a call made now (``operation``: ``request``, ``requestFromAll``,
    ``shoot``, ``broadcast``), the current span its parent; None when there is nothing to record
    and no context to carry (the request goes in format 1, as before tracing)."""
    api = _api()
    if api is None:
        carried = _carried.get()
        return None if carried is None else Call(None, carried, category, kind)
    if not api.recording():  # nothing records: the current context, if any, is passed on as it is
        current = api.trace.get_current_span()
        if current is api.invalid:  # (no span: the common case, made cheap)
            return None
        carried = _context_of(current)
        return None if carried is None else Call(None, carried, category, kind)
    name = f"{'publish' if kind == PRODUCER else operation} {category}"
    attributes = _attributes(operation, realm, category, request_type, request_id)
    attributes["messaging.operation.type"] = "send"
    span = api.tracer.start_span(name, kind=api.kinds[kind], attributes=attributes)
    if not span.get_span_context().is_valid:
        return None
    return Call(span, None, category, kind)


class Serving:
    """The span a request is served in (`serve`); `end` it with the outcome."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self.token = token

    def end(self, outcome: str, description: str = "") -> None:
        """End the span with the request's ``outcome`` and leave its context."""
        api = _api()
        if api is None:
            return
        if self.span is not None:
            _end(self.span, api, outcome, description)
        if self.token is not None:
            api.context.detach(self.token)


def _remote(api: _Otel, trace: TraceContext | None) -> Any:
    """An OpenTelemetry context whose current span is the remote parent ``trace`` names (None if
    it names none, well formed)."""
    parsed = _parse(trace)
    if parsed is None:
        return None
    assert trace is not None
    state = api.trace.TraceState.from_header([trace.tracestate]) if trace.tracestate else None
    return api.trace.set_span_in_context(api.trace.NonRecordingSpan(api.trace.SpanContext(
        parsed[0], parsed[1], True, api.trace.TraceFlags(parsed[2] & 0xFF), state)))


@contextlib.contextmanager
def parent(trace: TraceContext | None) -> Iterator[None]:
    """Within the block, the calls made have the remote span ``trace`` names as their parent (a
    W3C context that came from elsewhere: an HTTP request's ``traceparent`` header, for the REST
    bridge); no change if it names none, well formed."""
    api = _api()
    if api is None:
        token = _carried.set(trace) if _parse(trace) is not None else None
        try:
            yield
        finally:
            if token is not None:
                _carried.reset(token)
        return
    remote = _remote(api, trace)
    attached = None if remote is None else api.context.attach(remote)
    try:
        yield
    finally:
        if attached is not None:
            api.context.detach(attached)


def serve(trace: TraceContext | None, realm: str, category: str, request_type: str, request_id: str,
          uid: str, node: str | None, replied: bool) -> Serving | None:
    """Enter the span of a request being served now (in the context of the task serving it): its
    parent is the context the request carried (``trace``), if well formed. None when there is
    nothing to record or carry. ``replied``: the sender waits for a reply (SERVER, else CONSUMER)."""
    api = _api()
    if api is None:
        return _carry(trace)
    if trace is None and not api.recording():  # (the usual case, checked first: it costs nothing then)
        return None
    attributes = _attributes("process", realm, category, request_type, request_id)
    attributes.update({"messaging.operation.type": "process", "beach.actor.uid": uid})
    if node is not None:
        attributes["beach.node"] = node
    return _enter(api, trace, f"process {category}", SERVER if replied else CONSUMER, attributes)


def _carry(trace: TraceContext | None) -> Serving | None:
    """Without the API: make ``trace`` (if well formed) the context of the task serving now."""
    if _parse(trace) is None:
        return None
    _carried.set(trace)  # (the task's own context: nothing to reset)
    return Serving(None, None)


def _enter(api: _Otel, trace: TraceContext | None, name: str, kind: str, attributes: dict[str, Any]) -> Serving | None:
    """Enter span ``name`` whose parent is the remote context ``trace`` (if well formed), or, where
    nothing records, that context alone (None when there is neither)."""
    parent = _remote(api, trace)
    if not api.recording():  # nothing records: the request's context is the handler's, as it came
        return None if parent is None else Serving(None, api.context.attach(parent))
    # (no context carried: a trace of its own, whatever the serving task's context holds)
    span = api.tracer.start_span(name, parent if parent is not None else api.context.Context(), api.kinds[kind],
                                 attributes)
    if not span.get_span_context().is_valid:
        return None
    return Serving(span, api.context.attach(api.trace.set_span_in_context(span)))


# ---------------------------------------------------------------- operations: control calls, state

# A control operation (spawn, stop, state, flush... to a node agent or an actor host) carries its
# trace context in NATS headers, W3C's names: its arguments are a map each side checks field by
# field (a field the previous release does not know would be refused), headers are read past.
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"


def headers(trace: TraceContext | None) -> dict[str, str] | None:
    """The NATS headers carrying ``trace`` (None for no context)."""
    if trace is None:
        return None
    if not trace.tracestate:
        return {TRACEPARENT: trace.traceparent}
    return {TRACEPARENT: trace.traceparent, TRACESTATE: trace.tracestate}


def from_headers(found: dict[str, str] | None) -> TraceContext | None:
    """The trace context NATS headers carry (None: none, or not a string)."""
    traceparent = (found or {}).get(TRACEPARENT)
    if not isinstance(traceparent, str):
        return None
    tracestate = (found or {}).get(TRACESTATE)
    return TraceContext(traceparent, tracestate if isinstance(tracestate, str) else "")


def _rpc_attributes(service: str, op: str, target: str, realm: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"rpc.system": "beach", "rpc.service": service, "rpc.method": op,
                                  f"{service}.id": target}
    if realm is not None:
        attributes["beach.realm"] = realm
    return attributes


def operation(service: str, op: str, target: str, realm: str | None) -> Call | None:
    """Start the CLIENT span of control operation ``op`` asked of ``target`` (``service``:
    ``beach.node``, a node agent, or ``beach.host``, an actor host), the current span its parent;
    its `Call.own` context goes in the request's `headers`. None: nothing to record or carry."""
    api = _api()
    if api is None:
        carried = _carried.get()
        return None if carried is None else Call(None, carried, op, CLIENT)
    if not api.recording():
        current = api.trace.get_current_span()
        carried = None if current is api.invalid else _context_of(current)
        return None if carried is None else Call(None, carried, op, CLIENT)
    span = api.tracer.start_span(f"{service}/{op}", kind=api.kinds[CLIENT],
                                 attributes=_rpc_attributes(service, op, target, realm))
    return Call(span, None, op, CLIENT) if span.get_span_context().is_valid else None


def serve_operation(trace: TraceContext | None, service: str, op: str, target: str,
                    realm: str | None) -> Serving | None:
    """Enter the SERVER span of control operation ``op`` served now by ``target`` (its
    parent the context the request's headers carried, ``trace``), as `serve` does for a request."""
    api = _api()
    if api is None:
        return _carry(trace)
    return _enter(api, trace, f"{service}/{op}", SERVER, _rpc_attributes(service, op, target, realm))


def outside() -> contextvars.Context:
    """A copy of the current context without its trace: for work that outlives the operation
    being served (an actor a spawn starts: its subscriptions and timers are not that spawn's)."""
    context = contextvars.copy_context()
    context.run(_leave)
    return context


def _leave() -> None:
    _carried.set(None)
    api = _api()
    if api is not None:
        api.context.attach(api.context.Context())  # (in the copy only: never detached, never seen again)


class Step:
    """An INTERNAL span of work done while serving (a state commit, a state read from the
    stream); `end` it with the outcome."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def end(self, outcome: str, description: str = "", attributes: dict[str, Any] | None = None) -> None:
        """End the span with ``outcome`` and any more ``attributes``."""
        api = _api()
        if api is not None:
            for key, value in (attributes or {}).items():
                self.span.set_attribute(key, value)
            _end(self.span, api, outcome, description)


def step(name: str, **attributes: Any) -> Step | None:
    """Start an INTERNAL span ``name`` under the current span, if one records (else None: a step
    carries no context anywhere, so without a recording span there is nothing to do)."""
    api = _api()
    if api is None or not api.recording() or not api.trace.get_current_span().is_recording():
        return None
    return Step(api.tracer.start_span(name, kind=api.trace.SpanKind.INTERNAL, attributes=attributes))


def record_exception(error: BaseException) -> None:
    """Record ``error`` (a handler's exception) on the current span, if it records."""
    api = _api()
    if api is not None:
        span = api.trace.get_current_span()
        if span.is_recording():
            span.record_exception(error)


# ---------------------------------------------------------------- the SDK, from OTEL_* variables

_EXPORTERS = "opentelemetry_traces_exporter"  # the entry point group of span exporters
_PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


def exporter_names(environ: Any = os.environ) -> list[str]:
    """The entry point names of the span exporters ``OTEL_TRACES_EXPORTER`` asks for (``otlp`` by
    the OTLP protocol variables: ``grpc``, the Python SDK's default, or ``http/protobuf``); raise
    ``ValueError`` naming a protocol that is not one of those."""
    names = []
    for name in (n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")):
        if not name or name == "none":
            continue
        if name == "otlp":
            protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip()
            if protocol not in _PROTOCOLS:
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL is {protocol!r}: not one of "
                                 f"{', '.join(_PROTOCOLS)} (the OTLP exporters installed with beach[otel])")
            name = _PROTOCOLS[protocol]
        names.append(name)
    return names


def _asked(environ: Any) -> bool:
    """True if the environment asks for traces to be exported (an exporter or an OTLP endpoint
    named), and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name) for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                                              "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(service: str, environ: Any = os.environ) -> bool:
    """Build and set a `TracerProvider` from the standard ``OTEL_*`` variables, as the process
    ``service`` (``beach-client``, ``beach-node``, ``beach-host``: the default service name) — where
    the environment asks for export (``OTEL_TRACES_EXPORTER``, or an OTLP endpoint), the SDK is
    installed (``beach[otel]``) and the application has set no provider of its own (which is then
    used as it is). The sampler, the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``),
    the batching (``OTEL_BSP_*``) and each exporter's own settings (``OTEL_EXPORTER_OTLP_*``) are
    read by the SDK. True if it set one. A variable naming what cannot be had is logged as an error
    naming it, and nothing is exported (a process does not fail for its tracing)."""
    api = _api()  # (imported now, at the process's start, rather than by its first request)
    if not _asked(environ) or api is None:
        return False
    api._next_check = 0.0  # (look again now: the application may have just set its own)
    if api.recording():
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* variables ask for traces but the OpenTelemetry SDK is not installed "
                    "(pip install 'beach[otel]'): trace context is carried, nothing is exported")
        return False
    try:
        exporters = []
        for name in exporter_names(environ):
            found = importlib.metadata.entry_points(group=_EXPORTERS, name=name)
            if not found:
                installed = sorted(e.name for e in importlib.metadata.entry_points(group=_EXPORTERS))
                raise ValueError(f"OTEL_TRACES_EXPORTER asks for {name!r}, which no installed package provides "
                                 f"(installed: {', '.join(installed) or 'none'})")
            exporters.append(next(iter(found)).load()())
    except Exception as err:
        log.error("traces are not exported: %s", err)
        return False
    named = environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": service}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    api.trace.set_tracer_provider(provider)  # (the SDK's provider exports what it holds at exit)
    api._next_check = 0.0
    return True
