"""beach.wire.subjects: categories, realms, tokens and the subjects they map to.

The oracles: subjects written out by hand from the module's documented layout (``beach.r.<realm>.a.b``),
round trips (``unescape(escape(x)) == x``), and what NATS itself requires of a token (no ``.``, no
wildcard, no white space), checked character by character rather than with the module's own regex.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from beach.errors import CategoryError, StateError, UsageError
from beach.wire import subjects

# What a token may hold, spelled out here (not the module's regex): letters, digits, '_', '-', and the
# escape character '='.
TOKEN_CHARS = set(string.ascii_letters + string.digits + "_-=")


@pytest.mark.parametrize("name", ["plain", "1.2", "a b", "*", ">", "=", "ü", "tab\tx", "$sys", "x=3D"])
def test_escape_roundtrip(name):
    token = subjects.escape(name)
    assert subjects.unescape(token) == name
    assert all(c.isalnum() or c in "_-=" for c in token), token


@pytest.mark.parametrize("name, token", [
    ("plain", "plain"),
    ("my_crypt-actor", "my_crypt-actor"),
    ("1.2", "1=2E2"),
    ("a b", "a=20b"),
    ("*", "=2A"),
    (">", "=3E"),
    ("=", "=3D"),
    ("x=3D", "x=3D3D"),
    ("ü", "=C3=BC"),  # the UTF-8 bytes, each escaped
    ("€", "=E2=82=AC"),
    ("tab\tx", "tab=09x"),
    ("$sys", "=24sys"),
    ("Zz", "Zz"),
    ("", ""),
])
def test_escape_known_tokens(name, token):
    assert subjects.escape(name) == token
    assert subjects.unescape(token) == name


@pytest.mark.parametrize("token, name", [
    ("nothing-escaped", "nothing-escaped"),
    ("a=2Eb=2Ec", "a.b.c"),
    ("=3d", "=3d"),  # lowercase hex is not an escape beach writes: left as it is
    ("=G0", "=G0"),
    ("trailing=", "trailing="),
])
def test_unescape_known_tokens(token, name):
    assert subjects.unescape(token) == name


def test_unescaping_bytes_that_are_not_utf8_is_an_error_not_garbage():
    # escape never writes them: a token that holds them was not made by beach
    with pytest.raises(UnicodeDecodeError):
        subjects.unescape("=FF=FE")


@given(st.text())
@example("X")
@example("a.b")
@example("=")
def test_escape_is_a_reversible_token(name):
    token = subjects.escape(name)
    assert subjects.unescape(token) == name
    assert set(token) <= TOKEN_CHARS, token
    assert not token or "." not in token and "*" not in token and ">" not in token


@given(st.text(), st.text())
def test_escape_is_injective(a, b):
    # two names never share a token, so two realms, actors or nodes never share a subject
    assert (subjects.escape(a) == subjects.escape(b)) == (a == b)


def test_plain_names_stay_readable():
    assert subjects.escape("my_crypt-actor") == "my_crypt-actor"
    assert subjects.request_subject("global", "my_crypt_actor/1.2") == "beach.r.global.my_crypt_actor.1=2E2"


def test_category_segments():
    assert subjects.normalize("/foo/bars/") == "foo/bars"
    assert subjects.prefix_categories(["a/b/c", "a/d"]) == ["a", "a/b", "a/b/c", "a/d"]
    assert subjects.matches("myactors/pongers", "myactors")
    assert not subjects.matches("myactors/pongers", "myactors/pong")
    with pytest.raises(CategoryError, match="empty segment"):
        subjects.normalize("a//b")
    with pytest.raises(CategoryError, match="empty category"):
        subjects.normalize("/")
    with pytest.raises(CategoryError, match="must be a string"):
        subjects.normalize(3)


@pytest.mark.parametrize("category, parts", [
    ("a", ["a"]),
    ("a/b/c", ["a", "b", "c"]),
    ("/a/b/", ["a", "b"]),
    ("//a//", ["a"]),  # every leading and trailing '/' goes
    ("Xa/bX", ["Xa", "bX"]),
    ("1.2/ü b", ["1.2", "ü b"]),
])
def test_segments_known_answers(category, parts):
    assert subjects.segments(category) == parts
    assert subjects.normalize(category) == "/".join(parts)


@pytest.mark.parametrize("category, message", [
    ("", r"empty category '': a category needs at least one segment"),
    ("/", r"empty category '/'"),
    ("///", r"empty category '///'"),
    ("a//b", r"category 'a//b' has an empty segment \('//'\)"),
    (None, r"a category must be a string, not NoneType: None"),
    (["a"], r"a category must be a string, not list: \['a'\]"),
    (b"a", r"a category must be a string, not bytes"),
])
def test_unroutable_categories_are_named(category, message):
    with pytest.raises(CategoryError, match=f"^{message}"):
        subjects.segments(category)


@given(st.lists(st.text(min_size=1).filter(lambda s: "/" not in s), min_size=1, max_size=5))
def test_segments_round_trip(parts):
    category = "/".join(parts)
    assert subjects.segments(category) == parts
    assert subjects.segments(f"/{category}/") == parts
    assert subjects.normalize(subjects.normalize(category)) == category


@pytest.mark.parametrize("category, prefix, expected", [
    ("a", "a", True),
    ("a/b", "a", True),
    ("a/b/c", "a/b", True),
    ("ab", "a", False),
    ("a", "a/b", False),
    ("b/a", "a", False),
    ("a/bc", "a/b", False),
    ("myactors/pongers", "myactors/pong", False),
])
def test_matches_is_by_segment(category, prefix, expected):
    assert subjects.matches(category, prefix) is expected


@pytest.mark.parametrize("realm", ["global", "r", "realm-one", "a.b", "_x", "9", "A" * 128, "v1.2-rc_3"])
def test_good_realms(realm):
    assert subjects.check_realm(realm) == realm


@pytest.mark.parametrize("realm", ["", ".", ".hidden", "-x", "a..b", "..", "a/b", "a b", "ü", "A" * 129,
                                   None, 3, "a\n"])
def test_bad_realms_are_refused_naming_them(realm):
    with pytest.raises(CategoryError) as err:
        subjects.check_realm(realm)
    assert str(err.value) == (f"{realm!r} is not a realm name: use letters, digits, '_', '-' and '.' "
                              f"(not first, never '..'), at most 128 of them")


@pytest.mark.parametrize("version", ["1", "v2", "2024.01.02", "1.0+local", "a_b-c", "x" * 64])
def test_good_versions(version):
    assert subjects.check_version(version) == version


@pytest.mark.parametrize("version", ["", "-1", ".1", "_a", "a b", "a/b", "x" * 65, None, 1.0, "ü"])
def test_bad_versions_are_refused_naming_them(version):
    with pytest.raises(UsageError) as err:
        subjects.check_version(version)
    assert str(err.value) == (f"{version!r} is not a version name: use letters, digits and _ . + - (up to 64, "
                              f"starting with a letter or digit)")


@pytest.mark.parametrize("category, uid", [
    ("_ACTORS/abc", "abc"),
    ("/_ACTORS/abc/", "abc"),
    ("_ACTORS", None),
    ("_ACTORS/abc/def", None),
    ("x/abc", None),
    ("x/_ACTORS", None),
    ("_actors/abc", None),
])
def test_actor_uid(category, uid):
    assert subjects.actor_uid(category) == uid


def test_hidden_actor_category():
    assert subjects.request_subject("r", "_ACTORS/abc") == subjects.actor_subject("r", "abc")
    assert subjects.request_subject("r", "_ACTORS/abc") == "beach.a.r.abc"
    assert subjects.broadcast_subject("r", "_ACTORS/abc") == "beach.a.r.abc"


@pytest.mark.parametrize("realm, category, to_one, to_all", [
    ("global", "a", "beach.r.global.a", "beach.b.global.a"),
    ("global", "/a/b/c/", "beach.r.global.a.b.c", "beach.b.global.a.b.c"),
    ("r.1", "x y/1.2", "beach.r.r=2E1.x=20y.1=2E2", "beach.b.r=2E1.x=20y.1=2E2"),
    ("realm-one", "_ACTORS", "beach.r.realm-one._ACTORS", "beach.b.realm-one._ACTORS"),
])
def test_request_and_broadcast_subjects(realm, category, to_one, to_all):
    assert subjects.request_subject(realm, category) == to_one
    assert subjects.broadcast_subject(realm, category) == to_all


@pytest.mark.parametrize("make", [subjects.request_subject, subjects.broadcast_subject])
def test_subjects_check_the_realm_and_the_category(make):
    with pytest.raises(CategoryError, match="is not a realm name"):
        make("a..b", "x")
    with pytest.raises(CategoryError, match="is not a realm name"):
        make("a b", "_ACTORS/u1")
    with pytest.raises(CategoryError, match="empty segment"):
        make("global", "a//b")


@given(st.lists(st.text(min_size=1).filter(lambda s: "/" not in s), min_size=1, max_size=4))
def test_a_subject_has_one_token_per_segment(parts):
    # the realm and every segment are one token each, whatever they hold: no name can add or merge levels
    for subject, kind in ((subjects.request_subject("global", "/".join(parts)), "r"),
                          (subjects.broadcast_subject("global", "/".join(parts)), "b")):
        if subjects.actor_uid("/".join(parts)) is not None:
            continue
        tokens = subject.split(".")
        assert tokens[:3] == ["beach", kind, "global"]
        assert [subjects.unescape(t) for t in tokens[3:]] == parts


def test_actor_node_and_host_subjects_and_keys():
    assert subjects.actor_subject("global", "u-1") == "beach.a.global.u-1"
    assert subjects.actor_subject("r.x", "u.1") == "beach.a.r=2Ex.u=2E1"
    assert subjects.node_subject("node-a", "spawn") == "beach.n.node-a.spawn"
    assert subjects.node_subject("host.example", "info") == "beach.n.host=2Eexample.info"
    assert subjects.host_subject("n1-h2", "stop") == "beach.h.n1-h2.stop"
    assert subjects.host_subject("n 1", "stop") == "beach.h.n=201.stop"
    assert subjects.actor_key("global", "u1") == "global.u1"
    assert subjects.actor_key("r.x", "u 1") == "r=2Ex.u=201"
    with pytest.raises(CategoryError, match="is not a realm name"):
        subjects.actor_subject("..", "u1")
    with pytest.raises(CategoryError, match="is not a realm name"):
        subjects.actor_key("", "u1")


def test_prefix_categories():
    assert subjects.prefix_categories([]) == []
    assert subjects.prefix_categories(["a"]) == ["a"]
    assert subjects.prefix_categories(["/a/b/c/"]) == ["a", "a/b", "a/b/c"]
    assert subjects.prefix_categories(["a/b", "a/b", "a"]) == ["a", "a/b"]
    assert subjects.prefix_categories(["x/y", "a/b/c", "x/z"]) == ["x", "x/y", "a", "a/b", "a/b/c", "x/z"]
    with pytest.raises(CategoryError, match="empty segment"):
        subjects.prefix_categories(["a", "b//c"])


# ---- lengths: what a NATS server will take (nats-server's max_control_line, 4096 bytes) -------------

LIMIT = 4096 - 256  # MAX_SUBJECT, worked out from the module's docstring


def test_the_limits():
    assert (subjects.MAX_CONTROL_LINE, subjects.MAX_SUBJECT, subjects.KV_ROOM) == (4096, LIMIT, 64)


def test_shown_names_are_cut_to_forty_characters_with_their_length():
    assert subjects.shown("abc") == "'abc'"
    assert subjects.shown("x" * 40) == "'" + "x" * 40 + "'"
    assert subjects.shown("x" * 41) == "'" + "x" * 40 + "'… (41 characters)"
    assert subjects.shown("y" * 10, limit=3) == "'yyy'… (10 characters)"


def too_long(kind: str, name: str, size: int, limit: int = LIMIT) -> str:
    return (f"{kind} {subjects.shown(name)} is too long: its NATS subject would be {size} bytes, over the {limit} "
            f"beach allows (a NATS server closes the connection of a client that sends a protocol line over its "
            f"max_control_line of 4096 bytes)")


def test_check_length_counts_bytes_up_to_the_limit():
    assert subjects.check_length("s" * LIMIT, "category", "c") == "s" * LIMIT
    with pytest.raises(CategoryError) as err:
        subjects.check_length("s" * (LIMIT + 1), "category", "c" * 50)
    assert str(err.value) == too_long("category", "c" * 50, LIMIT + 1)
    wide = "é" * (LIMIT // 2)  # LIMIT bytes in UTF-8, half as many characters
    assert subjects.check_length(wide, "k", "n") == wide
    with pytest.raises(CategoryError, match=f"would be {LIMIT + 2} bytes"):
        subjects.check_length(wide + "é", "k", "n")
    with pytest.raises(CategoryError, match=r"^node id 'n' is too long: its NATS subject would be 11 bytes, over "
                                            r"the 10 "):
        subjects.check_length("s" * 11, "node id", "n", limit=10)


@pytest.mark.parametrize("build, kind, name, fixed", [
    (lambda n: subjects.request_subject("global", n), "category", "c", len("beach.r.global.")),
    (lambda n: subjects.broadcast_subject("global", n), "category", "c", len("beach.b.global.")),
    (lambda n: subjects.actor_subject("global", n), "actor uid", "u", len("beach.a.global.")),
    (lambda n: subjects.request_subject("global", f"_ACTORS/{n}"), "actor uid", "u", len("beach.a.global.")),
    (lambda n: subjects.node_subject(n, "spawn"), "node id", "n", len("beach.n..spawn")),
    (lambda n: subjects.host_subject(n, "stop"), "actor host id", "h", len("beach.h..stop")),
])
def test_every_subject_is_checked_at_its_limit(build, kind, name, fixed):
    longest = name * (LIMIT - fixed)
    assert len(build(longest)) == LIMIT
    with pytest.raises(CategoryError) as err:
        build(longest + name)
    assert str(err.value) == too_long(kind, longest + name, LIMIT + 1)


def test_an_escaped_name_is_measured_as_escaped():
    # each byte outside [A-Za-z0-9_-] takes three in the subject ("." is "=2E")
    fixed = len("beach.r.global.")
    assert len(subjects.request_subject("global", "." * ((LIMIT - fixed) // 3))) <= LIMIT
    with pytest.raises(CategoryError, match=r"is too long: its NATS subject would be 3843 bytes"):
        subjects.request_subject("global", "." * ((LIMIT - fixed) // 3 + 1))


def test_a_kv_key_keeps_room_for_its_bucket():
    limit = LIMIT - 64
    longest = "u" * (limit - len("global."))
    assert subjects.actor_key("global", longest) == f"global.{longest}"
    assert subjects.check_key("k" * limit, "actor uid", "u") == "k" * limit
    with pytest.raises(CategoryError) as err:
        subjects.actor_key("global", longest + "u")
    assert str(err.value) == too_long("actor uid", longest + "u", limit + 1, limit)


def test_routable_is_the_normalized_category_if_its_subjects_fit():
    assert subjects.routable("global", "/a/b/") == "a/b"
    assert subjects.routable("global", "_ACTORS/u1") == "_ACTORS/u1"
    with pytest.raises(CategoryError, match="is too long"):
        subjects.routable("global", "c" * LIMIT)
    with pytest.raises(CategoryError, match="empty segment"):
        subjects.routable("global", "a//b")
    with pytest.raises(CategoryError, match="is not a realm name"):
        subjects.routable("a b", "a")


FIXED = len("HPUB    \r\n") + 20  # the verb, spaces, CRLF and two sizes of up to 10 digits, from the docstring


def test_check_line_refuses_a_protocol_line_the_server_would_not_read():
    subjects.check_line("s" * (4096 - FIXED))  # exactly at the limit
    subjects.check_line("s" * (4096 - FIXED - 20), "r" * 20)
    half = (4096 - FIXED) // 2 + 1  # the subject and the reply each fit, the two together do not
    with pytest.raises(UsageError, match=f"about {2 * half + FIXED} bytes"):
        subjects.check_line("s" * half, "r" * half)
    subjects.check_line("é" * ((4096 - FIXED) // 2))  # bytes, not characters
    with pytest.raises(UsageError) as err:
        subjects.check_line("s" * (4096 - FIXED - 20), "r" * 21)
    assert str(err.value) == (f"cannot publish to the NATS subject {subjects.shown('s' * (4096 - FIXED - 20))}: the "
                              f"protocol line would be about 4097 bytes, over the NATS server's max_control_line of "
                              f"4096 bytes (the server would close the connection); nothing was sent")
    with pytest.raises(UsageError, match=r"^cannot subscribe to the NATS subject .* about 4098 bytes"):
        subjects.check_line("é" * ((4096 - FIXED) // 2 + 1), verb="subscribe to")
    # a line short enough even at four bytes a character needs no counting
    subjects.check_line("😀" * ((4096 - FIXED) // 4))
    with pytest.raises(UsageError):
        subjects.check_line("😀" * ((4096 - FIXED) // 4 + 1))


# ---- actor state's KV keys: the realm, the whole category and the key are one token each ----


def test_state_keys_known_answers():
    assert subjects.state_scope("shop", "/a/b/") == "shop.k.a=2Fb."
    assert subjects.state_token("k.1") == "k=2E1"
    assert subjects.state_key("shop.k.a=2Fb.", "k=2E1") == "shop.k.a=2Fb.k=2E1"
    assert subjects.parse_state_key("shop.k.a=2Fb.k=2E1") == ("shop", "a/b", "k.1")
    assert subjects.request_record_key("shop", "r.1") == "shop.r.r=2E1"
    assert subjects.read_check_key("shop", "r 1") == "shop.c.r=201"
    assert subjects.beacon_subject("n.1") == "beach.hb.n=2E1" and subjects.BEACONS == "beach.hb.*"
    with pytest.raises(CategoryError, match="is not a realm name"):
        subjects.state_scope("a b", "c")
    for make in (subjects.request_record_key, subjects.read_check_key):
        with pytest.raises(CategoryError, match="is not a realm name"):
            make("a b", "r")


@pytest.mark.parametrize("key", ["shop.r.r=2E1", "shop.c.r", "shop.k.a.b.c", "shop.k.a", "shop.x.a.k", ""])
def test_what_is_not_a_state_key_parses_to_none(key):
    assert subjects.parse_state_key(key) is None


@pytest.mark.parametrize("key, message", [("", "not ''"), (5, "not int"), (None, "not NoneType"), (b"k", "not bytes")])
def test_a_state_key_must_be_a_non_empty_string(key, message):
    with pytest.raises(StateError) as err:
        subjects.state_token(key)
    assert str(err.value) == f"a state key must be a non-empty string, {message}"


def test_a_state_key_must_fit_a_kv_subject():
    scope = "shop.k.a."
    room = subjects.MAX_SUBJECT - subjects.KV_ROOM - len(scope)
    assert subjects.state_key(scope, "x" * room) == scope + "x" * room
    with pytest.raises(CategoryError) as err:
        subjects.state_key(scope, "x" * (room + 1))
    assert str(err.value).startswith(f"state key '{'x' * 40}'… ({room + 1} characters) is too long: its NATS "
                                     f"subject would be {len(scope) + room + 1} bytes, over the "
                                     f"{subjects.MAX_SUBJECT - subjects.KV_ROOM} beach allows")
    # the error names the key as the actor wrote it, not its token
    with pytest.raises(CategoryError, match=r"^state key '\.\.\.\.\.\.\.\.\.\."):
        subjects.state_key(scope, subjects.state_token("." * room))


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_a_state_key_reads_back_as_its_realm_category_and_key(realm_seed, category, key):
    realm = "".join(c for c in realm_seed if c.isascii() and c.isalnum()) or "r"
    category = subjects.normalize(category) if category.strip("/") and "//" not in category.strip("/") else "c"
    kv_key = subjects.state_scope(realm, category) + subjects.state_token(key)
    assert subjects.parse_state_key(kv_key) == (realm, category, key)
    assert kv_key.count(".") == 3  # one token each: no name adds a level


def test_member_keys_have_the_room_of_a_protocol_line_not_more():
    # a member key (and a watch's filter of them) may be as long as a protocol line leaves room for,
    # MEMBER_ROOM bytes short of max_control_line; one byte more is refused, naming the category
    limit = subjects.MAX_CONTROL_LINE - subjects.MEMBER_ROOM
    assert limit == 4096 - 160

    def refused(category: str) -> str:
        return (rf"^category 'c{{40}}'… \({len(category)} characters\) is too long: its NATS subject would be "
                rf"{limit + 1} bytes, over the {limit} beach allows")

    at = "c" * (limit - len("global..u1"))
    assert len(subjects.member_key("global", at, "u1")) == limit
    with pytest.raises(CategoryError, match=refused(at + "c")):
        subjects.member_key("global", at + "c", "u1")
    at = "c" * (limit - len("global..>"))
    assert len(subjects.member_keys("global", at)) == limit
    with pytest.raises(CategoryError, match=refused(at + "c")):
        subjects.member_keys("global", at + "c")


# ---- the subjects of nodes' beats and figures, and of cancels: one token per node id or realm ----


def nats_matches(wildcard: str, subject: str) -> bool:
    """Whether NATS delivers ``subject`` to a subscription on ``wildcard`` (``*`` one token, ``>``
    one or more at the end), spelled out here from NATS's rules."""
    want, have = wildcard.split("."), subject.split(".")
    if want[-1] == ">":
        return len(have) >= len(want) and all(w in ("*", h) for w, h in zip(want[:-1], have, strict=False))
    return len(have) == len(want) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


