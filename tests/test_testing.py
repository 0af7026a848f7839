"""beach.testing: ActorHarness (one actor in-process, no NATS), LocalCluster, the pytest plugin, and
the one import rule (a realm's modules import each other the same way from a code directory and
from a deployed bundle)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from beach.actor import Actor
from beach.errors import ActorInitError, ActorLoadError, EncodeError, StreamError, UsageError
from beach.testing import ActorHarness, LocalCluster

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- ActorHarness


class Shop(Actor):
    """An actor using most of the Actor API: handlers, a stubbed category, timers, state, logs."""

    reply_cache = 10

    def init(self, parameters):
        self.prices = self.getActorHandle("shop/prices")
        self.audit = self.getActorHandle("audit")
        self.currency = parameters["currency"]
        self.runs = 0
        self.handle("buy", self.buy)
        self.handle("basket", self.basket)
        self.handle("boom", self.boom)
        self.handle("once", self.once)
        self.handle("later", self.later)
        self.schedule(10, self.tick)

    def buy(self, msg):
        price = self.prices.request("price", {"item": msg.data["item"]})
        if not price.isSuccess:
            return (False, f"no price: {price.error}")
        total = self.state.update("spent", lambda n: (n or 0) + price.data["price"])
        self.audit.shoot("bought", {"item": msg.data["item"]})
        self.log(f"sold {msg.data['item']} for {price.data['price']} {self.currency}")
        return (True, {"total": total})

    def basket(self, msg):
        return (True, {"items": msg.data["items"], "spent": self.state.get("spent", 0)})

    def boom(self, msg):
        self.state.set("spent", -1)  # a turn that raises applies nothing
        raise ValueError("broken")

    def once(self, msg):
        self.runs += 1
        return (True, {"runs": self.runs})

    def later(self, msg):
        self.delay(5, self.log, "five seconds later")
        return (True,)

    def tick(self):
        self.log(f"tick, spent {self.state.get('spent', 0)}")

    def deinit(self):
        self.log("closing")


def prices(requestType, data):
    return {"apple": {"price": 3}, "pear": (True, {"price": 5})}.get(data["item"], (False, "unknown item"))


def test_a_handler_test_is_a_few_lines():
    started = time.monotonic()
    with ActorHarness(Shop, parameters={"currency": "EUR"}, category="shop/front") as shop:
        shop.stub("shop/prices", prices)
        response = shop.request("buy", {"item": "apple"})
        assert response.isSuccess and response.data == {"total": 3}
        assert (response.uid, response.node) == (shop.uid, "harness")  # (who answered, as on a node)
        assert shop.request("buy", {"item": "pear"}).data == {"total": 8}
        assert shop.state.get("spent") == 8
        assert shop.logs[-1] == "sold pear for 5 EUR"
        assert [(c.category, c.kind, c.requestType) for c in shop.calls] == [
            ("shop/prices", "request", "price"), ("audit", "shoot", "bought")] * 2
        unknown = shop.request("buy", {"item": "plum"})
        assert not unknown.isSuccess and unknown.error == "no price: unknown item"
    assert shop.logs[-1] == "closing" and shop.stopped
    print(f"\nfour requests, a stub, state and logs: {1000 * (time.monotonic() - started):.1f} ms")


def test_requests_go_through_the_wire_rules():
    with ActorHarness(Shop, {"currency": "EUR"}) as shop:
        assert shop.request("basket", {"items": ("a", "b")}).data == {"items": ["a", "b"], "spent": 0}
        with pytest.raises(EncodeError, match="cannot serialize object"):
            shop.request("basket", {"items": object()})
        with pytest.raises(EncodeError, match="state key 'k'"):
            shop.state.set("k", object())
        assert shop.request("nothing").error == "request type not supported by actor"
        assert "request type not supported: 'nothing'" in shop.logs[-1]
        # an unstubbed category is an empty one, as on a cluster
        assert shop.request("buy", {"item": "apple"}).error.startswith("no price: no actor available in category "
                                                                        "'shop/prices'")
        failed = shop.request("boom")
        assert failed.error == "exception: ValueError: broken" and "ValueError: broken" in failed.data["st"]
        assert shop.last_error is not None and "ValueError: broken" in shop.last_error
        assert shop.state.get("spent") is None, "the raising turn's write was not applied"
        # a retry (the same request id) gets the first run's reply: reply_cache
        assert [shop.request("once", request_id="r1").data["runs"] for _ in range(2)] == [1, 1]
        assert shop.request("once").data["runs"] == 2


def test_timers_follow_the_fake_clock():
    with ActorHarness(Shop, {"currency": "EUR"}) as shop:
        assert shop.logs == ["tick, spent 0"], "schedule() from a def init runs once at once"
        shop.state.set("spent", 7)
        assert shop.advance(9.5) == 0
        assert shop.advance(0.5) == 1 and shop.logs[-1] == "tick, spent 7"
        shop.request("later")
        assert shop.advance(4) == 0
        assert shop.advance(30) == 4 and shop.clock == 44.0
        assert shop.logs[1:] == ["tick, spent 7", "five seconds later", "tick, spent 7", "tick, spent 7",
                                 "tick, spent 7"]


class Async(Actor):
    async def init(self, parameters):
        self.other = self.getActorHandle("other", mode="affinity")
        self.handle("ask", self.ask)
        self.schedule(1, self.beat)
        self.beats = 0

    async def ask(self, msg):
        response = await self.other.arequest("q", msg.data, key="k")
        return (True, {"answer": response.data, "beats": self.beats})

    async def beat(self):
        self.beats += 1


def test_async_actors_blocking_and_awaited():
    with ActorHarness(Async) as actor:
        actor.stub("other", lambda requestType, data: {"echo": data})
        assert actor.advance(0) == 1, "an async schedule's first call waits for the clock"
        assert actor.request("ask", {"x": 1}).data == {"answer": {"echo": {"x": 1}}, "beats": 1}

    async def awaited() -> None:
        async with ActorHarness(Async) as actor:
            with pytest.raises(UsageError, match="await its a"):
                actor.request("ask")

            async def stub(requestType, data):
                return (False, "refused")

            actor.stub("other", stub)
            await actor.aadvance(2.5)
            response = await actor.arequest("ask", {"x": 2})
            assert response.isSuccess and response.data == {"answer": {}, "beats": 3}

    asyncio.run(awaited())


class Failing(Actor):
    def init(self, parameters):
        raise RuntimeError("no database")


class Trusting(Actor):
    def init(self, parameters):
        self.handle("x", lambda msg: (True, {"ident": msg.ident}))


def test_init_failures_trust_and_stops():
    with pytest.raises(ActorInitError, match="RuntimeError: no database"):
        ActorHarness(Failing)
    with ActorHarness(Trusting, trusted=["secret"]) as actor:
        assert actor.request("x").error == "unauthorized"
        assert actor.request("x", ident="secret").data == {"ident": "secret"}
        actor.stop()
        assert actor.request("x", ident="secret").error.startswith("no actor available")
    with pytest.raises(UsageError, match="code_directory"):
        ActorHarness("Counter")


# ---------------------------------------------------------------- one import rule


REALM_ACTORS = {
    "Greeter.py": "from beach.actor import Actor\nfrom . import helpers\nfrom .sub import tool\n\n"
                  "class Greeter(Actor):\n    def init(self, parameters):\n"
                  "        self.handle('name', lambda msg: (True, {'name': helpers.NAME, 'tool': tool.TOOL}))\n",
    "Absolute.py": "from beach.actor import Actor\nimport helpers\n\nclass Absolute(Actor):\n    pass\n",
    "sub/tool.py": "from .. import helpers\nTOOL = 'tool of ' + helpers.NAME\n",
}


def write_realm(directory: Path, name: str) -> Path:
    for path, source in {**REALM_ACTORS, "helpers.py": f"NAME = {name!r}\n"}.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_text(source)
    return directory


def test_one_import_rule_from_a_code_directory_and_a_bundle_in_two_realms(tmp_path):
    code = tmp_path / "code"
    for realm in ("alpha", "beta"):
        write_realm(code / realm, realm)
        write_realm(tmp_path / "deploy" / realm, f"{realm} deployed")
    rule = r"No module named 'helpers': a realm's modules import each other relatively, as 'from \. import helpers'"
    # in this process, as the harness loads it
    for realm in ("alpha", "beta"):
        with ActorHarness("Greeter", code_directory=code, realm=realm) as greeter:
            assert greeter.request("name").data == {"name": realm, "tool": f"tool of {realm}"}
        with pytest.raises(ActorLoadError, match=rule):
            ActorHarness("Absolute", code_directory=code, realm=realm)
    # on a node: both realms' actors in its one actor host, from the code directory, then deployed
    with LocalCluster(code, nodes=1) as cluster:
        client = cluster.client()
        for way in ("", " deployed"):
            for realm in ("alpha", "beta"):
                client.setRealm(realm)
                spawned = client.addActor("Greeter", f"greet/{way.strip() or 'dir'}")
                assert spawned.isSuccess, spawned
                response = client.getActorHandle(f"greet/{way.strip() or 'dir'}").request("name", timeout=10)
                assert response.data == {"name": realm + way, "tool": f"tool of {realm}{way}"}, (realm, way)
                failed = client.addActor("Absolute", "absolute")
                assert not failed.isSuccess and re.search(rule, failed.error), failed.error
            if not way:
                for realm in ("alpha", "beta"):
                    result = subprocess.run([sys.executable, "-m", "beach.cli", "deploy", cluster.config_path, realm,
                                             str(tmp_path / "deploy" / realm), "--json"],
                                            capture_output=True, text=True, timeout=60)
                    assert result.returncode == 0, result.stderr
        hosts = {a["pid"] for a in client.getAllNodeMetadata()["local-1"]["data"]["mtd"].values()}
        assert len(hosts) == 1, "the two realms' modules were loaded side by side in one host"


# ---------------------------------------------------------------- LocalCluster in this process


def test_a_local_cluster_comes_up_fast_and_survives_a_killed_node(tmp_path):
    code = write_realm(tmp_path / "code" / "global", "global").parent
    started = time.monotonic()
    with LocalCluster(code, nodes=2) as cluster:
        up = time.monotonic() - started
        print(f"\nLocalCluster(nodes=2) up in {up:.2f}s (the machine is shared with other work)")
        client = cluster.client()
        assert client.getNodeCount() == 2
        uids = [client.addActor("Greeter", "greet", strategy="host_affinity", strategy_hint=node).data["uid"]
                for node in ("local-1", "local-2")]
        assert cluster.client(realm="global").getActorHandle("greet").getNumAvailable() == 2
        cluster.kill_node("local-1")
        handle = client.getActorHandle("greet")
        for _ in range(5):
            assert handle.request("name", nRetries=3, timeout=5).isSuccess
        third = cluster.add_node()
        assert third == "local-3" and client.getNodeCount() >= 2
        assert client.addActor("Greeter", "greet/late", strategy="host_affinity", strategy_hint=third).isSuccess
        assert client.getActorHandle(f"_ACTORS/{uids[1]}").request("nope").error == \
            "request type not supported by actor"
        line = cluster.wait_for_log("request type not supported: 'nope'", timeout=10)
        assert line["uid"] == uids[1] and line["level"] == "ERROR"
        assert [line["msg"] for line in cluster.logs(uids[1])] == ["request type not supported: 'nope'"]

        async def awaited() -> None:
            aclient = await cluster.aclient()
            try:
                # the killed node leaves every view within its registry TTL (4 s) plus the view's 2 s
                deadline = time.monotonic() + 10
                while "local-1" in aclient.getAllNodeMetadata() and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert aclient.getNodeCount() == 2
                assert [line["uid"] for line in await cluster.alogs(realm="global")] == [uids[1]]
            finally:
                await aclient.close()

        asyncio.run(awaited())
        assert cluster.stop_node(third) == 0, "a clean stop"
        directory = cluster.directory
    assert not os.path.exists(directory)


# ---------------------------------------------------------------- a user's project, run by pytest


PROJECT = {
    "pytest.ini": """
        [pytest]
        beach_code_directory = code
        """,
    "code/global/words.py": """
        def split(text):
            return [w.strip('.,!?').lower() for w in text.split() if w.strip('.,!?')]
        """,
    "code/global/Counter.py": """
        from beach.actor import Actor
        from . import words

        class Counter(Actor):
            def init(self, parameters):
                self.handle('count', self.count)
                self.handle('top', self.top)

            def count(self, msg):
                for word in words.split(msg.data['text']):
                    self.state.update(word, lambda n: (n or 0) + 1)
                self.log(f"counted {msg.data['text']!r}")
                return (True, {'words': len(words.split(msg.data['text']))})

            def top(self, msg):
                counts = {w: self.state.get(w) for w in self.state.keys()}
                return (True, {'top': sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:msg.data.get('n', 3)]})
        """,
    "code/global/Splitter.py": """
        from beach.actor import Actor
        from . import words

        class Splitter(Actor):
            def init(self, parameters):
                self.handle('split', lambda msg: (True, {'words': words.split(msg.data['text'])}))
        """,
    "tests/test_words.py": """
        import os
        import time

        import pytest

        from beach.testing import ActorHarness, LocalCluster

        CODE = os.path.join(os.path.dirname(__file__), '..', 'code')


        def test_counter_unit():
            with ActorHarness('Counter', code_directory=CODE) as counter:
                assert counter.request('count', {'text': 'The cat. The dog!'}).data == {'words': 4}
                assert counter.request('top', {'n': 2}).data == {'top': [['the', 2], ['cat', 1]]}
                assert counter.logs == ["counted 'The cat. The dog!'"]


        @pytest.mark.beach_cluster(nodes=2)
        def test_on_two_nodes(beach_cluster):
            client = beach_cluster.client()
            assert client.getNodeCount() == 2
            for node in ('local-1', 'local-2'):
                assert client.addActor('Splitter', 'split', strategy='host_affinity', strategy_hint=node).isSuccess
            handle = client.getActorHandle('split')
            for _ in range(10):
                assert handle.request('split', {'text': 'A b, c'}, timeout=5).data == {'words': ['a', 'b', 'c']}


        @pytest.mark.beach_cluster(nodes=2)
        def test_a_node_dies(beach_cluster):
            client = beach_cluster.client()
            assert client.getActorHandle('split').getNumAvailable() == 0, 'the last test left nothing behind'
            for node in ('local-1', 'local-2'):
                assert client.addActor('Splitter', 'split', strategy='host_affinity', strategy_hint=node).isSuccess
            beach_cluster.kill_node('local-1')
            handle = client.getActorHandle('split')
            for _ in range(10):
                assert handle.request('split', {'text': 'x'}, timeout=5, nRetries=3).isSuccess


        def test_own_cluster():
            with LocalCluster(CODE, nodes=2) as cluster:
                client = cluster.client()
                assert client.addActor('Splitter', 'split').isSuccess
                assert client.getActorHandle('split').request('split', {'text': 'hi'}, timeout=5).isSuccess


        def test_fails_inside_a_cluster():
            if not os.environ.get('RUN_FAILING'):
                pytest.skip('run on purpose only')
            with LocalCluster(CODE, nodes=2):
                assert False, 'failed on purpose'


        @pytest.mark.skipif(not os.environ.get('RUN_INTERRUPTED'), reason='run on purpose only')
        def test_interrupted_inside_a_cluster(beach_cluster):
            open(os.environ['RUN_INTERRUPTED'], 'w').close()
            time.sleep(60)
        """,
}


def write_project(root: Path) -> Path:
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    return root


class Descendants:
    """Every process started under ``pid`` while it runs (sampled), to check that none is left."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, tuple[float, str]] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                children = self.root.children(recursive=True)
            except psutil.Error:  # the root has ended
                children = []
            for p in children:
                # Read every time: a child caught between fork and exec shows an empty command line or
                # its parent's (a nats-server first seen as "beach.cli node"), and exec changes it.
                try:
                    cmd = " ".join(p.cmdline())
                    if cmd:
                        self.seen[p.pid] = (p.create_time(), cmd)
                except psutil.Error:
                    pass
            self._done.wait(0.02)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def kinds(self) -> set[str]:
        return {kind for _, cmd in self.seen.values()
                for kind in ("nats-server", "beach.cli node", "nodeagent.host") if kind in cmd}

    def left(self) -> list[str]:
        alive = []
        for pid, (created, cmd) in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {cmd}")
            except psutil.NoSuchProcess:
                pass
        return alive


