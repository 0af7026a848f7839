"""The one backoff: how long to wait before trying again, doubling from ``base`` up to ``cap``."""

from __future__ import annotations


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (counted from 0): ``base * 2**attempt``,
    at most ``cap``."""
    # 2.0: `2 ** int` is typed Any (int or float); at most 2 ** 64: 2.0 ** 1024 overflows (a huge nRetries)
    return min(base * 2.0 ** min(attempt, 64), cap)
