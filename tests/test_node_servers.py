"""Every node carries the bus (issue 23): each node runs its own nats-server, joined to the others by
routes; JetStream stays quorate and replicated; losing any node, the first included, loses nothing
else; a client waits for the cluster.

Nodes are started the documented way, as a person does (``beach up CONFIG`` on the first,
``beach config push``, then ``beach node nats://FIRST:PORT`` on the others), as processes of their
own: several on this machine's loopback (``--nats-port`` / ``--route-port``), and three machines,
each a network namespace of its own on a bridge (needs root and iproute2; skipped otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import psutil
import pytest
import yaml

from beach.beach_api import Beach
from beach.bus import clustering
from beach.bus.embedded import EmbeddedServer
from beach.config import load
from beach.errors import BusError
from beach.security import roles
from beach.state import clusterconfig
from beach.wire import subjects
from nodeagent.busserver import REPLICATED_STREAMS

from .bridge import NamespacedNode
from .conftest import ACTORS, ADMIN_TOKEN, LEDGER, Load, wait_for
from .conftest import free_port as free

GROWTH_BOUND = 30.0  # seconds from the third JetStream server joining to three replicas everywhere


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent / "modules"))
    return subprocess.run([sys.executable, "-m", "beach.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def first_config(path: Path, port: int, cluster_port: int = 0, **nats: Any) -> Path:
    """The config of a cluster's first node (its own server on ``port``), as a person writes one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = {"code_directory": str(ACTORS), "actor_modules": ["beach_test_actors"], "n_processes": 1,
           "admin_token": ADMIN_TOKEN, "code": {"cache": str(path.parent / "code-cache")},
           "nats": {"port": port, "cluster_port": cluster_port, "store_dir": str(path.parent / "nats"), **nats}}
    path.write_text(yaml.safe_dump(raw))
    return path


def kill_whole(node: NamespacedNode) -> list[int]:
    """SIGKILL a node's agent, hosts and NATS server(s) at once, as when its machine is lost."""
    procs = [psutil.Process(node.process.pid)]
    procs += procs[0].children(recursive=True)
    for proc in procs:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    node.process.wait()
    return [p.pid for p in procs]


def servers_of(node: NamespacedNode) -> list[psutil.Process]:
    """The nats-server processes of a node (its server, and its anchor while it has one)."""
    found = []
    for p in psutil.Process(node.process.pid).children(recursive=True):
        try:
            if p.name() == "nats-server":
                found.append(p)
        except psutil.NoSuchProcess:  # (a child that ended between the listing and the look: a server
            continue  # being restarted, or a short-lived helper process)
    return found


def identity(store: Path) -> clustering.Identity:
    found = clustering.Identity.load(str(store))
    assert found is not None, f"no server identity in {store}"
    return found


def streams(client: Beach) -> dict[str, tuple[int, list[str], bool]]:
    """``{stream: (replicas configured, its servers, all of them current)}`` for beach's replicated streams."""

    async def read() -> dict[str, tuple[int, list[str], bool]]:
        js = client._core.session.nc.jetstream(timeout=5)
        found = {}
        for name in REPLICATED_STREAMS:
            try:
                info = await js.stream_info(name)
            except Exception:
                continue
            cluster = info.cluster
            peers = [cluster.leader] + [r.name for r in cluster.replicas or []] if cluster and cluster.leader else []
            current = bool(cluster and cluster.leader) and all(r.current for r in cluster.replicas or [])
            found[name] = (info.config.num_replicas, sorted(p for p in peers if p), current)
        return found

    return client._runner.run(read())


def replicated_on(client: Beach, names: set[str]) -> bool:
    """True if every replicated stream has three current replicas, on exactly ``names``."""
    found = streams(client)
    return len(found) == len(REPLICATED_STREAMS) and all(
        replicas == 3 and set(peers) == names and current for replicas, peers, current in found.values())


def wait_replicated(client: Beach, names: set[str], timeout: float) -> float:
    """Wait until every replicated stream has three current replicas on ``names``; return how long
    it took. Fails the test with the streams as they are, after ``timeout`` seconds."""
    started = time.monotonic()
    while not replicated_on(client, names):
        if time.monotonic() - started > timeout:
            pytest.fail(f"after {timeout}s the replicated streams are not on 3 current replicas of {sorted(names)}: "
                        f"{streams(client)}")
        time.sleep(0.5)
    return time.monotonic() - started


# ---------------------------------------------------------------- the config of a node's server


