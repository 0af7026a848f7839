"""``python -m nodeagent CONFIG [--node-id NAME]``: run a beach node."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from beach import config as beach_config
from beach.errors import BeachError
from nodeagent.agent import NodeAgent


def main(argv: list[str] | None = None, prog: str = "python -m nodeagent") -> int:
    """Run a node agent in the foreground until SIGTERM or Ctrl-C; return the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a beach node: the node agent and "
                                     "its actor hosts (and the embedded NATS server when the config "
                                     "names no servers).")
    parser.add_argument("config", help="the beach config file (YAML)")
    parser.add_argument("--node-id", help="this node's id (default: <hostname>-<pid>)")
    parser.add_argument("--secure", metavar="DIR",
                        help="use the NATS users, permissions and TLS of 'beach secure init DIR' (as the node user)")
    args = parser.parse_args(argv)
    try:
        config = beach_config.load(args.config)
        if args.secure:
            beach_config.use_secure_dir(config, args.secure)
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s node %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(NodeAgent(config, args.node_id).run())
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
