"""The control protocol of node agents and actor hosts: ``op_<name>`` coroutine methods served on
``<prefix>.<name>`` subjects, a msgpack map in and an ``[ok, error, data]`` reply out."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from beach import wire
from beach.errors import BeachError, PayloadTooLarge
from beach.runner import Background
from beach.session import Session

log = logging.getLogger("beach.control")

Reply = tuple[bool, str, Any]


class ControlServer:
    """Mixin: dispatches control requests to ``op_<name>`` methods, each in a task of its own.

    Operations named in ``privileged`` need the ``admin_token`` (when ``admin_token`` is set).
    """

    kind = "control"
    privileged: frozenset[str] = frozenset()
    admin_token: str | None = None
    background: Background
    session: Session

    async def serve_control(self, subject: str) -> None:
        """Start answering control requests on ``subject`` (a wildcard such as ``beach.n.<id>.*``)
        over this process's session."""
        await self.session.nc.subscribe(subject, cb=self._on_control)

    async def _on_control(self, msg: Msg) -> None:
        self.background.spawn(self._control(msg))

    async def _control(self, msg: Msg) -> None:
        op = msg.subject.rsplit(".", 1)[1]
        try:
            args = wire.unpack(msg.data) if msg.data else {}
            if not isinstance(args, dict):
                raise ValueError("control arguments must be a map")
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                reply: Reply = (False, f"unknown {self.kind} operation {op!r}", {})
            elif op in self.privileged and self.admin_token and args.pop("admin_token", None) != self.admin_token:
                reply = (False, "unprivileged", {})
            else:
                args.pop("admin_token", None)  # checked; never stored with what it authorized
                reply = await handler(args)
        except (BeachError, ValueError, KeyError, TypeError) as err:
            reply = (False, f"bad {op} request: {err}", {})
        except Exception:
            log.exception("%s operation %s failed", self.kind, op)
            reply = (False, f"{self.kind} operation {op} failed", {"st": traceback.format_exc()})
        if msg.reply:
            payload = wire.pack_reply(*reply)
            try:
                self.session.check_size(payload, "it")
            except PayloadTooLarge as err:
                payload = wire.pack_reply(False, f"the reply to {op} is too large to send: {err}", {})
            try:
                await self.session.nc.publish(msg.reply, payload)
            except nats.errors.Error as err:  # shutting down, or the bus is gone: the caller times out
                log.warning("cannot answer %s operation %s: %s", self.kind, op, err)
