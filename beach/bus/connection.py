"""Connecting to NATS and opening beach's JetStream KV buckets."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.errors import ConnectionClosedError, ConnectionDrainingError, NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NoStreamResponseError, ServiceUnavailableError
from nats.js.kv import KeyValue

from beach import loop as beach_loop
from beach.config import Config
from beach.errors import CLOSED, BusError, ClosedError, PayloadTooLarge, PermissionDenied
from beach.security.sealedkv import SealedBucket
from beach.wire import subjects

T = TypeVar("T")

log = logging.getLogger("beach.bus")

ACTORS_BUCKET = "beach_actors"
MEMBERS_BUCKET = "beach_members"  # the actor entries again, keyed by category (`beach.state.directory`)
PLACED_BUCKET = "beach_placed"  # the actor entries again, keyed by node (`beach.state.directory`)
NODES_BUCKET = "beach_nodes"
DESIRED_BUCKET = "beach_desired"
CONNECT_TRIES = 3  # the fewest attempts per server of a first connection
RECONNECT_WAIT = 0.5  # seconds between two attempts on one server
STATE_BUCKET = "beach_state"  # actors' self.state (beach.state.actorstate)
# A server that hangs (paused, cut off) is left for another once this many pings this far apart go
# unanswered: within about 4-6 s, where nats-py's defaults (2 min, 2) would wait minutes.
PING_SECONDS = 2
PINGS_MISSED = 2
JETSTREAM_WAIT = 20.0
READY_PROBE = 0.5  # seconds one "is JetStream there?" request waits
READY_WAIT = 5.0  # seconds those requests are retried before the bucket's own requests (and their errors)
NO_JETSTREAM = ("JetStream is not enabled on the NATS server (nobody answers its API): beach keeps its directory in "
                "JetStream KV; start nats-server with -js")
# A consumer reading a bucket or stream (a watch, a log tail) lives on the server while its subscriber
# is there; once nobody listens (stopped, its process closed or died) the server deletes it after this
# long (nats-py's default is 5 minutes: every CLI run left its watches' consumers behind that long).
CONSUMER_INACTIVE = 5.0
JS_TIMEOUT = 5.0  # seconds a JetStream API call (a bucket's or stream's set-up, a KV write) waits
ELECTION_WAIT = 10.0  # seconds a directory or desired-state write waits for its stream to elect a leader


def failure(err: nats.errors.Error, what: str, reason: str = "") -> BusError:
    """Our exception for nats-py's ``err``: `ClosedError` once the connection is closed or
    draining (its message ending with ``reason``, why it was lost), else `BusError` saying
    ``what`` failed (a full reconnect buffer, a timeout...)."""
    if isinstance(err, (ConnectionClosedError, ConnectionDrainingError)):
        return ClosedError(CLOSED + reason)
    return BusError(f"{what}: {str(err) or type(err).__name__}")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise nats-py's errors from inside the block as ours (see `failure`)."""
    try:
        yield
    except nats.errors.Error as err:
        raise failure(err, what) from None


async def _log_error(err: Exception) -> None:
    log.debug("nats: %s", err)


_REFUSAL = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE)


