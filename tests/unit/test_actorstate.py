"""beach.state.actorstate's pure parts: a turn's claims on keys, what a process holds of a
category's keys (`Scope`), and how the group commit gathers turns into batches (`Committer._take`).
The turns' commits against the bus are tested against a real cluster (tests/test_state.py).

The oracles: claims and holdings worked out by hand, a clock the test moves, and batches whose
members and order are spelled out.
"""

from __future__ import annotations

import asyncio

import pytest

from beach.errors import StateError
from beach.state import actorstate
from beach.state.actorstate import CACHE_SECONDS, MAX_GROUP_BYTES, MAX_GROUP_MESSAGES, Committer, Pending, Scope, Turn

from .clock import Clock, install


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return install(monkeypatch, actorstate)


def test_a_scope_is_named_by_its_realm_and_category():
    scope = Scope("shop", "a/b")
    assert (scope.realm, scope.category, scope.prefix) == ("shop", "a/b", "shop.k.a=2Fb.")
    assert (scope.cache, scope.claims, scope.users, scope.created) == ({}, {}, set(), 0)
    assert repr(scope) == "<Scope shop:a/b>"


def test_a_held_value_is_given_to_a_reading_turn_while_fresh_and_to_a_writing_one_whatever_its_age(clock):
    scope = Scope("shop", "c")
    assert scope.held("k", False) is None and scope.held("k", True) is None
    scope.hold("k", 5, b"v5")
    assert scope.cache == {"k": (5, b"v5", 1000.0)}
    assert scope.held("k", False) == (5, b"v5") and scope.held("k", True) == (5, b"v5")
    clock.now += CACHE_SECONDS  # at most CACHE_SECONDS old: still given
    assert scope.held("k", False) == (5, b"v5")
    clock.now += 0.001
    assert scope.held("k", False) is None
    assert scope.held("k", True) == (5, b"v5")
    clock.now += 3600
    assert scope.held("k", True) == (5, b"v5")
    assert scope.held("other", True) is None
    scope.hold("gone", 7, None)  # a deleted key is held too: (revision, None)
    assert scope.held("gone", False) == (7, None)


def test_older_news_of_a_key_is_ignored(clock):
    scope = Scope("shop", "c")
    scope.hold("k", 5, b"v5")
    clock.now += 10
    scope.hold("k", 4, b"v4")
    assert scope.cache["k"] == (5, b"v5", 1000.0)
    scope.hold("k", 5, b"again")  # the same revision: the news is as new, and its time is now
    assert scope.cache["k"] == (5, b"again", 1010.0)
    scope.hold("k", 6, None)
    assert scope.cache["k"] == (6, None, 1010.0)


def test_a_turn_claims_keys_nobody_holds_and_names_the_holder_of_the_others():
    scope, other_scope = Scope("shop", "c"), Scope("shop", "d")
    first, second = Turn("r1"), Turn(None)
    assert (first.req_id, first.seen, first.writes, first.ended, first.claims, first.unavailable) == (
        "r1", {}, {}, False, [], None)
    assert first.claim(scope, "k") is None
    assert first.claim(scope, "k") is None and first.claims == [(scope, "k")]  # claimed once
    assert second.claim(scope, "k") is first and second.claims == []
    assert second.claim(other_scope, "k") is None  # another category's key of the same name
    assert first.claim(scope, "j") is None
    assert first.claims == [(scope, "k"), (scope, "j")] and scope.claims == {"k": first, "j": first}
    assert second.claims == [(other_scope, "k")] and other_scope.claims == {"k": second}


def test_finishing_a_turn_releases_its_claims_only_and_ends_it():
    scope = Scope("shop", "c")
    first, second = Turn("r1"), Turn("r2")
    first.claim(scope, "k")
    first.claim(scope, "j")
    first.claim(scope, "k")  # (again, after another: listed twice, released once)
    second.claim(scope, "x")
    first.check_open()
    first.finish()
    assert first.ended and first.claims == [] and scope.claims == {"x": second}
    with pytest.raises(StateError, match=r"^the request's turn has ended \(its handler returned\): state written "
                                         r"from a task it left running is not part of it; write before returning$"):
        first.check_open()
    assert second.claim(scope, "k") is None  # free again
    second.check_open()


