"""beach.wire.chunks: a large body cut in chunks, each encrypted with the body's one-time key, and
the reference that names them, checked before anything is read.

The oracles: chunks opened with `cryptography`'s AES-GCM directly, with nonces built here from the
documented layout (the chunk's index, 12 bytes big-endian), not with the module's; counts judged by
their definition (every byte in one chunk, no chunk empty but an empty body's only one) in exact
integers; round trips (sealed then opened, whatever the body's and the chunks' sizes); and each way a
chunk can go wrong (missing, swapped, added, cut, another body's) refused with its own words.
"""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import example, given
from hypothesis import strategies as st

from beach.errors import BusError
from beach.wire import BodyRef, chunks
from beach.wire.chunks import Opened, Sealed


def by_hand(index: int) -> bytes:
    """Chunk ``index``'s nonce as the format states it: the index, 12 bytes, most significant first."""
    digits: list[int] = []
    while index:
        index, digit = divmod(index, 256)
        digits.insert(0, digit)
    return bytes(12 - len(digits)) + bytes(digits)


def opened_directly(ref: BodyRef, parts: list[bytes]) -> bytes:
    return b"".join(AESGCM(ref.key).decrypt(by_hand(i), part, None) for i, part in enumerate(parts))


def test_the_default_chunk_is_256_kib():
    assert chunks.CHUNK == 262144
    assert Sealed("x", b"").ref.chunk == 262144


@pytest.mark.parametrize("size, chunk, count", [
    (0, 3, 1), (1, 3, 1), (2, 3, 1), (3, 3, 1), (4, 3, 2), (6, 3, 2), (7, 3, 3), (10, 1, 10),
    (0, chunks.CHUNK, 1), (chunks.CHUNK, chunks.CHUNK, 1), (chunks.CHUNK + 1, chunks.CHUNK, 2),
    (2 ** 60 + 1, 2 ** 30, 2 ** 30 + 1),  # (a float division rounds this one down)
])
def test_count_known_answers(size, chunk, count):
    assert chunks.count(size, chunk) == count


def test_count_takes_the_default_chunk():
    assert chunks.count(chunks.CHUNK) == 1 and chunks.count(chunks.CHUNK + 1) == 2
    assert chunks.count(3 * chunks.CHUNK - 1) == 3


@given(st.integers(0, 10 ** 12), st.integers(1, 10 ** 7))
def test_count_holds_every_byte_and_no_empty_chunk(size, chunk):
    n = chunks.count(size, chunk)
    assert n >= 1
    assert n * chunk >= size  # every byte has its chunk
    assert size == 0 and n == 1 or (n - 1) * chunk < size  # the last chunk is not empty


@pytest.mark.parametrize("index", [0, 1, 255, 256, 258, 65535, 65536, 2 ** 64 + 5])
def test_nonce_known_answers(index):
    assert chunks.nonce(index) == by_hand(index)
    assert len(chunks.nonce(index)) == 12
    assert chunks.nonce(258) == b"\x00" * 10 + b"\x01\x02"
    assert chunks.nonce(2 ** 64 + 5) == b"\x00\x00\x00\x01" + b"\x00" * 7 + b"\x05"


def test_every_chunk_has_its_own_nonce():
    nonces = {chunks.nonce(i) for i in range(5000)}
    assert len(nonces) == 5000


def test_a_body_is_named_by_a_reference_that_adds_up():
    body = os.urandom(7)
    sealed = Sealed("name-1", body, chunk=3)
    assert isinstance(sealed.ref, BodyRef)
    assert (sealed.ref.name, sealed.ref.size, sealed.ref.chunk, sealed.ref.chunks) == ("name-1", 7, 3, 3)
    assert len(sealed.ref.key) == 32
    chunks.check(sealed.ref)


def test_each_body_has_its_own_key():
    keys = {Sealed("x", b"same").ref.key for _ in range(50)}
    assert len(keys) == 50


