"""Actor state: ``self.state``, a keyed store per realm and category that outlives the actors.

Values live in the JetStream KV bucket ``beach_state`` (`beach.bus.STATE_BUCKET`), one key per
state key (``<realm>.k.<category>.<key>``, see `beach.wire.subjects.state_key`), sealed like every
value. Every actor of a category sees the same keys, so any of them can serve any key: affinity
routing is locality, not correctness.

**Turns.** A request is one turn (`Turn`): its reads see the state as of the turn, its own writes
included; its writes are kept aside until the handler returns, then committed in one atomic batch
(`beach.bus.batch`) together with a record of the request's id holding the reply
(``<realm>.r.<id>``, kept `state.retry_window` seconds) — and only then does the reply go out.
Every key the turn read carries the revision it saw (``Nats-Expected-Last-Subject-Sequence``: a
written key on its own message, a key only read on a check message), so a write by anyone else in
between makes the whole batch fail: nothing applies and the request is answered ``conflict``
(retryable). A retry of a request whose turn committed — the same id, on any actor of any node —
finds its record: the batch fails on it, and the retry is answered with the first reply. A handler
that raises commits nothing.

**Speed.** Each actor host keeps, per category its actors use (`Scope`), an index of the
category's keys and their latest revisions (a headers-only watch, so it follows every other
host's writes) and a cache of the values it read or wrote: a key whose cached revision is the
index's is read without a round trip, and a stale one shows up as a ``conflict``, never as a lost
update. Turns of a host that touch the same key wait for each other's commit rather than
conflicting, and the host's commits go out together (`Committer`: turns with no key in common
share one batch), which is what makes R1 streams (whose batches the server stages on disk) usable.
Nothing here blocks the event loop: the blocking forms, for ``def`` handlers, wait in their worker
thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import nats.errors
from nats.js.errors import NotFoundError

from beach import bus, wire
from beach.bus import batch
from beach.errors import BusError, StateError, UsageError
from beach.security.seal import OVERHEAD
from beach.security.sealedkv import context as seal_context
from beach.wire import subjects

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from beach.client.runner import Runner
    from beach.client.session import Session

T = TypeVar("T")

log = logging.getLogger("beach.state")

KV_OPERATION = "KV-Operation"
DELETE = "DEL"
MSG_SIZE = "Nats-Msg-Size"
HEADER_ROOM = 2048         # bytes of a value's message left for its subject and headers
CLAIM_WAIT = 1.0            # a turn waits at most this long for another turn of its host on a key
CHECK_TTL = "1s"            # a read check's message only has to live through its batch
MAX_INFLIGHT_BATCHES = 2    # a host's batches in flight at once: the next gathers what comes meanwhile
MAX_GROUP_MESSAGES = 500    # under the server's 1000 per batch
MAX_GROUP_BYTES = 4 * 1024 * 1024
INFLIGHT_BACKOFF = 0.02     # the server's limit of batches in flight was reached: wait, send again
MAX_TURN_KEYS = 990         # keys a turn writes at most: one message each in its batch (the server takes 1000)
INSTANT_TRIES = 8           # an update outside a request, retried on conflict this many times
WATCH_INACTIVE = 300.0

# The turn of the request being served (None outside requests: each write commits on its own).
current_turn: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("beach_turn", default=None)


class Turn:
    """One request's reads and writes of actor state. ``req_id`` is the request's id (None for
    writes outside a request, which commit one by one).

    A turn *claims* the keys it reads or writes that no other turn of this process has claimed: a
    turn that holds no claim yet waits (at most `CLAIM_WAIT`) for the claimer of a key it wants to
    finish, so turns of one host on one key run one after another instead of conflicting. Only
    claim-less turns wait, so no two ever wait for each other."""

    __slots__ = ("req_id", "seen", "writes", "ended", "claims", "_finished")

    def __init__(self, req_id: str | None) -> None:
        self.req_id = req_id
        self.seen: dict[tuple[Scope, str], tuple[int, bytes | None]] = {}  # what each key read was
        self.writes: dict[tuple[Scope, str], bytes | None] = {}  # packed value, None: delete
        self.ended = False
        self.claims: list[tuple[Scope, str]] = []
        self._finished: asyncio.Future[None] | None = None

    def claim(self, scope: Scope, token: str) -> Turn | None:
        """Claim ``token`` of ``scope`` unless another turn holds it (then return that turn).
        Safe from a worker thread (one dict operation)."""
        holder = scope.claims.setdefault(token, self)
        if holder is self:
            if not self.claims or self.claims[-1] != (scope, token):
                self.claims.append((scope, token))
            return None
        return holder

    async def finished(self, timeout: float) -> None:
        """Wait until this turn is finished (its claims released), at most ``timeout`` seconds."""
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), timeout)
        except TimeoutError:
            pass

    def finish(self) -> None:
        """Release this turn's claims and wake whoever waits for it (on the loop)."""
        self.ended = True
        for scope, token in self.claims:
            if scope.claims.get(token) is self:
                del scope.claims[token]
        self.claims = []
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def check_open(self) -> None:
        """Raise `StateError` once the turn has ended (its handler returned)."""
        if self.ended:
            raise StateError("the request's turn has ended (its handler returned): state written from a task "
                             "it left running is not part of it; write before returning")

    def new_keys(self, scope: Scope) -> int:
        """How many keys this turn creates in ``scope`` (written, not live there now)."""
        return sum(1 for (s, token), value in self.writes.items()
                   if s is scope and value is not None and not scope.is_live(token))


