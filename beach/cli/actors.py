"""``beach add``, ``beach stop`` and ``beach flush``: starting and stopping actors."""

from __future__ import annotations

import argparse

from beach import output
from beach.cli.common import add_config, add_json, add_realm, connected, emit, fail, uids
from beach.client.core import AsyncBeach
from beach.client.response import ActorResponse
from beach.output import add_spawn_options, spawn_options


def add(args: argparse.Namespace) -> int:
    """Start actors of class NAME in CATEGORY (``--count N``: N of them, with progress); print their
    uids. Needs the admin token when the cluster has one."""
    options = spawn_options(args)

    async def start(client: AsyncBeach) -> int:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        started: list[ActorResponse] = []
        failed: list[ActorResponse] = []
        with Progress(TextColumn(f"starting {args.name}"), BarColumn(), MofNCompleteColumn(), transient=True,
                      disable=args.count < 2 or args.json) as progress:
            task = progress.add_task("add", total=args.count)
            for _ in range(args.count):
                response = await client.addActor(args.name, args.category, **options)
                (started if response.isSuccess else failed).append(response)
                progress.advance(task)
                if not response.isSuccess and not started:
                    break  # the first one failed: the rest would fail the same way
        emit(args, [r.data for r in started], ("uid", "node", "host"),
             lambda: [[r.data["uid"], r.data["node"], r.data["host"]] for r in started])
        if failed:
            return fail(f"{len(failed)} of {args.count} not started: {output.describe_failure(failed[0])}")
        return 0

    return connected(args, start)


def stop(args: argparse.Namespace) -> int:
    """Stop actors by uid and/or by category (in the realm); each finishes its requests in progress
    and runs its deinit."""
    if not args.uids and not args.category:
        return fail("say which actors to stop: give UIDs and/or --category")

    async def run(client: AsyncBeach) -> int:
        given = uids(client, args.uids)  # every prefix resolved before anything stops
        response = await client.stopActors(withId=given or None, withCategory=args.category or None,
                                           delay=args.delay)
        emit(args, response.data, ("stopped", "not found"),
             lambda: [[", ".join(response.data["stopped"]) or "-", ", ".join(response.data["not_found"]) or "-"]])
        if not response.isSuccess:
            return fail(output.describe_failure(response))
        if response.data["not_found"]:
            return fail(f"not found (gone meanwhile?): {', '.join(response.data['not_found'])}")
        if not response.data["stopped"]:
            elsewhere = [e for c in args.category or [] if (e := client.session.view.elsewhere(client.realm, c))]
            return fail(f"no actor under {', '.join(map(repr, args.category or []))} in realm {client.realm!r}"
                        + (f"; {elsewhere[0]} (--realm)" if elsewhere else ""))
        return 0

    return connected(args, run)


def flush(args: argparse.Namespace) -> int:
    """Stop every actor of every realm on every node, and forget every supervised actor and patrol
    spec. Actor state stays (actors started later in the same categories find it) unless --state.
    Needs --confirm (and the admin token when the cluster has one)."""
    if not args.confirm:
        return fail("flush stops every actor in every realm: add --confirm to do it")

    async def run(client: AsyncBeach) -> int:
        from rich.console import Console

        with Console(stderr=True).status(f"flushing {len(client.session.view.nodes)} node(s)"):
            ok = await client.flush(state=args.state)
        print(("flushed, actor state deleted" if args.state else "flushed (actor state kept)") if ok
              else "flush failed on at least one node")
        return 0 if ok else 1

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``add``, ``stop`` and ``flush``."""
    p = sub.add_parser("add", help="start actors", description=add.__doc__)
    add_config(p)
    p.add_argument("name", metavar="NAME", help="the actor class: <code_directory>/<realm>/<NAME>.py, or module:Class")
    p.add_argument("category", metavar="CATEGORY", nargs="+", help="the categories it serves")
    add_realm(p, "the realm to start it in")
    p.add_argument("--count", type=int, default=1, help="how many to start (default 1)")
    add_spawn_options(p)
    add_json(p)
    p.set_defaults(func=add)
    p = sub.add_parser("stop", help="stop actors by uid or category", description=stop.__doc__)
    add_config(p)
    p.add_argument("uids", metavar="UID", nargs="*", help="actors to stop (a uid, or a unique prefix of one)")
    p.add_argument("-c", "--category", action="append", help="stop every actor under this category (repeatable)")
    add_realm(p, "the realm of --category")
    p.add_argument("--delay", type=float, help="stop them one at a time, this many seconds apart")
    add_json(p)
    p.set_defaults(func=stop)
    p = sub.add_parser("flush", help="stop every actor in every realm (needs --confirm)", description=flush.__doc__)
    add_config(p)
    p.add_argument("--confirm", action="store_true", help="yes, stop everything")
    p.add_argument("--state", action="store_true", help="delete the actors' state too (kept by default)")
    p.set_defaults(func=flush)
