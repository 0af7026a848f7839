"""What the ``beach`` subcommands share: the config argument, a connected client with the cluster
model, and printing results as tables or JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .. import output
from ..client import AsyncBeach
from ..model import ClusterModel

T = TypeVar("T")


def add_config(parser: argparse.ArgumentParser) -> None:
    """The positional CONFIG argument every cluster command takes."""
    parser.add_argument("config", metavar="CONFIG", help="the cluster's config file (YAML)")


def add_realm(parser: argparse.ArgumentParser, what: str = "the realm to work in") -> None:
    """The ``--realm`` option."""
    parser.add_argument("--realm", default="global", help=f"{what} (default: global)")


def add_json(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option of listing commands."""
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")


def connected(args: argparse.Namespace, work: Callable[[AsyncBeach], Awaitable[T]], realm: str = "global") -> T:
    """Connect to the cluster of ``args.config``, run ``work(client)`` and disconnect."""

    async def run() -> T:
        client = await AsyncBeach.open(args.config, realm=getattr(args, "realm", None) or realm)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(run())


def with_model(args: argparse.Namespace, work: Callable[[ClusterModel], Awaitable[T]], load: bool = False) -> T:
    """Like `connected`, with the cluster model started (and the actors' load asked for, if ``load``)."""

    async def run(client: AsyncBeach) -> T:
        model = ClusterModel(client)
        await model.start()
        try:
            if load:
                await model.refresh_load()
            return await work(model)
        finally:
            await model.stop()

    return connected(args, run)


def emit(args: argparse.Namespace, value: Any, columns: Sequence[str] = (),
         rows: Callable[[], list[Sequence[Any]]] | None = None, title: str | None = None) -> None:
    """Print ``value`` as JSON with ``--json``, else as a table of ``columns`` and ``rows()``."""
    if getattr(args, "json", False) or rows is None:
        print(output.dumps(value))
    else:
        output.show(output.table(columns, rows(), title=title))


def fail(message: str) -> int:
    """Print a one-line failure to stderr; return exit code 1."""
    print(f"beach: {message}", file=sys.stderr)
    return 1