def run_pytest(project: Path, *args: str, env: dict[str, str] | None = None,
               interrupt_when: Path | None = None) -> tuple[subprocess.CompletedProcess[str], Descendants, float]:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    family = Descendants(process.pid)
    try:
        if interrupt_when is not None:
            deadline = time.monotonic() + 60
            while not interrupt_when.exists() and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        time.sleep(0.5)  # (a process killed at the end needs a moment to be gone)
        family.stop()
    return subprocess.CompletedProcess(process.args, process.returncode, out), family, time.monotonic() - started


def test_a_users_project_tests_its_actors_with_pytest_and_leaves_nothing_running(tmp_path):
    project = write_project(tmp_path / "project")
    result, family, took = run_pytest(project)
    print(f"\nthe user's suite: {took:.1f}s\n{result.stdout[-600:]}")
    assert result.returncode == 0, result.stdout
    assert re.search(r"\b4 passed, 2 skipped\b", result.stdout), result.stdout
    assert family.kinds() == {"nats-server", "beach.cli node", "nodeagent.host"}, family.seen
    assert family.left() == []
    # the command line's code directory wins over the ini file's
    result, family, _ = run_pytest(project, "-k", "two_nodes", "--beach-code-directory", str(project / "code"),
                                   "-o", "beach_code_directory=nowhere")
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout
    assert family.left() == []