def test_member_keys_hold_what_a_request_to_the_category_reaches():
    # an actor's entry by category: a watch of member_keys(realm, c) holds exactly the actors whose
    # category starts with c by segment, as requests to c reach them (the NATS wildcard's own match)
    assert subjects.member_key("global", "a/b", "u1") == "global.a.b.u1"
    assert subjects.member_keys("global", "/a/b/") == "global.a.b.>"
    assert subjects.member_key("r.x", "1.2/y z", "u.1") == "r=2Ex.1=2E2.y=20z.u=2E1"
    assert subjects.key_uid(subjects.member_key("r.x", "1.2/y z", "u.1")) == "u.1"
    assert subjects.key_uid(subjects.actor_key("r.x", "u.1")) == "u.1"
    # by node: a watch of placed_keys(node) holds that node's actors, whatever their realm
    assert subjects.placed_key("node.1", "r.x", "u.1") == "node=2E1.r=2Ex.u=2E1"
    assert subjects.placed_keys("node.1") == "node=2E1.>"
    assert subjects.key_uid(subjects.placed_key("node.1", "r.x", "u.1")) == "u.1"

    for called in ("a", "a/b", "a/b/c", "a/bc", "b"):
        for category in ("a", "a/b", "a/b/c", "a/bc", "b/a"):
            held = nats_matches(subjects.member_keys("global", called), subjects.member_key("global", category, "u1"))
            assert held == subjects.matches(category, called), (called, category)
    assert not nats_matches(subjects.member_keys("global", "a"), subjects.member_key("other", "a", "u1"))


