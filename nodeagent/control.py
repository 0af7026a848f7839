"""The control protocol of node agents and actor hosts: ``op_<name>`` coroutine methods served on
``<prefix><name>[.<realm>.<who>]`` subjects, a msgpack map in and an ``[ok, error, data]`` reply out.

Who may call a privileged operation is for NATS to decide where its credentials are the authority
(see `beach.security.authority`); elsewhere, with an ``admin_token`` set, the caller proves it knows the
token by answering a one-time ``challenge``. A realm admin's subjects name its realm: the handlers
keep such an operation inside that realm (`scope`, `in_scope`).
"""

from __future__ import annotations

import contextvars
import logging
import traceback
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg

from beach import metering, tracing, wire
from beach.client.runner import Background
from beach.client.session import Session
from beach.errors import BeachError, BusError, PayloadTooLarge, SealError
from beach.security import authority
from beach.wire import Reply, subjects

log = logging.getLogger("beach.control")

UNPRIVILEGED = "unprivileged"  # the original's answer to a missing or wrong admin token
BUS_LOST_EXIT = 3  # an actor host's exit code when the NATS server closed its connection for good


def lost_bus(session: Session, stop: Callable[[], None]) -> list[str]:
    """Have ``stop()`` called if the server closes ``session``'s connection for good (a process of
    the daemon must not live on deaf); the list returned gets the server's reason then."""
    reasons: list[str] = []

    def lost(reason: str) -> None:
        reasons.append(reason)
        stop()

    session.lost_listeners.append(lost)
    return reasons

# The realm the operation being served is confined to (its subject's), None for cluster-wide.
scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("beach_control_scope", default=None)
# Who sent the operation being served (its subject's last token: NATS's word where it is the authority).
caller: contextvars.ContextVar[str] = contextvars.ContextVar("beach_control_caller", default="?")


class OutOfScope(BeachError, ValueError):
    """A realm admin's operation reached outside its realm."""


def in_scope(realm: str) -> None:
    """Raise `OutOfScope` if the operation being served may not touch ``realm``."""
    allowed = scope.get()
    if allowed is not None and realm != allowed:
        raise OutOfScope(f"permission denied: this operation was sent for realm {allowed!r} and may not "
                         f"touch realm {realm!r}")


class ControlServer:
    """Mixin: dispatches control requests to ``op_<name>`` methods, each in a task of its own.

    Operations named in ``privileged`` need the ``admin_token`` (when ``admin_token`` is set and
    NATS credentials are not the authority), proven by challenge-response.
    """

    kind = "control"
    privileged: frozenset[str] = frozenset()
    admin_token: str | None = None
    background: Background
    session: Session

    async def serve_control(self, prefix: str) -> None:
        """Start answering control requests under ``prefix`` (``beach.n.<id>.``) over this
        process's session."""
        self._prefix = prefix
        self._served_id = subjects.unescape(prefix.split(".")[2])  # (beach.n.<node>. or beach.h.<host>.)
        self._challenges = authority.Challenges()
        self._token_needed = bool(self.admin_token) and not authority.nats_authority(self.session.config)
        await self.session.nc.subscribe(prefix + ">", cb=self._on_control)

    async def _on_control(self, msg: Msg) -> None:
        self.background.start(self._control(msg))

    async def _control(self, msg: Msg) -> None:
        try:
            op, realm, who = authority.parse_control(msg.subject, self._prefix)
            body = self.session.unseal(msg)
        except (ValueError, SealError):  # not ours, or refused by the seal (counted there): no answer
            return
        # (this task serves this one operation, in a context of its own: the span is left at its end)
        serving = None if op == "challenge" else tracing.serve_operation(
            tracing.from_headers(msg.headers), f"beach.{self.kind}", op, self._served_id, realm)
        reply: Reply
        args: dict[str, Any] = {}
        try:
            unpacked = wire.unpack(body) if body else {}
            if not isinstance(unpacked, dict):
                raise ValueError("control arguments must be a map")
            handler = getattr(self, f"op_{op}", None)
            refused = self.refusal(op)
            if op == "challenge":
                reply = Reply(True, "", {"challenge": self._challenges.issue()})
            elif handler is None:
                reply = Reply(False, f"unknown {self.kind} operation {op!r}", {})
            elif refused is not None:
                reply = Reply(False, refused, {"refused": True})
            elif op in self.privileged and self._token_needed:
                verified = self._challenges.verify(self.admin_token or "", msg.subject, unpacked)
                if verified is None:
                    reply = Reply(False, UNPRIVILEGED, {})
                else:
                    args = verified
                    reply = await self._run(handler, args, realm, who)
            else:
                signed = unpacked.get(authority.SIGNED)
                args = wire.unpack(signed) if isinstance(signed, bytes) else unpacked
                if not isinstance(args, dict):
                    raise ValueError("control arguments must be a map")
                reply = await self._run(handler, args, realm, who)
        except OutOfScope as err:
            reply = Reply(False, str(err), {})
        except (BeachError, ValueError, KeyError, TypeError) as err:
            reply = Reply(False, f"bad {op} request: {err}", {})
        except Exception:
            log.exception("%s operation %s failed", self.kind, op)
            reply = Reply(False, f"{self.kind} operation {op} failed", {"st": traceback.format_exc()})
        if op in self.privileged:
            self.audited(op, realm, who, args, reply)
        if serving is not None:
            serving.end(metering.outcome(reply.ok, reply.error), reply.error)
        if msg.reply:
            await self._answer(msg.reply, op, reply)

    async def _run(self, handler: Any, args: dict[str, Any], realm: str | None, who: str) -> Reply:
        token, named = scope.set(realm), caller.set(who)
        try:
            return Reply(*await handler(args))  # (a plain tuple from a handler becomes a Reply)
        finally:
            caller.reset(named)
            scope.reset(token)

    async def _answer(self, to: str, op: str, reply: Reply) -> None:
        payload = wire.pack_reply(*reply)
        try:
            self.session.check_size(payload, "it")
        except PayloadTooLarge as err:
            payload = wire.pack_reply(False, f"the reply to {op} is too large to send: {err}", {})
        try:
            await self.session.publish(to, payload)
        except BusError as err:  # shutting down, or the bus is gone: the caller times out
            log.warning("cannot answer %s operation %s: %s", self.kind, op, err)

    def refusal(self, op: str) -> str | None:
        """Why operation ``op`` cannot run now (it is answered with that at once), or None."""
        return None

    def audited(self, op: str, realm: str | None, who: str, args: dict[str, Any], reply: Reply) -> None:
        """Called after each privileged operation (a node agent writes it to the audit log)."""
