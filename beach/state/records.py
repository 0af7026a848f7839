"""Typed records: every value beach reads off the bus is checked here, at the boundary.

One type per record — the directory's actor and node entries (`ActorEntry`, `NodeEntry`), the
spawn spec (`SpawnSpec`), the desired state's supervision records, lease, code versions and cordons
— is a ``TypedDict`` whose annotations are the one definition of its fields: each names its Python
type (what mypy checks in every reader) and, in ``Annotated``, its kind for the check at the
boundary and its default. Its `Schema` is derived from it: `Schema.check` turns a decoded value into
a clean record of that type (defaults filled in, the format version migrated) or raises
`RecordError` naming the field that is wrong. A record stays a plain dict at run time (no
conversion on the hot path, where the view's entries are read on every request). Readers skip a
bad record, log it once with its key and count it (`reject`); nothing downstream (heartbeats,
supervision, placement, the tools) ever sees one.

Every record carries its format version in ``v``. This release writes `FORMAT`; it reads what the
previous release wrote (no ``v``: format 0, the same fields) and refuses a record from a newer
release with an error that says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypedDict, TypeVar, cast, get_args, get_type_hints

from beach.errors import BeachError

log = logging.getLogger("beach.records")

FORMAT = 1

rejected: Counter[str] = Counter()  # bucket or stream → bad records met by this process
_logged: set[tuple[str, str]] = set()


class RecordError(BeachError, ValueError):
    """A value off the bus that is not a record beach can use: a bucket's record, a control
    operation's arguments (names the record and the field)."""


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


R = TypeVar("R")


def fields_of(record_type: type) -> list[Field]:
    """The `Field` of each annotation of a record ``TypedDict`` but ``v``: ``Annotated[T, kind]``
    or ``Annotated[T, kind, default]`` (a callable default makes a fresh value each time);
    a ``T`` that admits None is optional."""
    fields = []
    for name, hint in get_type_hints(record_type, include_extras=True).items():
        if name == "v":
            continue
        kind, *default = hint.__metadata__
        base = get_args(hint)[0]  # T of Annotated[T, ...]
        optional = base is type(None) or type(None) in get_args(base)
        fields.append(Field(name, kind, optional, default[0] if default else _MISSING))
    return fields


class Schema(Generic[R]):
    """The fields of one kind of record (from its ``TypedDict``), and how to read older formats of it."""

    def __init__(self, kind: str, record_type: type[R],
                 check: Callable[[dict[str, Any], str], None] | None = None, noun: str = "record") -> None:
        self.kind = kind
        self.noun = noun
        self.type = record_type
        self.fields = fields_of(record_type)
        self._extra = check

    def check(self, value: Any, where: str = "") -> R:
        """The record ``value`` (decoded msgpack) as this release uses it; raises `RecordError`."""
        what = f"{self.kind} {self.noun}{' ' + where if where else ''}"
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
        return cast(R, record)  # (checked field by field above)

    def new(self, **values: Any) -> R:
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


RESTART_POLICIES = ("never", "on-failure", "always")

class SpawnSpec(TypedDict):
    """What a node agent needs to start an actor (`AsyncBeach.addActor`'s arguments, checked)."""

    v: int
    name: Annotated[str, "name"]
    categories: Annotated[list[str], "names"]
    realm: Annotated[str, "name"]
    parameters: Annotated[dict[str, Any], "map", dict]
    resources: Annotated[dict[str, Any], "map", dict]
    ident: Annotated[str | None, "str"]
    trusted: Annotated[list[str], "names", list]
    isolated: Annotated[bool, "bool", False]
    n_concurrent: Annotated[int, "int", 1]
    max_concurrent: Annotated[int | None, "int"]
    is_drainable: Annotated[bool, "bool", False]
    time_to_drain: Annotated[float | None, "number"]
    owner: Annotated[str | None, "str"]
    log_level: Annotated[Any | None, "any"]
    timeout: Annotated[float | None, "number"]
    strategy: Annotated[str, "name", "random"]
    strategy_hint: Annotated[str | None, "str"]
    restart: Annotated[str, "name", "never"]
    sid: Annotated[str | None, "str"]
    version: Annotated[str | None, "str"]
    uid: Annotated[str | None, "str"]  # the new actor's: chosen by the node agent that takes the spawn
    node: Annotated[str | None, "str"]  # that node agent's


