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

import logging
import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import yaml

from beach.errors import BeachError, ConfigError
from beach.security.seal import Sealer, read_key
from beach.wire import subjects

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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


@dataclass
class NatsConfig:
    """The ``nats:`` section: where the bus is, or how to run the embedded one."""

    servers: list[str] = field(default_factory=list)
    port: int = DEFAULT_PORT
    cluster_port: int = DEFAULT_CLUSTER_PORT
    listen: str = LOOPBACK
    advertise: str | None = None
    join: list[str] = field(default_factory=list)
    connect_wait: float = 5.0
    store_dir: str = ""
    kv_replicas: int = 0
    sync_interval: str = "always"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: str | None = None
    auth_file: str | None = None
    inbox_prefix: str | None = None
    tls: dict[str, str] | None = None
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


@dataclass
class LogsConfig:
    """The ``logs:`` section: how long the cluster keeps log lines, and how many an actor may send."""

    max_age: float = 86400.0
    max_bytes: int = 256 * 1024 * 1024
    rate: float = 100.0
    burst: int = 500


@dataclass
class BacklogConfig:
    """The ``backlog:`` section: how many reply-less messages (broadcasts, plain shots) an actor past
    its bound keeps waiting for a free slot; past either limit they are dropped and counted."""

    messages: int = 10_000
    bytes: int = 4 * 1024 * 1024


@dataclass
class CodeConfig:
    """The ``code:`` section: where a node caches deployed bundles, how big one may be, and whether
    a realm's pip requirements may be installed."""

    cache: str = "~/.cache/beach/code"
    cache_bytes: int = 512 * 1024 * 1024
    max_bundle_bytes: int = 64 * 1024 * 1024
    pip: bool = False
    pip_args: list[str] = field(default_factory=list)


@dataclass
class RestBridgeConfig:
    """The ``restbridge:`` section: the bounds of what one HTTP request to the REST bridge may ask."""

    max_timeout: float = 60.0
    max_retries: int = 10
    max_json_depth: int = 64


@dataclass
class DashboardConfig:
    """The ``dashboard:`` section: how many live streams the dashboard keeps open (past either cap a
    page gets a 503 and polls instead, so that streams never slow the rest of the dashboard down)."""

    max_streams: int = 64
    max_streams_per_client: int = 4


@dataclass
class StateConfig:
    """The ``state:`` section: limits of actors' ``self.state`` and how long a committed request is
    remembered for its retries."""

    max_value_bytes: int = 256 * 1024
    max_keys: int = 100_000
    retry_window: float = 120.0