def test_node_server_config_keys(tmp_path):
    from beach.config import parse
    from beach.errors import ConfigError

    config = parse({"nats": {"port": 4300, "cluster_port": 0, "listen": "0.0.0.0", "advertise": "10.0.0.7",
                             "join": ["10.0.0.5:4222", "nats://10.0.0.6:4222"], "connect_wait": 2}, "node_wait": 3})
    assert config.nats.join == ["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"]
    assert config.nats.urls == ["nats://127.0.0.1:4300", "nats://10.0.0.5:4222", "nats://10.0.0.6:4222"], \
        "the local server first, then the ones it joined through"
    assert clustering.advertised_host(config) == "10.0.0.7"
    assert parse({"nats": {"servers": ["nats://a:1"], "join": ["nats://b:2"]}}).nats.urls == ["nats://a:1"]
    for bad, says in (({"port": 0}, "'nats.port' must be a whole number >= 1"),
                      ({"port": 65536}, "'nats.port' must be a whole number <= 65535"),
                      ({"cluster_port": -1}, "'nats.cluster_port' must be a whole number >= 0"),
                      ({"cluster_port": 70000}, "'nats.cluster_port' must be a whole number <= 65535"),
                      ({"listen": "10.0.0.1:4222"}, "'nats.listen' must be a string matching regex"),
                      ({"advertise": "0.0.0.0:1"}, "'nats.advertise' must be a string matching regex"),
                      ({"advertise": ""}, "'nats.advertise' must be a string matching regex"),
                      ({"join": [""]}, "'nats.join[0]' must be a non-empty string"),
                      ({"connect_wait": 0}, "'nats.connect_wait' must be a number > 0")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            parse({"nats": bad})


def test_a_node_server_config_authenticates_its_routes(tmp_path):
    """The configuration a node writes for its server: routes carry the cluster's route password
    (derived from the admin token here), the anchor advertises no client URL, and the system
    account has one user."""
    from beach.config import parse

    config = parse({"admin_token": "t0ken", "nats": {"listen": "10.0.0.5"}})
    spec = clustering.ServerSpec(name="n1-abc", listen="10.0.0.5", port=4222, advertise="10.0.0.5", route_port=6222,
                                 store_dir=str(tmp_path), jetstream=True, system_password="sys-pw",
                                 routes=["nats-route://10.0.0.6:6222", "nats-route://10.0.0.5:6222"])
    text = clustering.server_config(spec, config, str(tmp_path))
    user, password = clustering.route_credentials(config)
    assert f'nats-route://{user}:{password}@10.0.0.6:6222' in text
    assert "10.0.0.5:6222@" not in text and text.count("nats-route://") == 1, "no route to itself"
    assert f'authorization {{ user: "{user}", password: "{password}"' in text
    assert 'client_advertise: "10.0.0.5:4222"' in text and "no_advertise" not in text
    assert 'user: "beach-system", password: "sys-pw"' in text and "system_account: SYS" in text
    assert f'jetstream {{ store_dir: "{tmp_path}", sync_interval: "always" }}' in text, "fsync before each ack"
    lazy = parse({"nats": {"sync_interval": "2m"}})
    assert 'sync_interval: "2m"' in clustering.server_config(spec, lazy, str(tmp_path))
    anchor = clustering.server_config(dataclasses.replace(spec, advertise_clients=False), config, str(tmp_path))
    assert "no_advertise: true" in anchor and "client_advertise" not in anchor
    assert clustering.route_credentials(parse({})) is None, "no secret: an open bus, open routes"


# ---------------------------------------------------------------- the client waits


def test_a_client_with_no_bus_fails_clearly_after_its_wait(tmp_path):
    config = first_config(tmp_path / "beach.yaml", free(), connect_wait=1)
    started = time.monotonic()
    with pytest.raises(BusError, match=r"cannot connect to NATS .* \(tried for 1s\).*is the node running"):
        Beach(config)
    assert time.monotonic() - started < 5


def test_a_call_that_needs_a_node_waits_for_the_first_one(tmp_path):
    """The bus up, no node yet: getNodeCount and addActor wait up to ``node_wait`` for the first
    node — one that registers meanwhile takes the actor — and with none answer 0 / the clear
    "registry is empty" error once the wait is over (bounded: not a hang)."""
    import threading

    from .conftest import NodeProcess, write_config

    store = tmp_path / "nats"
    server = EmbeddedServer(free(), str(store / "js"), name=f"wait-{os.getpid()}",
                            log_file=str(store / "nats.log")).start()
    nodes: list[NodeProcess] = []
    try:
        config = write_config(tmp_path / "beach.yaml", server.url, n_processes=1, node_wait=2)
        with Beach(config) as client:
            started = time.monotonic()
            assert client.getNodeCount() == 0
            counted = time.monotonic() - started
            empty = client.addActor("Pong", "wait/pong")
            refused = time.monotonic() - started - counted
            assert not empty.isSuccess and "the node registry is empty" in empty.error, empty
            assert 2 <= counted < 10 and 2 <= refused < 10, (counted, refused)
        config = write_config(tmp_path / "beach.yaml", server.url, n_processes=1, node_wait=90)
        with Beach(config) as client:
            later = threading.Timer(1.0, lambda: nodes.append(NodeProcess(config, "late-node")))
            later.start()
            started = time.monotonic()
            placed = client.addActor("Pong", "wait/pong")
            waited = time.monotonic() - started
            later.join()
            assert placed.isSuccess and placed.data["node"] == "late-node", placed
            assert client.getActorHandle("wait/pong").request("ping").isSuccess
            assert client.getNodeCount() == 1
        print(f"\nno node: getNodeCount answered 0 after {counted:.1f}s, addActor refused after {refused:.1f}s "
              f"(node_wait 2); a node started 1 s after addActor was asked took the actor {waited:.1f}s after")
        assert waited > 1.0
    finally:
        for node in nodes:
            assert node.terminate() == 0
        server.stop()


def test_a_client_started_with_its_node_works_every_time(tmp_path):
    """A script started in the same second as its node (here: at once) connects, waits for the node
    to register and places an actor: 20 runs out of 20, each from a fresh state directory."""
    outcomes = []
    for run in range(20):
        config = first_config(tmp_path / f"run{run}" / "beach.yaml", free())
        node = NamespacedNode(None, f"same-{run}", ["-m", "beach.cli", "up", str(config), "--node-id", f"same-{run}"])
        started = time.monotonic()
        try:
            with Beach(config) as client:
                connected = time.monotonic() - started
                placed = client.addActor("Pong", "same/second")
                ok = placed.isSuccess and client.getActorHandle("same/second").request("ping").isSuccess
                outcomes.append((ok, round(connected, 2), round(time.monotonic() - started, 2), placed.error))
        finally:
            code = node.terminate()
        assert code == 0, f"run {run}: the node exited with {code}"
    print(f"\nclient and node started together: {sum(o[0] for o in outcomes)}/20 placed an actor and had its "
          f"answer; connected after {min(o[1] for o in outcomes)}-{max(o[1] for o in outcomes)}s, "
          f"done after {min(o[2] for o in outcomes)}-{max(o[2] for o in outcomes)}s")
    assert all(o[0] for o in outcomes), [o for o in outcomes if not o[0]]


# ---------------------------------------------------------------- several nodes on one machine


class Joined:
    """Nodes joined the documented way: ``beach up`` on the first (``start(0)``), ``beach config
    push`` (`push`), ``beach node URL`` on the others (``start(i)``), each with a state directory of
    its own under ``root``; ``client_config`` is what the test's client uses."""

    prefix = "node"

    def __init__(self, root: Path, config: Path, client_config: Path) -> None:
        self.root = root
        self.config = config
        self.client_config = client_config
        self.token = root / "token"
        self.token.write_text(ADMIN_TOKEN)
        self.nodes: dict[str, NamespacedNode] = {}

    def argv(self, i: int) -> list[str]:
        """How node ``i`` is started (its node id is ``<prefix>-<i>``)."""
        raise NotImplementedError

    def namespace(self, i: int) -> str | None:
        return None

    def start(self, i: int) -> NamespacedNode:
        node_id = f"{self.prefix}-{i}"
        self.nodes[node_id] = NamespacedNode(self.namespace(i), node_id, [*self.argv(i), "--node-id", node_id])
        return self.nodes[node_id]

    def push(self) -> None:
        inside = ["ip", "netns", "exec", self.namespace(0)] if self.namespace(0) else []
        pushed = subprocess.run([*inside, sys.executable, "-m", "beach.cli", "config", "push", str(self.config)],
                                capture_output=True, text=True, timeout=120)
        assert pushed.returncode == 0, pushed.stderr

    def bring_up(self, count: int = 3) -> None:
        """Start the first node, push the config, join the others; each registered in turn."""
        self.start(0)
        with Beach(self.client_config) as client:
            self.nodes[f"{self.prefix}-0"].wait_registered(client, 60)
            self.push()
            for i in range(1, count):
                self.start(i).wait_registered(client, 90)

    def store(self, i: int) -> Path:
        return self.config.parent / "nats" if i == 0 else self.root / f"{self.prefix}-{i}" / "nats"

    def names(self, *indexes: int) -> set[str]:
        return {identity(self.store(i)).name for i in indexes}

    def stop(self) -> dict[str, int]:
        return {node_id: node.terminate() for node_id, node in self.nodes.items() if node.process.poll() is None}


@contextlib.contextmanager
def brought_up(joined: Joined) -> Iterator[Joined]:
    """``joined``, up for the block; every node must then stop cleanly (exit 0)."""
    try:
        joined.bring_up()
        yield joined
        codes = joined.stop()
        assert set(codes.values()) <= {0}, codes
    finally:
        joined.stop()


class Machine(Joined):
    """Nodes on this machine's loopback, each with ports of its own (``--nats-port``, ``--route-port``)."""

    prefix = "lo"

    def __init__(self, root: Path) -> None:
        self.ports = [free() for _ in range(4)]
        self.route_ports = [free() for _ in range(4)]
        config = first_config(root / "first" / "beach.yaml", self.ports[0], self.route_ports[0])
        super().__init__(root, config, config)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.ports[0]}"

    def argv(self, i: int) -> list[str]:
        if i == 0:
            return ["-m", "beach.cli", "up", str(self.config)]
        return ["-m", "beach.cli", "node", self.url, "--nats-port", str(self.ports[i]), "--route-port",
                str(self.route_ports[i]), "--state", str(self.root / f"lo-{i}"), "--admin-token-file", str(self.token)]


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Joined]:
    with brought_up(Machine(tmp_path_factory.mktemp("one-machine"))) as machine:
        yield machine


