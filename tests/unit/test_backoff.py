"""beach.backoff: doubling from ``base``, capped at ``cap``.

The oracle: the doubling written out (base, 2 base, 4 base... exact in binary floating point for
these bases), so linear growth, a wrong start or a missing cap each fail.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beach.backoff import backoff


def test_known_values():
    assert [backoff(n, 0.25, 1000.0) for n in range(8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert [backoff(n, 0.1, 100.0) for n in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert [backoff(n, 1, 5) for n in range(6)] == [1, 2, 4, 5, 5, 5]


def test_the_cap_holds_from_where_the_doubling_reaches_it():
    assert backoff(0, 3.0, 2.0) == 2.0  # even the first wait
    assert backoff(2, 0.5, 2.0) == 2.0  # exactly the cap
    assert backoff(3, 0.5, 2.0) == 2.0
    assert backoff(1, 0.5, 2.0) == 1.0


def test_a_huge_attempt_number_neither_overflows_nor_exceeds_the_cap():
    assert backoff(10**6, 0.01, 30.0) == 30.0
    assert backoff(5000, 1.0, math.inf) == 2.0**64  # the doubling stops at 2**64 times base
    assert backoff(64, 1.0, math.inf) == 2.0**64
    assert backoff(63, 1.0, math.inf) == 2.0**63


@given(attempt=st.integers(0, 63), base=st.sampled_from([0.001, 0.05, 0.25, 1.0, 3.0]),
       cap=st.sampled_from([0.5, 10.0, 3600.0, math.inf]))
def test_each_wait_is_double_the_last_until_the_cap(attempt, base, cap):
    assert backoff(attempt, base, cap) == min(base * (1 << attempt), cap)
    assert backoff(attempt + 1, base, cap) == min(2 * backoff(attempt, base, cap), cap)


def test_the_supervisors_restart_backoff():
    # none before the first restart, then doubling from half a second (linear growth would give 1.5 s
    # at the fourth), at most 30 s
    from nodeagent.supervisor import backoff as restart_backoff

    assert [restart_backoff(n) for n in range(9)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