class ActorEntry(TypedDict):
    """An actor's directory entry (``beach_actors``): where it runs and how it was started."""

    v: int
    uid: Annotated[str, "name"]
    realm: Annotated[str, "name"]
    name: Annotated[str, "name"]
    categories: Annotated[list[str], "names"]
    node: Annotated[str, "name"]
    host: Annotated[str, "name"]
    pid: Annotated[int | None, "int"]
    isolated: Annotated[bool, "bool", False]
    params: Annotated[dict[str, Any], "map", dict]
    resources: Annotated[dict[str, Any], "map", dict]
    owner: Annotated[str | None, "str"]
    started: Annotated[float, "number", 0.0]
    is_drainable: Annotated[bool, "bool", False]
    time_to_drain: Annotated[float | None, "number"]
    n_concurrent: Annotated[int, "int", 1]
    sid: Annotated[str | None, "str"]
    restart: Annotated[str, "str", "never"]
    strategy: Annotated[str, "str", "random"]
    strategy_hint: Annotated[str | None, "str"]
    version: Annotated[str | None, "str"]


class NodeEntry(TypedDict):
    """A node's registry entry (``beach_nodes``): identity and health, refreshed every second."""

    v: int
    id: Annotated[str, "name"]
    hostname: Annotated[str, "str", "?"]
    addresses: Annotated[list[str], "names", list]
    pid: Annotated[int | None, "int"]
    started: Annotated[float, "number", 0.0]
    updated: Annotated[float, "number", 0.0]
    hosts: Annotated[dict[str, Any], "map", dict]
    n_actors: Annotated[int, "int", 0]
    actors_by_realm: Annotated[dict[str, int], "map", dict]
    cores: Annotated[int, "int", 1]
    cpu: Annotated[list[float], "numbers", list]
    mem: Annotated[float, "number", 0.0]
    mem_total: Annotated[int | None, "int"]
    mem_available: Annotated[int | None, "int"]
    cordoned: Annotated[bool, "bool", False]
    open: Annotated[bool, "bool", False]  # it takes admin operations from anyone (no authority, no token)
    stopping: Annotated[bool, "bool", False]  # shutting down: takes no new actor
    reads: Annotated[list[int], "numbers", list]  # the request formats its hosts read (none said: format 1)


class SupervisionRecord(TypedDict):
    """A supervised actor in the desired state (``beach_desired``, ``sup.<realm>.<sid>``)."""

    v: int
    kind: Annotated[str, "str", "actor"]
    sid: Annotated[str, "name"]
    spawn: Annotated[SpawnSpec, "map"]
    restart: Annotated[str, "name"]
    max_restarts: Annotated[int, "int", 5]
    restart_window: Annotated[float, "number", 60.0]
    uid: Annotated[str, "name"]
    state: Annotated[str, "name", "running"]
    restarts: Annotated[list[float], "numbers", list]
    created: Annotated[float, "number", 0.0]
    last_restart: Annotated[float | None, "number"]
    last_error: Annotated[str | None, "str"]
    waiting_for: Annotated[str | None, "str"]
    failed_at: Annotated[float | None, "number"]
    # the deployed version of its realm's code the current incarnation runs, which a restart or a
    # re-placement runs again (a rollout moves it); None: the code directory, or a record written
    # before versions were kept (a restart then runs the realm's current version)
    version: Annotated[str | None, "str"]


class Lease(TypedDict):
    """The supervisor lease (``beach_desired``, ``lease.supervisor``)."""

    v: int
    holder: Annotated[str, "str"]


class CodeVersion(TypedDict):
    """One deployed version of a realm's code (``beach_desired``, ``code.<realm>.v.<version>``):
    the bundle in the object store it names by digest, who deployed it and when."""

    v: int
    realm: Annotated[str, "name"]
    version: Annotated[str, "name"]
    digest: Annotated[str, "name"]
    size: Annotated[int, "int"]
    files: Annotated[int, "int", 0]
    who: Annotated[str, "str", "?"]
    when: Annotated[float, "number", 0.0]
    requirements: Annotated[list[str], "names", list]
    sealed: Annotated[bool, "bool", False]


