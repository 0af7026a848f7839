"""beach.client.routing: the affinity ring, the client's choices of actor, the routing of attempts.

The oracles: consistent hashing computed here from its definition (each uid owns `VNODES` points
``blake2b("<uid>#<i>")``; a key belongs to the first point at or after its own hash, wrapping
around), a few owners pinned (every process and every release must route a key alike), and a real
`DirectoryView` fed with actor and node records as its KV watches would feed it.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections import Counter

import pytest

from beach.client import routing
from beach.client.routing import Ring, Targets, affinity_choice, key_bytes
from beach.errors import CategoryError, UsageError
from beach.state import records
from beach.state.directory import DirectoryView
from beach.state.records import ActorEntry, NodeEntry
from beach.wire import subjects


def point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@functools.cache
def oracle_points(uids: tuple[str, ...]) -> list[tuple[int, str]]:
    return sorted((point(f"{uid}#{i}".encode()), uid) for uid in uids for i in range(64))


def oracle_owner(key: object, uids: list[str]) -> str | None:
    """The owner of ``key`` by the definition of the ring, by brute force."""
    if not uids:
        return None
    points = oracle_points(tuple(sorted(uids)))
    h = point(key_bytes(key))
    return next((uid for p, uid in points if p >= h), points[0][1])


# ---- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, expected", [
    ("user-42", b"user-42"),
    ("é", b"\xc3\xa9"),
    (b"\xff\x00", b"\xff\x00"),
    (b"", b""),
    (7, b"7"),
    (-7, b"-7"),
    (1.5, b"1.5"),
    (True, b"True"),
    (("a", 1), b"a\x1f1"),
    (["a", 1], b"a\x1f1"),
    (("a", (b"b", 2.0)), b"a\x1fb\x1f2.0"),
    ((), b""),
])
def test_key_bytes_known_answers(key, expected):
    assert key_bytes(key) == expected


@pytest.mark.parametrize("key", [None, {"a": 1}, {1}, object(), ("ok", None)])
def test_a_key_of_another_type_is_a_usage_error(key):
    with pytest.raises(UsageError, match=r"^an affinity key must be str, bytes, a number or a tuple of those, "
                                         rf"not {type(None if isinstance(key, tuple) else key).__name__}$"):
        key_bytes(key)


def test_check_mode():
    for mode in ("random", "local", "affinity"):
        assert routing.check_mode(mode) == mode
    for mode in ("Random", "roundrobin", "", None):
        with pytest.raises(UsageError, match=rf"^unknown request mode {mode!r}: use one of random, local, affinity$"):
            routing.check_mode(mode)


# ---- the ring ------------------------------------------------------------------------------------

UIDS = [f"actor{i}" for i in range(10)]
KEYS = [f"key{k}" for k in range(2000)]


def test_affinity_is_stable_and_consistent():
    ring = Ring(UIDS)
    owners = {k: ring.owner(k) for k in KEYS}
    assert set(owners.values()) == set(UIDS)  # an owner for every key, and every actor owns some
    reversed_ring = Ring(list(reversed(UIDS)))
    assert owners == {k: reversed_ring.owner(k) for k in KEYS}
    fewer = Ring(UIDS[:-1])
    moved = sum(owners[k] != fewer.owner(k) for k in owners)
    # only the keys of the removed actor move (about 1/10)
    assert moved == sum(1 for o in owners.values() if o == "actor9")
    assert 100 <= moved <= 300
    assert all(owners[k] == fewer.owner(k) for k in owners if owners[k] != "actor9")


def test_a_new_actor_takes_keys_only_for_itself():
    before, after = Ring(UIDS), Ring([*UIDS, "newcomer"])
    changed = [k for k in KEYS if before.owner(k) != after.owner(k)]
    assert changed and all(after.owner(k) == "newcomer" for k in changed)
    assert 100 <= len(changed) <= 300  # about 1/11


def test_keys_spread_over_the_actors():
    ring = Ring(UIDS)
    counts = Counter(ring.owner(k) for k in KEYS)
    assert all(100 <= n <= 300 for n in counts.values()), counts  # 200 each on average


def test_the_ring_is_consistent_hashing_by_its_definition():
    rng = random.Random(3)
    for uids in (["a"], ["a", "b"], UIDS, [f"u{rng.random()}" for _ in range(5)]):
        ring = Ring(uids)
        keys = [*KEYS[:300], *(rng.randbytes(rng.randrange(12)) for _ in range(200)), ("t", 1), 42, 1.25]
        assert [ring.owner(k) for k in keys] == [oracle_owner(k, uids) for k in keys]


def test_a_key_on_a_point_belongs_to_that_point_and_past_the_last_point_wraps_around():
    ring = Ring(["a", "b", "c"])
    # the key "b#5" hashes to exactly b's fifth point: it is b's, not the next point's
    for uid in ("a", "b", "c"):
        for i in range(64):
            assert ring.owner(f"{uid}#{i}") == uid
    points = sorted((point(f"{uid}#{i}".encode()), uid) for uid in "abc" for i in range(64))
    beyond = next(k for k in (f"k{n}" for n in range(100_000)) if point(k.encode()) > points[-1][0])
    assert points[0][1] != points[1][1] or points[0][1] != points[-1][1]
    assert ring.owner(beyond) == points[0][1]  # past the last point: the first point's


def test_owners_are_pinned_across_processes_and_releases():
    # blake2b, not Python's salted hash(): these hold in every process (checked by the oracle above
    # too, but a change of hash, of points per actor or of the point names would move every key)
    ring = Ring(["alpha", "beta", "gamma"])
    assert [ring.owner(k) for k in ("user-1", "user-2", "user-3", b"\x00", ("cart", 7), 12345)] == \
        [oracle_owner(k, ["alpha", "beta", "gamma"]) for k in ("user-1", "user-2", "user-3", b"\x00", ("cart", 7),
                                                                 12345)]
    assert [ring.owner(k) for k in ("user-1", "user-2", "user-3", b"\x00", ("cart", 7), 12345)] == PINNED


PINNED = ["beta", "gamma", "alpha", "alpha", "alpha", "alpha"]


def test_tuple_and_bytes_keys_are_their_byte_forms():
    ring = Ring(UIDS)
    assert ring.owner(("cart", 7)) == ring.owner(b"cart\x1f7") == ring.owner("cart\x1f7")
    assert ring.owner(["cart", 7]) == ring.owner(("cart", 7))
    owners = {ring.owner((f"user{n}", n % 3)) for n in range(300)} | {ring.owner(b"%d" % n) for n in range(300)}
    assert owners == set(UIDS)


def test_an_empty_ring_owns_nothing():
    assert Ring([]).owner("k") is None
    assert Ring([]).uids == []
    assert affinity_choice("k", []) is None
    assert Ring(["b", "a"]).uids == ["a", "b"]


def test_affinity_choice_is_the_rings_owner():
    ring = Ring(UIDS)
    for k in KEYS[:100]:
        assert affinity_choice(k, UIDS) == ring.owner(k) == oracle_owner(k, UIDS)
    assert affinity_choice("anything", ["only"]) == "only"


# ---- random and local choices ------------------------------------------------------------------


def actor(uid: str, node: str = "n1", realm: str = "global", categories: tuple[str, ...] = ("svc",)):
    return records.check(ActorEntry, {"uid": uid, "realm": realm, "name": "Pong", "categories": list(categories),
                                            "node": node, "host": f"{node}-h1", "pid": 1, "started": 1.0})


def test_random_choice_never_picks_an_excluded_actor_and_picks_every_other():
    actors = [actor(f"u{i}") for i in range(4)]
    picks = Counter(routing.random_choice(actors, {"u0"}) for _ in range(300))
    assert set(picks) == {"u1", "u2", "u3"}
    assert routing.random_choice(actors, {"u0", "u1", "u2"}) == "u3"
    assert routing.random_choice(actors, {"u0", "u1", "u2", "u3"}) is None
    assert routing.random_choice([], set()) is None


def test_local_choice_picks_among_the_actors_on_the_node():
    actors = [actor("a1", "n1"), actor("a2", "n1"), actor("b1", "n2")]
    assert {routing.local_choice(actors, "n1") for _ in range(100)} == {"a1", "a2"}
    assert routing.local_choice(actors, "n2") == "b1"
    assert routing.local_choice(actors, "n3") is None
    assert routing.local_choice(actors, None) is None


# ---- targets over a live directory view ---------------------------------------------------------


def node(node_id: str):
    return records.check(NodeEntry, {"id": node_id, "hostname": f"host-{node_id}", "updated": time.time()})


class Cluster:
    """A real `DirectoryView` (no buckets: fed here as its KV watches feed it)."""

    def __init__(self, *nodes: str) -> None:
        self.view = DirectoryView(None, None)  # type: ignore[arg-type]
        self.revision = 0
        for n in nodes:
            self.view.nodes[n] = node(n)

    def add(self, *actors) -> None:
        for a in actors:
            self.revision += 1
            self.view.apply_actor(subjects.actor_key(a.realm, a.uid), self.revision, a)

    def remove(self, a) -> None:
        self.revision += 1
        self.view.apply_actor(subjects.actor_key(a.realm, a.uid), self.revision, None)


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster("n1", "n2")
    c.add(actor("a1", "n1"), actor("a2", "n1"), actor("b1", "n2"), actor("b2", "n2"),
          actor("other", "n1", categories=("elsewhere",)))
    # the same category in another realm, on the same nodes: never a choice for realm "global"
    c.add(*(actor(f"x{i}", f"n{1 + i % 2}", realm="realm-x") for i in range(6)))
    # and an actor of the category on a node that is not live
    c.add(actor("ghost", "n9"))
    return c


SVC = {"a1", "a2", "b1", "b2"}


def test_random_mode_lets_the_queue_group_choose_then_retries_choose_an_untried_actor(cluster):
    targets = Targets(cluster.view, "global", "svc", "random", "n1")
    assert targets.route("k", 0, set()) == ("beach.r.global.svc", "svc")
    assert targets.route("k", 0, {"a1"}) == ("beach.r.global.svc", "svc")
    seen = set()
    for _ in range(200):
        subject, uid = targets.route(None, 1, {"a1"})
        assert uid in SVC - {"a1"} and subject == f"beach.a.global.{uid}"
        seen.add(uid)
    assert seen == SVC - {"a1"}
    assert targets.route(None, 3, {"a1", "a2", "b1"}) == ("beach.a.global.b2", "b2")
    assert targets.route(None, 4, set(SVC)) == ("beach.r.global.svc", "svc")


def test_local_mode_chooses_an_actor_on_the_callers_node_first(cluster):
    targets = Targets(cluster.view, "global", "svc", "local", "n2")
    assert {targets.route(None, 0, set()) for _ in range(100)} == {("beach.a.global.b1", "b1"),
                                                                    ("beach.a.global.b2", "b2")}
    # a retry is any untried actor, wherever it is
    assert {targets.route(None, 1, {"b1", "b2"})[1] for _ in range(100)} == {"a1", "a2"}
    # no actor of the category on this node, or no node: the queue group chooses
    assert Targets(cluster.view, "global", "svc", "local", "n3").route(None, 0, set()) == ("beach.r.global.svc", "svc")
    assert Targets(cluster.view, "global", "svc", "local", None).route(None, 0, set()) == ("beach.r.global.svc", "svc")


def test_affinity_mode_routes_a_key_to_its_owner_and_a_retry_to_the_next_owner(cluster):
    targets = Targets(cluster.view, "global", "svc", "affinity", "n1")
    for key in [*KEYS[:100], ("cart", 1), b"\x01\x02", 99]:
        owner = oracle_owner(key, sorted(SVC))
        assert targets.route(key, 0, set()) == (f"beach.a.global.{owner}", owner)
        assert targets.route(key, 5, set()) == (f"beach.a.global.{owner}", owner)  # the attempt does not matter
        second = oracle_owner(key, sorted(SVC - {owner}))
        assert targets.route(key, 1, {owner}) == (f"beach.a.global.{second}", second)
    assert targets.route("k", 1, set(SVC)) == ("beach.r.global.svc", "svc")


def test_every_choice_stays_in_the_callers_realm(cluster):
    # realm-x has six actors of the same category on the same nodes: none may ever be chosen for
    # a caller of realm "global", by affinity, locally, or on a retry (and the other way round)
    for realm, members in (("global", SVC), ("realm-x", {f"x{i}" for i in range(6)})):
        for mode in ("random", "local", "affinity"):
            targets = Targets(cluster.view, realm, "svc", mode, "n1")
            assert {a.uid for a in targets.members()} == members
            chosen = set()
            for n in range(100):
                subject, target = targets.route(f"key{n}", n % 3, {"a1", "x0"} if n % 2 else set())
                if target == "svc":
                    assert subject == f"beach.r.{realm}.svc"
                else:
                    assert target in members and subject == f"beach.a.{realm}.{target}", (realm, mode, target)
                    chosen.add(target)
            # (the client chose actors itself, in every mode: a route that always left the choice to
            # the queue group would pass the checks above)
            assert chosen == members if mode == "affinity" else chosen, (realm, mode, chosen)
            assert targets.route("k", 1, set(members)) == (f"beach.r.{realm}.svc", "svc")


def test_members_follow_the_view(cluster):
    targets = Targets(cluster.view, "global", "svc", "affinity", None)
    assert {a.uid for a in targets.members()} == SVC
    owners = {k: targets.route(k, 0, set())[1] for k in KEYS[:400]}
    cluster.add(actor("c1", "n2"))
    assert {a.uid for a in targets.members()} == SVC | {"c1"}
    moved = {k for k in owners if targets.route(k, 0, set())[1] != owners[k]}
    assert moved and all(targets.route(k, 0, set())[1] == "c1" for k in moved)
    cluster.remove(actor("a1", "n1"))
    assert {a.uid for a in targets.members()} == SVC - {"a1"} | {"c1"}
    assert all(targets.route(k, 0, set()) == (f"beach.a.global.{oracle_owner(k, sorted(SVC - {'a1'} | {'c1'}))}",
                                              oracle_owner(k, sorted(SVC - {"a1"} | {"c1"}))) for k in KEYS[:400])
    del cluster.view.nodes["n2"]  # a node gone: its actors are no members (once the view says so)
    cluster.view.generation += 1
    assert {a.uid for a in targets.members()} == {"a2"}
    assert {targets.route(k, 0, set()) for k in KEYS[:50]} == {("beach.a.global.a2", "a2")}


def test_others_says_whether_an_untried_actor_is_left(cluster):
    targets = Targets(cluster.view, "global", "svc", "random", None)
    assert targets.others(set())
    assert targets.others({"a1", "a2", "b1"})
    assert not targets.others(set(SVC))
    assert not targets.others(set(SVC) | {"x0"})
    assert not Targets(cluster.view, "global", "nothing/here", "random", None).others(set())


def test_a_prefix_and_a_hidden_category_route_by_segment(cluster):
    cluster.add(actor("deep", "n1", categories=("svc/inner",)), actor("svcx", "n1", categories=("svcx",)))
    assert {a.uid for a in Targets(cluster.view, "global", "svc", "random", None).members()} == SVC | {"deep"}
    hidden = Targets(cluster.view, "global", "_ACTORS/b1", "random", None)
    assert hidden.route(None, 0, set()) == ("beach.a.global.b1", "_ACTORS/b1")
    assert [a.uid for a in hidden.members()] == ["b1"]
    assert Targets(cluster.view, "realm-x", "_ACTORS/b1", "random", None).members() == []


def test_targets_check_their_mode_and_realm(cluster):
    with pytest.raises(UsageError, match="unknown request mode 'nearest'"):
        Targets(cluster.view, "global", "svc", "nearest", None)
    with pytest.raises(CategoryError, match="is not a realm name"):
        Targets(cluster.view, "bad realm", "svc", "random", None)


def test_members_are_read_from_a_view_of_any_generation_and_kept_until_it_changes():
    fresh = Cluster("n1")
    targets = Targets(fresh.view, "global", "svc", "random", None)
    assert fresh.view.generation == 0 and targets.members() == []
    fresh.add(actor("a1"))
    assert fresh.view.generation == 1
    first = Targets(fresh.view, "global", "svc", "random", None).members()  # a view at its first change
    assert [a.uid for a in first] == ["a1"]
    assert [a.uid for a in targets.members()] == ["a1"]
    # the same list until the view changes (no re-reading the directory for every attempt)
    same = targets.members()
    assert targets.members() is same
    fresh.add(actor("a2"))
    assert targets.members() is not same and {a.uid for a in targets.members()} == {"a1", "a2"}


def test_an_absent_actor_takes_its_nodes_other_actors_out_of_the_retries(cluster):
    targets = Targets(cluster.view, "global", "svc", "random", None)
    tried: set[str] = set()
    targets.failed("svc", True, tried)  # the queue group was asked: nobody in particular failed
    assert tried == set()
    targets.failed("a1", False, tried)  # a timeout or busy: that actor only
    assert tried == {"a1"}
    tried = set()
    targets.failed("a1", True, tried)  # no responder on a1's subject: n1 is most likely gone with it
    assert tried == {"a1", "a2"}
    assert {targets.route(None, 1, tried)[1] for _ in range(100)} == {"b1", "b2"}
    targets.failed("b2", True, tried)  # every actor tried: the queue group is asked again
    assert tried == set(SVC) and targets.route(None, 2, tried) == ("beach.r.global.svc", "svc")
    other_realm = Targets(cluster.view, "realm-x", "svc", "random", None)
    tried = set()
    other_realm.failed("x0", True, tried)  # its node's actors in the realm only
    assert tried == {"x0", "x2", "x4"}
    tried = set()
    targets.failed("gone", True, tried)  # an actor the view no longer lists: itself only
    assert tried == {"gone"}