class Scope:
    """The keys of category ``category`` in ``realm`` as one process sees them: an index of their
    latest revisions (followed by a headers-only watch), the values it read or wrote (with their
    revisions), and the keys whose commit from here is in flight."""

    def __init__(self, store: StateStore, realm: str, category: str) -> None:
        self.store = store
        self.realm = realm
        self.category = category
        self.prefix = subjects.state_scope(realm, category)
        self.revisions: dict[str, tuple[int, int]] = {}  # token → (revision, size); size -1: deleted
        self.cache: dict[str, tuple[int, bytes | None]] = {}
        self.claims: dict[str, Turn] = {}  # the turn of this process working on each key
        self.live = 0
        self.users: set[str] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sub: Any = None
        self._opening: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Scope {self.realm}:{self.category}>"

    # ---------------------------------------------------------------- the index

    def start(self) -> None:
        """Start following the category's keys (in the background; `ready` says when loaded)."""
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        try:
            kv = await self.store.bucket()
            js = self.store.session.nc.jetstream(timeout=bus.JS_TIMEOUT)
            self._subject_prefix = f"$KV.{bus.STATE_BUCKET}.{self.prefix}"
            from nats.js.api import DeliverPolicy

            self._sub = await js.subscribe(f"{self._subject_prefix}*", stream=kv._stream, cb=self._on_index,
                                           ordered_consumer=True, deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                                           headers_only=True, inactive_threshold=WATCH_INACTIVE)
            info = await self._sub.consumer_info()
            if info.num_pending == 0 and self._sub.delivered == 0 and not self.ready.done():
                self.ready.set_result(None)
        except Exception as err:
            if not self.ready.done():
                self.ready.set_exception(BusError(f"cannot follow the state of category {self.category!r}: {err}"))
                self.ready.exception()  # read here: a scope nobody awaits must not log it as lost

    async def _on_index(self, msg: Msg) -> None:
        headers = msg.headers or {}
        meta = msg.metadata
        deleted = headers.get(KV_OPERATION) in (DELETE, "PURGE") or "Nats-Marker-Reason" in headers
        try:
            size = int(headers.get(MSG_SIZE) or 0)
        except ValueError:
            size = 0
        self.apply(msg.subject[len(self._subject_prefix):], meta.sequence.stream, -1 if deleted else size)
        if meta.num_pending == 0 and not self.ready.done():
            self.ready.set_result(None)

    def apply(self, token: str, revision: int, size: int) -> None:
        """Note that key ``token`` is at ``revision`` (``size`` -1: deleted); older news is ignored."""
        current = self.revisions.get(token)
        if current is not None and current[0] >= revision:
            return
        was_live = current is not None and current[1] >= 0
        self.revisions[token] = (revision, size)
        self.live += (size >= 0) - was_live

    def is_live(self, token: str) -> bool:
        """True if the index holds ``token`` as a key with a value."""
        entry = self.revisions.get(token)
        return entry is not None and entry[1] >= 0

    def known(self, token: str) -> tuple[int, bytes | None] | None:
        """``(revision, value)`` of ``token`` without a round trip, when this process knows the
        latest one (the index is loaded and the cache holds the index's revision); else None."""
        if not self.ready.done():
            return None
        entry = self.revisions.get(token)
        if entry is None:
            return 0, None  # never written (a deleted key keeps its revision in the index)
        cached = self.cache.get(token)
        if cached is not None and cached[0] == entry[0]:
            return cached
        if entry[1] < 0:
            return entry[0], None
        return None

    async def fetch(self, token: str) -> tuple[int, bytes | None]:
        """``(revision, value)`` of ``token``, read from the stream's leader (and cached)."""
        revision, value = await self.store.fetch(subjects.state_key(self.prefix, token))
        self.cache[token] = (revision, value)
        if revision:
            self.apply(token, revision, -1 if value is None else len(value))
        return revision, value

    def keys(self, prefix: str) -> list[str]:
        """The live keys' tokens that start with ``prefix`` (a token)."""
        return [t for t, (_, size) in self.revisions.items() if size >= 0 and t.startswith(prefix)]

    async def close(self) -> None:
        """Stop following (pending commits finish on their own)."""
        if self._opening is not None:
            self._opening.cancel()
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection may be gone
                pass
            self._sub = None


