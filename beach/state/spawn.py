"""The spawn request: checking `AsyncBeach.addActor`'s arguments and building what a node agent
takes (also used for patrol entries and restarts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from beach.errors import CategoryError, UsageError
from beach.state import placement
from beach.state.records import RESTART_POLICIES
from beach.wire import subjects

SPAWN_TIMEOUT = 60.0  # seconds a spawn waits for the actor's init() (addActor's timeout=)
HOST_START_SECONDS = 30.0  # a node agent's bound on starting an actor host process


def spawn_args(actorName: str, category: str | Iterable[str], realm: str, strategy: str = "random",
               strategy_hint: str | None = None, parameters: dict[str, Any] | None = None,
               resources: dict[str, Any] | None = None, isIsolated: bool = False, secretIdent: str | None = None,
               trustedIdents: Iterable[str] = (), n_concurrent: int = 1, max_concurrent: int | None = None,
               is_drainable: bool = False, time_to_drain: float | None = None, owner: str | None = None,
               log_level: int | str | None = None, restart: str = "never",
               timeout: float = SPAWN_TIMEOUT, version: str | None = None) -> dict[str, Any]:
    """Check `AsyncBeach.addActor`'s arguments and build the spawn request a node agent takes.

    Raises `CategoryError` for a bad category or realm, `UsageError` for an unknown strategy or
    restart policy, or a number that is not one (naming the argument).
    """
    _check_number("timeout", timeout, positive=True)
    _check_number("time_to_drain", time_to_drain, positive=True, optional=True)
    _check_number("n_concurrent", n_concurrent, whole=True, positive=True)
    _check_number("max_concurrent", max_concurrent, whole=True, positive=True, optional=True)
    categories = [category] if isinstance(category, str) else list(category)
    if not categories:
        raise CategoryError("addActor needs at least one category")
    if restart not in RESTART_POLICIES:
        raise UsageError(f"unknown restart policy {restart!r}: use one of {', '.join(RESTART_POLICIES)}")
    return {
        "name": actorName, "categories": [subjects.routable(subjects.check_realm(realm), c) for c in categories],
        "realm": subjects.check_realm(realm), "parameters": parameters or {}, "resources": resources or {},
        "ident": secretIdent, "trusted": list(trustedIdents or ()), "isolated": bool(isIsolated),
        "n_concurrent": n_concurrent, "max_concurrent": max_concurrent, "is_drainable": bool(is_drainable),
        "time_to_drain": time_to_drain, "owner": owner, "log_level": log_level, "timeout": timeout,
        "strategy": placement.check_strategy(strategy), "strategy_hint": strategy_hint, "restart": restart,
        "version": None if version is None else subjects.check_version(version),
    }


def _check_number(name: str, value: Any, positive: bool = False, whole: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or (positive and value <= 0):
        wanted = ("a whole number" if whole else "a number") + (" above 0" if positive else "")
        raise UsageError(f"addActor: {name} must be {wanted}, not {value!r}")