@pytest.fixture
def client(machine: Joined) -> Iterator[Beach]:
    with Beach(machine.config) as client:
        yield client
        client._admin_token = ADMIN_TOKEN
        client.flush()


def test_several_nodes_on_one_machine_grow_to_three_replicas(machine, client):
    """Each node runs its own server on the ports it was given; the first carried its anchor until
    three machines carried JetStream; every replicated stream gets three current replicas, on the
    three servers, within 30 s of the third one joining."""
    third = machine.nodes["lo-2"].started
    names = machine.names(0, 1, 2)
    wait_replicated(client, names, GROWTH_BOUND + 30)
    grown = time.monotonic() - third
    wait_for(lambda: not identity(machine.store(0)).anchor, GROWTH_BOUND, interval=0.5,
             what="the anchor to be retired")
    retired = time.monotonic() - third
    print(f"\ngrowth: every replicated stream on 3 current replicas {grown:.1f}s after the third node started, "
          f"the anchor retired after {retired:.1f}s ({streams(client)})")
    assert grown < GROWTH_BOUND
    assert identity(machine.store(0)).jetstream and not (machine.store(0) / "anchor").exists()
    assert replicated_on(client, names), "the anchor left no replica behind"
    for i in (1, 2):
        joined = load(machine.root / f"lo-{i}" / "beach.yaml")
        assert (joined.nats.port, joined.nats.cluster_port) == (machine.ports[i], machine.route_ports[i])
        assert joined.nats.join[0] == machine.url and identity(machine.store(i)).jetstream
        assert any(  # its own server listens on its own ports
            c.laddr.port == machine.ports[i] for p in servers_of(machine.nodes[f"lo-{i}"])
            for c in p.net_connections() if c.status == psutil.CONN_LISTEN)
    # a request reaches actors on every node
    for node_id in machine.nodes:
        assert client.addActor(LEDGER, "lo/everywhere", strategy="host_affinity", strategy_hint=node_id).isSuccess
    served = {client.getActorHandle("lo/everywhere").request("who").data["uid"] for _ in range(60)}
    assert len(served) == 3


