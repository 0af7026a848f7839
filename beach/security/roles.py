"""``beach secure init``: NATS users and permissions for beach's roles, and TLS certificates.

Beach leaves access control to the NATS server: this module only writes its configuration. Each
role is one NATS user with a password and its own reply-inbox prefix (``_INBOX_<user>``), which
it alone may subscribe to. What each may publish (``allow`` lists: anything not named is refused):

=============  ===========================================================================
node           everything (node agents and actor hosts: they serve requests, write the KV
               buckets — actor state included —, the lease, the logs and the audit log)
admin          requests, broadcasts, node control (``beach.n.*.*.*.<user>``), reading state,
               reading actor state, uploading code (the object store ``beach_code``; nodes
               record the versions)
realm-admin    requests and node control within its realm (``beach.n.*.*.<realm>.<user>``),
               reading its realm's actor state, uploading code, large payloads
client         requests, shots and broadcasts (``beach.r/b/a.>``) and their cancellations
               (``beach.cancel.>``), reading state, large
               payloads (writing, reading and deleting chunks of ``beach_payloads``)
observer       reading state only (the dashboard's role); of actor state, its sizes only
=============  ===========================================================================

"Reading state" is the JetStream API calls a KV watch, a KV get and a stream read make on beach's
buckets and streams, the per-second load figures (``beach.stats.>``, with the sizes of actor
state), the live logs, nodes' ``info``, and ``beach.hb.>``: nodes' beats (a caller listens to the node its
call waits on), the lease holder's word that a node is late, and beacons (while JetStream has lost
its quorum). Actors' state (``KV_beach_state``) is apart: its keys and values are read by admins,
and by a realm admin for its own realm only (the realm is in the subjects of those reads: a
consumer whose filter is in its create subject, a direct get by subject). No role but *node* may
write a bucket (``$KV.>``), touch an actor's subjects as a subscriber (so none can join the
actors' queue groups), or publish to an actor host.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from beach.bus import ACTORS_BUCKET, DESIRED_BUCKET, NODES_BUCKET, STATE_BUCKET, bodies
from beach.code.store import CODE_BUCKET
from beach.errors import UsageError
from beach.wire import subjects

AUDIT_STREAM = "beach_audit"
LOG_STREAM = "beach_logs"
STREAMS = [f"KV_{ACTORS_BUCKET}", f"KV_{NODES_BUCKET}", f"KV_{DESIRED_BUCKET}", LOG_STREAM, AUDIT_STREAM]
STATE_STREAM = f"KV_{STATE_BUCKET}"
SERVER_CONFIG = "nats-server.conf"
AUTH_CONFIG = "auth.conf"
TLS_CONFIG = "tls.conf"


@dataclass
class User:
    """One NATS user: its name, role, password and (for a realm admin) realm."""

    name: str
    role: str
    password: str
    realm: str | None = None

    @property
    def inbox(self) -> str:
        """The reply-inbox prefix only this user may subscribe to."""
        return f"_INBOX_{subjects.escape(self.name)}"


def _reading(user: User) -> tuple[list[str], list[str]]:
    """(publish, subscribe) allowances for reading beach's state."""
    publish = ["$JS.API.INFO", "$JS.API.STREAM.NAMES"]
    for stream in STREAMS:
        publish += [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}",
                    f"$JS.API.CONSUMER.CREATE.{stream}.>", f"$JS.API.CONSUMER.DELETE.{stream}.>",
                    f"$JS.API.CONSUMER.INFO.{stream}.>", f"$JS.API.DIRECT.GET.{stream}",
                    f"$JS.API.DIRECT.GET.{stream}.>", f"$JS.API.STREAM.MSG.GET.{stream}",
                    f"$JS.FC.{stream}.>"]  # flow-control answers of the ordered consumers reading them
    who = subjects.escape(user.name)
    publish.append(f"beach.n.*.info.*.{who}")
    return publish, [f"{user.inbox}.>", "beach.stats.>", "beach.log.>", "beach.hb.>"]


def _reading_actor_state(realm: str | None) -> list[str]:
    """Publish allowances for reading actors' state: every realm's (None), or one realm's."""
    if realm is None:
        return [f"$JS.API.CONSUMER.CREATE.{STATE_STREAM}.>", f"$JS.API.DIRECT.GET.{STATE_STREAM}.>"]
    keys = f"$KV.{STATE_BUCKET}.{subjects.escape(subjects.check_realm(realm))}.>"
    return [f"$JS.API.CONSUMER.CREATE.{STATE_STREAM}.*.{keys}", f"$JS.API.DIRECT.GET.{STATE_STREAM}.{keys}"]


def _payloads() -> list[str]:
    """Publish allowances for sending and receiving payloads too large for a message: writing
    chunks to the payload store, reading them (an ordered consumer), deleting what was read. Any
    of them may touch any object there: what protects one is its key, in the (sealed) message."""
    stream = bodies.STREAM
    return [f"$O.{bodies.BUCKET}.C.>", f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.PURGE.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.DELETE.{stream}.>", f"$JS.API.CONSUMER.INFO.{stream}.>", f"$JS.FC.{stream}.>",
            f"$JS.API.STREAM.MSG.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>"]


