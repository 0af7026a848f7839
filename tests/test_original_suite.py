"""The original py-beach test suite (tests/test_beach.py), ported to one real node over NATS.

Differences from the original, on purpose: categories match by segment (``'p'`` no longer
matches ``pingers``), so the prefix test uses ``p/...`` categories; ``addActor`` returns once
``init()`` ran, so no test sleeps before reading the directory.
"""

from __future__ import annotations

import pytest

from beach.utils import isMessageSuccess

from .conftest import ADMIN_TOKEN, wait_for


def raw_requests(beach, realm: str, category: str, n: int) -> dict[str, int]:
    """Send ``n`` requests with a plain NATS client on the category's subject; who answered, how often."""
    import asyncio

    import nats

    from beach import wire
    from beach.wire import subjects

    async def send() -> dict[str, int]:
        nc = await nats.connect(beach._core.session.config.nats.urls)
        try:
            answered: dict[str, int] = {}
            for i in range(n):
                msg = await nc.request(subjects.request_subject(realm, category),
                                       wire.pack_request(f"raw-{i}", "who", {}, None, 5.0), timeout=5)
                ok, _, data = wire.unpack_reply(msg.data)
                assert ok
                answered[data["uid"]] = answered.get(data["uid"], 0) + 1
            return answered
        finally:
            await nc.close()

    return asyncio.run(send())


def count(beach, category, realm="global"):
    return len(beach.getDirectory().get("realms", {}).get(realm, {}).get(category, {}))


def test_beach_connection(beach):
    # another test's node that was killed may still be expiring (its TTL): wait for the state we need
    wait_for(lambda: beach.getNodeCount() == 1, 10, what="the session's node alone in the registry")


def test_admin_privileges(beach):
    beach._admin_token = None
    a1 = beach.addActor("Ping", "pingers", parameters={"a": 1})
    assert not isMessageSuccess(a1)
    assert a1.get("status", {}).get("error", None) == "unprivileged"
    assert not beach.flush()
    beach._admin_token = ADMIN_TOKEN
    a1 = beach.addActor("Ping", "pingers", parameters={"a": 1})
    assert isMessageSuccess(a1)
    assert count(beach, "pingers") == 1  # at once: addActor returned after init()
    assert beach.flush()
    assert count(beach, "pingers") == 0


def test_flushing_single_node_cluster(beach):
    assert beach.addActor("Ping", "pingers").isSuccess
    assert beach.addActor("Pong", "pongers").isSuccess
    assert beach.flush()
    assert count(beach, "pingers") == 0
    assert count(beach, "pongers") == 0


def test_actor_creation(beach):
    a1 = beach.addActor("Ping", "pingers", parameters={"a": 1}, strategy="roundrobin")
    assert isMessageSuccess(a1)
    a2 = beach.addActor("Pong", "pongers", parameters={"a": 2})
    assert isMessageSuccess(a2)
    assert count(beach, "pingers") == 1
    assert count(beach, "pongers") == 1
    # the Ping's schedule reaches the Pong through its handle
    handle = beach.getActorHandle("_ACTORS/" + a1.data["uid"])
    wait_for(lambda: handle.request("count").data.get("pongs", 0) >= 1, what="Ping to get a pong")


def test_isolated_actor_creation(beach):
    shared = beach.addActor("DeinitMarker", "markers", parameters={"path": "/dev/null"})
    isolated = beach.addActor("DeinitMarker", "markers", isIsolated=True, parameters={"path": "/dev/null"})
    assert shared.isSuccess and isolated.isSuccess
    assert count(beach, "markers") == 2
    pids = {beach.getActorHandle("_ACTORS/" + r.data["uid"]).request("pid").data["pid"] for r in (shared, isolated)}
    assert len(pids) == 2
    mtd = beach.getAllNodeMetadata()
    flags = {uid: m["isolated"] for node in mtd.values() for uid, m in node["data"]["mtd"].items()}
    assert flags == {shared.data["uid"]: False, isolated.data["uid"]: True}


