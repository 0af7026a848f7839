"""Reading query parameters: each reader returns a checked value or raises `BadParameter` (a 400
with a JSON error naming the parameter), so no view ever fails on what a client typed."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

from starlette.exceptions import HTTPException

from beach import logs
from beach.errors import CategoryError
from beach.wire import subjects

Params = Mapping[str, str]

LEVELS = dict(logs.LEVELS)
KINDS = {"app": "app", "sys": "sys", "all": None}


class BadParameter(HTTPException):
    """A query parameter the dashboard cannot use (HTTP 400)."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


def check_known(params: Params, known: Iterable[str]) -> None:
    """Raise `BadParameter` for a parameter not in ``known`` (a typo must not pass silently)."""
    allowed = set(known)
    for name in params:
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise BadParameter(f"unknown query parameter {name!r} (known: {listed})")


def text(params: Params, name: str) -> str | None:
    """A free-text parameter; None when absent or empty."""
    value = params.get(name)
    return value if value else None


def realm(params: Params) -> str | None:
    """``realm``: a realm name, or None."""
    value = text(params, "realm")
    if value is None:
        return None
    try:
        return subjects.check_realm(value)
    except CategoryError as err:
        raise BadParameter(f"realm: {err}") from None


def category(params: Params) -> str | None:
    """``category``: a category (normalized), or None."""
    value = text(params, "category")
    if value is None:
        return None
    try:
        return subjects.normalize(value)
    except CategoryError as err:
        raise BadParameter(f"category: {err}") from None


def level(params: Params, default: int = logging.INFO) -> int:
    """``level``: a log level name (debug, info, warning, error, critical)."""
    value = text(params, "level")
    if value is None:
        return default
    try:
        return LEVELS[value.lower()]
    except KeyError:
        raise BadParameter(f"level {value!r}: give one of {', '.join(LEVELS)}") from None


def kind(params: Params, default: str = "app") -> str | None:
    """``kind``: which log lines: ``app`` (actors'), ``sys`` (beach's own) or ``all``; None for all."""
    value = text(params, "kind") or default
    if value not in KINDS:
        raise BadParameter(f"kind {value!r}: give one of {', '.join(KINDS)}")
    return KINDS[value]


def number(params: Params, name: str, default: float) -> float:
    """A finite number."""
    value = text(params, name)
    if value is None:
        return default
    try:
        result = float(value)
    except ValueError:
        raise BadParameter(f"{name} {value!r} is not a number") from None
    if not math.isfinite(result):
        raise BadParameter(f"{name} {value!r} is not a finite number")
    return result


def integer(params: Params, name: str, default: int, low: int, high: int) -> int:
    """An integer from ``low`` to ``high``."""
    value = text(params, name)
    if value is None:
        return default
    try:
        result = int(value)
    except ValueError:
        raise BadParameter(f"{name} {value!r} is not an integer") from None
    if not low <= result <= high:
        raise BadParameter(f"{name} {result} is out of range ({low} to {high})")
    return result