@pytest.mark.parametrize("make, wildcard, name, subject", [
    (subjects.late_subject, subjects.LATE_MARKS, "n-1", "beach.hb.late.n-1"),
    (subjects.late_subject, subjects.LATE_MARKS, "host.example", "beach.hb.late.host=2Eexample"),
    (subjects.live_subject, subjects.LIVENESS, "n-1", "beach.hb.live.n-1"),
    (subjects.live_subject, subjects.LIVENESS, "n 1", "beach.hb.live.n=201"),
    (subjects.node_stats_subject, subjects.NODE_STATS, "n-1", "beach.stats.node.n-1"),
    (subjects.node_stats_subject, subjects.NODE_STATS, "a.b", "beach.stats.node.a=2Eb"),
    (subjects.cancel_subject, subjects.CANCELS, "global", "beach.cancel.global"),
    (subjects.cancel_subject, subjects.CANCELS, "shop.eu", "beach.cancel.shop=2Eeu"),
])
def test_node_and_cancel_subjects_known_answers(make, wildcard, name, subject):
    assert make(name) == subject
    assert nats_matches(wildcard, subject)  # heard by whoever subscribes to them all
    assert not nats_matches(subjects.BEACONS, subject)  # never taken for a node's beacon


def test_a_cancel_in_a_bad_realm_is_refused():
    for realm in ("a b", "..", "", None):
        with pytest.raises(CategoryError, match="is not a realm name"):
            subjects.cancel_subject(realm)