def test_chunks_open_with_aes_gcm_under_the_key_and_the_index():
    body = bytes(range(256)) * 3 + b"end"  # 771 bytes: 3 chunks of 256 and one of 3
    sealed = Sealed("x", body, chunk=256)
    parts = list(sealed.chunks())
    assert [len(p) for p in parts] == [256 + 16, 256 + 16, 256 + 16, 3 + 16]  # each with its 16-byte tag
    assert opened_directly(sealed.ref, parts) == body
    for i, part in enumerate(parts):  # its own index, no other
        with pytest.raises(InvalidTag):
            AESGCM(sealed.ref.key).decrypt(by_hand(i + 1), part, None)
    assert AESGCM(sealed.ref.key).decrypt(by_hand(3), parts[3], None) == b"end"


def test_the_same_plaintext_in_two_chunks_is_two_ciphertexts():
    parts = list(Sealed("x", b"ab" * 4, chunk=2).chunks())
    assert len(set(parts)) == 4


def test_an_empty_body_is_one_empty_chunk():
    sealed = Sealed("x", b"")
    parts = list(sealed.chunks())
    assert len(parts) == 1 and len(parts[0]) == 16
    assert opened_directly(sealed.ref, parts) == b""
    opened = Opened(sealed.ref)
    opened.add(parts[0])
    assert opened.body() == bytearray()


def test_a_memoryview_is_sealed_as_its_bytes():
    body = bytearray(b"0123456789")
    sealed = Sealed("x", memoryview(body)[2:9], chunk=4)
    assert sealed.ref.size == 7
    assert opened_directly(sealed.ref, list(sealed.chunks())) == b"2345678"


def roundtrip(body: bytes, chunk: int) -> bytearray:
    sealed = Sealed("x", body, chunk=chunk)
    opened = Opened(sealed.ref)
    for part in sealed.chunks():
        opened.add(part)
    return opened.body()


@given(st.binary(max_size=300), st.integers(1, 64))
@example(b"", 1)
@example(b"abc", 3)
@example(b"abcd", 3)
def test_sealed_then_opened_is_the_body(body, chunk):
    out = roundtrip(body, chunk)
    assert isinstance(out, bytearray) and out == body


def test_a_large_body_round_trips_in_default_chunks():
    body = os.urandom(2 * chunks.CHUNK + 5)
    assert roundtrip(body, chunks.CHUNK) == body
    assert Opened(Sealed("x", body).ref).ref.chunks == 3


def test_opened_counts_what_it_received():
    sealed = Sealed("x", b"abcdefg", chunk=3)
    opened = Opened(sealed.ref)
    assert opened.received == 0
    for n, part in enumerate(sealed.chunks(), 1):
        opened.add(part)
        assert opened.received == n


def damaged(sealed: Sealed, parts: list[bytes]) -> str:
    opened = Opened(sealed.ref)
    with pytest.raises(BusError) as err:
        for part in parts:
            opened.add(part)
        opened.body()
    return str(err.value)


def test_a_chunk_missing_swapped_added_or_of_another_body_is_refused():
    sealed = Sealed("obj", b"abcdefg", chunk=3)
    a, b, c = sealed.chunks()
    assert damaged(sealed, [a, b]) == "the payload obj is damaged: 2 of its 3 chunks read"
    assert damaged(sealed, []) == "the payload obj is damaged: 0 of its 3 chunks read"
    assert damaged(sealed, [a, c, b]) == "the payload obj is damaged: chunk 2 of 3 does not open with its key"
    assert damaged(sealed, [b, a, c]) == "the payload obj is damaged: chunk 1 of 3 does not open with its key"
    assert damaged(sealed, [a, b, c, c]) == "the payload obj is damaged: more than its 3 chunks"
    other = Sealed("obj", b"abcdefg", chunk=3)  # the same body under another key
    assert damaged(sealed, list(other.chunks())) == (
        "the payload obj is damaged: chunk 1 of 3 does not open with its key")
    flipped = bytes([a[0] ^ 1]) + a[1:]
    assert damaged(sealed, [flipped, b, c]) == "the payload obj is damaged: chunk 1 of 3 does not open with its key"


