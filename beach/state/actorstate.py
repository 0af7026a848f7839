"""Actor state: the turns of requests, committed to the KV bucket ``beach_state`` (the API actors
write in is `beach.state.stateapi.State`, ``self.state``).

Values live in the JetStream KV bucket ``beach_state`` (`beach.bus.STATE_BUCKET`), one key per
state key (``<realm>.k.<category>.<key>``, see `beach.wire.subjects.state_key`), sealed like every
value. Every actor of a category sees the same keys, so any of them can serve any key: affinity
routing is locality, not correctness.

**Turns.** A request is one turn (`Turn`): its reads see the state as of the turn, its own writes
included; its writes are kept aside until the handler returns, then committed in one atomic batch
(`beach.bus.batch`) together with a record of the request's id holding the reply
(``<realm>.r.<id>``, kept ``state.retry_window`` seconds) — and only then does the reply go out.
Every key the turn read carries the revision it saw (``Nats-Expected-Last-Subject-Sequence``: a
written key on its own message, a key only read on a check message), so a write by anyone else in
between makes the whole batch fail: nothing applies and the request is answered ``conflict``
(retryable). A retry of a request whose turn committed — the same id, on any actor of any node —
finds its record: the batch fails on it, and the retry is answered with the first reply. A handler
that raises commits nothing.

**Speed.** Each process keeps the values it read or wrote, with their revisions (`Scope`): a turn
reads a key it holds without a round trip — for a turn that writes, whatever its age (the commit
checks the revision: a stale value shows up as a ``conflict``, never as a lost update); for one
that only reads, if it is at most `CACHE_SECONDS` old. Turns of a process that touch the same key
wait for each other (`Turn.claim`) rather than conflict, and its commits go out together
(`Committer`: turns with no subject in common share one batch, which is what makes R1 streams,
whose batches the server stages on disk, usable). Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.js.errors import NotFoundError

from beach import bus, metering, tracing, wire
from beach.bus import batch
from beach.errors import BusError, StateError
from beach.security.seal import OVERHEAD
from beach.security.sealedkv import context as seal_context
from beach.state import records, stateview
from beach.wire import subjects

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from beach.client.session import Session

log = logging.getLogger("beach.state")

KV_OPERATION = "KV-Operation"
DELETED = ("DEL", "PURGE")
HEADER_ROOM = 2048          # bytes of a value's message left for its subject and headers
CACHE_SECONDS = 1.0         # how old a held value a turn that only reads may be given
CLAIM_WAIT = 1.0            # a turn waits at most this long for another turn of its process on a key
CHECK_TTL = "1s"            # a read check's message only has to live through its batch
MAX_INFLIGHT_BATCHES = 2    # a process's batches in flight at once: the next gathers what comes meanwhile
MAX_GROUP_MESSAGES = 500    # under the server's 1000 per batch
MAX_GROUP_BYTES = 4 * 1024 * 1024
INFLIGHT_BACKOFF = 0.02     # the server's limit of batches in flight was reached: wait, send again
MAX_TURN_KEYS = 990         # keys a turn writes at most: one message each in its batch (the server takes 1000)

# The turn of the request being served (None outside requests: each write commits on its own).
current_turn: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("beach_turn", default=None)


class Turn:
    """One request's reads and writes of actor state. ``req_id`` is the request's id (None for
    writes outside a request, which commit one by one).

    A turn *claims* the keys it reads or writes that no other turn of this process has claimed: a
    turn that holds no claim yet waits (at most `CLAIM_WAIT`) for the claimer of a key it wants to
    finish, so turns of one process on one key run one after another instead of conflicting. Only
    claim-less turns wait, so no two ever wait for each other."""

    __slots__ = ("req_id", "seen", "writes", "ended", "claims", "unavailable", "_finished")

    def __init__(self, req_id: str | None) -> None:
        self.req_id = req_id
        self.unavailable: BusError | None = None  # a read of the turn failed on the bus (no quorum, a timeout)
        self.seen: dict[tuple[Scope, str], tuple[int, bytes | None]] = {}  # what each key read was
        self.writes: dict[tuple[Scope, str], bytes | None] = {}  # packed value, None: delete
        self.ended = False
        self.claims: list[tuple[Scope, str]] = []
        self._finished: asyncio.Future[None] | None = None

    def check_open(self) -> None:
        """Raise `StateError` once the turn has ended (its handler returned)."""
        if self.ended:
            raise StateError("the request's turn has ended (its handler returned): state written from a task "
                             "it left running is not part of it; write before returning")

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
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._finished)
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


class Scope:
    """The keys of category ``category`` in ``realm`` as one process holds them: the values it read
    or wrote, with their revisions and when it learned them, and the turns working on them."""

    __slots__ = ("realm", "category", "prefix", "cache", "claims", "users", "created")

    def __init__(self, realm: str, category: str) -> None:
        self.realm = realm
        self.category = category
        self.prefix = subjects.state_scope(realm, category)
        self.cache: dict[str, tuple[int, bytes | None, float]] = {}  # token → (revision, value, when)
        self.claims: dict[str, Turn] = {}
        self.users: set[str] = set()
        self.created = 0  # keys this process created here since the last sizes it heard (for the cap)

    def __repr__(self) -> str:
        return f"<Scope {self.realm}:{self.category}>"

    def held(self, token: str, writing: bool) -> tuple[int, bytes | None] | None:
        """``(revision, value)`` of ``token`` if this process holds it (and, for a turn that does not
        write, learned it at most `CACHE_SECONDS` ago), else None."""
        entry = self.cache.get(token)
        if entry is None or (not writing and time.monotonic() - entry[2] > CACHE_SECONDS):
            return None
        return entry[0], entry[1]

    def hold(self, token: str, revision: int, value: bytes | None) -> None:
        """Note that ``token`` is at ``revision`` with ``value`` (older news is ignored)."""
        entry = self.cache.get(token)
        if entry is None or entry[0] <= revision:
            self.cache[token] = (revision, value, time.monotonic())


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

    def outcome(self, result: int | BaseException) -> None:
        """Settle the future (unless its waiter gave up: the actor stopping cancels it)."""
        if not self.future.done():
            self.future.set_result(result)


class Committer:
    """Group commit: the pending turns of one process, sent as few atomic batches as they can be —
    turns that write or check no subject in common share a batch. A batch that fails is split, each
    turn sent alone, so only the turn that really conflicts fails."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.queue: deque[Pending] = deque()
        self.inflight = 0
        self._kick_soon = False

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
                group[0].outcome(err)
        except Exception as err:  # BatchUnknown, a closed connection: the outcome is unknown
            for pending in group:
                pending.outcome(err)
        else:
            sequence = ack["seq"] - len(messages) + 1
            for pending in group:
                pending.outcome(sequence)
                sequence += len(pending.messages)
        finally:
            self.inflight -= 1
            self._kick()


