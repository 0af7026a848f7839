"""Small text helpers the console's widgets share: sparklines, sizes, addresses, short ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text

from beach.output import duration, one_line, size

if TYPE_CHECKING:
    from beach.state.model import Series

__all__ = ["BARS", "address", "bar", "duration", "level", "meter", "one_line", "percent", "recent", "short", "size",
           "spark", "window"]

BARS = "▁▂▃▄▅▆▇█"
HIGH = 80.0  # percent: a node this busy is "high" (its figures turn the alarm colour)
MID = 50.0


def spark(points: Sequence[tuple[float, float]], seconds: float, width: int, top: float = 100.0) -> str:
    """``(time, value)`` points of the last ``seconds`` as ``width`` bars on a fixed 0..``top``
    scale, the newest on the right; each bar is the mean of its ``seconds / width`` slice of time.

    A fixed scale (not the data's own min and max) keeps a quiet node looking quiet, and a fixed
    time per bar keeps the picture still: a slice without points (history not seen yet, a missed
    heartbeat) stays blank. "Now" is the newest point, so another machine's clock does not matter.
    """
    if width <= 0:
        return ""
    if not points:
        return " " * width
    now = points[-1][0]
    step = seconds / width
    sums = [0.0] * width
    counts = [0] * width
    for t, value in points:
        slot = width - 1 - int((now - t) / step)
        if 0 <= slot < width:
            sums[slot] += value
            counts[slot] += 1
    return "".join(bar(s / n, top) if n else " " for s, n in zip(sums, counts, strict=True))


def bar(value: float, top: float = 100.0) -> str:
    """One bar, ``▁`` (zero) to ``█`` (``top`` or more)."""
    return BARS[max(0, min(len(BARS) - 1, int(value / top * len(BARS)))) if top > 0 else 0]


def recent(series: Series | None, seconds: float) -> list[tuple[float, float]]:
    """The ``(time, value)`` points of the last ``seconds`` of a model `Series` (none for None):
    its fine points only (the console draws at most their 10 minutes; a coarse 10 s average before
    them would stand apart, dated up to 10 s early)."""
    if series is None or not series.fine:
        return []
    since = series.fine[-1][0] - seconds
    return [(t, v) for t, v in series.fine if t >= since]


def window(points: Sequence[tuple[float, float]], longest: float, width: int) -> float:
    """The seconds ``width`` bars should cover: the history there is, up to ``longest``, and at least
    a second a bar. A console that just started fills its sparklines from the right at one bar a
    second, then squeezes them as history grows, until they cover ``longest``."""
    span = points[-1][0] - points[0][0] if points else 0.0
    return min(longest, max(span, float(width)))


def meter(points: Sequence[tuple[float, float]], seconds: float, current: float, width: int, style: Style) -> Text:
    """The current percentage, then a sparkline of ``points``, in ``style``: ``'42% ▁▂▃▅'``."""
    text = percent(current)
    return Text(f"{text} {spark(points, seconds, width)}" if width > 0 else text, style=style)


def level(value: float) -> str:
    """``'low'``, ``'mid'`` or ``'high'`` for a percentage (the suffix of a colour class)."""
    return "high" if value >= HIGH else "mid" if value >= MID else "low"


def percent(value: float) -> str:
    """A percentage in at most four cells: ``' 7%'``, ``'42%'``, ``'100%'``."""
    return f"{value:3.0f}%"


def address(node: dict[str, Any]) -> str:
    """The address a person would use to reach a node: its first non-loopback IPv4 one."""
    addresses = [a for a in node.get("addresses") or [] if isinstance(a, str)]
    return next((a for a in addresses if not a.startswith("127.")), addresses[0] if addresses else "-")


def short(uid: str | None, n: int = 8) -> str:
    """The first ``n`` characters of a uid (enough to tell actors apart on a screen)."""
    return (uid or "-")[:n]
