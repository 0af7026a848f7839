"""beach.security.seal: sealed bodies, their binding to a context, the replay window and the nonce memory.

The oracles: the documented layout of a sealed body, opened here with the `cryptography` library's
AES-GCM directly (not with `Sealer.open`); the replay window's edges computed from the time written
in the header; and a clock the test moves by hand (the module's ``time``), so no test sleeps.
"""

from __future__ import annotations

import hashlib
import logging
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.aio.msg import Msg

from beach import wire
from beach.errors import ConfigError, SealError
from beach.security import seal
from beach.security.seal import SKEW, Sealer
from beach.state.records import ActorArgs

KEY = bytes(range(32))
OLD = bytes(range(100, 132))
T0 = 1_700_000_000.0  # a wall-clock time of these days: the header holds milliseconds since the epoch


class Clock:
    """The seal module's clock, moved by the test: ``time()`` (wall) and ``monotonic()`` apart."""

    def __init__(self, wall: float = T0, mono: float = 0.0) -> None:
        self.wall = wall
        self.mono = mono

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(seal, "time", c)
    return c


def parts(body: bytes) -> dict:
    """A sealed body split by the documented layout."""
    return {"magic": body[:2], "format": body[2], "kid": body[3:7], "ms": int.from_bytes(body[7:15], "big"),
            "nonce": body[15:27], "sealed": body[27:]}


def test_a_sealed_body_is_the_documented_layout_and_opens_with_plain_aes_gcm(clock):
    body = Sealer([KEY]).seal("beach.r.global.a _INBOX.x", b"secret payload")
    p = parts(body)
    assert p["magic"] == b"\xbe\x5e" and p["format"] == 1
    assert p["kid"] == hashlib.sha256(b"beach key id\0" + KEY).digest()[:4]
    assert p["ms"] == int(T0 * 1000)
    assert len(body) == 2 + 1 + 4 + 8 + 12 + len(b"secret payload") + 16 == seal.OVERHEAD + len(b"secret payload")
    # the header and the context are the associated data
    plain = AESGCM(KEY).decrypt(p["nonce"], p["sealed"], body[:15] + b"beach.r.global.a _INBOX.x")
    assert plain == b"secret payload"
    assert b"secret" not in body


def test_key_ids_are_a_hash_and_known():
    # the key id travels in every sealed body: nodes of two releases must agree on it
    assert seal.key_id(bytes(32)).hex() == hashlib.sha256(b"beach key id\0" + bytes(32)).digest()[:4].hex()
    assert seal.key_id(bytes(32)).hex() == "1d25cf1f"  # (printf 'beach key id\0'; head -c 32 /dev/zero) | sha256sum
    assert seal.key_id(KEY) != seal.key_id(OLD)
    assert Sealer([KEY, OLD]).key_id == seal.key_id(KEY).hex()
    assert Sealer([OLD, KEY]).key_id == seal.key_id(OLD).hex()


@pytest.mark.parametrize("payload", [b"", b"x", os.urandom(1000)])
def test_round_trip(clock, payload):
    sealer = Sealer([KEY])
    body = sealer.seal("ctx", payload)
    assert seal.is_sealed(body)
    assert sealer.open("ctx", body) == payload
    assert Sealer([KEY]).open("ctx", body, fresh=False) == payload  # another process with the key


def test_is_sealed_reads_the_first_bytes():
    assert seal.is_sealed(b"\xbe\x5e")
    assert seal.is_sealed(b"\xbe\x5e\x01 anything")
    assert not seal.is_sealed(b"\xbe")
    assert not seal.is_sealed(b"\x5e\xbe\x01")
    assert not seal.is_sealed(b"plain msgpack")
    assert not seal.is_sealed(b"")


@pytest.mark.parametrize("keys", [[], [bytes(31)], [bytes(33)], [KEY, bytes(16)], [bytes(16), KEY]])
def test_a_sealer_needs_32_byte_keys(keys):
    with pytest.raises(ValueError, match="^a Sealer needs one or more 32-byte keys$"):
        Sealer(keys)


