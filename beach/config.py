"""The beach config file: one YAML file shared by node agents and clients.

Keys (all optional)::

    realm: global               # the realm clients and tools work in unless told otherwise
    code_directory: ./          # actor code: <code_directory>/<realm>/<Name>.py
    actor_modules: [myapp]      # modules (and their submodules) 'module:Class' actors may come from
    n_processes: 0              # shared actor host processes per node; 0 = CPU count
    admin_token: secret         # on a bus without authorization: spawn/stop/flush need this token
    private_key: ./key.aes      # seal every message and value with this key (AES-256-GCM)
    accepted_keys: [./old.aes]  # keys also accepted (not used to seal): for a key rotation
    replay_window: 15           # seconds a sealed live message stays acceptable (clocks must agree)
    log_level: INFO             # node agent, hosts and actors
    interface: eth0             # the network interface whose IPv4 address a node announces
    logs:                       # cluster-wide logs (the JetStream stream beach_logs)
      max_age: 86400            # seconds a log line is kept
      max_bytes: 268435456      # the stream's size limit; the oldest lines go first
      rate: 100                 # lines per second one actor may send (past it: dropped, counted)
      burst: 500                # lines an actor may send at once before the rate applies
    backlog:                    # broadcasts and plain shots waiting for a busy actor, per actor
      messages: 10000           # past either limit they are dropped (and counted: 'dropped')
      bytes: 4194304
    code:                       # realms deployed with 'beach deploy' (the JetStream object store)
      cache: ~/.cache/beach/code  # where a node keeps the bundles it fetched, unpacked
      cache_bytes: 536870912    # the cache's bound; the least recently used bundles go first
      max_bundle_bytes: 67108864  # bigger bundles are refused before any upload
      pip: false                # may a realm's requirements.txt be pip-installed on the nodes?
      pip_args: []              # extra pip arguments (an index, --no-index --find-links DIR)
    restbridge:                 # the REST bridge's bounds on what one HTTP request may ask
      max_timeout: 60           # seconds: the longest _timeout (larger: 400)
      max_retries: 10           # the most _n_retries (more: 400)
      max_json_depth: 64        # how deeply a JSON body (or _json_data) may nest (deeper: 400)
    dashboard:                  # the dashboard's live streams (past either cap: 503, the page polls)
      max_streams: 64           # open at once, in all
      max_streams_per_client: 4 # open at once from one client address
    node_wait: 10               # seconds a call that needs a node waits for the first one to register
    payloads:                   # request and reply data too large for one NATS message
      max_bytes: 1073741824     # the largest payload (encoded); larger: PayloadTooLarge before anything is sent
      inline_bytes: 0           # larger payloads go through the object store (0: the server's max_payload)
    state:                      # actors' self.state (the KV bucket beach_state; docs/state.md)
      max_value_bytes: 262144   # one value, encoded; must leave room for the seal under max_payload
      max_keys: 100000          # keys per category; a new key past it is refused (StateError)
      retry_window: 120         # seconds a committed request is remembered: a retry within it
                                # (same request id) gets the first reply and applies nothing again
    nats:
      servers: [nats://10.0.0.5:4222]   # the operator runs NATS (these URLs): the node runs no server
      port: 4222                # the node's own server: client port
      cluster_port: 6222        # the node's own server: route port (0 = a free port, the one chosen advertised)
      listen: 127.0.0.1         # the node's own server: the address it binds (0.0.0.0: every interface)
      advertise: 10.0.0.5       # the address other machines reach it at (default: listen, or this machine's)
      join: [nats://10.0.0.5:4222]   # the servers a node joins the cluster through ('beach node URL' writes it)
      connect_wait: 5           # seconds the first connection to the bus is retried before failing
      store_dir: ./beach-state  # the node's own server: JetStream state, its name and its routes
      kv_replicas: 0            # directory buckets' replicas; 0 = automatic
      sync_interval: always     # the node's own server: JetStream's fsync ('always': before each ack; or '2m')
      user: / password: / token: / credentials:   # NATS authentication, as the server wants it
      auth_file: ./secure/client.auth   # user, password and inbox prefix ('beach secure init' writes it)
      inbox_prefix: _INBOX_client       # where replies to this process go (its NATS user may read only there)
      tls: {ca: ca.pem, cert: node.pem, key: node-key.pem}   # TLS to the servers (cert/key: client certificate)
      server_config: ./secure/nats-server.conf   # embedded server: load this config too (users, TLS)

Paths are relative to the config file. An unknown key or a value of the wrong type raises
`ConfigError` naming it. The original's keys that NATS made meaningless (``ops_port``,
``port_range_*``, ``directory_port``, keepalive and sync periods, ...) are accepted and ignored with
a warning (by the node agent, in one line), and ``seed_nodes`` is read as ``nats.servers``: in this
version seeds name NATS servers (port 4222 unless given), not beach nodes.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta, Struct, field

from beach.errors import BeachError, ConfigError
from beach.security.seal import Sealer, read_key
from beach.wire import subjects, typed

log = logging.getLogger("beach.config")

DEFAULT_PORT = 4222
DEFAULT_CLUSTER_PORT = 6222
LOOPBACK = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::", "")

LEGACY_KEYS = {
    "directory_port", "ops_port", "port_range_start", "port_range_end",
    "peer_keepalive_seconds", "instance_keepalive_seconds", "directory_sync_seconds",
    "tombstone_culling_seconds", "instance_strategy",
}

Text = Annotated[str, Meta(min_length=1)]
Count = Annotated[int, Meta(ge=0)]
Size = Annotated[int, Meta(gt=0)]
Seconds = Annotated[float, Meta(gt=0, le=1e9)]  # finite: a wait of .inf is never meant
Module = Annotated[str, Meta(pattern=r"^[\w.]+$")]
Port = Annotated[int, Meta(ge=1, le=65535)]
RoutePort = Annotated[int, Meta(ge=0, le=65535)]  # 0: a free port, chosen at start (and advertised)
Host = Annotated[str, Meta(pattern=r"^[^/: ]+$")]  # a host name or an IPv4 address, no scheme or port
Listen = Annotated[str, Meta(pattern=r"^(::|[^/: ]*)$")]  # a Host, or a wildcard: every interface
SyncInterval = Annotated[str, Meta(pattern=r"^(always|\d+(\.\d+)?(ms|s|m|h))$")]  # JetStream's: 'always' or '2m'


class Section(Struct, kw_only=True, forbid_unknown_fields=True):
    """A part of the config file: its keys are its fields (an unknown one is an error)."""


class NatsConfig(Section):
    """The ``nats:`` section: where the bus is, or how to run the embedded one."""

    servers: list[Text] = []
    port: Port = DEFAULT_PORT
    cluster_port: RoutePort = DEFAULT_CLUSTER_PORT
    listen: Listen = LOOPBACK
    advertise: Host | None = None
    join: list[Text] = []
    connect_wait: Seconds = 5.0
    store_dir: str = ""
    kv_replicas: Count = 0
    sync_interval: SyncInterval = "always"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: str | None = None
    auth_file: str | None = None
    inbox_prefix: str | None = None
    tls: dict[Literal["ca", "cert", "key"], Text] | None = None
    server_config: str | None = None
    role: str | None = None  # from the auth file: the role 'beach secure init' gave these credentials
    realm: str | None = None  # from the auth file: a realm admin's realm

    @property
    def embedded(self) -> bool:
        """True when no servers are named: a node runs its own server (joined to the others' through
        `join`), and processes on its machine connect to that one first."""
        return not self.servers

    @property
    def local_url(self) -> str:
        """The client URL of this machine's node server (on `listen`; loopback for a wildcard)."""
        host = LOOPBACK if self.listen in WILDCARDS else self.listen
        return f"nats://{host}:{self.port}"

    @property
    def urls(self) -> list[str]:
        """The URLs a client connects to, in order: the named servers; else the local node's server
        first, then those it joined through."""
        if self.servers:
            return list(self.servers)
        return [self.local_url] + [url for url in self.join if url != self.local_url]


