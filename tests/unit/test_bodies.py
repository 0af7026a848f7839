"""beach.bus.bodies, its pure parts: an object's TTL, the payload limit, a chunk's subject.

(How a body is cut, encrypted and put back together: test_chunks.py.)

(Storing and reading run against a real server: tests/test_payloads.py.)
"""

from __future__ import annotations

import pytest

from beach.bus import bodies
from beach.config import PayloadsConfig
from beach.errors import PayloadTooLarge


@pytest.mark.parametrize("seconds, ttl", [
    (None, int(bodies.MAX_AGE)),  # no deadline: the stream's own backstop
    (0.0, 10), (0.2, 11), (2.0, 12), (30.5, 41),  # the time left, rounded up, and the margin
])
def test_an_objects_ttl_is_its_messages_time_left_and_a_margin(seconds, ttl):
    assert bodies.ttl_for(seconds) == ttl
    assert bodies.ttl_for(seconds) >= bodies.MIN_TTL


def test_over_the_limit_is_refused_naming_it():
    bodies.check_limit(100, 100, "x")
    with pytest.raises(PayloadTooLarge) as err:
        bodies.check_limit(101, 100, "data of request 'r'")
    assert str(err.value) == ("data of request 'r' is 101 bytes encoded, over the limit of payloads.max_bytes "
                              "of 100 bytes")
    assert (err.value.size, err.value.limit) == (101, 100)
    assert PayloadsConfig().max_bytes == 1024 ** 3 and PayloadsConfig().inline_bytes == 0


def test_a_chunks_subject_is_the_object_stores():
    assert bodies.chunk_subject("ab") == "$O.beach_payloads.C.ab"
