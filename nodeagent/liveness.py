"""Liveness, apart from membership: who is up now, heard by two agents, not by every process.

The registry (``beach_nodes``) changes only when membership does. Whether a member is up travels
as plain NATS messages: every node agent beats on ``beach.hb.live.<node>`` every `HEARTBEAT`
seconds, and only two agents hear every node's — the holder of the supervisor lease and its standby
(the member after the holder in the order of node ids, `standby`); a caller waiting on one node
listens to that node's alone (`Session.silence`). Each of the two:

* removes from the registry a member it has not heard for `SILENT` seconds (a purge: every view
  sees the node leave, within `FAILURE_DETECTION` seconds of its last beat); the standby so removes
  the holder itself when the holder goes silent (and then takes the lease at once: `Supervisor`);
* says on ``beach.hb.late.<node>`` (every session hears it; nothing is sent while all is well)
  that a member's beat is late (`LATE`), and again when it is heard, so placement skips a hung
  node before it is removed.

Guards, so that the listener's own trouble is not taken for the others' death:

* it hears its own beat too: while it has not for `CUT_OFF` seconds, it is cut off (or its loop
  stalls), and it acts on nobody; every member gets a whole `SILENT` from the moment it hears itself again;
* a check that comes late (this process stalled: a pause, a swap storm) gives every member a fresh
  `SILENT` from then;
* every other member silent at once (two or more) is rather the bus or this listener than all of
  them: it waits `STALL_GRACE` before it acts on that;
* a member that is removed but lives (it was cut off) writes its entry again (`NodeAgent.register`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from nats.aio.msg import Msg

from beach.client.runner import Background
from beach.client.session import Session
from beach.errors import SealError
from beach.state import directory
from beach.state.directory import LATE, SILENT
from beach.wire import subjects

log = logging.getLogger("beach.nodeagent")

STALLED = 1.0  # a check this late (its period is directory.CHECK) means this process stalled
CUT_OFF = 2.0  # its own beat unheard this long (two periods): this agent is cut off, or stalls
STALL_GRACE = 20.0  # every other member silent at once: acted on only after this long
LATE_AGAIN = 1.0  # a late member's mark is said again this often (a view forgets it after LATE_MARK)
PURGE_AGAIN = 2.0  # a removed member still in this agent's view is removed again after this long


def standby(holder: str | None, members: Iterable[str]) -> str | None:
    """The standby of lease holder ``holder``: the member after it in the order of node ids (the
    first one after the last). The same answer on every agent that sees the same members, and the
    same after the holder left them. None without a holder or another member."""
    others = sorted(m for m in members if m != holder)
    if not holder or not others:
        return None
    after = [m for m in others if m > holder]
    return (after or others)[0]


class Liveness:
    """This agent's beat, and — while ``role()`` says it is the lease holder or the standby — the
    others': it removes the silent ones from the registry, once ``writable()`` (JetStream takes
    writes)."""

    def __init__(self, session: Session, node_id: str, role: Callable[[], str | None],
                 writable: Callable[[], bool] = lambda: True) -> None:
        self.session = session
        self.view = session.view
        self.node_id = node_id
        self.role = role
        self.writable = writable
        self._sub: Any = None
        self._heard: dict[str, float] = {}  # member → when its beat was last heard (monotonic)
        self._late: dict[str, float] = {}  # member → when it was last said late
        self._purged: dict[str, float] = {}  # member → when it was removed
        self._removing: set[str] = set()  # members whose removal is being written
        self._checked: float | None = None
        self._stalled: float | None = None  # since when every other member is silent
        self.listening: str | None = None  # the role it listens in ("holder", "standby"), or None
        self.background = Background()
        self.view.listeners.append(self._on_entry)

    def _on_entry(self, kind: str, ident: str) -> None:
        """A node's registry entry written counts as a beat (a node of the previous release writes
        its entry every second instead of beating)."""
        if kind == "node" and self._sub is not None and ident in self.view.nodes:
            self._heard[ident] = time.monotonic()

    async def beat(self) -> None:
        """Say this node is up (a plain message: no JetStream, no subscriber but two)."""
        await self.session.publish(subjects.live_subject(self.node_id), b"")

    async def _on_beat(self, msg: Msg) -> None:
        try:
            self.session.unseal(msg)
        except (SealError, ValueError):  # not a node's (refused by the seal)
            return
        node = subjects.unescape(msg.subject.rsplit(".", 1)[1])
        self._heard[node] = time.monotonic()
        if self._late.pop(node, None) is not None:
            log.info("node %s is heard again", node)
            await self.session.publish(subjects.late_subject(node), b"")

    async def stop(self) -> None:
        """Stop listening (removals under way go on)."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection may be gone
                pass
        self._sub, self.listening = None, None

    def _fresh(self, now: float) -> None:
        """Give every member a whole `SILENT` from ``now``."""
        self._heard = dict.fromkeys([*self.view.nodes, self.node_id], now)
        self._stalled = None

    async def check(self) -> None:
        """One round (every `directory.CHECK` seconds): listen or stop listening as the role says,
        and act on silent members while listening."""
        role = self.role()
        if role != self.listening:
            log.info("node %s %s", self.node_id, f"listens to the nodes' beats as the lease {role}" if role
                     else "no longer listens to the nodes' beats")
        if role is None:
            await self.stop()
            return
        now = time.monotonic()
        if self._sub is None:
            self._sub = await self.session.nc.subscribe(subjects.LIVENESS, cb=self._on_beat)
            self._fresh(now)
            self._checked = now
        self.listening = role
        late_check = self._checked is not None and now - self._checked > STALLED
        self._checked = now
        if late_check or not self.session.nc.is_connected or now - self._heard.get(self.node_id, now) > CUT_OFF:
            self._fresh(now)  # this process, not the others: nobody is judged on what it missed
            return
        members = [n for n in self.view.nodes if n != self.node_id]
        for node in members:
            self._heard.setdefault(node, now)  # a member new to this agent: a whole SILENT from now
        self._heard = {n: t for n, t in self._heard.items() if n in self.view.nodes or n == self.node_id}
        self._late = {n: t for n, t in self._late.items() if n in self.view.nodes}  # (a view forgets them too)
        silent = [n for n in members if now - self._heard[n] > SILENT]
        if len(members) >= 2 and len(silent) == len(members):
            self._stalled = self._stalled if self._stalled is not None else now
            if now - self._stalled < STALL_GRACE:
                return
        else:
            self._stalled = None
        for node in members:
            if now - self._heard[node] > LATE and now - self._late.get(node, -LATE_AGAIN) >= LATE_AGAIN:
                if node not in self._late:
                    log.info("node %s: no beat for %.1fs", node, now - self._heard[node])
                self._late[node] = now
                await self.session.publish(subjects.late_subject(node), b"late")
        if not self.writable():
            return
        self._purged = {n: t for n, t in self._purged.items() if n in self.view.nodes}
        for node in silent:
            if node in self._removing or now - self._purged.get(node, -PURGE_AGAIN) < PURGE_AGAIN:
                continue  # (one removal at a time: while JetStream stalls, they would pile up)
            self._purged[node] = now
            log.warning("node %s sent no beat for %.1fs: removed from the registry (by the lease %s %s)", node,
                        now - self._heard[node], role, self.node_id)
            self.background.start(self._remove(node))  # (a slow write must not make the next check late)

    async def _remove(self, node: str) -> None:
        self._removing.add(node)
        try:
            await directory.delete_node(self.session.nc, self.view.nodes_kv, node)
        except Exception as err:  # the next round tries again
            log.warning("could not remove silent node %s from the registry: %s", node, err)
            self._purged.pop(node, None)
        finally:
            self._removing.discard(node)
