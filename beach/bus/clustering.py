"""The NATS cluster beach's nodes make of their own servers: each node's server identity (kept in
its state directory), its ``nats-server`` configuration, the routes' credentials, and the system
account's requests (routes, JetStream peers, peer removal).

Every node that runs its own server (a config without ``nats.servers``) joins it to the others by
NATS routes. The first node starts in clustered mode so that the cluster can grow (NATS cannot make
a standalone JetStream store clustered), and a clustered JetStream needs two servers at least to
elect a leader: while the cluster has one JetStream machine, its node also runs an *anchor*, a
second JetStream server of its own on the same machine (`anchor_name`), which leaves once three
machines carry JetStream (`nodeagent.busserver`).

Nothing here starts a process: `beach.bus.embedded` runs the binary, the node agent decides when.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from nats.aio.client import Client

from beach.config import LOOPBACK, WILDCARDS, Config
from beach.errors import BusError, ConfigError

CLUSTER_NAME = "beach"
IDENTITY_FILE = "server.yaml"
SERVER_CONFIG_FILE = "nats-server.conf"
SYSTEM_ACCOUNT = "SYS"
SYSTEM_USER = "beach-system"
ROUTE_USER = "beach-route"  # the routes' user where no NATS role names one (a password derived from a secret)
JETSTREAM_SERVERS = 3  # machines that carry JetStream (see docs/design.md: why 3, not 5)
# How often a server pings its routes, and how many unanswered pings drop one: a machine cut off
# by the network is noticed within about 6 s (nats-server's default would wait minutes).
ROUTE_PING = "2s"
ROUTE_PINGS_MISSED = 3
DEFAULT_ROUTE_PROBE = "nats://192.0.2.1:4222"  # TEST-NET-1: never answers, only picks the default route
SYSTEM_TIMEOUT = 2.0  # seconds a system-account request to the local server waits
REMOVE_TIMEOUT = 10.0  # seconds the meta leader has to agree a peer's removal


@dataclass
class Identity:
    """What a node's server keeps across restarts (``<store_dir>/server.yaml``, mode 0600): its
    name (so a restarted node rejoins as itself), whether it carries JetStream, whether the anchor
    runs beside it, its route port when one was chosen, the routes of the servers it last knew (to
    rejoin when the URLs it joined through are gone) and its system account's password."""

    name: str
    system_password: str
    jetstream: bool = True
    anchor: bool = False
    clustered: bool = True  # False: a one-node store from an earlier version, run as it was
    route_port: int = 0
    routes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, store_dir: str) -> Identity | None:
        """The identity kept in ``store_dir``, or None if there is none. Raises `ConfigError` for a
        file that does not read."""
        path = os.path.join(store_dir, IDENTITY_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f)
        except FileNotFoundError:
            return None
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read this node's server identity: {err}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or set(raw) - known:
            raise ConfigError(f"{path}: not a server identity (move it away to start this node afresh)")
        return cls(**raw)

    @classmethod
    def new(cls, hint: str) -> Identity:
        """A new identity: a name made of ``hint`` (this machine's or node's) and a random tag."""
        base = re.sub(r"[^A-Za-z0-9_-]", "-", hint)[:40].strip("-") or "node"
        return cls(name=f"{base}-{secrets.token_hex(3)}", system_password=secrets.token_urlsafe(24))

    def save(self, store_dir: str) -> None:
        """Write it to ``store_dir`` (atomically, readable by its owner only)."""
        os.makedirs(store_dir, exist_ok=True)
        path = os.path.join(store_dir, IDENTITY_FILE)
        temporary = path + ".new"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            f.write("# this node's NATS server (beach): keep it with the store to rejoin as the same server\n")
            yaml.safe_dump(asdict(self), f, sort_keys=False)
        os.replace(temporary, path)


def anchor_name(name: str) -> str:
    """The name of the anchor that runs beside server ``name``."""
    return f"{name}-anchor"


def legacy_store(store_dir: str) -> bool:
    """True if ``store_dir`` holds JetStream data but no identity: a one-node (standalone) store
    written by an earlier version, which NATS cannot turn into a clustered one."""
    data = os.path.join(store_dir, "jetstream")
    return (not os.path.exists(os.path.join(store_dir, IDENTITY_FILE)) and os.path.isdir(data)
            and bool(os.listdir(data)))


_GIVEN: collections.deque[int] = collections.deque(maxlen=64)