def test_virtual_handles(beach):
    assert beach.addActor("Pong", "pongers").isSuccess
    vHandle = beach.getActorHandle("pongers")
    resp = vHandle.request("ping", data={"source": "outside"}, timeout=10)
    assert resp.isSuccess and "time" in resp.data
    assert resp.data["echo"] == {"source": "outside"}


def test_prefix_virtual_handles(beach):
    assert beach.addActor("Pong", "p/pongers").isSuccess
    assert beach.addActor("Ping", "p/pingers", resources={"pongers": "p/pongers"}).isSuccess
    assert beach.addActor("Ping", "p/pingers", resources={"pongers": "p/pongers"}).isSuccess
    vHandles = beach.getActorHandle("p")
    assert vHandles.getNumAvailable() == 3
    assert vHandles.isAvailable() is True
    vHandles = beach.getActorHandle("p/pong")  # segment matching: not a prefix of p/pongers
    assert vHandles.getNumAvailable() == 0
    assert vHandles.isAvailable() is False
    assert beach.getActorHandle("p/pongers/").getNumAvailable() == 1
    # a request to the root reaches one of the three
    assert beach.getActorHandle("p").request("ping").error in ("", "request type not supported by actor")


def test_trust(beach):
    assert beach.addActor("Pong", "pongers/trust", trustedIdents=["abc"]).isSuccess
    assert beach.addActor("Pong", "pongers/notrust", trustedIdents=["def"]).isSuccess
    resp = beach.getActorHandle("pongers/trust", ident="abc").request("ping", data={"source": "outside"}, timeout=10)
    assert resp.isSuccess and "time" in resp.data
    resp = beach.getActorHandle("pongers/notrust", ident="abc").request("ping", timeout=10)
    assert not resp.isSuccess and resp.error == "unauthorized"
    resp = beach.getActorHandle("pongers/notrust").request("ping", timeout=10)
    assert not resp.isSuccess and resp.error == "unauthorized"
    resp = beach.getActorHandle("pongers/notrust", ident="def").request("ping", timeout=10)
    assert resp.isSuccess and "time" in resp.data


def test_group(beach):
    assert beach.addActor("Pong", "pongers/trust/1.0", trustedIdents=["def"]).isSuccess
    assert beach.addActor("Pong", "pongers/trust/2.0", trustedIdents=["def"]).isSuccess
    assert beach.addActor("Pong", "other/thing").isSuccess
    g1 = beach.getActorHandleGroup("pongers/", ident="def")
    assert g1.getNumAvailable() == 1
    assert beach.addActor("Pong", "pongers/trustalt/1.0", trustedIdents=["def"]).isSuccess
    assert g1.getNumAvailable() == 2  # picked up without a refresh
    future = g1.request("ping", timeout=2)
    results = []
    for _ in range(3):
        if future.waitForResults(5):
            results += future.getNewResults()
    assert len(results) == 2
    assert all(r.isSuccess for r in results)
    assert future.isFinished()


def test_concurrency(beach):
    assert beach.addActor("Sleeper", "sleepers", n_concurrent=1).isSuccess
    vHandle = beach.getActorHandle("sleepers")
    resp = vHandle.request("nosleep", timeout=2)
    assert resp.isSuccess and "time" in resp.data
    resp = vHandle.request("sleep", {"seconds": 3}, timeout=1)
    assert resp.isTimedOut and not resp.isSuccess
    # the sleeping request does not block the actor
    resp = vHandle.request("nosleep", timeout=2)
    assert resp.isSuccess


def test_private_params(beach):
    a1 = beach.addActor("Pong", "pongers", parameters={"a": 9, "_b": 42, "c": 43}, n_concurrent=1)
    assert isMessageSuccess(a1)
    mtd = beach.getAllNodeMetadata()
    params = list(list(mtd.values())[0].get("data", {}).get("mtd", {}).values())[0].get("params", {})
    assert params == {"a": 9, "_b": "<PRIVATE>", "c": 43}
    # the directory itself never holds the private value
    entry = beach._core.session.view.actors[a1.data["uid"]]
    assert entry.params["_b"] == "<PRIVATE>"