def routed(route_port: int, subject: str, root: Path, credentials: tuple[str, str] | None,
           tls: dict[str, str] | None = None) -> bool:
    """True if a server of our own, routing to ``route_port`` with ``credentials`` (and ``tls``:
    certificate, key and CA files), gets an answer from the cluster on ``subject``."""
    host = "127.0.0.1"
    route = f"nats-route://{host}:{route_port}"
    if credentials is not None:
        route = f"nats-route://{credentials[0]}:{credentials[1]}@{host}:{route_port}"
    root.mkdir(parents=True, exist_ok=True)
    block = ""
    if tls is not None:
        block = "tls { " + ", ".join(f'{k}: "{v}"' for k, v in tls.items()) + ", verify: true }"
    conf = root / "rogue.conf"
    conf.write_text(f'cluster {{\n  name: {clustering.CLUSTER_NAME}\n  listen: "{host}:{free()}"\n'
                    f'  routes: ["{route}"]\n  {block}\n}}\n')
    rogue = EmbeddedServer(free(), str(root / "store"), name=f"rogue-{root.name}", jetstream=False,
                           config_file=str(conf), log_file=str(root / "rogue.log"))
    with rogue:
        async def ask() -> bool:
            nc = await nats.connect(rogue.url)
            try:
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    try:
                        await nc.request(subject, b"", timeout=1)
                        return True
                    except Exception:  # no responders (not routed), or not yet
                        await asyncio.sleep(0.25)
                return False
            finally:
                await nc.close()

        return asyncio.run(ask())


