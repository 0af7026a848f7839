"""``python -m beach.patrol CONFIG FILE``: the original's way to apply a patrol spec (``beach patrol
apply`` does the same)."""

from __future__ import annotations

import argparse
import sys

from beach.cli import main as beach_main


def main(argv: list[str] | None = None) -> int:
    """``python -m beach.patrol CONFIG FILE``, the original's form: apply the spec (node agents keep
    it true from then on; nothing has to keep running here)."""
    parser = argparse.ArgumentParser(prog="python -m beach.patrol", description=main.__doc__)
    parser.add_argument("config", metavar="CONFIG", help="the cluster's config file (YAML)")
    parser.add_argument("spec", metavar="FILE", help="the patrol file (the original's .py, or YAML)")
    parser.add_argument("--patrol-name", dest="owner", help="the owner name (default: the file's name)")
    parser.add_argument("--realm", default="global", help="the realm of a Python patrol file (default global)")
    for legacy in ("--log-dest", "--set-scale", "--frequency"):
        parser.add_argument(legacy, help="accepted for compatibility, ignored")
    args = parser.parse_args(argv)
    return beach_main(["patrol", "apply", args.config, args.spec, "--realm", args.realm]
                      + (["--owner", args.owner] if args.owner else []))


if __name__ == "__main__":
    sys.exit(main())