class CodeCurrent(TypedDict):
    """Which version of a realm new actors run (``beach_desired``, ``code.<realm>.current``)."""

    v: int
    realm: Annotated[str, "name"]
    version: Annotated[str, "name"]
    who: Annotated[str, "str", "?"]
    when: Annotated[float, "number", 0.0]
    previous: Annotated[str | None, "str"]


class Cordon(TypedDict):
    """A cordoned node: no new actor is placed there (``beach_desired``, ``cordon.<node>``)."""

    v: int
    node: Annotated[str, "name"]
    who: Annotated[str, "str", "?"]
    when: Annotated[float, "number", 0.0]


class ServerRecord(TypedDict):
    """A NATS server a node runs (``beach_config``, ``server.<name>``): where others reach it, and
    whether it carries JetStream (an anchor: the second JetStream server of a cluster's first
    machine, until three machines carry it)."""

    v: int
    name: Annotated[str, "name"]
    node: Annotated[str, "name"]
    client: Annotated[str, "name"]
    route: Annotated[str, "name"]
    jetstream: Annotated[bool, "bool", False]
    anchor: Annotated[bool, "bool", False]
    updated: Annotated[float, "number", 0.0]


class JetStreamSlot(TypedDict):
    """One of the cluster's JetStream places (``beach_config``, ``jetstream.<n>``): the server that holds it."""

    v: int
    server: Annotated[str, "name"]
    node: Annotated[str, "str", "?"]


class StateStats(TypedDict):
    """The sizes of actor state (``beach.stats.state``, from the node holding the supervisor lease,
    every few seconds; also in its ``info``): ``categories`` is ``{realm: {category: [keys,
    bytes]}}`` (bytes: the stored, sealed values), ``buckets`` ``{stream: {'bytes', 'messages'}}``
    for each of beach's buckets and streams."""

    v: int
    t: Annotated[float, "number"]
    node: Annotated[str, "name"]
    categories: Annotated[dict[str, Any], "map", dict]
    buckets: Annotated[dict[str, Any], "map", dict]


_SPAWN_CHECKS = _all(_non_empty("categories"), _one_of("restart", RESTART_POLICIES))
SPAWN = Schema("spawn", SpawnSpec, _SPAWN_CHECKS)
ACTOR = Schema("actor", ActorEntry)
NODE = Schema("node", NodeEntry)


def _spawn_inside(record: dict[str, Any], what: str) -> None:
    try:
        record["spawn"] = SPAWN.check(record["spawn"])
    except RecordError as err:
        raise RecordError(f"{what}: 'spawn': {err}") from None


SUPERVISION = Schema("supervision", SupervisionRecord,
                     _all(_one_of("restart", RESTART_POLICIES), _one_of("state", ("running", "failed")), _spawn_inside))
LEASE = Schema("lease", Lease)


def _digest(record: dict[str, Any], what: str) -> None:
    digest = record["digest"]
    if not (digest.startswith("sha256:") and len(digest) == 71
            and all(c in "0123456789abcdef" for c in digest[7:])):
        raise RecordError(f"{what}: 'digest' must be sha256:<64 hex digits>, not {digest!r:.80}")


CODE_VERSION = Schema("code version", CodeVersion, _digest)
CODE_CURRENT = Schema("current code", CodeCurrent)
CORDON = Schema("cordon", Cordon)
SERVER = Schema("server", ServerRecord)
SLOT = Schema("JetStream slot", JetStreamSlot)
STATE_STATS = Schema("state sizes", StateStats)


# ---------------------------------------------------------------- control operations' arguments
# What a node agent's operations take (``beach.n.<node>.<op>``; the spawn's is `SpawnSpec`): checked
# as the operation starts, so a bad argument is refused naming it ("bad stop request: stop
# arguments: 'uids' must be a list of names, not str").


class StopArgs(TypedDict):
    """``stop``: the actors of this node to stop."""

    v: int
    uids: Annotated[list[str], "names", list]


