"""``python -m nodeagent CONFIG [--node-id NAME] [-i IFACE] [--log-level N] [--log-dest PATH]``: run a
beach node (also ``python -m beach.hostmanager``, with the original's flags)."""

from __future__ import annotations

import argparse
import sys

from beach import config as beach_config
from beach import loop as beach_loop
from beach.errors import BeachError
from nodeagent import health, logsetup
from nodeagent.agent import NodeAgent


def main(argv: list[str] | None = None, prog: str = "python -m nodeagent") -> int:
    """Run a node agent in the foreground until SIGTERM or Ctrl-C; return the exit code (2 for a bad
    config or flag, 1 when the node fails)."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a beach node: the node agent, its actor "
                                     "hosts and its own NATS server, joined to the cluster's (unless the "
                                     "config names nats.servers: the operator runs NATS).")
    parser.add_argument("config", help="the beach config file (YAML)")
    parser.add_argument("--node-id", help="this node's id (default: <hostname>-<pid>)")
    parser.add_argument("--secure", metavar="DIR",
                        help="use the NATS users, permissions and TLS of 'beach secure init DIR' (as the node user)")
    parser.add_argument("-i", "--iface", metavar="IFACE",
                        help="the network interface whose address this node announces, and its own NATS server "
                             "advertises to the cluster (nats.advertise; default: the config's 'interface', else "
                             "every address of the machine)")
    parser.add_argument("--log-level", metavar="N", help="the lowest level logged: a number as in the original "
                        "(10 debug, 20 info, 30 warning...) or a name (default: the config's log_level)")
    parser.add_argument("--log-dest", metavar="PATH", help="also log there: a syslog socket such as /dev/log "
                        "(the original's destination), else a file appended to (default: stderr only)")
    parser.add_argument("--nats-port", type=int, metavar="N", help="this node's NATS client port (default: nats.port)")
    parser.add_argument("--route-port", type=int, metavar="M",
                        help="this node's NATS route port (default: nats.cluster_port; 0: a free port)")
    args = parser.parse_args(argv)
    try:
        config = beach_config.load(args.config)
        if args.secure:
            beach_config.use_secure_dir(config, args.secure)
        beach_config.use_ports(config, args.nats_port, args.route_port)
        if args.iface:
            config.interface = args.iface
        if args.log_level:
            config.log_level = logsetup.level(args.log_level)
        announced = health.announced(config.interface)  # an interface without an address: said now
        if args.iface and config.nats.embedded:  # the node's own server is reached at that address too
            beach_config.use_address(config, announced[0])
        logsetup.configure(config.log_level, "node", args.log_dest)
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 2
    try:
        beach_loop.run(NodeAgent(config, args.node_id, args.log_dest).run())
    except BeachError as err:
        print(f"beach: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