class Pending:
    """A turn on its way to the bus: its messages, every subject they write or check, and the
    future of its outcome (`Committer`)."""

    __slots__ = ("messages", "subjects", "size", "solo", "future")

    def __init__(self, messages: list[batch.Message], subjects_: set[str]) -> None:
        self.messages = messages
        self.subjects = subjects_
        self.size = sum(len(p) + len(s) + 128 for s, p, _ in messages)
        self.solo = False
        self.future: asyncio.Future[int | BaseException] = asyncio.get_running_loop().create_future()


class Committer:
    """Group commit: the pending turns of one process, sent as few atomic batches as they can be —
    turns that write or check no subject in common share a batch. A batch that fails is split, each
    turn sent alone, so only the turn that really conflicts fails."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.queue: deque[Pending] = deque()
        self.inflight = 0
        self._kick_soon = False
        self.batches = 0
        self.turns = 0

    def submit(self, pending: Pending) -> None:
        """Queue ``pending``; its future gets the stream sequence of its first message, or the
        exception that failed it."""
        self.queue.append(pending)
        if not self._kick_soon:
            # on the loop's next round, after the turns woken with this one have queued theirs
            self._kick_soon = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._kick_soon = False
        while self.queue and self.inflight < MAX_INFLIGHT_BATCHES:
            group = self._take()
            self.inflight += 1
            asyncio.get_running_loop().create_task(self._send(group))

    def _take(self) -> list[Pending]:
        """The next batch: the oldest pending turn, and the later ones that fit beside it (no
        subject in common, within the size limits) up to the next that must go alone."""
        first = self.queue.popleft()
        group = [first]
        kept: deque[Pending] = deque()
        if not first.solo:
            taken, count, size = set(first.subjects), len(first.messages), first.size
            while self.queue:
                pending = self.queue.popleft()
                if pending.solo:
                    kept.append(pending)
                    break
                if (count + len(pending.messages) > MAX_GROUP_MESSAGES or size + pending.size > MAX_GROUP_BYTES
                        or not taken.isdisjoint(pending.subjects)):
                    kept.append(pending)
                    continue
                group.append(pending)
                taken |= pending.subjects
                count += len(pending.messages)
                size += pending.size
        kept.extend(self.queue)
        self.queue = kept
        return group

    async def _send(self, group: list[Pending]) -> None:
        messages = [m for pending in group for m in pending.messages]
        try:
            ack = await batch.publish(self.store.session.nc, messages, bus.JS_TIMEOUT)
        except batch.BatchRefused as err:
            if err.err_code == batch.TOO_MANY_INFLIGHT:
                await asyncio.sleep(INFLIGHT_BACKOFF)
                self.queue.extendleft(reversed(group))
            elif len(group) > 1:  # one of them is refused: send each alone to find which
                for pending in group:
                    pending.solo = True
                self.queue.extendleft(reversed(group))
            else:
                group[0].future.set_result(err)
        except Exception as err:  # BatchUnknown, a closed connection: the outcome is unknown
            for pending in group:
                pending.future.set_result(err)
        else:
            self.batches += 1
            self.turns += len(group)
            sequence = ack["seq"] - len(messages) + 1
            for pending in group:
                pending.future.set_result(sequence)
                sequence += len(pending.messages)
        finally:
            self.inflight -= 1
            self._kick()


class StateStore:
    """The actor state of one process (an actor host; a node agent for admin writes): the bucket,
    a `Scope` per category in use, and the `Committer`. Opens the bucket on first use."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.config = session.config.state
        self.scopes: dict[tuple[str, str], Scope] = {}
        self.committer = Committer(self)
        self._kv: Any = None
        self._opening: asyncio.Lock | None = None
        self.conflicts = 0

    async def bucket(self) -> Any:
        """The state bucket (opened, or created, on first use). Raises `BusError`."""
        if self._kv is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._kv is None:
                    self._kv = await bus.open_state(self.session.nc, self.session.config)
        return self._kv

    @property
    def max_value(self) -> int:
        """The largest encoded value a key may hold: the config's limit, or less where the
        server's max_payload leaves less room once sealed and with its headers."""
        room = (self.session.nc.max_payload or 1024 * 1024) - HEADER_ROOM
        if self.session.sealer is not None:
            room -= OVERHEAD
        return min(self.config.max_value_bytes, room)

    # ---------------------------------------------------------------- scopes

    def scope(self, realm: str, category: str, user: str) -> Scope:
        """The scope of ``category`` in ``realm`` (started if new), used by ``user`` (an actor uid)."""
        key = (realm, subjects.normalize(category))
        scope = self.scopes.get(key)
        if scope is None:
            scope = self.scopes[key] = Scope(self, realm, key[1])
            scope.start()
        scope.users.add(user)
        return scope

    async def release(self, user: str) -> None:
        """``user`` (an actor that stopped) no longer uses any scope; close those nobody uses."""
        for key, scope in list(self.scopes.items()):
            scope.users.discard(user)
            if not scope.users:
                del self.scopes[key]
                await scope.close()

    # ---------------------------------------------------------------- values on the bus

    def seal(self, kv_key: str, packed: bytes) -> bytes:
        """``packed`` as it is stored under ``kv_key`` (sealed when the cluster has a key)."""
        sealer = self.session.sealer
        return packed if sealer is None else sealer.seal(seal_context(bus.STATE_BUCKET, kv_key), packed)

    def open(self, kv_key: str, stored: bytes) -> bytes:
        """A stored value opened; raises `StateError` for one that does not open."""
        sealer = self.session.sealer
        if sealer is None:
            return stored
        try:
            return sealer.open(seal_context(bus.STATE_BUCKET, kv_key), stored, fresh=False)
        except Exception as err:
            raise StateError(f"the stored value of state key {kv_key!r} does not open ({err}): written "
                             f"without the cluster's key, or tampered with") from None

    async def fetch(self, kv_key: str) -> tuple[int, bytes | None]:
        """``(revision, value)`` of ``kv_key`` from the stream's leader (a direct get may be a
        follower's, behind it): ``(0, None)`` if it was never written, value None if deleted."""
        kv = await self.bucket()
        js = self.session.nc.jetstream(timeout=bus.JS_TIMEOUT)
        try:
            msg = await js.get_msg(kv._stream, subject=f"$KV.{bus.STATE_BUCKET}.{kv_key}", direct=False)
        except NotFoundError:
            return 0, None
        except nats.errors.Error as err:
            raise bus.failure(err, f"cannot read state key {kv_key!r}") from None
        headers = msg.headers or {}
        if headers.get(KV_OPERATION) in (DELETE, "PURGE") or not msg.data:
            return int(msg.seq or 0), None
        return int(msg.seq or 0), self.open(kv_key, msg.data)

    # ---------------------------------------------------------------- turns

    async def read(self, turn: Turn, scope: Scope, token: str) -> bytes | None:
        """The packed value of ``token`` as ``turn`` sees it (its own write, or what it read before,
        or the latest known), recorded as read with its revision."""
        if (scope, token) in turn.writes:
            return turn.writes[(scope, token)]
        seen = turn.seen.get((scope, token))
        if seen is not None:
            return seen[1]
        holder = turn.claim(scope, token)
        if holder is not None and not turn.claims:  # another turn of this host is on it: its result is the latest
            await holder.finished(CLAIM_WAIT)
            turn.claim(scope, token)
        await scope.ready
        found = scope.known(token)
        if found is None:
            found = await scope.fetch(token)
        turn.seen[(scope, token)] = found
        return found[1]

    def read_known(self, turn: Turn, scope: Scope, token: str) -> tuple[bool, bytes | None]:
        """`read` without a round trip or a wait, from any thread: ``(True, value)``, or ``(False,
        None)`` when it would need one (then call `read` on the loop)."""
        if (scope, token) in turn.writes:
            return True, turn.writes[(scope, token)]
        seen = turn.seen.get((scope, token))
        if seen is not None:
            return True, seen[1]
        if turn.claim(scope, token) is not None and not turn.claims:
            return False, None  # to wait for the other turn: on the loop
        found = scope.known(token)
        if found is None:
            return False, None
        turn.seen[(scope, token)] = found
        return True, found[1]

    def write(self, turn: Turn, scope: Scope, token: str, packed: bytes | None) -> None:
        """Stage a write (``packed`` None: a delete) in ``turn``; raise `StateError` for a value
        over the size limit or a new key past the category's cap."""
        subjects.state_key(scope.prefix, token)  # too long: refused now, not at the commit
        if (scope, token) not in turn.writes and len(turn.writes) >= MAX_TURN_KEYS:
            raise StateError(f"a turn writes at most {MAX_TURN_KEYS} keys (it commits as one batch of the "
                             f"server's): split the work over several requests")
        if packed is not None:
            limit = self.max_value
            if len(packed) > limit:
                raise StateError(f"the value of state key {subjects.unescape(token)!r} is {len(packed)} bytes "
                                 f"encoded, over the limit of {limit} (state.max_value_bytes, and the bus's "
                                 f"max_payload)")
            if scope.ready.done() and not scope.is_live(token) and (scope, token) not in turn.writes:
                self.check_cap(turn, scope, 1)
        turn.writes[(scope, token)] = packed

    def check_cap(self, turn: Turn, scope: Scope, adding: int) -> None:
        """Raise `StateError` if ``turn`` would take ``scope`` past ``state.max_keys`` keys."""
        if scope.live + turn.new_keys(scope) + adding > self.config.max_keys:
            raise StateError(f"category {scope.category!r} of realm {scope.realm!r} holds {scope.live} state "
                             f"keys, its cap (state.max_keys = {self.config.max_keys}): delete keys, or raise "
                             f"the cap in the config")

    async def commit(self, turn: Turn, reply: wire.Reply | None) -> wire.Reply | None:
        """Commit ``turn`` (its writes, checks of the keys it only read, and, for a request, the
        record of its id holding ``reply``), then return the reply to send: ``reply`` itself, the
        first reply of a request that committed before (a retry), or a failure (``conflict``;
        ``bus unavailable`` when the outcome is unknown, also retryable). The turn is finished
        after it, whatever happened."""
        turn.ended = True
        try:
            return await self._commit(turn, reply)
        finally:
            turn.finish()

    async def _commit(self, turn: Turn, reply: wire.Reply | None) -> wire.Reply | None:
        if not turn.writes:
            return reply
        scopes = {scope for scope, _ in turn.writes}
        for scope in scopes:
            await scope.ready
            if turn.new_keys(scope):
                try:
                    self.check_cap(turn, scope, 0)
                except StateError as err:  # (set() checks it too, once the index is loaded)
                    return wire.Reply(False, wire.EXCEPTION, {"st": f"StateError: {err}"})
        messages, written = self._messages(turn, reply)
        if len(messages) > batch.MAX_MESSAGES:
            return wire.Reply(False, wire.EXCEPTION, {"st": f"StateError: this turn wrote {len(written)} keys and "
                                                            f"read {len(turn.seen)}: more than one batch holds "
                                                            f"({batch.MAX_MESSAGES} messages)"})
        pending = Pending(messages, {m[0] for m in messages} | {m[2].get(
            batch.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT, "") for m in messages} - {""})
        for scope, token in written:  # until it is committed, its result is what the next turn must read
            turn.claim(scope, token)
        self.committer.submit(pending)
        outcome = await asyncio.shield(pending.future)
        if isinstance(outcome, int):
            self._committed(turn, written, outcome)
            return reply
        if isinstance(outcome, batch.BatchRefused) and outcome.err_code in batch.CONFLICTS:
            first = await self._first_reply(turn)
            if first is not None:
                return first
            self.conflicts += 1
            self._forget(turn)
            return wire.Reply(False, wire.CONFLICT, {"keys": sorted({subjects.unescape(t) for _, t in
                                                                      (*turn.seen, *turn.writes)})})
        self._forget(turn)
        return wire.Reply(False, f"{wire.BUS_UNAVAILABLE}: the state commit failed: {outcome}", {})

    def _messages(self, turn: Turn, reply: wire.Reply | None) -> tuple[list[batch.Message], list[tuple[Scope, str]]]:
        messages: list[batch.Message] = []
        written: list[tuple[Scope, str]] = []
        realm = next(iter(turn.writes))[0].realm
        state = f"$KV.{bus.STATE_BUCKET}."
        for (scope, token), packed in turn.writes.items():
            kv_key = subjects.state_key(scope.prefix, token)
            headers: dict[str, str] = {}
            seen = turn.seen.get((scope, token))
            if seen is not None:  # read, then written: only over the revision it read
                headers[batch.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(seen[0])
            if packed is None:
                headers[KV_OPERATION] = DELETE
            messages.append((state + kv_key, b"" if packed is None else self.seal(kv_key, packed), headers))
            written.append((scope, token))
        req_id = turn.req_id
        checks = subjects.read_check_key(realm, req_id or f"_{id(turn):x}{time.monotonic_ns():x}")
        for (scope, token), (revision, _) in turn.seen.items():
            if (scope, token) not in turn.writes:  # read only: checked on a short-lived message
                messages.append((state + checks, b"", {
                    batch.EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision),
                    batch.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: state + subjects.state_key(scope.prefix, token),
                    batch.TTL: CHECK_TTL}))
        if req_id is not None:
            record_key = subjects.request_record_key(realm, req_id)
            messages.append((state + record_key, self.seal(record_key, self._record(reply)), {
                batch.EXPECTED_LAST_SUBJECT_SEQUENCE: "0",
                batch.TTL: f"{max(1, round(self.config.retry_window))}s"}))
        return messages, written

    def _record(self, reply: wire.Reply | None) -> bytes:
        """What a request's record holds: its reply (for its retries), if it fits."""
        if reply is None:
            return wire.pack_reply(True, "", None)
        packed = wire.pack_reply(*reply)
        if len(packed) > self.max_value:
            return wire.pack_reply(False, f"this request was applied; its reply ({len(packed)} bytes) was too "
                                          f"large to keep for its retries", {})
        return packed

    def _committed(self, turn: Turn, written: list[tuple[Scope, str]], sequence: int) -> None:
        for offset, (scope, token) in enumerate(written):
            packed = turn.writes[(scope, token)]
            scope.cache[token] = (sequence + offset, packed)
            scope.apply(token, sequence + offset, -1 if packed is None else len(packed))

    def _forget(self, turn: Turn) -> None:
        """Drop what this process cached of the turn's keys: the next turn reads them afresh."""
        for scope, token in (*turn.seen, *turn.writes):
            scope.cache.pop(token, None)

    async def _first_reply(self, turn: Turn) -> wire.Reply | None:
        """The reply a request's earlier, committed turn recorded (None: it has no record)."""
        if turn.req_id is None:
            return None
        realm = next(iter(turn.writes))[0].realm
        key = subjects.request_record_key(realm, turn.req_id)
        try:
            _, stored = await self.fetch(key)
        except (BusError, StateError) as err:
            log.warning("cannot read the record of request %s: %s", turn.req_id, err)
            return None
        if stored is None:
            return None
        return wire.read_reply(stored, f"the record of request {turn.req_id}")