def test_a_failing_test_and_ctrl_c_leave_nothing_running(tmp_path):
    project = write_project(tmp_path / "project")
    result, family, _ = run_pytest(project, "-k", "fails_inside", env={"RUN_FAILING": "1"})
    assert result.returncode == 1 and "failed on purpose" in result.stdout, result.stdout
    assert "nats-server" in family.kinds() and family.left() == []

    marker = tmp_path / "cluster-is-up"
    result, family, _ = run_pytest(project, "-k", "interrupted", env={"RUN_INTERRUPTED": str(marker)},
                                   interrupt_when=marker)
    assert marker.exists() and "KeyboardInterrupt" in result.stdout, result.stdout
    assert family.kinds() == {"nats-server", "beach.cli node", "nodeagent.host"}, family.seen
    assert family.left() == []


def test_the_testing_page_runs_as_written(tmp_path):
    page = (ROOT / "docs" / "testing.md").read_text()
    files = {}
    for block in re.findall(r"```(?:python|ini)\n(.*?)```", page, re.S):
        first, _, rest = block.partition("\n")
        if re.fullmatch(r"# [\w/.]+\.(py|ini)", first):
            files[first[2:]] = block
    assert {"pytest.ini", "code/global/Counter.py", "tests/test_counter.py", "tests/test_on_a_cluster.py",
            "tests/test_with_the_fixture.py", "tests/test_failures.py"} <= set(files)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result, family, took = run_pytest(tmp_path, "-ra")
    print(f"\ndocs/testing.md's examples: {took:.1f}s\n{result.stdout[-400:]}")
    assert result.returncode == 0, result.stdout
    assert re.search(r"\b8 passed\b", result.stdout), result.stdout
    assert family.left() == []


