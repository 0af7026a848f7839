"""Payloads larger than a NATS message: through the object store, both ways, and never left behind.

The oracles: SHA-256 digests computed on each side of the bus, and the payload store's own count
of what it holds (JetStream's stream info), read with nats-py.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from beach import wire
from beach.beach_api import Beach
from beach.bus import bodies
from beach.errors import BusError, PayloadTooLarge
from beach.wire import chunks as chunking
from beach.wire import subjects

from .conftest import NODE_ID, wait_for, write_config

MB = 1024 * 1024


def stored(beach: Beach) -> tuple[int, int]:
    """(messages the payload store holds now, the last sequence it ever stored)."""
    session = beach._core.session
    info = beach._runner.run(session.nc.jetstream().stream_info(bodies.STREAM))
    return info.state.messages, info.state.last_seq


def empty(beach: Beach) -> bool:
    return stored(beach)[0] == 0


def test_a_50_mb_request_and_reply_arrive_whole(beach):
    assert beach.addActor("Blobs", "blobs").isSuccess
    handle = beach.getActorHandle("blobs")
    assert handle.request("digest", {"blob": b"small"}).data["size"] == 5  # (inline, as before)
    blob = random.Random(1).randbytes(50 * MB)
    sent = stored(beach)[1]
    response = handle.request("digest", {"blob": blob}, timeout=60)
    assert response.isSuccess, response
    assert response.data == {"sha256": hashlib.sha256(blob).hexdigest(), "size": 50 * MB}
    assert stored(beach)[1] > sent  # (it went through the store, in chunks)
    reply = handle.request("make", {"seed": 2, "size": 50 * MB}, timeout=60)
    assert reply.isSuccess, reply.error
    expected = random.Random(2).randbytes(50 * MB)
    assert hashlib.sha256(reply.data["blob"]).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert reply.uid and reply.node == NODE_ID
    # an echo: both ways at once, bytes for bytes
    echoed = handle.request("echo", {"blob": blob, "n": 1}, timeout=60)
    assert echoed.isSuccess and echoed.data["n"] == 1 and echoed.data["blob"] == blob
    # read, and deleted by its reader (or, for a request's, by its caller once answered)
    wait_for(lambda: empty(beach), 10, what="the payload store to be empty")


def test_requestfromall_stores_a_large_payload_once_for_every_actor(beach):
    uids = {beach.addActor("Blobs", "blobs/all").data["uid"] for _ in range(3)}
    blob = os.urandom(3 * MB)
    before = stored(beach)[1]
    results = beach.getActorHandle("blobs/all").requestFromAll("digest", {"blob": blob}, timeout=60).waitAll(60)
    assert sorted(r.uid for r in results) == sorted(uids)
    assert all(r.data == {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)} for r in results), results
    chunks = -(-len(wire.pack({"blob": blob})) // chunking.CHUNK)
    assert stored(beach)[1] - before == chunks  # once, not once per actor
    wait_for(lambda: empty(beach), 10, what="the payload store to be empty")


def test_a_large_shot_and_broadcast_are_read_and_the_shot_deleted_by_its_reader(beach):
    uids = [beach.addActor("Blobs", "blobs/shots").data["uid"] for _ in range(2)]
    handle = beach.getActorHandle("blobs/shots")
    before = stored(beach)[1]
    assert handle.shoot("echo", {"blob": b"s" * (3 * MB)})
    wait_for(lambda: stored(beach)[1] > before and empty(beach), 10,
             what="the shot's payload stored, read and deleted by its one reader")
    # a broadcast has many readers: its TTL deletes it (the handle's timeout, 1 s, and the margin)
    assert beach.getActorHandle("blobs/shots", timeout=1).broadcast("echo", {"blob": b"b" * (3 * MB)})
    results = handle.requestFromAll("digest", {"blob": b"after"}).waitAll(10)
    assert sorted(r.uid for r in results) == sorted(uids) and all(results)
    started = time.monotonic()
    wait_for(lambda: empty(beach), 1 + bodies.MIN_TTL + 10, what="the broadcast's payload to expire")
    assert time.monotonic() - started > 5  # (not deleted by a reader: by its TTL)


def test_over_the_limit_is_refused_before_anything_is_stored(beach, nats_server, tmp_path):
    assert beach.addActor("Blobs", "blobs").isSuccess
    config = write_config(tmp_path / "small.yaml", nats_server.url, payloads={"max_bytes": 8 * MB})
    before = stored(beach)
    with Beach(config) as client:
        handle = client.getActorHandle("blobs")
        with pytest.raises(PayloadTooLarge) as err:
            handle.request("digest", {"blob": b"x" * (10 * MB)})
        assert str(err.value) == (f"data of request 'digest' is {10 * MB + 11} bytes encoded, over the limit of "
                                  f"payloads.max_bytes of {8 * MB} bytes")
        with pytest.raises(PayloadTooLarge, match="payloads.max_bytes"):
            handle.request("digest", {"blob": b"x" * (10 * MB)}, isWithFuture=True)
        with pytest.raises(PayloadTooLarge, match="payloads.max_bytes"):
            handle.shoot("digest", {"blob": b"x" * (10 * MB)})
        with pytest.raises(PayloadTooLarge, match="payloads.max_bytes"):
            handle.requestFromAll("digest", {"blob": b"x" * (10 * MB)})
        assert stored(beach) == before  # nothing was stored, not even a chunk
        # under the limit, it goes
        assert handle.request("digest", {"blob": b"x" * (5 * MB)}, timeout=60).data["size"] == 5 * MB
    # a reply over its actor's limit is a failure, as an unencodable one is
    wait_for(lambda: empty(beach), 10, what="the payload store to be empty")


CALLER = textwrap.dedent("""
    import sys
    from beach.beach_api import Beach
    client = Beach(sys.argv[1])
    client.getActorHandle("slow").request("echo", {"blob": b"x" * (20 * 1024 * 1024), "sleep": 60}, timeout=2)