class State:
    """``self.state``: the actor state of one category of the actor's realm, shared by every actor
    of the category (``self.stateFor(category)`` gives another's).

    Keys are non-empty strings (any: escaped for the bus, given back as they were); values are what
    request data may be (msgpack: dict, list, str, bytes, int, float, bool, None), each at most
    ``state.max_value_bytes`` encoded. Inside a request, reads see the request's turn and writes
    wait for the handler to return; outside one (``init``, timers, threads), each ``set``,
    ``delete`` and ``update`` commits at once, alone. The plain forms are for ``def`` code; in
    ``async def`` code await the ``a`` forms (``await self.state.aget(key)``): the plain ones raise
    `UsageError` on the event loop, where waiting would stall every actor of the host (``set`` and
    ``delete`` inside a request never wait, so they work anywhere).
    """

    __slots__ = ("_store", "_realm", "_category", "_user", "_runner", "_opened")

    def __init__(self, store: StateStore, realm: str, category: str, user: str, runner: Runner) -> None:
        self._store = store
        self._realm = realm
        self._category = subjects.normalize(category)
        self._user = user
        self._runner = runner
        self._opened: Scope | None = None

    def __repr__(self) -> str:
        return f"<State {self._realm}:{self._category}>"

    @property
    def category(self) -> str:
        """The category whose state this is."""
        return self._category

    @property
    def _scope(self) -> Scope:
        # Opened on first use, on the loop: an actor that never uses its state costs nothing.
        if self._opened is None:
            if self._runner.in_loop_thread():
                self._opened = self._store.scope(self._realm, self._category, self._user)
            else:
                self._opened = self._runner.run(self._open())
        return self._opened

    async def _open(self) -> Scope:
        return self._store.scope(self._realm, self._category, self._user)

    def _wait(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run ``coro`` on the loop and wait for it, from a worker thread (never on the loop)."""
        if self._runner.in_loop_thread():
            coro.close()
            raise UsageError(f"self.state.{what}() waits for the bus: in async def code, await "
                             f"self.state.a{what}(...) instead")
        return self._runner.run(coro)

    @staticmethod
    def _open_turn() -> Turn | None:
        turn = current_turn.get()
        if turn is not None:
            turn.check_open()
        return turn

    def _pack(self, key: str, value: Any) -> bytes:
        return wire.pack(value, what=f"the value of state key {key!r}")

    # ---------------------------------------------------------------- reading

    async def aget(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it has none."""
        token = subjects.state_token(key)
        turn = current_turn.get()
        if turn is None or turn.ended:  # outside a request: the latest value, in a turn of its own
            turn = Turn(None)
            try:
                packed = await self._store.read(turn, self._scope, token)
            finally:
                turn.finish()
        else:
            packed = await self._store.read(turn, self._scope, token)
        return default if packed is None else wire.unpack(packed)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it has none (`aget` in async code)."""
        turn = current_turn.get()
        if turn is None or turn.ended or self._runner.in_loop_thread():
            # (on the loop: refused by _wait, even when no wait would be needed this time)
            return self._wait(self.aget(key, default), "get")
        token = subjects.state_token(key)
        known, packed = self._store.read_known(turn, self._scope, token)
        if not known:
            packed = self._wait(self._store.read(turn, self._scope, token), "get")
        return default if packed is None else wire.unpack(packed)

    async def akeys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted (this turn's writes included; another
        actor's newest keys show once this host has heard of them, within milliseconds)."""
        if not isinstance(prefix, str):
            raise StateError(f"a key prefix must be a string, not {type(prefix).__name__}")
        scope = self._scope
        await scope.ready
        token = subjects.escape(prefix) if prefix else ""
        found = set(scope.keys(token))
        turn = current_turn.get()
        if turn is not None:
            for (s, t), packed in turn.writes.items():
                if s is scope and t.startswith(token):
                    if packed is None:
                        found.discard(t)
                    else:
                        found.add(t)
        return sorted(subjects.unescape(t) for t in found)

    def keys(self, prefix: str = "") -> list[str]:
        """The keys that start with ``prefix``, sorted (`akeys` in async code)."""
        return self._wait(self.akeys(prefix), "keys")

    # ---------------------------------------------------------------- writing

    async def aset(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value``. Raises `EncodeError` for a value msgpack cannot carry (naming
        its type), `StateError` for one over the size limit or a new key past the cap."""
        token, packed = subjects.state_token(key), self._pack(key, value)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, packed)
            return

        async def alone(turn: Turn) -> None:
            await self._scope.ready  # (the cap is checked against the loaded index)
            self._store.write(turn, self._scope, token, packed)

        await self._alone(alone, key)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (see `aset`)."""
        token, packed = subjects.state_token(key), self._pack(key, value)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, packed)
        else:
            self._wait(self.aset(key, value), "set")

    async def adelete(self, key: str) -> None:
        """Delete ``key`` (a key without a value stays without)."""
        token = subjects.state_token(key)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, None)
            return

        async def alone(turn: Turn) -> None:
            self._store.write(turn, self._scope, token, None)

        await self._alone(alone, key)

    def delete(self, key: str) -> None:
        """Delete ``key`` (see `adelete`)."""
        token = subjects.state_token(key)
        turn = self._open_turn()
        if turn is not None:
            self._store.write(turn, self._scope, token, None)
        else:
            self._wait(self.adelete(key), "delete")

    async def aupdate(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Set ``key`` to ``fn(its value)`` (None for a key without one) and return the new value;
        ``fn`` may be a coroutine function. Outside a request it is read, changed and written as
        one commit, again while another writer changes the key in between."""
        token = subjects.state_token(key)

        async def change(turn: Turn) -> Any:
            current = await self._store.read(turn, self._scope, token)
            new = fn(None if current is None else wire.unpack(current))
            if inspect.isawaitable(new):
                new = await new
            self._store.write(turn, self._scope, token, self._pack(key, new))
            return new

        turn = self._open_turn()
        if turn is not None:
            return await change(turn)
        return await self._alone(change, key)

    def update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Set ``key`` to ``fn(its value)`` and return the new value (see `aupdate`; inside a
        request ``fn`` runs in the calling thread)."""
        turn = self._open_turn()
        if turn is None or self._runner.in_loop_thread():
            return self._wait(self.aupdate(key, fn), "update")
        new = fn(self.get(key))
        self._store.write(turn, self._scope, subjects.state_token(key), self._pack(key, new))
        return new

    async def _alone(self, body: Callable[[Turn], Awaitable[T]], key: str) -> T:
        """Run ``body`` in a turn of its own and commit it (outside a request), again on conflict.
        Raises `StateError`, or `BusError` when the commit's outcome is unknown."""
        for _ in range(INSTANT_TRIES):
            turn = Turn(None)
            token = current_turn.set(turn)
            try:
                result = await body(turn)
            except BaseException:
                turn.finish()
                raise
            finally:
                current_turn.reset(token)
            outcome = await self._store.commit(turn, None)
            if outcome is None:
                return result
            if outcome.error == wire.CONFLICT:
                continue
            if outcome.error.startswith(wire.BUS_UNAVAILABLE):
                raise BusError(outcome.error)
            detail = outcome.data.get("st") if isinstance(outcome.data, dict) else None
            raise StateError(str(detail or outcome.error).removeprefix("StateError: "))
        raise StateError(f"state key {key!r} kept changing under this write ({INSTANT_TRIES} conflicts in a row)")
