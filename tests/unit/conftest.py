"""The unit layer: pure modules tested directly, with no NATS, no process and no sleep.

Each test here runs with the network, child processes and sleeping switched off, so a test that
needs a cluster cannot slip in (it fails at once, naming what it tried). Hypothesis runs
derandomized (the same examples every run), so a mutation run's verdicts do not depend on luck.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import pytest
from hypothesis import settings

settings.register_profile("unit", deadline=None, derandomize=True, database=None)
settings.load_profile("unit")


def _refuse(what: str):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a unit test may not {what}: that belongs in the cluster tests (tests/)")
    return refuse


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse("open a connection"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse("open a connection"))
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse("start a process"))
    monkeypatch.setattr(time, "sleep", _refuse("sleep"))
    monkeypatch.setattr(asyncio, "sleep", _refuse("sleep"))
