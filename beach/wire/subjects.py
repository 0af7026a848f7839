"""Categories, realms and the NATS subjects they map to.

A category ``a/b/c`` in realm ``r`` is routed by segment:

* ``beach.r.<realm>.a.b.c``  requests; every actor queue-subscribes (queue ``beach``) to each
  segment prefix of each of its categories (``a``, ``a.b``, ``a.b.c``), so a request to ``a/b``
  reaches one actor among all whose category starts with the segments ``a/b``.
* ``beach.b.<realm>.a.b.c``  broadcast: the same prefixes, plain subscriptions.
* ``beach.a.<realm>.<uid>``  one actor (the original's hidden ``_ACTORS/<uid>`` category).
* ``beach.n.<node>.<op>``    node agent control; ``beach.h.<host>.<op>`` actor host control.
* ``beach.hb.<node>``        a node's beacon while JetStream cannot take its heartbeat (no quorum).

Actor state lives in one KV bucket (``beach_state``) under keys ``<realm>.k.<category>.<key>``: the
realm, the whole category and the key are one token each (so a category's keys are exactly
``<realm>.k.<category>.*``); a request's record is ``<realm>.r.<request id>``.

Prefix matching is **by segment**: ``myactors/pong`` does not reach ``myactors/pongers`` (the
original matched raw string prefixes, which subjects cannot express). Leading and trailing ``/``
are ignored, so ``/foo/`` is ``foo``; an empty segment inside (``a//b``) is an error.

Tokens are escaped reversibly: every byte outside ``[A-Za-z0-9_-]`` becomes ``=XX`` (hex), so
``1.2`` is the token ``1=2E2``. Plain names stay readable, and the result is legal both in a
subject and in a JetStream KV key.

Lengths: nats-server closes, for good, a connection that sends a protocol line longer than its
``max_control_line`` (4096 bytes; servers do not announce it): a ``PUB`` naming a 5,000-byte
subject would take the whole process's connection down. So every subject made here is checked
(`check_length`: at most `MAX_SUBJECT` bytes, a `CategoryError` naming the name that is too long),
and the bus's client checks every line it sends (`check_line`, a `UsageError`) whatever built it.
"""

from __future__ import annotations

import re

from beach.errors import CategoryError, StateError, UsageError

QUEUE = "beach"
ACTORS_CATEGORY = "_ACTORS"

MAX_CONTROL_LINE = 4096
"""The longest protocol line nats-server reads (its ``max_control_line`` default; INFO does not
announce it): past it the server answers ``-ERR 'maximum control line exceeded'`` and closes the
connection."""
LINE_ROOM = 256
"""Bytes of a line kept for all but the subject: the verb, a reply subject, the sizes
(``HPUB <subject> <reply> <header size> <total size>``)."""
MAX_SUBJECT = MAX_CONTROL_LINE - LINE_ROOM
"""The longest subject (and KV key) beach makes, in bytes."""
_LINE_FIXED = len("HPUB    \r\n") + 2 * 10  # the verb, the spaces, CRLF and two sizes of up to 10 digits

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
_UNSAFE = re.compile(rb"[^A-Za-z0-9_-]")
_ESCAPED = re.compile(r"=([0-9A-F]{2})")


def escape(token: str) -> str:
    """Escape one name (segment, realm, node id) into a subject token; the inverse of `unescape`."""
    if _PLAIN.fullmatch(token):
        return token
    raw = token.encode("utf-8")
    return _UNSAFE.sub(lambda m: b"=%02X" % m.group()[0], raw).decode("ascii")