class Refusals:
    """An ``error_cb`` for nats-py that turns the server's permission violations into calls of
    ``listeners(action, subject, message)`` (action: 'publish' or 'subscription'), so that whoever
    waits on the refused subject hears why at once instead of timing out. nats-py hands the
    server's error over in lower case: ``subject`` is lower case, and ``message`` has a
    ``{subject}`` field for the listener to fill with the subject as it sent it."""

    def __init__(self, user: str | None = None) -> None:
        self.user = user
        self.listeners: list[Callable[[str, str, str], None]] = []
        self._logged: set[tuple[str, str]] = set()

    async def error_cb(self, err: Exception) -> None:
        """nats-py's error callback."""
        found = _REFUSAL.search(str(err))
        if found is None:
            log.debug("nats: %s", err)
            return
        action, subject = found.group(1).lower(), found.group(2)
        who = f"NATS user {self.user!r}" if self.user else "this connection's NATS credentials"
        verb = "publish to" if action == "publish" else "subscribe to"
        message = f"permission denied: {who} may not {verb} '{{subject}}' (the NATS server's authorization refused it)"
        if (action, subject) not in self._logged and len(self._logged) < 1000:
            self._logged.add((action, subject))
            log.warning("%s", message.format(subject=subject))
        for listener in self.listeners:
            listener(action, subject, message)


    async def guard(self, call: Awaitable[T], prefixes: tuple[str, ...]) -> T:
        """Await ``call``; if the server refuses a publish to a subject under one of ``prefixes``
        (lower case) meanwhile, cancel it and raise `PermissionDenied` at once (a refused JetStream
        API request is otherwise a timeout, seconds later, that says nothing)."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(call)
        refused: asyncio.Future[str] = loop.create_future()

        def listener(action: str, subject: str, message: str) -> None:
            if action == "publish" and subject.startswith(prefixes) and not refused.done():
                refused.set_result(message.format(subject=subject))

        self.listeners.append(listener)
        try:
            waiting: set[asyncio.Future[Any]] = {task, refused}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                raise PermissionDenied(refused.result())
            return task.result()
        finally:
            self.listeners.remove(listener)
            if not refused.done():
                refused.cancel()


class BusClient(Client):
    """nats-py's client, refusing what would make a NATS server close the connection for good:
    a protocol line over the server's ``max_control_line`` (`subjects.check_line`: `UsageError`)
    and a message over its ``max_payload`` (`PayloadTooLarge`), each before anything is sent. One
    bad name must cost its caller an error, never the whole process its connection.

    It also knows whether its close was asked for (`bus.close` sets ``closing``): a close that was
    not is the server's doing (a protocol error, an authorization revoked, a kick), for good."""

    closing = False

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        """nats-py's publish, after the checks of the class docs."""
        subjects.check_line(subject, reply)
        limit = self.max_payload
        size = len(payload)
        if headers:
            size += sum(len(k) + len(v) + 4 for k, v in headers.items()) + 12  # NATS/1.0 and CRLFs
        if limit and size > limit:
            raise PayloadTooLarge(size, limit, f"a message to {subjects.shown(subject)}")
        await super().publish(subject, payload, reply, headers)

    async def subscribe(self, subject: str, queue: str = "", *args: Any, **kwargs: Any) -> Any:
        """nats-py's subscribe, after the line check of the class docs."""
        subjects.check_line(subject, queue, "subscribe to")
        return await super().subscribe(subject, queue, *args, **kwargs)


def lost_reason(nc: Client) -> str:
    """Why the server closed ``nc``, in words (its last error, as nats-py kept it)."""
    err = nc.last_error
    text = str(err or "").removeprefix("nats: ").strip("' ")
    return text or (type(err).__name__ if err is not None else "no reason given")


def lost_suffix(nc: Client) -> str:
    """What to add to `CLOSED` when ``nc`` was closed for good by the server rather than by us:
    ``": the NATS server closed it for good (<reason>)"``, else ``""``. (Known as soon as nats-py
    closes it: before its ``closed_cb`` has run.)"""
    if not nc.is_closed or getattr(nc, "closing", True):
        return ""
    return f": the NATS server closed it for good ({lost_reason(nc)})"


