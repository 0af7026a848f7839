"""The spawn: `SpawnOptions`, `AsyncBeach.addActor`'s arguments, defined once — the library's
signature, the CLI's and the shell's options, the console's form and a patrol entry's keys all
derive from it — and `SpawnSpec`, the same options as the record a node agent takes.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, cast, get_args, get_type_hints

import msgspec
from msgspec import Meta, Struct, field

from beach.errors import CategoryError, UsageError
from beach.state.records import FORMAT, Name, check_format, written
from beach.wire import subjects, typed

SPAWN_TIMEOUT = 60.0  # seconds a spawn waits for the actor's init() (addActor's timeout=)
HOST_START_SECONDS = 30.0  # a node agent's bound on starting an actor host process

Strategy = Literal["random", "resource", "affinity", "host_affinity", "repulsion", "roundrobin"]
Restart = Literal["never", "on-failure", "always"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
RESTART_POLICIES: tuple[str, ...] = get_args(Restart)

PositiveInt = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]


def _option(help: str, *flags: str, metavar: str | None = None, parse: str | None = None) -> Meta:
    """A spawn option's help and command-line flags (``parse``: 'data' for JSON or a Python
    literal, 'level' for a logging level's name or number)."""
    return Meta(description=help, extra={"flags": flags, "metavar": metavar, "parse": parse})


class SpawnOptions(Struct):
    """`AsyncBeach.addActor`'s arguments, in the seed's order: start actor class ``actorName`` in
    ``category`` (a name or a list). Each field's ``Meta`` holds its help and its command-line flags.

    Building one checks what does not need the types (categories, realm, version, names);
    `checked` checks the types too. Raises `CategoryError` for a bad category or realm and
    `UsageError` for the rest (naming the argument)."""

    actorName: Annotated[str, Meta(min_length=1, description="the actor class: <code_directory>/<realm>/<Name>.py, "
                                                             "or module:Class")]
    category: Annotated[str | list[str], Meta(description="its categories")]
    strategy: Annotated[Strategy, _option("placement: " + ", ".join(STRATEGIES), "-s", "--strategy")] = "random"
    strategy_hint: Annotated[str | None, _option("the strategy's hint (a category, or a node for host_affinity)",
                                                 "-sh", "--strategy-hint", "--hint", metavar="HINT")] = None
    realm: Annotated[str | None, Meta(description="its realm (default: the client's)")] = None
    parameters: Annotated[dict[str, Any] | None, _option("parameters for init(): JSON or a Python literal",
                                                         "-p", "--params", metavar="DATA", parse="data")] = None
    resources: Annotated[dict[str, Any] | None, _option("resources for init(): JSON or a Python literal",
                                                        "-r", "--resources", metavar="DATA", parse="data")] = None
    isIsolated: Annotated[bool, _option("run it in a host process of its own", "-i", "--isolated")] = False
    secretIdent: Annotated[str | None, _option("the ident it sends with its own requests", "-id", "--ident",
                                                   metavar="IDENT")] = None
    trustedIdents: Annotated[list[str], _option("an ident it accepts (repeat for several)", "-t", "--trusted",
                                                metavar="IDENT")] = []
    n_concurrent: Annotated[PositiveInt, _option("the original's n_concurrent", "-o", "--n-concurrent",
                                                   metavar="N")] = 1
    is_drainable: Annotated[bool, _option("it may be drained and recycled (time_to_drain, memory)",
                                          "-d", "--drainable")] = False
    time_to_drain: Annotated[PositiveFloat | None, _option("recycle it after S seconds (drainable)",
                                                             "--time-to-drain", metavar="S")] = None
    owner: Annotated[str | None, _option("an owner name recorded with it", "--owner", metavar="NAME")] = None
    log_level: Annotated[int | str | None, _option("its log level (a name such as DEBUG, or a number)",
                                                   "-ll", "--log-level", metavar="LEVEL", parse="level")] = None
    log_dest: Annotated[str | None, _option("accepted for compatibility (hosts log to stderr)", "-ld",
                                            "--log-dest", metavar="DEST")] = None
    max_concurrent: Annotated[PositiveInt | None, _option("requests it serves at once before answering 'busy'",
                                                            "--max-concurrent", metavar="N")] = None
    restart: Annotated[Restart, _option("keep it running: restart it when it fails", "--restart")] = "never"
    max_restarts: Annotated[Annotated[int, Meta(ge=0)], _option(
        "more restarts than this within the window marks it failed", "--max-restarts", metavar="N")] = 5
    restart_window: Annotated[PositiveFloat, _option("the window of --max-restarts, in seconds",
                                                       "--restart-window", metavar="S")] = 60.0
    timeout: Annotated[PositiveFloat, _option("seconds its init() may take", "--timeout", metavar="S")] = SPAWN_TIMEOUT
    version: Annotated[str | None, _option("run this deployed version of the realm's code (default: its current)",
                                           "--version", metavar="VERSION")] = None

    def __post_init__(self) -> None:
        if cast(Any, self.strategy) is None:  # (the seed's and py-beach's scripts pass None for the default)
            self.strategy = "random"
        categories = [self.category] if isinstance(self.category, str) else list(self.category)
        if not categories:
            raise CategoryError("addActor needs at least one category")
        if self.realm is not None:
            subjects.check_realm(self.realm)
        # (with the realm known, each category's subjects must fit the server's limits)
        self.category = [subjects.normalize(c) if self.realm is None else subjects.routable(self.realm, c)
                         for c in categories]
        if self.version is not None:
            subjects.check_version(self.version)

    @property
    def categories(self) -> list[str]:
        """The categories, normalized (a list, whatever ``category`` was given as)."""
        return self.category if isinstance(self.category, list) else [self.category]

    @classmethod
    def checked(cls, *args: Any, **kwargs: Any) -> SpawnOptions:
        """`SpawnOptions` from `addActor`'s arguments, every one checked against its type."""
        options = cls(*args, **kwargs)
        return typed.convert(msgspec.structs.asdict(options), cls, "addActor", UsageError)

    def spec(self, realm: str, **changes: Any) -> SpawnSpec:
        """The spawn request a node agent takes (``realm``: the client's, unless the options name
        one; ``changes``: fields set by the caller, e.g. the ``owner`` a patrol gives)."""
        values = {f.name: getattr(self, f.name) for f in msgspec.structs.fields(SpawnOptions)}
        return SpawnSpec(**{**values, "realm": self.realm or realm, **changes})