def test_a_chunk_of_the_wrong_size_is_refused_even_under_the_right_key():
    sealed = Sealed("obj", b"abcdefg", chunk=3)
    a, b, c = sealed.chunks()
    aes = AESGCM(sealed.ref.key)
    short = aes.encrypt(by_hand(1), b"de", None)
    assert damaged(sealed, [a, short, c]) == "the payload obj is damaged: chunk 2 of 3 holds 2 bytes, not 3"
    long = aes.encrypt(by_hand(2), b"gh", None)  # the last chunk holds what is left: 1 byte
    assert damaged(sealed, [a, b, long]) == "the payload obj is damaged: chunk 3 of 3 holds 2 bytes, not 1"
    assert damaged(sealed, [a, b, aes.encrypt(by_hand(2), b"", None)]) == (
        "the payload obj is damaged: chunk 3 of 3 holds 0 bytes, not 1")
    assert damaged(sealed, [aes.encrypt(by_hand(0), b"abcd", None)]) == (
        "the payload obj is damaged: chunk 1 of 3 holds 4 bytes, not 3")


def test_a_refused_chunk_leaves_the_count_where_it_was():
    sealed = Sealed("obj", b"abcdefg", chunk=3)
    a, b, c = sealed.chunks()
    opened = Opened(sealed.ref)
    opened.add(a)
    with pytest.raises(BusError):
        opened.add(c)
    assert opened.received == 1
    opened.add(b)
    opened.add(c)
    assert opened.body() == b"abcdefg"


KEY = bytes(32)


@pytest.mark.parametrize("ref", [
    BodyRef("n", 0, 1, 1, KEY), BodyRef("n", 0, chunks.CHUNK, 1, KEY), BodyRef("n", 1, 1, 1, KEY),
    BodyRef("n", 10, 3, 4, KEY), BodyRef("n", 9, 3, 3, KEY), BodyRef("n", 2, 1, 2, KEY),
])
def test_a_reference_that_adds_up_is_taken(ref):
    chunks.check(ref)
    assert Opened(ref).ref is ref


@pytest.mark.parametrize("ref, words", [
    (BodyRef("n", -1, 3, 1, KEY), "-1 bytes in 1 chunks of 3 bytes, a key of 32 bytes"),
    (BodyRef("n", 10, 0, 1, KEY), "10 bytes in 1 chunks of 0 bytes, a key of 32 bytes"),  # not a ZeroDivisionError
    (BodyRef("n", 10, -3, 1, KEY), "10 bytes in 1 chunks of -3 bytes, a key of 32 bytes"),
    (BodyRef("n", 10, 3, 3, KEY), "10 bytes in 3 chunks of 3 bytes, a key of 32 bytes"),
    (BodyRef("n", 10, 3, 5, KEY), "10 bytes in 5 chunks of 3 bytes, a key of 32 bytes"),
    (BodyRef("n", 0, 3, 0, KEY), "0 bytes in 0 chunks of 3 bytes, a key of 32 bytes"),
    (BodyRef("n", 10, 3, 4, bytes(31)), "10 bytes in 4 chunks of 3 bytes, a key of 31 bytes"),
    (BodyRef("n", 10, 3, 4, bytes(33)), "10 bytes in 4 chunks of 3 bytes, a key of 33 bytes"),
    (BodyRef("n", 10, 3, 4, bytes(16)), "10 bytes in 4 chunks of 3 bytes, a key of 16 bytes"),  # AES-128: not ours
])
def test_a_reference_that_does_not_add_up_is_refused_naming_it(ref, words):
    for check in (chunks.check, Opened):
        with pytest.raises(BusError) as err:
            check(ref)
        assert str(err.value) == f"a payload reference that does not add up: {words}"
