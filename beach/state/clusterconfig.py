"""The cluster's config on the bus, so that a machine joins with ``beach node nats://HOST:4222``.

``beach config push CONFIG`` asks a node to store the shareable part of a config in the KV bucket
`CONFIG_BUCKET` (only nodes may read it where NATS credentials are the authority; sealed with the
cluster's key, if any). What is shared is what every node should agree on (`SHARED`): host
counts, log and backlog limits, code settings, actor state limits, ``actor_modules``, the NATS
servers, and the bounds of the REST bridge and the dashboard (tools started by URL read them).
Secrets (the admin token, keys, credentials) and machine-local paths (code directory, state
directories) never travel: a joining node is given its own on its command line.

Beside the pushed config (key `KEY`), the bucket keeps the servers the nodes run (``server.<name>``:
where each is reached, a `records.ServerRecord`) — the routes a joining node takes and the URLs a
new process may connect through — and the cluster's JetStream places (``jetstream.1`` to
``jetstream.3``, a `records.JetStreamSlot` each): a server that holds one carries JetStream, so no
more than three machines do, however many join.

`resolve` is where "a config file or a NATS URL" is decided, for the library (``Beach(URL)``) and
every tool: given a URL, the config is the pushed one (when there is one this caller may read),
with the URL first among the servers, then the other servers the nodes run, and this machine's
secrets from the environment (`KEY_FILE_ENV`, `ADMIN_TOKEN_FILE_ENV`, and ``BEACH_AUTH_FILE`` as
for any config).
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec
import yaml
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from beach import bus, wire
from beach.bus.clustering import JETSTREAM_SERVERS
from beach.bus.kvwatch import BucketWatch
from beach.config import Config, is_url, load, parse, read, use_secure_dir
from beach.errors import BusError, ConfigError
from beach.state import records
from beach.state.records import JetStreamSlot, ServerRecord
from beach.wire import typed

CONFIG_BUCKET = "beach_config"
KEY = "cluster"
SERVER_PREFIX = "server."
SLOT_PREFIX = "jetstream."
SHARED = {"realm", "n_processes", "actor_modules", "replay_window", "high_mem_watermark", "log_level", "logs",
          "backlog", "code", "restbridge", "dashboard", "state"}
SHARED_NATS = {"servers", "kv_replicas", "sync_interval"}
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


class Pushed(msgspec.Struct):
    """The pushed config as stored: the shareable keys of a config file (``v``: its format)."""

    config: dict[str, Any]
    v: int = 1


async def store(nc: Client, config: Config, pushed: dict[str, Any]) -> int:
    """Write the pushed config (checked: it must parse); return its revision."""
    parse(pushed)
    kv = await open_bucket(nc, config)
    return int(await kv.put(KEY, wire.pack(Pushed(pushed))))


NOT_PUSHED = "the cluster has no config on the bus: run 'beach config push CONFIG' first"


async def fetch(nc: Client, config: Config, create: bool = True) -> dict[str, Any]:
    """The pushed config (``create=False``: never make its bucket; a client only reads). Raises
    `ConfigError` when none was pushed or it does not read."""
    from nats.js.errors import BucketNotFoundError

    try:
        if create:
            kv = await open_bucket(nc, config)
        else:
            kv = bus.sealed(await nc.jetstream(timeout=bus.JS_TIMEOUT).key_value(CONFIG_BUCKET), config)
        entry = await kv.get(KEY)
    except (KeyNotFoundError, BucketNotFoundError):
        raise ConfigError(NOT_PUSHED) from None
    what = "the cluster's pushed config does not read (sealed with another key?)"
    pushed = typed.decode(entry.value or b"", Pushed, what, ConfigError).config
    try:
        parse(pushed)
    except ConfigError as err:
        raise ConfigError(f"{what}: {err}") from None
    return pushed


class Servers(BucketWatch):
    """The cluster's servers (``servers``, by name) and JetStream places (``slots``, by key), as
    the bucket ``kv`` holds them: a live copy once started (records that do not read are skipped,
    logged once and counted)."""

    def __init__(self, kv: Any) -> None:
        super().__init__(kv, self._apply)
        self.servers: dict[str, ServerRecord] = {}
        self.slots: dict[str, JetStreamSlot] = {}

    def _apply(self, entry: Any) -> None:
        key = entry.key
        if not key.startswith((SERVER_PREFIX, SLOT_PREFIX)):
            return
        server = key.startswith(SERVER_PREFIX)
        if server:
            self.servers.pop(key[len(SERVER_PREFIX):], None)
        else:
            self.slots.pop(key, None)
        if entry.operation is not None or not entry.value:
            return
        try:
            if server:
                record = records.decode(ServerRecord, entry.value, f"at {key}")
                self.servers[record.name] = record
            else:
                self.slots[key] = records.decode(JetStreamSlot, entry.value, f"at {key}")
        except records.RecordError as err:
            records.reject(CONFIG_BUCKET, key, err)


async def servers(kv: Any) -> Servers:
    """The cluster's servers and JetStream places as they are now (a snapshot)."""
    table = Servers(kv)
    await table.start()
    await table.stop()
    return table


