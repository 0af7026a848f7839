"""``beach add``, ``beach stop`` and ``beach flush``: starting and stopping actors."""

from __future__ import annotations

import argparse
from typing import Any

from beach import output
from beach.cli.common import add_config, add_json, add_realm, connected, emit, fail, uids
from beach.client.core import AsyncBeach
from beach.client.response import ActorResponse


def add(args: argparse.Namespace) -> int:
    """Start actors of class NAME in CATEGORY (``--count N``: N of them, with progress); print their
    uids. Needs the admin token when the cluster has one."""
    options: dict[str, Any] = dict(
        strategy=args.strategy, strategy_hint=args.hint, parameters=output.parse_data(args.params, "--params"),
        resources=output.parse_data(args.resources, "--resources"), isIsolated=args.isolated,
        secretIdent=args.ident, trustedIdents=args.trusted or [], n_concurrent=args.n_concurrent,
        max_concurrent=args.max_concurrent, is_drainable=args.drainable, time_to_drain=args.time_to_drain,
        owner=args.owner, log_level=args.log_level, restart=args.restart, max_restarts=args.max_restarts)

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
    p.add_argument("-s", "--strategy", default="random",
                   help="random, resource, affinity, host_affinity, repulsion or roundrobin (default random)")
    p.add_argument("--hint", help="the strategy's hint (a category, or a node for host_affinity)")
    p.add_argument("-p", "--params", help="parameters for init(): JSON or a Python literal")
    p.add_argument("-r", "--resources", help="resources for init(): JSON or a Python literal")
    p.add_argument("-i", "--isolated", action="store_true", help="run it in a process of its own")
    p.add_argument("--ident", help="the ident it sends with its own requests (secretIdent)")
    p.add_argument("-t", "--trusted", action="append", metavar="IDENT", help="an ident it accepts (repeatable)")
    p.add_argument("-o", "--n-concurrent", type=int, default=1, help="the original's n_concurrent (default 1)")
    p.add_argument("--max-concurrent", type=int, help="requests it serves at once before answering 'busy'")
    p.add_argument("-d", "--drainable", action="store_true", help="it may be recycled (time_to_drain, memory)")
    p.add_argument("--time-to-drain", type=float, metavar="S", help="recycle it after S seconds (needs -d)")
    p.add_argument("--owner", help="a free-form owner tag")
    p.add_argument("--log-level", help="its log level (DEBUG, INFO, ...)")
    p.add_argument("--restart", default="never", choices=("never", "on-failure", "always"),
                   help="keep it running: restart it when it fails (default never)")
    p.add_argument("--max-restarts", type=int, default=5, help="restarts within 60 s before it is marked failed")
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
