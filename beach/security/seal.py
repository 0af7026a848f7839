"""Sealed messages: AES-256-GCM over every beach payload when the config names a ``private_key``.

A sealed body is::

    magic (2) | format (1) | key id (4) | time (8, ms since the epoch) | nonce (12) | ciphertext + tag (16)

The header and a *context* are the AEAD's associated data, so neither can be changed without the
tag failing: for a message the context is its subject and reply subject (a request cannot be
replayed onto another category, nor its reply redirected); for a KV value it is the bucket and key
(a value copied under another key is refused). The key id names which key sealed it, so during a
rotation the old and the new key are both accepted (``accepted_keys``) while the new one seals.

Live messages (requests, replies, broadcasts, control) are also checked for freshness: a time
outside ``[now - replay_window, now + SKEW]`` or a nonce seen before is a replay, refused. Stored
values (KV entries, the log stream) are read long after they were written and are not.

Every refusal is counted by reason (`Sealer.rejected`) and logged at most once a minute per reason.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.aio.msg import Msg

from beach.errors import SealError
from beach.wire import typed

R = TypeVar("R", bound=msgspec.Struct)

log = logging.getLogger("beach.seal")

MAGIC = b"\xbe\x5e"
FORMAT = 1

HEADER_BYTES = 15  # magic (2), format (1), key id (4), time (8)
NONCE_BYTES = 12
_NONCE_MASK = (1 << 96) - 1
OVERHEAD = HEADER_BYTES + NONCE_BYTES + 16
DEFAULT_WINDOW = 15.0
# Clocks ahead of ours are allowed this much: beyond it a message is "from the future" (a replay
# prepared in advance, or a clock to fix), and the nonce memory need only cover window + SKEW.
SKEW = 5.0
_LOG_EVERY = 60.0

# Reasons a body is refused; the keys of `Sealer.rejected`.
NOT_SEALED = "not sealed"
UNKNOWN_KEY = "unknown key"
TAMPERED = "tampered or misplaced"
STALE = "outside the replay window"
REPLAYED = "replayed"


def key_id(key: bytes) -> bytes:
    """The 4-byte id a sealed body carries to name its key (a hash: it reveals nothing of the key)."""
    return hashlib.sha256(b"beach key id\0" + key).digest()[:4]


def is_sealed(body: bytes) -> bool:
    """True if ``body`` looks like a sealed message (by its first bytes)."""
    return body[:2] == MAGIC


class Sealer:
    """Seals and opens bodies with the cluster's keys: ``keys[0]`` seals, every key opens.

    ``window``: seconds a live message stays acceptable. Raises `ValueError` for keys that are not
    32 bytes or an empty key list.
    """

    def __init__(self, keys: Sequence[bytes], window: float = DEFAULT_WINDOW) -> None:
        if not keys or any(len(k) != 32 for k in keys):
            raise ValueError("a Sealer needs one or more 32-byte keys")
        self._ids = [key_id(k) for k in keys]
        self._aeads = {kid: AESGCM(k) for kid, k in zip(self._ids, keys, strict=True)}
        self._kid = self._ids[0]
        self._aead = self._aeads[self._kid]
        self._prefix = MAGIC + bytes([FORMAT]) + self._kid
        # Nonces count up from a random 96-bit start: unique for this key in this process, and two
        # processes' sequences overlap with odds of about one in 2^60 (a counter is 4x cheaper
        # than a random read per message).
        self._nonces = itertools.count(int.from_bytes(os.urandom(NONCE_BYTES), "big"))
        self.window = window
        self.rejected: Counter[str] = Counter()
        self._logged: dict[str, float] = {}
        # Nonces of live messages seen lately, in two generations: a nonce is remembered for at
        # least one generation's span (window + SKEW), the longest a replay of it stays fresh.
        self._seen: set[bytes] = set()
        self._older: set[bytes] = set()
        self._turned = time.monotonic()

    @property
    def key_id(self) -> str:
        """The id (hex) of the key that seals."""
        return self._kid.hex()

    def seal(self, context: str, body: bytes) -> bytes:
        """Seal ``body`` for ``context`` (a message's subject and reply, a value's bucket and key)."""
        header = self._prefix + int(time.time() * 1000).to_bytes(8, "big")
        nonce = (next(self._nonces) & _NONCE_MASK).to_bytes(NONCE_BYTES, "big")
        return header + nonce + self._aead.encrypt(nonce, body, header + context.encode())

    def open(self, context: str, body: bytes, fresh: bool = True) -> bytes:
        """Return the plaintext of a body sealed for ``context``; with ``fresh`` (live messages),
        also refuse it outside the replay window or when seen before. Raises `SealError` naming
        why a body is refused (and counts it)."""
        if len(body) < OVERHEAD or body[:2] != MAGIC or body[2] != FORMAT:
            raise self._reject(NOT_SEALED, context)
        header = body[:HEADER_BYTES]
        kid = header[3:7]
        aead = self._aeads.get(kid)
        if aead is None:
            raise self._reject(UNKNOWN_KEY, context, f"key id {kid.hex()}")
        nonce = body[HEADER_BYTES:HEADER_BYTES + NONCE_BYTES]
        try:
            plain = aead.decrypt(nonce, body[HEADER_BYTES + NONCE_BYTES:], header + context.encode())
        except InvalidTag:
            raise self._reject(TAMPERED, context) from None
        if fresh:
            age = time.time() - int.from_bytes(header[7:], "big") / 1000
            if age > self.window or age < -SKEW:
                raise self._reject(STALE, context, f"sealed {age:.1f}s ago")
            self._remember(nonce, context)
        return plain

    def _remember(self, nonce: bytes, context: str) -> None:
        now = time.monotonic()
        if now - self._turned > self.window + SKEW:
            self._older, self._seen, self._turned = self._seen, set(), now
        if nonce in self._seen or nonce in self._older:
            raise self._reject(REPLAYED, context)
        self._seen.add(nonce)

    def _reject(self, reason: str, context: str, detail: str = "") -> SealError:
        self.rejected[reason] += 1
        now = time.monotonic()
        if now - self._logged.get(reason, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[reason] = now
            log.warning("refused a message (%s) on %s%s; %d refused so far for this reason", reason,
                        context.strip(), f": {detail}" if detail else "", self.rejected[reason])
        return SealError(f"refused: {reason}" + (f" ({detail})" if detail else ""), reason)


def stored_body(sealer: Sealer | None, subject: str, body: bytes) -> bytes | None:
    """The body of a message read back from a stream (sent on ``subject`` with no reply), opened
    when messages are sealed: no replay window, it was sent long ago; None if it does not open."""
    if sealer is None:
        return body
    try:
        return sealer.open(f"{subject} ", body, fresh=False)
    except SealError:  # counted and logged by the sealer
        return None


def stored(type_: type[R]) -> Callable[[Msg, Sealer | None], R | None]:
    """What reads a record of ``type_`` from a stream message (opened with the sealer, when records
    are sealed): None for one that is not one, or does not open (counted by the sealer)."""
    def from_msg(msg: Msg, sealer: Sealer | None) -> R | None:
        body = stored_body(sealer, msg.subject, msg.data)
        try:
            return None if body is None else typed.decoder(type_).decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
    return from_msg


def read_key(path: str, what: str = "private_key") -> bytes:
    """The key in the file at ``path``; raise `beach.errors.ConfigError` naming the file and what
    is wrong with it (missing, unreadable, not 32 bytes)."""
    from beach.errors import ConfigError

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            key = f.read(33)
    except OSError as err:
        raise ConfigError(f"'{what}' {path}: {err.strerror or err}") from None
    if len(key) != 32:
        raise ConfigError(f"'{what}' {path} holds {size} bytes, not a key (32 bytes; make one with "
                          f"'beach gen-key PATH')")
    return key
