"""``beach console CONFIG`` (also ``python -m beach.console CONFIG``): a live Textual console of a
beach cluster — its nodes with their load, realms, categories and actors, requests, logs,
supervision and patrols, and (with the config's admin token) the actions that change it.

Layout (after Posting): the App in `app`, one widget a file under `widgets`, the modal screens
under `screens`, every style in ``console.tcss``, the command palette's entries in `commands`,
the console's own messages in `messages`.
"""

from __future__ import annotations

import argparse
import sys

from beach import loop as beach_loop
from beach.console.app import BeachConsole
from beach.errors import BeachError
from beach.state import clusterconfig
from beach.wire import subjects

__all__ = ["BeachConsole", "main"]


def main(argv: list[str] | None = None, prog: str = "python -m beach.console") -> int:
    """Run the console; return the exit status: 0 when the person quit, 2 for a bad config, 1 when
    the cluster cannot be reached (one line on stderr, ``beach: <what went wrong>``)."""
    parser = argparse.ArgumentParser(prog=prog, description="The live terminal console of a beach cluster.")
    parser.add_argument("config", metavar="CONFIG", help="the cluster's config file (YAML), or a NATS URL")
    parser.add_argument("--realm", default=None, help="the realm to start in (default: the config's realm, "
                        "else global)")
    args = parser.parse_args(argv)
    try:
        # check the config and the realm here, so that a mistake is told before the screen is taken
        clusterconfig.check(args.config)
        if args.realm is not None:
            subjects.check_realm(args.realm)
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 2
    app = BeachConsole(args.config, realm=args.realm)
    app.run(loop=beach_loop.new())
    if app.error is not None:  # the app could not connect: it ended at once, and says why here
        print(f"beach: {app.error}", file=sys.stderr)
        return int(app.return_code or 1)
    return int(app.return_code or 0)
