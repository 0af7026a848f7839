"""``beach deploy``, ``beach code list|rollback`` and ``beach rollout``: realms' code over the bus."""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec

from beach import output
from beach.cli.common import add_config, add_json, connected, emit, progress_bar, replaced
from beach.client.core import AsyncBeach
from beach.code import deploy
from beach.operations import rollout
from beach.state.desired import CodeVersion


def _version_row(v: CodeVersion, current: bool) -> list[Any]:
    return [v.realm, v.version + (" *" if current else ""), v.who, output.duration(time.time() - v.when) + " ago",
            v.digest[:19], output.size(v.size), v.files, ", ".join(v.requirements) or "-"]


VERSION_COLUMNS = ("realm", "version", "who", "when", "digest", "size", "files", "requirements")


def deploy_command(args: argparse.Namespace) -> int:
    """Upload DIR (the realm's code: modules, packages, data files) as a new version of REALM and
    make it current: new actors of the realm run it; running ones keep theirs until 'beach rollout'.
    Needs admin rights."""

    async def run(client: AsyncBeach) -> int:
        with progress_bar(f"uploading {args.directory}", args.json) as update:
            record = await deploy.deploy(client, args.realm, args.directory, args.version, update)
        emit(args, record, VERSION_COLUMNS, lambda: [_version_row(record, True)])
        return 0

    return connected(args, run)


def code_list(args: argparse.Namespace) -> int:
    """List the deployed versions (of REALM, or of every realm); * marks the current one."""

    async def run(client: AsyncBeach) -> int:
        found = await deploy.versions(client, args.realm)
        emit(args, [{**msgspec.structs.asdict(v), "current": current} for v, current in found], VERSION_COLUMNS,
             lambda: [_version_row(v, current) for v, current in found])
        return 0

    return connected(args, run)


def code_rollback(args: argparse.Namespace) -> int:
    """Make VERSION (default: the one before the current) REALM's current version again; running
    actors keep theirs until 'beach rollout'. Needs admin rights."""

    async def run(client: AsyncBeach) -> int:
        record = await deploy.rollback(client, args.realm, args.version)
        emit(args, record, ("realm", "current", "was"), lambda: [[record.realm, record.version,
                                                                  record.previous]])
        return 0

    return connected(args, run)


def rollout_command(args: argparse.Namespace) -> int:
    """Replace every actor of CATEGORY in REALM with one running the realm's current version (or
    --version V): new one first, old one drained; returns when no actor of another version is left.
    --rollback goes back to the version before the current one. Needs admin rights."""

    async def run(client: AsyncBeach) -> int:
        with progress_bar(f"rolling out {args.category}", args.json, total=0) as update:
            result = await rollout.rollout(client, args.realm, args.category, args.version, args.batch,
                                           args.rollback, args.grace, update)
        return replaced(args, result, f"{args.category} now runs version {result['version']}: "
                                      f"{len(result['replaced'])} replaced", "replaced")

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``deploy``, ``code`` and ``rollout``."""
    p = sub.add_parser("deploy", help="upload a realm's code as a new version", description=deploy_command.__doc__)
    add_config(p)
    p.add_argument("realm", metavar="REALM", help="the realm the code is for")
    p.add_argument("directory", metavar="DIR", help="the realm's code directory (what <code_directory>/<realm>/ holds)")
    p.add_argument("--version", help="the version's name (default v<n>)")
    add_json(p)
    p.set_defaults(func=deploy_command)

    p = sub.add_parser("code", help="deployed code: list versions, roll back",
                       description="The versions of realms' code deployed with 'beach deploy'.")
    code = p.add_subparsers(dest="code_command", required=True, metavar="ACTION", help="list or rollback")
    q = code.add_parser("list", help="list deployed versions", description=code_list.__doc__)
    add_config(q)
    q.add_argument("realm", metavar="REALM", nargs="?", help="only this realm's versions")
    add_json(q)
    q.set_defaults(func=code_list)
    q = code.add_parser("rollback", help="make an earlier version current again", description=code_rollback.__doc__)
    add_config(q)
    q.add_argument("realm", metavar="REALM", help="the realm")
    q.add_argument("version", metavar="VERSION", nargs="?", help="the version to go back to (default: the previous)")
    add_json(q)
    q.set_defaults(func=code_rollback)

    p = sub.add_parser("rollout", help="move a category's actors to a version, losing no request",
                       description=rollout_command.__doc__)
    add_config(p)
    p.add_argument("realm", metavar="REALM", help="the realm")
    p.add_argument("category", metavar="CATEGORY", help="the category whose actors are replaced")
    p.add_argument("--version", help="the version to run (default: the realm's current one)")
    p.add_argument("--rollback", action="store_true", help="go back to the version before the current one")
    p.add_argument("--batch", type=int, default=1, help="how many actors to replace at once (default 1)")
    p.add_argument("--grace", type=float, default=rollout.LEAVE_GRACE,
                   help=f"seconds an old actor serves on after leaving the directory (default {rollout.LEAVE_GRACE:g})")
    add_json(p)
    p.set_defaults(func=rollout_command)
