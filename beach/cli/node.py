"""``beach up`` (a one-node cluster in the foreground) and ``beach node`` (a node agent)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from beach import config as beach_config
from beach import loop as beach_loop
from beach.errors import BusError

REJOIN_WAIT = 5.0  # seconds a node that joined before asks the cluster before starting with what it wrote then
EXAMPLE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "examples", "multinode", "multinode.yaml")


class Scripts:
    """Deploy scripts run one after the other with this interpreter, stopped with the node."""

    STOP_SECONDS = 5.0

    def __init__(self, paths: list[str], env: dict[str, str] | None = None) -> None:
        self.paths = paths
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.stopped = False

    async def run(self) -> None:
        """Run the scripts in turn, logging each one's exit code."""
        log = logging.getLogger("beach.up")
        for path in self.paths:
            if self.stopped:
                return
            self.process = await asyncio.create_subprocess_exec(sys.executable, path, env=self.env)
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
            async with asyncio.timeout(self.STOP_SECONDS):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def up(args: argparse.Namespace) -> int:
    """Run the embedded NATS server (unless the config names servers), a node agent and its actor
    hosts in the foreground; run the deploy scripts once the node is up; stop on Ctrl-C."""
    from nodeagent.agent import NodeAgent

    config = beach_config.load(args.config or EXAMPLE_CONFIG)
    if args.secure:
        beach_config.use_secure_dir(config, args.secure)
    beach_config.use_ports(config, args.nats_port, args.route_port)
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s node %(name)s %(levelname)s %(message)s")
    agent = NodeAgent(config, args.node_id)

    async def main() -> None:
        node = asyncio.create_task(agent.run())
        await asyncio.wait([node, asyncio.create_task(agent.ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if node.done() or not args.run:
            return await node
        env = None
        if args.secure:  # the deploy scripts act as the admin user (their configs need not say)
            env = dict(os.environ, BEACH_AUTH_FILE=os.path.join(os.path.abspath(args.secure), "admin.auth"))
        scripts = Scripts(args.run, env)
        running = asyncio.create_task(scripts.run())
        await asyncio.wait([node, asyncio.create_task(agent.stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
        await scripts.stop()  # a script still running when the node stops would only see errors
        running.cancel()
        await node

    beach_loop.run(main())
    return 0


def node(args: argparse.Namespace) -> int:
    """Run a node agent (``python -m nodeagent CONFIG``); given a NATS URL instead of a config,
    join the cluster there with the config it keeps on the bus (``beach config push``)."""
    from nodeagent.__main__ import main as node_main

    config = args.config
    ports = (["--nats-port", str(args.nats_port)] if args.nats_port else []) + \
        (["--route-port", str(args.route_port)] if args.route_port is not None else [])
    if "://" in config:
        config = join(args)
        ports = []  # written into the joined config
    return node_main([config] + (["--node-id", args.node_id] if args.node_id else [])
                     + (["--secure", args.secure] if args.secure else []) + ports, prog="beach node")


def state_dir(args: argparse.Namespace) -> str:
    """Where a node that joins by URL keeps its config, server state and code cache: ``--state``,
    else ``~/.local/state/beach/node-<id>`` (``-<port>`` with a ``--nats-port`` of its own)."""
    if args.state:
        return os.path.abspath(str(args.state))
    name = "node-" + (args.node_id or "default") + (f"-{args.nats_port}" if args.nats_port else "")
    return os.path.join(os.path.expanduser("~"), ".local", "state", "beach", name)


def join(args: argparse.Namespace) -> str:
    """Read the cluster's pushed config and its servers through the NATS URL ``args.config`` and
    write this node's config from them (with this machine's own secrets, paths, ports and address);
    return its path. A node that joined before and finds nobody at the URL starts with the config
    it wrote then (it rejoins through the servers it knew)."""
    from beach import bus
    from beach.bus import clustering
    from beach.state import clusterconfig

    url = args.config
    state = state_dir(args)
    bootstrap = clusterconfig.bootstrap(url, args.key, args.secure)

    async def read() -> tuple[dict[str, object], list[str]]:
        nc = await bus.connect(bootstrap, "beach-node join")
        try:
            with bus.translated(f"cannot read the cluster's config through {url}"):
                pushed = await clusterconfig.fetch(nc, bootstrap)
                table = await clusterconfig.servers(await clusterconfig.open_bucket(nc, bootstrap))
            return pushed, sorted(r.client for r in table.servers.values() if not r.anchor)
        finally:
            await bus.close(nc)

    written = os.path.join(state, "beach.yaml")
    rejoining = os.path.isfile(written)

    async def bounded() -> tuple[dict[str, object], list[str]]:
        if not rejoining:
            return await read()
        try:  # a node that joined before does not wait long for a JetStream that may need it back
            return await beach_loop.within(read(), REJOIN_WAIT)
        except TimeoutError:
            raise BusError(f"the cluster's JetStream did not answer through {url} within {REJOIN_WAIT:g}s") from None

    try:
        pushed, known = beach_loop.run(bounded())
    except BusError as err:  # nobody there, or JetStream without its quorum (this node may be what it lacks)
        if not rejoining:
            raise
        print(f"beach: {err}; starting with the config written when this node joined: {written}", file=sys.stderr)
        return written
    local: dict[str, object] = {"listen": clustering.outbound_address(url) or beach_config.LOOPBACK}
    if args.nats_port:
        local["port"] = args.nats_port
    if args.route_port is not None:
        local["cluster_port"] = args.route_port
    path = clusterconfig.joined(pushed, url, state, args.key, args.admin_token_file, known, local)
    print(f"beach: joined through {url}; this node's config: {path}", file=sys.stderr)
    return path


def add_ports(parser: argparse.ArgumentParser) -> None:
    """``--nats-port`` and ``--route-port``: several nodes on one machine."""
    parser.add_argument("--nats-port", type=int, metavar="N",
                        help="this node's NATS client port (default: nats.port, 4222): several nodes on one machine")
    parser.add_argument("--route-port", type=int, metavar="M",
                        help="this node's NATS route port (default: nats.cluster_port, 6222; 0: a free port)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``up`` and ``node``."""
    p = sub.add_parser("up", help="run a one-node cluster in the foreground (embedded NATS, node agent, hosts)",
                       description=up.__doc__)
    p.add_argument("config", nargs="?", metavar="CONFIG", help=f"the config file (default: {EXAMPLE_CONFIG})")
    p.add_argument("--node-id", help="this node's id (default: <hostname>-<pid>)")
    p.add_argument("--run", action="append", metavar="SCRIPT",
                   help="a deploy script to run once the node is up (repeatable; run in order)")
    p.add_argument("--secure", metavar="DIR", help="use the NATS users, permissions (and TLS) that 'beach secure "
                   "init DIR' wrote: the node connects as the node user, the deploy scripts as admin")
    add_ports(p)
    p.set_defaults(func=up)
    p = sub.add_parser("node", help="run a node agent and its NATS server (one node per machine)",
                       description=node.__doc__)
    p.add_argument("config", metavar="CONFIG|URL", help="the cluster's config file (YAML), or a NATS URL "
                   "(nats://HOST:4222) to join with the config the cluster keeps on the bus")
    p.add_argument("--node-id", help="this node's id (default: <hostname>-<pid>)")
    p.add_argument("--secure", metavar="DIR", help="connect as the node user of 'beach secure init DIR'")
    p.add_argument("--key", metavar="FILE", help="joining by URL: the cluster's private_key file (a sealed "
                   "cluster; default: $BEACH_PRIVATE_KEY_FILE)")
    p.add_argument("--admin-token-file", metavar="FILE", help="joining by URL: a file holding the cluster's "
                   "admin_token (secrets never travel on the bus; default: $BEACH_ADMIN_TOKEN_FILE)")
    p.add_argument("--state", metavar="DIR", help="joining by URL: where this node keeps its config, its NATS "
                   "server's state and its code cache (default: ~/.local/state/beach/node-<id>)")
    add_ports(p)
    p.set_defaults(func=node)