def test_routes_refuse_a_server_without_the_cluster_credentials(machine, client, tmp_path):
    """A route port is no way around the bus's rules: a server that routes to it without the
    route password gets nothing of the cluster; the same server with it does (the control)."""
    assert client.addActor(LEDGER, "lo/routed").isSuccess
    subject = subjects.request_subject("global", "lo/routed")
    port = machine.route_ports[0]
    assert not routed(port, subject, tmp_path / "without", None), "a server without the route password joined"
    assert routed(port, subject, tmp_path / "with", clustering.route_credentials(load(machine.config))), \
        "the control: with it, it does"


def test_a_node_whose_server_dies_gets_it_back(machine, client):
    """docs/operations.md: a node's NATS server killed alone (SIGKILL), its agent alive: the agent and
    hosts carry on through the other servers, the agent starts its server again as itself; no
    request fails meanwhile."""
    for node_id in machine.nodes:
        assert client.addActor(LEDGER, "lo/server", strategy="host_affinity", strategy_hint=node_id).isSuccess
    node = machine.nodes["lo-1"]
    [server] = servers_of(node)
    load = Load(client, "lo/server", retries=2, request="work", once=True)
    time.sleep(0.5)
    killed = time.monotonic()
    server.kill()
    wait_for(lambda: [p for p in servers_of(node) if p.pid != server.pid], 20, what="the server started again")
    back = time.monotonic() - killed
    wait_replicated(client, machine.names(0, 1, 2), 30)
    current = time.monotonic() - killed
    time.sleep(1)
    counts = load.stop()
    print(f"\na node's server SIGKILLed alone: started again after {back:.1f}s, its replicas current after "
          f"{current:.1f}s; requests {counts}")
    assert counts["failed"] == 0, load.errors[:5]
    assert "lo-1" in client._core.session.view.nodes


def test_a_node_removed_for_good_frees_its_jetstream_place(machine, client):
    """``beach nodes remove CONFIG NODE``: a node gone for good leaves the JetStream peer set and
    its place goes to the next node that joins, which carries JetStream: three current replicas
    again, on the new set."""
    gone = machine.nodes["lo-2"]
    name = identity(machine.store(2)).name
    kill_whole(gone)
    wait_for(lambda: "lo-2" not in client._core.session.view.nodes, 20, what="the lost node to leave the registry")
    refused = cli("nodes", "remove", str(machine.config), "lo-1", "--json")
    assert refused.returncode == 1 and "is running: stop it first" in refused.stderr
    removed = cli("nodes", "remove", str(machine.config), "lo-2", "--json")
    assert removed.returncode == 0, removed.stderr
    assert yaml.safe_load(removed.stdout)["servers"] == [name]

    async def table() -> clusterconfig.Servers:
        nc = client._core.session.nc
        return await clusterconfig.servers(await clusterconfig.open_bucket(nc, client._core.session.config))

    known = client._runner.run(table())
    assert name not in known.servers and name not in [s.server for s in known.slots.values()]
    newcomer = machine.start(3)
    newcomer.wait_registered(client, 90)
    assert identity(machine.store(3)).jetstream, "the new node took the free JetStream place"
    wait_replicated(client, machine.names(0, 1, 3), GROWTH_BOUND + 30)