class Rows(Actor):
    """Generator handlers for the harness: rows as they come, one that fails, one that watches for
    its cancellation."""

    def init(self, parameters):
        self.closed = []
        self.handle("rows", self.rows)
        self.handle("arows", self.arows)
        self.handle("bad", self.bad)
        self.handle("watch", self.watch)
        self.handle("patient", self.patient)

    def rows(self, msg):
        try:
            for i in range(msg.data["n"]):
                self.state.set("last", i)
                yield {"i": i, "tuple": (i, i)}
        finally:
            self.closed.append(("rows", self.isCancelled()))

    async def arows(self, msg):
        try:
            for i in range(msg.data["n"]):
                await asyncio.sleep(0)
                yield i
        finally:
            self.closed.append(("arows", self.isCancelled()))

    async def bad(self, msg):
        yield 1
        raise KeyError("row 2")

    def watch(self, msg):
        for _ in range(3):
            yield self.isCancelled()

    def patient(self, msg):  # a def handler that stops early once its caller gave up
        return (True, "stopped early" if self.cancelled.wait(0) or self.isCancelled() else "finished")


def test_generator_handlers_stream_in_the_harness_and_a_break_cancels():
    with ActorHarness(Rows, category="rows") as rows:
        assert list(rows.stream("rows", {"n": 3})) == [{"i": i, "tuple": [i, i]} for i in range(3)]
        assert rows.state.get("last") == 2 and rows.actor.closed == [("rows", False)]
        assert rows.request("rows", {"n": 2}).data == [{"i": 0, "tuple": [0, 0]}, {"i": 1, "tuple": [1, 1]}]
        for n, _ in enumerate(rows.stream("rows", {"n": 1000})):  # the reader breaks off: cancelled, closed
            if n == 4:
                break
        assert rows.actor.closed[-1] == ("rows", True)
        assert rows.state.get("last") == 1, "a stream broken off applies nothing"
        got = []
        with pytest.raises(StreamError, match=r"^exception: KeyError: 'row 2'$") as err:
            for item in rows.stream("bad"):
                got.append(item)
        assert got == [1] and "KeyError" in err.value.data["st"] and "KeyError" in rows.last_error
        assert list(rows.stream("watch")) == [False, False, False]
        assert rows.request("patient").data == "finished"
        assert rows.request("patient", cancelled=True).data == "stopped early"
        with pytest.raises(StreamError, match="request type not supported"):
            list(rows.stream("nothing"))

    async def read():
        async with ActorHarness(Rows) as arows:
            assert [i async for i in arows.astream("arows", {"n": 5})] == list(range(5))
            async with contextlib.aclosing(arows.astream("arows", {"n": 100})) as items:
                async for _ in items:
                    break
            return arows.actor.closed

    closed = asyncio.run(read())
    assert closed[0] == ("arows", False) and closed[-1] == ("arows", True)
