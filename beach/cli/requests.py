"""``beach request`` and ``beach broadcast``: talking to actors from a shell."""

from __future__ import annotations

import argparse
import sys
import time

from beach import output
from beach.cli.common import add_config, add_realm, connected, fail
from beach.client.core import AsyncBeach
from beach.errors import StreamError


def request(args: argparse.Namespace) -> int:
    """Send one request (or, with --from-all, one to every actor of the category) and print the reply's
    data as JSON (with --stream, each item a generator handler yields, one JSON line each, as it
    comes); exit 1 if it failed (the reason on stderr)."""
    data = output.parse_data(args.data, "--data")

    async def run(client: AsyncBeach) -> int:
        handle = client.getActorHandle(args.category, mode="affinity" if args.key is not None else "random",
                                       ident=args.ident, timeout=args.timeout)
        if args.from_all:
            future = await handle.arequestFromAll(args.type, data, timeout=args.timeout)
            responses = await future.wait(args.timeout + 1)
            print(output.dumps([{"ok": r.isSuccess, "error": r.error, "data": r.data, "uid": r.uid, "node": r.node}
                                for r in responses]))
            if not responses:
                return fail(f"no actors available in category {args.category!r} of realm {client.realm!r}")
            return 0 if all(r.isSuccess for r in responses) else 1
        if args.stream:
            try:
                async for item in handle.astream(args.type, data, key=args.key):
                    print(output.dumps_line(item), flush=True)
            except StreamError as err:
                return fail(err.error)
            return 0
        started = time.monotonic()
        response = await handle.arequest(args.type, data, key=args.key, nRetries=args.retries)
        if args.verbose:
            print(f"{(time.monotonic() - started) * 1000:.1f} ms", file=sys.stderr)
        if response.isSuccess:
            print(output.dumps(response.data))
            return 0
        return fail(output.describe_failure(response))

    return connected(args, run)


def broadcast(args: argparse.Namespace) -> int:
    """Send a request to every actor of the category without waiting for replies."""
    data = output.parse_data(args.data, "--data")

    async def run(client: AsyncBeach) -> int:
        handle = client.getActorHandle(args.category, ident=args.ident)
        count = handle.getNumAvailable()
        await handle.abroadcast(args.type, data)
        await client.session.nc.flush(5)
        print(f"sent to {count} actor(s) of {args.category!r}")
        return 0 if count else 1

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``request`` and ``broadcast``."""
    p = sub.add_parser("request", help="send one request and print the reply", description=request.__doc__)
    _message(p, "where to send it (one actor of the category)")
    p.add_argument("--timeout", "-t", type=float, default=10.0, help="seconds to wait for the reply (default 10)")
    p.add_argument("--key", help="route by this affinity key (the actor that owns it)")
    p.add_argument("--retries", type=int, default=0, help="retries after a timeout or 'busy' (default 0)")
    p.add_argument("--from-all", "--all", action="store_true", dest="from_all",
                   help="ask every actor of the category and print every reply")
    p.add_argument("--stream", action="store_true",
                   help="print each item a generator handler yields as it comes, one JSON line each "
                        "(--timeout: the longest wait between two items)")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the round-trip time")
    p.set_defaults(func=request)
    p = sub.add_parser("broadcast", help="send a request to every actor of a category", description=broadcast.__doc__)
    _message(p, "every actor of this category gets it")
    p.set_defaults(func=broadcast)


def _message(parser: argparse.ArgumentParser, where: str) -> None:
    """The arguments of a message to actors: config, category, type, data, realm, ident."""
    add_config(parser)
    parser.add_argument("category", metavar="CATEGORY", help=where)
    parser.add_argument("type", metavar="TYPE", help="the request type")
    parser.add_argument("--data", "-d", help="the request data: JSON or a Python literal (default {})")
    add_realm(parser)
    parser.add_argument("--ident", "-i", help="the trust ident to send")