@dataclass
class Config:
    """A loaded, checked beach config."""

    path: str | None = None
    realm: str = "global"
    code_directory: str = "."
    actor_modules: list[str] = field(default_factory=list)
    n_processes: int = 0
    admin_token: str | None = None
    private_key: str | None = None
    accepted_keys: list[str] = field(default_factory=list)
    replay_window: float = 15.0
    high_mem_watermark: float = 80.0
    log_level: str = "INFO"
    interface: str | None = None
    node_wait: float = 10.0
    nats: NatsConfig = field(default_factory=NatsConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    backlog: BacklogConfig = field(default_factory=BacklogConfig)
    code: CodeConfig = field(default_factory=CodeConfig)
    restbridge: RestBridgeConfig = field(default_factory=RestBridgeConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    state: StateConfig = field(default_factory=StateConfig)
    ignored: list[str] = field(default_factory=list)  # the original's keys this version ignores
    seed_nodes: list[str] = field(default_factory=list)  # the original's seeds, read as NATS servers
    secure_dir: str | None = None  # set by use_secure_dir: what 'beach secure init' wrote, for the hosts
    keys: list[bytes] = field(default_factory=list, repr=False)  # private_key's, then accepted_keys'
    _sealer: Sealer | None = field(default=None, repr=False, compare=False)

    @property
    def sealer(self) -> Sealer | None:
        """What seals this process's messages and values (one per config, so one replay memory),
        or None without a ``private_key``."""
        if self._sealer is None and self.keys:
            self._sealer = Sealer(self.keys, self.replay_window)
        return self._sealer

    @property
    def base_dir(self) -> str:
        """The directory relative paths are resolved against (the config file's)."""
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    @property
    def processes(self) -> int:
        """The number of shared actor host processes a node runs."""
        return self.n_processes or os.cpu_count() or 1


# type[Any]: a value that passes its isinstance check stays Any (the checks below need its contents)
_TYPES: dict[str, tuple[type[Any], ...]] = {
    "realm": (str,), "interface": (str,), "code_directory": (str,), "actor_modules": (list,),
    "n_processes": (int,), "admin_token": (str,),
    "private_key": (str,), "accepted_keys": (list,), "replay_window": (int, float),
    "auth_file": (str,), "inbox_prefix": (str,), "tls": (dict,), "server_config": (str,),
    "high_mem_watermark": (int, float), "log_level": (str, int),
    "servers": (list,), "port": (int,), "store_dir": (str,), "kv_replicas": (int,),
    "cluster_port": (int,), "listen": (str,), "advertise": (str,), "join": (list,),
    "connect_wait": (int, float), "node_wait": (int, float),
    "user": (str,), "password": (str,), "token": (str,), "credentials": (str,),
    "max_age": (int, float), "max_bytes": (int,), "rate": (int, float), "burst": (int,),
    "messages": (int,), "bytes": (int,),
    "cache": (str,), "cache_bytes": (int,), "max_bundle_bytes": (int,), "pip": (bool,), "pip_args": (list,),
    "max_timeout": (int, float), "max_retries": (int,), "max_json_depth": (int,),
    "max_streams": (int,), "max_streams_per_client": (int,),
    "max_value_bytes": (int,), "max_keys": (int,), "retry_window": (int, float), "sync_interval": (str,),
}
_POSITIVE = {"replay_window", "connect_wait", "node_wait", "max_age", "max_bytes", "rate", "burst", "messages",
             "bytes", "cache_bytes", "max_bundle_bytes", "max_timeout", "max_json_depth", "max_streams",
             "max_streams_per_client", "max_value_bytes", "max_keys", "retry_window"}
_SYNC_INTERVAL = re.compile(r"always|\d+(\.\d+)?(ms|s|m|h)")


def _check(where: str, key: str, value: Any) -> Any:
    expected = _TYPES[key]
    if value is None and key not in ("realm", "n_processes", "port", "kv_replicas", "servers", "cluster_port", "join"):
        return None
    if isinstance(value, bool) != (bool in expected) or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise ConfigError(f"{where}: '{key}' must be {names}, not {type(value).__name__} ({value!r})")
    if key == "actor_modules":
        for module in value:
            if not isinstance(module, str) or not module.replace(".", "").replace("_", "").isalnum():
                raise ConfigError(f"{where}: 'actor_modules' entries must be module names, not {module!r}")
    if key == "pip_args" and not all(isinstance(a, str) for a in value):
        raise ConfigError(f"{where}: 'code.pip_args' entries must be strings")
    if key == "accepted_keys" and not all(isinstance(p, str) and p for p in value):
        raise ConfigError(f"{where}: 'accepted_keys' entries must be paths of key files")
    if key == "tls":
        unknown = set(value) - {"ca", "cert", "key"}
        if unknown or not all(isinstance(v, str) and v for v in value.values()):
            raise ConfigError(f"{where}: 'nats.tls' takes paths 'ca', 'cert' and 'key', not {value!r}")
        if ("cert" in value) != ("key" in value):
            raise ConfigError(f"{where}: 'nats.tls' needs 'cert' and 'key' together (a client certificate)")
    if key in ("servers", "join"):
        for url in value:
            if not isinstance(url, str) or not url:
                raise ConfigError(f"{where}: 'nats.{key}' entries must be URLs, not {url!r}")
    if key == "realm":
        try:
            subjects.check_realm(value)
        except BeachError as err:
            raise ConfigError(f"{where}: 'realm': {err}") from None
    lowest = 0 if key == "cluster_port" else 1  # a route port of 0: a free one, chosen at start
    if key in ("port", "cluster_port") and not lowest <= value <= 65535:
        raise ConfigError(f"{where}: 'nats.{key}' must be a port number ({lowest} to 65535), not {value}")
    if key in ("listen", "advertise") and (not value or any(c in value for c in "/: ")):
        if not (key == "listen" and value in WILDCARDS):
            raise ConfigError(f"{where}: 'nats.{key}' must be a host name or an IP address, not {value!r}")
    if key in ("n_processes", "kv_replicas", "max_retries") and value < 0:
        raise ConfigError(f"{where}: '{key}' must be 0 or more, not {value}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: '{key}' must be a finite number, not {value}")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"{where}: '{key}' must be above 0, not {value}")
    if key == "sync_interval" and not _SYNC_INTERVAL.fullmatch(value):
        raise ConfigError(f"{where}: 'nats.sync_interval' must be 'always' or a duration such as '2m' or '10s', "
                          f"not {value!r}")
    return value


def _relative(base: str, path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _seed_url(seed: Any) -> str:
    url = str(seed)
    if "://" in url:
        return url
    return f"nats://{url}" if ":" in url else f"nats://{url}:{DEFAULT_PORT}"


def parse(raw: Any, path: str | None = None) -> Config:
    """Check a parsed YAML document and build a `Config`; raise `ConfigError` naming what is wrong."""
    where = path or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the config must be a YAML mapping, not {type(raw).__name__}")
    config = Config(path=path)
    sections: dict[str, DataclassInstance] = {"nats": config.nats, "logs": config.logs, "backlog": config.backlog,
                                              "code": config.code, "restbridge": config.restbridge,
                                              "dashboard": config.dashboard, "state": config.state}
    top = {f.name for f in fields(Config)} - {"path", "ignored", "seed_nodes", "secure_dir", "keys", "_sealer",
                                              *sections}
    raw_sections: dict[str, Any] = {name: raw.get(name) or {} for name in sections}
    for key, value in raw.items():
        if key in sections:
            continue
        if key == "seed_nodes":
            if value:
                if not isinstance(value, list):
                    raise ConfigError(f"{where}: 'seed_nodes' must be a list, not {type(value).__name__}")
                config.seed_nodes = [str(s) for s in value]
                nats_raw = raw_sections["nats"]
                if isinstance(nats_raw, dict):
                    raw_sections["nats"] = dict(nats_raw, servers=list(nats_raw.get("servers") or []) +
                                                [_seed_url(s) for s in value])
            continue
        if key in LEGACY_KEYS:
            config.ignored.append(key)
            continue
        if key not in top:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(top | set(sections)))})")
        setattr(config, key, _check(where, key, value))
    for name, section in sections.items():
        section_raw = raw_sections[name]
        if not isinstance(section_raw, dict):
            raise ConfigError(f"{where}: '{name}' must be a mapping, not {type(section_raw).__name__}")
        known = {f.name for f in fields(section)}
        for key, value in section_raw.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown key '{name}.{key}' (known: {', '.join(sorted(known))})")
            setattr(section, key, _check(where, key, value))
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
    if config.nats.auth_file:
        _read_auth_file(where, config.nats)
        if "realm" not in raw and config.nats.realm:  # a realm admin works in its realm
            config.realm = config.nats.realm
    if config.nats.tls:
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


