"""Who may run admin operations (spawn, stop, flush, desired state), and how a caller proves it.

Two authorities, one per kind of bus:

* **NATS credentials**, where the config's auth file names a role (``beach secure init`` wrote it).
  The server's authorization decides who may publish to which control subject; each control
  subject ends with the realm it acts on and the caller's NATS user
  (``beach.n.<node>.<op>.<realm or _>.<user>``), so the permissions can confine a realm admin to
  its realm, and whoever reads the audit log knows who it was.
* **The admin token**, on a bus without authorization. The token never crosses the bus: the caller
  asks the node for a one-time challenge and sends ``HMAC-SHA256(token, challenge | subject |
  arguments)`` with the arguments, so a sniffer (or another key holder) learns neither the token
  nor anything it could replay.

With neither, the cluster is **open**, as py-beach's was without an ``admin_token``: everyone who
reaches NATS may do everything (spawn, stop, flush, deploy, push config). Every node says so in its
registry entry (``open``), so the library and every tool apply one rule (`read_only`), and each says
it once (`open_notice`), louder when NATS listens beyond loopback.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from beach import wire
from beach.bus.inbox import Inbox
from beach.config import Config
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.state.records import NodeEntry

CLUSTER = "_"  # the scope token of an operation on every realm
SIGNED = "_s"  # the key of a signed body's arguments (short: it rides beside them)


class Signed(msgspec.Struct):
    """An admin operation's body: its packed arguments, the challenge it answers and the proof of
    the admin token for both (the keys are short: they ride beside the arguments)."""

    body: bytes = msgspec.field(name=SIGNED)
    challenge: bytes = msgspec.field(name="_c")
    proof: bytes = msgspec.field(name="_p")

CHALLENGE_SECONDS = 30.0
MAX_CHALLENGES = 10_000
ROLES = ("node", "admin", "realm-admin", "client", "observer")
ADMIN_ROLES = ("node", "admin", "realm-admin")


def nats_authority(config: Config) -> bool:
    """True when NATS credentials are the authority: the config's auth file names a role."""
    return bool(config.nats.role)


OPEN = "this cluster is open: anyone who reaches its NATS port is admin"
NO_TOKEN = "read-only: the config has no admin_token (the cluster's nodes need one)"


def open_node(config: Config) -> bool:
    """True when a node with this config takes admin operations from anyone (no NATS authority, no
    admin token): what its registry entry says as ``open``."""
    return not nats_authority(config) and not config.admin_token


def is_open(config: Config, nodes: Iterable[NodeEntry] = ()) -> bool:
    """True when this caller may do anything because nobody is asked to prove anything: it has no
    role and no admin token, and no node (of ``nodes``, registry entries) needs either."""
    return open_node(config) and all(node.open for node in nodes)


def read_only(config: Config, nodes: Iterable[NodeEntry] = ()) -> str | None:
    """Why a caller with this config may not run admin operations, or None if it may: with NATS
    authority, the role its credentials have; on a bus without, whether it has the admin token the
    nodes (``nodes``, their registry entries) need — an open cluster needs none."""
    if nats_authority(config):
        role = config.nats.role
        if role in ADMIN_ROLES:
            return None
        return (f"read-only: the NATS credentials (user {config.nats.user!r}, role {role}) allow no admin "
                f"operations")
    if not config.admin_token and not is_open(config, nodes):
        return NO_TOKEN
    return None


def require_admin(config: Config, what: str, nodes: Iterable[NodeEntry] = ()) -> None:
    """Raise `UsageError` saying why ``what`` cannot be done with this config's rights (before any
    of it is sent: an upload refused half-way helps nobody)."""
    reason = read_only(config, nodes)
    if reason is not None:
        from beach.errors import UsageError

        raise UsageError(f"{what} needs admin rights, and this config is {reason}")


def open_notice(config: Config, nodes: Iterable[NodeEntry], exposed: str | None) -> str | None:
    """The one line a tool (or a node) says on an open cluster, None on another; ``exposed``: an
    address beyond loopback where NATS listens (then the line says so, as a warning)."""
    if not is_open(config, nodes):
        return None
    if exposed is None:
        return f"note: {OPEN} (NATS listens on loopback only)"
    return (f"WARNING: {OPEN}, and NATS listens on {exposed}, beyond this machine: set an admin_token "
            f"or run 'beach secure init' (docs/security.md)")


