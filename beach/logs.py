"""Cluster-wide logs: every actor's log lines (and beach's own warnings) on NATS, kept in a bounded
JetStream stream, readable from any machine.

Subjects (everything under ``beach.log.>`` is kept by the stream ``beach_logs``)::

    beach.log.app.<realm>.<uid>     what an actor logs: Actor.log / logCritical and its own
                                    ``logging`` records (the actor running is known from a context
                                    variable the host sets around its code)
    beach.log.sys.<node>.<process>  beach's own warnings and errors (node agents, actor hosts)

A line is a msgpack map: ``v`` (format), ``t`` (time), ``level``, ``levelno``, ``kind`` (``app`` or
``sys``), ``realm``, ``uid``, ``actor`` (class), ``categories``, ``node``, ``host``, ``logger``,
``msg``, and ``req``: the id of the request being served when the line was logged (None outside a
request; the context variable `current_request`, which the actor host sets around a handler), and
``trace``: the W3C trace id of the code that logged it (the request's trace, or the application's
own span; None outside any). The
stream's age and size limits come from the config's ``logs:`` section.

``beach logs --request ID`` reads the lines of one request: every actor that served that id (each
retry, every actor of a broadcast or ``requestFromAll``), on every node. The id travels inside the
(possibly sealed) line, not in its subject, so the reader scans the lines its subject filter and
``--since`` select and keeps those of the id (`accept`): the server is spared a subject per request
in its index, and sealed lines, which the server cannot read, are found the same way.

A log flood must never slow the request path: `ClusterLogHandler.emit` only formats the line and
appends it to a bounded queue; one task publishes (plain NATS publishes, the server stores them).
Past ``logs.rate`` lines a second per actor (with a burst of ``logs.burst``) lines are dropped and
counted, and a line saying how many were dropped follows once the flood stops.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from beach import tracing, wire
from beach.bus.connection import CONSUMER_INACTIVE, JS_TIMEOUT
from beach.config import Config
from beach.errors import BusError
from beach.security.seal import Sealer, stored
from beach.wire import subjects

STREAM = "beach_logs"
SUBJECTS = "beach.log.>"
FORMAT = 1
QUEUE_LIMIT = 10_000  # lines waiting to be published; past it they are dropped (and counted)

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
          "critical": logging.CRITICAL}


@dataclass
class Source:
    """Who is logging: an actor (``kind='app'``) or a beach process (``kind='sys'``)."""

    kind: str
    node: str
    host: str
    realm: str = ""
    uid: str = ""
    actor: str = ""
    categories: list[str] = field(default_factory=list)
    dropped: int = 0  # lines lost to the rate limit or a full queue, in total
    _tokens: float = 0.0
    _refilled: float = 0.0
    _unreported: int = 0

    @property
    def subject(self) -> str:
        """The subject this source's lines go to."""
        if self.kind == "app":
            return f"beach.log.app.{subjects.escape(self.realm)}.{subjects.escape(self.uid)}"
        return f"beach.log.sys.{subjects.escape(self.node)}.{subjects.escape(self.host)}"

    def take(self, rate: float, burst: int) -> bool:
        """Spend one token of this source's bucket; False (and counted) when it is empty."""
        now = time.monotonic()
        self._tokens = min(float(burst), self._tokens + (now - self._refilled) * rate) if self._refilled else burst
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.dropped += 1
        self._unreported += 1
        return False


# The actor whose code runs now (set by the actor host around handlers, hooks and timers): its
# plain `logging` calls are attributed to it.
current_source: contextvars.ContextVar[Source | None] = contextvars.ContextVar("beach_log_source", default=None)

# The request being served now (its id; set by the actor host around its handler): a line logged
# while serving it carries it.
current_request: contextvars.ContextVar[str | None] = contextvars.ContextVar("beach_request", default=None)


UID = re.compile(r"[0-9a-f]{32}")
"""What an actor uid looks like (to tell one from a category, where either may be given)."""


def accept(level: int = 0, category: str | None = None, uid_prefix: str | None = None,
           request: str | None = None) -> Callable[[LogLine], bool]:
    """A filter of log lines: at ``level`` or above, of an actor under ``category`` (normalized),
    of an actor whose uid starts with ``uid_prefix``, logged while serving a request whose id starts
    with ``request`` (the 8 characters `format_line` shows will do) or in a trace whose id does, if
    given."""
    def accepted(line: LogLine) -> bool:
        if line.levelno < level:
            return False
        if request is not None and not ((line.req or "").startswith(request)
                                        or (line.trace or "").startswith(request)):
            return False
        if uid_prefix and not line.uid.startswith(uid_prefix):
            return False
        return not category or any(subjects.matches(c, category) for c in line.categories)

    return accepted


