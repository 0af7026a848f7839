"""``beach logs`` (the cluster's log lines, history and live) and ``beach stack`` (what an actor's
process is doing right now)."""

from __future__ import annotations

import argparse
import re

from beach import logs, output
from beach.cli.common import add_config, add_json, connected, fail
from beach.client.core import AsyncBeach
from beach.errors import NotFound, UsageError
from beach.wire import subjects

_PREFIX = re.compile(r"[0-9a-f]{1,31}")  # what may be a uid prefix


REQUEST_PREFIX = 8  # the characters of a request id `beach logs` shows, and the fewest --request takes


def show_logs(args: argparse.Namespace) -> int:
    """Print the cluster's log lines: what actors log (``--system``: beach's own warnings), every
    realm at info and above unless told otherwise; ``--follow`` keeps printing new ones;
    ``--request ID`` only the lines logged while serving request ID, by every actor and node that
    served it — or, given a trace id, every request of that trace (it reads every line the other
    options select: narrow it with --since)."""
    level = logs.LEVELS.get(args.level.lower())
    if level is None:
        raise UsageError(f"--level {args.level!r}: use one of {', '.join(logs.LEVELS)}")
    if args.request is not None and len(args.request) < REQUEST_PREFIX:
        raise UsageError(f"--request {args.request!r}: give a request id, or at least its first {REQUEST_PREFIX} "
                         f"characters (as beach logs shows them)")
    try:
        since = logs.since_time(args.since)
    except ValueError as err:
        raise UsageError(str(err)) from None

    async def run(client: AsyncBeach) -> int:
        uid, prefix, category = _target(client, args.target)
        kind = "sys" if args.system else "app"
        subject = logs.subject_filter(kind, args.realm, uid)
        shown = 0

        async for line in logs.read(client.session.nc, subject, since=since, follow=args.follow,
                                   accept=logs.accept(level, category, prefix, args.request),
                                   sealer=client.session.sealer):
            print(output.dumps_line(line) if args.json else logs.format_line(line), flush=True)
            shown += 1
        if prefix and not shown:
            return fail(f"no live actor, and no log line of one, has a uid starting with {prefix!r}")
        return 0

    return connected(args, run)


def _target(client: AsyncBeach, target: str | None) -> tuple[str | None, str | None, str | None]:
    """``(uid, uid prefix, category)`` of the logs' CATEGORY|UID argument: a full uid; a category
    some live actor has; a unique prefix of a live actor's uid (ambiguous: `UsageError`); else, if
    it looks like one, a prefix of a gone actor's uid (its lines outlive it); else a category."""
    if not target:
        return None, None, None
    if logs.UID.fullmatch(target):
        return target, None, None
    view = client.session.view
    category = subjects.normalize(target)
    if any(view.find(realm, category) for realm in view.realms()):
        return None, None, category
    if _PREFIX.fullmatch(target):
        try:
            return client.resolveUid(target), None, None
        except NotFound:
            return None, target, None
    return None, None, category


def stack(args: argparse.Namespace) -> int:
    """Print the Python stacks of every thread of the process running actor UID (and its asyncio
    tasks with --tasks): "what is my actor doing right now?". Threads serving the actor are marked."""

    async def run(client: AsyncBeach) -> int:
        response = await client.getStacks(client.resolveUid(args.uid))
        if not response.isSuccess:
            return fail(output.describe_failure(response))
        data = response.data
        if args.json:
            print(output.dumps(data))
            return 0
        print(f"actor {data['uid']} ({data['actor']}) in process {data['pid']} ({data['host']} on {data['node']})")
        threads = sorted(data["threads"], key=lambda t: not t["mine"])
        for thread in threads:
            serving = thread["serving"]
            mark = ""
            if serving:
                mark = f"  <- serving {serving['request']!r}" + (" (this actor)" if thread["mine"] else
                                                                  f" of {serving['uid'][:12]}")
            print(f"\nThread {thread['name']}{mark}")
            print("".join(thread["stack"]).rstrip())
        if args.tasks:
            for task in data["tasks"]:
                print(f"\nTask {task['name']} ({task['coro']})")
                print("\n".join(task["stack"]).rstrip())
        return 0

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``logs`` and ``stack``."""
    p = sub.add_parser("logs", help="show the cluster's log lines (history, and live with --follow)",
                       description=show_logs.__doc__)
    add_config(p)
    p.add_argument("target", metavar="CATEGORY|UID", nargs="?",
                   help="only this actor (a uid or a unique prefix of one), or actors under this category")
    p.add_argument("--realm", help="only this realm (default: every realm)")
    p.add_argument("--since", help="from this long ago: 30s, 10m, 2h, 1d (default: all that is kept)")
    p.add_argument("--level", default="info", help="the lowest level shown: debug, info, warning, error (default info)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines as they come (Ctrl-C ends)")
    p.add_argument("--system", action="store_true", help="beach's own warnings and errors instead of the actors'")
    p.add_argument("--request", metavar="ID", help="only the lines logged while serving request ID (its 'req': "
                   "the first 8 characters will do), by every actor that served it; or every line of trace ID")
    p.add_argument("--json", action="store_true", help="print each line as JSON (JSON Lines, for scripts)")
    p.set_defaults(func=show_logs)
    p = sub.add_parser("stack", help="the Python stacks of an actor's process", description=stack.__doc__)
    add_config(p)
    p.add_argument("uid", metavar="UID", help="the actor (a uid, or a unique prefix of one)")
    p.add_argument("--tasks", action="store_true", help="also the asyncio tasks' stacks")
    add_json(p)
    p.set_defaults(func=stack)
