"""Small text helpers the console's widgets share: sparklines, sizes, addresses, short ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..cli.common import duration
from ..output import one_line

__all__ = ["BARS", "address", "duration", "level", "one_line", "percent", "short", "size", "spark"]

BARS = "▁▂▃▄▅▆▇█"
HIGH = 80.0  # percent: a node this busy is "high" (its figures turn the alarm colour)
MID = 50.0


def spark(values: Sequence[float], width: int, top: float = 100.0) -> str:
    """``values`` (oldest first) as ``width`` bars on a fixed 0..``top`` scale, newest on the right.

    A fixed scale (not the data's own min and max) keeps a quiet node looking quiet. More values
    than bars are averaged in consecutive buckets; fewer leave blanks on the left (history to come).
    """
    if width <= 0:
        return ""
    points = list(values)
    if len(points) > width:
        n = len(points)
        points = [sum(chunk) / len(chunk) for i in range(width)
                  if (chunk := points[i * n // width:(i + 1) * n // width])]
    bars = "".join(BARS[max(0, min(len(BARS) - 1, int(v / top * len(BARS))))] for v in points)
    return bars.rjust(width)


def level(value: float) -> str:
    """``'low'``, ``'mid'`` or ``'high'`` for a percentage (the suffix of a colour class)."""
    return "high" if value >= HIGH else "mid" if value >= MID else "low"


def percent(value: float) -> str:
    """A percentage in at most four cells: ``' 7%'``, ``'42%'``, ``'100%'``."""
    return f"{value:3.0f}%"


def size(n_bytes: Any) -> str:
    """A byte count for people: ``'15.6 GiB'`` (``'?'`` when unknown)."""
    if not isinstance(n_bytes, (int, float)) or n_bytes < 0:
        return "?"
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def address(node: dict[str, Any]) -> str:
    """The address a person would use to reach a node: its first non-loopback IPv4 one."""
    addresses = [a for a in node.get("addresses") or [] if isinstance(a, str)]
    return next((a for a in addresses if not a.startswith("127.")), addresses[0] if addresses else "-")


def short(uid: str | None, n: int = 8) -> str:
    """The first ``n`` characters of a uid (enough to tell actors apart on a screen)."""
    return (uid or "-")[:n]