class LogsConfig(Section):
    """The ``logs:`` section: how long the cluster keeps log lines, and how many an actor may send."""

    max_age: Seconds = 86400.0
    max_bytes: Size = 256 * 1024 * 1024
    rate: Seconds = 100.0
    burst: Size = 500


class BacklogConfig(Section):
    """The ``backlog:`` section: how many reply-less messages (broadcasts, plain shots) an actor past
    its bound keeps waiting for a free slot; past either limit they are dropped and counted."""

    messages: Size = 10_000
    bytes: Size = 4 * 1024 * 1024


class CodeConfig(Section):
    """The ``code:`` section: where a node caches deployed bundles, how big one may be, and whether
    a realm's pip requirements may be installed."""

    cache: str = "~/.cache/beach/code"
    cache_bytes: Size = 512 * 1024 * 1024
    max_bundle_bytes: Size = 64 * 1024 * 1024
    pip: bool = False
    pip_args: list[str] = []


class RestBridgeConfig(Section):
    """The ``restbridge:`` section: the bounds of what one HTTP request to the REST bridge may ask."""

    max_timeout: Seconds = 60.0
    max_retries: Count = 10
    max_json_depth: Size = 64


class DashboardConfig(Section):
    """The ``dashboard:`` section: how many live streams the dashboard keeps open (past either cap a
    page gets a 503 and polls instead, so that streams never slow the rest of the dashboard down)."""

    max_streams: Size = 64
    max_streams_per_client: Size = 4


