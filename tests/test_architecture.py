"""The structure holds: the import contracts of pyproject.toml, no import cycle, strict types, lint.

The contracts are import-linter's (``[tool.importlinter]``), checked by its ``lint-imports``; the
import graph the other checks read is import-linter's too (grimp's): every import of ``beach`` and
``nodeagent``, at module level, inside functions (a lazy import is a dependency too) and under
``if TYPE_CHECKING:`` (an annotation is one as well).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("beach", "nodeagent")
FACES = ("beach", "nodeagent", "beach.client")  # packages that re-export: in no layer (pyproject.toml says why)


def graph() -> dict[str, set[str]]:
    """Each module of ours → the modules of ours it imports."""
    imports = grimp.build_graph(*PACKAGES, cache_dir=None)
    return {m: set(imports.find_modules_directly_imported_by(m)) for m in imports.modules}


def test_lint_imports_keeps_the_contracts():
    result = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def layers() -> list[list[str]]:
    [layered] = [c for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
                 if c["type"] == "layers"]
    return [[m.strip() for m in layer.split(":") if m.strip()] for layer in layered["layers"]]


def test_every_module_has_a_layer():
    # (import-linter checks the modules a contract names; one left out would be checked by nothing)
    entries = [entry for layer in layers() for entry in layer]
    imports = graph()
    missing = sorted(m for m in imports if m not in FACES and imports[m]
                     and not any(m == e or m.startswith(e + ".") for e in entries))
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
    # import-linter's acyclic_siblings contract squashes packages (it would call beach.code ->
    # beach.client -> beach.code a cycle though no module is on one); this is per module
    assert cycles(graph()) == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    # the graph sees a lazy import and one under TYPE_CHECKING; the cycle finder sees a cycle
    package = tmp_path / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from probe_pkg import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from probe_pkg import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        probe = grimp.build_graph("probe_pkg", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert probe.find_modules_directly_imported_by("probe_pkg.a") == {"probe_pkg.b"}
    assert probe.find_modules_directly_imported_by("probe_pkg.b") == {"probe_pkg.a"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


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
    for name in graph():
        if not name.endswith("__main__") and name not in ("beach.hostmanager", "beach.beach_cli"):
            importlib.import_module(name)

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    library = {c for c in subclasses(errors.BeachError) if not c.__module__.startswith(internal)}
    assert len(library) >= 15
    missing = sorted(c.__qualname__ for c in library if c.__qualname__ not in (errors.__doc__ or ""))
    assert not missing, f"not in beach.errors' exception tree: {missing}"


def test_every_public_method_has_its_twin():
    # one table (beach.names) makes both names: the seed's camelCase and the PEP 8 one
    from beach import Actor, ActorHandle, ActorHandleGroup, ActorResponse, AsyncBeach, Beach, FutureResults
    from beach.names import named, twins
    from beach.testing.stubs import StubGroup, StubHandle

    for cls in (AsyncBeach, Beach, ActorHandle, ActorHandleGroup, FutureResults, ActorResponse, Actor, StubHandle,
                StubGroup):
        public = {n for n, v in vars(cls).items() if not n.startswith("_") and named(v) and not isinstance(v, type)}
        missing = [(n, t) for n in sorted(public) for t in twins(n) if not hasattr(cls, t)]
        assert not missing, f"{cls.__name__}: {missing}"
    assert {"waitAll", "wait_all", "getAllResults", "get_all_results"} <= set(dir(FutureResults))
    assert {"newThread", "new_thread", "isCategoryAvailable", "is_category_available", "log_error",
            "log_critical"} <= set(dir(Actor))
    assert {"place_actor", "placeActor"} <= set(dir(AsyncBeach))


def test_mypy_sees_the_blocking_faces_real_signatures(tmp_path):
    # Beach's methods are typed by AsyncBeach's (addActor's by SpawnOptions'), and their twins too
    script = tmp_path / "script.py"
    script.write_text(
        "from beach import ActorResponse, Beach, FutureResults\n"
        "b = Beach('c.yaml')\n"
        "reveal_type(b.addActor)\n"
        "response: ActorResponse = b.add_actor('Pong', 'pong', strategy='resource', isIsolated=True)\n"
        "flag: bool = response.is_success\n"
        "future: FutureResults = b.get_actor_handle('pong').request('ping', isWithFuture=True)\n"
        "results = future.wait_all(1.0)\n"
        "b.addActor('Pong', 3)\n"
        "b.add_actor('Pong', 'pong', strategy='nowhere')\n")
    result = subprocess.run([tool("mypy"), "--config-file", str(ROOT / "pyproject.toml"), str(script)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    out = result.stdout
    assert "def (actorName: str, category: str | list[str], strategy: Literal['random']" in out, out
    assert "-> beach.client.response.ActorResponse" in out, out
    assert 'script.py:8: error: Argument 2 has incompatible type "int"' in out, out
    assert "script.py:9: error: Argument \"strategy\" has incompatible type" in out, out
    assert out.count("error:") == 2, out