def test_multi_category(beach):
    a1 = beach.addActor("MultiPing", ["pingers", "oobers", "oobers2"])
    a2 = beach.addActor("MultiPing", ["oobers"])
    assert a1.isSuccess and a2.isSuccess
    assert (count(beach, "pingers"), count(beach, "oobers"), count(beach, "oobers2")) == (1, 2, 1)
    assert "time" in beach.getActorHandle("pingers").request("ping").data
    assert beach.getActorHandle("oobers").request("oob").data == {"cmdresult": 42}
    assert beach.removeFromCategory(a1.data["uid"], "oobers")
    assert (count(beach, "pingers"), count(beach, "oobers"), count(beach, "oobers2")) == (1, 1, 1)
    assert not beach.removeFromCategory(a1.data["uid"], "oobers")
    assert beach.addToCategory(a1.data["uid"], "newcat")
    assert count(beach, "newcat") == 1
    assert beach.getActorHandle("newcat").request("oob").data == {"cmdresult": 42}
    # requests to 'oobers' now only reach a2: through NATS (the queue group), not only the client's view
    uids = {beach.getActorHandle("oobers").request("who").data["uid"] for _ in range(20)}
    assert uids == {a2.data["uid"]}
    assert raw_requests(beach, "global", "oobers", 20) == {a2.data["uid"]: 20}
    assert raw_requests(beach, "global", "newcat", 5) == {a1.data["uid"]: 5}


def test_pending_metric(beach):
    assert beach.addActor("Sleeper", "sleepers").isSuccess
    vHandle = beach.getActorHandle("sleepers")
    # a shot that waits for its outcome (it may retry) is pending; a plain shot is a publish
    assert vHandle.shoot("sleep", {"seconds": 3}, timeout=20, nRetries=1)
    wait_for(lambda: vHandle.getPending() == {"sleepers": 1}, 10, what="one pending request")
    future = vHandle.request("sleep", {"seconds": 1}, timeout=20, isWithFuture=True)
    wait_for(lambda: vHandle.getPending() == {"sleepers": 2}, 10, what="two pending requests")
    assert future.waitAll(10)[0].isSuccess
    wait_for(lambda: vHandle.getPending() == {}, 10, what="the requests to finish")
    assert vHandle.shoot("nosleep")
    assert vHandle.getPending() == {}


def test_tons_of_actors(beach):
    assert count(beach, "pingers") == 0
    for _ in range(50):
        assert beach.addActor("MultiPing", ["pingers", "oobers", "oobers2"]).isSuccess
    assert (count(beach, "pingers"), count(beach, "oobers"), count(beach, "oobers2")) == (50, 50, 50)
    responses = beach.getActorHandle("oobers").requestFromAll("oob").waitAll(10)
    assert len(responses) == 50 and all(r.data == {"cmdresult": 42} for r in responses)
    assert beach.flush()
    assert count(beach, "pingers") == 0