def test_a_turn_waits_for_another_to_finish_at_most_its_timeout():
    async def run():
        holder = Turn("r1")
        await holder.finished(0)  # not finished: the wait times out quietly
        waiter = asyncio.get_running_loop().create_task(holder.finished(60))
        await asyncio.wait([waiter], timeout=0)
        assert not waiter.done()
        holder.finish()
        await asyncio.wait_for(waiter, 5)
        await holder.finished(60)  # finished already: at once
        holder.finish()  # twice: nothing more to wake

    asyncio.run(run())


def message(subject: str, size: int = 0) -> tuple[str, bytes, dict[str, str]]:
    return subject, b"x" * size, {}


def pending(*subjects: str, solo: bool = False, messages: int = 1, size: int = 0) -> Pending:
    p = Pending([message(subjects[0], size)] * messages, set(subjects))
    p.solo = solo
    return p


def test_a_pendings_size_counts_its_subjects_payloads_and_headers_room():
    async def run():
        p = Pending([("ab", b"xyz", {}), ("c", b"", {"h": "v"})], {"ab", "c"})
        assert (p.size, p.solo, p.subjects, p.future.done()) == ((2 + 3 + 128) + (1 + 0 + 128), False, {"ab", "c"},
                                                                 False)
        p.outcome(7)
        p.outcome(8)  # settled once
        assert p.future.result() == 7
        gone = Pending([], set())
        gone.future.cancel()  # its waiter gave up
        gone.outcome(1)
        assert gone.future.cancelled()

    asyncio.run(run())


def take(*pendings: Pending) -> tuple[list[Pending], list[Pending]]:
    committer = Committer(None)  # type: ignore[arg-type]  (_take reads no store)
    committer.queue.extend(pendings)
    group = committer._take()
    return group, list(committer.queue)


def test_turns_with_no_subject_in_common_share_a_batch_in_order():
    async def run():
        a, b, c, d = pending("a"), pending("b", "x"), pending("x"), pending("d")
        assert take(a, b, c, d) == ([a, b, d], [c])  # c checks x, which b writes: the next batch
        e, f = pending("x"), pending("y")
        assert take(e, f) == ([e, f], [])
        assert take(c) == ([c], [])
        g, h, i = pending("g", "k"), pending("h", "k"), pending("i", "g")
        assert take(g, h, i) == ([g], [h, i])
        a, b, again = pending("a"), pending("b"), pending("a")  # the subjects of every turn taken count
        assert take(a, b, again) == ([a, b], [again])

    asyncio.run(run())


def test_a_turn_that_must_go_alone_goes_alone_and_ends_the_batch_before_it():
    async def run():
        solo, a, b = pending("s", solo=True), pending("a"), pending("b")
        assert take(solo, a, b) == ([solo], [a, b])
        a, solo, b = pending("a"), pending("s", solo=True), pending("b")
        assert take(a, solo, b) == ([a], [solo, b])
        a, x, solo, b = pending("a"), pending("a"), pending("s", solo=True), pending("b")
        assert take(a, x, solo, b) == ([a], [x, solo, b])

    asyncio.run(run())


def test_a_batch_stays_within_the_servers_limits():
    async def run():
        half = MAX_GROUP_MESSAGES // 2
        a, b, c = pending("a", messages=half), pending("b", messages=MAX_GROUP_MESSAGES - half), pending("c")
        assert take(a, b, c) == ([a, b], [c])  # exactly the most messages a batch takes
        a, b, c = pending("a", messages=half), pending("b", messages=MAX_GROUP_MESSAGES - half + 1), pending("c")
        assert take(a, b, c) == ([a, c], [b])
        room = MAX_GROUP_BYTES - (1 + 128)  # a pending's size: its subject, payload and 128
        a, b = pending("a", size=room // 2), pending("b", size=room - room // 2 - (1 + 128))
        assert a.size + b.size == MAX_GROUP_BYTES
        assert take(a, b) == ([a, b], [])
        a, b, c = pending("a", size=room // 2), pending("b", size=room - room // 2 - (1 + 128) + 1), pending("c")
        assert take(a, b, c) == ([a, c], [b])
        # the bytes of every turn taken count
        a, b, c = (pending(name, size=MAX_GROUP_BYTES * 2 // 5) for name in "abc")
        assert take(a, b, c) == ([a, b], [c])

    asyncio.run(run())
