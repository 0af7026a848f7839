"""``beach patrol apply | remove | list``: declared numbers of actors, kept running by the cluster."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import msgspec

from beach.cli.common import add_config, add_json, connected, emit, fail
from beach.client.core import AsyncBeach
from beach.errors import UsageError
from beach.state.model import ClusterModel


async def _wait_for_patrol(model: ClusterModel, owner: str, timeout: float) -> bool:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    deadline = time.monotonic() + timeout
    with Progress(TextColumn(f"patrol {owner}: actors running"), BarColumn(), MofNCompleteColumn(),
                  transient=True) as progress:
        task = progress.add_task("patrol", total=None)
        while time.monotonic() < deadline:
            found: list[dict[str, Any] | None] = [p for p in model.patrols() if p["owner"] == owner]
            [spec] = found or [None]
            if spec is not None:
                target = sum(e["target"] or 0 for e in spec["entries"])
                running = sum(min(e["running"], e["target"] or 0) for e in spec["entries"])
                progress.update(task, total=target, completed=running)
                if running >= target:
                    return True
            await asyncio.sleep(0.2)
    return False


def patrol(args: argparse.Namespace) -> int:
    """Apply a patrol spec (YAML, or the original's Python patrol file), remove one by owner (its
    actors stop), or list them with what runs against what they ask for."""
    if args.action != "list" and not args.target:
        raise UsageError(f"patrol {args.action} needs a {'spec file' if args.action == 'apply' else 'owner'}")

    async def run(client: AsyncBeach) -> int:
        if args.action == "apply":
            spec = await client.applyPatrol(args.target, owner=args.owner, realm=args.realm)
            print(f"patrol spec {spec.owner!r} applied: " + ", ".join(
                f"{e.name} ({e.actorName} x {msgspec.to_builtins(e.instances)})" for e in spec.actors))
            if args.wait:
                model = ClusterModel(client)
                await model.start()
                try:
                    if not await _wait_for_patrol(model, spec.owner, args.timeout):
                        return fail(f"patrol {spec.owner!r}: not every actor is running after {args.timeout:g}s")
                finally:
                    await model.stop()
                print(f"patrol spec {spec.owner!r}: every actor is running")
            return 0
        if args.action == "remove":
            if not await client.removePatrol(args.target):
                return fail(f"no patrol spec {args.target!r}")
            print(f"patrol spec {args.target!r} removed: its actors stop")
            return 0
        model = ClusterModel(client)
        await model.start()
        try:
            specs = model.patrols()
        finally:
            await model.stop()
        emit(args, specs, ("owner", "realm", "entry", "actor", "category", "running / target"),
             lambda: [[p["owner"], p["realm"], e["name"], e["actor"], ", ".join(e["category"] or []),
                       f"{e['running']} / {e['target']}"] for p in specs for e in p["entries"]])
        return 0

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``patrol``."""
    p = sub.add_parser("patrol", help="apply, remove or list patrol specs", description=patrol.__doc__)
    p.add_argument("action", choices=("apply", "remove", "list"), help="what to do")
    add_config(p)
    p.add_argument("target", nargs="?", metavar="SPEC|OWNER", help="the spec file (apply) or its owner (remove)")
    p.add_argument("--owner", help="apply: the owner name (default: the spec's, or the file's name)")
    p.add_argument("--realm", default=None,
                   help="apply: the realm of a Python patrol file (default: the config's realm, else global)")
    p.add_argument("--wait", action="store_true", help="apply: wait (with progress) until every actor runs")
    p.add_argument("--timeout", type=float, default=120.0, help="how long --wait waits, in seconds (default 120)")
    add_json(p)
    p.set_defaults(func=patrol)