def free_port(host: str) -> int:
    """A TCP port free on ``host`` right now (``host`` a wildcard: on every interface), and not one
    this process was given lately: the kernel may hand the same free port to two binds in a row, and
    a server whose route port is another's (its anchor's) routes to itself and will not start."""
    while True:
        with socket.socket() as s:
            s.bind(("" if host in WILDCARDS else host, 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.append(port)
            return port


def outbound_address(url: str) -> str | None:
    """This machine's address on the way to ``url``'s host (what a server that joins through
    ``url`` listens on and advertises, unless told), or None if there is no way there."""
    host = urlsplit(url).hostname or LOOPBACK
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))  # a datagram socket sends nothing: this only picks the route
            return str(s.getsockname()[0])
    except OSError:
        return None


def advertised_host(config: Config) -> str:
    """The address other machines reach this node's server at: ``nats.advertise``, else its
    ``nats.listen`` address, else (listening on every interface) this machine's address on its
    default route, else its first address."""
    if config.nats.advertise:
        return config.nats.advertise
    if config.nats.listen not in WILDCARDS:
        return config.nats.listen
    routed = outbound_address(DEFAULT_ROUTE_PROBE)  # not a bridge of containers: the way out
    if routed is not None and not routed.startswith("127."):
        return routed
    from psutil import net_if_addrs  # only here: a wildcard listen needs the machine's addresses

    for addrs in net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return LOOPBACK


def route_credentials(config: Config) -> tuple[str, str] | None:
    """``(user, password)`` every route of the cluster must present, or None for open routes.

    Where NATS credentials are the authority (``beach secure init``), the node user's: a route
    then needs what a node already needs, so the route port is no way around the roles. Else a
    password derived from the secret every node of the cluster holds — the ``private_key``, or
    the ``admin_token``. A cluster with neither has an open bus (its client port asks nothing
    either), and open routes.
    """
    if config.nats.role == "node" and config.nats.user and config.nats.password:
        return config.nats.user, config.nats.password
    secret = config.keys[0] if config.keys else (config.admin_token or "").encode()
    if not secret:
        return None
    return ROUTE_USER, hmac.new(secret, b"beach nats route", hashlib.sha256).hexdigest()


def route_url(host: str, port: int) -> str:
    """The route URL of a server (without credentials: they are added where the config is written)."""
    return f"nats-route://{host}:{port}"


def _with_credentials(url: str, credentials: tuple[str, str] | None) -> str:
    if credentials is None:
        return url
    parts = urlsplit(url)
    user, password = (quote(c, safe="") for c in credentials)
    return f"{parts.scheme}://{user}:{password}@{parts.hostname}:{parts.port}"


def _quoted(value: str) -> str:
    return json.dumps(value)  # a NATS config string: JSON's quoting is a subset it reads


def _route_tls(secure_dir: str | None) -> dict[str, str] | None:
    """The certificate, key and CA for routes, when ``beach secure init --tls`` made them."""
    if not secure_dir:
        return None
    tls = os.path.join(secure_dir, "tls")
    paths = {"cert_file": os.path.join(tls, "server.pem"), "key_file": os.path.join(tls, "server-key.pem"),
             "ca_file": os.path.join(tls, "ca.pem")}
    return paths if all(os.path.isfile(p) for p in paths.values()) else None


@dataclass
class ServerSpec:
    """One ``nats-server`` a node runs: its name, addresses, ports, JetStream store, routes."""

    name: str
    listen: str
    port: int
    advertise: str
    route_port: int
    store_dir: str
    jetstream: bool
    routes: list[str]
    system_password: str
    advertise_clients: bool = True  # the anchor's client port is its node's business only

    @property
    def route(self) -> str:
        """This server's route URL, as others reach it."""
        return route_url(self.advertise, self.route_port)

    @property
    def client_url(self) -> str:
        """This server's client URL, as others reach it."""
        return f"nats://{self.advertise}:{self.port}"