async def publish_server(kv: Any, record: ServerRecord) -> None:
    """Write (or refresh) a server's record."""
    await kv.put(SERVER_PREFIX + record.name, wire.pack(msgspec.structs.replace(record, updated=time.time())))


async def take_slot(kv: Any, server: str, node: str) -> bool:
    """Give server ``server`` one of the cluster's JetStream places if it holds none and one is
    free (a compare-and-set: two joining at once never both get the last one); True if it holds one."""
    slots = (await servers(kv)).slots
    if any(slot.server == server for slot in slots.values()):
        return True
    for n in range(1, JETSTREAM_SERVERS + 1):
        key = f"{SLOT_PREFIX}{n}"
        if key in slots:
            continue
        try:
            await kv.create(key, wire.pack(JetStreamSlot(server=server, node=node)))
            return True
        except KeyWrongLastSequenceError:  # taken meanwhile
            continue
    return False


async def forget_server(kv: Any, name: str) -> None:
    """Delete server ``name``'s record and free its JetStream place, if it held one."""
    for key, slot in (await servers(kv)).slots.items():
        if slot.server == name:
            await kv.delete(key)
    try:
        await kv.delete(SERVER_PREFIX + name)
    except KeyNotFoundError:
        pass


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


def from_pushed(pushed: dict[str, Any], url: str, known: list[str] | None = None) -> dict[str, Any]:
    """The pushed settings with ``url`` first among the servers, then the pushed ones (where the
    operator runs NATS) or the ones the nodes run, ``known`` (client URLs)."""
    raw = dict(pushed)
    others = (raw.get("nats") or {}).get("servers") or known or []
    raw["nats"] = {**(raw.get("nats") or {}), "servers": [url] + [s for s in others if s != url]}
    return raw


async def client_urls(nc: Client, config: Config) -> list[str]:
    """The client URLs of the servers the nodes run (not their anchors), as the bucket holds them;
    none when it cannot be read."""
    try:
        kv = bus.sealed(await nc.jetstream(timeout=bus.JS_TIMEOUT).key_value(CONFIG_BUCKET), config)
        return sorted(r.client for r in (await servers(kv)).servers.values() if not r.anchor)
    except (BusError, NatsError, TimeoutError):
        return []


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
        known = await client_urls(nc, boot)
    except ConfigError as err:
        if str(err) != NOT_PUSHED:
            raise
        return boot
    except (BusError, NatsError, TimeoutError):  # not readable here: the URL alone will do
        return boot
    finally:
        await bus.close(nc)
    return parse({**from_pushed(pushed, url, known), **secrets()})


def joined(pushed: dict[str, Any], url: str, state_dir: str, private_key: str | None = None,
           admin_token_file: str | None = None, known: list[str] | None = None,
           nats: dict[str, Any] | None = None) -> str:
    """Write the config of a node that joined through ``url``: the pushed settings, this machine's
    own code directory, cache, server state and secrets. Return its path.

    Where the operator runs NATS (the pushed config names ``nats.servers``), the node runs none:
    ``url`` comes first among the servers. Else the node runs its own server, which joins through
    ``url`` and then the other servers ``known`` (client URLs): ``nats.join``; ``nats`` holds this
    machine's own server settings (ports, listen address) on top of the pushed ones.
    """
    os.makedirs(state_dir, exist_ok=True)
    pushed_nats = dict(pushed.get("nats") or {})
    if pushed_nats.get("servers"):
        raw = from_pushed(pushed, url)
    else:
        raw = dict(pushed)
        join = [url] + [s for s in known or [] if s != url]
        raw["nats"] = {**pushed_nats, "join": join, "store_dir": os.path.join(state_dir, "nats"), **(nats or {})}
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