def test_every_nonce_is_new(clock):
    sealer = Sealer([KEY])
    bodies = [sealer.seal("ctx", b"same") for _ in range(200)]
    assert len({parts(b)["nonce"] for b in bodies}) == 200
    assert len(set(bodies)) == 200
    assert [sealer.open("ctx", b) for b in bodies] == [b"same"] * 200  # none is taken for a replay
    # two processes with the same key start their counters at random places
    assert parts(Sealer([KEY]).seal("ctx", b""))["nonce"] != parts(Sealer([KEY]).seal("ctx", b""))["nonce"]


def test_the_context_binds_a_body_to_its_subject_and_reply(clock):
    sealer = Sealer([KEY])
    body = sealer.seal("beach.r.global.pay _INBOX.1", b"pay 10")
    for other in ("beach.r.global.refund _INBOX.1", "beach.r.global.pay _INBOX.2", "beach.r.global.pay ", ""):
        with pytest.raises(SealError, match=r"^refused: tampered or misplaced$"):
            sealer.open(other, body)
    assert sealer.rejected[seal.TAMPERED] == 4
    assert sealer.open("beach.r.global.pay _INBOX.1", body) == b"pay 10"


@pytest.mark.parametrize("where", list(range(3, 15)) + [15, 26, 27, -1])
def test_any_flipped_byte_is_refused(clock, where):
    sealer = Sealer([KEY, OLD])
    body = bytearray(sealer.seal("ctx", b"payload"))
    body[where] ^= 0x01
    with pytest.raises(SealError) as err:
        sealer.open("ctx", bytes(body))
    # a flipped key id names no key we hold; any other flip fails the tag
    assert err.value.reason == (seal.UNKNOWN_KEY if 3 <= where < 7 else seal.TAMPERED)


def test_what_is_not_sealed_is_refused_as_such(clock):
    sealer = Sealer([KEY])
    good = sealer.seal("ctx", b"")
    assert len(good) == seal.OVERHEAD
    assert sealer.open("ctx", good, fresh=False) == b""  # the shortest sealed body opens
    for body in (good[:-1], b"", b"\xbe\x5e", b"plain text that is long enough to be a sealed body",
                 b"\xbe\x5f" + good[2:], b"\xbf\x5e" + good[2:], good[:2] + b"\x02" + good[3:],
                 good[:2] + b"\x00" + good[3:]):
        with pytest.raises(SealError, match=r"^refused: not sealed$") as err:
            sealer.open("ctx", body)
        assert err.value.reason == seal.NOT_SEALED
    assert sealer.rejected == {seal.NOT_SEALED: 8}


def test_an_unknown_key_is_named_by_its_id(clock):
    body = Sealer([OLD]).seal("ctx", b"x")
    sealer = Sealer([KEY])
    with pytest.raises(SealError, match=rf"^refused: unknown key \(key id {seal.key_id(OLD).hex()}\)$") as err:
        sealer.open("ctx", body)
    assert err.value.reason == "unknown key"


def test_during_a_rotation_the_old_and_the_new_key_open_and_the_new_one_seals(clock):
    rotating = Sealer([KEY, OLD])
    assert rotating.open("ctx", Sealer([OLD]).seal("ctx", b"old")) == b"old"
    assert rotating.open("ctx", Sealer([KEY]).seal("ctx", b"new")) == b"new"
    sealed = rotating.seal("ctx", b"by the new key")
    assert parts(sealed)["kid"] == seal.key_id(KEY)
    assert Sealer([KEY]).open("ctx", sealed) == b"by the new key"
    with pytest.raises(SealError, match="unknown key"):
        Sealer([OLD]).open("ctx", sealed)


# ---- freshness: the replay window ---------------------------------------------------------------


@pytest.mark.parametrize("window", [15.0, 2.0])
def test_the_replay_window_is_enforced_at_both_edges(clock, window):
    sealer = Sealer([KEY], window=window)
    assert sealer.window == window
    receiver = Sealer([KEY], window=window)
    # sealed at T0, opened at T0 + age: fresh from -SKEW to +window inclusive, stale outside
    for age, fresh in ((0.0, True), (window, True), (window + 0.001, False), (window + 3600, False),
                       (-SKEW, True), (-SKEW - 0.001, False), (-3600.0, False)):
        clock.wall = T0
        body = sealer.seal("ctx", b"x")
        clock.wall = T0 + age
        if fresh:
            assert receiver.open("ctx", body) == b"x", age
        else:
            with pytest.raises(SealError, match=r"^refused: outside the replay window \(sealed -?\d+\.\ds ago\)$"):
                receiver.open("ctx", body)
    assert receiver.rejected[seal.STALE] == 4


