"""The cluster's config on the bus, so that a machine joins with ``beach node nats://HOST:4222``.

``beach config push CONFIG`` asks a node to store the shareable part of a config in the KV bucket
`CONFIG_BUCKET` (only nodes may read it where NATS credentials are the authority; sealed with the
cluster's key, if any). What is shared is what every node should agree on (`SHARED`): host
counts, log and backlog limits, code settings, ``actor_modules``, the NATS servers, and the bounds
of the REST bridge and the dashboard (tools started by URL read them). Secrets (the
admin token, keys, credentials) and machine-local paths (code directory, state directories)
never travel: a joining node is given its own on its command line.

`resolve` is where "a config file or a NATS URL" is decided, for the library (``Beach(URL)``) and
every tool: given a URL, the config is the pushed one (when there is one this caller may read),
with the URL first among the servers and this machine's secrets from the environment
(`KEY_FILE_ENV`, `ADMIN_TOKEN_FILE_ENV`, and ``BEACH_AUTH_FILE`` as for any config).
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from nats.aio.client import Client
from nats.errors import Error as NatsError

from beach import bus, wire
from beach.config import Config, is_url, load, parse, read, use_secure_dir
from beach.errors import BusError, ConfigError

CONFIG_BUCKET = "beach_config"
KEY = "cluster"
SHARED = {"realm", "n_processes", "actor_modules", "replay_window", "high_mem_watermark", "log_level", "logs",
          "backlog", "code", "restbridge", "dashboard"}
SHARED_NATS = {"servers", "kv_replicas"}
LOCAL_CODE = {"cache"}  # a node's own path
KEY_FILE_ENV = "BEACH_PRIVATE_KEY_FILE"  # by URL: the cluster's private_key file
ADMIN_TOKEN_FILE_ENV = "BEACH_ADMIN_TOKEN_FILE"  # by URL: a file holding the cluster's admin_token


def shareable(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``(what may be pushed, the keys left out)`` of a parsed YAML config."""
    pushed: dict[str, Any] = {}
    left: list[str] = []
    for key, value in raw.items():
        if key == "nats" and isinstance(value, dict):
            nats = {k: v for k, v in value.items() if k in SHARED_NATS}
            left += [f"nats.{k}" for k in value if k not in SHARED_NATS]
            if nats:
                pushed["nats"] = nats
        elif key == "code" and isinstance(value, dict):
            pushed["code"] = {k: v for k, v in value.items() if k not in LOCAL_CODE}
            left += [f"code.{k}" for k in value if k in LOCAL_CODE]
        elif key in SHARED:
            pushed[key] = value
        else:
            left.append(key)
    return pushed, sorted(left)


def read_raw(path: str) -> dict[str, Any]:
    """The YAML mapping of the config file at ``path`` (checked as a config). Raises `ConfigError`."""
    raw = read(path)
    parse(raw, os.path.abspath(path))  # the whole config must be right before any of it is shared
    return dict(raw or {})


async def open_bucket(nc: Client, config: Config) -> Any:
    """The pushed-config bucket (created if missing: nodes do)."""
    replicas = config.nats.kv_replicas or bus.auto_replicas(nc)
    kv = await bus.open_bucket(nc.jetstream(timeout=bus.JS_TIMEOUT), CONFIG_BUCKET, replicas)
    return bus.sealed(kv, config)


async def store(nc: Client, config: Config, pushed: dict[str, Any]) -> int:
    """Write the pushed config (checked: it must parse); return its revision."""
    parse(pushed)
    kv = await open_bucket(nc, config)
    return int(await kv.put(KEY, wire.pack({"v": 1, "config": pushed})))


NOT_PUSHED = "the cluster has no config on the bus: run 'beach config push CONFIG' first"


async def fetch(nc: Client, config: Config, create: bool = True) -> dict[str, Any]:
    """The pushed config (``create=False``: never make its bucket; a client only reads). Raises
    `ConfigError` when none was pushed or it does not read."""
    from nats.js.errors import BucketNotFoundError, KeyNotFoundError

    try:
        if create:
            kv = await open_bucket(nc, config)
        else:
            kv = bus.sealed(await nc.jetstream(timeout=bus.JS_TIMEOUT).key_value(CONFIG_BUCKET), config)
        entry = await kv.get(KEY)
    except (KeyNotFoundError, BucketNotFoundError):
        raise ConfigError(NOT_PUSHED) from None
    try:
        value = wire.unpack(entry.value or b"")
        pushed = value["config"]
        parse(pushed)
    except Exception as err:
        raise ConfigError(f"the cluster's pushed config does not read (sealed with another key?): {err}") from None
    return dict(pushed)


