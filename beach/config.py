"""The beach config file: one YAML file shared by node agents and clients.

Keys (all optional)::

    code_directory: ./          # actor code: <code_directory>/<realm>/<Name>.py
    actor_modules: [myapp]      # modules (and their submodules) 'module:Class' actors may come from
    n_processes: 0              # shared actor host processes per node; 0 = CPU count
    admin_token: secret         # nodes accept spawn/stop/flush only with this token
    private_key: ./key.aes      # reserved for message encryption (read, not yet used)
    log_level: INFO             # node agent, hosts and actors
    logs:                       # cluster-wide logs (the JetStream stream beach_logs)
      max_age: 86400            # seconds a log line is kept
      max_bytes: 268435456      # the stream's size limit; the oldest lines go first
      rate: 100                 # lines per second one actor may send (past it: dropped, counted)
      burst: 500                # lines an actor may send at once before the rate applies
    backlog:                    # broadcasts and plain shots waiting for a busy actor, per actor
      messages: 10000           # past either limit they are dropped (and counted: 'dropped')
      bytes: 4194304
    nats:
      servers: [nats://10.0.0.5:4222]   # the cluster's seed URLs; absent = embedded server
      port: 4222                # embedded server: client port on 127.0.0.1
      store_dir: ./beach-state  # embedded server: JetStream state directory
      kv_replicas: 0            # directory buckets' replicas; 0 = automatic
      user: / password: / token: / credentials:   # NATS authentication, as the server wants it

Paths are relative to the config file. An unknown key or a value of the wrong type raises
`ConfigError` naming it. The original's keys that NATS made meaningless (``ops_port``,
``port_range_*``, ``directory_port``, keepalive and sync periods, ...) are accepted and ignored with
a warning (by the node agent, in one line), and ``seed_nodes`` is read as ``nats.servers``: in this
version seeds name NATS servers (port 4222 unless given), not beach nodes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from .errors import ConfigError

log = logging.getLogger("beach.config")

DEFAULT_PORT = 4222

LEGACY_KEYS = {
    "directory_port", "ops_port", "port_range_start", "port_range_end", "interface",
    "peer_keepalive_seconds", "instance_keepalive_seconds", "directory_sync_seconds",
    "tombstone_culling_seconds", "instance_strategy",
}


@dataclass
class NatsConfig:
    """The ``nats:`` section: where the bus is, or how to run the embedded one."""

    servers: list[str] = field(default_factory=list)
    port: int = DEFAULT_PORT
    store_dir: str = ""
    kv_replicas: int = 0
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials: str | None = None

    @property
    def embedded(self) -> bool:
        """True when no servers are named, so the embedded server on 127.0.0.1 is used."""
        return not self.servers

    @property
    def urls(self) -> list[str]:
        """The URLs a client connects to."""
        return self.servers or [f"nats://127.0.0.1:{self.port}"]


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
class Config:
    """A loaded, checked beach config."""

    path: str | None = None
    code_directory: str = "."
    actor_modules: list[str] = field(default_factory=list)
    n_processes: int = 0
    admin_token: str | None = None
    private_key: str | None = None
    high_mem_watermark: float = 80.0
    log_level: str = "INFO"
    nats: NatsConfig = field(default_factory=NatsConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    backlog: BacklogConfig = field(default_factory=BacklogConfig)
    ignored: list[str] = field(default_factory=list)  # the original's keys this version ignores
    seed_nodes: list[str] = field(default_factory=list)  # the original's seeds, read as NATS servers

    @property
    def base_dir(self) -> str:
        """The directory relative paths are resolved against (the config file's)."""
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    @property
    def processes(self) -> int:
        """The number of shared actor host processes a node runs."""
        return self.n_processes or os.cpu_count() or 1


_TYPES: dict[str, tuple[type, ...]] = {
    "code_directory": (str,), "actor_modules": (list,), "n_processes": (int,), "admin_token": (str,),
    "private_key": (str,),
    "high_mem_watermark": (int, float), "log_level": (str, int),
    "servers": (list,), "port": (int,), "store_dir": (str,), "kv_replicas": (int,),
    "user": (str,), "password": (str,), "token": (str,), "credentials": (str,),
    "max_age": (int, float), "max_bytes": (int,), "rate": (int, float), "burst": (int,),
    "messages": (int,), "bytes": (int,),
}
_POSITIVE = {"max_age", "max_bytes", "rate", "burst", "messages", "bytes"}


def _check(where: str, key: str, value: Any) -> Any:
    expected = _TYPES[key]
    if value is None and key not in ("n_processes", "port", "kv_replicas", "servers"):
        return None
    if isinstance(value, bool) or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        raise ConfigError(f"{where}: '{key}' must be {names}, not {type(value).__name__} ({value!r})")
    if key == "actor_modules":
        for module in value:
            if not isinstance(module, str) or not module.replace(".", "").replace("_", "").isalnum():
                raise ConfigError(f"{where}: 'actor_modules' entries must be module names, not {module!r}")
    if key == "servers":
        for url in value:
            if not isinstance(url, str) or not url:
                raise ConfigError(f"{where}: 'nats.servers' entries must be URLs, not {url!r}")
    if key in ("n_processes", "kv_replicas") and value < 0:
        raise ConfigError(f"{where}: '{key}' must be 0 or more, not {value}")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"{where}: '{key}' must be above 0, not {value}")
    return value


def _relative(base: str, path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _seed_url(seed: Any) -> str:
    seed = str(seed)
    if "://" in seed:
        return seed
    return f"nats://{seed}" if ":" in seed else f"nats://{seed}:{DEFAULT_PORT}"


def parse(raw: Any, path: str | None = None) -> Config:
    """Check a parsed YAML document and build a `Config`; raise `ConfigError` naming what is wrong."""
    where = path or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the config must be a YAML mapping, not {type(raw).__name__}")
    config = Config(path=path)
    sections = {"nats": config.nats, "logs": config.logs, "backlog": config.backlog}
    top = {f.name for f in fields(Config)} - {"path", "ignored", "seed_nodes", *sections}
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
    if config.private_key:
        _check_key(where, config.private_key)
    config.nats.credentials = _relative(base, config.nats.credentials)
    if config.nats.store_dir:
        config.nats.store_dir = _relative(base, config.nats.store_dir) or ""
    if isinstance(config.log_level, str):
        level = logging.getLevelName(config.log_level.upper())
        if not isinstance(level, int):
            raise ConfigError(f"{where}: 'log_level' {config.log_level!r} is not a logging level")
        config.log_level = config.log_level.upper()
    return config


def _check_key(where: str, path: str) -> None:
    """A ``private_key`` file must exist and hold a key (32 bytes, as ``beach gen-key`` writes): said
    when the config is read, before anything connects."""
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise ConfigError(f"{where}: 'private_key' {path}: {err.strerror or err}") from None
    if size != 32:
        raise ConfigError(f"{where}: 'private_key' {path} holds {size} bytes, not a key (32 bytes; "
                          f"make one with 'beach gen-key PATH')")


def warn_ignored(config: Config) -> None:
    """Log, in one line, the original's keys that this version ignores (the node agent does, once)."""
    if config.ignored:
        log.warning("%s: %s ignored: NATS does their job in this version of beach", config.path or "config",
                    ", ".join(repr(k) for k in config.ignored))


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read and check the config file at ``path`` (None: all defaults, embedded server)."""
    if path is None:
        return parse({}, None)
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse(raw, os.path.abspath(path))