def shown(name: str, limit: int = 40) -> str:
    """``name`` for an error message: quoted, cut to ``limit`` characters with its length when longer."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}… ({len(name)} characters)"


def check_length(subject: str, kind: str, name: str, limit: int = MAX_SUBJECT) -> str:
    """``subject`` if a NATS server will take it (at most ``limit`` bytes, `MAX_SUBJECT`); else
    `CategoryError` saying that the ``kind`` ``name`` it was made from is too long, and why."""
    size = len(subject) if subject.isascii() else len(subject.encode("utf-8"))
    if size > limit:
        raise CategoryError(f"{kind} {shown(name)} is too long: its NATS subject would be {size} bytes, over the "
                            f"{limit} beach allows (a NATS server closes the connection of a client that sends a "
                            f"protocol line over its max_control_line of {MAX_CONTROL_LINE} bytes)")
    return subject


def check_line(subject: str, reply: str = "", verb: str = "publish to") -> None:
    """Raise `UsageError` if a protocol line naming ``subject`` (and ``reply``) would be longer than a
    NATS server reads (`MAX_CONTROL_LINE`): sending it would make the server close the connection.
    The bus's client calls this before every publish and subscription."""
    if (len(subject) + len(reply)) * 4 + _LINE_FIXED <= MAX_CONTROL_LINE:
        return  # fits even at 4 bytes a character (the usual case: no encoding needed)
    size = len(subject.encode("utf-8")) + len(reply.encode("utf-8")) + _LINE_FIXED
    if size > MAX_CONTROL_LINE:
        raise UsageError(f"cannot {verb} the NATS subject {shown(subject)}: the protocol line would be about "
                         f"{size} bytes, over the NATS server's max_control_line of {MAX_CONTROL_LINE} bytes "
                         f"(the server would close the connection); nothing was sent")


def unescape(token: str) -> str:
    """Reverse `escape`."""
    if "=" not in token:
        return token
    raw = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), token)
    return raw.encode("latin-1").decode("utf-8")


def segments(category: str) -> list[str]:
    """Split a category into its segments; raise `CategoryError` for one beach cannot route."""
    if not isinstance(category, str):
        raise CategoryError(f"a category must be a string, not {type(category).__name__}: {category!r}")
    parts = category.strip("/").split("/")
    if parts == [""]:
        raise CategoryError(f"empty category {category!r}: a category needs at least one segment")
    if "" in parts:
        raise CategoryError(f"category {category!r} has an empty segment ('//')")
    return parts


def normalize(category: str) -> str:
    """The canonical form of a category: segments joined by ``/``, no leading or trailing ``/``."""
    return "/".join(segments(category))


_REALM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_realm(realm: str) -> str:
    """Return ``realm`` if it is a usable realm name, else raise `CategoryError`.

    A realm is also a directory (``<code_directory>/<realm>/``): letters, digits, ``_``, ``-`` and
    ``.`` (not first, never ``..``), at most 128 characters, so no realm can name a path outside.
    """
    if not isinstance(realm, str) or not _REALM.fullmatch(realm) or ".." in realm:
        raise CategoryError(f"{realm!r} is not a realm name: use letters, digits, '_', '-' and '.' "
                            f"(not first, never '..'), at most 128 of them")
    return realm


