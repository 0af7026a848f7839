"""Finding an actor's class: ``<code_directory>/<realm>/<Name>.py``, a deployed bundle's
``<Name>.py``, or ``module:Class`` from an allowed module.

Confined: a name with ``..``, an absolute path, a URL, or a link that leads out of the realm's
directory is refused, and ``module:Class`` imports only modules the config lists in
``actor_modules`` (importing runs a module's code).

**One import rule.** A realm's directory is loaded the same way from the code directory and from
a deployed bundle: as a package of its own, named after its content (``beach_code_<hex>``: a
fingerprint of the directory's files; ``beach_bundle_<hex>``: the bundle's digest). So its modules
import each other relatively (``from . import helpers``) in both, two realms may each have a
``helpers.py``, two versions of one module live side by side in a process, and a changed file is
loaded fresh by the next spawn while actors started from the old version keep running it. A plain
``import helpers`` of a module that only a realm's directory holds fails in both, with an error
that names the rule (`RealmImports`, last on ``sys.meta_path``).

Actor hosts load with it (`nodeagent.host`), and so does `beach.testing.ActorHarness`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Sequence
from typing import Any

from beach.actor import Actor
from beach.errors import ActorLoadError, CategoryError
from beach.wire import subjects


def _check(cls: Any, what: str) -> type[Actor]:
    if not isinstance(cls, type) or not issubclass(cls, Actor):
        raise ActorLoadError(f"{what} is not a subclass of beach.actor.Actor")
    return cls


def _from_module(name: str, allowed: list[str]) -> type[Actor]:
    module_name, _, class_name = name.partition(":")
    if not any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in allowed):
        # importing runs a module's code: only the ones the operator listed may be named
        raise ActorLoadError(f"actor {name!r}: module {module_name!r} is not in the config's actor_modules "
                             f"({', '.join(allowed) or 'none listed'})")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ActorLoadError(f"cannot import module {module_name!r} for actor {name!r}: "
                             f"{type(err).__name__}: {err}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ActorLoadError(f"module {module_name!r} has no class {class_name!r}")
    return _check(cls, name)


def _segments(name: str) -> list[str]:
    segments = name.split("/")
    if (name.startswith("/") or "\\" in name or "\x00" in name or any(s in ("", ".", "..") for s in segments)
            or "://" in name):
        raise ActorLoadError(f"actor name {name!r} is not a name: a class <Name> (or <dir>/<Name>) under "
                             f"<code_directory>/<realm>/, without '..', '/' first, or a URL")
    return segments


def _package(prefix: str, key: str, top: str) -> str:
    """The package whose modules are the files of directory ``top`` (made on first use)."""
    package = f"{prefix}_{key}"
    if package not in sys.modules:
        module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(package, None, is_package=True))
        module.__path__ = [top]
        sys.modules[package] = module
        REALM_IMPORTS.watch(top)
        importlib.invalidate_caches()  # the path finders' cached listings of ``top`` may predate a new file
    return package


def _import(package: str, segments: list[str], what: str) -> type[Actor]:
    """Class ``segments[-1]`` of module ``<package>.<segments...>``; ``what`` names it in errors."""
    module_name = ".".join([package, *segments])
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        sys.modules.pop(module_name, None)
        raise ActorLoadError(f"cannot load actor {'/'.join(segments)!r} from {what}: "
                             f"{type(err).__name__}: {err}") from None
    class_name = segments[-1]
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ActorLoadError(f"{'/'.join(segments)}.py of {what} defines no class {class_name!r}")
    return _check(cls, f"{class_name} in {what}")


def _from_bundle(directory: str, digest: str, name: str) -> type[Actor]:
    """``name`` from a deployed bundle unpacked in ``directory``: its files are the modules of a
    package named after the digest."""
    segments = _segments(name[:-3] if name.endswith(".py") else name)
    top = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(top, *segments) + ".py")
    if os.path.commonpath([top, path]) != top:
        raise ActorLoadError(f"actor {name!r} resolves outside its bundle: refused")
    if not os.path.isfile(path):
        raise ActorLoadError(f"unknown actor class {name!r}: the deployed bundle {digest} has no "
                             f"{'/'.join(segments)}.py")
    package = _package("beach_bundle", digest.split(":", 1)[-1][:16], top)
    return _import(package, segments, f"bundle {digest}")


def _skipped(name: str) -> bool:
    # what a bundle leaves out (beach.code.bundle): dot-names, bytecode
    return name.startswith(".") or name == "__pycache__" or name.endswith(".pyc")


def fingerprint(directory: str) -> str:
    """A hex digest of the files under ``directory`` (names, sizes, modification times; what a
    bundle would leave out is skipped): it changes when a file is saved, added or removed."""
    found: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not _skipped(d))
        for name in sorted(files):
            if _skipped(name):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:  # gone meanwhile, or a dangling link: not a module anyone can load
                continue
            found.append(f"{os.path.relpath(path, directory)}\0{st.st_size}\0{st.st_mtime_ns}")
    return hashlib.sha256("\n".join([os.path.realpath(directory), *found]).encode("utf-8", "surrogateescape")
                          ).hexdigest()


def _from_file(code_directory: str, realm: str, name: str) -> type[Actor]:
    """``name`` from ``<code_directory>/<realm>/``: its files are the modules of a package named
    after the directory's `fingerprint`, as a bundle's are."""
    root = code_directory[len("file://"):] if code_directory.startswith("file://") else code_directory
    segments = _segments(name[:-3] if name.endswith(".py") else name)
    top = os.path.realpath(root)
    realm_dir = os.path.realpath(os.path.join(top, subjects.check_realm(realm)))
    if os.path.commonpath([top, realm_dir]) != top:  # the realm's directory is a link to elsewhere
        raise ActorLoadError(f"realm {realm!r} resolves outside the code directory {top}: refused")
    path = os.path.realpath(os.path.join(realm_dir, *segments) + ".py")
    if os.path.commonpath([realm_dir, path]) != realm_dir:  # a link that leads out of the realm
        raise ActorLoadError(f"actor {name!r} resolves outside {realm_dir}: refused")
    if not os.path.isfile(path):
        raise ActorLoadError(f"unknown actor class {name!r}: no file {path} (actors load from "
                             f"<code_directory>/<realm>/<Name>.py, or name them 'module:Class')")
    package = _package("beach_code", fingerprint(realm_dir)[:16], realm_dir)
    return _import(package, segments, realm_dir)


class RealmImports(importlib.abc.MetaPathFinder):
    """The last finder on ``sys.meta_path``: an absolute import that nothing else found, of a
    module that a loaded realm's directory holds, fails with an error naming the import rule
    (instead of a bare "No module named ..."), in code-directory and bundle loading alike."""

    def __init__(self) -> None:
        self.directories: dict[str, None] = {}  # (an ordered set)

    def watch(self, directory: str) -> None:
        """Name ``directory``'s modules in the errors; install this finder if it is not yet."""
        self.directories[directory] = None
        if self not in sys.meta_path:
            sys.meta_path.append(self)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        """Raise `ModuleNotFoundError` naming the rule for a top-level name a realm holds."""
        if path is not None or "." in fullname:
            return None
        for directory in list(self.directories):
            if os.path.isfile(os.path.join(directory, fullname + ".py")) or os.path.isfile(
                    os.path.join(directory, fullname, "__init__.py")):
                raise ModuleNotFoundError(
                    f"No module named {fullname!r}: a realm's modules import each other relatively, "
                    f"as 'from . import {fullname}' (beach's one import rule: docs/code.md)", name=fullname)
        return None


REALM_IMPORTS = RealmImports()


def load_actor_class(code_directory: str, realm: str, name: str, modules: list[str] | None = None,
                     bundle: tuple[str, str] | None = None) -> type[Actor]:
    """The Actor subclass named ``name``: from the deployed ``bundle`` (``(directory, digest)``)
    when the realm has one, else from ``<code_directory>/<realm>/<name>.py`` (nothing outside that
    directory, whatever the name says), or ``module:Class`` from a module under one of ``modules``
    (the config's ``actor_modules``). Raises `ActorLoadError` saying why it cannot be had."""
    if not isinstance(name, str) or not name:
        raise ActorLoadError(f"an actor name must be a non-empty string, not {name!r}")
    try:
        if ":" in name and "://" not in name:
            return _from_module(name, modules or [])
        if bundle is not None:
            return _from_bundle(bundle[0], bundle[1], name)
        return _from_file(code_directory, realm, name)
    except CategoryError as err:
        raise ActorLoadError(str(err)) from None