def test_the_originals_start_line_with_each_of_its_flags(nats_server, tmp_path):
    """``python -m beach.hostmanager CONFIG --log-level 10 --log-dest PATH -i IFACE``, as py-beach's
    test fixture and users' unit files start a node: it joins, announces the interface's address,
    logs at DEBUG into PATH (its actor hosts too) and exits 0 on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from beach.beach_api import Beach
    from beach.utils import _getIpv4ForIface

    from .conftest import write_config

    config = write_config(tmp_path / "simple.yaml", nats_server.url, n_processes=1)
    log = tmp_path / "node.log"
    node = subprocess.Popen([sys.executable, "-m", "beach.hostmanager", str(config), "--log-level", "10",
                             "--log-dest", str(log), "-i", "lo"], start_new_session=True)
    node_id = f"{__import__('socket').gethostname()}-{node.pid}"
    try:
        with Beach(config) as client:
            wait_for(lambda: node_id in client._core.session.view.nodes or node.poll() is not None, 30,
                     what="the node to register")
            assert node.poll() is None, f"the node exited with {node.returncode}"
            assert client._core.session.view.nodes[node_id].addresses == [_getIpv4ForIface("lo")] == ["127.0.0.1"]
        text = log.read_text()
        assert " DEBUG " in text, "--log-level 10 is DEBUG"
        assert f"{node_id}-h1 " in text, "the actor hosts log to --log-dest too"
        node.send_signal(signal.SIGTERM)
        assert node.wait(40) == 0
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    bad = subprocess.run([sys.executable, "-m", "beach.hostmanager", str(config), "-i", "nosuch0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "interface 'nosuch0' has no IPv4 address (interfaces with one: " in bad.stderr and "lo" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "beach.hostmanager", str(config), "--log-level", "loud"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--log-level 'loud'" in bad.stderr, bad.stderr


def test_the_originals_utils(tmp_path):
    import threading
    import time

    import beach.utils as utils
    from beach.utils import (
        Counter,
        CreateOnAccess,
        RWLock,
        _getIpv4ForIface,
        _getPublicInterfaces,
        errorMessage,
        loadModuleFrom,
        parallelExec,
        successMessage,
    )

    namespace: dict[str, object] = {}
    exec("from beach.utils import *", namespace)  # the original's test suite imports it so
    assert {"isMessageSuccess", "errorMessage", "successMessage", "parallelExec"} <= set(namespace)
    assert errorMessage("nope") == {"status": {"success": False, "error": "nope"}}
    assert errorMessage("nope", {"st": "x"}) == {"status": {"success": False, "error": "nope"}, "data": {"st": "x"}}
    assert successMessage() == {"status": {"success": True}}
    assert successMessage({"a": 1}) == {"status": {"success": True}, "data": {"a": 1}}
    assert isMessageSuccess(successMessage()) and not isMessageSuccess(errorMessage("x"))
    assert not isMessageSuccess(None) and not isMessageSuccess(False)
    assert _getIpv4ForIface("lo") == "127.0.0.1" and _getIpv4ForIface("nosuch0") is None
    assert "lo" not in _getPublicInterfaces()
    assert all(_getIpv4ForIface(i) for i in _getPublicInterfaces())

    def work(n):
        if n == 0:
            raise ValueError("zero")
        time.sleep(n / 10)
        return n

    results = parallelExec(work, [3, 1, 0, 2])
    assert isinstance(results[0], ValueError) and results[1:] == [1, 2, 3], "in completion order"
    started = time.monotonic()
    assert parallelExec(work, [1, 30], timeout=0.5) == [1], "what finished within the timeout"
    assert time.monotonic() - started < 5

    lock, seen = RWLock(), []
    with lock.reader(), lock.reader():  # readers share it
        writer = threading.Thread(target=lambda: (lock.wLock(), seen.append("w"), lock.wUnlock()))
        writer.start()
        time.sleep(0.2)
        assert seen == [], "a writer waits for the readers"
    writer.join(5)
    assert seen == ["w"]

    counter = Counter()
    for _ in range(3):
        counter.count()
    assert list(counter.counters.values()) == [3]
    built = []
    lazy = CreateOnAccess(lambda x: built.append(x) or {"k": x}, 7)
    assert built == [] and lazy.get("k") == 7 and built == [7]

    module = tmp_path / "Helper.py"
    module.write_text("VALUE = 42\n")
    loaded = loadModuleFrom(f"file://{module}", "global")
    assert loaded.VALUE == 42 and loaded._beach_realm == "global"
    assert loadModuleFrom(str(module), "global") is loaded, "once per content"
    with pytest.raises(utils.UsageError, match="only files of this machine"):
        loadModuleFrom("https://example.invalid/Helper.py", "global")