def server_config(spec: ServerSpec, config: Config, config_dir: str, clustered: bool = True) -> str:
    """The ``nats-server`` configuration of ``spec`` (written into ``config_dir``): the config's own
    ``nats.server_config`` included first (users, permissions, client TLS), then the cluster block
    with authenticated routes (and TLS with a secure directory that has certificates), and the
    system account this node's agent alone may use."""
    lines = ["# written by the beach node agent at each start: edit the beach config instead"]
    if config.nats.server_config:
        lines.append(f"include {_quoted(os.path.relpath(config.nats.server_config, config_dir))}")
    lines += [f"server_name: {_quoted(spec.name)}",
              f"listen: {_quoted(f'{spec.listen}:{spec.port}')}"]
    if spec.advertise_clients:
        lines.append(f"client_advertise: {_quoted(f'{spec.advertise}:{spec.port}')}")
    if spec.jetstream:
        lines.append(f"jetstream {{ store_dir: {_quoted(spec.store_dir)}, "
                     f"sync_interval: {_quoted(config.nats.sync_interval)} }}")
    if clustered:
        credentials = route_credentials(config)
        cluster = [f"  name: {CLUSTER_NAME}",
                   f"  listen: {_quoted(f'{spec.listen}:{spec.route_port}')}",
                   f"  advertise: {_quoted(f'{spec.advertise}:{spec.route_port}')}",
                   f"  ping_interval: {_quoted(ROUTE_PING)}",
                   f"  ping_max: {ROUTE_PINGS_MISSED}",
                   "  routes: [" + ", ".join(_quoted(_with_credentials(r, credentials))
                                             for r in spec.routes if r != spec.route) + "]"]
        if not spec.advertise_clients:
            cluster.append("  no_advertise: true")
        if credentials is not None:
            cluster.append(f"  authorization {{ user: {_quoted(credentials[0])}, "
                           f"password: {_quoted(credentials[1])}, timeout: 2 }}")
        tls = _route_tls(config.secure_dir)
        if tls is not None:
            cluster.append("  tls { " + ", ".join(f"{k}: {_quoted(v)}" for k, v in tls.items())
                           + ", verify: true, timeout: 2 }")
        lines += ["cluster {", *cluster, "}"]
    lines += [f"accounts {{ {SYSTEM_ACCOUNT}: {{ users: [{{ user: {_quoted(SYSTEM_USER)}, "
              f"password: {_quoted(spec.system_password)} }}] }} }}",
              f"system_account: {SYSTEM_ACCOUNT}"]
    return "\n".join(lines) + "\n"


def write_config(path: str, text: str) -> str:
    """Write a server configuration (it holds passwords: its owner alone reads it); return ``path``."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------- the system account


async def system_request(nc: Client, subject: str, body: dict[str, Any] | None = None,
                         timeout: float = SYSTEM_TIMEOUT) -> dict[str, Any]:
    """A request to the system account's API (``nc`` connected as the system user); its ``data``
    (or its whole answer). Raises `BusError` saying what failed."""
    try:
        msg = await nc.request(subject, json.dumps(body or {}).encode(), timeout=timeout)
        answer = json.loads(msg.data)
    except Exception as err:
        raise BusError(f"the NATS system request {subject} failed: {err or type(err).__name__}") from None
    if not isinstance(answer, dict):
        raise BusError(f"the NATS system request {subject} answered {answer!r:.80}")
    error = answer.get("error")
    if error:
        description = error.get("description") if isinstance(error, dict) else error
        raise BusError(f"the NATS system request {subject} failed: {description}")
    data = answer.get("data", answer)
    return data if isinstance(data, dict) else {}


def _server_id(nc: Client) -> str:
    info = nc._server_info or {}  # the only place nats-py keeps the server's INFO
    return str(info.get("server_id", ""))


async def routed(nc: Client) -> set[str]:
    """The names of the servers the server ``nc`` is connected to (as the system user) has routes to."""
    data = await system_request(nc, f"$SYS.REQ.SERVER.{_server_id(nc)}.ROUTEZ")
    return {str(r.get("remote_name")) for r in data.get("routes") or [] if r.get("remote_name")}


async def meta_group(nc: Client) -> tuple[set[str], int] | None:
    """The JetStream meta group as the server ``nc`` is connected to (as the system user) knows
    it: ``(the other servers in it, how many of all must agree)``; None where that server carries
    no clustered JetStream."""
    data = await system_request(nc, f"$SYS.REQ.SERVER.{_server_id(nc)}.JSZ")
    meta = data.get("meta_cluster") or {}
    if not meta.get("quorum_needed"):
        return None
    others = {str(r["name"]) for r in meta.get("replicas") or [] if r.get("name")}
    return others, int(meta["quorum_needed"])


async def remove_peer(nc: Client, name: str) -> None:
    """Take server ``name`` out of the JetStream peer set (the meta leader answers once the change
    is agreed; ``nc`` is connected as the system user); a server that is no member (any more) is
    out already. Raises `BusError` if the leader refuses or does not answer."""
    try:
        await system_request(nc, "$JS.API.SERVER.REMOVE", {"peer": name}, timeout=REMOVE_TIMEOUT)
    except BusError as err:
        if "not a member" not in str(err):
            raise
