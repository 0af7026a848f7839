"""Two versions of beach, the same benchmarks, runs interleaved: did a change make anything slower?

Each benchmark script is run ``--runs`` times for each version, alternating (base, new, base, new,
...), so that a burst of noise on a shared machine hits one run and not one version. Each version
runs its own copy of the script (its ``benchmarks/`` folder) against its own library, from a git
worktree of the revision (``--new``: the working tree by default). Every numeric cell of the
tables a script prints is read back, and the report gives, per cell, the median of the runs of
each version and their ratio (new / base). Whether higher or lower is better depends on the
column (req/s and ratios to raw: higher; µs and MiB: lower); the raw nats-py columns measure the
machine itself, which tells how much the noise moved between the runs::

    .venv/bin/python benchmarks/compare.py BASE [--new REV] [--runs 5] [--quick] [--out FILE] SCRIPT...

For example ``benchmarks/compare.py 0d2b8db request_reply.py seed_api.py``. Everything it started
(the worktrees, each benchmark's processes) is gone at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _harness import main_guard, publish

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
Cells = dict[tuple[int, str, str], float]  # (table, row label, column) → value


def tables(text: str) -> Cells:
    """Every numeric cell of the markdown tables in ``text``."""
    cells: Cells = {}
    table, header = -1, None
    for line in text.splitlines() + [""]:
        if not line.startswith("|"):
            header = None
            continue
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            table, header = table + 1, row
            continue
        if all(set(c) <= set("-: ") for c in row):
            continue
        for column, cell in zip(header[1:], row[1:], strict=False):
            found = NUMBER.search(cell.replace("**", ""))
            if found:
                cells[(table, row[0], column)] = float(found.group().replace(",", ""))
    return cells


@contextlib.contextmanager
def checkout(revision: str | None, where: Path) -> Iterator[Path]:
    """A worktree of ``revision`` (None: the working tree itself), removed afterwards."""
    if revision is None:
        yield ROOT
        return
    subprocess.run(["git", "worktree", "add", "--detach", str(where), revision], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, capture_output=True)


def run(tree: Path, script: str, quick: bool, out: Path) -> Cells:
    """One run of ``script`` from ``tree``'s benchmarks with ``tree``'s library; its cells."""
    env = {**os.environ, "PYTHONPATH": str(tree)}  # before the editable install of the working tree
    command = [sys.executable, str(tree / "benchmarks" / script), "--out", str(out), *(["--quick"] if quick else [])]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{script} at {tree} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return tables(out.read_text())


def report(script: str, base: list[Cells], new: list[Cells], names: tuple[str, str]) -> str:
    lines = [f"### {script}: median of {len(base)} run(s) each, interleaved", "",
             f"| table | row | column | {names[0]} | {names[1]} | new/base |", "|---:|---|---|---:|---:|---:|"]
    for key in base[0]:
        before = [cells[key] for cells in base if key in cells]
        after = [cells[key] for cells in new if key in cells]
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        ratio = f"{a / b:.2f}" if b else "–"
        lines.append(f"| {key[0] + 1} | {key[1]} | {key[2]} | {b:,.6g} | {a:,.6g} | {ratio} |")
    return "\n".join(lines) + "\n\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the git revision to compare against")
    parser.add_argument("scripts", nargs="+", metavar="SCRIPT", help="benchmark scripts, e.g. request_reply.py")
    parser.add_argument("--new", help="the revision to compare (default: the working tree)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each version (default 5)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to each benchmark")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args()
    names = (args.base, args.new or "working tree")
    text = ""
    with tempfile.TemporaryDirectory(prefix="beach-compare-") as tmp, \
            checkout(args.base, Path(tmp) / "base") as base_tree, checkout(args.new, Path(tmp) / "new") as new_tree:
        for script in args.scripts:
            base: list[Cells] = []
            new: list[Cells] = []
            for i in range(args.runs):
                base.append(run(base_tree, script, args.quick, Path(tmp) / f"base-{i}.md"))
                new.append(run(new_tree, script, args.quick, Path(tmp) / f"new-{i}.md"))
                print(f"{script}: run {i + 1} of {args.runs} done", file=sys.stderr, flush=True)
            text += report(script, base, new, names)
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
