"""What a new version of a realm's code changes, actor by actor (``beach dev`` rolls out only the
actors whose code changed).

An actor's code is its class's file and the modules it imports relatively (``from . import x``,
``from .x import y``, ``from .. import z``), followed from module to module — a realm's modules
import each other only that way (`beach.runtime.loader`). Any other file that changed (data,
``requirements.txt``) may be read by any actor: it changes them all. Pure functions over
``{relative name: content}`` maps (`beach.code.bundle.files`).
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Mapping


def syntax_errors(files: Mapping[str, bytes]) -> list[str]:
    """One message per ``.py`` file that does not compile: ``file:line: SyntaxError: why``, with
    the line and a caret."""
    errors = []
    for name, content in sorted(files.items()):
        if not name.endswith(".py"):
            continue
        try:
            compile(content, name, "exec", dont_inherit=True)
        except SyntaxError as err:
            where = f"{name}:{err.lineno}" if err.lineno else name
            text = (err.text or "").rstrip("\n")
            caret = f"\n    {text}\n    {' ' * max(0, (err.offset or 1) - 1)}^" if text.strip() else ""
            errors.append(f"{where}: {type(err).__name__}: {err.msg}{caret}")
        except ValueError as err:  # a NUL byte in the source
            errors.append(f"{name}: {err}")
    return errors


def _candidates(module: str) -> list[str]:
    """The files a module path (``a/b``) may be: ``a/b.py`` or the package ``a/b/__init__.py``."""
    return [module + ".py", module + "/__init__.py"]


def _imports(name: str, content: bytes) -> list[str]:
    """The module paths file ``name`` imports relatively (whether they exist or not)."""
    try:
        tree = ast.parse(content, name)
    except (SyntaxError, ValueError):
        return []
    package = posixpath.dirname(name).split("/") if "/" in name else []  # (a package's __init__: itself)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1
            if up > len(package):
                continue  # beyond the realm's package: fails on a node too
            base = package[:len(package) - up]
            if node.module:
                base = base + node.module.split(".")
                found.append("/".join(base))
            found += ["/".join([*base, alias.name]) for alias in node.names if alias.name != "*"]
    return [m for m in found if m]


def loads(files: Mapping[str, bytes], actor: str) -> set[str]:
    """The files actor class ``actor`` (``Name`` or ``sub/Name``) loads: its own and those it
    imports relatively, transitively, with the packages they are in (names that do not exist
    are included: a module that went away is a change too)."""
    module = actor[:-3] if actor.endswith(".py") else actor
    todo = [module]
    seen: set[str] = set()
    while todo:
        current = todo.pop()
        parts = current.split("/")
        for i in range(1, len(parts)):  # importing a.b runs a/__init__.py first
            seen.add("/".join(parts[:i]) + "/__init__.py")
        for path in _candidates(current):
            if path in seen:
                continue
            seen.add(path)
            if path in files:
                todo += [m for m in _imports(path, files[path]) if all(c not in seen for c in _candidates(m))]
    return seen


def changed(old: Mapping[str, bytes] | None, new: Mapping[str, bytes], actor: str) -> bool:
    """True if actor class ``actor`` runs other code in ``new`` than in ``old`` (None: unknown, a
    changed actor)."""
    if old is None:
        return True
    if any(old.get(n) != new.get(n) for n in set(old) | set(new) if not n.endswith(".py")):
        return True  # a data file (or requirements.txt): any actor may read it
    return any(old.get(path) != new.get(path) for path in loads(new, actor) | loads(old, actor))