class ReplaceArgs(TypedDict):
    """``replace``: an actor to replace, with the version its successor runs, the old one's grace
    in seconds (None: the default) and whether it must leave the node (a drain)."""

    v: int
    uid: Annotated[str, "name"]
    version: Annotated[str | None, "str"]
    grace: Annotated[float | None, "number"]
    away: Annotated[bool, "bool", False]


class CordonArgs(TypedDict):
    """``cordon``: on (no new actor is placed on the node) or off."""

    v: int
    on: Annotated[bool, "bool", True]


class DesiredArgs(TypedDict):
    """``desired``: desired-state records to put, keys to delete, key prefixes to delete."""

    v: int
    put: Annotated[dict[str, Any], "map", dict]
    delete: Annotated[list[str], "names", list]
    prefixes: Annotated[list[str], "names", list]


class ConfigArgs(TypedDict):
    """``config``: the config file's mapping, for ``beach config push``."""

    v: int
    config: Annotated[dict[str, Any], "map"]


class RemoveNodeArgs(TypedDict):
    """``remove_node``: a node gone for good, to take out of the JetStream peer set."""

    v: int
    node: Annotated[str, "name"]


class StateArgs(TypedDict):
    """``state``: change a category's actor state as an admin — keys to set (to packed values) or
    delete, or ``purge`` every key of the category (of the realm, without one; of every realm,
    without either: a cluster-wide flush)."""

    v: int
    realm: Annotated[str | None, "str"]
    category: Annotated[str | None, "str"]
    put: Annotated[dict[str, Any], "map", dict]
    delete: Annotated[list[str], "names", list]
    purge: Annotated[bool, "bool", False]


class ActorArgs(TypedDict):
    """``stack``: one actor of the node."""

    v: int
    uid: Annotated[str, "name"]


class CategoryArgs(TypedDict):
    """``associate`` / ``disassociate``: one actor of the node and a category."""

    v: int
    uid: Annotated[str, "name"]
    category: Annotated[str, "name"]


class HelloArgs(TypedDict):
    """``hello``: an actor host of the node says it is up."""

    v: int
    host: Annotated[str, "name"]


# What an actor host's operations take (``beach.h.<host>.<op>``, from its node agent only).


class HostStopArgs(TypedDict):
    """``stop`` at a host: its actors to stop, and the seconds each keeps serving once out of the
    directory (a replacement's grace)."""

    v: int
    uids: Annotated[list[str], "names", list]
    grace: Annotated[float, "number", 0.0]


class FlushArgs(TypedDict):
    """``flush`` at a host: stop its actors (of one realm only, if given)."""

    v: int
    realm: Annotated[str | None, "str"]


class StackArgs(TypedDict):
    """``stack`` at a host: its threads' and tasks' stacks (those serving actor ``uid`` marked)."""

    v: int
    uid: Annotated[str | None, "str"]


STOP_ARGS = Schema("stop", StopArgs, noun="arguments")
REPLACE_ARGS = Schema("replace", ReplaceArgs, noun="arguments")
CORDON_ARGS = Schema("cordon", CordonArgs, noun="arguments")
DESIRED_ARGS = Schema("desired", DesiredArgs, noun="arguments")
CONFIG_ARGS = Schema("config", ConfigArgs, noun="arguments")
REMOVE_NODE_ARGS = Schema("remove_node", RemoveNodeArgs, noun="arguments")
ACTOR_ARGS = Schema("actor", ActorArgs, noun="arguments")
STATE_ARGS = Schema("state", StateArgs, noun="arguments")
CATEGORY_ARGS = Schema("category", CategoryArgs, noun="arguments")
HELLO_ARGS = Schema("hello", HelloArgs, noun="arguments")
HOST_SPAWN = Schema("spawn", SpawnSpec, _all(_non_empty("uid"), _SPAWN_CHECKS))  # the agent has chosen the uid
HOST_STOP_ARGS = Schema("stop", HostStopArgs, noun="arguments")
FLUSH_ARGS = Schema("flush", FlushArgs, noun="arguments")
STACK_ARGS = Schema("stack", StackArgs, noun="arguments")