def test_secure_nodes_route_over_tls_with_the_node_credentials(tmp_path):
    """With ``--secure DIR`` (made with --tls), routes need the node user's credentials and TLS:
    a server with the node password but no certificate gets nothing; with both it routes (the
    control). Two nodes on this machine, joined the documented way."""
    creds = tmp_path / "secure"
    roles.init(str(creds), tls_hosts=["127.0.0.1"])
    ports, route_ports = [free(), free()], [free(), free()]
    config = first_config(tmp_path / "first" / "beach.yaml", ports[0], route_ports[0])
    url = f"nats://127.0.0.1:{ports[0]}"
    admin = tmp_path / "admin.yaml"
    # (the client is started with the node, whose server needs a few seconds to come up under load)
    admin.write_text(yaml.safe_dump({"nats": {"servers": [url], "auth_file": str(creds / "admin.auth"),
                                              "connect_wait": 30}}))
    nodes = [NamespacedNode(None, "sec-0", ["-m", "beach.cli", "up", str(config), "--node-id", "sec-0",
                                            "--secure", str(creds)])]
    try:
        with Beach(admin) as client:
            nodes[0].wait_registered(client, 60)
            pushed = subprocess.run([sys.executable, "-m", "beach.cli", "config", "push", str(config)],
                                    capture_output=True, text=True, timeout=120,
                                    env=dict(os.environ, BEACH_AUTH_FILE=str(creds / "admin.auth")))
            assert pushed.returncode == 0, pushed.stderr
            nodes.append(NamespacedNode(None, "sec-1", [
                "-m", "beach.cli", "node", url, "--node-id", "sec-1", "--secure", str(creds), "--nats-port",
                str(ports[1]), "--route-port", str(route_ports[1]), "--state", str(tmp_path / "second")]))
            nodes[1].wait_registered(client, 90)
            assert client.addActor(LEDGER, "sec/routed", strategy="host_affinity", strategy_hint="sec-1").isSuccess
            subject = subjects.request_subject("global", "sec/routed")
            node = yaml.safe_load((creds / "node.auth").read_text())
            password = (node["user"], node["password"])
            tls = {"cert_file": str(creds / "tls" / "server.pem"), "key_file": str(creds / "tls" / "server-key.pem"),
                   "ca_file": str(creds / "tls" / "ca.pem")}
            assert not routed(route_ports[0], subject, tmp_path / "plain", password), "a route without TLS joined"
            assert not routed(route_ports[0], subject, tmp_path / "nopassword", None, tls), \
                "a route without the node's password joined"
            assert routed(route_ports[0], subject, tmp_path / "both", password, tls), "the control: with both, it does"
        assert [n.terminate() for n in nodes] == [0, 0]
    finally:
        for n in nodes:
            n.terminate()


def test_a_one_node_store_of_an_earlier_version_runs_alone_and_says_how_to_grow(tmp_path):
    """NATS cannot make a standalone JetStream store clustered: a store an earlier beach left (no
    server identity) is run as it was, alone; a node that tries to join it is told why, and the
    backup/restore path to grow."""
    config = first_config(tmp_path / "first" / "beach.yaml", free())
    store = tmp_path / "first" / "nats"
    with EmbeddedServer(free(), str(store)) as earlier:  # what beach up ran before: standalone JetStream
        async def write() -> None:
            nc = await nats.connect(earlier.url)
            await (await nc.jetstream().create_key_value(bucket="beach_desired")).put("kept", b"1")
            await nc.close()

        asyncio.run(write())
    first = NamespacedNode(None, "old-0", ["-m", "beach.cli", "up", str(config), "--node-id", "old-0"])
    try:
        with Beach(config) as client:
            first.wait_registered(client, 60)
            assert not identity(store).clustered and "cluster {" not in (store / "nats-server.conf").read_text()
            pushed = cli("config", "push", str(config))
            assert pushed.returncode == 0, pushed.stderr
            token = tmp_path / "token"
            token.write_text(ADMIN_TOKEN)
            joining = cli("node", f"nats://127.0.0.1:{load(config).nats.port}", "--node-id", "old-1",
                          "--nats-port", str(free()), "--route-port", "0", "--state", str(tmp_path / "second"),
                          "--admin-token-file", str(token))
            assert joining.returncode == 1
            assert "earlier version" in joining.stderr and "beach backup" in joining.stderr, joining.stderr
        assert first.terminate() == 0
    finally:
        first.terminate()


# ---------------------------------------------------------------- three machines (network namespaces)

TAG = os.getpid() % 10000
SUBNET = f"10.217.{TAG % 200 + 20}"
BRIDGE, BRIDGE_IP = f"bnbr{TAG}", f"{SUBNET}.1"
MACHINES = [f"bn{TAG}m{i}" for i in range(3)]
IPS = [f"{SUBNET}.{11 + i}" for i in range(3)]
ECHO = '''from beach.actor import Actor


class Echo(Actor):
    def init(self, parameters):
        self.handle("echo", lambda msg: (True, {"n": msg.data.get("n")}))
'''


