"""Records: every value beach reads off the bus is a msgspec `Struct`, decoded and checked in one step.

A record's class is the one definition of its fields: the Python type mypy checks in every reader,
the type msgspec checks at the boundary, the default. This module holds the base (`Record`: the
format version ``v``), the directory's entries (`ActorEntry`, `NodeEntry`) and the arguments of
every control operation; the spawn (`beach.state.spawn`), the desired state's records
(`beach.state.desired`) and patrol specs (`beach.state.patrol`) are defined where their concept
lives. `check` and `decode` turn a value into a record or raise `RecordError` naming the field.
Readers skip a bad record, log it once with its key and count it (`reject`); nothing downstream
(heartbeats, supervision, placement, the tools) ever sees one.

Every record carries its format version in ``v``. This release writes `FORMAT`; it reads what the
previous release wrote (no ``v``: format 0, the same fields) and refuses a record from a newer
release with an error that says so. Fields a record does not know are ignored (a newer release's).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated, Any, ClassVar, TypeVar

from msgspec import Meta, Struct, field

from beach.errors import BeachError
from beach.wire import typed

log = logging.getLogger("beach.records")

FORMAT = 1

rejected: Counter[str] = Counter()  # bucket or stream → bad records met by this process
_logged: set[tuple[str, str]] = set()

Name = Annotated[str, Meta(min_length=1)]
"""A non-empty string (an id, a realm, a class name)."""


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


def check_format(version: int) -> None:
    """Raise ``ValueError`` for a record of a format newer than this release reads."""
    if version > FORMAT:
        raise ValueError(f"written by a newer beach (format {version}; this one reads formats up to {FORMAT}): "
                         f"upgrade this process")
    if version < 0:
        raise ValueError(f"'v' must be a format number, not {version}")


def written() -> int:
    """The format this release writes (a factory, so that ``v`` goes on the wire with every record
    though fields at their defaults are left out: a reader fills those in)."""
    return FORMAT


class Record(Struct, kw_only=True, omit_defaults=True):
    """A record: its fields, and ``v``, the format it was written in. ``what`` names it in errors."""

    what: ClassVar[str] = "record"
    v: int = field(default_factory=written)

    def __post_init__(self) -> None:
        check_format(self.v)


R = TypeVar("R")


def _what(type_: type[Any], where: str) -> str:
    return f"{getattr(type_, 'what', 'record')}{' ' + where if where else ''}"


def check(type_: type[R], value: Any, where: str = "") -> R:
    """The record ``value`` (decoded msgpack) as ``type_``; raises `RecordError` naming the field."""
    return typed.convert(value, type_, _what(type_, where), RecordError)


def decode(type_: type[R], body: bytes, where: str = "") -> R:
    """The record in ``body`` (msgpack), decoded and checked in one step; raises `RecordError`."""
    return typed.decode(body, type_, _what(type_, where), RecordError)


class ActorEntry(Record, kw_only=True):
    """An actor's directory entry (``beach_actors``): where it runs and how it was started."""

    what: ClassVar[str] = "actor record"
    uid: Name
    realm: Name
    name: Name
    categories: list[Name]
    node: Name
    host: Name
    pid: int | None = None
    isolated: bool = False
    params: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    owner: str | None = None
    started: float = 0.0
    is_drainable: bool = False
    time_to_drain: float | None = None
    n_concurrent: int = 1
    sid: str | None = None
    restart: str = "never"
    strategy: str = "random"
    strategy_hint: str | None = None
    version: str | None = None


class NodeEntry(Record, kw_only=True):
    """A node's registry entry (``beach_nodes``): identity, hosts and state, written when its membership
    changes (the load figures in it are those of that moment: `NodeLoad` has the current ones)."""

    what: ClassVar[str] = "node record"
    id: Name
    hostname: str = "?"
    addresses: list[Name] = []
    pid: int | None = None
    started: float = 0.0
    updated: float = 0.0
    hosts: dict[str, Any] = {}
    n_actors: int = 0
    actors_by_realm: dict[str, int] = {}
    cores: int = 1
    cpu: list[float] = []
    mem: float = 0.0
    mem_total: int | None = None
    mem_available: int | None = None
    cordoned: bool = False
    open: bool = False  # it takes admin operations from anyone (no authority, no token)
    stopping: bool = False  # shutting down: takes no new actor
    reads: list[int] = []  # the request formats its hosts read (none said: format 1)
    # its hosts write their actors' entries by category (``beach_members``) and by node (``beach_placed``)
    # too (both came in one release; a node agent's view reads the latter, an actor host's the former)
    indexed: bool = False


class NodeLoad(Record, kw_only=True):
    """A node's load figures: every second on ``beach.stats.node.<node>`` (for the tools), and its
    answer to the ``load`` operation (for `resource` placement). Apart from its registry entry, which
    changes only with its membership."""

    what: ClassVar[str] = "node load record"
    node: Name
    t: float  # when measured (seconds since the epoch, the node's clock)
    cores: int = 1
    cpu: list[float] = []
    mem: float = 0.0
    mem_available: int | None = None
    n_actors: int = 0
    actors_by_realm: dict[str, int] = {}
    hosts: dict[str, int] = {}  # host id → its actors
    spawning: int = 0  # spawns under way there now


