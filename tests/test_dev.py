"""``beach dev``: deploy on save, roll out the actors whose code changed, with no failed request;
a broken edit is reported while the previous version serves."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from beach.beach_api import Beach
from beach.testing import LocalCluster

REALM = "devrealm"

ECHO = """
from beach.actor import Actor
from . import helpers

class Echo(Actor):
    def init(self, parameters):
        {init}
        self.handle('v', lambda msg: (True, {{'v': helpers.VERSION}}))
        self.log('echo up, version ' + helpers.VERSION)
"""

OTHER = """
from beach.actor import Actor

class Other(Actor):
    def init(self, parameters):
        self.handle('v', lambda msg: (True, {'v': 'other'}))
"""


def write_app(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Echo.py").write_text(ECHO.format(init="pass"))
    (directory / "Other.py").write_text(OTHER)
    (directory / "helpers.py").write_text("VERSION = 'one'\n")
    return directory


def save(path: Path, text: str) -> float:
    """Write ``path`` as an editor saves (a new file renamed over the old); return when."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return time.monotonic()


class Output:
    """The lines a process prints, as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
        except ValueError:  # closed once the process ended
            pass

    def wait(self, pattern: str, after: float = 0.0, timeout: float = 60.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, line in list(self.lines):
                if when >= after and re.search(pattern, line):
                    return when, line
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n" + self.text())

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


class Load:
    """Requests as fast as they go, no retries, random and affinity: every reply recorded."""

    def __init__(self, config: str) -> None:
        self.client = Beach(config, realm=REALM)
        self.replies: list[tuple[float, str | None]] = []  # (when, version) per request; None: failed
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(mode,), daemon=True)
                         for mode in ("random", "affinity")]
        for thread in self._threads:
            thread.start()

    def _run(self, mode: str) -> None:
        handle = self.client.getActorHandle("echo", mode=mode)
        n = 0
        while not self._stop.is_set():
            n += 1
            response = handle.request("v", timeout=5, nRetries=0, key=n if mode == "affinity" else None)
            self.replies.append((time.monotonic(), response.data["v"] if response.isSuccess else None))
            if not response.isSuccess:
                self.errors.append(f"{mode}: {response.error}")

    def since(self, when: float) -> list[str | None]:
        return [v for t, v in list(self.replies) if t >= when]

    def first(self, version: str, after: float) -> float:
        return next(t for t, v in list(self.replies) if t >= after and v == version) - after

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.client.close()


def code_list(config: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "beach.cli", "code", "list", config, REALM, "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dev(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "beach.cli", "dev", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stopped(process: subprocess.Popen[str]) -> int:
    """Ctrl-C, and the exit code."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_three_saves_under_load_fail_no_request(tmp_path):
    app = write_app(tmp_path / "app")
    helpers = app / "helpers.py"
    with LocalCluster(nodes=2, realm=REALM) as cluster:
        deployed = subprocess.run([sys.executable, "-m", "beach.cli", "deploy", cluster.config_path, REALM, str(app),
                                   "--json"], capture_output=True, text=True, timeout=60)
        assert deployed.returncode == 0, deployed.stderr
        client = cluster.client()
        for node in ("local-1", "local-2"):
            assert client.addActor("Echo", "echo", owner="alice", strategy="host_affinity", strategy_hint=node)
        other = client.addActor("Other", "other", owner="bob").data["uid"]
        process = dev(REALM, str(app), "--config", cluster.config_path)
        out = Output(process)
        load = None
        try:
            # on a shared cluster, it says whose actors it will roll out before it starts
            out.wait(r"running now: 2 × Echo \(echo\), 1 × Other \(other\)")
            out.wait(r"their owners: alice \(2\), bob \(1\); you are ")
            out.wait(r"v1 deployed .*no running actor's code changed")
            out.wait("watching")
            load = Load(cluster.config_path)
            time.sleep(1)
            assert set(load.since(0)) == {"one"}

            # 1: a new version: rolled out, the new reply everywhere
            saved = save(helpers, "VERSION = 'two'\n")
            done, line = out.wait(r"dev-1 serving: 2 actor\(s\) rolled out", saved)
            out.wait(r"echo up, version two", saved)
            time.sleep(1)
            assert set(load.since(done + 0.3)) == {"two"}
            print(f"\nsave 1: first new reply {load.first('two', saved):.2f}s after the save, all new "
                  f"{done - saved:.2f}s after ({line.split('] ')[1]}); under the load of this test and of others")
            assert client.getActorHandle("other").getNumAvailable() == 1
            assert other in client.getDirectory()["realms"][REALM]["other"], "Other's code did not change"

            # 2: a syntax error: reported, nothing deployed, the old version serves on
            saved = save(helpers, "VERSION = 'three\n")
            out.wait(r"helpers.py:1: SyntaxError: unterminated string literal", saved)
            reported, _ = out.wait("not deployed: the previous version keeps serving", saved)
            time.sleep(1)
            assert set(load.since(saved)) == {"two"}

            # 3: fixed: the new reply again
            saved = save(helpers, "VERSION = 'three'\n")
            done, _ = out.wait(r"dev-2 serving: 2 actor\(s\) rolled out", saved)
            time.sleep(1)
            assert set(load.since(done + 0.3)) == {"three"}
            print(f"save 3: first new reply {load.first('three', saved):.2f}s after the save, all new "
                  f"{done - saved:.2f}s after")

            # a failing init(): shown with its traceback, the realm back on the version that serves
            saved = save(app / "Echo.py", ECHO.format(init="raise RuntimeError('no database')"))
            out.wait(r"RuntimeError: no database", saved)
            out.wait(r"not rolled out: dev-2 keeps serving", saved)
            time.sleep(1)
            assert set(load.since(saved)) == {"three"}
            listed = [(v["version"], v["current"]) for v in code_list(cluster.config_path)]
            assert listed == [("v1", False), ("dev-1", False), ("dev-2", True)], "dev-3 was forgotten"
        finally:
            if load is not None:
                load.stop()
            code = stopped(process)
        print(f"{len(load.replies)} requests, {len(load.errors)} failed")
        assert load.errors == []
        assert code == 0, out.text()