def test_the_whole_time_field_is_read(clock):
    # 8 bytes of milliseconds: a time whose top byte is not zero (far off, but the field holds it)
    clock.wall = 2**60 / 1000
    sealer = Sealer([KEY])
    body = sealer.seal("ctx", b"x")
    assert parts(body)["ms"] == 2**60
    assert sealer.open("ctx", body) == b"x"


def test_the_default_window_is_15_seconds_and_the_default_open_is_fresh(clock):
    sealer = Sealer([KEY])
    assert sealer.window == seal.DEFAULT_WINDOW == 15.0 and SKEW == 5.0
    body = sealer.seal("ctx", b"x")
    clock.wall = T0 + 15.5
    with pytest.raises(SealError, match=r"sealed 15\.5s ago"):
        sealer.open("ctx", body)
    clock.wall = T0 - 7.25
    with pytest.raises(SealError, match=r"sealed -7\.2s ago"):
        sealer.open("ctx", body)


def test_stored_values_have_no_window_and_no_nonce_memory(clock):
    sealer = Sealer([KEY])
    body = sealer.seal("beach_actors global.u1", b"entry")
    clock.wall = T0 + 365 * 86400
    for _ in range(3):
        assert sealer.open("beach_actors global.u1", body, fresh=False) == b"entry"
    assert not sealer.rejected


def test_a_live_message_opens_once(clock):
    sealer = Sealer([KEY])
    body = sealer.seal("ctx", b"x")
    assert sealer.open("ctx", body) == b"x"
    with pytest.raises(SealError, match=r"^refused: replayed$") as err:
        sealer.open("ctx", body)
    assert err.value.reason == seal.REPLAYED
    assert sealer.open("ctx", body, fresh=False) == b"x"  # (read as a stored value it is no replay)
    with pytest.raises(SealError, match="replayed"):
        sealer.open("ctx", body)
    assert sealer.rejected == {seal.REPLAYED: 2}


@pytest.mark.parametrize("window", [15.0, 3.0])
def test_a_nonce_is_remembered_as_long_as_its_message_could_be_fresh(clock, window):
    # The wall clock stands still (every message stays fresh); the monotonic clock moves in steps
    # while new messages arrive. Whenever a message was first opened less than window + SKEW ago
    # (the longest a replay of it can stay inside the window), its replay must be refused, whatever
    # the moment the nonce memory turns its generations.
    span = window + SKEW
    sender, receiver = Sealer([KEY]), Sealer([KEY], window=window)
    step = span / 37
    first_opened: dict[bytes, float] = {}
    for n in range(int(4 * span / step)):
        clock.mono = n * step
        body = sender.seal("ctx", b"%d" % n)
        assert receiver.open("ctx", body) == b"%d" % n
        first_opened[body] = clock.mono
        for old, when in first_opened.items():
            if clock.mono - when < span:
                with pytest.raises(SealError, match="replayed"):
                    receiver.open("ctx", old)


def test_the_nonce_memory_is_bounded(clock):
    # after two spans without a sighting a nonce is forgotten (its message is long stale by then):
    # the memory holds about two spans of traffic, not all of it
    span = seal.DEFAULT_WINDOW + SKEW
    receiver = Sealer([KEY])
    body = Sealer([KEY]).seal("ctx", b"x")
    assert receiver.open("ctx", body) == b"x"
    clock.mono = span + 0.1
    with pytest.raises(SealError, match="replayed"):
        receiver.open("ctx", body)
    clock.mono = 2 * span + 0.2
    assert receiver.open("ctx", Sealer([KEY]).seal("ctx", b"y")) == b"y"  # turns the memory again
    assert receiver.open("ctx", body) == b"x"  # forgotten (only a stopped wall clock lets it be fresh)


# ---- counting and logging refusals ---------------------------------------------------------------


