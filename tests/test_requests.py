"""Requests end to end: sync and async handlers, calls between actors, failures, payloads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import nats
import pytest

from beach import wire
from beach.beach_api import Beach
from beach.errors import BusError, CategoryError, EncodeError, PayloadTooLarge, UsageError
from beach.security import authority
from beach.wire import subjects

from .conftest import LEDGER, NODE_ID, holds_for, ledger, previous_release_node, served, wait_for


def test_async_handlers_run_concurrently(beach):
    uid = beach.addActor(LEDGER, "echo").data["uid"]
    handle = beach.getActorHandle("echo")
    futures = [handle.request("work", {"seconds": 0.5, "tag": i}, isWithFuture=True) for i in range(20)]
    responses = [r for f in futures for r in f.waitAll(10)]
    assert len(responses) == 20 and all(r.isSuccess for r in responses)
    entries = ledger(beach, uid)
    assert sorted(e["tag"] for e in entries) == list(range(20)), "each request served exactly once"
    # concurrent, not one after another: every request started before the first one ended
    assert max(e["start"] for e in entries) < min(e["end"] for e in entries)


def test_sync_handler_makes_blocking_request_to_another_actor(beach):
    assert beach.addActor("Pong", "pongers").isSuccess
    assert beach.addActor("Relay", "relays").isSuccess
    resp = beach.getActorHandle("relays").request("relay", {"category": "pongers"})
    assert resp.isSuccess, resp
    assert resp.data["echo"] == {"via": "sync"}


def test_async_handler_awaits_another_actor(beach):
    assert beach.addActor("Pong", "pongers").isSuccess
    assert beach.addActor("AsyncEcho", "echo").isSuccess
    resp = beach.getActorHandle("echo").request("relay", {"category": "pongers"})
    assert resp.isSuccess, resp
    assert resp.data["echo"] == {"via": "async"}


def test_inner_request_inherits_the_deadline(beach):
    assert beach.addActor("Sleeper", "sleepers").isSuccess
    relay = beach.addActor(LEDGER, "relays").data["uid"]
    started = time.monotonic()
    resp = beach.getActorHandle("relays").request(
        "inner", {"category": "sleepers", "req": "sleep", "data": {"seconds": 5}}, timeout=1.5)
    assert resp.isTimedOut and time.monotonic() - started < 3
    # The relay's own request asked for 30 s, to an actor that answers after 5 s: capped by what its
    # request had left (1.5 s), it timed out at about 1.5 s instead of succeeding after 5 s.
    [entry] = wait_for(lambda: [e for e in ledger(beach, relay) if "end" in e], 10, what="the relay to finish")
    print(f"\ninner request ended after {entry['inner_elapsed']:.2f}s (outer budget 1.5 s)")
    # (timed out, or cancelled: its caller gave up at the same moment, and the relay's scope ended it)
    assert not entry["inner_ok"] and (entry["inner_timed_out"] or entry["inner_error"].startswith("cancelled: "))
    assert 1.0 <= entry["inner_elapsed"] <= 2.5


def test_handler_exception_text(beach):
    assert beach.addActor("Faulty", "faulty").isSuccess
    resp = beach.getActorHandle("faulty").request("raise")
    assert not resp.isSuccess and not resp.isTimedOut
    assert resp.error == "exception: RuntimeError: handler blew up on purpose"
    assert resp.failure == wire.Failure.EXCEPTION
    assert "RuntimeError: handler blew up on purpose" in resp.data["st"]
    resp = beach.getActorHandle("faulty").request("lookup", {"title": "no doc"})
    assert resp.error == "exception: KeyError: 'doc'", resp
    # the traceback as Python prints it, with the actor's own frames only (not beach's, not asyncio's)
    trace = resp.data["st"]
    lines = trace.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "KeyError: 'doc'", trace
    files = [line.split('"')[1] for line in lines if line.startswith('  File "')]
    assert [os.path.basename(f) for f in files] == ["Faulty.py", "Faulty.py"], trace
    assert "in lookup" in trace and "in _title" in trace and "data['doc']" in trace
    # the actor keeps working
    assert beach.getActorHandle("faulty").request("ok1").isSuccess


def test_unknown_request_type(beach):
    assert beach.addActor("Faulty", "faulty").isSuccess
    resp = beach.getActorHandle("faulty").request("no-such-type")
    assert not resp.isSuccess and resp.error == "request type not supported by actor"


@pytest.mark.parametrize("req, ok, error, data", [
    ("dict", False, "invalid response format", {"not": "a tuple"}),
    ("string", False, "invalid response format", "just a string"),
    ("fail", False, "it went wrong", {"why": "test"}),
    ("fail1", False, "error", {}),
    ("ok1", True, "", {}),
    ("ok3", True, "", {}),
])
def test_return_shapes(beach, req, ok, error, data):
    assert beach.addActor("Faulty", "faulty").isSuccess
    resp = beach.getActorHandle("faulty").request(req)
    assert (resp.isSuccess, resp.error, resp.data) == (ok, error, data)


def test_unencodable_and_oversized_replies_fail_clearly(beach):
    assert beach.addActor("Faulty", "faulty").isSuccess
    handle = beach.getActorHandle("faulty")
    resp = handle.request("unencodable")
    assert not resp.isSuccess and "cannot serialize object" in resp.error
    resp = handle.request("big")  # (over max_payload: through the object store, tests/test_payloads.py)
    assert resp.isSuccess and resp.data == b"x" * (2 * 1024 * 1024)
    assert handle.request("ok1").isSuccess
    # to a caller of the previous release (format 1: it reads no reference), a failure saying why
    client = beach._core.session
    uid = next(u for u, e in client.view.actors.items() if e.name == "Faulty")
    body = wire.pack_request("r" * 24, "big", {}, None, 5.0, reads=(wire.VERSION,))
    msg = beach._runner.run(client.nc.request(subjects.actor_subject("global", uid), body, timeout=10))
    reply = wire.unpack_reply(msg.data)
    assert not reply.ok and reply.error.startswith("reply could not be sent: ") and "max_payload" in reply.error


def test_unknown_actor_class(beach):
    resp = beach.addActor("NoSuchActor", "nowhere")
    assert not resp.isSuccess
    assert "unknown actor class 'NoSuchActor'" in resp.error and "NoSuchActor.py" in resp.error
    resp = beach.addActor("beach_test_actors_missing:Thing", "nowhere")
    assert not resp.isSuccess and "module 'beach_test_actors_missing' is not in the config's actor_modules" \
        in resp.error
    resp = beach.addActor("json:JSONDecoder", "nowhere")
    assert not resp.isSuccess and "module 'json' is not in the config's actor_modules (beach_test_actors)" \
        in resp.error
    resp = beach.addActor("beach_test_actors:NotAnActor", "nowhere")
    assert not resp.isSuccess and "module 'beach_test_actors' has no class 'NotAnActor'" in resp.error


def test_code_loading_is_confined_to_the_realms_directory(beach, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "Evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('planted code ran')\n"
                    "from beach.actor import Actor\nclass Evil(Actor):\n    pass\n")
    for name in (str(tmp_path / "Evil"), "../" * 12 + str(tmp_path / "Evil").lstrip("/"), "sub/../../global/Pong",
                 "file:///etc/passwd", "./Pong", "a//Pong"):
        resp = beach.addActor(name, "confined")
        assert not resp.isSuccess and "is not a name" in resp.error, (name, resp.error)
    for realm in ("../..", "a/b", ".hidden", "x" * 200, "tmp/../global"):
        with pytest.raises(CategoryError, match="is not a realm name"):
            beach.addActor("Pong", "confined", realm=realm)
    assert not marker.exists(), "the planted file never runs"
    assert beach.addActor("Pong", "confined").isSuccess, "a plain name still loads"


def test_actor_from_importable_module(beach):
    resp = beach.addActor("beach_test_actors:Echo", "modules")
    assert resp.isSuccess, resp
    assert beach.getActorHandle("modules").request("echo", [1, 2]).data == [1, 2]


def test_init_raising(beach):
    resp = beach.addActor("InitRaiser", "raisers")
    assert not resp.isSuccess
    assert "init() of actor 'InitRaiser' raised" in resp.error
    assert "ValueError: init refused on purpose" in resp.data["st"]
    assert beach.getActorHandle("raisers").getNumAvailable() == 0
    resp = beach.addActor("InitRaiser", "raisers", isIsolated=True)
    assert not resp.isSuccess and "init refused on purpose" in resp.data["st"]


def test_odd_category_names(beach):
    odd = ["my_crypt_actor/1.2", "odd cat/v*1>/ü", "dots.in.name/x=y"]
    for category in odd:
        assert beach.addActor("Pong", category).isSuccess
    assert beach.getActorHandle("my_crypt_actor").request("ping").isSuccess
    assert beach.getActorHandle("my_crypt_actor/1.2").request("ping").isSuccess
    assert beach.getActorHandle("my_crypt_actor/1").getNumAvailable() == 0
    assert beach.getActorHandle("odd cat/v*1>").request("ping").isSuccess
    assert beach.getActorHandle("dots.in.name").request("ping").isSuccess
    assert set(odd) <= set(beach.getDirectory()["realms"]["global"])
    with pytest.raises(CategoryError):
        beach.getActorHandle("a//b")
    with pytest.raises(CategoryError):
        beach.addActor("Pong", "")


def test_realms_are_separate(beach):
    assert beach.addActor("Pong", "pongers", realm="realm-one").isSuccess
    assert beach.getActorHandle("pongers").getNumAvailable() == 0
    resp = beach.getActorHandle("pongers").request("ping", timeout=5)
    assert not resp.isSuccess and "no actor available" in resp.error
    assert beach.setRealm("realm-one") == "global"
    assert beach.getActorHandle("pongers").request("ping").data == {"realm": "realm-one"}
    directory = beach.getDirectory()["realms"]
    assert "pongers" in directory["realm-one"] and "pongers" not in directory.get("global", {})


def test_a_broadcast_reaches_each_actor_of_its_category_once_and_nothing_else(beach):
    targets = [beach.addActor(LEDGER, "bc/team").data["uid"] for _ in range(3)]
    deeper = beach.addActor(LEDGER, "bc/team/sub").data["uid"]  # under the category: it is one of them
    beside = beach.addActor(LEDGER, "bc/teammate").data["uid"]   # a longer name, not a sub-category
    other = beach.addActor(LEDGER, "bc/other").data["uid"]
    elsewhere = beach.addActor(LEDGER, "bc/team", realm="realm-one").data["uid"]  # the same category, another realm
    assert beach.getActorHandle("bc/team").broadcast("work", {"tag": "b1"})
    wait_for(lambda: served(beach, targets + [deeper], "b1") == dict.fromkeys(targets + [deeper], 1), 10,
             what="the broadcast at each actor of bc/team")
    beach.setRealm("realm-one")
    try:
        holds_for(lambda: served(beach, [elsewhere], "b1") == {elsewhere: 0}, 1.0,
                  "the other realm's actor not getting the broadcast")
    finally:
        beach.setRealm("global")
    assert served(beach, [beside, other], "b1") == {beside: 0, other: 0}
    assert served(beach, targets + [deeper], "b1") == dict.fromkeys(targets + [deeper], 1), "once, not twice"


def test_every_response_names_the_actor_that_answered(beach):
    uids = {beach.addActor("Pong", "named").data["uid"] for _ in range(3)}
    handle = beach.getActorHandle("named")
    response = handle.request("ping")
    assert response.isSuccess and response.uid in uids and response.node == NODE_ID
    # requestFromAll: one response from each actor, each naming its own
    results = handle.requestFromAll("ping").waitAll(10)
    assert sorted(r.uid for r in results) == sorted(uids) and {r.node for r in results} == {NODE_ID}
    # a future, the async face, a failure an actor answered (a type it does not serve)
    [later] = handle.request("ping", isWithFuture=True).waitAll(10)
    assert later.uid in uids and later.node == NODE_ID
    refused = handle.request("nope")
    assert refused.failure is wire.Failure.UNSUPPORTED and refused.uid in uids and refused.node == NODE_ID
    answered = beach._runner.run(handle.arequest("ping"))
    assert answered.uid in uids and answered.node == NODE_ID
    # where no actor answered, none is named
    nobody = beach.getActorHandle("named/nobody").request("ping")
    assert nobody.failure is wire.Failure.NO_ACTOR and nobody.uid is None and nobody.node is None


def test_in_a_half_upgraded_cluster_replies_are_of_format_1_and_addressed_actors_are_still_named(beach):
    # a node of the previous release (its entry without 'reads') is live: requests go in format 1,
    # which it reads, and are answered in format 1, which it sends; an actor the caller addressed
    # by uid (requestFromAll) is named from the directory, one the queue group chose cannot be
    uids = {beach.addActor("Pong", "halfway").data["uid"] for _ in range(2)}
    session = beach._core.session
    with previous_release_node(beach, NODE_ID, "old-release-node", reads=[]):
        wait_for(lambda: session.view.reads == {wire.VERSION}, 10, what="the view to see the old node")
        handle = beach.getActorHandle("halfway")
        assert handle.request("ping").isSuccess and handle.request("ping").uid is None
        results = handle.requestFromAll("ping").waitAll(10)
        assert sorted(r.uid for r in results) == sorted(uids) and {r.node for r in results} == {NODE_ID}
        # nor is data too large for a message sent by reference (the old node could not read it)
        with pytest.raises(PayloadTooLarge, match="a node of the previous release is live"):
            handle.request("ping", {"blob": b"x" * (2 * 1024 * 1024)})
    wait_for(lambda: wire.ANSWERED in session.view.reads, 10, what="the old node to leave the view")
    assert beach.getActorHandle("halfway").request("ping").uid in uids


def test_a_callers_timeout_cancels_the_handler_async_sync_and_nested(beach):
    uid = beach.addActor(LEDGER, "cancel/one").data["uid"]
    inner = beach.addActor(LEDGER, "cancel/inner").data["uid"]
    handle = beach.getActorHandle("cancel/one")

    def entry(actor, tag):
        found = [e for e in ledger(beach, actor) if e["tag"] == tag and "end" in e]
        return found[0] if found else None

    # an async handler: its task is cancelled when its caller's attempt times out
    started = time.monotonic()
    assert handle.request("wait", {"tag": "a", "seconds": 30}, timeout=1).isTimedOut
    done = wait_for(lambda: entry(uid, "a"), 10, what="the async handler to be cancelled")
    assert done["cancelled"] and done["end"] - done["start"] < 5
    # a def handler sees isCancelled(), and the event
    assert handle.request("spin", {"tag": "s", "seconds": 30}, timeout=1).isTimedOut
    done = wait_for(lambda: entry(uid, "s"), 10, what="the def handler to see it")
    assert done["saw_cancelled"] and done["end"] - done["start"] < 5
    assert handle.request("wait_event", {"tag": "e", "seconds": 30}, timeout=1).isTimedOut
    done = wait_for(lambda: entry(uid, "e"), 10, what="the def handler's event")
    assert done["saw_cancelled"] and done["end"] - done["start"] < 5
    # an awaiter that gives up cancels it too (its attempt had 30 s)
    async def give_up(request_type, tag):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.arequest(request_type, {"tag": tag, "seconds": 30,
                                                                  "category": "cancel/inner"}, timeout=30), 1)

    beach._runner.run(give_up("wait", "g"))
    done = wait_for(lambda: entry(uid, "g"), 10, what="the handler its awaiter gave up on to be cancelled")
    assert done["cancelled"] and done["end"] - done["start"] < 5
    # a nested call is cancelled with its parent (not by a deadline: they had 30 s), and its handler
    beach._runner.run(give_up("nest", "n"))
    outer = wait_for(lambda: entry(uid, "n"), 10, what="the outer handler to be cancelled")
    nested = wait_for(lambda: entry(inner, "n"), 10, what="the inner handler to be cancelled with it")
    assert outer["cancelled"] and nested["cancelled"] and nested["end"] - nested["start"] < 5
    # a def handler blocked in its own request(): that call is cancelled with its request
    async def give_up_inner():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handle.arequest("inner", {"tag": "d", "category": "cancel/inner", "req": "wait",
                                                             "data": {"tag": "d", "seconds": 30}}, timeout=30), 1)

    beach._runner.run(give_up_inner())
    nested = wait_for(lambda: entry(inner, "d"), 10, what="the def handler's call to be cancelled with it")
    outer = wait_for(lambda: entry(uid, "d"), 10, what="the def handler to return")
    assert nested["cancelled"] and not outer["inner_ok"] and outer["inner_elapsed"] < 5
    assert time.monotonic() - started < 30
    # and the actor serves on
    assert handle.request("work", {"tag": "after"}).isSuccess


INTERRUPTED = """
import sys
from beach.beach_api import Beach
client = Beach(sys.argv[1])
client.getActorHandle("cancel/two").request("wait", {"tag": "ctrl-c", "seconds": 30}, timeout=30)
"""


def test_a_cancelled_future_and_ctrl_c_cancel_the_handler(beach, config_path):
    uid = beach.addActor(LEDGER, "cancel/two").data["uid"]
    handle = beach.getActorHandle("cancel/two")

    def entry(tag, done=True):
        found = [e for e in ledger(beach, uid) if e["tag"] == tag and ("end" in e or not done)]
        return found[0] if found else None

    future = handle.request("wait", {"tag": "f", "seconds": 30}, timeout=30, isWithFuture=True)
    wait_for(lambda: entry("f", done=False), 10, what="the request to start")
    future.cancel()
    [result] = future.waitAll(5)
    assert result.error == "cancelled: its FutureResults was cancelled"
    assert wait_for(lambda: entry("f"), 10, what="its handler to be cancelled")["cancelled"]
    # Ctrl-C in a script blocked in request(): the script stops, and so does the handler
    script = subprocess.Popen([sys.executable, "-c", INTERRUPTED, str(config_path)], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: entry("ctrl-c", done=False), 30, what="the script's request to start")
        script.send_signal(signal.SIGINT)
        _, err = script.communicate(timeout=20)
    finally:
        script.kill()
        script.wait()
    assert b"KeyboardInterrupt" in err
    done = wait_for(lambda: entry("ctrl-c"), 10, what="the handler of the interrupted request to be cancelled")
    assert done["cancelled"] and done["end"] - done["start"] < 20


def test_empty_category_fails_at_once(beach):
    handle = beach.getActorHandle("nobody/home")
    started = time.monotonic()
    resp = handle.request("ping", timeout=30)
    elapsed = time.monotonic() - started
    assert not resp.isSuccess and not resp.isTimedOut
    assert resp.error == "no actor available in category 'nobody/home' of realm 'global'"
    assert elapsed < 10, "an empty category must not wait for the 30 s timeout"
    assert handle.requestFromAll("ping").isFinished()


def test_a_payload_over_max_payload_goes_and_the_connection_survives(beach):
    # (through the object store: tests/test_payloads.py; over payloads.max_bytes, PayloadTooLarge)
    assert beach.addActor("AsyncEcho", "echo").isSuccess
    handle = beach.getActorHandle("echo")
    assert handle.request("echo", {"blob": b"x" * (2 * 1024 * 1024)}).data["echo"]["blob"] == b"x" * (2 * 1024 * 1024)
    assert handle.shoot("echo", {"blob": b"x" * (2 * 1024 * 1024)})
    assert handle.request("echo", {"blob": b"x" * 100_000}).data["echo"]["blob"] == b"x" * 100_000


def test_unencodable_request_data(beach):
    handle = beach.getActorHandle("echo")
    with pytest.raises(EncodeError, match="cannot serialize object"):
        handle.request("echo", {"x": object()})
    assert not handle._calls  # (an unsendable request is not left among the calls in flight)
    with pytest.raises(UsageError, match="unknown request mode"):
        beach.getActorHandle("echo", mode="sideways")


def test_malformed_messages_off_the_wire(beach, nats_server):
    assert beach.addActor("AsyncEcho", "echo").isSuccess

    async def send_garbage():
        nc = await nats.connect(nats_server.url)
        try:
            replies = []
            for body in (b"", b"\xc1garbage", wire.pack({"not": "an envelope"}),
                         wire.pack([1, "id", "echo", {}, ["not", "a", "string"], None])):  # an ident must be a str
                msg = await nc.request(subjects.request_subject("global", "echo"), body, timeout=5)
                replies.append(wire.unpack_reply(msg.data))
            return replies
        finally:
            await nc.close()

    for ok, error, _ in asyncio.run(send_garbage()):
        assert not ok and error == "invalid request"
    assert beach.getActorHandle("echo").request("echo", {"n": 1}).isSuccess


def test_retries_keep_the_request_id(beach):
    assert beach.addActor("Flaky", "flaky").isSuccess
    handle = beach.getActorHandle("flaky")
    resp = handle.request("once", timeout=1)
    assert resp.isTimedOut
    resp = handle.request("once", timeout=1, nRetries=1)
    assert resp.isSuccess and resp.data["attempts"] == 2  # the retry carried the same id
    failures = []
    resp = beach.getActorHandle("nobody").request("ping", nRetries=2, timeout=2, onFailure=failures.append)
    assert not resp.isSuccess
    assert failures == [{}]


def test_affinity_handle_needs_a_key(beach):
    assert beach.addActor("Pong", "pongers").isSuccess
    assert beach.addActor("Pong", "pongers").isSuccess
    handle = beach.getActorHandle("pongers", mode="affinity")
    with pytest.raises(UsageError, match="pass key="):
        handle.request("ping")
    owners = {handle.request("ping", key="user-42").data["uid"] for _ in range(10)}
    assert len(owners) == 1


def test_closing_a_client_fails_the_blocking_calls_still_in_flight(beach, config_path):
    assert beach.addActor("Sleeper", "sleepers").isSuccess
    other = Beach(config_path)
    outcome: list = []

    def call() -> None:
        try:
            outcome.append(other.getActorHandle("sleepers").request("sleep", {"seconds": 5}, timeout=60))
        except BaseException as err:  # what the caller sees when its connection goes
            outcome.append(err)

    caller = threading.Thread(target=call, daemon=True)  # a failure must not hang pytest's exit
    caller.start()
    time.sleep(0.5)  # the request is with the actor
    other.close()
    caller.join(30)
    assert not caller.is_alive(), "a blocking call outlived its client's close()"
    assert isinstance(outcome[0], BusError), outcome
    assert "closed while this call was in progress" in str(outcome[0])


def test_async_calls_during_and_after_close_fail_with_closed_error(beach, config_path):
    from beach import AsyncBeach
    from beach.errors import ClosedError

    assert beach.addActor("Sleeper", "sleepers").isSuccess

    async def scenario():
        client = await AsyncBeach.open(config_path)
        handle = client.getActorHandle("sleepers")
        in_flight = asyncio.ensure_future(handle.arequest("sleep", {"seconds": 5}, timeout=60))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await client.close()
        with pytest.raises(ClosedError, match="closed while this call was in progress"):
            await asyncio.wait_for(in_flight, 10)
        assert time.monotonic() - started < 10
        with pytest.raises(ClosedError, match="this beach connection is closed"):
            await handle.arequest("nosleep")
        with pytest.raises(ClosedError, match="this beach connection is closed"):
            await handle.ashoot("nosleep")

    asyncio.run(scenario())


def test_a_future_finishes_when_its_handle_closes_before_the_requests_start(beach, config_path):
    from beach import AsyncBeach

    assert beach.addActor("Pong", "closing-pongs").isSuccess

    async def scenario():
        client = await AsyncBeach.open(config_path)
        try:
            handle = client.getActorHandle("closing-pongs")
            future = await handle.arequestFromAll("ping", {}, timeout=5)
            await handle.aclose()  # before the background requests had a chance to run
            responses = await future.wait(5)
            assert future.isFinished()
            assert [r.error for r in responses] == ["cancelled: the handle was closed"]
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_request_whose_awaiter_gives_up_is_not_retried(beach, config_path):
    """Cancelling ``await handle.arequest(...)`` ends the request: no retry is sent after it (here the
    retry would find the actor started meanwhile)."""
    from beach import AsyncBeach

    async def scenario() -> str:
        client = await AsyncBeach.open(config_path)
        try:  # (the client stays open: closing it would end the call anyway)
            handle = client.getActorHandle("given-up")
            with pytest.raises(TimeoutError):  # the empty category: retried after 0.5, 1 and 2 s
                await asyncio.wait_for(handle.arequest("work", {"tag": "given-up"}, timeout=5, nRetries=3), 0.2)
            uid: str = (await client.addActor(LEDGER, "given-up")).data["uid"]
            await asyncio.sleep(4)  # past every retry's time
            return uid
        finally:
            await client.close()

    uid = asyncio.run(scenario())
    assert served(beach, [uid], "given-up") == {uid: 0}, "a request was sent after its awaiter gave up"


@pytest.mark.parametrize("request_type", ["acancel", "acancel_later", "exit", "aexit", "interrupt"])
def test_a_handler_that_cancels_or_exits_is_a_failure_and_the_actor_lives_on(beach, request_type):
    resp = beach.addActor("Misbehaving", "misbehaving")
    assert resp.isSuccess, resp
    handle = beach.getActorHandle("_ACTORS/" + resp.data["uid"])
    try:
        for _ in range(2):  # the second time proves the first left the actor (and its host) serving
            failed = handle.request(request_type, timeout=5)
            assert not failed.isSuccess and failed.failure == wire.Failure.EXCEPTION, failed
            assert handle.request("ping", timeout=5).isSuccess
    finally:
        beach.stopActors(withId=resp.data["uid"])


def test_bad_control_arguments_are_refused_naming_the_field(beach, node):
    # what a careless tool or a hand-made message sends a node agent: one clear line back, and
    # the node goes on serving (a string for 'uids' used to be read as a list of its letters)
    core = beach._core
    cases = [("stop", {"uids": "abc"}, "bad stop request: stop arguments: 'uids' must be a list, not a string"),
             ("stack", {"uid": 5}, "bad stack request: actor arguments: 'uid' must be a string, not a whole number"),
             ("replace", {"grace": 1}, "bad replace request: replace arguments: 'uid' is missing"),
             ("associate", {"uid": "u", "category": ""}, "bad associate request: category arguments: 'category' "
                                                          "must be a non-empty string"),
             ("desired", {"delete": "sup.x"}, "bad desired request: desired arguments: 'delete' must be a list"),
             ("cordon", {"on": "yes"}, "bad cordon request: cordon arguments: 'on' must be true or false"),
             ("config", {"config": [1]}, "bad config request: config arguments: 'config' must be a map")]
    for op, args, message in cases:
        response = beach._runner.run(core._node_call(node.node_id, op, args, 10))
        assert not response.isSuccess and response.error.startswith(message), (op, response.error)
    assert beach.addActor("AsyncEcho", "after-bad-control").isSuccess


def test_bad_arguments_to_an_actor_host_are_refused_naming_the_field(beach):
    # an actor host takes orders from its node agent only, but checks them all the same: a bug in
    # the agent (or a hand-made message) gets one clear line, and the host goes on serving
    resp = beach.addActor("AsyncEcho", "host-bad-control")
    assert resp.isSuccess, resp
    host = resp.data["host"]
    session = beach._core._session
    cases = [("stop", {"uids": "abc"}, "bad stop request: stop arguments: 'uids' must be a list, not a string"),
             ("stop", {"uids": [], "grace": "1s"}, "bad stop request: stop arguments: 'grace' must be a number"),
             ("flush", {"realm": 3}, "bad flush request: flush arguments: 'realm' must be a string or null, not a "
                                     "whole number"),
             ("spec", {}, "bad spec request: actor arguments: 'uid' is missing"),
             ("stack", {"uid": ["x"]}, "bad stack request: stack arguments: 'uid' must be a string or null, not a "
                                       "list"),
             ("associate", {"uid": resp.data["uid"]}, "bad associate request: category arguments: 'category' "
                                                      "is missing"),
             ("spawn", {"name": "AsyncEcho", "categories": ["x"], "realm": "global"},
              "bad spawn request: spawn record: 'uid' is missing")]
    token = session.config.admin_token  # what the node agent proves it holds

    async def call(op: str, args: dict) -> Any:
        subject = subjects.host_subject(host, op)
        body = await authority.control_body(session.inbox, subject, subjects.host_subject(host, "challenge"),
                                            args, token, op, 10)
        return await session.inbox.request(subject, body, 10)

    for op, args, message in cases:
        msg = beach._runner.run(call(op, args))
        reply = wire.read_reply(msg.data, f"host {host}")
        assert not reply.ok and reply.error.startswith(message), (op, reply.error)
    assert beach.getActorHandle("host-bad-control").request("echo", {"x": 1}, timeout=10).isSuccess
