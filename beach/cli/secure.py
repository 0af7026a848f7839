"""``beach secure init`` (NATS users, permissions and TLS for beach's roles) and ``beach audit``
(who ran which admin operation, when)."""

from __future__ import annotations

import argparse
import os

from beach import logs, output
from beach.cli.common import add_config, connected
from beach.client.core import AsyncBeach
from beach.errors import UsageError
from beach.security import audit, roles


def init(args: argparse.Namespace) -> int:
    """Write NATS users and permissions for beach's roles (node, admin, realm admins, clients,
    observer) into DIR — the server's authorization block, one auth file per user, and with --tls a
    CA and a server certificate — then say how to use them."""
    hosts = None
    if args.tls:
        hosts = args.host or ["127.0.0.1", "localhost"]
    written = roles.init(args.dir, args.realm_admin or [], args.client or [], hosts, overwrite=args.force)
    where = os.path.abspath(args.dir)
    print(f"NATS users and permissions written to {where}:")
    for what, path in written.items():
        print(f"  {what:14} {os.path.relpath(path, where)}")
    print(f"\nRun a one-node cluster with them:   beach up CONFIG --secure {args.dir}")
    print(f"Or load {written['server']} into your nats-server (it includes auth.conf"
          + (" and tls.conf)" if args.tls else ")"))
    print("and give each node and client its auth file in its config:")
    print(f"  nats:\n    auth_file: {os.path.join(where, 'admin.auth')}   # node.auth on nodes, "
          f"client.auth, observer.auth, admin-<realm>.auth")
    print("\nThe auth files hold passwords: copy each only where that role runs.")
    return 0


def show_audit(args: argparse.Namespace) -> int:
    """Print the admin operations the node agents served: when, who (the NATS user, or what the
    caller claimed on a bus without authorization), what, on which node, and how it ended."""
    try:
        since = logs.since_time(args.since)
    except ValueError as err:
        raise UsageError(str(err)) from None

    async def run(client: AsyncBeach) -> int:
        def accept(entry: audit.AuditRecord) -> bool:
            return (not args.who or entry.who == args.who) and (not args.op or entry.op == args.op)

        async for entry in logs.read(client.session.nc, audit.SUBJECTS, since=since, follow=args.follow,
                                     accept=accept, sealer=client.session.sealer, stream=audit.STREAM,
                                     decoder=audit.from_msg):
            print(output.dumps_line(entry) if args.json else audit.format_record(entry), flush=True)
        return 0

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``secure`` and ``audit``."""
    p = sub.add_parser("secure", help="NATS users, permissions and TLS for beach's roles",
                       description="Access control, left to the NATS server: see docs/security.md.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION", help="init: write them")
    q = actions.add_parser("init", help="write users, permissions (and TLS certificates) into DIR",
                           description=init.__doc__)
    q.add_argument("dir", metavar="DIR", help="where to write them (created if missing)")
    q.add_argument("--realm-admin", action="append", metavar="REALM",
                   help="also a realm admin for REALM (user admin-REALM; repeatable)")
    q.add_argument("--client", action="append", metavar="NAME",
                   help="a client user NAME instead of the one 'client' (repeatable: one per team or program)")
    q.add_argument("--tls", action="store_true", help="also make a CA and a server certificate (tls/) and tls.conf")
    q.add_argument("--host", action="append", metavar="NAME",
                   help="a host name or IP address the server certificate is for (repeatable; default: "
                        "127.0.0.1 and localhost)")
    q.add_argument("--force", action="store_true", help="replace the credentials already in DIR")
    q.set_defaults(func=init)
    p = sub.add_parser("audit", help="who ran which admin operation, and when", description=show_audit.__doc__)
    add_config(p)
    p.add_argument("--since", help="from this long ago: 30s, 10m, 2h, 1d (default: all that is kept, 90 days)")
    p.add_argument("--who", help="only this user")
    p.add_argument("--op", help="only this operation (spawn, stop, flush, desired, state, associate, disassociate, "
                                "stack)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records as they come (Ctrl-C ends)")
    p.add_argument("--json", action="store_true", help="print each record as JSON (JSON Lines, for scripts)")
    p.set_defaults(func=show_audit)