async def connect(config: Config, name: str, on_lost: Callable[[str], None] | None = None,
                  wait: float | None = None, **options: Any) -> Client:
    """Connect to the NATS servers the config names (the local node's server first, when the node
    runs one); raise `BusError` if none answers within ``wait`` seconds (default: the config's
    ``nats.connect_wait``, 5 s).

    A process started with its node (a script, the node's own hosts) finds no server for a moment:
    the first connection is retried for that long, then fails with a clear error (a dead server
    must not hang the caller); once connected, the client reconnects for ever. A connection the
    server closes for good (nats-py does not reconnect after a protocol error) is logged, with the
    server's reason, and ``on_lost(reason)`` is called: the process must not stay alive but deaf.
    """
    urls = config.nats.urls
    auth: dict[str, Any] = {}
    if config.nats.user:
        auth.update(user=config.nats.user, password=config.nats.password)
    if config.nats.token:
        auth["token"] = config.nats.token
    if config.nats.credentials:
        auth["user_credentials"] = config.nats.credentials
    if config.nats.inbox_prefix:
        auth["inbox_prefix"] = config.nats.inbox_prefix
    if config.nats.tls:
        from beach.security.certs import client_context  # cryptography-free, but only TLS users need it loaded

        tls = config.nats.tls
        auth["tls"] = client_context(tls.get("ca"), tls.get("cert"), tls.get("key"))
    wait = config.nats.connect_wait if wait is None else wait
    # Each server is tried every RECONNECT_WAIT seconds until the wait is over: nats-py counts the
    # attempts per server, so the wait becomes a number of attempts. flush_timeout: a full
    # outgoing buffer to a server that stopped reading must not block a publish for ever (nats-py
    # waits without limit by default). The local server first: a node's processes and the scripts
    # on its machine stay on their own server while it lives (nats-py shuffles the list otherwise).
    attempts = max(CONNECT_TRIES, math.ceil(wait / RECONNECT_WAIT))
    params: dict[str, Any] = dict(name=name, connect_timeout=2, reconnect_time_wait=RECONNECT_WAIT, flush_timeout=2,
                                  max_reconnect_attempts=attempts - 1, error_cb=_log_error,
                                  ping_interval=PING_SECONDS, max_outstanding_pings=PINGS_MISSED,
                                  dont_randomize=config.nats.embedded)
    params.update(auth)
    params.update(options)
    nc = BusClient()

    async def closed() -> None:
        if nc.closing:
            return
        reason = lost_reason(nc)
        log.info("%s: the NATS server closed the connection for good: %s", name, reason)
        if on_lost is not None:
            on_lost(reason)

    params["closed_cb"] = closed
    try:
        await nc.connect(urls, **params)
    except Exception as err:
        hint = ""
        if config.nats.embedded:
            hint = (" (is the node running? with no nats.servers in the config, each node runs its own server "
                    "and the processes of its machine connect to that one first)")
        elif config.seed_nodes:
            hint = (f" (the config's seed_nodes {config.seed_nodes} are read as NATS servers: in this version "
                    f"beach nodes meet through NATS, so name NATS servers there or in nats.servers, or remove "
                    f"them to use the embedded server)")
        raise BusError(f"cannot connect to NATS at {', '.join(urls)} (tried for {wait:g}s): "
                       f"{err or type(err).__name__}{hint}") from None
    nc.options["max_reconnect_attempts"] = -1
    return nc


async def close(nc: Client, timeout: float = 5.0) -> None:
    """Drain ``nc`` if it is connected, then close it; never raises, never hangs.

    nats-py on Python 3.11 can lose the cancellation of its reconnect loop (``asyncio.wait_for``
    swallows a cancel when the refused connect has already failed), which then retries a dead
    server for ever and keeps ``asyncio.run`` from returning. Bounding the attempts first makes
    such a loop end on its own.
    """
    if isinstance(nc, BusClient):
        nc.closing = True
    nc.options["max_reconnect_attempts"] = 1
    if nc.is_connected:
        try:
            await beach_loop.within(nc.drain(), timeout)
        except Exception:  # a drain that fails or overruns still ends in a close
            pass
    if not nc.is_closed:
        try:
            await beach_loop.within(nc.close(), timeout)
        except Exception:  # the server went away under us: nothing is left to flush
            pass
    reconnecting = nc._reconnection_task  # private, but the only handle on the loop above
    if reconnecting is not None and not reconnecting.done():
        await asyncio.wait({reconnecting}, timeout=timeout)