class ServerRecord(Record, kw_only=True):
    """A NATS server a node runs (``beach_config``, ``server.<name>``): where others reach it, and
    whether it carries JetStream (an anchor: the second JetStream server of a cluster's first
    machine, until three machines carry it)."""

    what: ClassVar[str] = "server record"
    name: Name
    node: Name
    client: Name
    route: Name
    jetstream: bool = False
    anchor: bool = False
    updated: float = 0.0


class JetStreamSlot(Record, kw_only=True):
    """One of the cluster's JetStream places (``beach_config``, ``jetstream.<n>``): the server that holds it."""

    what: ClassVar[str] = "JetStream slot record"
    server: Name
    node: str = "?"


class StateStats(Record, kw_only=True):
    """The sizes of actor state (``beach.stats.state``, from the node holding the supervisor lease,
    every few seconds; also in its ``info``): ``categories`` is ``{realm: {category: [keys,
    bytes]}}`` (bytes: the stored, sealed values), ``buckets`` ``{stream: {'bytes', 'messages'}}``
    for each of beach's buckets and streams."""

    what: ClassVar[str] = "state sizes record"
    t: float
    node: Name
    categories: dict[str, Any] = {}
    buckets: dict[str, Any] = {}


# ---------------------------------------------------------------- control operations' arguments
# What a node agent's operations take (``beach.n.<node>.<op>``; the spawn's is `SpawnSpec`): checked
# as the operation starts, so a bad argument is refused naming it ("bad stop request: stop
# arguments: 'uids' must be a list, not a string").


class StopArgs(Record, kw_only=True):
    """``stop``: the actors of this node to stop."""

    what: ClassVar[str] = "stop arguments"
    uids: list[Name] = []


class ReplaceArgs(Record, kw_only=True):
    """``replace``: an actor to replace, with the version its successor runs, the old one's grace
    in seconds (None: the default) and whether it must leave the node (a drain)."""

    what: ClassVar[str] = "replace arguments"
    uid: Name
    version: str | None = None
    grace: Annotated[float, Meta(ge=0, le=60)] | None = None
    away: bool = False


class CordonArgs(Record, kw_only=True):
    """``cordon``: on (no new actor is placed on the node) or off."""

    what: ClassVar[str] = "cordon arguments"
    on: bool = True


class DesiredArgs(Record, kw_only=True):
    """``desired``: desired-state records to put (checked by their key), keys to delete, key
    prefixes to delete."""

    what: ClassVar[str] = "desired arguments"
    put: dict[str, Any] = {}
    delete: list[Name] = []
    prefixes: list[Name] = []


class ConfigArgs(Record, kw_only=True):
    """``config``: the config file's mapping, for ``beach config push``."""

    what: ClassVar[str] = "config arguments"
    config: dict[str, Any]



class RemoveNodeArgs(Record, kw_only=True):
    """``remove_node``: a node gone for good, to take out of the JetStream peer set."""

    what: ClassVar[str] = "remove_node arguments"
    node: Name

class ActorArgs(Record, kw_only=True):
    """``stack`` (at a node) and ``spec`` (at a host): one actor."""

    what: ClassVar[str] = "actor arguments"
    uid: Name


class StateArgs(Record, kw_only=True):
    """``state``: change a category's actor state as an admin — keys to set (to packed values) or
    delete, or ``purge`` every key of the category (of the realm, without one; of every realm,
    without either: a cluster-wide flush)."""

    what: ClassVar[str] = "state arguments"
    realm: str | None = None
    category: str | None = None
    put: dict[str, Any] = {}
    delete: list[Name] = []
    purge: bool = False


class CategoryArgs(Record, kw_only=True):
    """``associate`` / ``disassociate``: one actor of the node and a category."""

    what: ClassVar[str] = "category arguments"
    uid: Name
    category: Name


class HelloArgs(Record, kw_only=True):
    """``hello``: an actor host of the node says it is up."""

    what: ClassVar[str] = "hello arguments"
    host: Name


# What an actor host's operations take (``beach.h.<host>.<op>``, from its node agent only).


class HostStopArgs(Record, kw_only=True):
    """``stop`` at a host: its actors to stop, and the seconds each keeps serving once out of the
    directory (a replacement's grace)."""

    what: ClassVar[str] = "stop arguments"
    uids: list[Name] = []
    grace: float = 0.0


class FlushArgs(Record, kw_only=True):
    """``flush`` at a host: stop its actors (of one realm only, if given)."""

    what: ClassVar[str] = "flush arguments"
    realm: str | None = None


class StackArgs(Record, kw_only=True):
    """``stack`` at a host: its threads' and tasks' stacks (those serving actor ``uid`` marked)."""

    what: ClassVar[str] = "stack arguments"
    uid: str | None = None