def permissions(user: User) -> dict[str, object]:
    """The NATS ``permissions`` block of ``user``."""
    if user.role == "node":
        return {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
    publish, subscribe = _reading(user)
    who = subjects.escape(user.name)
    if user.role in ("client", "admin"):
        publish += ["beach.r.>", "beach.b.>", "beach.a.>", "beach.cancel.>"]
    if user.role in ("client", "admin", "realm-admin"):  # large payloads, both ways (bus/bodies.py)
        publish += _payloads()
    if user.role in ("admin", "realm-admin"):  # deploying code: the object store (nodes record versions)
        stream = f"OBJ_{CODE_BUCKET}"
        publish += [f"$O.{CODE_BUCKET}.>", f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.PURGE.{stream}",
                    f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
                    f"$JS.API.STREAM.MSG.GET.{stream}",
                    f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
                    f"$JS.API.CONSUMER.DELETE.{stream}.>", f"$JS.API.CONSUMER.INFO.{stream}.>", f"$JS.FC.{stream}.>"]
    if user.role == "admin":
        publish.append(f"beach.n.*.*.*.{who}")
        publish += _reading_actor_state(None)
    if user.role == "realm-admin":
        realm = subjects.escape(subjects.check_realm(user.realm or ""))
        publish += [f"beach.r.{realm}.>", f"beach.b.{realm}.>", f"beach.a.{realm}.>", f"beach.n.*.*.{realm}.{who}",
                    f"beach.cancel.{realm}"]
        publish += _reading_actor_state(user.realm)
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


def _conf_value(value: object, indent: int = 2) -> str:
    """``value`` in the NATS config syntax (JSON-like; strings quoted)."""
    pad = " " * indent
    if isinstance(value, dict):
        inner = "\n".join(f"{pad}{k}: {_conf_value(v, indent + 2)}" for k, v in value.items())
        return "{\n" + inner + "\n" + " " * (indent - 2) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_conf_value(v, indent) for v in value) + "]"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(users: list[User]) -> str:
    """The ``authorization`` block of the server config for ``users``."""
    entries = ",\n".join("    " + _conf_value({"user": u.name, "password": u.password, "permissions": permissions(u)},
                                             6) for u in users)
    return "authorization {\n  users: [\n" + entries + "\n  ]\n}\n"


def _write(path: str, text: str, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def init(directory: str, realm_admins: Sequence[str] = (), clients: Sequence[str] = (),
         tls_hosts: list[str] | None = None, overwrite: bool = False) -> dict[str, str]:
    """Write, into ``directory``: ``auth.conf`` (the server's users and permissions), ``<user>.auth``
    for each user (what the config's ``nats.auth_file`` names: user, password, inbox prefix, role;
    readable by its owner only), ``nats-server.conf`` (includes them; what the embedded server or
    an operator's server loads) and, with ``tls_hosts``, a CA and a server certificate for those
    host names (``tls/``) and ``tls.conf``. Returns ``{what: path}``.

    Users: ``node``, ``admin``, ``observer``, ``client`` (or one per name in ``clients``) and
    ``admin-<realm>`` for each realm in ``realm_admins``. Raises `UsageError` if the directory
    already holds credentials (unless ``overwrite``) or a realm name is not one.
    """
    directory = os.path.abspath(directory)  # the server resolves the certificates' paths from its own cwd
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(os.path.join(directory, AUTH_CONFIG)) and not overwrite:
        raise UsageError(f"{directory} already holds beach credentials ({AUTH_CONFIG}); choose another directory "
                         f"or pass --force to replace them (every node and client then needs the new files)")
    users = [User("node", "node", secrets.token_urlsafe(24)), User("admin", "admin", secrets.token_urlsafe(24)),
             User("observer", "observer", secrets.token_urlsafe(24))]
    users += [User(name, "client", secrets.token_urlsafe(24)) for name in (clients or ["client"])]
    for realm in realm_admins:
        try:
            subjects.check_realm(realm)
        except ValueError as err:
            raise UsageError(f"--realm-admin: {err}") from None
        users.append(User(f"admin-{realm}", "realm-admin", secrets.token_urlsafe(24), realm))
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise UsageError(f"two users would have the same name: {sorted(names)}")
    written: dict[str, str] = {}
    auth = os.path.join(directory, AUTH_CONFIG)
    _write(auth, "# beach's NATS users and permissions (beach secure init). Keep it private.\n"
           + authorization(users), private=True)
    written["authorization"] = auth
    includes = [AUTH_CONFIG]
    ca_file = None
    if tls_hosts is not None:
        from beach.security.certs import make_ca, make_cert

        tls_dir = os.path.join(directory, "tls")
        ca, ca_key = make_ca(tls_dir)
        cert, key = make_cert(tls_dir, "server", ca, ca_key, tls_hosts or ["127.0.0.1", "localhost"])
        tls = os.path.join(directory, TLS_CONFIG)
        block = {"cert_file": cert, "key_file": key, "ca_file": ca, "timeout": 2}
        _write(tls, "# TLS for clients (beach secure init). Routes: use the same block in cluster { tls { } }.\n"
               f"tls {_conf_value(block)}\n")
        written.update(ca=ca, cert=cert, key=key, tls=tls)
        includes.append(TLS_CONFIG)
        ca_file = os.path.relpath(ca, directory)
    for user in users:
        path = os.path.join(directory, f"{user.name}.auth")
        record = {"user": user.name, "password": user.password, "inbox_prefix": user.inbox, "role": user.role}
        if user.realm:
            record["realm"] = user.realm
        if ca_file:
            record["ca"] = ca_file  # relative to the auth file: the directory can move as a whole
        _write(path, yaml.safe_dump(record, sort_keys=False), private=True)
        written[user.name] = path
    server = os.path.join(directory, SERVER_CONFIG)
    _write(server, "# Include these in the nats-server config (beach's embedded server loads this file).\n"
           + "".join(f"include {name}\n" for name in includes))
    written["server"] = server
    return written