class StateConfig(Section):
    """The ``state:`` section: limits of actors' ``self.state`` and how long a committed request is
    remembered for its retries."""

    max_value_bytes: Size = 256 * 1024
    max_keys: Size = 100_000
    retry_window: Seconds = 120.0


class PayloadsConfig(Section):
    """The ``payloads:`` section: how large a request's or a reply's data may be, and from what
    size it goes through the JetStream object store instead of in the message (`beach.bus.bodies`)."""

    max_bytes: Size = 1024 ** 3
    inline_bytes: Count = 0  # 0: as large as the server takes (its max_payload)


class ConfigFile(Section, dict=True):
    """The config file's keys (the module's docstring lists them)."""

    realm: str = "global"
    code_directory: str = "."
    actor_modules: list[Module] = []
    n_processes: Count = 0
    admin_token: str | None = None
    private_key: str | None = None
    accepted_keys: list[Text] = []
    replay_window: Seconds = 15.0
    high_mem_watermark: float = 80.0
    log_level: str | int = "INFO"
    interface: str | None = None
    node_wait: Seconds = 10.0
    nats: NatsConfig = field(default_factory=NatsConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    backlog: BacklogConfig = field(default_factory=BacklogConfig)
    code: CodeConfig = field(default_factory=CodeConfig)
    restbridge: RestBridgeConfig = field(default_factory=RestBridgeConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    state: StateConfig = field(default_factory=StateConfig)
    payloads: PayloadsConfig = field(default_factory=PayloadsConfig)


class Config(ConfigFile, kw_only=True):
    """A loaded, checked beach config: the file's keys, and what loading it found out."""

    path: str | None = None
    ignored: list[str] = []  # the original's keys this version ignores
    seed_nodes: list[str] = []  # the original's seeds, read as NATS servers
    secure_dir: str | None = None  # set by use_secure_dir: what 'beach secure init' wrote, for the hosts
    keys: list[bytes] = []  # private_key's, then accepted_keys'

    def __repr__(self) -> str:  # (never the keys)
        return f"Config(path={self.path!r})"

    @functools.cached_property
    def sealer(self) -> Sealer | None:
        """What seals this process's messages and values (one per config, so one replay memory),
        or None without a ``private_key``."""
        return Sealer(self.keys, self.replay_window) if self.keys else None

    @property
    def base_dir(self) -> str:
        """The directory relative paths are resolved against (the config file's)."""
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    @property
    def processes(self) -> int:
        """The number of shared actor host processes a node runs."""
        return self.n_processes or os.cpu_count() or 1


def _relative(base: str, path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _seed_url(seed: Any) -> str:
    url = str(seed)
    if "://" in url:
        return url
    return f"nats://{url}" if ":" in url else f"nats://{url}:{DEFAULT_PORT}"


def _given(raw: dict[str, Any]) -> dict[str, Any]:
    """The keys given a value (a key left empty in YAML takes its default), sections too."""
    return {k: _given(v) if isinstance(v, dict) and k in _SECTIONS else v for k, v in raw.items() if v is not None}


_SECTIONS = {f.name for f in msgspec.structs.fields(ConfigFile)
             if isinstance(f.type, type) and issubclass(f.type, Section)}


def parse(raw: Any, path: str | None = None) -> Config:
    """Check a parsed YAML document and build a `Config`; raise `ConfigError` naming what is wrong."""
    where = path or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the config must be a YAML mapping, not {type(raw).__name__}")
    ignored = [k for k in raw if k in LEGACY_KEYS]
    raw = _given({k: v for k, v in raw.items() if k not in LEGACY_KEYS})
    seeds = raw.pop("seed_nodes", None) or []
    if not isinstance(seeds, list):
        raise ConfigError(f"{where}: 'seed_nodes' must be a list, not {type(seeds).__name__}")
    if seeds and isinstance(raw.get("nats", {}), dict):
        nats_raw = raw.get("nats", {})
        raw["nats"] = {**nats_raw, "servers": list(nats_raw.get("servers") or []) + [_seed_url(s) for s in seeds]}
    checked = typed.convert(raw, ConfigFile, where, ConfigError)
    config = Config(**msgspec.structs.asdict(checked), path=path, seed_nodes=[str(s) for s in seeds],
                    ignored=ignored)
    base = config.base_dir
    config.code_directory = _relative(base, config.code_directory or ".") or base
    config.private_key = _relative(base, config.private_key)
    config.code.cache = _relative(base, config.code.cache) or config.code.cache
    config.accepted_keys = [_relative(base, p) or p for p in config.accepted_keys]
    if config.accepted_keys and not config.private_key:
        raise ConfigError(f"{where}: 'accepted_keys' without a 'private_key' (the key that seals)")
    try:
        config.keys = [read_key(p, what) for p, what in
                       [(config.private_key, "private_key")] + [(p, "accepted_keys") for p in config.accepted_keys]
                       if p]
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    config.nats.credentials = _relative(base, config.nats.credentials)
    config.nats.auth_file = _relative(base, config.nats.auth_file) or os.environ.get(AUTH_FILE_ENV) or None
    config.nats.server_config = _relative(base, config.nats.server_config)
    if config.nats.server_config and not os.path.isfile(config.nats.server_config):
        raise ConfigError(f"{where}: 'nats.server_config' {config.nats.server_config}: no such file")
    try:
        subjects.check_realm(config.realm)
    except BeachError as err:
        raise ConfigError(f"{where}: 'realm': {err}") from None
    if config.nats.auth_file:
        _read_auth_file(where, config.nats)
        if "realm" not in raw and config.nats.realm:  # a realm admin works in its realm
            config.realm = config.nats.realm
    if config.nats.tls:
        if ("cert" in config.nats.tls) != ("key" in config.nats.tls):
            raise ConfigError(f"{where}: 'nats.tls' needs 'cert' and 'key' together (a client certificate)")
        config.nats.tls = {k: _relative(base, v) or v for k, v in config.nats.tls.items()}
        for k, v in config.nats.tls.items():
            if not os.path.isfile(v):
                raise ConfigError(f"{where}: 'nats.tls.{k}' {v}: no such file")
    config.nats.join = [_seed_url(url) for url in config.nats.join]
    if config.nats.store_dir:
        config.nats.store_dir = _relative(base, config.nats.store_dir) or ""
    if isinstance(config.log_level, str):
        level = logging.getLevelName(config.log_level.upper())
        if not isinstance(level, int):
            raise ConfigError(f"{where}: 'log_level' {config.log_level!r} is not a logging level")
        config.log_level = config.log_level.upper()
    return config


AUTH_FILE_ENV = "BEACH_AUTH_FILE"  # an auth file for configs that name none (the deploy scripts of 'beach up')


class AuthFile(Section):
    """An auth file, as ``beach secure init`` writes one per role: the connection's user, password
    and inbox prefix, the role, a realm admin's realm, and the CA (beside the file) when TLS is on."""

    user: str
    password: str
    inbox_prefix: str | None = None
    role: str | None = None
    realm: str | None = None
    ca: str | None = None


def _read_auth_file(where: str, section: NatsConfig) -> None:
    """Fill the connection's user, password and inbox prefix from the auth file ``section`` names;
    raise `ConfigError` naming the file and the fault."""
    path = section.auth_file or ""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as err:
        raise ConfigError(f"{where}: 'nats.auth_file' {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: 'nats.auth_file' {path} is not YAML: {err}") from None
    auth = typed.convert(raw, AuthFile, f"{where}: 'nats.auth_file' {path}", ConfigError)
    section.user, section.password = auth.user, auth.password
    section.inbox_prefix = section.inbox_prefix or auth.inbox_prefix
    section.role, section.realm = auth.role, auth.realm
    if auth.ca and not section.tls:
        ca = os.path.join(os.path.dirname(path), auth.ca)
        if not os.path.isfile(ca):
            raise ConfigError(f"{where}: 'nats.auth_file' {path}: its CA {ca}: no such file")
        section.tls = {"ca": ca}


def use_secure_dir(config: Config, directory: str, user: str = "node") -> Config:
    """Point ``config`` at what ``beach secure init`` wrote in ``directory``: ``user``'s auth file,
    the server config (for an embedded server) and the CA (when it made one). Raises
    `ConfigError` naming what is missing."""
    where = config.path or "config"
    config.secure_dir = os.path.abspath(directory)
    config.nats.auth_file = os.path.join(os.path.abspath(directory), f"{user}.auth")
    _read_auth_file(where, config.nats)
    server = os.path.join(os.path.abspath(directory), "nats-server.conf")
    if config.nats.embedded:
        if not os.path.isfile(server):
            raise ConfigError(f"{directory}: no nats-server.conf (made by 'beach secure init {directory}')")
        config.nats.server_config = server
    return config


def use_ports(config: Config, port: int | None = None, cluster_port: int | None = None) -> Config:
    """Give ``config``'s own server the ports of the command line (``--nats-port``, ``--route-port``:
    several nodes on one machine); raises `ConfigError` for a port out of range."""
    given = {k: v for k, v in (("port", port), ("cluster_port", cluster_port)) if v is not None}
    ports = typed.convert({"nats": given}, ConfigFile, "the command line", ConfigError).nats
    if port is not None:
        config.nats.port = ports.port
    if cluster_port is not None:
        config.nats.cluster_port = ports.cluster_port
    return config


def use_address(config: Config, address: str) -> Config:
    """Make ``address`` (the node's interface's, ``-i IFACE``) the one its own server advertises to
    the cluster (``nats.advertise``: its client and route URLs). A server bound to one other
    address (the loopback default) could not be reached there: it binds every interface instead,
    so the machine's own scripts still find it on loopback."""
    config.nats.advertise = address
    if config.nats.listen not in WILDCARDS and config.nats.listen != address:
        config.nats.listen = WILDCARDS[0]
    return config


def warn_ignored(config: Config) -> None:
    """Log, in one line, the original's keys that this version ignores (the node agent does, once)."""
    if config.ignored:
        log.warning("%s: %s ignored: NATS does their job in this version of beach", config.path or "config",
                    ", ".join(repr(k) for k in config.ignored))


def is_url(target: str) -> bool:
    """True when a tool's CONFIG argument is a URL (``nats://HOST:PORT``) rather than a file."""
    return "://" in target


def read(path: str | os.PathLike[str]) -> Any:
    """The YAML document of the config file at ``path``, not checked yet (see `parse`). Raises
    `ConfigError` for a file that is missing, unreadable or not YAML."""
    path = os.fspath(path)
    if is_url(path):
        raise ConfigError(f"{path!r} is a URL: a config file is needed here (it is what is read or pushed)")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read and check the config file at ``path`` (None: all defaults, embedded server)."""
    if path is None:
        return parse({}, None)
    return parse(read(path), os.path.abspath(os.fspath(path)))