def test_the_originals_iface_flag_sets_the_address_its_server_advertises(tmp_path):
    """``python -m beach.hostmanager CONFIG -i IFACE`` on a machine of its own (a namespace), its
    config listening on loopback (the default): the node's NATS server advertises IFACE's address
    (its client and route URLs in the cluster's server records) and is reached there from another
    machine, while the node's own processes reach it on loopback (an actor placed and answering)."""
    from .bridge import bridge

    subnet = f"10.218.{TAG % 200 + 20}"
    namespace, address, links = f"bi{TAG}m0", f"{subnet}.11", f"bi{TAG}"
    config = first_config(tmp_path / "node" / "beach.yaml", 4222, 6222)
    outside = tmp_path / "client.yaml"
    outside.write_text(yaml.safe_dump({"admin_token": ADMIN_TOKEN, "nats": {"servers": [f"nats://{address}:4222"],
                                                                            "connect_wait": 60}}))
    with bridge(f"bibr{TAG}", f"{subnet}.1", [namespace], [address], links):
        node = NamespacedNode(namespace, "iface-0", ["-m", "beach.hostmanager", str(config), "-i", f"{links}n0",
                                                     "--node-id", "iface-0"])
        try:
            with Beach(outside) as client:
                node.wait_registered(client, 60)

                async def records() -> list[Any]:
                    kv = await clusterconfig.open_bucket(client._core.session.nc, load(str(outside)))
                    return list((await clusterconfig.servers(kv)).servers.values())

                mine = [r for r in client._runner.run(records()) if r.node == "iface-0" and not r.anchor]
                assert [(r.client, r.route) for r in mine] == [(f"nats://{address}:4222",
                                                                      f"nats-route://{address}:6222")], mine
                assert client.addActor("Pong", "iface/pong").isSuccess
                assert client.getActorHandle("iface/pong").request("ping").isSuccess
            assert node.terminate() == 0
        finally:
            node.terminate()


class Cluster(Joined):
    """Three machines, each a network namespace on a bridge, joined as the docs say: ``beach up`` on
    the first (its config listens on every interface), ``beach config push`` there, ``beach node
    nats://FIRST:4222`` on the others (default ports: each machine has its own). The test's client
    runs outside, and its config names the first machine's server only."""

    prefix = "m"

    def __init__(self, root: Path) -> None:
        config = first_config(root / "m-0" / "beach.yaml", 4222, 6222, listen="0.0.0.0")
        client_config = root / "client.yaml"  # a client that knows the first machine only
        client_config.write_text(yaml.safe_dump({"admin_token": ADMIN_TOKEN,
                                                 "nats": {"servers": [f"nats://{IPS[0]}:4222"]}}))
        super().__init__(root, config, client_config)
        self.every_server = root / "servers.yaml"  # a new client's: the cluster's servers, first one first
        self.every_server.write_text(yaml.safe_dump({"admin_token": ADMIN_TOKEN,
                                                      "nats": {"servers": [f"nats://{a}:4222" for a in IPS]}}))

    def namespace(self, i: int) -> str | None:
        return MACHINES[i]

    def argv(self, i: int) -> list[str]:
        if i == 0:
            return ["-m", "beach.cli", "up", str(self.config)]
        return ["-m", "beach.cli", "node", f"nats://{IPS[0]}:4222", "--state", str(self.root / f"m-{i}"),
                "--admin-token-file", str(self.token)]

    def lose(self, i: int) -> None:
        """SIGKILL every process of machine ``i`` at once: its agent, hosts and NATS server."""
        from .bridge import pids

        for pid in pids(MACHINES[i]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.nodes[f"m-{i}"].process.wait()


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Joined]:
    from .bridge import bridge

    with bridge(BRIDGE, BRIDGE_IP, MACHINES, IPS, f"bn{TAG}"), \
            brought_up(Cluster(tmp_path_factory.mktemp("three-machines"))) as cluster:
        yield cluster


@pytest.fixture
def remote(machines: Joined) -> Iterator[Beach]:
    with Beach(machines.client_config) as client:
        yield client


def test_three_machines_grow_to_three_replicas(machines, remote):
    """Growth from one JetStream server (and its anchor) to three: every replicated stream on three
    current replicas within 30 s of the third machine joining, read from the streams' info."""
    grown = wait_replicated(remote, machines.names(0, 1, 2), GROWTH_BOUND + 30)
    since = time.monotonic() - machines.nodes["m-2"].started
    print(f"\nthree machines: every replicated stream on 3 current replicas {since:.1f}s after the third started")
    assert since - grown < GROWTH_BOUND + 1 and since < GROWTH_BOUND
    wait_for(lambda: not identity(machines.store(0)).anchor, GROWTH_BOUND, interval=0.5, what="the anchor's retirement")