def secrets(private_key: str | None = None, admin_token_file: str | None = None) -> dict[str, Any]:
    """This machine's secrets for a config read by URL (they never travel on the bus): the key
    file and the admin token from the arguments, else from `KEY_FILE_ENV` and
    `ADMIN_TOKEN_FILE_ENV`. Raises `ConfigError` for a token file that cannot be read."""
    raw: dict[str, Any] = {}
    private_key = private_key or os.environ.get(KEY_FILE_ENV)
    admin_token_file = admin_token_file or os.environ.get(ADMIN_TOKEN_FILE_ENV)
    if private_key:
        raw["private_key"] = os.path.abspath(private_key)
    if admin_token_file:
        try:
            with open(admin_token_file, encoding="utf-8") as f:
                raw["admin_token"] = f.read().strip()
        except OSError as err:
            raise ConfigError(f"admin token file {admin_token_file}: {err.strerror or err}") from None
    return raw


def bootstrap(url: str, private_key: str | None = None, secure_dir: str | None = None) -> Config:
    """The config that reaches the bus at ``url`` to read the pushed config: ``url``, the key (the
    argument, else `KEY_FILE_ENV`) and this machine's NATS credentials (``secure_dir``'s node
    user, else ``BEACH_AUTH_FILE``)."""
    check_url(url)
    config = parse({"nats": {"servers": [url]}, **secrets(private_key)})
    if secure_dir:
        use_secure_dir(config, secure_dir)
    return config


def check_url(url: str) -> str:
    """``url`` if it is a NATS URL beach can connect to, else `ConfigError` naming it."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("nats", "tls", "ws", "wss") or not rest.strip("/"):
        raise ConfigError(f"{url!r} is not a NATS URL (nats://HOST:PORT) nor a config file")
    return url


def check(target: str) -> None:
    """Fail early, with `ConfigError`, on a CONFIG argument that cannot work: a config file that
    does not load, or a URL that is not a NATS URL (what the bus says comes when connecting)."""
    if is_url(target):
        check_url(target)
    else:
        load(target)


def from_pushed(pushed: dict[str, Any], url: str) -> dict[str, Any]:
    """The pushed settings with ``url`` first among the servers."""
    raw = dict(pushed)
    servers = [url] + [s for s in (raw.get("nats") or {}).get("servers", []) if s != url]
    raw["nats"] = {**(raw.get("nats") or {}), "servers": servers}
    return raw


async def resolve(target: str | os.PathLike[str] | Config | None) -> Config:
    """The config ``target`` names: a loaded `Config` as it is, a config file (None: the defaults)
    loaded, or a NATS URL read from the bus (the pushed config, or the URL alone when none was
    pushed or this caller may not read it) with this machine's secrets (see `secrets`). Raises
    `ConfigError` (a bad file, a pushed config sealed with another key) or `BusError`."""
    if isinstance(target, Config):
        return target
    if target is None or not is_url(os.fspath(target)):
        return load(target)
    url = os.fspath(target)
    boot = bootstrap(url)
    if boot.nats.role not in (None, "node"):  # where NATS credentials rule, only nodes may read it
        return boot
    nc = await bus.connect(boot, "beach-client config")
    try:
        pushed = await fetch(nc, boot, create=False)
    except ConfigError as err:
        if str(err) != NOT_PUSHED:
            raise
        return boot
    except (BusError, NatsError, TimeoutError):  # not readable here: the URL alone will do
        return boot
    finally:
        await bus.close(nc)
    return parse({**from_pushed(pushed, url), **secrets()})


def joined(pushed: dict[str, Any], url: str, state_dir: str, private_key: str | None = None,
           admin_token_file: str | None = None) -> str:
    """Write the config of a node that joined through ``url``: the pushed settings, ``url`` first
    among the servers, this machine's own code directory, cache and secrets. Return its path."""
    os.makedirs(state_dir, exist_ok=True)
    raw = from_pushed(pushed, url)
    code_dir = os.path.join(state_dir, "code")
    os.makedirs(code_dir, exist_ok=True)  # empty: this node runs deployed code only
    raw["code_directory"] = code_dir
    raw["code"] = {**(raw.get("code") or {}), "cache": os.path.join(state_dir, "code-cache")}
    raw.update(secrets(private_key, admin_token_file))
    path = os.path.join(state_dir, "beach.yaml")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold the token
    with os.fdopen(descriptor, "w", encoding="utf-8") as f:
        f.write("# written by 'beach node " + url + "' from the cluster's pushed config\n")
        yaml.safe_dump(raw, f, sort_keys=True)
    return path