_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def check_version(version: str) -> str:
    """``version`` if it is a name for a deployed version of a realm's code (letters, digits,
    ``_.+-``, up to 64, starting with a letter or digit); else `UsageError`."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise UsageError(f"{version!r} is not a version name: use letters, digits and _ . + - (up to 64, "
                         f"starting with a letter or digit)")
    return version


def matches(category: str, prefix: str) -> bool:
    """True if ``category`` (normalized) starts with the segments of ``prefix`` (normalized)."""
    return category == prefix or category.startswith(prefix + "/")


def actor_uid(category: str) -> str | None:
    """The uid if ``category`` is the hidden one-actor category ``_ACTORS/<uid>``, else None."""
    parts = segments(category)
    if len(parts) == 2 and parts[0] == ACTORS_CATEGORY:
        return parts[1]
    return None


def _tokens(category: str) -> str:
    return ".".join(escape(s) for s in segments(category))


def request_subject(realm: str, category: str) -> str:
    """The subject a request to ``category`` is published on (one actor of the category). Raises
    `CategoryError` for a category beach cannot route, or one too long for a subject."""
    uid = actor_uid(category)
    if uid is not None:
        return actor_subject(realm, uid)
    return check_length(f"beach.r.{escape(check_realm(realm))}.{_tokens(category)}", "category", category)


CANCELS = "beach.cancel.>"
"""Where callers say they gave up on an attempt (every actor host listens: `cancel_subject`)."""


def cancel_subject(realm: str) -> str:
    """The subject a caller in ``realm`` cancels an attempt on (its body: the attempt's reply subject)."""
    return f"beach.cancel.{escape(check_realm(realm))}"


BROADCASTS = "beach.b."
"""The prefix of every broadcast's subject."""


def broadcast_subject(realm: str, category: str) -> str:
    """The subject a broadcast to ``category`` is published on (every actor of the category)."""
    uid = actor_uid(category)
    if uid is not None:
        return actor_subject(realm, uid)
    return check_length(f"{BROADCASTS}{escape(check_realm(realm))}.{_tokens(category)}", "category", category)


def routable(realm: str, category: str) -> str:
    """The normalized ``category`` if actors of ``realm`` can serve it (its subjects fit, see
    `check_length`); else `CategoryError`."""
    request_subject(realm, category)
    return normalize(category)


def actor_subject(realm: str, uid: str) -> str:
    """The subject only the actor ``uid`` listens on."""
    return check_length(f"beach.a.{escape(check_realm(realm))}.{escape(uid)}", "actor uid", uid)


def prefix_categories(categories: list[str]) -> list[str]:
    """Every segment prefix of every category, without repeats (``a/b`` → ``a``, ``a/b``)."""
    seen: dict[str, None] = {}
    for category in categories:
        parts = segments(category)
        for n in range(1, len(parts) + 1):
            seen["/".join(parts[:n])] = None
    return list(seen)


def node_subject(node_id: str, op: str) -> str:
    """Control subject ``op`` of the node agent ``node_id``."""
    return check_length(f"beach.n.{escape(node_id)}.{op}", "node id", node_id)


BEACONS = "beach.hb.*"


def beacon_subject(node_id: str) -> str:
    """Where node ``node_id`` says it is alive while the registry (JetStream) cannot take its heartbeat."""
    return f"beach.hb.{escape(node_id)}"


LATE_MARKS = "beach.hb.late.*"


def late_subject(node_id: str) -> str:
    """Where the supervisor's lease holder (and its standby) say node ``node_id``'s beat is late (or,
    with an empty body, heard again): placement skips it until the registry says more."""
    return f"beach.hb.late.{escape(node_id)}"


LIVENESS = "beach.hb.live.*"


def live_subject(node_id: str) -> str:
    """Node ``node_id``'s liveness beat, every second: the supervisor's lease holder and its standby
    subscribe to every node's (`nodeagent.liveness`), a caller waiting on the node to its one."""
    return f"beach.hb.live.{escape(node_id)}"


NODE_STATS = "beach.stats.node.*"


def node_stats_subject(node_id: str) -> str:
    """Node ``node_id``'s load figures (CPU, memory, actors), every second: only their readers
    (the tools' cluster model, `getClusterHealth`) subscribe."""
    return f"beach.stats.node.{escape(node_id)}"


def host_subject(host_id: str, op: str) -> str:
    """Control subject ``op`` of the actor host ``host_id``."""
    return check_length(f"beach.h.{escape(host_id)}.{op}", "actor host id", host_id)


def actor_key(realm: str, uid: str) -> str:
    """The directory (KV) key of an actor."""
    return check_key(f"{escape(check_realm(realm))}.{escape(uid)}", "actor uid", uid)


MEMBER_ROOM = 160
"""Bytes of a protocol line kept for all but a member key (`member_key`): ``HPUB $KV.<bucket>.``, the
reply inbox, the sizes. A member key is longer than its category's request subject (the realm and
the uid are in it): under `check_key`'s limit a category right at the request subject's limit would
have none. Every line the bus sends is checked anyway (`check_line`)."""


def member_key(realm: str, category: str, uid: str) -> str:
    """The key of actor ``uid``'s entry under ``category`` in the members bucket (``beach_members``):
    ``<realm>.<segment>...<segment>.<uid>``, so a watch of ``<realm>.a.b.>`` (`member_keys`) holds
    exactly the actors a request to ``a/b`` may reach (their category starts with ``a/b``, by segment)."""
    key = f"{escape(check_realm(realm))}.{_tokens(category)}.{escape(uid)}"
    return check_length(key, "category", category, MAX_CONTROL_LINE - MEMBER_ROOM)


def member_keys(realm: str, category: str) -> str:
    """The keys (a KV watch's filter) of the members bucket's entries of every actor of ``realm``
    under ``category`` (by segment: ``a/b`` holds those of ``a/b`` and ``a/b/c``)."""
    return check_length(f"{escape(check_realm(realm))}.{_tokens(category)}.>", "category", category,
                        MAX_CONTROL_LINE - MEMBER_ROOM)


def placed_key(node_id: str, realm: str, uid: str) -> str:
    """The key of actor ``uid``'s entry in the by-node bucket (``beach_placed``):
    ``<node>.<realm>.<uid>``, so a watch of ``<node>.>`` (`placed_keys`) holds exactly node
    ``node_id``'s actors."""
    return check_key(f"{escape(node_id)}.{escape(check_realm(realm))}.{escape(uid)}", "actor uid", uid)


def placed_keys(node_id: str) -> str:
    """The keys (a KV watch's filter) of the by-node bucket's entries of node ``node_id``'s actors."""
    return f"{escape(node_id)}.>"


def key_uid(key: str) -> str:
    """The actor uid an actor key (`actor_key`), a member key (`member_key`) or a by-node key
    (`placed_key`) ends with."""
    return unescape(key.rsplit(".", 1)[-1])


KV_ROOM = 64  # a KV key travels in a subject after ``$KV.<bucket>.`` (beach's buckets' names are short)


def check_key(key: str, kind: str, name: str) -> str:
    """``key`` if it fits in a KV subject (`MAX_SUBJECT` less `KV_ROOM`); else `CategoryError` naming
    the ``kind`` ``name`` it was made from."""
    return check_length(key, kind, name, MAX_SUBJECT - KV_ROOM)


# ---------------------------------------------------------------- actor state keys

def state_token(key: str) -> str:
    """A state key as one KV-safe token (reversible, prefix-preserving: ``unescape`` gives it
    back). Raises `StateError` for a key that is not a non-empty string."""
    if not isinstance(key, str) or not key:
        raise StateError(f"a state key must be a non-empty string, not {key!r}" if isinstance(key, str)
                         else f"a state key must be a non-empty string, not {type(key).__name__}")
    return escape(key)


def state_scope(realm: str, category: str) -> str:
    """The KV key prefix (ending in ``.``) of the keys of ``category`` in ``realm``."""
    return f"{escape(check_realm(realm))}.k.{escape(normalize(category))}."


def state_key(scope: str, token: str) -> str:
    """The KV key of state key ``token`` (a `state_token`) under ``scope`` (a `state_scope`); raises
    `CategoryError` if NATS could not carry it (see `check_key`)."""
    return check_key(scope + token, "state key", unescape(token))


def parse_state_key(kv_key: str) -> tuple[str, str, str] | None:
    """``(realm, category, key)`` of a state KV key, or None for any other key (a request record)."""
    parts = kv_key.split(".")
    if len(parts) != 4 or parts[1] != "k":
        return None
    return unescape(parts[0]), unescape(parts[2]), unescape(parts[3])


def request_record_key(realm: str, req_id: str) -> str:
    """The KV key of the record of request ``req_id`` (its turn committed, and its first reply)."""
    return f"{escape(check_realm(realm))}.r.{escape(req_id)}"


def read_check_key(realm: str, req_id: str) -> str:
    """The KV key a turn's checks of keys it read but did not write are published to (short-lived)."""
    return f"{escape(check_realm(realm))}.c.{escape(req_id)}"
