"""nodeagent.liveness.standby: which node hears the beats beside the lease holder. The same answer on
every agent that sees the same members, also once the holder has left them (so its standby acts)."""

from __future__ import annotations

from nodeagent.liveness import standby


def test_the_standby_is_the_member_after_the_holder_by_id():
    assert standby("b", ["a", "b", "c"]) == "c"
    assert standby("c", ["a", "b", "c"]) == "a"  # after the last: the first
    assert standby("b", ["c", "a"]) == "c"  # the holder gone from the members: the same standby as before
    assert standby("b", ["a", "b"]) == "a"


def test_no_standby_without_a_holder_or_another_member():
    assert standby(None, ["a", "b"]) is None
    assert standby("", ["a", "b"]) is None
    assert standby("a", ["a"]) is None
    assert standby("a", []) is None
