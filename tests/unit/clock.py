"""A monotonic clock the test moves, in place of a module's ``time`` (no unit test waits)."""

from __future__ import annotations

from types import ModuleType

import pytest


class Clock:
    """``time`` as a module reads it: ``monotonic()`` is what the test set (``now``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def install(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> Clock:
    """A `Clock` in place of ``module.time`` for one test."""
    clock = Clock()
    monkeypatch.setattr(module, "time", clock)
    return clock
