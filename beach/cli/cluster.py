"""``beach status``, ``beach nodes`` and ``beach actors``: what runs where, from the cluster model;
``beach health``: is the bus ready, is a node up (a readiness probe)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from beach import loop as beach_loop
from beach.cli.common import add_config, add_json, emit, with_model
from beach.client.core import AsyncBeach
from beach.errors import BusError, Unhealthy, UsageError
from beach.output import duration
from beach.state.model import ClusterModel


def _load_cell(actor: dict[str, Any]) -> str:
    if actor["inflight"] is None:
        return "-"
    mark = " FULL" if actor["saturated"] else ""
    return f"{actor['inflight']}/{actor['bound']}{mark}"


def actor_rows(actors: list[dict[str, Any]]) -> list[Sequence[Any]]:
    """Table rows for actors (shared by ``actors`` and ``status``)."""
    return [[a["uid"][:12], f"{a['realm']}/{a['name']}", a.get("version") or "-", ", ".join(a["categories"]),
             a["node"], a["pid"], "yes" if a["isolated"] else "", _load_cell(a), f"{a['rps']:.1f}",
             a["counters"].get("processed", "-"), a["restarts"] or "", duration(a["uptime"])] for a in actors]


ACTOR_COLUMNS = ("uid", "realm/class", "code", "categories", "node", "pid", "isolated", "in-flight", "req/s",
                 "served", "restarts", "up")


def node_rows(nodes: list[dict[str, Any]]) -> list[Sequence[Any]]:
    """Table rows for nodes."""
    return [[n["id"] + (" (stopping)" if n.get("stopping") else " (cordoned)" if n.get("cordoned") else ""),
             n["hostname"],
             ", ".join(a for a in n["addresses"] if not a.startswith("127.")) or "127.0.0.1", n["cores"],
             f"{n['cpu']:.0f}%", f"{n['mem']:.0f}%", n["n_actors"], len(n["hosts"])]
            for n in nodes]


NODE_COLUMNS = ("node", "hostname", "addresses", "cores", "cpu", "mem", "actors", "hosts")


def _supervised_state(actor: dict[str, Any]) -> str:
    if actor["running"] or actor["state"] != "running":
        return str(actor["state"])
    if actor["waiting_for"]:
        return f"waiting for node {actor['waiting_for']}"
    return "waiting for a node" if actor["last_error"] else "restarting"


def status(args: argparse.Namespace) -> int:
    """Print the cluster at a glance: nodes, realms and their categories, supervised actors, patrols,
    the actor state (keys and bytes per category) and the size of each of beach's buckets."""

    async def show(model: ClusterModel) -> int:
        summary = {**model.summary(), "nodes": model.nodes(), "realms": model.realms(),
                   "supervised": model.supervised(), "patrols": model.patrols(), "state": model.state()}
        if args.json:
            emit(args, summary)
            return 0
        from beach import output

        output.show(f"[bold]{summary['nodes'].__len__()} node(s)[/bold], {model.summary()['actors']} actor(s) in "
                    f"{len(summary['realms'])} realm(s)")
        output.show(output.table(NODE_COLUMNS, node_rows(summary["nodes"]), title="Nodes"))
        rows = [[realm, category, count] for realm, categories in summary["realms"].items()
                for category, count in categories.items()]
        output.show(output.table(("realm", "category", "actors"), rows, title="Categories"))
        if summary["supervised"]:
            output.show(output.table(
                ("sid", "actor", "code", "categories", "state", "running", "restarts", "last error"),
                [[s["sid"][:12], f"{s['realm']}/{s['name']}", s["version"] or "-", ", ".join(s["categories"] or []),
                  _supervised_state(s), "yes" if s["running"] else "no", s["restarts"], s["last_error"] or ""]
                 for s in summary["supervised"]], title="Supervised"))
        if summary["patrols"]:
            output.show(output.table(("owner", "entry", "actor", "running / target"),
                                     [[p["owner"], e["name"], e["actor"], f"{e['running']} / {e['target']}"]
                                      for p in summary["patrols"] for e in p["entries"]], title="Patrol"))
        state = summary["state"]
        if state["categories"]:
            output.show(output.table(("realm", "category", "keys", "bytes", "actors"),
                                     [[c["realm"], c["category"], c["keys"], output.size(c["bytes"]), c["actors"]]
                                      for c in state["categories"]], title="Actor state"))
        if state["buckets"]:
            output.show(output.table(("bucket", "bytes", "messages"),
                                     [[b["name"], output.size(b["bytes"]), b["messages"]] for b in state["buckets"]],
                                     title="Buckets"))
        return 0

    return with_model(args, show, load=True)