def caller(config: Config) -> str:
    """The name a caller's control subjects carry: its NATS user, else ``user@host`` (a claim only,
    on a bus without authorization)."""
    if config.nats.user:
        return config.nats.user
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (a container): the host alone still says something
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def scope(config: Config) -> str | None:
    """The one realm a realm admin's credentials reach; None for everyone else."""
    return config.nats.realm if config.nats.role == "realm-admin" else None


def control_subject(node: str, op: str, realm: str | None, who: str) -> str:
    """The subject of control operation ``op`` of node ``node`` on ``realm`` (None: cluster-wide)."""
    token = CLUSTER if realm is None else subjects.escape(subjects.check_realm(realm))
    return f"{subjects.node_subject(node, op)}.{token}.{subjects.escape(who)}"


def parse_control(subject: str, prefix: str) -> tuple[str, str | None, str]:
    """``(op, realm or None, who)`` from a control subject under ``prefix`` (``beach.n.<node>.``);
    raise ``ValueError`` for one that is not shaped like one. A bare ``<prefix><op>`` (a beach
    before this one) is cluster-wide and anonymous."""
    tokens = subject[len(prefix):].split(".")
    if len(tokens) == 1:
        return tokens[0], None, "?"
    if len(tokens) != 3:
        raise ValueError(f"not a control subject: {subject}")
    op, realm, who = tokens
    return op, None if realm == CLUSTER else subjects.unescape(realm), subjects.unescape(who)


# The node operations that need admin rights (a host's also include 'spec' and 'republish').
ADMIN_OPS = frozenset({"spawn", "stop", "flush", "associate", "disassociate", "desired", "stack", "replace",
                       "cordon", "config", "remove_node", "state"})
# The node operations that write JetStream (the directory, the desired state, the pushed config): a
# node refuses them at once while JetStream has lost its quorum, instead of letting them hang.
WRITE_OPS = ADMIN_OPS - {"stack"}
HOST_ADMIN_OPS = ADMIN_OPS | {"spec", "republish"}


async def control_body(inbox: Inbox, subject: str, challenge_subject: str, args: object, token: str | None,
                       what: str, timeout: float) -> bytes:
    """The body of a control request to ``subject``: the packed arguments, or, with ``token``, the
    arguments signed for a challenge fetched from ``challenge_subject`` first. Raises what
    ``inbox.request`` raises, `EncodeError` for arguments msgpack cannot carry, and ``ValueError``
    when the answer to the challenge request is not one."""
    if token is None:
        return wire.pack(args, what=what)
    msg = await inbox.request(challenge_subject, b"", timeout)
    ok, error, data = wire.unpack_reply(msg.data)
    if not ok or not isinstance(data, dict) or not isinstance(data.get("challenge"), bytes):
        raise ValueError(f"no challenge in the answer ({error or 'none given'})")
    return signed(token, data["challenge"], subject, args, what)


def _proof(token: str, challenge: bytes, subject: str, body: bytes) -> bytes:
    key = hashlib.sha256(b"beach admin token\0" + token.encode()).digest()
    # truncated to 128 bits (as RFC 2104 allows): a signed body must stay close to the bare one
    return hmac.new(key, challenge + subject.encode() + b"\0" + body, hashlib.sha256).digest()[:16]


def signed(token: str, challenge: bytes, subject: str, args: object, what: str) -> bytes:
    """The body of an admin operation proving knowledge of ``token`` for ``challenge``: the packed
    arguments, the challenge and the proof. Raises `EncodeError` for arguments msgpack cannot carry."""
    body = wire.pack(args, what=what)
    return wire.pack(Signed(body, challenge, _proof(token, challenge, subject, body)))


class Challenges:
    """The one-time challenges a control server handed out and not yet seen answered."""

    def __init__(self) -> None:
        self._open: OrderedDict[bytes, float] = OrderedDict()

    def issue(self) -> bytes:
        """A new challenge, valid once for `CHALLENGE_SECONDS`."""
        now = time.monotonic()
        while self._open and (len(self._open) >= MAX_CHALLENGES or next(iter(self._open.values())) < now):
            self._open.popitem(last=False)
        challenge = os.urandom(16)
        self._open[challenge] = now + CHALLENGE_SECONDS
        return challenge

    def verify(self, token: str, subject: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The arguments of a signed body whose proof is right for an open challenge (which is then
        used up), else None."""
        try:
            signed = msgspec.convert(body, Signed)
        except msgspec.ValidationError:
            return None
        expires = self._open.pop(signed.challenge, None)
        if expires is None or expires < time.monotonic():
            return None
        if not hmac.compare_digest(signed.proof, _proof(token, signed.challenge, subject, signed.body)):
            return None
        args = wire.unpack(signed.body)
        return args if isinstance(args, dict) else None