async def through_election(write: Callable[[], Awaitable[T]], wait: float = ELECTION_WAIT,
                           refused: Callable[[], str | None] = lambda: None) -> T:
    """``await write()`` (a JetStream write), again while the stream it writes to has no leader —
    nobody answers it (`NoStreamResponseError`), or JetStream is "temporarily unavailable" — for up
    to ``wait`` seconds: a server lost with the leaders it held is replaced within an election, and
    a write refused meanwhile was not made, so it is safe to make again. Then raises as ``write``;
    or at once `BusError` with ``refused()``'s reason when it gives one (a node said JetStream has
    lost its quorum: no election will come)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await write()
        except (NoStreamResponseError, ServiceUnavailableError):
            reason = refused()
            if reason:
                raise BusError(reason) from None
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.25)


async def jetstream_ready(nc: Client, deadline: float) -> None:
    """Wait until JetStream answers (a new cluster elects its leader first: an API request made
    before that is lost, and would only time out); raise `BusError` if JetStream is not enabled,
    or return at ``deadline`` (loop time) and let the caller's own request say what is wrong."""
    js = nc.jetstream(timeout=READY_PROBE)
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            await js.account_info()
            return
        except NoRespondersError as err:
            if not getattr(err, "err_code", None):  # nobody serves the JetStream API at all
                raise BusError(NO_JETSTREAM) from None
        except Exception:  # not ready yet (no leader), or busy: ask again
            pass
        await asyncio.sleep(0.1)


async def open_bucket(js: JetStreamContext, bucket: str, replicas: int, atomic: bool = False,
                      **params: Any) -> KeyValue:
    """Bind to a KV bucket, creating it if it does not exist yet (several processes may race).

    ``atomic``: the bucket takes atomic batch publishes and direct gets (its stream's
    ``allow_atomic`` and ``allow_direct``, set on a bucket made without them too). A fresh cluster
    may not have elected its JetStream leader yet: creation is retried for up to `JETSTREAM_WAIT`
    seconds before it fails with `BusError`.
    """
    now = asyncio.get_running_loop().time()
    deadline = now + JETSTREAM_WAIT
    await jetstream_ready(js._nc, now + READY_WAIT)
    problem: Exception
    while True:
        try:
            kv = await js.key_value(bucket)
            if atomic:
                await _allow_atomic_and_direct(js, bucket)
            return kv
        except (NoRespondersError, ServiceUnavailableError) as err:
            if not getattr(err, "err_code", None):  # nobody serves the JetStream API at all
                raise BusError(NO_JETSTREAM) from None
            problem = err  # JetStream is there but not ready yet (a new cluster electing its leader)
        except BucketNotFoundError:
            try:
                if atomic:
                    params.setdefault("direct", True)
                kv = await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, replicas=replicas,
                                                              storage=StorageType.FILE, **params))
                if atomic:
                    await _allow_atomic_and_direct(js, bucket)
                return kv
            except Exception as err:  # another process created it first, or JetStream is not ready
                problem = err
        except Exception as err:  # JetStream not (yet) available
            problem = err
        if asyncio.get_running_loop().time() > deadline:
            raise BusError(f"cannot open the JetStream KV bucket {bucket!r} with {replicas} replica(s): "
                           f"{problem} (is JetStream enabled on the NATS servers? a bucket with 3 replicas "
                           f"needs 3 JetStream servers; set nats.kv_replicas to choose)")
        await asyncio.sleep(0.25)


def exposed(nc: Client) -> str | None:
    """Where the NATS server ``nc`` is connected to (or another of its cluster) listens beyond
    loopback, as its INFO tells (``0.0.0.0`` included: every interface), or None for loopback only."""
    info = nc._server_info or {}
    url = nc.connected_url
    for where in [info.get("host"), *(info.get("connect_urls") or []), url.hostname if url else None]:
        if not isinstance(where, str) or not where:
            continue
        host = where.rsplit(":", 1)[0] if where.count(":") == 1 else where
        host = host.strip("[]")
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            if host == "localhost":
                continue
        return where
    return None


