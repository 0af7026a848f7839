"""A large body as the payload store holds it, with no I/O (`beach.bus.bodies` moves it over NATS).

A body is cut in chunks of `CHUNK` bytes (the last one shorter, an empty body one empty chunk),
each encrypted on its own with AES-256-GCM under a key made for this body alone, the chunk's index
its nonce (a key encrypts one body, so no nonce repeats). The reference that names it, a
`BodyRef` (``[name, size, chunk, chunks, key]``), travels in a sealed message: `Sealed` makes the
chunks and the reference, `Opened` checks a reference and puts the body back together from its
chunks, in order. A chunk missing, swapped, added, cut or opened with another key is an error,
never a wrong body.
"""

from __future__ import annotations

from collections.abc import Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from beach.errors import BusError
from beach.wire.messages import BodyRef

CHUNK = 256 * 1024  # bytes of a body per chunk (the NATS object store's default is 128 KiB)
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12


def count(size: int, chunk: int = CHUNK) -> int:
    """The number of chunks of ``chunk`` bytes a body of ``size`` bytes is cut in: at least one (an
    empty body is one empty chunk)."""
    return max(1, -(-size // chunk))


def nonce(index: int) -> bytes:
    """Chunk ``index``'s nonce: its index, 12 bytes big-endian (a key encrypts one body, so no
    nonce repeats)."""
    return index.to_bytes(NONCE_BYTES, "big")


def check(ref: BodyRef) -> None:
    """Raise `BusError` if ``ref`` does not add up: a size under 0, a chunk size under 1, a count of
    chunks that is not its size's, or a key that is not 256 bits."""
    if ref.size < 0 or ref.chunk < 1 or ref.chunks != count(ref.size, ref.chunk) or len(ref.key) != KEY_BYTES:
        raise BusError(f"a payload reference that does not add up: {ref.size} bytes in {ref.chunks} chunks of "
                       f"{ref.chunk} bytes, a key of {len(ref.key)} bytes")


class Sealed:
    """``body`` to be stored as object ``name``: encrypted with a new key, chunk by chunk (`chunks`),
    and named by `ref`."""

    def __init__(self, name: str, body: bytes | memoryview, chunk: int = CHUNK) -> None:
        self._body = memoryview(body)
        self._aes = AESGCM(key := AESGCM.generate_key(bit_length=8 * KEY_BYTES))
        self.ref = BodyRef(name, len(self._body), chunk, count(len(self._body), chunk), key)

    def chunks(self) -> Iterator[bytes]:
        """The encrypted chunks, in order, each made when it is asked for (the body is not copied)."""
        size = self.ref.chunk
        for index in range(self.ref.chunks):
            yield self._aes.encrypt(nonce(index), self._body[index * size:(index + 1) * size], None)


class Opened:
    """The body a reference names, put together from its chunks as they come (`add`, in order):
    `body` once all have. Raises `BusError` if the reference does not add up (`check`)."""

    def __init__(self, ref: BodyRef) -> None:
        check(ref)
        self.ref = ref
        self.received = 0  # chunks added so far
        self._aes = AESGCM(ref.key)
        self._body = bytearray(ref.size)

    def add(self, data: bytes) -> None:
        """Decrypt ``data``, the next chunk, into the body. Raises `BusError` if it does not open with
        the reference's key as that chunk (another body's, another chunk's, damaged), is not that
        chunk's size, or is one more than the reference counts."""
        index, name, chunks = self.received, self.ref.name, self.ref.chunks
        if index == chunks:
            raise BusError(f"the payload {name} is damaged: more than its {chunks} chunks")
        try:
            part = self._aes.decrypt(nonce(index), data, None)
        except InvalidTag:
            raise BusError(f"the payload {name} is damaged: chunk {index + 1} of {chunks} does not open with "
                           f"its key") from None
        start = index * self.ref.chunk
        size = min(self.ref.chunk, self.ref.size - start)
        if len(part) != size:
            raise BusError(f"the payload {name} is damaged: chunk {index + 1} of {chunks} holds {len(part)} "
                           f"bytes, not {size}")
        self._body[start:start + size] = part
        self.received += 1

    def body(self) -> bytearray:
        """The whole body. Raises `BusError` if a chunk is still missing."""
        if self.received != self.ref.chunks:
            raise BusError(f"the payload {self.ref.name} is damaged: {self.received} of its {self.ref.chunks} "
                           f"chunks read")
        return self._body
