"""Actor state (``self.state``) on a real cluster: three nats-servers (R3, ``sync_interval:
always``) and three node agents on loopback. The API in ``def`` and ``async def`` handlers, turns
that raise, conflicts between hosts, retries across a stopped host, the word count through a node
killed, a counter added, one stopped and a rollout of them all, and a full restart."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beach import wire
from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.client.routing import Ring
from beach.code import deploy
from beach.operations import backup, rollout
from beach.state import stateview
from beach.state.directory import FAILURE_DETECTION

from .conftest import ADMIN_TOKEN, NodeProcess, free_port, wait_for, write_config

NODES = ["st-a", "st-b", "st-c"]
MAX_KEYS = 300  # the cluster's state.max_keys: keys per category

WORD_COUNTER = '''
from beach.actor import Actor


class WordCounter(Actor):
    def init(self, parameters):
        self.handle("count", self.count)

    def count(self, msg):
        word = msg.data["word"]
        return (True, {"count": self.state.update(word, lambda n: (n or 0) + 1), "uid": self.name})
'''

# Real words, as a word count over real text meets them: apostrophes, accents, capitals.
VOCABULARY = ("don't it's l'été café naïve Straße Zürich über façade déjà-vu the a of and to in is was "
              "state actor node cluster request reply turn commit batch key value word count river "
              "mountain coffee tea bread cheese wine olive lemon orange apple pear plum cherry grape "
              "north south east west spring summer autumn winter morning evening night day").split()


class Cluster:
    """Three servers (R3) and three node agents, each node on its own server; restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        route_ports = [free_port() for _ in range(3)]
        routes = ",".join(f"nats-route://127.0.0.1:{p}" for p in route_ports)
        self.servers = [EmbeddedServer(free_port(), str(root / f"s{i}"), name=f"state-s{i}",
                                       log_file=str(root / f"s{i}.log"), sync_interval="always",
                                       args=["--cluster_name", "state-test", "--cluster",
                                             f"nats://127.0.0.1:{route_ports[i]}", "--routes", routes])
                        for i in range(3)]
        self.configs = [write_config(root / f"{i}.yaml", s.url, n_processes=1, state={"max_keys": MAX_KEYS})
                        for i, s in enumerate(self.servers)]
        self.nodes: dict[str, NodeProcess] = {}

    def start(self) -> None:
        for server in self.servers:
            server.start()
        for i in range(len(NODES)):
            self.start_node(i)
        with Beach(self.configs[0]) as client:
            for node in self.nodes.values():
                node.wait_registered(client, timeout=60)

    def start_node(self, i: int) -> NodeProcess:
        self.nodes[NODES[i]] = NodeProcess(self.configs[i], NODES[i])
        return self.nodes[NODES[i]]

    def kill_node(self, node_id: str) -> None:
        """SIGKILL a node agent and its actor hosts (its process group), as a machine's crash."""
        node = self.nodes.pop(node_id)
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.terminate()
        self.nodes = {}
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("state"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def beach(cluster: Cluster) -> Iterator[Beach]:
    client = Beach(cluster.configs[0])
    client._admin_token = ADMIN_TOKEN
    view = client._core.session.view
    wait_for(lambda: set(view.nodes) == set(NODES), FAILURE_DETECTION + 6, what="the cluster's three nodes")
    yield client
    assert client.flush()
    client.close()


def spawn(client: Beach, name: str, category: str, count: int = 1, **options: object) -> list[str]:
    uids = []
    for _ in range(count):
        response = client.addActor(name, category, **{"strategy": "roundrobin", **options})
        assert response.isSuccess, response
        uids.append(response.data["uid"])
    return uids


def state_of(client: Beach, category: str, check: Any, realm: str | None = None, timeout: float = 15.0) -> dict:
    """``getState(category)`` once ``check`` (an expected dict, or a predicate) holds for it.
    getState reads one replica of the stream, which may be a moment behind the last acknowledged
    write (docs/state.md, "Reading state"): a test waits for it rather than reading it once."""
    seen: list[dict] = []

    def holds() -> bool:
        seen[:] = [client.getState(category, realm=realm)]
        return bool(check(seen[0])) if callable(check) else seen[0] == check

    deadline = time.monotonic() + timeout
    while not holds():
        assert time.monotonic() < deadline, f"the state of {category!r} is {seen[0]!r}, not as expected: {check!r}"
        time.sleep(0.05)
    return seen[0]


def host_pid(client: Beach, uid: str) -> int:
    return int(client._core.session.view.actors[uid].pid)


# ---------------------------------------------------------------- the API


def test_state_api_in_def_and_async_handlers(beach):
    spawn(beach, "Counter", "api/def")
    spawn(beach, "AsyncCounter", "api/async")
    sync, asynchronous = beach.getActorHandle("api/def"), beach.getActorHandle("api/async")
    for word in ("don't", "café", "caffè", "x.y", "a/b", "=3D", "über"):
        assert sync.request("add", {"key": word, "n": 2}).data["value"] == 2
        assert asynchronous.request("add", {"key": word}).data["value"] == 1
    assert sync.request("add", {"key": "don't"}).data["value"] == 3
    assert sync.request("get", {"key": "don't"}).data["value"] == 3
    assert sync.request("get", {"key": "missing", "default": "none"}).data["value"] == "none"
    assert sync.request("keys", {"prefix": "caf"}).data["keys"] == ["caffè", "café"]
    assert asynchronous.request("keys", {"prefix": "ca"}).data["keys"] == ["caffè", "café"]
    assert sync.request("set", {"key": "nested", "value": {"a": [1, 2, {"b": None}], "c": b"\x00"}}).isSuccess
    assert sync.request("get", {"key": "nested"}).data["value"] == {"a": [1, 2, {"b": None}], "c": b"\x00"}
    assert sync.request("delete", {"key": "nested"}).isSuccess
    assert "nested" not in sync.request("keys", {}).data["keys"]
    # every actor of a category sees the same keys; the client reads them too (admin rights)
    state_of(beach, "api/def", {"don't": 3, "café": 2, "caffè": 2, "x.y": 2, "a/b": 2, "=3D": 2, "über": 2})
    # another category's state, in the same turn
    assert sync.request("other", {"category": "api/async", "key": "über"}).data["value"] == 2
    # a value msgpack cannot carry fails at once, naming its type; a blocking read on the event loop is refused
    refused = sync.request("set_unencodable", {"key": "k"})
    assert not refused.isSuccess and "cannot serialize Opaque" in refused.data["st"], refused
    blocked = asynchronous.request("blocking_get", {"key": "über"})
    assert not blocked.isSuccess and "await self.state.aget" in blocked.data["st"], blocked
    too_big = sync.request("set", {"key": "big", "value": "x" * 300_000})
    assert not too_big.isSuccess and "StateError" in too_big.data["st"] and "over the limit" in too_big.data["st"]
    assert "big" not in beach.getState("api/def")


def test_the_cap_on_keys_per_category_is_refused_with_a_clear_error(beach):
    spawn(beach, "Counter", "capped")
    handle = beach.getActorHandle("capped")
    assert handle.request("set_many", {"prefix": "a", "n": MAX_KEYS - 10}).isSuccess
    refused = handle.request("set_many", {"prefix": "b", "n": 20})
    assert not refused.isSuccess and f"holds {MAX_KEYS - 10} state keys, its cap (state.max_keys = {MAX_KEYS})" \
        in refused.data["st"], refused
    state_of(beach, "capped", lambda state: len(state) == MAX_KEYS - 10)  # the refused turn left nothing
    assert handle.request("set_many", {"prefix": "a", "n": MAX_KEYS - 10}).isSuccess  # existing keys: fine
    assert handle.request("delete", {"key": "a0"}).isSuccess
    # the cap is checked against the sizes the lease holder publishes (and each host's own changes
    # since): once they say 289, so does every host
    wait_for(lambda: counted(beach, "capped") == MAX_KEYS - 11, 15, what="the sizes to count the delete")
    time.sleep(2 * stateview.SIZES_SECONDS)
    assert handle.request("set_many", {"prefix": "c", "n": 12}).isSuccess is False
    assert handle.request("set_many", {"prefix": "c", "n": 11}).isSuccess
    state_of(beach, "capped", lambda state: len(state) == MAX_KEYS)
    too_many = handle.request("set_many", {"prefix": "d", "n": 1000, "delete": True})
    assert not too_many.isSuccess and "a turn writes at most" in too_many.data["st"]


def counted(client: Beach, category: str) -> int | None:
    """The keys of ``category`` as the sizes of actor state say (the lease holder's, asked now)."""
    sizes = client._runner.run(client._core.node_infos())[1]
    return None if sizes is None else sizes.categories.get("global", {}).get(category, [None])[0]


def test_a_handler_that_raises_after_set_leaves_nothing(beach):
    spawn(beach, "Counter", "raising")
    handle = beach.getActorHandle("raising")
    assert handle.request("add", {"key": "k"}).data["value"] == 1
    failed = handle.request("add_then_raise", {"key": "k"})
    assert failed.failure is wire.Failure.EXCEPTION and failed.error == "exception: RuntimeError: after set()"
    assert handle.request("get", {"key": "k"}).data["value"] == 1
    state_of(beach, "raising", {"k": 1})


def routing_keys(uids: list[str]) -> list[str]:
    """For each actor of ``uids``, a routing key the affinity ring gives it."""
    ring = Ring(uids)
    return [next(k for k in (f"r{i}" for i in range(10_000)) if ring.owner(k) == uid) for uid in uids]


def test_a_write_over_a_value_another_actor_changed_is_answered_conflict_and_applies_nothing(beach):
    # two actors on two nodes (two hosts: turns of one host on one key wait for each other instead)
    slow_fast = [spawn(beach, "Counter", "conflicted", strategy="host_affinity", strategy_hint=node)[0]
                 for node in NODES[1:]]
    to_slow, to_fast = routing_keys(slow_fast)
    handle = beach.getActorHandle("conflicted", mode="affinity")
    assert handle.request("add", {"key": "k"}, key=to_fast).data["value"] == 1
    answer: list = []
    # the slow turn reads k (1), waits 3 s, then writes 2 over the revision it read
    sender = threading.Thread(target=lambda: answer.append(handle.request(
        "read_wait_add", {"key": "k", "wait": 3.0}, key=to_slow, timeout=15, nRetries=0)))
    sender.start()
    time.sleep(1.0)
    assert handle.request("add", {"key": "k", "n": 10}, key=to_fast).data["value"] == 11  # meanwhile
    sender.join(20)
    [response] = answer
    assert response.failure is wire.Failure.CONFLICT and response.data == {"keys": ["k"]}, response
    state_of(beach, "conflicted", {"k": 11})  # the slow turn's 2 did not overwrite the 11
    # run again (as a retry does), the turn reads the current value
    assert handle.request("read_wait_add", {"key": "k", "wait": 0}, key=to_slow).data["value"] == 12
    # a key only read is checked too: a turn that wrote another key from a stale read does not commit
    sender = threading.Thread(target=lambda: answer.append(handle.request(
        "read_wait_add", {"key": "k", "to": "copy", "wait": 3.0}, key=to_slow, timeout=15, nRetries=0)))
    sender.start()
    time.sleep(1.0)
    # (the fast actor's held value of k is stale now: its first attempt conflicts, its retry adds)
    assert handle.request("add", {"key": "k", "n": 10}, key=to_fast, nRetries=3).data["value"] == 22
    sender.join(20)
    assert answer[1].failure is wire.Failure.CONFLICT and answer[1].data == {"keys": ["copy", "k"]}, answer[1]
    state_of(beach, "conflicted", {"k": 22})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beach.cli", *args], capture_output=True, text=True, timeout=120)


def test_operating_state_cli_audit_flush_backup_and_restore(beach, cluster, tmp_path):
    spawn(beach, "Counter", "ops")
    handle = beach.getActorHandle("ops")
    for key, n in (("don't", 2), ("café", 3), ("gone", 1)):
        assert handle.request("add", {"key": key, "n": n}).isSuccess
    kept = {"don't": 2, "café": 3}
    config = str(cluster.configs[0])
    listed = cli("state", config, "ops", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {i["key"]: i["value"] for i in json.loads(listed.stdout)} == {**kept, "gone": 1}
    table = cli("state", config, "ops")
    assert table.returncode == 0 and "ops (global): 3 key(s)" in table.stdout and "café" in table.stdout, table
    assert cli("state", config, "ops", "café").stdout.strip() == "3"
    missing = cli("state", config, "ops", "nothing")
    assert missing.returncode == 1 and "no state key 'nothing' in category 'ops' of realm 'global'" in missing.stderr
    deleted = cli("state", config, "ops", "--delete", "gone")
    assert deleted.returncode == 0, deleted.stderr
    state_of(beach, "ops", kept)

    def audited() -> bool:
        lines = cli("audit", config, "--op", "state", "--json").stdout.splitlines()
        return any(json.loads(line)["what"]["delete"] == ["gone"] for line in lines)

    wait_for(audited, 30, 0.5, what="the delete in the audit log")
    backup_file = tmp_path / "with-state.beach"
    saved = cli("backup", config, str(backup_file), "--json")
    assert saved.returncode == 0 and json.loads(saved.stdout)["state"] >= 2, saved
    # flush stops the actors and keeps their state; --state deletes it
    assert beach.flush()
    state_of(beach, "ops", kept)
    # a restore right after the purge (before the next sizes of actor state, 2 s): every process's
    # count of keys, for the cap, knows of the purge ('capped' held its cap of keys just before)
    assert beach.flush(state=True)
    state_of(beach, "ops", {})
    assert beach._runner.run(backup.restore(beach._core, backup.read(backup_file)))["state"] >= 2
    state_of(beach, "ops", kept)
    state_of(beach, "capped", lambda state: len(state) == MAX_KEYS)
    flushed = cli("flush", config, "--confirm", "--state")
    assert flushed.returncode == 0 and "actor state deleted" in flushed.stdout, flushed
    state_of(beach, "ops", {})
    restored = cli("restore", config, str(backup_file), "--json")
    assert restored.returncode == 0 and json.loads(restored.stdout)["state"] >= 2, restored
    state_of(beach, "ops", kept)
    spawn(beach, "Counter", "ops")  # a new actor finds it
    assert beach.getActorHandle("ops").request("add", {"key": "café"}).data["value"] == 4


def test_a_transfer_reads_and_writes_two_keys_as_one_turn(beach):
    spawn(beach, "Counter", "bank", count=3)
    handle = beach.getActorHandle("bank")
    assert handle.request("set", {"key": "alice", "value": 100}).isSuccess
    results: list[bool] = []

    def pay(n: int) -> None:
        for _ in range(n):
            response = handle.request("transfer", {"from": "alice", "to": "bob", "n": 1}, nRetries=50)
            results.append(response.isSuccess)

    threads = [threading.Thread(target=pay, args=(20,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 80, results
    state = state_of(beach, "bank", lambda state: state.get("bob") == 80)
    assert state["alice"] + state["bob"] == 100, state


def test_eight_clients_updating_one_key_through_random_routing_sum_exactly(beach, cluster):
    uids = spawn(beach, "Counter", "hot", count=4)
    assert len({beach._core.session.view.actors[u].node for u in uids}) == 3
    clients = [Beach(cluster.configs[i % 3]) for i in range(8)]
    failures: list[str] = []
    values: list[int] = []

    def feed(client: Beach) -> None:
        handle = client.getActorHandle("hot")
        for _ in range(25):
            response = handle.request("add", {"key": "k"}, timeout=10, nRetries=40)
            if response.isSuccess:
                values.append(response.data["value"])
            else:
                failures.append(response.error)

    try:
        threads = [threading.Thread(target=feed, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for client in clients:
            client.close()
    conflicts = sum(load.get("conflicts", 0) for uid, load in beach.getLoadInfo().items() if uid in uids)
    print(f"\n8 clients x 25 updates of one key: {conflicts} conflicts retried")
    assert failures == []
    state_of(beach, "hot", {"k": 200})
    assert sorted(values) == list(range(1, 201))  # each update saw the one before it: none lost, none twice


@pytest.mark.parametrize("first", ["first attempt commits first", "retry commits first"])
def test_a_request_retried_across_a_stopped_host_applies_once(beach, first):
    category = "stopped-" + ("a" if first.startswith("first") else "b")
    [stopped] = spawn(beach, "Counter", category, isIsolated=True, strategy="host_affinity", strategy_hint=NODES[1])
    [other] = spawn(beach, "Counter", category, strategy="host_affinity", strategy_hint=NODES[0])
    key = routing_keys([stopped, other])[0]
    handle = beach.getActorHandle(category, mode="affinity")
    pid = host_pid(beach, stopped)
    answer: list = []
    # the first attempt sleeps 1.5 s, then adds 1 and commits; it times out after 1 s and the retry
    # goes to the other actor, which sleeps 0.9 s first (so it commits at 1.9 s). Stopped for
    # 0.9 s, the first attempt commits at 1.5 s, before the retry; stopped for 4 s, at 4.3 s, after.
    stop_for = 0.9 if first.startswith("first") else 4.0
    sender = threading.Thread(target=lambda: answer.append(handle.request(
        "add_slowly", {"key": key, "before": {stopped: 1.5, other: 0.9}}, key=key, timeout=1.0, nRetries=2)))
    sender.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(stop_for)
    finally:
        os.kill(pid, signal.SIGCONT)
    sender.join(15)
    [response] = answer
    assert response.isSuccess, response
    assert response.data["value"] == 1
    # the caller got the reply of the turn that committed: the first attempt's, or the retry's
    assert response.data["uid"] == (stopped if first.startswith("first") else other), (response.data, stopped, other)
    wait_for(lambda: beach.getLoadInfo().get(stopped, {}).get("inflight") == 0, 10, what="the stopped actor to finish")
    state_of(beach, category, {key: 1})


# ---------------------------------------------------------------- the word count


class Feeder(threading.Thread):
    """Counts words through affinity routing with retries, from a client of its own, noting each
    word's acknowledged and failed updates."""

    def __init__(self, config: Path, seed: int) -> None:
        super().__init__(daemon=True)
        self.client = Beach(config, realm="words")
        self.random = random.Random(seed)
        self.acked: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.stopping = threading.Event()

    def run(self) -> None:
        handle = self.client.getActorHandle("counters", mode="affinity", timeout=3.0, nRetries=8)
        while not self.stopping.is_set():
            word = self.random.choice(VOCABULARY)
            response = handle.request("count", {"word": word}, key=word)
            if response.isSuccess:
                self.acked[word] += 1
            else:
                self.failed[word] += 1
                self.errors[response.error.split(":")[0]] += 1

    def total(self) -> int:
        return sum(self.acked.values()) + sum(self.failed.values())


def test_word_count_is_exact_through_a_killed_node_ring_changes_and_a_rollout(beach, cluster, tmp_path):
    realm = "words"
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "WordCounter.py").write_text(WORD_COUNTER)
    core, run = beach._core, beach._runner.run
    assert run(deploy.deploy(core, realm, tmp_path / "v1")).version == "v1"
    counters = spawn(beach, "WordCounter", "counters", count=4, realm=realm)
    view = beach._core.session.view
    # a node with a counter on it dies (not the client's own: its server stays up with it anyway)
    victim = next(view.actors[uid].node for uid in counters if view.actors[uid].node != NODES[0])
    feeders = [Feeder(cluster.configs[0], 1), Feeder(cluster.configs[1 if victim != NODES[1] else 2], 2)]
    events: list[str] = []

    def progress(more: int) -> None:
        start = sum(f.total() for f in feeders)
        wait_for(lambda: sum(f.total() for f in feeders) >= start + more, 120, what=f"{more} more updates")

    for feeder in feeders:
        feeder.start()
    try:
        progress(300)
        cluster.kill_node(victim)
        events.append(f"killed {victim}")
        wait_for(lambda: victim not in view.nodes, FAILURE_DETECTION + 6, what=f"{victim} to leave the registry")
        progress(300)
        added = spawn(beach, "WordCounter", "counters", realm=realm, strategy="random")
        events.append(f"added {added[0][:8]}")
        progress(300)
        live = [a.uid for a in view.find(realm, "counters")]
        assert beach.stopActors(live[0]).isSuccess
        events.append(f"stopped {live[0][:8]}")
        progress(300)
        before = {a.uid for a in view.find(realm, "counters")}
        (tmp_path / "v2").mkdir()
        (tmp_path / "v2" / "WordCounter.py").write_text(WORD_COUNTER + "\n# v2\n")
        assert run(deploy.deploy(core, realm, tmp_path / "v2")).version == "v2"
        rolled = run(rollout.rollout(core, realm, "counters"))
        assert not rolled["failed"] and len(rolled["replaced"]) == len(before) >= 2, rolled
        after = {a.uid for a in view.find(realm, "counters")}
        assert not before & after  # every counter replaced
        events.append("rolled out v2 to every counter")
        progress(300)
    finally:
        for feeder in feeders:
            feeder.stopping.set()
        for feeder in feeders:
            feeder.join(60)
            feeder.client.close()
        cluster.start_node(NODES.index(victim)).wait_registered(beach, timeout=60)
    acked = sum((f.acked for f in feeders), Counter())
    failed = sum((f.failed for f in feeders), Counter())
    total = sum(acked.values()) + sum(failed.values())
    counts = state_of(beach, "counters", lambda state: set(state) == set(acked) | set(failed) and all(
        acked[word] <= state[word] for word in state), realm)
    print(f"\nword count: {total} updates, {sum(failed.values())} failed "
          f"({dict(sum((f.errors for f in feeders), Counter()))}); {'; '.join(events)}")
    assert sum(failed.values()) <= total / 100
    assert set(counts) == set(acked) | set(failed)  # one key per word: no word is counted in two places
    for word in counts:
        # an update that failed may or may not have applied; none applied twice
        assert acked[word] <= counts[word] <= acked[word] + failed[word], (word, counts[word], acked[word],
                                                                           failed[word])


# ---------------------------------------------------------------- quorum loss and restart


async def has_leader(client: Beach, stream: str) -> bool:
    """Whether ``stream`` has a leader now (its leader answers its info)."""
    try:
        info = await client._core.session.nc.jetstream(timeout=2).stream_info(stream)
    except Exception:  # no leader to answer: a timeout, or JetStream unavailable
        return False
    return bool(info.cluster and info.cluster.leader)


def test_one_server_lost_then_the_quorum_lost_nothing_acknowledged_is_lost(cluster):
    with Beach(cluster.configs[0]) as client:
        client._admin_token = ADMIN_TOKEN
        wait_for(lambda: set(client._core.session.view.nodes) == set(NODES), FAILURE_DETECTION + 6, what="three nodes")
        spawn(client, "Counter", "quorum", strategy="host_affinity", strategy_hint=NODES[0])  # on the server kept
        handle = client.getActorHandle("quorum")
        assert handle.request("add", {"key": "k"}).data["value"] == 1
        cluster.servers[2].kill()  # one server of three (SIGKILL): the bucket keeps its quorum
        started = time.monotonic()
        added = [handle.request("add", {"key": "k"}, timeout=10, nRetries=5) for _ in range(20)]
        print(f"\none server of three SIGKILLed: 20 adds in {time.monotonic() - started:.1f} s, "
              f"{sum(not r.isSuccess for r in added)} failed")
        assert all(r.isSuccess for r in added), [r.error for r in added if not r.isSuccess]
        assert [r.data["value"] for r in added] == list(range(2, 22))
        cluster.servers[1].stop()  # two of three gone: the R3 bucket has no quorum
        try:
            # the kept server may hold the stream's leader, which answers reads (the committed
            # values) from its own store until it sees the quorum gone and steps down (~10 s)
            wait_for(lambda: not client._runner.run(has_leader(client, stateview.STREAM)), 30, 0.5,
                     what="the state stream's leader to step down")
            # a key the host does not hold cannot be read; a key it holds can be changed, not committed
            started = time.monotonic()
            unread = handle.request("get", {"key": "other"}, timeout=30, nRetries=0)
            took = time.monotonic() - started
            assert unread.failure is wire.Failure.BUS_UNAVAILABLE and "cannot read state key" in unread.error, unread
            uncommitted = handle.request("add", {"key": "k"}, timeout=30, nRetries=0)
            assert uncommitted.failure is wire.Failure.BUS_UNAVAILABLE and "commit" in uncommitted.error, uncommitted
            print(f"quorum lost: a read answered 'bus unavailable' after {took:.1f} s, a commit after "
                  f"{time.monotonic() - started - took:.1f} s")
        finally:
            for server in cluster.servers[1:]:
                server.start()
        # the quorum back (its streams catching up: reads time out, or see a revision already
        # passed, a conflict), an add goes through; a failed one may or may not have applied, once
        started = time.monotonic()
        failed: list[str] = []

        def add() -> bool:
            response = handle.request("add", {"key": "k"}, timeout=10, nRetries=5)
            if not response.isSuccess:
                failed.append(response.error)
            return response.isSuccess

        wait_for(add, 120, 1.0, what="a commit once the quorum is back")
        print(f"quorum back: an add committed {time.monotonic() - started:.1f} s after the servers started "
              f"({len(failed)} failed before: {failed})")
        # 21, the uncommitted add and the failed ones (each may or may not have applied), the one that went through
        state_of(client, "quorum", lambda state: 22 <= state.get("k", 0) <= 23 + len(failed))
        # the nodes' heartbeats and the directory's writes failed without the quorum too: the
        # cluster is whole again (for the tests after this one) once every bucket takes writes
        wait_for(lambda: set(client._core.session.view.nodes) == set(NODES), 60, what="the nodes to be back")
        wait_for(lambda: client.addActor("Counter", "quorum").isSuccess, 60, 1.0, what="the directory's writes")
        wait_for(client.flush, 30, 1.0, what="a flush of every node")


def test_state_survives_a_full_cluster_restart(cluster):
    with Beach(cluster.configs[0]) as client:
        client._admin_token = ADMIN_TOKEN
        wait_for(lambda: set(client._core.session.view.nodes) == set(NODES), FAILURE_DETECTION + 6, what="three nodes")
        spawn(client, "Counter", "durable", count=2)
        handle = client.getActorHandle("durable")
        for word in VOCABULARY[:20]:
            assert handle.request("add", {"key": word, "n": len(word)}).isSuccess
        before = state_of(client, "durable", lambda state: len(state) == 20)
    assert len(before) == 20
    for node_id in list(cluster.nodes):  # every node and every server dies at once, as in a power cut
        cluster.kill_node(node_id)
    for server in cluster.servers:
        server.kill()
    cluster.start()
    with Beach(cluster.configs[1]) as client:
        client._admin_token = ADMIN_TOKEN
        # (the previous run's entries stayed: nobody was left to hear them fall silent; each node
        # replaces its own as it comes back)
        view = client._core.session.view
        wait_for(lambda: all(n in view.nodes and view.nodes[n].pid == cluster.nodes[n].process.pid for n in NODES), 60,
                 what="the nodes to come back")
        state_of(client, "durable", before)
        spawn(client, "Counter", "durable")
        assert client.getActorHandle("durable").request("add", {"key": "the"}).data["value"] == before["the"] + 1
        assert client.flush()


def test_a_requests_record_lives_its_retry_window_then_goes(tmp_path):
    """``state.retry_window`` is how long a committed request is remembered: a retry (the same
    request id) within it is answered with the first reply and applies nothing; the record then
    expires on its own (the bucket does not grow with every request ever served), and a retry
    after that applies again — as docs/state.md and docs/operations.md say."""
    import asyncio

    import nats
    from nats.js.errors import KeyNotFoundError

    from beach import bus
    from beach.testing import LocalCluster
    from beach.wire import subjects

    window = 2.0
    with LocalCluster(Path(__file__).parent / "actors", nodes=1, state={"retry_window": window}) as local:
        client = local.client()
        [uid] = spawn(client, "Counter", "window")

        async def scenario() -> tuple[list[int], float]:
            nc = await nats.connect(local.url)
            try:
                record = subjects.request_record_key("global", "retried-id")

                async def send() -> int:
                    body = wire.pack_request("retried-id", "add", {"key": "k"}, None, 5.0)
                    reply = wire.unpack_reply((await nc.request(subjects.actor_subject("global", uid), body,
                                                                timeout=5)).data)
                    assert reply.ok, reply
                    return int(reply.data["value"])

                values = [await send(), await send()]  # the first, and a retry within the window
                kv = await nc.jetstream().key_value(bus.STATE_BUCKET)  # (made by the first turn)
                assert (await kv.get(record)).value  # (the record holds the first reply)
                committed = time.monotonic()
                while True:
                    try:
                        await kv.get(record)
                    except KeyNotFoundError:
                        break
                    assert time.monotonic() - committed < window + 10, "the request's record never expired"
                    await asyncio.sleep(0.2)
                gone = time.monotonic() - committed
                values.append(await send())  # past the window: a new request as far as state knows
                return values, gone
            finally:
                await nc.close()

        values, gone = asyncio.run(scenario())
        print(f"\nthe record of a committed request went {gone:.1f} s after it (retry_window {window:g} s)")
        assert values == [1, 1, 2]
        state_of(client, "window", {"k": 2})
        client.close()
