"""What the ``beach`` subcommands share: the config argument, a connected client with the cluster
model, and printing results as tables or JSON."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from beach import loop as beach_loop
from beach import output
from beach.client.core import AsyncBeach
from beach.state.model import ClusterModel

T = TypeVar("T")


CONFIG_HELP = ("the cluster's config file (YAML), or a NATS URL (nats://HOST:4222: the config the cluster keeps on "
               "the bus; secrets from $BEACH_PRIVATE_KEY_FILE, $BEACH_ADMIN_TOKEN_FILE, $BEACH_AUTH_FILE)")


def add_config(parser: argparse.ArgumentParser) -> None:
    """The positional CONFIG argument every cluster command takes: a config file or a NATS URL."""
    parser.add_argument("config", metavar="CONFIG", help=CONFIG_HELP)


def add_realm(parser: argparse.ArgumentParser, what: str = "the realm to work in") -> None:
    """The ``--realm`` option (default: the config's ``realm:``, else global)."""
    parser.add_argument("--realm", default=None, help=f"{what} (default: the config's realm, else global)")


def add_json(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option of listing commands."""
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")


def connected(args: argparse.Namespace, work: Callable[[AsyncBeach], Awaitable[T]]) -> T:
    """Connect to the cluster of ``args.config`` (a file or a URL) in ``args.realm`` (default: the
    config's), say once whether the cluster is open to anyone, run ``work(client)`` and disconnect;
    `ClosedError` if the server closes the connection for good meanwhile (a tool never waits on a
    dead one)."""

    async def run() -> T:
        client = await AsyncBeach.open(args.config, realm=getattr(args, "realm", None))
        try:
            notice = client.session.open_notice()
            if notice:
                print(f"beach: {notice}", file=sys.stderr)
            return await client.session.unless_lost(work(client))
        finally:
            await client.close()

    return beach_loop.run(run())


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


def uids(client: AsyncBeach, given: Sequence[str]) -> list[str]:
    """The full uids of actors given by uid or unique uid prefix (see `AsyncBeach.resolveUid`):
    `UsageError` for an ambiguous one, `NotFound` (exit 1) for one no live actor has."""
    return [client.resolveUid(uid) for uid in given]


def fail(message: str) -> int:
    """Print a one-line failure to stderr; return exit code 1."""
    print(f"beach: {message}", file=sys.stderr)
    return 1


@contextmanager
def progress_bar(what: str, quiet: bool, total: int | None = None) -> Iterator[Any]:
    """A progress bar on stderr (none with ``quiet``, or when stderr is not a terminal); yields
    ``update(done, total[, last])``. ``total=None``: bytes (an upload), else a count."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn

    columns = [TextColumn(what), BarColumn(), DownloadColumn() if total is None else MofNCompleteColumn(),
               TextColumn("{task.fields[last]}")]
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=quiet or not console.is_terminal) as progress:
        task = progress.add_task(what, total=total, last="")

        def update(done: int, total: int, last: str = "") -> None:
            progress.update(task, completed=done, total=total, last=last)

        yield update


def replaced(args: argparse.Namespace, result: dict[str, Any], title: str, verb: str) -> int:
    """Print what a rollout or a drain replaced (old → new, on which node); fail naming the first
    actor that was not ``verb``."""
    emit(args, result, ("old", "new", "node"), lambda: [[r["old"], r["new"], r["node"]] for r in result["replaced"]],
         title=title)
    if result["failed"]:
        uid, error = next(iter(result["failed"].items()))
        return fail(f"{len(result['failed'])} actor(s) not {verb}; {uid}: {error}")
    return 0
