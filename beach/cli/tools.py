"""``beach gen-key``, ``beach shell`` (the original's interactive shell), ``beach console`` (the
Textual console), ``beach dashboard`` (the web dashboard) and ``beach restbridge`` (HTTP in front of
actors)."""

from __future__ import annotations

import argparse

from beach.cli.common import add_config, add_realm
from beach.security import keys


def gen_key(args: argparse.Namespace) -> int:
    """Write a new random key (32 bytes, for the config's private_key) to PATH; never overwrites."""
    print(f"key written to {keys.generate_key(args.path)}")
    return 0


def shell(args: argparse.Namespace) -> int:
    """The interactive shell of the original's beach_cli (also ``python -m beach.beach_cli CONFIG``)."""
    from beach.shell import main

    return main([args.config] + (["--realm", args.realm] if args.realm else []), prog="beach shell")


def console(args: argparse.Namespace) -> int:
    """The live terminal console: nodes, actors, requests, logs (also ``python -m beach.console CONFIG``)."""
    from beach.console import main

    return main([args.config] + (["--realm", args.realm] if args.realm else []), prog="beach console")


def dashboard(args: argparse.Namespace) -> int:
    """The live web dashboard (also ``python -m beach.dashboard [PORT] CONFIG``), on 127.0.0.1 unless
    --host says otherwise."""
    from beach.dashboard import main

    extra = [option for name in args.allowed_host for option in ("--allowed-host", name)]
    return main([args.config, "--host", args.host, "--port", str(args.port), *extra], prog="beach dashboard")


def restbridge(args: argparse.Namespace) -> int:
    """HTTP(S) in front of a realm's actors (also ``python -m beach.restbridge PORT CONFIG REALM``)."""
    from beach.restbridge import main

    argv = [str(args.port), args.config] + ([args.realm] if args.realm else []) + ["--host", args.host]
    argv += ["-s", args.secret] if args.secret else []
    argv += ["-g"] if args.allow_get else []
    argv += ["--ssl-cert", args.ssl_cert] if args.ssl_cert else []
    argv += ["--ssl-key", args.ssl_key] if args.ssl_key else []
    argv += ["--ssl-self-signed"] if args.ssl_self_signed else []
    return main(argv, prog="beach restbridge")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``gen-key``, ``shell`` and ``console``."""
    p = sub.add_parser("gen-key", help="write a new random key file", description=gen_key.__doc__)
    p.add_argument("path", metavar="PATH", help="where to write it (must not exist)")
    p.set_defaults(func=gen_key)
    p = sub.add_parser("shell", help="the original's interactive shell", description=shell.__doc__)
    add_config(p)
    add_realm(p, "the realm to start in")
    p.set_defaults(func=shell)
    p = sub.add_parser("console", help="the live terminal console", description=console.__doc__)
    add_config(p)
    add_realm(p, "the realm to start in")
    p.set_defaults(func=console)
    p = sub.add_parser("dashboard", help="the live web dashboard", description=dashboard.__doc__)
    add_config(p)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="the port to listen on (default 8080)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (repeatable; others are refused: DNS rebinding)")
    p.set_defaults(func=dashboard)
    p = sub.add_parser("restbridge", help="HTTP(S) in front of a realm's actors", description=restbridge.__doc__)
    add_config(p)
    add_realm(p, "the realm whose actors it reaches")
    p.add_argument("--port", type=int, default=8081, help="the port to listen on (default 8081)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    p.add_argument("-s", "--secret", help="callers must send this as _secret (or Beach-Secret)")
    p.add_argument("-g", "--allow-get", action="store_true", help="also accept GET requests")
    p.add_argument("--ssl-cert", help="the TLS certificate (PEM)")
    p.add_argument("--ssl-key", help="the TLS key (PEM)")
    p.add_argument("--ssl-self-signed", action="store_true", help="HTTPS with a self-signed certificate, kept")
    p.set_defaults(func=restbridge)
