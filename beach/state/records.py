"""Typed records: every value beach reads off the bus is checked here, at the boundary.

One schema per record — the directory's actor and node entries, the desired state's supervision
records, patrol specs and lease, the spawn spec — defines its fields once. `Schema.check` turns a
decoded value into a clean record (defaults filled in, the format version migrated) or raises
`RecordError` naming the field that is wrong. Readers skip a bad record, log it once with its key
and count it (`reject`); nothing downstream (heartbeats, supervision, placement, the tools) ever
sees one.

Every record carries its format version in ``v``. This release writes `FORMAT`; it reads what the
previous release wrote (no ``v``: format 0, the same fields) and refuses a record from a newer
release with an error that says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beach import patrol
from beach.errors import BeachError
from beach.state import spawn

log = logging.getLogger("beach.records")

FORMAT = 1

rejected: Counter[str] = Counter()  # bucket or stream → bad records met by this process
_logged: set[tuple[str, str]] = set()


class RecordError(ValueError):
    """A value off the bus that is not a record beach can use (names what is wrong)."""


def reject(where: str, key: str, err: Exception) -> None:
    """Count a bad record; log it the first time this key is bad (a flood of them logs once each)."""
    rejected[where] += 1
    if (where, key) not in _logged:
        if len(_logged) < 10_000:
            _logged.add((where, key))
        log.warning("skipping a bad record in %s at key %r: %s", where, key, err)


_MISSING = object()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "number": (_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "map": (lambda v: isinstance(v, dict), "a map"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "names": (lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v), "a list of names"),
    "numbers": (lambda v: isinstance(v, list) and all(_number(x) for x in v), "a list of numbers"),
    "any": (lambda v: True, "anything"),
}


@dataclass(frozen=True)
class Field:
    """One field of a record: its name, its kind (a key of `KINDS`), whether None is allowed, and
    its default (absent: the field is required)."""

    name: str
    kind: str
    optional: bool = False
    default: Any = _MISSING

    def check(self, record: dict[str, Any], what: str) -> Any:
        value = record.get(self.name, _MISSING)
        if value is _MISSING or (value is None and not self.optional):
            if self.default is not _MISSING:
                return self.default() if callable(self.default) else self.default
            if value is _MISSING and self.optional:
                return None
            raise RecordError(f"{what}: '{self.name}' is missing")
        if value is None:
            return None
        test, wanted = KINDS[self.kind]
        if not test(value):
            raise RecordError(f"{what}: '{self.name}' must be {wanted}, not {type(value).__name__} ({value!r:.40})")
        return value


class Schema:
    """The fields of one kind of record, and how to read older formats of it."""

    def __init__(self, kind: str, fields: list[Field],
                 check: Callable[[dict[str, Any], str], None] | None = None) -> None:
        self.kind = kind
        self.fields = fields
        self._extra = check

    def check(self, value: Any, where: str = "") -> dict[str, Any]:
        """The record ``value`` (decoded msgpack) as this release uses it; raises `RecordError`."""
        what = f"{self.kind} record{' ' + where if where else ''}"
        if not isinstance(value, dict):
            raise RecordError(f"{what}: must be a map, not {type(value).__name__}")
        version = value.get("v", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise RecordError(f"{what}: 'v' must be a format number, not {version!r}")
        if version > FORMAT:
            raise RecordError(f"{what}: written by a newer beach (format {version}; this one reads formats "
                              f"up to {FORMAT}): upgrade this process")
        # format 0 (before versions) had the same fields: reading it is filling in the defaults
        record = {**value, "v": FORMAT}
        for f in self.fields:
            record[f.name] = f.check(value, what)
        if self._extra is not None:
            self._extra(record, what)
        return record

    def new(self, **values: Any) -> dict[str, Any]:
        """A record of this release's format from ``values`` (checked: a bug here is ours)."""
        return self.check({**values, "v": FORMAT})


def _one_of(name: str, choices: tuple[str, ...]) -> Callable[[dict[str, Any], str], None]:
    def check(record: dict[str, Any], what: str) -> None:
        if record[name] not in choices:
            raise RecordError(f"{what}: '{name}' must be one of {', '.join(choices)}, not {record[name]!r}")
    return check


def _all(*checks: Callable[[dict[str, Any], str], None]) -> Callable[[dict[str, Any], str], None]:
    def check(record: dict[str, Any], what: str) -> None:
        for one in checks:
            one(record, what)
    return check


def _non_empty(name: str) -> Callable[[dict[str, Any], str], None]:
    def check(record: dict[str, Any], what: str) -> None:
        if not record[name]:
            raise RecordError(f"{what}: '{name}' must not be empty")
    return check


RESTART_POLICIES = spawn.RESTART_POLICIES

SPAWN = Schema("spawn", [
    Field("name", "name"), Field("categories", "names"), Field("realm", "name"),
    Field("parameters", "map", default=dict), Field("resources", "map", default=dict),
    Field("ident", "str", optional=True), Field("trusted", "names", default=list),
    Field("isolated", "bool", default=False), Field("n_concurrent", "int", default=1),
    Field("max_concurrent", "int", optional=True), Field("is_drainable", "bool", default=False),
    Field("time_to_drain", "number", optional=True), Field("owner", "str", optional=True),
    Field("log_level", "any", optional=True), Field("timeout", "number", optional=True),
    Field("strategy", "name", default="random"), Field("strategy_hint", "str", optional=True),
    Field("restart", "name", default="never"), Field("sid", "str", optional=True),
    Field("version", "str", optional=True),
], _all(_non_empty("categories"), _one_of("restart", RESTART_POLICIES)))
"""What a node agent needs to start an actor (addActor's arguments, checked)."""