def test_losing_the_first_machine_loses_nothing_else(machines, remote, tmp_path):
    """docs/operations.md: the first node's machine lost whole (agent, hosts and NATS server
    SIGKILLed at once) under a steady load with nRetries=2: no request fails; the client, whose
    config names that machine's server only, goes on through the others; addActor, stopActors and
    deploy work; the node started again rejoins by itself."""
    wait_replicated(remote, machines.names(0, 1, 2), GROWTH_BOUND + 30)
    for node_id in machines.nodes:
        for _ in range(2):
            assert remote.addActor(LEDGER, "m/load", strategy="host_affinity", strategy_hint=node_id).isSuccess
    load = Load(remote, "m/load", retries=2, request="work", once=True)
    time.sleep(1)
    lost = time.monotonic()
    machines.lose(0)
    view = remote._core.session.view
    wait_for(lambda: "m-0" not in view.nodes, 20, what="the lost node to leave the registry")
    out = time.monotonic() - lost
    placed = remote.addActor(LEDGER, "m/after", timeout=20)
    assert placed.isSuccess, placed
    assert placed.data["node"] in ("m-1", "m-2")
    assert remote.stopActors(withId=placed.data["uid"]).isSuccess
    realm = tmp_path / "realm"
    realm.mkdir()
    (realm / "Echo.py").write_text(ECHO)
    deployed = cli("deploy", str(machines.every_server), "late", str(realm), "--json")
    assert deployed.returncode == 0, deployed.stderr
    remote.setRealm("late")
    echo = remote.addActor("Echo", "echo")
    assert echo.isSuccess, echo
    assert remote.getActorHandle("echo").request("echo", {"n": 7}).data == {"n": 7}
    remote.setRealm("global")
    worked = time.monotonic() - lost
    time.sleep(1)
    counts = load.stop()
    print(f"\nfirst machine lost whole under load: out of the registry after {out:.1f}s; addActor, stopActors and "
          f"deploy done {worked:.1f}s after the loss; requests {counts}")
    assert counts["failed"] == 0, load.errors[:5]
    # back: the same command, and it rejoins by itself (through the routes it kept)
    back = time.monotonic()
    machines.start(0).wait_registered(remote, 90)
    wait_replicated(remote, machines.names(0, 1, 2), 60)
    print(f"the first node started again: registered and its replicas current after {time.monotonic() - back:.1f}s")


def test_two_of_three_lost_reads_work_writes_fail_at_once(machines, remote):
    """docs/operations.md: two of the three JetStream machines lost: requests to the actors that
    live keep working; writes (addActor, stopActors) answer a clear error at once instead of
    hanging; once one machine is back, writes work again."""
    machines.nodes["m-0"].wait_registered(remote, 90)
    wait_replicated(remote, machines.names(0, 1, 2), 60)
    survivors = [remote.addActor(LEDGER, "m/survivor", strategy="host_affinity", strategy_hint="m-0").data["uid"]
                 for _ in range(2)]
    load = Load(remote, "m/survivor", retries=2, request="work", once=True)
    time.sleep(1)
    lost = time.monotonic()
    machines.lose(1)
    machines.lose(2)
    answers = []
    while time.monotonic() - lost < 15:
        asked = time.monotonic()
        refused = remote.addActor(LEDGER, "m/refused", strategy="host_affinity", strategy_hint="m-0", timeout=10)
        answers.append((round(asked - lost, 1), round(time.monotonic() - asked, 2), refused.isSuccess, refused.error))
        assert not refused.isSuccess
        time.sleep(0.5)
    stop = remote.stopActors(withId=survivors[0])
    counts = load.stop()
    late = [a for a in answers if a[0] > 3]
    print(f"\ntwo of three machines lost: requests {counts}; writes answered after (seconds since the loss, "
          f"seconds to answer): {[a[:2] for a in answers]}; the error: {late[-1][3]!r}")
    assert counts["failed"] == 0, load.errors[:5]
    assert all(a[1] < 1.0 and "lost its quorum" in a[3] for a in late), late
    assert not stop.isSuccess and "lost its quorum" in stop.error
    back = time.monotonic()
    machines.start(1)
    machines.start(2)
    wait_for(lambda: remote.addActor(LEDGER, "m/back", timeout=10).isSuccess, 90, interval=1,
             what="writes to work again")
    print(f"two machines started again: writes work {time.monotonic() - back:.1f}s later")
    machines.nodes["m-1"].wait_registered(remote, 60)
    machines.nodes["m-2"].wait_registered(remote, 60)
