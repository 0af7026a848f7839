"""The cluster's config on the bus, so that a machine joins with ``beach node nats://HOST:4222``.

``beach config push CONFIG`` asks a node to store the shareable part of a config in the KV bucket
`CONFIG_BUCKET` (only nodes may read it where NATS credentials are the authority; sealed with the
cluster's key, if any). What is shared is what every node should agree on (`SHARED`): host
counts, log and backlog limits, code settings, ``actor_modules``, the NATS servers. Secrets (the
admin token, keys, credentials) and machine-local paths (code directory, state directories)
never travel: a joining node is given its own on its command line.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from nats.aio.client import Client

from beach import bus, wire
from beach.config import Config, parse, read
from beach.errors import ConfigError

CONFIG_BUCKET = "beach_config"
KEY = "cluster"
SHARED = {"n_processes", "actor_modules", "replay_window", "high_mem_watermark", "log_level", "logs", "backlog",
          "code"}
SHARED_NATS = {"servers", "kv_replicas"}
LOCAL_CODE = {"cache"}  # a node's own path


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


async def fetch(nc: Client, config: Config) -> dict[str, Any]:
    """The pushed config. Raises `ConfigError` when none was pushed or it does not read."""
    from nats.js.errors import KeyNotFoundError

    kv = await open_bucket(nc, config)
    try:
        entry = await kv.get(KEY)
    except KeyNotFoundError:
        raise ConfigError("the cluster has no config on the bus: run 'beach config push CONFIG' first") from None
    try:
        value = wire.unpack(entry.value or b"")
        pushed = value["config"]
        parse(pushed)
    except Exception as err:
        raise ConfigError(f"the cluster's pushed config does not read (sealed with another key?): {err}") from None
    return dict(pushed)


def joined(pushed: dict[str, Any], url: str, state_dir: str, private_key: str | None = None,
           admin_token_file: str | None = None) -> str:
    """Write the config of a node that joined through ``url``: the pushed settings, ``url`` first
    among the servers, this machine's own code directory, cache and secrets. Return its path."""
    os.makedirs(state_dir, exist_ok=True)
    raw = dict(pushed)
    servers = [url] + [s for s in (raw.get("nats") or {}).get("servers", []) if s != url]
    raw["nats"] = {**(raw.get("nats") or {}), "servers": servers}
    code_dir = os.path.join(state_dir, "code")
    os.makedirs(code_dir, exist_ok=True)  # empty: this node runs deployed code only
    raw["code_directory"] = code_dir
    raw["code"] = {**(raw.get("code") or {}), "cache": os.path.join(state_dir, "code-cache")}
    if private_key:
        raw["private_key"] = os.path.abspath(private_key)
    if admin_token_file:
        try:
            with open(admin_token_file, encoding="utf-8") as f:
                raw["admin_token"] = f.read().strip()
        except OSError as err:
            raise ConfigError(f"admin token file {admin_token_file}: {err.strerror or err}") from None
    path = os.path.join(state_dir, "beach.yaml")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold the token
    with os.fdopen(descriptor, "w", encoding="utf-8") as f:
        f.write("# written by 'beach node " + url + "' from the cluster's pushed config\n")
        yaml.safe_dump(raw, f, sort_keys=True)
    return path
