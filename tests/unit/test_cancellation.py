"""A cancellation that comes as the awaited thing finishes is not lost.

Python 3.11's ``asyncio.wait_for`` returns the result when its future is done in the same turn of
the loop as the task awaiting it is cancelled: the cancellation is swallowed, and a loop around it
runs on. That is how a REST bridge whose HTTP client went away kept reading a stream (its producer
never stopped) when an item came as the bridge cancelled the reader. ``asyncio.timeout`` (what
3.12's ``wait_for`` is made of) lets the cancellation through; beach uses it, and these tests hold
it to that.
"""

from __future__ import annotations

import ast
import asyncio
import weakref
from pathlib import Path

import pytest

from beach import loop as beach_loop
from beach.client.stream import Stream

ROOT = Path(__file__).resolve().parents[2]


class _Handle:
    """What `Stream.__anext__` touches of its handle before any item is read."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[Stream] = weakref.WeakSet()


async def _turn() -> None:
    """Let the loop run what is ready once (no sleep: the unit layer has no timers)."""
    loop = asyncio.get_running_loop()
    passed = loop.create_future()
    loop.call_soon(passed.set_result, None)
    await passed


def test_a_stream_reader_cancelled_as_an_item_arrives_is_cancelled():
    async def main() -> None:
        stream = Stream(_Handle(), "count", None, timeout=60, key=None, req_id="r")  # type: ignore[arg-type]
        reader = asyncio.ensure_future(anext(stream))
        await _turn()  # it waits for an item
        assert stream._wake is not None and not reader.done()
        stream._on_message(ValueError("an item"))  # an item comes, and in the same turn the reader is cancelled
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert len(stream._arrived) == 1  # the item is left where it was, not taken by a cancelled reader

    asyncio.run(main())


def _wait_for_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "wait_for"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "asyncio"]


def test_no_asyncio_wait_for_in_beach():
    found = [f"{path.relative_to(ROOT)}:{line}" for package in ("beach", "nodeagent")
             for path in sorted((ROOT / package).rglob("*.py")) for line in _wait_for_calls(path)]
    assert not found, f"asyncio.wait_for loses a cancellation on Python 3.11; use asyncio.timeout: {found}"


async def _stubborn(cancelled: list[str]) -> str:
    """Waits for ever, and swallows a cancellation (as nats-py's ``drain`` does): returns instead."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append("inner")
        return "late"
    return "never"


def test_within_times_out_a_coroutine_that_swallows_its_cancellation():
    # inline under asyncio.timeout, the swallowed cancellation would swallow the timeout too: "late"
    cancelled: list[str] = []

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await beach_loop.within(_stubborn(cancelled), 0)

    asyncio.run(main())
    assert cancelled == ["inner"]  # it was cancelled, and waited for


def test_within_passes_a_cancel_of_its_caller_on_and_goes_on_up():
    cancelled: list[str] = []

    async def main() -> None:
        caller = asyncio.ensure_future(beach_loop.within(_stubborn(cancelled), None))
        await _turn()  # both wait now
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    asyncio.run(main())
    assert cancelled == ["inner"]
