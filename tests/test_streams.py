"""Streamed replies: a generator handler's items as it yields them, with flow control, errors and
an early stop, against a real node.

The oracle: the actor counts what its generator produced and says whether it was closed (its
``progress``), independently of what the caller read.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from beach import wire
from beach.client.stream import WINDOW
from beach.errors import StreamError, UsageError

from .conftest import NODE_ID, wait_for
from .test_payloads import MB, empty, stored


def progress(beach, uid, tag):
    return beach.getActorHandle(f"_ACTORS/{uid}").request("progress", {"tag": tag}).data


def test_a_generator_handler_streams_its_items_in_order(beach):
    assert beach.addActor("Streamer", "streams").isSuccess
    handle = beach.getActorHandle("streams")
    # a def generator, read from blocking code
    assert list(handle.stream("count", {"tag": "sync", "n": 1000})) == [{"i": i, "pad": ""} for i in range(1000)]

    async def read():  # an async generator, read with async for
        return [item async for item in handle.astream("acount", {"tag": "async", "n": 500})]

    assert beach._runner.run(read()) == list(range(500))
    # a plain request to a generator handler: its items, gathered
    assert handle.request("acount", {"tag": "plain", "n": 5}).data == [0, 1, 2, 3, 4]
    # a handler that is not a generator: one item, its reply's data
    assert list(handle.stream("plain")) == [{"one": 1}]

    async def first():  # (astream is for async code, on the client's loop)
        stream = handle.astream("acount", {"tag": "who", "n": 1})
        item = await stream.__anext__()
        await stream.aclose()
        return item, stream

    item, stream = beach._runner.run(first())
    assert item == 0 and stream.node == NODE_ID and stream.uid
    with pytest.raises(UsageError, match="use stream"):
        handle.astream("acount", {"tag": "off the loop", "n": 1})


def test_a_slow_consumer_holds_the_producer_back(beach):
    uid = beach.addActor("Streamer", "streams/slow").data["uid"]
    items = beach.getActorHandle("streams/slow").stream("count", {"tag": "slow", "n": 5000, "pad": 1000})
    first = [next(items) for _ in range(10)]
    time.sleep(1.5)  # the consumer is behind: the producer waits a window ahead of it
    produced = progress(beach, uid, "slow")["produced"]
    assert 10 <= produced <= 10 + WINDOW + 1, produced
    rest = list(items)
    assert [item["i"] for item in first + rest] == list(range(5000))
    assert progress(beach, uid, "slow") == {"produced": 5000, "closed": True}


@pytest.mark.parametrize("request_type", ["count", "acount"])
def test_a_consumer_that_breaks_early_stops_the_producer(beach, request_type):
    uid = beach.addActor("Streamer", "streams/early").data["uid"]
    for n, _ in enumerate(beach.getActorHandle("streams/early").stream(request_type, {"tag": "early", "n": 100_000})):
        if n == 5:
            break
    done = wait_for(lambda: progress(beach, uid, "early")["closed"] and progress(beach, uid, "early"), 10,
                    what="the producer to stop")
    assert done["produced"] <= 6 + WINDOW + 1, done


def test_an_async_for_that_breaks_stops_the_producer(beach):
    uid = beach.addActor("Streamer", "streams/abreak").data["uid"]
    handle = beach.getActorHandle("streams/abreak")

    async def read():
        async for n, _ in aenumerate(handle.astream("acount", {"tag": "dropped", "n": 100_000})):
            if n == 5:
                break  # (calls no aclose: the stream, dropped, is closed when collected)
        async with handle.astream("acount", {"tag": "with", "n": 100_000}) as items:
            async for _ in items:
                break

    beach._runner.run(read())
    for tag in ("dropped", "with"):
        done = wait_for(lambda tag=tag: progress(beach, uid, tag)["closed"] and progress(beach, uid, tag), 10,
                        what=f"the producer of {tag} to stop")
        assert done["produced"] <= 6 + WINDOW + 1, done


async def aenumerate(items):
    n = 0
    async for item in items:
        yield n, item
        n += 1


def test_an_exception_or_a_silent_producer_ends_the_stream_with_an_error_naming_it(beach):
    assert beach.addActor("Streamer", "streams/bad").isSuccess
    handle = beach.getActorHandle("streams/bad")
    got = []
    with pytest.raises(StreamError) as err:
        for item in handle.stream("fail"):
            got.append(item)
    assert got == [0, 1, 2]
    assert err.value.failure == wire.Failure.EXCEPTION
    assert err.value.error == "exception: ValueError: the fourth row was bad" and "st" in err.value.data
    got = []
    started = time.monotonic()
    with pytest.raises(StreamError, match=r"^timeout: no item of stream 'slow' came in 1 s$") as err:
        for item in handle.stream("slow", {"seconds": 5}, timeout=1):
            got.append(item)
    assert got == ["first"] and err.value.failure == wire.Failure.TIMEOUT and time.monotonic() - started < 4
    with pytest.raises(StreamError, match="^no actor available in category 'streams/nobody'"):
        list(beach.getActorHandle("streams/nobody").stream("count", {"tag": "x", "n": 1}))


def test_beach_request_stream_prints_each_item_as_it_comes(beach, config_path):
    assert beach.addActor("Streamer", "streams/cli").isSuccess
    result = subprocess.run([sys.executable, "-m", "beach.cli", "request", str(config_path), "streams/cli", "acount",
                             "--data", '{"tag": "cli", "n": 3}', "--stream"], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout) == (0, "0\n1\n2\n"), result.stderr
    result = subprocess.run([sys.executable, "-m", "beach.cli", "request", str(config_path), "streams/cli", "fail",
                             "--stream"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "0\n1\n2\n"
    assert "exception: ValueError: the fourth row was bad" in result.stderr


def test_items_and_data_larger_than_a_message_go_through_the_object_store(beach):
    uid = beach.addActor("Streamer", "streams/large").data["uid"]
    handle = beach.getActorHandle("streams/large")
    blob = random.Random(3).randbytes(6 * MB + 5)  # over the server's max_payload of 1 MB: by reference
    items = handle.stream("split", {"blob": blob, "size": 2 * MB, "tag": "large"}, timeout=30)
    first = next(items)
    time.sleep(1)  # the consumer is behind: the producer waits for it to take the large item it sent
    held = stored(beach)[0]
    assert held <= 25 + 9, held  # the request's data (25 chunks of 256 KiB) and one 2 MB item (9), not more
    assert progress(beach, uid, "large")["produced"] <= 2
    rest = list(items)
    assert [len(item) for item in [first, *rest]] == [2 * MB, 2 * MB, 2 * MB, 5]
    assert hashlib.sha256(b"".join([first, *rest])).digest() == hashlib.sha256(blob).digest()
    # small and large items in one stream
    assert list(handle.stream("split", {"blob": blob, "size": 4 * MB})) == [blob[:4 * MB], blob[4 * MB:]]
    wait_for(lambda: empty(beach), 15, what="the payload store to be empty")


def test_an_actor_that_dies_mid_stream_ends_it_with_an_error_not_a_silent_end(beach):
    uid = beach.addActor("Streamer", "streams/dies").data["uid"]
    items = beach.getActorHandle("streams/dies").stream("trickle", {"tag": "dies", "n": 1000, "every": 0.2},
                                                        timeout=60)
    got = [next(items) for _ in range(3)]
    killed = time.monotonic()
    os.kill(beach._core.session.view.actors[uid].pid, signal.SIGKILL)  # its host process, mid-stream
    with pytest.raises(StreamError, match=rf"^no actor available: the actor {uid} on node {NODE_ID} producing "
                                          rf"stream 'trickle' is gone after \d+ items .*incomplete$") as err:
        got.extend(items)
    assert err.value.failure == wire.Failure.NO_ACTOR
    assert time.monotonic() - killed < 10  # (not the stream's timeout of 60 s)
    assert got == list(range(len(got)))
