"""Finding an actor's class: ``<code_directory>/<realm>/<Name>.py`` or an importable ``module:Class``.

A file is loaded under a module name that includes a hash of its content, so a changed file is
loaded fresh by the next spawn while actors started from the old version keep running it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any

from beach.actor import Actor
from beach.errors import ActorLoadError


def _check(cls: Any, what: str) -> type[Actor]:
    if not isinstance(cls, type) or not issubclass(cls, Actor):
        raise ActorLoadError(f"{what} is not a subclass of beach.actor.Actor")
    return cls


def _from_module(name: str) -> type[Actor]:
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ActorLoadError(f"cannot import module {module_name!r} for actor {name!r}: "
                             f"{type(err).__name__}: {err}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ActorLoadError(f"module {module_name!r} has no class {class_name!r}")
    return _check(cls, name)


def _from_file(code_directory: str, realm: str, name: str) -> type[Actor]:
    root = code_directory[len("file://"):] if code_directory.startswith("file://") else code_directory
    path = os.path.normpath(os.path.join(root, realm, name if name.endswith(".py") else name + ".py"))
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


def load_actor_class(code_directory: str, realm: str, name: str) -> type[Actor]:
    """The Actor subclass named ``name``; raise `ActorLoadError` saying why it cannot be had."""
    if not isinstance(name, str) or not name:
        raise ActorLoadError(f"an actor name must be a non-empty string, not {name!r}")
    if ":" in name and "://" not in name:
        return _from_module(name)
    return _from_file(code_directory, realm, name)
