"""``beach drain`` / ``uncordon``, ``beach backup`` / ``restore`` and ``beach config push``: looking
after the cluster itself."""

from __future__ import annotations

import argparse

from beach import output
from beach.cli.common import add_config, add_json, connected, emit, fail, progress_bar, replaced
from beach.client.core import AsyncBeach
from beach.operations import backup, rollout
from beach.state import clusterconfig

CONFIG_PUSH_SECONDS = 30.0  # the node checks, seals and writes the shareable settings
REMOVE_SECONDS = 30.0  # the node asks JetStream's meta leader, then forgets the servers


def drain(args: argparse.Namespace) -> int:
    """Cordon NODE (no new actors go there) and move every actor off it, new ones first, losing no
    request: before maintenance. 'beach uncordon NODE' lets actors back. Needs admin rights."""

    async def run(client: AsyncBeach) -> int:
        with progress_bar(f"draining {args.node}", args.json, total=0) as update:
            result = await rollout.drain(client, args.node, args.batch, args.grace, update)
        return replaced(args, result, f"node {args.node} cordoned and drained: {len(result['replaced'])} actor(s) "
                                      f"moved", "moved")

    return connected(args, run)


def uncordon(args: argparse.Namespace) -> int:
    """Let NODE take new actors again (after 'beach drain'). Needs admin rights."""

    async def run(client: AsyncBeach) -> int:
        result = await rollout.cordon(client, args.node, False)
        emit(args, result, ("node", "cordoned"), lambda: [[result["node"], result["cordoned"]]])
        return 0

    return connected(args, run)


def backup_command(args: argparse.Namespace) -> int:
    """Write the desired state — supervised actors, patrol specs, deployed code versions and their
    bundles — and the actors' state (every key of every category) to FILE (mode 0600), for 'beach
    restore'. Reading actor state needs admin rights (a realm admin's backup holds its realm's)."""

    async def run(client: AsyncBeach) -> int:
        content = await backup.backup(client)
        size = backup.write(args.file, content)
        summary = {"file": args.file, "bytes": size, **backup.counts(content)}
        emit(args, summary, tuple(summary), lambda: [[summary[k] if k != "bytes" else output.size(size)
                                                      for k in summary]])
        return 0

    return connected(args, run)


def restore_command(args: argparse.Namespace) -> int:
    """Restore the desired state and the actor state of a 'beach backup' FILE into this cluster (a
    fresh one, or the same after a loss); the supervisor starts what it asks for. Keys of actor
    state in the backup overwrite the cluster's; others stay. Needs admin rights."""
    content = backup.read(args.file)

    async def run(client: AsyncBeach) -> int:
        counts = await backup.restore(client, content)
        emit(args, counts, tuple(counts), lambda: [[counts[k] for k in counts]])
        return 0

    return connected(args, run)


def config_push(args: argparse.Namespace) -> int:
    """Store CONFIG's shareable settings on the bus, for nodes that join with 'beach node nats://...':
    secrets (admin token, keys, credentials) and local paths are left out. Needs admin rights."""
    raw = clusterconfig.read_raw(args.config)

    async def run(client: AsyncBeach) -> int:
        client.session.require_admin("config push")
        response = await client._any_node_call("config", {"config": raw}, CONFIG_PUSH_SECONDS)
        if not response.isSuccess:
            return fail(f"config not pushed: {output.describe_failure(response)}")
        emit(args, response.data, ("pushed", "left out"),
             lambda: [[", ".join(response.data["pushed"]) or "-", ", ".join(response.data["left_out"]) or "-"]])
        return 0

    return connected(args, run)


def remove_node(args: argparse.Namespace) -> int:
    """Take NODE, gone for good, out of the cluster's JetStream peer set and forget its NATS
    servers ('beach nodes remove CONFIG NODE'). Needs admin rights."""

    async def run(client: AsyncBeach) -> int:
        client.session.require_admin("nodes remove")
        response = await client._any_node_call("remove_node", {"node": args.node}, REMOVE_SECONDS, avoid=args.node)
        if not response.isSuccess:
            return fail(f"node {args.node} not removed: {output.describe_failure(response)}")
        emit(args, response.data, ("node", "servers removed"),
             lambda: [[response.data["node"], ", ".join(response.data["servers"])]])
        return 0

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``drain``, ``uncordon``, ``backup``, ``restore`` and ``config``."""
    for name, func, text in (("drain", drain, "cordon a node and move its actors off it"),
                             ("uncordon", uncordon, "let a drained node take actors again")):
        p = sub.add_parser(name, help=text, description=func.__doc__)
        add_config(p)
        p.add_argument("node", metavar="NODE", help="the node's id (see 'beach nodes')")
        if func is drain:
            p.add_argument("--batch", type=int, default=1, help="how many actors to move at once (default 1)")
            p.add_argument("--grace", type=float, default=rollout.LEAVE_GRACE,
                           help=f"seconds a moved actor serves on after leaving (default {rollout.LEAVE_GRACE:g})")
        add_json(p)
        p.set_defaults(func=func)
    for name, func, text in (("backup", backup_command, "write the desired state and actor state to a file"),
                             ("restore", restore_command, "restore the desired and actor state from a backup file")):
        p = sub.add_parser(name, help=text, description=func.__doc__)
        add_config(p)
        p.add_argument("file", metavar="FILE", help="the backup file")
        add_json(p)
        p.set_defaults(func=func)
    p = sub.add_parser("config", help="the cluster's config on the bus",
                       description="The cluster's shareable config, kept on the bus for nodes that join by URL.")
    actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION", help="push")
    q = actions.add_parser("push", help="store the config's shareable settings on the bus",
                           description=config_push.__doc__)
    add_config(q)
    add_json(q)
    q.set_defaults(func=config_push)
