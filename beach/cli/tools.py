"""``beach gen-key``, ``beach shell`` (the original's interactive shell) and ``beach console``
(the Textual console)."""

from __future__ import annotations

import argparse

from .. import keys
from .common import add_config, add_realm


def gen_key(args: argparse.Namespace) -> int:
    """Write a new random key (32 bytes, for the config's private_key) to PATH; never overwrites."""
    print(f"key written to {keys.generate_key(args.path)}")
    return 0


def shell(args: argparse.Namespace) -> int:
    """The interactive shell of the original's beach_cli (also ``python -m beach.beach_cli CONFIG``)."""
    from ..shell import main

    return main([args.config, "--realm", args.realm], prog="beach shell")


def console(args: argparse.Namespace) -> int:
    """The live terminal console: nodes, actors, requests, logs (also ``python -m beach.console CONFIG``)."""
    from ..console import main

    return main([args.config, "--realm", args.realm], prog="beach console")


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
