"""Patrol: a declarative spec of which actors should run, and how many.

A spec (YAML) names its owner and lists entries::

    owner: shop                  # who owns these actors; two specs never touch each other's
    realm: global
    actors:
      - name: frontends          # entry name: the actors are tagged owner 'patrol/shop/frontends'
        actor: Frontend          # the actor class (as for addActor)
        category: [shop/front]   # a category or a list
        instances: {per_node: 2, min: 2, max: 20}   # or an int, or {per_core: 1}
        strategy: repulsion      # optional: any addActor argument by its name
        parameters: {port: 8080}
        version: v3              # optional: a deployed version of the realm's code (default: current)

``beach patrol apply SPEC`` stores the spec in the desired state; the supervising node agent then
keeps the cluster matching it: it starts missing instances, stops extra ones, and stops every
actor of an entry (or of a whole spec) that was removed. The original's Python patrol files
(``Patrol('name', initialInstances=NUM_NODES, actorArgs=[...], actorKwArgs={...})``) are read too.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, ClassVar

import msgspec
import yaml
from msgspec import Meta, Struct, field

from beach.errors import CategoryError, ConfigError
from beach.state.records import Name, Record
from beach.state.spawn import SpawnOptions, Strategy
from beach.wire import subjects, typed

Count = Annotated[int, Meta(ge=0)]
Share = Annotated[float, Meta(ge=0, le=1e6)]  # finite: a share of .inf would ask for endless instances


class Instances(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How many instances an entry asks for, when not a plain number: ``count`` plus ``per_node``
    per node plus ``per_core`` per core, at least ``min``, at most ``max``."""

    count: Count = 0
    per_node: Share = 0.0
    per_core: Share = 0.0
    min: Count = 0
    max: Count | None = None

    def __post_init__(self) -> None:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is more than 'max' ({self.max})")


PATROLS_OWN = ("realm", "owner", "restart", "max_restarts", "restart_window")  # set by the spec, not an entry


class PatrolEntry(SpawnOptions, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One entry of a spec: its name, the actor class (``actor``), its categories, how many
    instances, and any other `addActor` argument by its name (the `SpawnOptions` it inherits;
    those a spec sets itself, `PATROLS_OWN`, excepted). Placed by ``repulsion`` unless it names a
    strategy."""

    actorName: Name = field(name="actor")
    name: Name
    instances: Count | Instances = 1
    strategy: Strategy = "repulsion"

    def __post_init__(self) -> None:
        super().__post_init__()
        if "/" in self.name:
            raise ValueError(f"entry name {self.name!r} has a '/'")
        for key in PATROLS_OWN:
            if getattr(self, key) != _DEFAULTS[key]:
                raise ValueError(f"'{key}' is the patrol spec's own: an entry cannot set it")


_DEFAULTS = {f.name: f.default for f in msgspec.structs.fields(SpawnOptions)}


class PatrolSpec(Record, kw_only=True, forbid_unknown_fields=True):
    """A spec: its owner, its realm and its entries (in the desired state, with the record format
    ``v`` too)."""

    what: ClassVar[str] = "patrol record"
    owner: Name
    realm: str = "global"
    actors: list[PatrolEntry] = []

    def __post_init__(self) -> None:
        super().__post_init__()
        if "/" in self.owner:
            raise ValueError(f"'owner' must be a name without '/', not {self.owner!r}")
        try:
            subjects.check_realm(self.realm)
        except CategoryError as err:
            raise ValueError(f"'realm': {err}") from None
        names = [entry.name for entry in self.actors]
        for repeated in {n for n in names if names.count(n) > 1}:
            raise ValueError(f"entry name {repeated!r} is repeated")


def owner_tag(owner: str, entry: str) -> str:
    """The ``owner`` string of the actors of one spec entry."""
    return f"patrol/{owner}/{entry}"


def instances(rule: int | Instances, n_nodes: int, n_cores: int) -> int:
    """How many instances ``rule`` asks for in a cluster of ``n_nodes`` nodes and ``n_cores`` cores."""
    if isinstance(rule, int):
        return rule
    count = rule.count + math.ceil(rule.per_node * n_nodes) + math.ceil(rule.per_core * n_cores)
    count = max(count, rule.min)
    return min(count, rule.max) if rule.max is not None else count


def check(raw: Any, where: str = "patrol spec") -> PatrolSpec:
    """Check a spec (parsed YAML, or a mapping) and return it; raise `ConfigError` naming the problem."""
    if isinstance(raw, dict):  # (an empty 'realm:' or 'actors:' in YAML: their defaults)
        raw = {**raw, "realm": raw.get("realm") or "global",
               "actors": [] if raw.get("actors") is None else raw["actors"]}
    return typed.convert(raw, PatrolSpec, where, ConfigError)


class _Count:
    """``NUM_NODES`` / ``NUM_CPU_CORES`` in Python patrol files."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self) -> Any:  # the original called them
        return self


def _python_spec(path: str, owner: str | None, realm: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []

    def Patrol(name: str, initialInstances: Any = 1, maxInstances: int | None = None,  # noqa: N802
               scalingFactor: Any = None, onFailureCall: Any = None, actorArgs: Any = (),
               actorKwArgs: dict[str, Any] | None = None) -> None:
        kwargs = dict(actorKwArgs or {})
        args = list(actorArgs)
        rule: Any = initialInstances() if callable(initialInstances) else initialInstances
        if isinstance(rule, _Count):
            rule = {rule.key: 1}
        if maxInstances is not None:
            rule = {"count": rule, "max": maxInstances} if isinstance(rule, int) else {**rule, "max": maxInstances}
        entry = {"name": name, "actor": args[0] if args else kwargs.pop("actorName", None),
                 "category": args[1] if len(args) > 1 else kwargs.pop("category", None), "instances": rule}
        kwargs.pop("owner", None)
        kwargs.pop("realm", None)
        entries.append({**{k: v for k, v in kwargs.items() if v is not None}, **entry})

    Patrol.__qualname__ = "Patrol"  # (as a bad call's error names it)
    scope = {"Patrol": Patrol, "NUM_NODES": _Count("per_node"), "NUM_CPU_CORES": _Count("per_core"),
             "__file__": path}
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    exec(code, scope)  # the original's format is Python; the file is the operator's own
    return {"owner": owner or os.path.splitext(os.path.basename(path))[0], "realm": realm, "actors": entries}


def load(path: str, owner: str | None = None, realm: str = "global") -> PatrolSpec:
    """Read a patrol spec: YAML, or the original's Python patrol file (``.py``)."""
    try:
        if path.endswith(".py"):
            try:
                raw = _python_spec(path, owner, realm)
            except OSError:
                raise
            except Exception as err:  # the operator's Python: a syntax error, a bad Patrol() call...
                raise ConfigError(f"{path}: the patrol file failed: {type(err).__name__}: {err}") from None
        else:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f)
            if owner and isinstance(raw, dict):
                raw["owner"] = owner
    except OSError as err:
        raise ConfigError(f"cannot read patrol spec {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return check(raw, path)
