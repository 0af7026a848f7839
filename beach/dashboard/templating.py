"""The Jinja2 environment of the pages and their live fragments, with the filters they share."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import jinja2
from starlette.templating import Jinja2Templates

from beach import __version__, output
from beach.output import duration
from beach.output import size as byte_size
from beach.state.model import LOG_TAIL

TEMPLATES = Path(__file__).with_name("templates")


def percent(value: Any) -> str:
    """``12.3 %``; a dash when unknown."""
    return f"{value:.1f} %" if isinstance(value, (int, float)) else "–"


def ms(value: Any) -> str:
    """Seconds as milliseconds (``12.3 ms``), ``–`` when unknown."""
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value * 1000:.0f} ms" if value >= 0.1 else f"{value * 1000:.1f} ms"


def ratio(value: Any) -> str:
    """A ratio 0-1 as a percentage (``2.5 %``), ``–`` when unknown."""
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value * 100:.1f} %"


def rate(value: Any) -> str:
    """Requests per second, to one decimal (``0`` stays short)."""
    if not isinstance(value, (int, float)):
        return "–"
    return "0" if value == 0 else f"{value:.1f}"


def clock(value: Any) -> str:
    """A time of day (``14:03:07``) from seconds since the epoch."""
    if not isinstance(value, (int, float)):
        return "–"
    return datetime.datetime.fromtimestamp(value).strftime("%H:%M:%S")


def when(value: Any) -> str:
    """A date and time (``2024-05-01 14:03:07``) from seconds since the epoch."""
    if not isinstance(value, (int, float)):
        return "–"
    return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def age(value: Any) -> str:
    """How long ago a time (seconds since the epoch) was, shortly: ``45s``, ``12m``, ``3h``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return duration(max(0.0, time.time() - value))


def shown(value: Any) -> str:
    """A parameter value as text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else output.dumps_line(value)


def _json(value: Any, **_: Any) -> str:
    return output.dumps_line(value)


def environment() -> jinja2.Environment:
    """The environment: autoescaped HTML, undefined names are errors (a typo must not render blank)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(percent=percent, ms=ms, ratio=ratio, rate=rate, clock=clock, when=when, duration=duration,
                       age=age, shown=shown,
                       size=lambda value: byte_size(value, "–"))
    env.policies["json.dumps_function"] = _json  # bytes and other msgpack values as `beach.output` shows them
    env.policies["json.dumps_kwargs"] = {}
    env.globals.update(version=__version__, log_tail=LOG_TAIL)
    return env


ENV = environment()
templates = Jinja2Templates(env=ENV)


def render(name: str, context: dict[str, Any]) -> str:
    """Render template ``name`` (a page's fragment) with ``context``."""
    return ENV.get_template(name).render(context)
