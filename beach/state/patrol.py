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
from typing import Any, TypedDict, cast

import yaml

from beach.errors import BeachError, ConfigError
from beach.state.spawn import spawn_args
from beach.wire import subjects


class Instances(TypedDict, total=False):
    """How many instances an entry asks for, when not a plain number: ``count`` plus ``per_node``
    per node plus ``per_core`` per core, at least ``min``, at most ``max``."""

    count: int
    per_node: float
    per_core: float
    min: int
    max: int


class _Entry(TypedDict):
    name: str
    actor: str
    category: list[str]
    instances: int | Instances


class PatrolEntry(_Entry, total=False):
    """One entry of a spec, checked: its name, the actor class, its categories (normalized), how
    many instances, and any `addActor` argument by its name (the optional keys)."""

    strategy: str
    strategy_hint: str
    parameters: dict[str, Any]
    resources: dict[str, Any]
    isIsolated: bool
    secretIdent: str
    trustedIdents: list[str]
    n_concurrent: int
    max_concurrent: int
    is_drainable: bool
    time_to_drain: float
    log_level: Any
    version: str


class PatrolSpec(TypedDict):
    """A checked spec: its owner, its realm and its entries (in the desired state, with the
    record format ``v`` too)."""

    owner: str
    realm: str
    actors: list[PatrolEntry]


# (the split by totality, not NotRequired: under postponed annotations Python 3.11 cannot tell
# NotRequired keys at run time, and these two sets are read at run time)
ENTRY_KEYS = PatrolEntry.__required_keys__
SPAWN_KEYS = PatrolEntry.__optional_keys__  # passed on to addActor as they are


def owner_tag(owner: str, entry: str) -> str:
    """The ``owner`` string of the actors of one spec entry."""
    return f"patrol/{owner}/{entry}"


def instances(rule: int | Instances, n_nodes: int, n_cores: int) -> int:
    """How many instances ``rule`` asks for in a cluster of ``n_nodes`` nodes and ``n_cores`` cores."""
    if isinstance(rule, int):
        return rule
    count = rule.get("count", 0) + math.ceil(rule.get("per_node", 0) * n_nodes) + math.ceil(
        rule.get("per_core", 0) * n_cores)
    count = max(count, rule.get("min", 0))
    return int(min(count, rule["max"]) if "max" in rule else count)


def _check_rule(where: str, rule: Any) -> Any:
    if isinstance(rule, bool) or not isinstance(rule, (int, dict)):
        raise ConfigError(f"{where}: 'instances' must be an int or a mapping, not {rule!r}")
    if isinstance(rule, int):
        if rule < 0:
            raise ConfigError(f"{where}: 'instances' must be 0 or more, not {rule}")
        return rule
    unknown = set(rule) - {"count", "per_node", "per_core", "min", "max"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(map(str, unknown))} in 'instances' "
                          f"(known: count, per_node, per_core, min, max)")
    for key, value in rule.items():
        kinds = (int, float) if key in ("per_node", "per_core") else (int,)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
            what = "a number" if key in ("per_node", "per_core") else "a whole number"
            raise ConfigError(f"{where}: 'instances.{key}' must be {what} 0 or more, not {value!r}")
    return rule


def check(raw: Any, where: str = "patrol spec") -> PatrolSpec:
    """Check a spec (parsed YAML) and return it normalized; raise `ConfigError` naming the problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a patrol spec must be a mapping with 'owner' and 'actors'")
    unknown = set(raw) - {"owner", "realm", "actors"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(map(str, unknown))} (known: owner, realm, actors)")
    owner = raw.get("owner")
    if not isinstance(owner, str) or not owner or "/" in owner:
        raise ConfigError(f"{where}: 'owner' must be a non-empty name without '/', not {owner!r}")
    realm = subjects.check_realm(raw.get("realm") or "global")
    entries = raw.get("actors") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'actors' must be a list")
    actors: list[PatrolEntry] = []
    names = set()
    for i, entry in enumerate(entries):
        at = f"{where}: actors[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at} must be a mapping")
        unknown = set(entry) - ENTRY_KEYS - SPAWN_KEYS
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {sorted(map(str, unknown))} "
                              f"(known: {', '.join(sorted(ENTRY_KEYS | SPAWN_KEYS))})")
        for key in ("name", "actor"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"{at}: '{key}' must be a non-empty string")
        if entry["name"] in names or "/" in entry["name"]:
            raise ConfigError(f"{at}: entry name {entry['name']!r} is repeated or has a '/'")
        names.add(entry["name"])
        category = entry.get("category")
        categories = [category] if isinstance(category, str) else category
        if not isinstance(categories, list) or not categories:
            raise ConfigError(f"{at}: 'category' must be a category or a non-empty list of them")
        checked = cast(PatrolEntry, {**entry, "category": [subjects.normalize(c) for c in categories],
                                     "instances": _check_rule(at, entry.get("instances", 1))})
        try:
            entry_spawn_args(checked, realm, owner_tag(owner, entry["name"]))
        except (BeachError, TypeError) as err:
            raise ConfigError(f"{at}: {err}") from None
        actors.append(checked)
    return {"owner": owner, "realm": realm, "actors": actors}


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
        entry = {"name": name, "actor": args[0] if args else kwargs.pop("actorName"),
                 "category": args[1] if len(args) > 1 else kwargs.pop("category"), "instances": rule}
        kwargs.pop("owner", None)
        kwargs.pop("realm", None)
        entries.append({**entry, **{k: v for k, v in kwargs.items() if v is not None}})

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
            raw = _python_spec(path, owner, realm)
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


def entry_spawn_args(entry: PatrolEntry, realm: str, tag: str) -> dict[str, Any]:
    """The spawn request for one instance of a spec entry (placed by ``repulsion`` unless the
    entry names a strategy); raises what `spawn_args` raises for bad arguments."""
    options: dict[str, Any] = {"strategy": "repulsion", **{k: v for k, v in entry.items() if k in SPAWN_KEYS}}
    return spawn_args(entry["actor"], entry["category"], realm, owner=tag, **options)