ACTOR = Schema("actor", [
    Field("uid", "name"), Field("realm", "name"), Field("name", "name"), Field("categories", "names"),
    Field("node", "name"), Field("host", "name"), Field("pid", "int", optional=True),
    Field("isolated", "bool", default=False), Field("params", "map", default=dict),
    Field("resources", "map", default=dict), Field("owner", "str", optional=True),
    Field("started", "number", default=0.0), Field("is_drainable", "bool", default=False),
    Field("time_to_drain", "number", optional=True), Field("n_concurrent", "int", default=1),
    Field("sid", "str", optional=True), Field("restart", "str", default="never"),
    Field("strategy", "str", default="random"), Field("strategy_hint", "str", optional=True),
    Field("version", "str", optional=True),
])
"""An actor's directory entry (``beach_actors``): where it runs and how it was started."""

NODE = Schema("node", [
    Field("id", "name"), Field("hostname", "str", default="?"), Field("addresses", "names", default=list),
    Field("pid", "int", optional=True), Field("started", "number", default=0.0),
    Field("updated", "number", default=0.0), Field("hosts", "map", default=dict),
    Field("n_actors", "int", default=0), Field("actors_by_realm", "map", default=dict),
    Field("cores", "int", default=1), Field("cpu", "numbers", default=list), Field("mem", "number", default=0.0),
    Field("mem_total", "int", optional=True), Field("mem_available", "int", optional=True),
    Field("cordoned", "bool", default=False),
])
"""A node's registry entry (``beach_nodes``): identity and health, refreshed every second."""


def _spawn_inside(record: dict[str, Any], what: str) -> None:
    try:
        record["spawn"] = SPAWN.check(record["spawn"])
    except RecordError as err:
        raise RecordError(f"{what}: 'spawn': {err}") from None


SUPERVISION = Schema("supervision", [
    Field("kind", "str", default="actor"), Field("sid", "name"), Field("spawn", "map"),
    Field("restart", "name"), Field("max_restarts", "int", default=5), Field("restart_window", "number", default=60.0),
    Field("uid", "name"), Field("state", "name", default="running"), Field("restarts", "numbers", default=list),
    Field("created", "number", default=0.0), Field("last_restart", "number", optional=True),
    Field("last_error", "str", optional=True), Field("waiting_for", "str", optional=True),
    Field("failed_at", "number", optional=True),
], _all(_one_of("restart", RESTART_POLICIES), _one_of("state", ("running", "failed")), _spawn_inside))
"""A supervised actor in the desired state (``beach_desired``, ``sup.<realm>.<sid>``)."""

LEASE = Schema("lease", [Field("holder", "str")])
"""The supervisor lease (``beach_desired``, ``lease.supervisor``)."""


def _digest(record: dict[str, Any], what: str) -> None:
    digest = record["digest"]
    if not (digest.startswith("sha256:") and len(digest) == 71
            and all(c in "0123456789abcdef" for c in digest[7:])):
        raise RecordError(f"{what}: 'digest' must be sha256:<64 hex digits>, not {digest!r:.80}")


CODE_VERSION = Schema("code version", [
    Field("realm", "name"), Field("version", "name"), Field("digest", "name"), Field("size", "int"),
    Field("files", "int", default=0), Field("who", "str", default="?"), Field("when", "number", default=0.0),
    Field("requirements", "names", default=list), Field("sealed", "bool", default=False),
], _digest)
"""One deployed version of a realm's code (``beach_desired``, ``code.<realm>.v.<version>``): the
bundle in the object store it names by digest, who deployed it and when."""

CODE_CURRENT = Schema("current code", [
    Field("realm", "name"), Field("version", "name"), Field("who", "str", default="?"),
    Field("when", "number", default=0.0), Field("previous", "str", optional=True),
])
"""Which version of a realm new actors run (``beach_desired``, ``code.<realm>.current``)."""

CORDON = Schema("cordon", [Field("node", "name"), Field("who", "str", default="?"),
                           Field("when", "number", default=0.0)])
"""A cordoned node: no new actor is placed there (``beach_desired``, ``cordon.<node>``)."""


def _patrol(value: Any, where: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        version = value.get("v", 0)
        if isinstance(version, int) and version > FORMAT:
            raise RecordError(f"patrol record {where}: written by a newer beach (format {version}; this one "
                              f"reads formats up to {FORMAT}): upgrade this process")
        value = {k: v for k, v in value.items() if k != "v"}
    try:
        return {**patrol.check(value, f"patrol record {where}"), "v": FORMAT}
    except (BeachError, TypeError, ValueError, KeyError, AttributeError) as err:  # a spec no check foresaw
        raise RecordError(f"patrol record {where}: {err}" if not str(err).startswith("patrol record") else str(err)) \
            from None


def desired(key: str, value: Any) -> dict[str, Any]:
    """A desired-state record by its key; raises `RecordError` for a bad one or an unknown key."""
    if key.startswith("sup."):
        return SUPERVISION.check(value, key)
    if key.startswith("patrol."):
        return _patrol(value, key)
    if key.startswith("lease."):
        return LEASE.check(value, key)
    if key.startswith("code."):
        return (CODE_CURRENT if key.endswith(".current") else CODE_VERSION).check(value, key)
    if key.startswith("cordon."):
        return CORDON.check(value, key)
    raise RecordError(f"{key!r} is not a desired-state key (sup.*, patrol.*, lease.*, code.*, cordon.*)")