def subject_filter(kind: str = "app", realm: str | None = None, uid: str | None = None) -> str:
    """The stream subject that selects ``kind`` lines, of ``realm`` and/or actor ``uid`` if given."""
    if kind == "sys":
        return "beach.log.sys.>"
    realm_token = subjects.escape(realm) if realm else "*"
    return f"beach.log.app.{realm_token}.{subjects.escape(uid) if uid else '*'}"


class LogLine(msgspec.Struct, kw_only=True):
    """A log line as it travels (the stream ``beach_logs``): when, its level, who logged it (an
    actor: its realm, class, uid and categories; a beach process: its node and host), the message,
    and the request being served when it was logged (its id ``req`` and W3C trace id ``trace``)."""

    v: int = FORMAT
    t: float
    level: str = "?"
    levelno: int
    kind: str = "app"
    realm: str = ""
    uid: str = ""
    actor: str = ""
    categories: list[str] = []
    node: str = ""
    host: str = ""
    logger: str = ""
    msg: str
    req: str | None = None
    trace: str | None = None


def record(source: Source, levelno: int, msg: str, logger: str, created: float | None = None,
           request: str | None = None, trace: str | None = None) -> LogLine:
    """A log line as it goes on the wire (``request``: the id of the request being served)."""
    return LogLine(t=time.time() if created is None else created, level=logging.getLevelName(levelno),
                   levelno=levelno, kind=source.kind, realm=source.realm, uid=source.uid, actor=source.actor,
                   categories=list(source.categories), node=source.node, host=source.host, logger=logger, msg=msg,
                   req=request, trace=trace)


from_msg = stored(LogLine)
"""The log line a message (live or from the stream) carries, or None if it is not one."""


class ClusterLogHandler(logging.Handler):
    """A `logging` handler that sends lines to the cluster over a NATS connection.

    ``system`` is the source for lines logged outside actor code; only WARNING and above of those
    go out (beach's own INFO lines stay on the process's stderr).
    """

    def __init__(self, system: Source, rate: float, burst: int) -> None:
        super().__init__(logging.DEBUG)
        self.system = system
        self.rate = rate
        self.burst = burst
        self._queue: deque[tuple[str, bytes]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Client | None = None
        self._sealer: Sealer | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._task: asyncio.Task[None] | None = None
        self._emitting = threading.local()
        self._flooding: dict[int, Source] = {}  # sources with dropped lines not reported yet
        self.sent = 0

    def start(self, nc: Client, sealer: Sealer | None = None) -> None:
        """Start publishing over ``nc`` (call on its event loop), sealing lines with ``sealer``."""
        self._nc = nc
        self._sealer = sealer
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._publish())

    async def stop(self) -> None:
        """Publish what is queued (briefly), then stop."""
        if self._task is None:
            return
        if self._queue and self._wake is not None:
            self._wake.set()
            for _ in range(20):
                if not self._queue:
                    break
                await asyncio.sleep(0.01)
        self._task.cancel()
        try:
            await self._task
        except BaseException:
            pass
        self._task = None

    def emit(self, log_record: logging.LogRecord) -> None:
        if getattr(self._emitting, "active", False):  # a line logged while sending one: drop it
            return
        source = getattr(log_record, "beach_source", None) or current_source.get()
        if source is None:
            if log_record.levelno < logging.WARNING:
                return
            source = self.system
        if log_record.name.startswith("nats") and source is self.system:
            return  # nats-py complaining about the connection these lines would travel on
        self._emitting.active = True
        try:
            if not source.take(self.rate, self.burst):
                self._flooding[id(source)] = source
                return
            self._enqueue(source, log_record.levelno, self.format(log_record), log_record.name, log_record.created,
                          current_request.get(), tracing.current_trace_id())
            self._report_drops(source)
        except Exception:
            self.handleError(log_record)
        finally:
            self._emitting.active = False

    def _report_drops(self, source: Source) -> None:
        if source._unreported:
            lost, source._unreported = source._unreported, 0
            self._flooding.pop(id(source), None)
            self._enqueue(source, logging.WARNING, f"{lost} log lines dropped: over {self.rate:g} lines/s",
                          "beach.logs", None)

    def _enqueue(self, source: Source, levelno: int, msg: str, logger: str, created: float | None,
                 request: str | None = None, trace: str | None = None) -> None:
        if len(self._queue) >= QUEUE_LIMIT or self._loop is None:
            source.dropped += 1
            source._unreported += 1
            return
        self._queue.append((source.subject, wire.pack(record(source, levelno, msg, logger, created, request, trace))))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:  # the loop is closed: the process is ending
                pass

    def _wake_up(self) -> None:
        self._wake_pending = False
        if self._wake is not None:
            self._wake.set()

    async def _publish(self) -> None:
        assert self._wake is not None and self._nc is not None
        while True:
            try:  # a flood that stopped is reported within a second, even if nothing else is logged
                async with asyncio.timeout(1.0 if self._flooding else None):
                    await self._wake.wait()
            except TimeoutError:
                for source in list(self._flooding.values()):
                    if source.take(self.rate, self.burst):
                        self._report_drops(source)
            self._wake.clear()
            while self._queue:
                subject, body = self._queue.popleft()
                if self._sealer is not None:  # here, on the loop, so that emit() stays cheap
                    body = self._sealer.seal(f"{subject} ", body)
                try:
                    await self._nc.publish(subject, body)
                    self.sent += 1
                except nats.errors.Error:  # no bus for now (its buffer is full): the line is lost
                    self.system.dropped += 1


