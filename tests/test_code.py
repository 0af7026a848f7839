"""Code shipped over the bus (issue 15): three node agents, each in a network namespace of its own
with an empty code directory, take their actors' code from the JetStream object store.

Needs root and iproute2 (``ip netns``); skipped with the reason otherwise. The namespaces hang off
a bridge this module creates; the NATS server listens on the bridge's address only: no traffic
leaves the machine. The CLI is run as a person runs it (``python -m beach.cli``), from the root
namespace.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.code import bundle
from beach.code import store as codestore
from beach.state.desired import CodeVersion
from beach.testing import LocalCluster

from .bridge import NamespacedNode, bridge
from .conftest import ADMIN_TOKEN, free_port, wait_for

TAG = os.getpid() % 10000
NAMESPACES = [f"bc{TAG}n{i}" for i in range(3)]
BRIDGE = f"bcbr{TAG}"
SUBNET = f"10.216.{TAG % 200 + 20}"
BRIDGE_IP = f"{SUBNET}.1"
NODE_IPS = [f"{SUBNET}.{10 + i}" for i in range(3)]
NODES = [f"code-node-{i}" for i in range(3)]

ECHO = '''from beach.actor import Actor
from . import helpers


class Echo(Actor):
    def init(self, parameters):
        self.handle("echo", self.echo)
        self.handle("where", self.where)

    def echo(self, msg):
        return True, {"version": helpers.VERSION, "n": msg.data.get("n")}

    def where(self, msg):
        import os
        return True, {"version": helpers.VERSION, "pid": os.getpid(), "file": __file__}
'''


def write_realm(directory: Path, version: str, **extra: str) -> Path:
    """A realm's code: ``Echo`` answering with ``version``, a helper module, and ``extra`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "helpers.py").write_text(f"VERSION = {version!r}\n")
    (directory / "Echo.py").write_text(ECHO)
    for name, text in extra.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def wheel(directory: Path, name: str, value: int) -> Path:
    """A tiny pure-Python wheel (made by hand: no build tools, no network) defining ``VALUE``."""
    dist = f"{name}-1.0.dist-info"
    files = {f"{name}/__init__.py": f"VALUE = {value}\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: beach-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(text.encode())])
    writer.writerow([f"{dist}/RECORD", "", ""])
    target = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{dist}/RECORD", record.getvalue())
    return target


@pytest.fixture(scope="module")
def network() -> Iterator[None]:
    with bridge(BRIDGE, BRIDGE_IP, NAMESPACES, NODE_IPS, f"bc{TAG}"):
        yield


class Cluster:
    """The module's cluster: a server on the bridge, three namespaced nodes, the client's config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = EmbeddedServer(free_port(), str(root / "js"), host=BRIDGE_IP, log_file=str(root / "nats.log"))
        self.wheels = root / "wheels"
        self.wheels.mkdir()
        wheel(self.wheels, "beachtinydep", 42)
        self.nodes: list[NamespacedNode] = []
        self.configs: list[Path] = []

    @property
    def url(self) -> str:
        return self.server.url

    def config(self, name: str, **extra: Any) -> Path:
        code = self.root / f"{name}-code"
        code.mkdir(exist_ok=True)  # empty: nothing on disk, every realm comes from the bus
        raw = {"code_directory": str(code), "n_processes": 1, "admin_token": ADMIN_TOKEN,
               "nats": {"servers": [self.url]},
               "code": {"cache": str(self.root / f"{name}-cache"), "pip": True,
                        "pip_args": ["--no-index", "--find-links", str(self.wheels)]}}
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    def start(self) -> None:
        self.server.start()
        self.client_config = self.config("client")
        for i, node_id in enumerate(NODES):
            # the third node does not allow pip installs: a realm with requirements is refused there
            config = self.config(node_id, code={"pip": i < 2})
            self.configs.append(config)
            self.nodes.append(NamespacedNode(NAMESPACES[i], node_id, ["-m", "nodeagent", str(config),
                                                                     "--node-id", node_id]))

    def cache(self, i: int) -> Path:
        return self.root / f"{NODES[i]}-cache"

    def stop(self) -> None:
        for node in self.nodes:
            node.terminate()
        self.server.stop()


@pytest.fixture(scope="module")
def cluster(network: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("code-cluster"))
    try:
        cluster.start()
        with Beach(cluster.client_config) as client:
            for node in cluster.nodes:
                node.wait_registered(client, 60)
        yield cluster
        codes = [node.terminate() for node in cluster.nodes]
        assert codes == [0, 0, 0]
    finally:
        cluster.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Beach]:
    with Beach(cluster.client_config) as client:
        yield client


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beach.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def deployed(cluster: Cluster, realm: str, directory: Path, *more: str) -> str:
    result = cli("deploy", str(cluster.client_config), realm, str(directory), "--json", *more)
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["version"])


def spawn_on_each(client: Beach, realm: str, category: str, **options: Any) -> list[str]:
    uids = []
    for node_id in NODES:
        response = client.addActor("Echo", category, realm=realm, strategy="host_affinity", strategy_hint=node_id,
                                   **options)
        assert response.isSuccess, response
        assert response.data["node"] == node_id
        uids.append(response.data["uid"])
    return uids


class SteadyLoad:
    """Requests one after the other, as fast as they come back, with ``nRetries=0``, from a thread
    of their own while the ``with`` block runs (half a second before the block's work starts):
    ``counts`` (sent, ok, failed), the failures' ``errors``, and how many answers each code
    ``version`` gave. Affinity mode spreads its requests over 50 keys."""

    def __init__(self, client: Beach, category: str, mode: str = "random") -> None:
        self.client, self.category, self.mode = client, category, mode
        self.counts = {"sent": 0, "ok": 0, "failed": 0}
        self.errors: list[str] = []
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            self.counts["sent"] += 1
            response = self._handle.request("echo", {"n": i}, key=f"k{i % 50}" if self.mode == "affinity" else None)
            if response.isSuccess:
                self.counts["ok"] += 1
                self.seen[response.data["version"]] = self.seen.get(response.data["version"], 0) + 1
            else:
                self.counts["failed"] += 1
                self.errors.append(response.error)

    def __enter__(self) -> SteadyLoad:
        self._handle = self.client.getActorHandle(self.category, mode=self.mode, nRetries=0, timeout=10)
        self._thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the load thread did not stop"


def current_record(client: Beach, realm: str) -> CodeVersion:
    async def read() -> Any:
        return await codestore.resolve(await client._core._desired(), realm)

    record = client._runner.run(read())
    assert record is not None
    return record


def versions_running(client: Beach, realm: str, category: str) -> list[str | None]:
    view = client._core.session.view
    return sorted(a.version or "-" for a in view.find(realm, category))


def test_deploy_then_spawn_on_all_three_nodes_without_code_on_disk(cluster, client, tmp_path):
    assert not any(list((cluster.root / f"{n}-code").iterdir()) for n in NODES)
    version = deployed(cluster, "shop", write_realm(tmp_path / "shop", "one", **{"data/prices.txt": "42\n"}))
    assert version == "v1"
    spawn_on_each(client, "shop", "shop/echo")
    client.setRealm("shop")
    handle = client.getActorHandle("shop/echo")
    answers = [handle.request("echo", {"n": i}) for i in range(30)]
    assert all(a.isSuccess and a.data == {"version": "one", "n": i} for i, a in enumerate(answers)), answers[:3]
    assert versions_running(client, "shop", "shop/echo") == ["v1", "v1", "v1"]
    listing = cli("code", "list", str(cluster.client_config), "shop")
    assert listing.returncode == 0, listing.stderr
    assert "v1 *" in listing.stdout and "shop" in listing.stdout
    for i in range(3):  # each node fetched it once and keeps it by digest
        [entry] = [p for p in cluster.cache(i).iterdir() if p.is_dir() and len(p.name) == 64]
        assert (entry / "code" / "data" / "prices.txt").read_text() == "42\n"


@pytest.mark.parametrize("mode", ["random", "affinity"])
def test_a_rollout_under_load_fails_no_request_and_rolls_back(cluster, client, tmp_path, mode):
    realm = f"roll-{mode}"
    deployed(cluster, realm, write_realm(tmp_path / "v1", "one"))
    spawn_on_each(client, realm, "svc")
    v2 = deployed(cluster, realm, write_realm(tmp_path / "v2", "two"))
    assert v2 == "v2"
    assert versions_running(client, realm, "svc") == ["v1", "v1", "v1"]  # a deploy moves nothing by itself
    client.setRealm(realm)
    with SteadyLoad(client, "svc", mode) as load:
        result = cli("rollout", str(cluster.client_config), realm, "svc", "--json")
        assert result.returncode == 0, result.stderr
        rolled = yaml.safe_load(result.stdout)
        assert rolled["version"] == "v2" and len(rolled["replaced"]) == 3 and not rolled["failed"]
        assert versions_running(client, realm, "svc") == ["v2", "v2", "v2"]
        during = dict(load.counts)
        time.sleep(0.5)
        back = cli("rollout", str(cluster.client_config), realm, "svc", "--rollback", "--json")
        assert back.returncode == 0, back.stderr
        assert yaml.safe_load(back.stdout)["version"] == "v1"
        time.sleep(0.5)
    print(f"\nrollout ({mode}): {during}; after the rollback too: {load.counts}; answers by version {load.seen}")
    assert load.counts["failed"] == 0, load.errors[:5]
    assert load.counts["ok"] > 100 and load.seen.get("one") and load.seen.get("two")
    assert versions_running(client, realm, "svc") == ["v1", "v1", "v1"]
    current = [v for v in yaml.safe_load(cli("code", "list", str(cluster.client_config), realm, "--json").stdout)
               if v["current"]]
    assert [v["version"] for v in current] == ["v1"]


def test_supervised_and_patrol_actors_keep_their_specs_through_a_rollout(cluster, client, tmp_path):
    realm = "kept-specs"
    deployed(cluster, realm, write_realm(tmp_path / "v1", "one"))
    supervised = client.addActor("Echo", "ks/svc", realm=realm, restart="on-failure", parameters={"p": 1})
    assert supervised.isSuccess, supervised
    client.applyPatrol({"owner": "ks", "realm": realm,
                        "actors": [{"name": "pool", "actor": "Echo", "category": "ks/svc", "instances": 2}]})
    view = client._core.session.view
    wait_for(lambda: len(view.find(realm, "ks/svc")) == 3, 30, what="the patrol's two and the supervised one")
    deployed(cluster, realm, write_realm(tmp_path / "v2", "two"))
    result = cli("rollout", str(cluster.client_config), realm, "ks/svc", "--batch", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert len(yaml.safe_load(result.stdout)["replaced"]) == 3
    try:
        from .conftest import holds_for

        # the patrol counts the new ones in the old ones' place: it neither adds nor stops any
        holds_for(lambda: versions_running(client, realm, "ks/svc") == ["v2", "v2", "v2"], 5.0,
                  "three actors, all of version v2")
        [record] = [r for r in client.getSupervised().values() if r["realm"] == realm]
        [new] = [a for a in view.find(realm, "ks/svc") if a.sid]
        assert record["uid"] == new.uid != supervised.data["uid"] and record["state"] == "running"
        assert new.params == {"p": 1} and new.restart == "on-failure"
        owners = sorted(a.owner or "-" for a in view.find(realm, "ks/svc"))
        assert owners == ["-", "patrol/ks/pool", "patrol/ks/pool"]
    finally:
        client.removePatrol("ks")
        client.setRealm(realm)
        client.stopActors(withCategory="ks/svc")


def test_a_supervised_actor_keeps_its_version_through_restarts_until_a_rollout_moves_it(cluster, client, tmp_path):
    """A restarted (or drained) supervised actor runs the version it ran before, not the realm's
    current one, which its operator deployed but did not roll out; a rollout moves it, and its
    restarts follow. `beach status` shows the version."""
    realm = "pinned"
    deployed(cluster, realm, write_realm(tmp_path / "v1", "one"))
    first = client.addActor("Echo", "pin/svc", realm=realm, restart="on-failure")
    assert first.isSuccess and first.data["version"] == "v1", first
    [sid] = [s for s, r in client.getSupervised().items() if r["uid"] == first.data["uid"]]
    deployed(cluster, realm, write_realm(tmp_path / "v2", "two"))  # current now, not rolled out
    client.setRealm(realm)
    view = client._core.session.view
    handle = client.getActorHandle("pin/svc")

    def restarted(uid: str) -> dict[str, Any]:
        os.kill(view.actors[uid].pid, signal.SIGKILL)  # its actor host dies: the supervisor starts it again

        def back() -> bool:
            now = client.getSupervised()[sid]["uid"]
            return now != uid and now in view.actors
        wait_for(back, 30, what="the supervised actor to be restarted")
        return client.getSupervised()[sid]

    try:
        # a drain moves it off its node, still on v1
        node = first.data["node"]
        drained = cli("drain", str(cluster.client_config), node, "--json")
        assert drained.returncode == 0, drained.stderr
        assert cli("uncordon", str(cluster.client_config), node).returncode == 0
        record = client.getSupervised()[sid]
        assert record["version"] == "v1" and view.actors[record["uid"]].node != node
        assert view.actors[record["uid"]].version == "v1"
        # restarted, still on v1
        record = restarted(record["uid"])
        assert record["version"] == "v1" and view.actors[record["uid"]].version == "v1", record
        assert handle.request("echo", {"n": 1}).data["version"] == "one"
        status = cli("status", str(cluster.client_config))
        assert status.returncode == 0, status.stderr
        [row] = [line for line in status.stdout.splitlines() if "pinned/Echo" in line]
        assert "v1" in row and "v2" not in row, status.stdout
        # a rollout moves it to v2: its record follows, and so do its restarts
        rolled = cli("rollout", str(cluster.client_config), realm, "pin/svc", "--json")
        assert rolled.returncode == 0, rolled.stderr
        record = client.getSupervised()[sid]
        assert record["version"] == "v2", record
        record = restarted(record["uid"])
        assert record["version"] == "v2" and handle.request("echo", {"n": 2}).data["version"] == "two"
        assert len(record["restarts"]) == 2 and record["last_error"] is None
    finally:
        client.stopActors(withCategory="pin/svc")
        cli("uncordon", str(cluster.client_config), first.data["node"])


def test_two_versions_of_one_module_side_by_side_in_one_host(cluster, client, tmp_path):
    realm = "side"
    deployed(cluster, realm, write_realm(tmp_path / "v1", "one"))
    deployed(cluster, realm, write_realm(tmp_path / "v2", "two"))
    old = client.addActor("Echo", "side/old", realm=realm, strategy="host_affinity", strategy_hint=NODES[0],
                          version="v1")
    new = client.addActor("Echo", "side/new", realm=realm, strategy="host_affinity", strategy_hint=NODES[0])
    assert old.isSuccess and new.isSuccess, (old, new)
    assert old.data["host"] == new.data["host"]  # n_processes: 1, so one host process holds both
    client.setRealm(realm)
    a = client.getActorHandle("side/old").request("where")
    b = client.getActorHandle("side/new").request("where")
    assert a.isSuccess and b.isSuccess
    assert a.data["pid"] == b.data["pid"]
    assert (a.data["version"], b.data["version"]) == ("one", "two")
    assert a.data["file"] != b.data["file"]
    assert versions_running(client, realm, "side/old") == ["v1"]


def test_a_tampered_cached_bundle_is_refused(cluster, client, tmp_path):
    realm = "tamper"
    deployed(cluster, realm, write_realm(tmp_path / "code", "one"))
    first = client.addActor("Echo", "t", realm=realm, strategy="host_affinity", strategy_hint=NODES[1])
    assert first.isSuccess, first
    record = current_record(client, realm)
    cached = cluster.cache(1) / codestore.object_name(record.digest) / "bundle.tgz"
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    refused = client.addActor("Echo", "t", realm=realm, strategy="host_affinity", strategy_hint=NODES[1])
    assert not refused.isSuccess
    assert record.digest in refused.error and "tampered" in refused.error, refused.error
    again = client.addActor("Echo", "t", realm=realm, strategy="host_affinity", strategy_hint=NODES[1])
    assert again.isSuccess, again  # the bad copy was dropped: fetched again, checked, run


def crafted(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def member(name: str, content: bytes | None = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> Any:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(content) if content is not None and kind == tarfile.REGTYPE else 0
    return info, content if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("bad", ["../evil.py", "/abs/evil.py", "sub/../../evil.py", "link"])
def test_a_bundle_with_entries_out_of_bounds_is_refused_by_the_node(cluster, client, tmp_path, bad):
    """A bundle written past `beach deploy` (straight into the store, then recorded): the node
    refuses its bad entry, names it, and writes nothing outside its cache."""
    good = member("Echo.py", ECHO.encode())
    evil = member("link", kind=tarfile.SYMTYPE, link="/etc/passwd") if bad == "link" else member(bad, b"boom")
    data = crafted([good, member("helpers.py", b"VERSION = 'x'\n"), evil])
    packed = bundle.Bundle(data, bundle.digest_of(data), len(data), 3)
    realm = f"crafted{['../evil.py', '/abs/evil.py', 'sub/../../evil.py', 'link'].index(bad)}"
    core = client._core

    async def plant() -> Any:
        await codestore.upload(core.session, packed)
        record = codestore.version_record(realm, "v1", packed, "mallory", [], False)
        return await core._change_desired(put={codestore.version_key(realm, "v1"): record,
                                               codestore.current_key(realm): {"realm": realm, "version": "v1"}},
                                          realm=realm)

    assert client._runner.run(plant()).isSuccess
    response = client.addActor("Echo", "c", realm=realm, strategy="host_affinity", strategy_hint=NODES[2])
    assert not response.isSuccess
    shown = {"../evil.py": "..", "/abs/evil.py": "/abs", "sub/../../evil.py": "..", "link": "link"}[bad]
    assert shown in response.error and "refused" in response.error.lower(), response.error
    assert not (cluster.cache(2).parent / "evil.py").exists() and not Path("/abs/evil.py").exists()


def test_a_realm_with_a_pip_requirement(cluster, client, tmp_path):
    realm = "withdeps"
    code = write_realm(tmp_path / "code", "one", **{
        "requirements.txt": "beachtinydep==1.0\n",
        "Dep.py": "from beach.actor import Actor\nimport beachtinydep\n\n\nclass Dep(Actor):\n"
                  "    def init(self, parameters):\n"
                  "        self.handle('value', lambda msg: (True, beachtinydep.VALUE))\n"})
    deployed(cluster, realm, code)
    ok = client.addActor("Dep", "dep", realm=realm, strategy="host_affinity", strategy_hint=NODES[0])
    assert ok.isSuccess, ok
    client.setRealm(realm)
    assert client.getActorHandle("dep").request("value").data == 42
    digest = current_record(client, realm).digest
    assert (cluster.cache(0) / codestore.object_name(digest) / "deps" / "beachtinydep" / "__init__.py").is_file()
    refused = client.addActor("Dep", "dep", realm=realm, strategy="host_affinity", strategy_hint=NODES[2])
    assert not refused.isSuccess
    assert "beachtinydep==1.0" in refused.error and "code.pip: false" in refused.error, refused.error


def test_a_node_joins_with_only_a_nats_url(cluster, client, tmp_path):
    deployed(cluster, "joined", write_realm(tmp_path / "code", "one"))
    pushed = cli("config", "push", str(cluster.client_config), "--json")
    assert pushed.returncode == 0, pushed.stderr
    report = yaml.safe_load(pushed.stdout)
    assert "admin_token" in report["left_out"] and "code_directory" in report["left_out"]
    token = tmp_path / "token"
    token.write_text(ADMIN_TOKEN)
    state = tmp_path / "joiner-state"
    joiner = NamespacedNode(NAMESPACES[0], "joiner", ["-m", "beach.cli", "node", cluster.url, "--node-id", "joiner",
                                                      "--admin-token-file", str(token), "--state", str(state)])
    try:
        joiner.wait_registered(client, 60)
        written = yaml.safe_load((state / "beach.yaml").read_text())
        assert written["nats"]["servers"][0] == cluster.url and written["n_processes"] == 1
        assert oct((state / "beach.yaml").stat().st_mode & 0o777) == "0o600"
        response = client.addActor("Echo", "j", realm="joined", strategy="host_affinity", strategy_hint="joiner")
        assert response.isSuccess, response
        client.setRealm("joined")
        assert client.getActorHandle("j").request("echo", {"n": 1}).data == {"version": "one", "n": 1}
    finally:
        assert joiner.terminate() == 0


def test_a_drained_node_loses_no_request_and_takes_no_new_actor(cluster, client, tmp_path):
    realm = "drainy"
    deployed(cluster, realm, write_realm(tmp_path / "code", "one"))
    target = NODES[1]
    for _ in range(3):
        assert client.addActor("Echo", "d", realm=realm, strategy="host_affinity", strategy_hint=target).isSuccess
    assert client.addActor("Echo", "d", realm=realm, strategy="host_affinity", strategy_hint=NODES[0]).isSuccess
    view = client._core.session.view
    client.setRealm(realm)
    with SteadyLoad(client, "d") as load:
        drained = cli("drain", str(cluster.client_config), target, "--json")
        assert drained.returncode == 0, drained.stderr
        time.sleep(0.5)
    print(f"\ndrain of {target}: requests {load.counts}")
    try:
        assert load.counts["failed"] == 0, load.errors[:5]
        assert load.counts["ok"] > 50
        assert not [a for a in view.find(realm, "d") if a.node == target]
        assert len(view.find(realm, "d")) == 4
        wait_for(lambda: view.nodes[target].cordoned, 10, what="the cordon in the registry")
        for _ in range(6):
            response = client.addActor("Echo", "d2", realm=realm)
            assert response.isSuccess and response.data["node"] != target, response
    finally:
        undone = cli("uncordon", str(cluster.client_config), target)
        assert undone.returncode == 0, undone.stderr
    wait_for(lambda: not view.nodes[target].cordoned, 10, what="the cordon lifted")
    assert client.addActor("Echo", "d3", realm=realm, strategy="host_affinity", strategy_hint=target).isSuccess


def test_backup_and_restore_into_a_fresh_cluster(cluster, client, tmp_path):
    realm = "kept"
    deployed(cluster, realm, write_realm(tmp_path / "v1", "one"))
    deployed(cluster, realm, write_realm(tmp_path / "v2", "two"))
    sup = client.addActor("Echo", "kept/sup", realm=realm, restart="on-failure")
    assert sup.isSuccess, sup
    spec = {"owner": "kept-patrol", "realm": realm,
            "actors": [{"name": "echoes", "actor": "Echo", "category": "kept/patrol", "instances": 2}]}
    client.applyPatrol(spec)
    backup_file = tmp_path / "backup.beach"
    saved = cli("backup", str(cluster.client_config), str(backup_file), "--json")
    assert saved.returncode == 0, saved.stderr
    summary = yaml.safe_load(saved.stdout)
    assert summary["bundles"] >= 2 and summary["sup"] >= 1 and summary["patrol"] >= 1
    assert oct(backup_file.stat().st_mode & 0o777) == "0o600"
    client.removePatrol("kept-patrol")
    assert client.stopActors(withId=sup.data["uid"]).isSuccess

    # a fresh cluster on loopback: its own server and a node with an empty code directory
    with LocalCluster(nodes=1) as fresh:
        other = fresh.client()
        restored = cli("restore", fresh.config_path, str(backup_file), "--json")
        assert restored.returncode == 0, restored.stderr
        assert yaml.safe_load(restored.stdout)["bundles"] == summary["bundles"]
        view = other._core.session.view
        wait_for(lambda: len(view.find(realm, "kept/patrol")) == 2 and len(view.find(realm, "kept/sup")) == 1,
                 40, what="the supervised actor and the patrol's two to start from the restored state")
        other.setRealm(realm)
        assert other.getActorHandle("kept/sup").request("echo", {"n": 5}).data == {"version": "two", "n": 5}
        listing = yaml.safe_load(cli("code", "list", fresh.config_path, realm, "--json").stdout)
        assert [(v["version"], v["current"]) for v in listing] == [("v1", False), ("v2", True)]
        assert other.flush()
        assert fresh.stop_node("local-1") == 0


def test_deploy_needs_admin_rights(cluster, tmp_path):
    config = cluster.config("no-token", admin_token=None)
    result = cli("deploy", str(config), "denied", str(write_realm(tmp_path / "code", "one")))
    assert result.returncode == 2  # (the config's fault: it has no rights)
    assert "deploy needs admin rights" in result.stderr and "no admin_token" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    listing = cli("code", "list", str(cluster.client_config), "denied", "--json")
    assert yaml.safe_load(listing.stdout) == []
    wrong = cluster.config("wrong-token", admin_token="not-the-token")
    result = cli("deploy", str(wrong), "denied", str(tmp_path / "code"))
    assert result.returncode == 1 and "unprivileged" in result.stderr, result.stderr


def test_clear_errors_for_bad_versions_directories_and_realms(cluster, client, tmp_path):
    config = str(cluster.client_config)
    code = write_realm(tmp_path / "code", "one")
    deployed(cluster, "errs", code)
    cases = [
        (cli("code", "rollback", config, "errs", "v99"), "has no version 'v99' (deployed: v1)"),
        (cli("code", "rollback", config, "errs"), "nothing before it"),
        (cli("rollout", config, "errs", "e", "--version", "v7"), "has no version 'v7'"),
        (cli("deploy", config, "errs", str(tmp_path / "missing")), "no such directory"),
        (cli("deploy", config, "a realm!", str(code)), "realm"),
        (cli("deploy", config, "errs", str(code), "--version", "../x"), "is not a version name"),
        (cli("code", "rollback", config, "never-deployed"), "has no deployed code"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((cli("deploy", config, "errs", str(tmp_path / "empty")), "nothing to deploy"))
    other = write_realm(tmp_path / "other", "two")
    cases.append((cli("deploy", config, "errs", str(other), "--version", "v1"), "already has a version 'v1'"))
    big = write_realm(tmp_path / "big", "one", **{"blob.txt": "x" * 200_000})
    small = cluster.config("small-limit", code={"max_bundle_bytes": 100_000})
    cases.append((cli("deploy", str(small), "errs", str(big)), "before any upload"))
    for result, expected in cases:
        assert result.returncode != 0, (result.args, result.stdout)
        assert expected in result.stderr, (result.args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    unknown = client.addActor("Echo", "e", realm="errs", version="v42")
    assert not unknown.isSuccess and "has no version 'v42'" in unknown.error, unknown


def test_a_large_bundle_goes_up_and_down_in_chunks(cluster, client, tmp_path):
    realm = "large"
    code = write_realm(tmp_path / "code", "one")
    (code / "blob.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    from beach.code import deploy

    seen: list[tuple[int, int]] = []
    record = client._runner.run(deploy.deploy(client._core, realm, code, progress=lambda d, t: seen.append((d, t))))
    assert record.size > 24 * 1024 * 1024
    assert len(seen) > 100 and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)
    started = time.monotonic()
    response = client.addActor("Echo", "big", realm=realm, strategy="host_affinity", strategy_hint=NODES[2])
    assert response.isSuccess, response
    print(f"\n24 MiB bundle: fetched and unpacked by a node in {time.monotonic() - started:.1f}s")
    cached = cluster.cache(2) / codestore.object_name(record.digest) / "code" / "blob.bin"
    assert cached.read_bytes() == (code / "blob.bin").read_bytes()
