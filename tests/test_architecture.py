"""The structure holds: the import contracts of pyproject.toml, no import cycle, strict types, lint.

The contracts are in import-linter's format (``[tool.importlinter]``); this environment's package
index has no import-linter, so this module reads the same contracts and checks them over an import
graph it builds with the standard library's ``ast``: every ``import`` and ``from ... import`` of
``beach`` and ``nodeagent``, at module level or inside functions (a lazy import is a dependency
too), except those under ``if TYPE_CHECKING:`` (annotations only).
"""

from __future__ import annotations

import ast
import fnmatch
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("beach", "nodeagent")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - (child.level - 1)]
                    base = ".".join(parts + ([child.module] if child.module else []))
                for alias in child.names:  # `from pkg import module` imports the module, not pkg's face
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
            visit(child)

    visit(tree)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def inside(module: str, pattern: str) -> bool:
    """True if ``module`` is ``pattern`` or under it (``**``: any depth, as import-linter reads it)."""
    if pattern.endswith(".**"):
        return fnmatch.fnmatch(module, pattern[:-3] + ".*")
    return module == pattern or module.startswith(pattern + ".")


def ignored(contract: dict, importer: str, imported: str) -> bool:
    for rule in contract.get("ignore_imports", []):
        left, _, right = (s.strip() for s in rule.partition("->"))
        if inside(importer, left) and inside(imported, right):
            return True
    return False


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """The index of the layer ``module`` belongs to (its most specific entry wins)."""
    best: tuple[int, int] | None = None
    for i, layer in enumerate(layers):
        for entry in layer:
            if inside(module, entry) and (best is None or len(entry) > best[1]):
                best = (i, len(entry))
    return None if best is None else best[0]


def parsed_layers(contract: dict) -> list[list[str]]:
    return [[m.strip() for m in layer.split(":") if m.strip()] for layer in contract["layers"]]


def test_the_import_contracts_hold():
    imports = graph()
    broken = []
    for contract in contracts():
        if contract["type"] == "forbidden":
            for importer, imported in ((m, d) for m, ds in imports.items() for d in ds):
                if (any(inside(importer, s) for s in contract["source_modules"])
                        and any(inside(imported, f) for f in contract["forbidden_modules"])
                        and not ignored(contract, importer, imported)):
                    broken.append(f"{contract['name']}: {importer} imports {imported}")
        elif contract["type"] == "layers":
            layers = parsed_layers(contract)
            for importer, imported in ((m, d) for m, ds in imports.items() for d in ds):
                if importer in PACKAGES:  # a package's face imports from every layer
                    continue
                high, low = layer_of(importer, layers), layer_of(imported, layers)
                if high is not None and low is not None and low < high and not ignored(contract, importer, imported):
                    broken.append(f"{contract['name']}: {importer} (layer {high}) imports {imported} (layer {low}, "
                                  f"above it)")
        else:
            pytest.fail(f"contract type {contract['type']!r} is not checked here")
    assert not broken, "\n".join(broken)


def test_every_module_has_a_layer():
    [layered] = [c for c in contracts() if c["type"] == "layers"]
    layers = parsed_layers(layered)
    missing = [m for m in modules() if m not in PACKAGES and layer_of(m, layers) is None]
    assert not missing, f"modules in no layer of pyproject.toml's contract (add them where they belong): {missing}"


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(imports[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(imports):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycle_anywhere():
    assert cycles(graph()) == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    # the graph sees a lazy import, the layer check and the cycle finder see a break
    (tmp_path / "m.py").write_text("def f():\n    from beach.runtime import actor_runtime\n")
    known = {"m": tmp_path / "m.py", "beach.runtime.actor_runtime": ROOT / "beach" / "runtime" / "actor_runtime.py"}
    assert imports_of("m", tmp_path / "m.py", known) == {"beach.runtime.actor_runtime"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    [layered] = [c for c in contracts() if c["type"] == "layers"]
    layers = parsed_layers(layered)
    assert layer_of("beach.wire", layers) > layer_of("beach.client.handle", layers) > layer_of("nodeagent.agent",
                                                                                               layers)
    assert layer_of("beach.state.model", layers) < layer_of("beach.state.directory", layers)  # the most specific wins
    assert layer_of("beach.dashboard.views.page", layers) == layer_of("beach.cli", layers)


def tool(name: str) -> str:
    """A checker installed beside this Python (the test extra installs them); skip if absent."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed beside {sys.executable} (pip install -e '.[test]')")
    return found


def test_mypy_strict_is_clean():
    result = subprocess.run([tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_is_clean():
    result = subprocess.run([tool("ruff"), "check", *PACKAGES, "tests", "benchmarks"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]


def test_the_exception_tree_names_every_error_the_library_raises():
    # beach.errors' docstring is the map users read: an exception class of the library missing from
    # it is one nobody knows to catch (the tools' and the daemon's own are internal to them)
    import importlib

    from beach import errors
    internal = ("beach.cli", "beach.console", "beach.dashboard", "beach.shell", "beach.restbridge", "nodeagent")
    for name in modules():
        if not name.endswith("__main__") and name not in ("beach.hostmanager", "beach.beach_cli"):
            importlib.import_module(name)

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    library = {c for c in subclasses(errors.BeachError) if not c.__module__.startswith(internal)}
    assert len(library) >= 15
    missing = sorted(c.__qualname__ for c in library if c.__qualname__ not in (errors.__doc__ or ""))
    assert not missing, f"not in beach.errors' exception tree: {missing}"