class StateStore:
    """The actor state of one process (an actor host; a node agent for admin writes): the bucket,
    a `Scope` per category in use, the `Committer`, and the sizes of categories (for the cap on
    keys) as the node holding the supervisor lease publishes them. Opens the bucket on first use."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.config = session.config.state
        self.scopes: dict[tuple[str, str], Scope] = {}
        self.committer = Committer(self)
        self.keys_counted: dict[tuple[str, str], int] | None = None  # (realm, category) → live keys
        self._kv: Any = None
        self._opening: asyncio.Lock | None = None
        self._lock = threading.Lock()  # scopes are made from handler threads too
        self._following = False
        self._follow_task: asyncio.Task[None] | None = None
        self._record_ttl = f"{max(1, round(self.config.retry_window))}s"

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
        """The scope of ``category`` in ``realm``, used by ``user`` (an actor's uid). From any thread."""
        key = (realm, subjects.normalize(category))
        with self._lock:
            scope = self.scopes.get(key)
            if scope is None:
                scope = self.scopes[key] = Scope(realm, key[1])
                if not self._following:
                    self._following = True
                    self.session.runner.loop.call_soon_threadsafe(self._start_following)
            scope.users.add(user)
        return scope

    def release(self, user: str) -> None:
        """``user`` (an actor that stopped) no longer uses any scope; forget those nobody uses."""
        with self._lock:
            for key, scope in list(self.scopes.items()):
                scope.users.discard(user)
                if not scope.users:
                    del self.scopes[key]

    def _start_following(self) -> None:
        self._follow_task = asyncio.get_running_loop().create_task(self._follow_sizes())  # (kept: not collected)

    async def _follow_sizes(self) -> None:
        """Keep the latest counts of keys per category (``beach.stats.state``), for the cap."""
        try:
            await self.session.nc.subscribe(stateview.STATS_SUBJECT, cb=self._on_sizes)
            await self.session.nc.subscribe(stateview.PURGED_SUBJECT, cb=self._on_purged)
        except nats.errors.Error as err:
            log.warning("cannot follow the sizes of actor state (the cap on keys is not checked): %s", err)

    async def _on_sizes(self, msg: Msg) -> None:
        try:
            sizes = records.decode(records.StateStats, self.session.unseal(msg, fresh=False))
        except (ValueError, TypeError):
            return  # refused by the seal, or not a record: skip it
        counted: dict[tuple[str, str], int] = {}
        for realm, categories in sizes.categories.items():
            if isinstance(categories, dict):
                for category, figures in categories.items():
                    if isinstance(figures, list) and figures and isinstance(figures[0], int):
                        counted[(realm, category)] = figures[0]
        self.keys_counted = counted
        for scope in self.scopes.values():
            scope.created = 0

    async def _on_purged(self, msg: Msg) -> None:
        """A node purged actor state (``flush --state``): the categories it names hold no keys now
        (a restore right after must not be refused by counts from before; the next sizes agree)."""
        try:
            notice = stateview.purged(self.session.unseal(msg, fresh=False))
        except (ValueError, TypeError):
            return
        if notice is None:
            return
        if self.keys_counted is not None:
            for realm, category in self.keys_counted:
                if stateview.covers(notice, realm, category):
                    self.keys_counted[(realm, category)] = 0
        for scope in self.scopes.values():
            if stateview.covers(notice, scope.realm, scope.category):
                scope.created = 0

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
        if headers.get(KV_OPERATION) in DELETED or not msg.data:
            return int(msg.seq or 0), None
        return int(msg.seq or 0), self.open(kv_key, msg.data)

    async def keys(self, scope: Scope, prefix: str) -> list[str]:
        """The tokens of the live keys of ``scope`` that start with ``prefix`` (a token), as the
        stream has them now (one listing of the category)."""
        await self.bucket()
        return [token for token in await stateview.list_keys(self.session, scope.prefix) if token.startswith(prefix)]

    # ---------------------------------------------------------------- turns

    async def read(self, turn: Turn, scope: Scope, token: str, writing: bool = False) -> bytes | None:
        """The packed value of ``token`` as ``turn`` sees it (its own write, or what it read before,
        or the latest this process holds, or the stream's), recorded as read with its revision.
        ``writing``: the turn is about to write the key (an update), so a held value of any age
        will do (the commit checks its revision)."""
        if (scope, token) in turn.writes:
            return turn.writes[(scope, token)]
        seen = turn.seen.get((scope, token))
        if seen is not None:
            return seen[1]
        holder = turn.claim(scope, token)
        if holder is not None and not turn.claims:  # another turn of this process is on it: wait for its result
            await holder.finished(CLAIM_WAIT)
            turn.claim(scope, token)
        found = scope.held(token, writing or bool(turn.writes))
        if found is None:
            try:
                found = await self.fetch(subjects.state_key(scope.prefix, token))
            except BusError as err:  # noted: the request is answered 'bus unavailable' (retryable)
                turn.unavailable = err
                raise
            scope.hold(token, *found)
        turn.seen[(scope, token)] = found
        return found[1]

    def read_held(self, turn: Turn, scope: Scope, token: str, writing: bool = False) -> tuple[bool, bytes | None]:
        """`read` without a round trip or a wait, from any thread: ``(True, value)``, or ``(False,
        None)`` when it would need one (then call `read` on the loop)."""
        if (scope, token) in turn.writes:
            return True, turn.writes[(scope, token)]
        seen = turn.seen.get((scope, token))
        if seen is not None:
            return True, seen[1]
        if turn.claim(scope, token) is not None and not turn.claims:
            return False, None  # to wait for the other turn: on the loop
        found = scope.held(token, writing or bool(turn.writes))
        if found is None:
            return False, None
        turn.seen[(scope, token)] = found
        return True, found[1]

    def write(self, turn: Turn, scope: Scope, token: str, packed: bytes | None) -> None:
        """Stage a write (``packed`` None: a delete) in ``turn``; raise `StateError` for a value
        over the size limit, or past the keys a turn may write."""
        subjects.state_key(scope.prefix, token)  # too long: refused now, not at the commit
        if (scope, token) not in turn.writes and len(turn.writes) >= MAX_TURN_KEYS:
            raise StateError(f"a turn writes at most {MAX_TURN_KEYS} keys (it commits as one batch of the "
                             f"server's): split the work over several requests")
        if packed is not None and len(packed) > self.max_value:
            raise StateError(f"the value of state key {subjects.unescape(token)!r} is {len(packed)} bytes "
                             f"encoded, over the limit of {self.max_value} (state.max_value_bytes, and the bus's "
                             f"max_payload)")
        turn.writes[(scope, token)] = packed

    async def _new_keys(self, turn: Turn, scope: Scope) -> list[str]:
        """The keys ``turn`` creates in ``scope`` (written with a value, not live now): held ones
        are known; the others are looked up (only near the cap, where it matters)."""
        new, unknown = [], []
        for (s, token), packed in turn.writes.items():
            if s is not scope or packed is None:
                continue
            seen = turn.seen.get((scope, token)) or scope.held(token, True)
            if seen is None:
                unknown.append(token)
            elif seen[1] is None:
                new.append(token)
        for token in unknown:
            revision, value = await self.fetch(subjects.state_key(scope.prefix, token))
            scope.hold(token, revision, value)
            if value is None:
                new.append(token)
        return new

    async def _check_cap(self, turn: Turn) -> None:
        """Raise `StateError` if ``turn`` would take a category past ``state.max_keys`` keys, as
        far as this process knows: the last sizes it heard (every few seconds) and the keys it
        created and deleted since. Another process's keys of the last seconds are not known: a
        burst may pass the cap by them."""
        counted = self.keys_counted or {}  # (none yet, in a cluster starting: this process's own keys)
        cap = self.config.max_keys
        for scope in {s for s, _ in turn.writes}:
            live = counted.get((scope.realm, scope.category), 0) + scope.created
            possible = sum(1 for (s, _), packed in turn.writes.items() if s is scope and packed is not None)
            if live + possible <= cap:
                continue
            new = len(await self._new_keys(turn, scope))
            if new and live + new > cap:
                raise StateError(f"category {scope.category!r} of realm {scope.realm!r} holds {live} state "
                                 f"keys, its cap (state.max_keys = {cap}): delete keys, or raise the cap in the "
                                 f"config")

    async def commit(self, turn: Turn, reply: wire.Reply | None) -> wire.Reply | None:
        """Commit ``turn`` (its writes, checks of the keys it only read, and, for a request, the
        record of its id holding ``reply``), then return the reply to send: ``reply`` itself, the
        first reply of a request that committed before (a retry), or a failure (``conflict``;
        ``bus unavailable`` when the outcome is unknown, also retryable). Raises `StateError`,
        committing nothing, for a turn past the cap on keys or larger than a batch. The turn is
        finished after it, whatever happened."""
        turn.ended = True
        # (a span of its own where the handler's records: a commit is most of a turn's time)
        step = tracing.step("commit state", **{"beach.state.written": len(turn.writes),
                                               "beach.state.read": len(turn.seen)}) if turn.writes else None
        try:
            committed = await self._commit(turn, reply)
        except BaseException as err:
            if step is not None:
                step.end(*tracing.raised(err))
            raise
        finally:
            turn.finish()
        if step is not None:
            failed = committed is not reply and committed is not None and (
                committed.error == wire.CONFLICT or committed.error.startswith(wire.BUS_UNAVAILABLE))
            if failed:
                assert committed is not None
                step.end(metering.outcome(committed.ok, committed.error), committed.error)
            else:  # committed, or a retry answered with the reply its committed turn recorded
                step.end("ok", attributes={"beach.state.replayed": committed is not reply})
        return committed

    async def _commit(self, turn: Turn, reply: wire.Reply | None) -> wire.Reply | None:
        if not turn.writes:
            return reply
        await self._check_cap(turn)
        messages, written = self._messages(turn, reply)
        if len(messages) > batch.MAX_MESSAGES:
            raise StateError(f"this turn wrote {len(written)} keys and read {len(turn.seen)}: more than one batch "
                             f"holds ({batch.MAX_MESSAGES} messages)")
        checked = {headers[batch.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] for _, _, headers in messages
                   if batch.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT in headers}
        pending = Pending(messages, {subject for subject, _, _ in messages} | checked)
        for scope, token in written:  # until it is committed, its result is what the next turn must read
            turn.claim(scope, token)
        self.committer.submit(pending)
        outcome = await pending.future
        if isinstance(outcome, int):
            self._committed(turn, written, outcome)
            return reply
        if isinstance(outcome, batch.BatchRefused) and outcome.err_code in batch.CONFLICTS:
            first = await self._first_reply(turn)
            if first is not None:
                return first
            self._forget(turn)
            return wire.Reply(False, wire.CONFLICT, {"keys": sorted({subjects.unescape(t) for _, t in
                                                                      (*turn.seen, *turn.writes)})})
        self._forget(turn)
        return wire.Reply(False, f"{wire.BUS_UNAVAILABLE}: the state commit failed: {outcome}", {})

    def _messages(self, turn: Turn, reply: wire.Reply | None) -> tuple[list[batch.Message], list[tuple[Scope, str]]]:
        messages: list[batch.Message] = []
        written: list[tuple[Scope, str]] = []
        state = f"$KV.{bus.STATE_BUCKET}."
        for (scope, token), packed in turn.writes.items():
            kv_key = scope.prefix + token  # (its length was checked by write)
            headers: dict[str, str] = {}
            seen = turn.seen.get((scope, token))
            if seen is not None:  # read, then written: only over the revision it read
                headers[batch.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(seen[0])
            if packed is None:
                headers[KV_OPERATION] = "DEL"
            messages.append((state + kv_key, b"" if packed is None else self.seal(kv_key, packed), headers))
            written.append((scope, token))
        realm = written[0][0].realm
        req_id = turn.req_id
        checks = None
        for (scope, token), (revision, _) in turn.seen.items():
            if (scope, token) not in turn.writes:  # read only: checked on a short-lived message
                if checks is None:
                    checks = state + subjects.read_check_key(realm, req_id or f"_{id(turn):x}{time.monotonic_ns():x}")
                messages.append((checks, b"", {
                    batch.EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision),
                    batch.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: state + scope.prefix + token,
                    batch.TTL: CHECK_TTL}))
        if req_id is not None:
            record_key = subjects.request_record_key(realm, req_id)
            messages.append((state + record_key, self.seal(record_key, self._record(reply)), {
                batch.EXPECTED_LAST_SUBJECT_SEQUENCE: "0", batch.TTL: self._record_ttl}))
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
            before = turn.seen.get((scope, token)) or scope.held(token, True)
            live = before is not None and before[1] is not None
            if packed is not None and not live:  # (a key written blind counts as new: the cap errs on the safe side)
                scope.created += 1
            elif packed is None and live:
                scope.created -= 1
            scope.hold(token, sequence + offset, packed)

    def _forget(self, turn: Turn) -> None:
        """Drop what this process held of the turn's keys: the next turn reads them afresh."""
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
