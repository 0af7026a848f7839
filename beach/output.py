"""What the command-line tools print and read: JSON out (indent 4, as the original's shell), request
data in (JSON or a Python literal), and human tables.

Nothing here talks to the cluster; the tools share it so that ``beach request``, the shell and the
one-shot mode read and print data the same way.
"""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, get_args, get_origin, get_type_hints

import msgspec
from msgspec import NODEFAULT

from beach.errors import UsageError
from beach.state import spawn
from beach.state.spawn import SpawnOptions

JSON_DEPTH = 600
"""The deepest value `dumps_line` writes (a reply can nest as deep as msgpack carries, ~1000 levels:
deeper than Python's recursion limit leaves room for)."""


def _text(value: bytes) -> str:
    # The original hex-encoded what JSON cannot show; bytes that are text stay readable.
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value.hex()
    return text if "\x00" not in text else value.hex()


def _key(key: Any) -> Any:
    """A map key as JSON has it: text (msgpack's maps may have bytes or tuples as keys)."""
    if key is None or isinstance(key, bool):
        return msgspec.json.encode(key).decode()
    return key if isinstance(key, (str, int, float)) else str(_plain(key))


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can say it: records made maps, bytes made text (msgspec would write
    base64), floats that are not finite made None; ``ValueError`` past `JSON_DEPTH`."""
    if depth > JSON_DEPTH:
        raise ValueError(f"the value is nested more than {JSON_DEPTH} levels deep (the most beach writes as JSON)")
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value, builtin_types=(bytes, bytearray), enc_hook=repr)
    if isinstance(value, (bytes, bytearray)):
        return _text(bytes(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    # Loops, not comprehensions: a comprehension is a frame of its own (Python 3.11), which would halve
    # the depth that fits under the recursion limit.
    if isinstance(value, dict):
        plain: dict[Any, Any] = {}
        for k, v in value.items():
            plain[_key(k)] = _plain(v, depth + 1)
        return plain
    if isinstance(value, (list, tuple, set, frozenset)):
        items = []
        for v in value:
            items.append(_plain(v, depth + 1))
        return items
    return value


def dumps_line(value: Any) -> str:
    """``value`` as one line of valid JSON (for streams such as ``beach logs --json``: JSON Lines,
    and the HTTP answers of the dashboard and the REST bridge). JSON has no words for NaN and
    ±Infinity: they are written as ``null`` (as JavaScript's ``JSON.stringify`` does); what JSON
    cannot show is its ``repr``. Raises ``ValueError`` for a value nested deeper than `JSON_DEPTH`."""
    try:
        return _encoder.encode(_plain(value)).decode()
    except RecursionError:  # (where the caller's own stack is deep already)
        raise ValueError(f"the value is nested too deeply to write as JSON (over {JSON_DEPTH} levels)") from None


def dumps(value: Any) -> str:
    """``value`` as JSON with an indent of 4; bytes become text (or hex when they are not text)."""
    return msgspec.json.format(dumps_line(value), indent=4)


_encoder = msgspec.json.Encoder(enc_hook=repr)


def parse_data(text: str | None, what: str = "data") -> Any:
    """Request data typed by a person: JSON (``{"a": 1}``) or a Python literal (``{'a': 1}``), never
    evaluated as code. Empty → ``{}``. Raises `UsageError` naming what could not be read."""
    if text is None or not text.strip():
        return {}
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        reason = err.msg if isinstance(err, SyntaxError) else _not_literal(text) or str(err) or type(err).__name__
        raise UsageError(f"{what} {text!r} is neither JSON nor a Python literal ({reason})") from None


_LITERALS = (ast.Expression, ast.Constant, ast.Dict, ast.Set, ast.List, ast.Tuple, ast.UnaryOp, ast.BinOp,
             ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Load)


def _not_literal(text: str) -> str | None:
    """What in ``text`` is not a literal, for a person: ``'foo' is a name: quote text ("foo")``."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, _LITERALS):
            continue
        source = ast.get_source_segment(text.strip(), node) or type(node).__name__
        if isinstance(node, ast.Name):
            return f"{source} is a name, not a value: quote text ('{source}')"
        if isinstance(node, ast.Call):
            return f"{source} is a call: only values are read, never run"
        return f"{source} is an expression, not a value"
    return None


def parse_mapping(text: str | None, what: str) -> dict[str, Any]:
    """Data typed by a person that must be a mapping (actor parameters, resources); empty → ``{}``.
    Raises `UsageError` naming ``what``."""
    value = parse_data(text, what)
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a mapping such as {{'key': 1}}, not {type(value).__name__}")
    return value


def duration(seconds: Any) -> str:
    """A short human duration: 45s, 12m, 3h, 2d (``-`` for what is not a number)."""
    if not isinstance(seconds, (int, float)):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def size(n_bytes: Any, unknown: str = "?") -> str:
    """A byte count for people: ``'15.6 GiB'`` (``unknown`` when it is not a count)."""
    if not isinstance(n_bytes, (int, float)) or isinstance(n_bytes, bool) or n_bytes < 0:
        return unknown
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def run_tool(main: Callable[[], int | None]) -> int:
    """Run a tool's ``main`` and turn what it raises into one line on stderr and an exit code: 2 for
    a usage or config error, 1 for any other `BeachError`, 130 for Ctrl-C (never a traceback)."""
    import sys

    from beach.errors import BeachError, ConfigError

    try:
        return int(main() or 0)
    except (UsageError, ConfigError) as err:
        print(f"beach: {one_line(str(err))}", file=sys.stderr)
        return 2
    except BeachError as err:
        print(f"beach: {one_line(str(err))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines joined by spaces."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe_failure(response: Any) -> str:
    """A failed `ActorResponse` in one line: its error, and the last line of the traceback (its
    ``data['st']``) when there is one."""
    text = response.error or "failed"
    trace = response.data.get("st") if isinstance(response.data, dict) else None
    if trace:
        lines = [line for line in str(trace).splitlines() if line.strip()]
        if lines and lines[-1].strip() not in text:  # a handler's exception already names itself
            text = f"{text}: {lines[-1].strip()}"
    return one_line(text)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Any:
    """A rich `Table` with ``columns`` and ``rows`` (cells are turned into text)."""
    from rich.table import Table

    result = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        result.add_column(column, no_wrap=True, overflow="ellipsis")
    for row in rows:
        result.add_row(*("" if cell is None else str(cell) for cell in row))
    return result


def show(renderable: Any) -> None:
    """Print a rich renderable (a table, text) to standard output."""
    import sys

    from rich.console import Console

    # Piped into another program there is no terminal width to respect: keep rows whole.
    Console(soft_wrap=False, width=None if sys.stdout.isatty() else 240).print(renderable)


def add_spawn_options(parser: argparse.ArgumentParser) -> None:
    """``addActor``'s options (`beach.state.spawn.SpawnOptions`: each field's flags, type, choices
    and help; the class, categories and realm are each tool's own). An option not given is not
    set: `spawn_options` leaves it to the struct's default."""
    for field in spawn.options():
        extra = spawn.extra_of(field.name)
        hint = get_type_hints(SpawnOptions)[field.name]  # (Annotated's metadata left out)
        kind = next((t for t in (bool, int, float) if hint is t or t in get_args(hint)), None)
        default = "" if field.default in (None, False, NODEFAULT) or kind is bool else f" (default {field.default})"
        options: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS,
                                   "help": spawn.help_of(field.name) + default}
        if kind is bool:
            options["action"] = "store_true"
        elif get_origin(hint) is list:
            options.update(action="append", metavar=extra["metavar"])
        elif get_args(hint) and all(isinstance(a, str) for a in get_args(hint)):  # a Literal: its choices
            options["choices"] = get_args(hint)
        else:
            options.update(metavar=extra["metavar"], type=kind if extra["parse"] is None and kind else str)
        parser.add_argument(*extra["flags"], **options)


def spawn_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``addActor`` keyword arguments of the options `add_spawn_options` parsed, as given (data
    read as JSON or a Python literal, a numeric log level as a number). Raises `UsageError`."""
    given = {f.name: getattr(args, f.name) for f in spawn.options() if hasattr(args, f.name)}
    for name, value in given.items():
        parse = spawn.extra_of(name)["parse"]
        if parse == "data":
            given[name] = parse_mapping(value, spawn.extra_of(name)["flags"][-1])
        elif parse == "level" and value.isdigit():
            given[name] = int(value)
    return given
