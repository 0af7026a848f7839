"""Finding an actor's class: ``<code_directory>/<realm>/<Name>.py`` or ``module:Class`` from an allowed module.

Confined: a name with ``..``, an absolute path, a URL, or a link that leads out of the realm's
directory is refused, and ``module:Class`` imports only modules the config lists in
``actor_modules`` (importing runs a module's code).

A file is loaded under a module name that includes a hash of its content, so a changed file is
loaded fresh by the next spawn while actors started from the old version keep running it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
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


def _from_bundle(directory: str, digest: str, name: str) -> type[Actor]:
    """``name`` from a deployed bundle unpacked in ``directory``: its files are the modules of a
    package named after the digest, so two versions of one module live side by side in a process
    (and a bundle's modules import each other relatively: ``from . import helpers``)."""
    segments = _segments(name[:-3] if name.endswith(".py") else name)
    top = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(top, *segments) + ".py")
    if os.path.commonpath([top, path]) != top:
        raise ActorLoadError(f"actor {name!r} resolves outside its bundle: refused")
    if not os.path.isfile(path):
        raise ActorLoadError(f"unknown actor class {name!r}: the deployed bundle {digest} has no "
                             f"{'/'.join(segments)}.py")
    package = "beach_bundle_" + digest.split(":", 1)[-1][:16]
    if package not in sys.modules:
        module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(package, None, is_package=True))
        module.__path__ = [top]
        sys.modules[package] = module
    module_name = ".".join([package, *segments])
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        sys.modules.pop(module_name, None)
        raise ActorLoadError(f"cannot load actor {name!r} from bundle {digest}: {type(err).__name__}: {err}") from None
    class_name = segments[-1]
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ActorLoadError(f"{'/'.join(segments)}.py of bundle {digest} defines no class {class_name!r}")
    return _check(cls, f"{class_name} in bundle {digest}")


def _from_file(code_directory: str, realm: str, name: str) -> type[Actor]:
    root = code_directory[len("file://"):] if code_directory.startswith("file://") else code_directory
    _segments(name)
    top = os.path.realpath(root)
    realm_dir = os.path.realpath(os.path.join(top, subjects.check_realm(realm)))
    if os.path.commonpath([top, realm_dir]) != top:  # the realm's directory is a link to elsewhere
        raise ActorLoadError(f"realm {realm!r} resolves outside the code directory {top}: refused")
    path = os.path.realpath(os.path.join(realm_dir, name if name.endswith(".py") else name + ".py"))
    if os.path.commonpath([realm_dir, path]) != realm_dir:  # a link that leads out of the realm
        raise ActorLoadError(f"actor {name!r} resolves outside {realm_dir}: refused")
    class_name = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path, "rb") as f:
            source = f.read()
    except FileNotFoundError:
        raise ActorLoadError(f"unknown actor class {name!r}: no file {path} (actors load from "
                             f"<code_directory>/<realm>/<Name>.py, or name them 'module:Class')") from None
    except OSError as err:
        raise ActorLoadError(f"cannot read actor file {path}: {err}") from None
    digest = hashlib.sha1(source).hexdigest()[:12]
    module_name = f"beach_code.{realm}.{class_name}_{digest}".replace("-", "_")
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module.__dict__["_beach_realm"] = realm
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[module_name]
            raise ActorLoadError(f"cannot load actor file {path}: {type(err).__name__}: {err}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ActorLoadError(f"actor file {path} defines no class {class_name!r}")
    return _check(cls, f"{class_name} in {path}")


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
