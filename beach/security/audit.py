"""The audit log: every admin operation a node agent served (who, what, when, and how it ended).

Node agents publish one record per privileged operation on ``beach.audit.<node>``, kept by the
JetStream stream ``beach_audit`` (90 days, 64 MiB by default; sealed like everything else when the
cluster has a key). Only nodes may publish there. *Who* is the caller's NATS user where NATS
credentials are the authority (the control subject carries it, and the server lets each user send
only its own); on a bus without authorization it is what the caller said it was.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from beach.bus.connection import JS_TIMEOUT
from beach.security.seal import stored
from beach.wire import subjects

STREAM = "beach_audit"
SUBJECTS = "beach.audit.>"
MAX_AGE = 90 * 86400.0
MAX_BYTES = 64 * 1024 * 1024
FORMAT = 1


def subject(node: str) -> str:
    """Where node ``node`` publishes its audit records."""
    return f"beach.audit.{subjects.escape(node)}"


def summary(op: str, args: dict[str, Any]) -> dict[str, Any]:
    """What an operation was asked to do, for the record: names, categories, uids and keys; never
    parameters (private ones included) or data."""
    if op == "spawn":
        return {k: args.get(k) for k in ("name", "realm", "categories", "strategy", "isolated", "owner", "restart")}
    if op == "state":
        return {"realm": args.get("realm"), "category": args.get("category"), "put": sorted(args.get("put") or {}),
                "delete": list(args.get("delete") or []), "purge": bool(args.get("purge"))}
    if op == "desired":
        return {"put": sorted(args.get("put") or {}), "delete": list(args.get("delete") or []),
                "prefixes": list(args.get("prefixes") or [])}
    return {k: args[k] for k in ("uids", "uid", "category", "realm") if k in args}


class AuditRecord(msgspec.Struct, kw_only=True):
    """One admin operation (the stream ``beach_audit``): when, on which node, who asked, the
    operation and the realm it acted on, what it was asked (`summary`) and how it ended."""

    v: int = FORMAT
    t: float
    node: str = "?"
    who: str = "?"
    op: str
    realm: str | None = None
    what: dict[str, Any] = {}
    ok: bool = False
    error: str = ""


def record(node: str, op: str, realm: str | None, who: str, args: dict[str, Any], ok: bool,
           error: str) -> AuditRecord:
    """An audit record."""
    return AuditRecord(t=time.time(), node=node, who=who, op=op, realm=realm, what=summary(op, args), ok=ok,
                       error=error)


from_msg = stored(AuditRecord)
"""The audit record a stream message carries, or None if it is not one or does not open."""


async def open_stream(nc: Client, replicas: int) -> None:
    """Create the audit stream if it does not exist yet (node agents do, at start)."""
    js = nc.jetstream(timeout=JS_TIMEOUT)
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        try:
            await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECTS], max_age=MAX_AGE,
                                             max_bytes=MAX_BYTES, storage=StorageType.FILE,
                                             discard=DiscardPolicy.OLD, num_replicas=replicas))
        except nats.errors.Error as err:
            if "already in use" not in str(err):
                raise


def format_record(entry: AuditRecord) -> str:
    """One audit record for a terminal."""
    import datetime

    when = datetime.datetime.fromtimestamp(entry.t).strftime("%Y-%m-%d %H:%M:%S")
    what = ", ".join(f"{k}={v}" for k, v in entry.what.items() if v not in (None, [], {}))
    outcome = "ok" if entry.ok else f"FAILED: {entry.error}"
    return f"{when} {entry.who} {entry.op} realm={entry.realm or '*'} on {entry.node}  {what}  {outcome}"
