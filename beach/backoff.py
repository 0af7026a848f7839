"""The one backoff: how long to wait before trying again, doubling from ``base`` up to ``cap``."""

from __future__ import annotations


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (counted from 0): ``base * 2**attempt``,
    at most ``cap``."""
    return min(base * 2 ** attempt, cap)