def install(handler: ClusterLogHandler, nc: Client, sealer: Sealer | None = None) -> None:
    """Attach ``handler`` to the root logger and start it publishing over ``nc`` (sealed by ``sealer``)."""
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.start(nc, sealer)
    logging.getLogger().addHandler(handler)


def uninstall(handler: ClusterLogHandler) -> None:
    """Detach ``handler`` from the root logger."""
    logging.getLogger().removeHandler(handler)


async def open_stream(nc: Client, config: Config, replicas: int) -> None:
    """Create the log stream, or bring its limits in line with the config (node agents do this)."""
    js = nc.jetstream(timeout=JS_TIMEOUT)
    stream = StreamConfig(name=STREAM, subjects=[SUBJECTS], max_age=float(config.logs.max_age),
                          max_bytes=int(config.logs.max_bytes), storage=StorageType.FILE,
                          discard=DiscardPolicy.OLD, num_replicas=replicas)
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        try:
            await js.add_stream(stream)
            return
        except nats.errors.Error as err:
            if "already in use" not in str(err):
                raise
    await js.update_stream(stream)


def since_time(text: str | None) -> datetime.datetime | None:
    """``'10m'``, ``'2h'``, ``'30s'``, ``'1d'`` (or plain seconds) ago, as a UTC time; None for None.
    Raises ``ValueError`` naming what it cannot read."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration such as 30s, 10m, 2h or 1d") from None
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)


async def read(nc: Client, filter_subject: str, since: datetime.datetime | None = None, follow: bool = False,
               accept: Callable[[Any], bool] = lambda line: True,
               idle: float = 1.0, sealer: Sealer | None = None, stream: str = STREAM,
               decoder: Callable[[Msg, Sealer | None], Any] = from_msg,
               ) -> AsyncIterator[Any]:
    """The lines of the log stream on ``filter_subject`` from ``since`` (default: all it keeps) that
    ``accept`` takes, oldest first; with ``follow``, then every new one as it comes. Raises
    `BusError` when there is no log stream (no node has started yet). ``stream`` and ``decoder``
    read another stream of records the same way (the audit log)."""
    js = nc.jetstream(timeout=JS_TIMEOUT)
    what = "log stream" if stream == STREAM else f"stream {stream}"
    try:
        await js.stream_info(stream)
    except NotFoundError:
        raise BusError(f"no {what} on this bus yet: no beach node has run here") from None
    except nats.errors.Error as err:
        raise BusError(f"cannot read the {what}: {err or type(err).__name__}") from None
    deliver = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since) \
        if since else ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    sub = await js.subscribe(filter_subject, stream=stream, ordered_consumer=True, config=deliver,
                             inactive_threshold=CONSUMER_INACTIVE)
    task = asyncio.current_task()
    try:
        caught_up = False
        while True:
            if task is not None and task.cancelling():
                # Python 3.11's wait_for (inside next_msg) drops a cancellation that comes as a line
                # does (gh-86296): the cancel was asked, so it ends here (else Ctrl-C did not stop
                # ``beach logs --follow``)
                raise asyncio.CancelledError
            try:
                msg = await sub.next_msg(timeout=idle if not caught_up else 3600)
            except nats.errors.TimeoutError:
                if not follow:
                    return  # nothing more came: history is done
                caught_up = True
                continue
            line = decoder(msg, sealer)
            if line is not None and accept(line):
                yield line
            if not follow and msg.metadata.num_pending == 0:
                return
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # the connection may be closing
            pass


def format_line(line: LogLine) -> str:
    """One log line for a terminal: time, level, where it comes from (the node always: an actor's
    realm/class and uid ``@node``, and ``req`` with the start of the request's id when it was logged
    while serving one; beach's own lines ``node/process``), ``trace`` with the start of its trace
    id when it has one (``beach logs --request`` takes either), the message."""
    when = datetime.datetime.fromtimestamp(line.t).strftime("%Y-%m-%d %H:%M:%S")
    node = line.node or "?"
    if line.kind == "app":
        where = f"{line.realm}/{line.actor} {line.uid[:8]} @{node}"
        if line.req:
            where += f" req {line.req[:8]}"
    else:
        process = line.host[len(node) + 1:] if line.host.startswith(f"{node}-") else line.host  # hosts: <node>-h1
        where = f"{node}/{process}" if process else node
    if line.trace:
        where += f" trace {line.trace[:8]}"
    return f"{when} {line.level:8} {where}  {line.msg}"