async def _allow_atomic_and_direct(js: JetStreamContext, bucket: str) -> None:
    """Let the stream of ``bucket`` take atomic batches (nats-py's KV config has no such option)
    and direct gets (reads any server of the stream answers, by subject)."""
    info = await js.stream_info(f"KV_{bucket}")
    if not info.config.allow_atomic or not info.config.allow_direct:
        config = info.config
        config.allow_atomic = config.allow_direct = True
        await js.update_stream(config)


def auto_replicas(nc: Client) -> int:
    """3 replicas when the server is part of a cluster of at least 3, else 1."""
    info = nc._server_info or {}
    if info.get("cluster") and len(info.get("connect_urls") or []) >= 3:
        return 3
    return 1


async def open_buckets(nc: Client, config: Config) -> tuple[KeyValue, KeyValue]:
    """Open (or create) the actor and node directory buckets: ``(actors, nodes)``."""
    js = nc.jetstream(timeout=JS_TIMEOUT)
    replicas = config.nats.kv_replicas or auto_replicas(nc)
    actors = await open_bucket(js, ACTORS_BUCKET, replicas)
    # Node entries carry a per-message TTL, so a dead node's entry expires on its own and
    # watchers see a PURGE marker (needs limit_marker_ttl on the bucket).
    nodes = await open_bucket(js, NODES_BUCKET, replicas, limit_marker_ttl=1)
    return sealed(actors, config), sealed(nodes, config)


async def open_indexes(nc: Client, config: Config) -> tuple[KeyValue, KeyValue]:
    """Open (or create) the buckets where node processes write each actor's entry again, with its
    own: ``(members, placed)`` — under each of its categories (`beach.wire.subjects.member_key`),
    which an actor host watches by category, and under its node (`beach.wire.subjects.placed_key`),
    which a node agent watches for its own node's actors (`beach.state.directory.DirectoryView`)."""
    replicas = config.nats.kv_replicas or auto_replicas(nc)
    js = nc.jetstream(timeout=JS_TIMEOUT)
    members = await open_bucket(js, MEMBERS_BUCKET, replicas)
    placed = await open_bucket(js, PLACED_BUCKET, replicas)
    return sealed(members, config), sealed(placed, config)


async def open_desired(nc: Client, config: Config) -> KeyValue:
    """Open (or create) the persistent desired-state bucket (supervision, patrol, lease)."""
    replicas = config.nats.kv_replicas or auto_replicas(nc)
    kv = await open_bucket(nc.jetstream(timeout=JS_TIMEOUT), DESIRED_BUCKET, replicas)
    return sealed(kv, config)


ATOMIC_BATCHES = (2, 12)  # the first nats-server release with atomic batch publishes (ADR-50)


async def open_state(nc: Client, config: Config) -> KeyValue:
    """Open (or create) the actor state bucket: atomic batches allowed (a turn commits all its keys
    and its request record at once), values sealed like every other. Raises `BusError` on a
    server older than 2.12 (it would store a batch's messages one by one, not all or none)."""
    version = nc.connected_server_version
    if (version.major, version.minor) < ATOMIC_BATCHES:
        running = (nc._server_info or {}).get("version", "?")
        raise BusError(f"actor state needs nats-server 2.12 or later (atomic batch publishes); the server "
                       f"this process is connected to runs {running}")
    replicas = config.nats.kv_replicas or auto_replicas(nc)
    kv = await open_bucket(nc.jetstream(timeout=JS_TIMEOUT), STATE_BUCKET, replicas, atomic=True)
    return sealed(kv, config)


def sealed(kv: KeyValue, config: Config) -> KeyValue:
    """``kv`` with its values sealed when the config has a ``private_key`` (else ``kv`` itself)."""
    sealer = config.sealer
    # SealedBucket offers KeyValue's API: typed as one so that its users need not know
    return kv if sealer is None else SealedBucket(kv, sealer)  # type: ignore[return-value]
