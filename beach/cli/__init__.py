"""The ``beach`` command: run nodes, watch and steer the cluster from a shell.

Every subcommand has ``--help``. Listing commands print human tables by default and JSON with
``--json``; a failure prints one line, ``beach: <what went wrong>``, and exits 1 (2 for a usage
error or a bad config). The subcommands live in this package, one module per kind of work:

* `beach.cli.node`     up, node
* `beach.cli.cluster`  status, nodes, health, actors
* `beach.cli.actors`   add, stop, flush
* `beach.cli.requests` request, broadcast
* `beach.cli.logs`     logs, stack
* `beach.cli.state`    state (actor state: keys, values, deleting a key)
* `beach.cli.patrol`   patrol apply | remove | list
* `beach.cli.code`     deploy, code list | rollback, rollout
* `beach.cli.dev`      dev (deploy on save)
* `beach.cli.operations`  drain, uncordon, backup, restore, config push
* `beach.cli.tools`    gen-key, shell, console, dashboard, restbridge
"""

from __future__ import annotations

import argparse

from beach.cli import actors, cluster, code, dev, logs, node, operations, patrol, requests, secure, state, tools
from beach.output import run_tool

COMMANDS = (node, cluster, actors, requests, logs, state, patrol, code, dev, operations, secure, tools)


def parser() -> argparse.ArgumentParser:
    """The ``beach`` argument parser, with every subcommand."""
    top = argparse.ArgumentParser(prog="beach", description="beach: plain Python actors over NATS. "
                                  "Run 'beach COMMAND --help' for a command's arguments.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``beach`` command; returns the exit code."""
    args = parser().parse_args(argv)
    return run_tool(lambda: args.func(args))