def test_on_a_local_cluster_of_its_own_it_prunes_and_cleans_up(tmp_path):
    app = write_app(tmp_path / "app")
    start = tmp_path / "start.py"
    start.write_text("import os\nfrom beach import Beach\nwith Beach(os.environ['BEACH_CONFIG'], realm='devrealm') "
                     "as b:\n    assert b.addActor('Echo', 'echo').isSuccess\n    print('started', flush=True)\n")
    process = dev(REALM, str(app), "--run", str(start), "--keep", "1")
    family = psutil.Process(process.pid)
    out = Output(process)
    try:
        _, line = out.wait(r"local cluster: 1 node\(s\), config (\S+)")
        config = re.search(r"config (\S+)", line).group(1)
        out.wait("started")
        pids = [p.pid for p in family.children(recursive=True)]
        assert len(pids) >= 3  # nats-server, node agent, actor host
        for n in range(2, 6):
            saved = save(app / "helpers.py", f"VERSION = 'v{n}'\n")
            out.wait(rf"dev-{n} serving: 1 actor\(s\) rolled out", saved)
            out.wait(rf"echo up, version v{n}", saved)
        with Beach(config, realm=REALM) as client:
            assert client.getActorHandle("echo").request("v", timeout=5).data == {"v": "v5"}
        assert [v["version"] for v in code_list(config)] == ["dev-4", "dev-5"], \
            "the current version, the one before it (kept whatever --keep says), no other"
    finally:
        code = stopped(process)
    assert code == 0, out.text()
    time.sleep(0.5)
    assert [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE] == []
    assert not Path(config).exists()