def nodes(args: argparse.Namespace) -> int:
    """List the live nodes with their health; ``--wait N`` first waits (with progress) until N are up.
    'beach nodes remove CONFIG NODE' takes a node gone for good out of the cluster's JetStream peer
    set (its JetStream place goes to the next node that joins). Removing needs admin rights."""
    words = list(args.words)
    if words[0] == "remove":
        if len(words) != 3:
            raise UsageError("usage: beach nodes remove CONFIG NODE")
        from beach.cli.operations import remove_node

        args.config, args.node = words[1], words[2]
        return remove_node(args)
    if len(words) != 1:
        raise UsageError("usage: beach nodes CONFIG [--wait N], or beach nodes remove CONFIG NODE")
    args.config = words[0]

    async def show(model: ClusterModel) -> int:
        if args.wait:
            await _wait_for_nodes(model, args.wait, args.timeout)
        emit(args, model.nodes(), NODE_COLUMNS, lambda: node_rows(model.nodes()))
        return 0

    return with_model(args, show)


async def _wait_for_nodes(model: ClusterModel, count: int, timeout: float) -> None:
    from rich.progress import BarColumn, Progress, TextColumn

    deadline = time.monotonic() + timeout
    with Progress(TextColumn("waiting for nodes"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  transient=True) as progress:
        task = progress.add_task("nodes", total=count)
        while len(model.view.nodes) < count:
            progress.update(task, completed=len(model.view.nodes))
            if time.monotonic() > deadline:
                raise BusError(f"only {len(model.view.nodes)} of {count} nodes came up within {timeout:g}s")
            await asyncio.sleep(0.2)
        progress.update(task, completed=count)


def health(args: argparse.Namespace) -> int:
    """Exit 0 if the bus is ready (NATS answers, JetStream has a leader) and, with --node, if that
    node is up: its agent in the registry and sending heartbeats now, not stopping, each of its
    actor hosts answering. Otherwise print what is wrong and exit 1. With --wait, keep trying
    that long first (a start-up gate: compose starts the beach services after it)."""
    from beach.operations import health as probes

    async def attempt() -> dict[str, Any]:
        client = await AsyncBeach.open(args.config)
        try:
            return await probes.probe(client, args.node)
        finally:
            await client.close()

    async def run() -> dict[str, Any]:
        deadline = time.monotonic() + args.wait
        while True:
            try:
                return await attempt()
            except (BusError, Unhealthy) as err:
                if time.monotonic() + 1 > deadline:
                    raise Unhealthy(f"{err} (waited {args.wait:g}s)" if args.wait else str(err)) from None
            await asyncio.sleep(1)

    result = beach_loop.run(run())
    if args.json:
        emit(args, result)
    else:
        print("healthy: bus ready" + (f"; node {result['node']} up, {len(result['hosts'])} actor host(s) answering"
                                      if "node" in result else ""))
    return 0


def actors(args: argparse.Namespace) -> int:
    """List the live actors (of a realm, under a category): where they run, their load and counters."""

    async def show(model: ClusterModel) -> int:
        found = model.actors(args.realm, args.category)
        emit(args, found, ACTOR_COLUMNS, lambda: actor_rows(found))
        if args.category and not found:  # a forgotten --realm must not look like an empty cluster
            realm = args.realm or model.client.realm
            elsewhere = model.view.elsewhere(realm, args.category)
            print(f"beach: no actor under {args.category!r} in realm {realm!r}" + (
                f"; {elsewhere} (--realm)" if elsewhere else ""), file=sys.stderr)
        return 0

    return with_model(args, show, load=True)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``, ``nodes``, ``health`` and ``actors``."""
    p = sub.add_parser("status", help="the cluster at a glance", description=status.__doc__)
    add_config(p)
    add_json(p)
    p.set_defaults(func=status)
    p = sub.add_parser("nodes", help="list the nodes and their health (or remove one gone for good)",
                       description=nodes.__doc__, usage="beach nodes [--json] [--wait N] [--timeout T] CONFIG\n"
                       "       beach nodes remove [--json] CONFIG NODE")
    p.add_argument("words", nargs="+", metavar="CONFIG", help="the cluster's config file (YAML); or 'remove', "
                   "the config file and the node to remove")
    add_json(p)
    p.add_argument("--wait", type=int, default=0, metavar="N", help="first wait until N nodes are up")
    p.add_argument("--timeout", type=float, default=120.0, help="how long --wait waits, in seconds (default 120)")
    p.set_defaults(func=nodes)
    p = sub.add_parser("health", help="is the bus ready, is a node up (exit 0 or 1)", description=health.__doc__)
    add_config(p)
    add_json(p)
    p.add_argument("--node", metavar="ID", help="also check this node ('local': the node agent of this machine)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="keep trying this long before failing (default: one try)")
    p.set_defaults(func=health)
    p = sub.add_parser("actors", help="list the actors: where they run, their load", description=actors.__doc__)
    add_config(p)
    p.add_argument("--realm", default=None, help="only this realm (default: every realm)")
    p.add_argument("--category", help="only actors under this category (by segment; in --realm, default the "
                   "config's realm)")
    add_json(p)
    p.set_defaults(func=actors)
