"""Routing you can build services on: affinity, deadlines, backpressure, retries, futures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import nats
import pytest

from beach import wire
from beach.client.core import AsyncBeach
from beach.wire import subjects

from .conftest import wait_for

GATE = "beach_test_actors:Gate"


def owners(handle, keys):
    return {k: handle.request("ping", {"k": k}, key=k).data["uid"] for k in keys}


def test_affinity_agrees_across_client_processes(beach, config_path):
    for _ in range(4):
        assert beach.addActor("Pong", "aff").isSuccess
    keys = [f"user-{i}" for i in range(60)]
    mine = owners(beach.getActorHandle("aff", mode="affinity"), keys)
    assert len(set(mine.values())) >= 3
    script = (
        "import json, sys\n"
        "from beach.beach_api import Beach\n"
        "with Beach(sys.argv[1]) as b:\n"
        "    h = b.getActorHandle('aff', mode='affinity')\n"
        "    print(json.dumps({k: h.request('ping', key=k).data['uid'] for k in json.loads(sys.argv[2])}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(config_path), json.dumps(keys)],
                         capture_output=True, timeout=60, check=True)
    assert json.loads(out.stdout) == mine


def test_affinity_moves_few_keys_when_membership_changes(beach):
    uids = [beach.addActor("Pong", "ring").data["uid"] for _ in range(5)]
    handle = beach.getActorHandle("ring", mode="affinity")
    keys = list(range(600))
    before = owners(handle, keys)
    joined = beach.addActor("Pong", "ring").data["uid"]
    after_join = owners(handle, keys)
    moved = [k for k in keys if before[k] != after_join[k]]
    assert all(after_join[k] == joined for k in moved), "only keys taken by the new actor move"
    assert 0 < len(moved) <= 2 * len(keys) / 6
    assert beach.stopActors(withId=uids[0]).isSuccess
    after_leave = owners(handle, keys)
    moved = [k for k in keys if after_join[k] != after_leave[k]]
    assert all(after_join[k] == uids[0] for k in moved), "only the departed actor's keys move"
    assert 0 < len(moved) <= 2 * len(keys) / 5


def test_deadline_expired_at_the_callee_is_not_run(beach, nats_server):
    gate = beach.addActor(GATE, "gates").data["uid"]

    async def expired_request():
        nc = await nats.connect(nats_server.url)
        try:
            body = wire.pack_request("expired-id", "ping", {}, None, 0.0)  # no time left at all
            with pytest.raises(nats.errors.TimeoutError):
                await nc.request(subjects.actor_subject("global", gate), body, timeout=1)
        finally:
            await nc.close()

    asyncio.run(expired_request())
    runs = beach.getActorHandle("gates").request("runs", {"id": "expired-id"}).data
    assert runs["runs"] == 0 and runs["by_type"] == {}
    assert beach.getLoadInfo()[gate]["expired"] == 1


def test_busy_is_immediate_and_retries_go_to_another_actor(beach):
    a = beach.addActor(GATE, "busy", max_concurrent=1).data["uid"]
    holder = beach.getActorHandle("_ACTORS/" + a)
    assert holder.shoot("hold", {"seconds": 5})
    wait_for(lambda: beach.getLoadInfo()[a]["inflight"] == 1, 10, what="the gate to be held")
    resp = beach.getActorHandle("busy").request("ping", timeout=10)
    assert not resp.isSuccess and not resp.isTimedOut and resp.error == "busy"
    b = beach.addActor(GATE, "busy", max_concurrent=1).data["uid"]
    handle = beach.getActorHandle("busy")
    responses = [handle.request("ping", nRetries=1, timeout=10) for _ in range(20)]
    assert all(r.isSuccess and r.data["uid"] == b for r in responses)
    assert beach.getLoadInfo()[a]["busy"] >= 2  # some of the 20 landed on the held actor first


def test_reply_cache_runs_a_retried_request_once(beach):
    assert beach.addActor("beach_test_actors:CachedGate", "cached").isSuccess
    handle = beach.getActorHandle("cached")
    resp = handle.request("hold", {"seconds": 1.5}, timeout=1, nRetries=1)
    assert resp.isSuccess, resp
    assert resp.data["runs"] == 1
    assert handle.request("runs", {"id": resp.data["id"]}).data["runs"] == 1
    # without the cache the same retry runs twice (Flaky counts attempts per id)
    assert beach.addActor("Flaky", "flaky").isSuccess
    assert beach.getActorHandle("flaky").request("once", timeout=1, nRetries=1).data["attempts"] == 2


def test_on_failure_semantics(beach):
    assert beach.addActor(GATE, "gate", trustedIdents=[]).isSuccess
    handle = beach.getActorHandle("gate")
    calls = []
    assert handle.request("ping", {"x": 1}, onFailure=calls.append).isSuccess
    assert calls == []
    resp = handle.request("fail", {"x": 2}, nRetries=3, onFailure=calls.append)
    assert resp.error == "application error" and calls == [{"x": 2}]
    assert handle.request("runs", {"id": "-"}).data["by_type"]["fail"] == 1, "application errors are not retried"
    assert beach.addActor(GATE, "locked", trustedIdents=["secret"]).isSuccess
    resp = beach.getActorHandle("locked").request("ping", {"x": 3}, nRetries=3, onFailure=calls.append)
    assert resp.error == "unauthorized" and calls == [{"x": 2}, {"x": 3}]
    resp = handle.request("hold", {"seconds": 3}, timeout=0.3, nRetries=2, onFailure=calls.append)
    assert resp.isTimedOut and calls[-1] == {"seconds": 3} and len(calls) == 3
    assert handle.request("runs", {"id": "-"}).data["by_type"]["hold"] == 3


def test_awaitable_futures_and_groups(beach, config_path):
    async def main():
        client = await AsyncBeach.open(config_path)
        try:
            for category in ("aw/one", "aw/two", "aw/two"):
                assert (await client.addActor("Pong", category)).isSuccess
            handle = client.getActorHandle("aw")
            future = await handle.arequestFuture("ping", {"n": 1})
            [resp] = await future.wait(5)
            assert resp.isSuccess
            everyone = await (await handle.arequestFromAll("ping")).wait(5)
            assert len(everyone) == 3 and all(r.isSuccess for r in everyone)
            group = client.getActorHandleGroup("aw")
            replies = await (await group.arequest("ping")).wait(5)
            assert len(replies) == 2
            empty = await client.getActorHandle("aw/none").arequestFromAll("ping")
            assert empty.isFinished() and await empty.wait() == []
        finally:
            await client.close()

    asyncio.run(main())


def test_bursts_of_reply_less_messages_wait_their_turn(beach):
    uid = beach.addActor(GATE, "burst", max_concurrent=1).data["uid"]
    handle = beach.getActorHandle("burst")
    for i in range(300):
        assert handle.broadcast("ping", {"i": i})
    for i in range(300):
        assert handle.shoot("ping", {"i": i})
    wait_for(lambda: beach.getLoadInfo()[uid]["processed"] == 600, 20, what="all 600 messages to be served")
    assert beach.getLoadInfo()[uid]["busy"] == 0
    assert handle.request("runs", {"id": "-"}).data["by_type"]["ping"] == 600