AUTH_KEYS = {"user", "password", "inbox_prefix", "role", "realm", "ca"}
AUTH_FILE_ENV = "BEACH_AUTH_FILE"  # an auth file for configs that name none (the deploy scripts of 'beach up')


def _read_auth_file(where: str, section: NatsConfig) -> None:
    """Fill the connection's user, password and inbox prefix from an auth file (a YAML mapping, as
    ``beach secure init`` writes one per role); raise `ConfigError` naming the file and the fault."""
    path = section.auth_file or ""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as err:
        raise ConfigError(f"{where}: 'nats.auth_file' {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: 'nats.auth_file' {path} is not YAML: {err}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("user"), str) or not isinstance(raw.get("password"), str):
        raise ConfigError(f"{where}: 'nats.auth_file' {path} must be a mapping with 'user' and 'password'")
    unknown = set(raw) - AUTH_KEYS
    if unknown:
        raise ConfigError(f"{where}: 'nats.auth_file' {path}: unknown key(s) {', '.join(sorted(unknown))}")
    section.user, section.password = raw["user"], raw["password"]
    section.inbox_prefix = section.inbox_prefix or raw.get("inbox_prefix")
    section.role, section.realm = raw.get("role"), raw.get("realm")
    ca = raw.get("ca")
    if ca and not section.tls:
        ca = os.path.join(os.path.dirname(path), ca)
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
    where = "the command line"
    if port is not None:
        config.nats.port = _check(where, "port", port)
    if cluster_port is not None:
        config.nats.cluster_port = _check(where, "cluster_port", cluster_port)
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