""")


def test_a_killed_caller_leaves_no_object_behind_after_its_deadline(beach, config_path):
    assert beach.addActor("AsyncEcho", "slow").isSuccess
    before = stored(beach)[1]
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(config_path)], stdout=subprocess.DEVNULL)
    try:
        # its request's data is stored (every chunk of it), and its request sent: then it dies
        wait_for(lambda: stored(beach)[1] - before >= 80, 30, what="the caller's payload to be stored")
        caller.send_signal(signal.SIGKILL)
    finally:
        caller.kill()
        caller.wait()
    assert stored(beach)[0] >= 80  # nobody deleted it: its caller is dead, its actor does not own it
    # its TTL is the request's deadline (2 s) and a margin (bodies.MIN_TTL): gone after it
    started = time.monotonic()
    wait_for(lambda: empty(beach), 2 + bodies.MIN_TTL + 10, what="the payload's TTL to delete it")
    print(f"\nthe dead caller's payload was gone {time.monotonic() - started:.1f} s after its death")


def test_the_payload_store_is_laid_out_as_an_object_store_with_ttls(beach):
    info = beach._runner.run(beach._core.session.nc.jetstream().stream_info(bodies.STREAM))
    assert info.config.allow_msg_ttl and info.config.subjects == [f"$O.{bodies.BUCKET}.C.>", f"$O.{bodies.BUCKET}.M.>"]
    assert info.config.max_age == bodies.MAX_AGE


def test_a_reference_that_does_not_add_up_or_is_gone_is_a_clear_failure(beach):
    session = beach._core.session
    bad = wire.BodyRef("0" * 32, 10 * MB, chunking.CHUNK, 3, b"k" * 32)
    with pytest.raises(BusError, match="does not add up"):
        beach._runner.run(bodies.get(session.nc, bad))
    gone = wire.BodyRef("0" * 32, 10, chunking.CHUNK, 1, b"k" * 32)
    started = time.monotonic()
    with pytest.raises(BusError, match=f"the payload {'0' * 32} is gone from beach_payloads"):
        beach._runner.run(bodies.get(session.nc, gone))
    assert time.monotonic() - started < 5  # (said at once, not after a wait for chunks)
    ref = beach._runner.run(bodies.put(session.nc, b"y" * (chunking.CHUNK + 1), 30))
    assert beach._runner.run(bodies.get(session.nc, ref)) == b"y" * (chunking.CHUNK + 1)
    other = wire.BodyRef(ref.name, ref.size, ref.chunk, ref.chunks, b"\x00" * 32)  # another key: not its body
    with pytest.raises(BusError, match="does not open with its key"):
        beach._runner.run(bodies.get(session.nc, other))
    beach._runner.run(bodies.delete(session.nc, ref))
    assert empty(beach)



def test_a_reference_claiming_more_than_the_limit_is_refused_before_any_of_it_is_read(beach):
    # The size in a reference is its sender's word: a host makes no buffer of it when it is over
    # payloads.max_bytes (1 GiB here), and answers at once that the request is invalid, not worth
    # another attempt (a 'bus unavailable' would be retried, and a buffer of the claimed size made).
    assert beach.addActor("Blobs", "blobs/claims").isSuccess
    session = beach._core.session
    size = 2 * 1024 * MB
    claim = wire.BodyRef("0" * 32, size, chunking.CHUNK, -(-size // chunking.CHUNK), b"k" * 32)
    envelope = wire.pack_referenced("a" * 24, "digest", claim, None, 10.0)
    subject = subjects.request_subject(beach._core._realm, "blobs/claims")
    started = time.monotonic()
    msg = beach._runner.run(session.nc.request(subject, envelope, timeout=10))
    reply = wire.read_reply(msg.data, msg.subject)
    assert time.monotonic() - started < 5
    assert (reply.ok, reply.error) == (False, wire.INVALID_REQUEST), reply
    assert reply.data["reason"] == (f"the payload {'0' * 32} is {size} bytes encoded, over the limit of "
                                    f"payloads.max_bytes of {1024 * MB} bytes")
    assert beach.getActorHandle("blobs/claims").request("digest", {"blob": b"ok"}).data["size"] == 2  # still serving