def help_of(name: str) -> str:
    """The help of `SpawnOptions` field ``name``."""
    return next(m.description for m in _META[name] if m.description)


def extra_of(name: str) -> dict[str, Any]:
    """What `SpawnOptions` field ``name`` says of itself as a command-line option: ``flags``,
    ``metavar``, ``parse`` (see `_option`)."""
    return next((m.extra for m in _META[name] if m.extra), {})


def options() -> tuple[msgspec.structs.FieldInfo, ...]:
    """The fields of `SpawnOptions` a tool asks for as options (the class, categories and realm
    it asks for its own way)."""
    return tuple(f for f in msgspec.structs.fields(SpawnOptions) if f.name not in ("actorName", "category", "realm"))


_META = {name: [m for m in get_args(hint)[1:] if isinstance(m, Meta)]
         for name, hint in get_type_hints(SpawnOptions, include_extras=True).items()}


class SpawnSpec(SpawnOptions, kw_only=True, omit_defaults=True):
    """A spawn as a node agent (then an actor host) takes it: the `SpawnOptions` under the names
    the wire has always used for five of them, the realm settled, and who takes it (``uid``, ``node``:
    chosen by the node agent) and the supervision it belongs to (``sid``); ``v``: its format."""

    what: ClassVar[str] = "spawn record"
    v: int = field(default_factory=written)
    actorName: Name = field(name="name")
    category: list[str] = field(name="categories")
    realm: Name
    isIsolated: bool = field(default=False, name="isolated")
    secretIdent: str | None = field(default=None, name="ident")
    trustedIdents: list[str] = field(default_factory=list, name="trusted")
    sid: str | None = None
    uid: str | None = None  # the new actor's: chosen by the node agent that takes the spawn
    node: str | None = None  # that node agent's

    def __post_init__(self) -> None:
        check_format(self.v)
        SpawnOptions.__post_init__(self)


__all__ = ["FORMAT", "RESTART_POLICIES", "STRATEGIES", "Restart", "SpawnOptions", "SpawnSpec", "Strategy"]