def test_refusals_are_counted_and_logged_once_a_minute_per_reason(clock, caplog):
    caplog.set_level(logging.WARNING, logger="beach.seal")
    sealer = Sealer([KEY])
    body = sealer.seal("beach.r.global.a _INBOX.1", b"x")
    sealer.open("beach.r.global.a _INBOX.1", body)
    clock.mono = 0.0  # the first refusal is logged, however young the monotonic clock
    for _ in range(3):
        with pytest.raises(SealError):
            sealer.open("beach.r.global.a _INBOX.1", body)
    clock.mono = 59.9
    with pytest.raises(SealError):
        sealer.open("beach.r.global.a _INBOX.1", body)
    with pytest.raises(SealError):
        sealer.open("beach.r.global.a ", b"not sealed at all, and long enough for one")
    clock.mono = 60.0
    with pytest.raises(SealError):
        sealer.open("beach.r.global.a _INBOX.1", body)
    assert sealer.rejected == {seal.REPLAYED: 5, seal.NOT_SEALED: 1}
    assert [r.getMessage() for r in caplog.records] == [
        "refused a message (replayed) on beach.r.global.a _INBOX.1; 1 refused so far for this reason",
        "refused a message (not sealed) on beach.r.global.a; 1 refused so far for this reason",
        "refused a message (replayed) on beach.r.global.a _INBOX.1; 5 refused so far for this reason",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_refusal_log_carries_its_detail(clock, caplog):
    caplog.set_level(logging.WARNING, logger="beach.seal")
    body = Sealer([OLD]).seal("ctx", b"x")
    with pytest.raises(SealError):
        Sealer([KEY]).open("subj reply", body)
    assert caplog.records[0].getMessage() == (f"refused a message (unknown key) on subj reply: key id "
                                              f"{seal.key_id(OLD).hex()}; 1 refused so far for this reason")


# ---- stored bodies and key files -------------------------------------------------------------------


def test_stored_body(clock):
    sealer = Sealer([KEY])
    assert seal.stored_body(None, "beach.logs.n1", b"plain") == b"plain"
    body = sealer.seal("beach.logs.n1 ", b"line")  # sent with no reply: the context is "<subject> "
    clock.wall = T0 + 86400
    assert seal.stored_body(sealer, "beach.logs.n1", body) == b"line"
    assert seal.stored_body(sealer, "beach.logs.n1", body) == b"line"
    assert seal.stored_body(sealer, "beach.logs.n2", body) is None  # another subject's
    assert seal.stored_body(sealer, "beach.logs.n1", b"plain") is None
    assert sealer.rejected == {seal.TAMPERED: 1, seal.NOT_SEALED: 1}


def test_a_stored_record_is_read_from_its_message_opened_and_checked(clock):
    read = seal.stored(ActorArgs)
    plain = wire.pack({"uid": "u1"})
    assert read(Msg(None, subject="s.1", data=plain), None) == ActorArgs(uid="u1")
    sealer = Sealer([KEY])
    sealed = sealer.seal("s.1 ", plain)
    clock.wall = T0 + 86400  # long ago: a stored record has no window
    assert read(Msg(None, subject="s.1", data=sealed), sealer) == ActorArgs(uid="u1")
    assert read(Msg(None, subject="s.2", data=sealed), sealer) is None  # another subject's: does not open
    assert read(Msg(None, subject="s.1", data=wire.pack({"uid": ""})), None) is None  # not a record of its type
    assert read(Msg(None, subject="s.1", data=b"\xc1"), None) is None  # not msgpack
    assert read(Msg(None, subject="s.1", data=plain), sealer) is None  # not sealed, where records are
    assert sealer.rejected == {seal.TAMPERED: 1, seal.NOT_SEALED: 1}


def test_read_key(tmp_path):
    key = tmp_path / "k.key"
    key.write_bytes(KEY)
    assert seal.read_key(str(key)) == KEY
    with pytest.raises(ConfigError, match=r"^'private_key' .*nope\.key: No such file or directory$"):
        seal.read_key(str(tmp_path / "nope.key"))
    with pytest.raises(ConfigError, match=r"^'accepted_keys' .*nope\.key: No such file"):
        seal.read_key(str(tmp_path / "nope.key"), "accepted_keys")
    for size in (0, 31, 33, 64):
        key.write_bytes(os.urandom(size))
        with pytest.raises(ConfigError) as err:
            seal.read_key(str(key))
        assert str(err.value) == (f"'private_key' {key} holds {size} bytes, not a key (32 bytes; make one with "
                                  f"'beach gen-key PATH')")
    with pytest.raises(ConfigError, match=r"^'private_key' .*: Is a directory$"):
        seal.read_key(str(tmp_path))
