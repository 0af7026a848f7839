"""The ``beach`` command.

    beach up [CONFIG] [--node-id NAME] [--run SCRIPT ...]
        Run a one-node cluster in the foreground: the embedded NATS server (when the config names
        no servers), a node agent and its actor hosts. ``--run`` runs deploy scripts (such as
        ``examples/multinode/start.py``) once the node is up. Ctrl-C or SIGTERM stops it all.
    beach node CONFIG [--node-id NAME]
        Run a node agent (the same as ``python -m nodeagent CONFIG``).
    beach request CONFIG CATEGORY TYPE [--data JSON] [--realm R] [--timeout S] [--ident I] [--all]
        Send one request and print the reply as JSON (exit 1 on failure).
    beach patrol apply CONFIG SPEC [--owner NAME]   store a patrol spec (YAML or the original's .py)
    beach patrol remove CONFIG OWNER                 forget a spec: its actors stop
    beach patrol list CONFIG                         print the specs
    beach status CONFIG                              nodes, actors per realm, supervised actors
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from . import config as beach_config
from .errors import BeachError

EXAMPLE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "examples", "multinode", "multinode.yaml")


class Scripts:
    """Deploy scripts run one after the other with this interpreter, stopped with the node."""

    STOP_SECONDS = 5.0

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.process: asyncio.subprocess.Process | None = None
        self.stopped = False

    async def run(self) -> None:
        """Run the scripts in turn, logging each one's exit code."""
        log = logging.getLogger("beach.up")
        for path in self.paths:
            if self.stopped:
                return
            self.process = await asyncio.create_subprocess_exec(sys.executable, path)
            if self.stopped:  # stop() came while the process was starting
                await self.stop()
            code = await self.process.wait()
            (log.info if code == 0 else log.warning)("%s exited with code %s", path, code)

    async def stop(self) -> None:
        """Terminate the script that is still running, if any (killed after `STOP_SECONDS`)."""
        self.stopped = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self.STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()


def _up(args: argparse.Namespace) -> int:
    from nodeagent.agent import NodeAgent

    path = args.config or EXAMPLE_CONFIG
    config = beach_config.load(path)
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s node %(name)s %(levelname)s %(message)s")
    agent = NodeAgent(config, args.node_id)

    async def main() -> None:
        node = asyncio.create_task(agent.run())
        await asyncio.wait([node, asyncio.create_task(agent.ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if node.done() or not args.run:
            return await node
        scripts = Scripts(args.run)
        running = asyncio.create_task(scripts.run())
        await asyncio.wait([node, asyncio.create_task(agent.stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
        await scripts.stop()  # a script still running when the node stops would only see errors
        running.cancel()
        await node

    asyncio.run(main())
    return 0


def _request(args: argparse.Namespace) -> int:
    from .beach_api import Beach

    data = json.loads(args.data) if args.data else {}
    with Beach(args.config, realm=args.realm) as beach:
        handle = beach.getActorHandle(args.category, ident=args.ident, timeout=args.timeout)
        if args.all:
            future = handle.requestFromAll(args.type, data)
            responses = future.waitAll(args.timeout)
            print(json.dumps([{"ok": r.isSuccess, "error": r.error, "data": r.data} for r in responses],
                             indent=4, default=repr))
            return 0 if responses and all(r.isSuccess for r in responses) else 1
        response = handle.request(args.type, data)
        if response.isSuccess:
            print(json.dumps(response.data, indent=4, default=repr))
            return 0
        print(response, file=sys.stderr)
        return 1


def _patrol(args: argparse.Namespace) -> int:
    from .beach_api import Beach

    with Beach(args.config) as beach:
        if args.action == "apply":
            spec = beach.applyPatrol(args.target, owner=args.owner)
            print(f"patrol spec {spec['owner']!r} applied: " + ", ".join(
                f"{e['name']} ({e['actor']} x {e['instances']})" for e in spec["actors"]))
        elif args.action == "remove":
            if not beach.removePatrol(args.target):
                print(f"beach: no patrol spec {args.target!r}", file=sys.stderr)
                return 1
            print(f"patrol spec {args.target!r} removed: its actors stop")
        else:
            print(json.dumps(beach.getPatrols(), indent=4))
    return 0


def _status(args: argparse.Namespace) -> int:
    from .beach_api import Beach

    with Beach(args.config) as beach:
        health = beach.getClusterHealth()
        print(f"{len(health)} node(s)")
        for node_id, info in sorted(health.items()):
            cpu = sum(info["cpu"] or [0]) / max(1, len(info["cpu"] or []))
            print(f"  {node_id:30} {info['hostname']:20} cpu {cpu:5.1f}%  mem {info['mem']:5.1f}%  "
                  f"actors {info['n_actors']}")
        for realm, categories in sorted(beach.getDirectory()["realms"].items()):
            shown = {c: len(u) for c, u in categories.items() if not c.startswith("_ACTORS/")}
            print(f"realm {realm}: " + ", ".join(f"{c} ({n})" for c, n in sorted(shown.items())))
        for sid, record in sorted(beach.getSupervised().items()):
            print(f"supervised {sid} {record['name']} {record['categories']} {record['state']} "
                  f"restarts={len(record['restarts'])} uid={record['uid']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``beach`` command."""
    parser = argparse.ArgumentParser(prog="beach", description="beach: Python actors over NATS")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run a one-node cluster (embedded NATS, node agent, actor hosts)")
    up.add_argument("config", nargs="?", help=f"config file (default: {EXAMPLE_CONFIG})")
    up.add_argument("--node-id")
    up.add_argument("--run", action="append", metavar="SCRIPT", help="a deploy script to run once the node is up")
    node = sub.add_parser("node", help="run a node agent")
    node.add_argument("config")
    node.add_argument("--node-id")
    req = sub.add_parser("request", help="send one request and print the reply")
    req.add_argument("config")
    req.add_argument("category")
    req.add_argument("type")
    req.add_argument("--data", help="request data as JSON")
    req.add_argument("--realm", default="global")
    req.add_argument("--timeout", type=float, default=10.0)
    req.add_argument("--ident")
    req.add_argument("--all", action="store_true", help="ask every actor of the category")
    pat = sub.add_parser("patrol", help="apply, remove or list patrol specs")
    pat.add_argument("action", choices=("apply", "remove", "list"))
    pat.add_argument("config")
    pat.add_argument("target", nargs="?", help="the spec file (apply) or the owner (remove)")
    pat.add_argument("--owner", help="apply: the owner name (default: the spec's, or the file name)")
    status = sub.add_parser("status", help="print nodes, categories and supervised actors")
    status.add_argument("config")
    args = parser.parse_args(argv)
    if args.command == "patrol" and args.action != "list" and not args.target:
        parser.error(f"patrol {args.action} needs a {'spec file' if args.action == 'apply' else 'owner'}")
    try:
        if args.command == "up":
            return _up(args)
        if args.command == "node":
            from nodeagent.__main__ import main as node_main
            return node_main([args.config] + (["--node-id", args.node_id] if args.node_id else []), prog="beach node")
        if args.command == "patrol":
            return _patrol(args)
        if args.command == "status":
            return _status(args)
        return _request(args)
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0



if __name__ == "__main__":
    sys.exit(main())
