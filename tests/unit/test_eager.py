"""beach.client.eager: a coroutine run at once up to its first wait, then carried on by a task.

The oracle is asyncio itself: every coroutine started eagerly must end with what plain ``await``
would have given it, however many share the future it stopped on and whenever that future is done.
"""

from __future__ import annotations

import asyncio
import contextvars

from beach.client import eager
from beach.client.runner import Background


def test_eagerly_started_coroutines_share_a_future_and_meet_one_done_meanwhile():
    """Coroutines run up to their first wait before a task carries them on. Two stopping on one
    future (turns waiting for one claim) must both go on when it is done (C asyncio refused the
    second at once), and one whose future is done before its task runs must get the result (a task
    takes an unmarked future for a bare yield)."""

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        shared, early = loop.create_future(), loop.create_future()
        background, got = Background(), []
        early_done, all_done = asyncio.Event(), asyncio.Event()

        async def waiter(future: asyncio.Future[object], name: str) -> None:
            got.append((name, await future))
            if name == "early":
                early_done.set()
            if len(got) == 4:
                all_done.set()

        for name in ("a", "b", "c"):
            eager.start(waiter(shared, name), background, contextvars.copy_context())
        eager.start(waiter(early, "early"), background, contextvars.copy_context())
        early.set_result(1)  # before the task carrying its waiter has run
        async with asyncio.timeout(5):
            await early_done.wait()  # by now the tasks of a, b and c wait on the shared future
            shared.set_result(2)
            await all_done.wait()
        return sorted(got)

    assert asyncio.run(main()) == [("a", 2), ("b", 2), ("c", 2), ("early", 1)]
