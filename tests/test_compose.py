"""``docker compose up``: deploy/compose.yaml checked by a real Compose implementation (Debian's
docker-compose, installed by .ci/run); every service's command line and health check, as the file
gives them, run outside containers against a real nats-server; and the file run for real by a
Docker engine (below: skipped, saying why, only where no Docker daemon can run)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer, server_binary
from beach.state.directory import FAILURE_DETECTION

from . import dockerhost
from .conftest import free_port, wait_for

REPO = Path(__file__).parent.parent
COMPOSE = REPO / "deploy" / "compose.yaml"
BIN = Path(sys.executable).parent


def compose(*args: str, env: dict[str, str] | None = None) -> dict:
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed: .ci/run must install it")
        pytest.skip("docker-compose (Debian's package) is not installed")
    shell = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}  # (only what a test sets)
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), *args, "config"], capture_output=True, text=True,
                            timeout=60, env={**shell, "BEACH_CODE": str(REPO / "examples" / "multinode"),
                                             **(env or {})})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_file_is_valid_for_compose():
    raw = yaml.safe_load(COMPOSE.read_text())
    assert "name" not in raw, "no top-level name: docker-compose 1.29 does not know it"
    config = compose()
    # docker-compose 1.29 lists the services of every profile; Compose v2 only the active ones
    default = {name for name, s in config["services"].items() if not s.get("profiles")}
    assert default == {"nats", "bus", "node", "dashboard", "restbridge"}
    cluster = compose("--profile", "cluster")["services"]
    assert {name for name, s in cluster.items() if s.get("profiles") == ["cluster"]} == {"nats-1", "nats-2", "nats-3"}
    for name, service in cluster.items():
        if name != "bus":  # (the start-up gate: it exits once the bus is ready)
            assert service.get("healthcheck", {}).get("test"), f"service {name} has no health check"
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}"
            assert published.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    assert config["services"]["nats"]["image"].endswith("-alpine")
    assert "-js" in config["services"]["nats"]["command"]
    for name in ("node", "dashboard", "restbridge"):
        service = config["services"][name]
        assert service["depends_on"] == {"bus": {"condition": "service_completed_successfully"}}
        # long-form binds: a path that does not exist is an error, never an empty directory
        assert {(v["type"], v["target"]) for v in service["volumes"]} == {("bind", "/config/beach.yaml"),
                                                                           ("bind", "/code")}
    assert "bus" not in config["services"]["bus"].get("depends_on", {})
    assert config["services"]["node"]["build"]["args"]["BEACH_EXTRAS"] == "otel"
    # the OTEL_* variables of the shell running compose reach the beach services; unset, nothing
    assert not any(k.startswith("OTEL_") for k in environment(config["services"]["node"]))
    traced = compose(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SERVICE_NAME": "shop"})
    for name in ("node", "dashboard", "restbridge"):
        assert environment(traced["services"][name]) == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                                                         "OTEL_SERVICE_NAME": "shop"}, name


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as `compose config` prints it (a mapping, or 1.29's list of NAME=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env if "=" in item)
    return {k: v for k, v in env.items() if v is not None}


def test_code_and_config_paths_resolve_beside_the_compose_file():
    """BEACH_CODE and BEACH_CONFIG: './' or '../' paths are relative to deploy/, as the README says;
    absolute ones work from anywhere. (A path that does not exist, or a bare name, is refused by
    `up` naming it: the compose test below shows one.)"""
    elsewhere = REPO / "examples" / "async_actors"
    cases = (("./compose", REPO / "deploy" / "compose"), ("../examples/async_actors", elsewhere),
             (str(elsewhere), elsewhere))
    for value, expected in cases:
        services = compose(env={"BEACH_CODE": value, "BEACH_CONFIG": value + "/x.yaml"})["services"]
        mounts = {v["target"]: Path(v["source"]) for v in services["node"]["volumes"]}
        assert mounts == {"/code": expected, "/config/beach.yaml": expected / "x.yaml"}, (value, mounts)


def _substitute(command: list[str], paths: dict[str, str], ports: dict[str, str]) -> list[str]:
    out = []
    for arg in command:
        for inside, outside in {**paths, **ports}.items():
            arg = arg.replace(inside, outside)
        out.append(arg)
    return out


class Services:
    """deploy/compose.yaml's services run as the file gives them, outside containers (its paths and
    ports swapped for the test's own), with their health checks as compose runs them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.config = compose()["services"]
        self.monitor = free_port()
        nats_port = free_port()
        raw = yaml.safe_load((REPO / "deploy" / "compose" / "beach.yaml").read_text())
        raw["nats"]["servers"] = [f"nats://127.0.0.1:{nats_port}"]
        raw["code_directory"] = str(REPO / "examples" / "multinode")
        (tmp_path / "beach.yaml").write_text(yaml.safe_dump(raw))
        self.paths = {"/config/beach.yaml": str(tmp_path / "beach.yaml")}
        self.ports = {"8080": str(free_port()), "8081": str(free_port())}
        self.nats_cmd = [server_binary(), *_substitute(self.config["nats"]["command"], {"/data": str(tmp_path / "js")},
                                                       {"8222": str(self.monitor)}),
                         "-a", "127.0.0.1", "-p", str(nats_port)]
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> subprocess.Popen:
        if name == "nats":
            command = self.nats_cmd
        else:
            command = [str(BIN / "beach"), *_substitute(self.config[name]["command"], self.paths, self.ports)]
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True)
        return self.processes[name]

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def healthy(self, name: str) -> bool:
        """The service's health check, run as compose runs it."""
        test = self.config[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        if name.startswith("nats"):
            url = next(a for a in _substitute(test[1:], {}, {"8222": str(self.monitor)}) if a.startswith("http"))
            try:
                return urllib.request.urlopen(url, timeout=2).status == 200
            except OSError:
                return False
        assert self.processes[name].poll() is None, self.log(name)
        test = _substitute(test, self.paths, self.ports)
        command = [str(BIN / test[1]) if (BIN / test[1]).exists() else sys.executable, *test[2:]]
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
                try:
                    process.wait(40)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def test_every_service_command_and_health_check_outside_containers(tmp_path):
    """Each service's command runs, and each health check checks its own service: the start-up gate
    waits for NATS; a node frozen by SIGSTOP fails its check at once (no heartbeat); with NATS
    gone the dashboard's, the bridge's and the node's checks fail, and pass again when it is back."""
    services = Services(tmp_path)
    try:
        gate = services.start("bus")  # before NATS: it waits
        time.sleep(2)
        assert gate.poll() is None, f"the gate did not wait for NATS: {services.log('bus')}"
        services.start("nats")
        wait_for(lambda: services.healthy("nats"), 20, 0.1, what="the nats service's health check")
        assert gate.wait(60) == 0, services.log("bus")
        for name in ("node", "dashboard", "restbridge"):
            services.start(name)
        for name in ("node", "dashboard", "restbridge"):
            wait_for(lambda name=name: services.healthy(name), 60, 0.5, what=f"the {name} service's health check")

        node = services.processes["node"]
        os.kill(node.pid, signal.SIGSTOP)
        try:
            assert not services.healthy("node"), "a frozen node agent passed its health check"
        finally:
            os.kill(node.pid, signal.SIGCONT)
        wait_for(lambda: services.healthy("node"), 30, 0.5, what="the node's check to pass once it resumed")

        services.processes["nats"].kill()
        services.processes["nats"].wait()
        for name in ("dashboard", "restbridge", "node"):
            wait_for(lambda name=name: not services.healthy(name), 30, 0.5,
                     what=f"the {name} service's check to fail with NATS gone")
        services.start("nats")
        for name in ("node", "dashboard", "restbridge"):
            wait_for(lambda name=name: services.healthy(name), 60, 0.5, what=f"the {name} service's check again")
    finally:
        services.stop()
    assert services.processes["node"].returncode == 0, services.log("node")


def test_the_gate_waits_for_a_jetstream_leader(tmp_path):
    """The cluster profile's start-up gate (the bus service's command, with its config) waits while
    one server of three runs (no JetStream leader: no quorum) and passes once they elect one."""
    config = compose("--profile", "cluster")["services"]
    routes = [free_port() for _ in range(3)]
    clients = [free_port() for _ in range(3)]
    raw = yaml.safe_load((REPO / "deploy" / "compose" / "beach-cluster.yaml").read_text())
    raw["nats"]["servers"] = [f"nats://127.0.0.1:{port}" for port in clients]
    raw["code_directory"] = str(tmp_path)
    (tmp_path / "beach.yaml").write_text(yaml.safe_dump(raw))
    gate_cmd = [str(BIN / "beach"), *_substitute(config["bus"]["command"], {"/config/beach.yaml":
                                                                             str(tmp_path / "beach.yaml")}, {})]
    servers = [EmbeddedServer(clients[i], str(tmp_path / f"s{i}"), name=f"gate-s{i}",
                              log_file=str(tmp_path / f"s{i}.log"),
                              args=["--cluster_name", "gate", "--cluster", f"nats://127.0.0.1:{routes[i]}", "--routes",
                                    ",".join(f"nats-route://127.0.0.1:{p}" for p in routes)])
               for i in range(3)]
    with open(tmp_path / "gate.log", "wb") as log:
        gate = subprocess.Popen(gate_cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        servers[0].start()
        time.sleep(5)
        assert gate.poll() is None, (tmp_path / "gate.log").read_text()
        started = time.monotonic()
        servers[1].start()
        servers[2].start()
        assert gate.wait(120) == 0, (tmp_path / "gate.log").read_text()
        print(f"\ngate: passed {time.monotonic() - started:.1f}s after the 2nd and 3rd servers started")
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()
        for server in servers:
            server.stop()


# ---------------------------------------------------------------- docker-compose up, for real
# deploy/compose.yaml built and run by a real Docker engine (Debian's docker.io; a dockerd is
# started here if none runs, and stopped after), with local stand-ins for its two base images
# (tests/dockerhost.py). Skipped, saying why, only where no Docker daemon can start.

TAG = f"beach-test-{os.getpid()}"


def compose_command() -> list[str]:
    """``docker-compose`` (Debian's 1.29), else Compose v2's ``docker compose``."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


class Stack:
    """One compose project of deploy/compose.yaml: its own name, image tag, ports and host config;
    ``cluster``: with the profile "cluster" (three NATS servers, beach-cluster.yaml)."""

    def __init__(self, tmp: Path, project: str = TAG, cluster: bool = False) -> None:
        self.project = project
        self.cluster = cluster
        self.ports = {"BEACH_DASHBOARD_PORT": free_port(), "BEACH_RESTBRIDGE_PORT": free_port(),
                      "BEACH_NATS_PORT": free_port()}
        if cluster:
            self.ports.update({f"BEACH_NATS_PORT_{i}": free_port() for i in (1, 2, 3)})
        self.env = {**os.environ, "BEACH_IMAGE": f"{TAG}:latest", "BEACH_PYTHON_IMAGE": f"{TAG}-base:latest",
                    "BEACH_CODE": str(REPO / "examples" / "multinode"),
                    "COMPOSE_PROJECT_NAME": self.project, **{k: str(v) for k, v in self.ports.items()}}
        if cluster:
            self.env.update(COMPOSE_PROFILES="cluster", BEACH_CONFIG="./compose/beach-cluster.yaml")
        self.host_config = tmp / "host.yaml"
        host = yaml.safe_load((REPO / "deploy" / "compose" / "host.yaml").read_text())
        host["nats"]["servers"] = [f"nats://127.0.0.1:{self.ports['BEACH_NATS_PORT']}"]
        self.host_config.write_text(yaml.safe_dump(host))

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*compose_command(), "-f", str(COMPOSE), *args], capture_output=True, text=True,
                                timeout=timeout, env={**self.env, "DOCKER_BUILDKIT": "0"})
        assert not check or result.returncode == 0, f"compose {' '.join(args)}: {result.stderr[-3000:]}"
        return result

    def build(self) -> None:
        """Build the beach image as compose's ``build`` section says (context, Dockerfile, args), with
        no network: everything it installs must come from its base (a network fetch fails here)."""
        build = yaml.safe_load(self("config").stdout)["services"]["node"]["build"]
        context = Path(build["context"])
        args = [f"--build-arg={key}={value}" for key, value in (build.get("args") or {}).items()]
        dockerhost.docker("build", "-q", "--force-rm", "--network", "none", "-f", str(context / build["dockerfile"]),
                          *args, "-t", self.env["BEACH_IMAGE"], str(context), timeout=600)

    def containers(self, service: str | None = None) -> list[str]:
        """The ids of the project's containers (of one service), running or not."""
        labels = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            labels += ["--filter", f"label=com.docker.compose.service={service}"]
        return dockerhost.docker("ps", "-aq", *labels).stdout.split()

    def states(self) -> list[tuple[str, str]]:
        """``[(service, its health, or its state and exit code when it has no health check)]``."""
        ids = self.containers()
        if not ids:
            return []
        out = dockerhost.docker("inspect", "--format", '{{index .Config.Labels "com.docker.compose.service"}} '
                                "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}/"
                                "{{.State.ExitCode}}{{end}}", *ids).stdout
        return sorted(tuple(line.split(" ", 1)) for line in out.splitlines())  # type: ignore[misc]

    def health(self, container: str) -> str:
        return dockerhost.docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()

    def wait_healthy(self, nodes: int, timeout: float) -> float:
        """Wait until the gate has exited 0 and every other service (``nodes`` nodes) is healthy;
        return the seconds it took."""
        wanted = sorted([("bus", "exited/0"), ("dashboard", "healthy"), ("nats", "healthy"),
                         ("restbridge", "healthy"), *[("node", "healthy")] * nodes,
                         *[(f"nats-{i}", "healthy") for i in (1, 2, 3) if self.cluster]])
        started = time.monotonic()
        while (states := self.states()) != wanted:
            if time.monotonic() - started > timeout:
                pytest.fail(f"not every service healthy after {timeout}s: {states}")
            time.sleep(1)
        return time.monotonic() - started

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        return {"containers": self.containers(),
                "networks": dockerhost.docker("network", "ls", "-q", "--filter", label).stdout.split(),
                "volumes": dockerhost.docker("volume", "ls", "-q", "--filter", label).stdout.split()}


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(dockerhost.engine())
    except dockerhost.Unavailable as err:
        pytest.skip(f"no Docker daemon can run here: {err}")
    with stack:
        yield


@pytest.fixture(scope="module")
def stack(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    swept = dockerhost.sweep("beach-test-")
    if swept:
        print(f"\nremoved what an earlier run that died left: {', '.join(swept)}")
    images = yaml.safe_load(COMPOSE.read_text())["services"]["nats"]["image"]
    took = dockerhost.standins(images)
    if took:
        print(f"\nbuilt the stand-in base images: {', '.join(f'{k} in {v:.0f}s' for k, v in took.items())}")
    stack = Stack(tmp_path_factory.mktemp("compose"))
    try:
        started = time.monotonic()
        dockerhost.offline_base(stack.env["BEACH_PYTHON_IMAGE"], REPO)
        stack.build()  # (`up` uses the image: it builds only a missing one)
        built = time.monotonic() - started
        stack("up", "-d", "--scale", "node=2")
        healthy = stack.wait_healthy(2, 240)
        print(f"\ncompose: image built in {built:.0f}s; every service healthy {healthy:.0f}s after `up`")
        yield stack
    finally:
        stack("down", "-v", "--remove-orphans", check=False, timeout=300)
        for image in (stack.env["BEACH_IMAGE"], stack.env["BEACH_PYTHON_IMAGE"]):
            dockerhost.remove_image(image)
        left = [image for image in (stack.env["BEACH_IMAGE"], stack.env["BEACH_PYTHON_IMAGE"])
                if dockerhost.has_image(image)]
        assert not left, f"images left behind: {left}"


def host_client(stack: Stack) -> Beach:
    return Beach(str(stack.host_config))


def node_container(stack: Stack, node_id: str) -> str:
    """The container whose agent is node ``node_id`` (its id is <container hostname>-1)."""
    for container in stack.containers("node"):
        hostname = dockerhost.docker("inspect", "--format", "{{.Config.Hostname}}", container).stdout.strip()
        if node_id == f"{hostname}-1":
            return container
    raise AssertionError(f"no node container runs {node_id}")


# the first test also waits for the stand-in images (built once per machine) and the beach image
docker_test = pytest.mark.timeout(1200)


@docker_test
def test_compose_up_every_service_healthy_and_a_request_through_a_node(stack: Stack):
    """`up` from the repository root: every service healthy (the gate exited 0); a request made in a
    node container, one through the REST bridge and one from this machine (deploy/compose/host.yaml
    with the published NATS port) all reach the actor; the dashboard's /healthz answers."""
    started = stack("exec", "-T", "node", "beach", "add", "/config/beach.yaml", "Pong", "compose/pong", "--json")
    assert json.loads(started.stdout)[0]["uid"]
    reply = stack("exec", "-T", "node", "beach", "request", "/config/beach.yaml", "compose/pong", "ping")
    assert "time" in json.loads(reply.stdout), reply.stdout
    bridge = f"http://127.0.0.1:{stack.ports['BEACH_RESTBRIDGE_PORT']}/compose/pong?_action=ping"
    answer = urllib.request.urlopen(urllib.request.Request(bridge, data=b"{}", method="POST",
                                                           headers={"Content-Type": "application/json"}), timeout=10)
    assert answer.status == 200 and "time" in json.loads(answer.read())
    dashboard = urllib.request.urlopen(f"http://127.0.0.1:{stack.ports['BEACH_DASHBOARD_PORT']}/healthz", timeout=10)
    assert json.loads(dashboard.read())["connected"] is True
    with host_client(stack) as client:
        assert client.getNodeCount() == 2
        assert client.getActorHandle("compose/pong").request("ping").isSuccess
    # the image can export traces: the SDK builds a provider when the OTEL_* variables ask for one
    exporting = stack("exec", "-T", "-e", "OTEL_TRACES_EXPORTER=otlp",
                      "-e", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "node", "python", "-c",
                      "import sys; from beach import tracing; sys.exit(0 if tracing.configure('check') else 1)",
                      check=False)
    assert exporting.returncode == 0, exporting.stderr
    # a code directory that does not exist: `up` refuses, naming it (another project, same file)
    wrong = str(REPO / "no-such-code")
    bad = subprocess.run([*compose_command(), "-p", f"{TAG}-bad", "-f", str(COMPOSE), "up", "-d", "--no-deps", "bus"],
                         capture_output=True, text=True, timeout=120, env={**stack.env, "BEACH_CODE": wrong,
                                                                          "COMPOSE_PROJECT_NAME": f"{TAG}-bad"})
    subprocess.run([*compose_command(), "-p", f"{TAG}-bad", "-f", str(COMPOSE), "down", "-v"], capture_output=True,
                   timeout=120, env={**stack.env, "COMPOSE_PROJECT_NAME": f"{TAG}-bad"})
    assert bad.returncode != 0 and wrong in bad.stderr, bad.stderr


@docker_test
def test_compose_scale_to_three(stack: Stack):
    stack("up", "-d", "--no-recreate", "--scale", "node=3")
    stack.wait_healthy(3, 120)
    with host_client(stack) as client:
        wait_for(lambda: client.getNodeCount() == 3, 30, what="three nodes in the registry")


@docker_test
def test_compose_a_frozen_node_turns_unhealthy(stack: Stack):
    """A node whose agent hangs (SIGSTOP, from the host) is unhealthy within 30 s, and healthy again
    once it resumes."""
    [container, *_] = stack.containers("node")
    pid = int(dockerhost.docker("inspect", "--format", "{{.State.Pid}}", container).stdout)
    os.kill(pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        wait_for(lambda: stack.health(container) == "unhealthy", 45, 0.5, what="the frozen node to be unhealthy")
        took = time.monotonic() - frozen
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"\ncompose: a frozen node unhealthy after {took:.1f}s")
    assert took <= 30, f"unhealthy only after {took:.1f}s"
    wait_for(lambda: stack.health(container) == "healthy", 60, 0.5, what="the node healthy again")


@docker_test
def test_compose_a_stopped_node_has_its_supervised_actor_replaced_once(stack: Stack):
    """`docker stop` of the node a supervised actor runs on: it is started again on a live node,
    one restart counted, no error left, within the node TTL plus 2 s."""
    with host_client(stack) as client:
        wait_for(lambda: client.getNodeCount() >= 2, 60, what="two nodes or more")
        response = client.addActor("Pong", "compose/kept", restart="on-failure")
        assert response.isSuccess, response
        [sid] = [s for s, r in client.getSupervised().items() if r["uid"] == response.data["uid"]]
        container = node_container(stack, response.data["node"])
        stopping = time.monotonic()
        dockerhost.docker("stop", container, timeout=90)
        view = client._core.session.view

        def moved() -> bool:
            uid = client.getSupervised()[sid]["uid"]
            return uid != response.data["uid"] and uid in view.actors and view.is_live(view.actors[uid])
        wait_for(moved, FAILURE_DETECTION + 2, what="the supervised actor re-placed")
        took = time.monotonic() - stopping
        record = client.getSupervised()[sid]
        print(f"\ncompose: docker stop of its node; the supervised actor re-placed after {took:.1f}s, "
              f"restarts {len(record['restarts'])}")
        assert view.actors[record["uid"]].node != response.data["node"]
        assert len(record["restarts"]) == 1 and record["last_error"] is None, record
        assert client.getActorHandle("compose/kept").request("ping").isSuccess


@docker_test
def test_compose_down_v_leaves_nothing(stack: Stack):
    stack("down", "-v", "--remove-orphans")
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}


@docker_test
def test_compose_cluster_profile_every_service_healthy(stack: Stack, tmp_path: Path):
    """`--profile cluster` with beach-cluster.yaml (a project of its own, the same image): the gate
    waits for the three servers and a JetStream leader, every service turns healthy, an actor
    started in a node container answers, its directory is replicated on all three servers, and
    `down -v` leaves nothing."""
    cluster = Stack(tmp_path, project=f"{TAG}-cluster", cluster=True)
    try:
        cluster("up", "-d", "--scale", "node=2")
        took = cluster.wait_healthy(2, 240)
        print(f"\ncompose --profile cluster: every service healthy {took:.0f}s after `up`")
        cluster("exec", "-T", "node", "beach", "add", "/config/beach.yaml", "Pong", "compose/pong")
        reply = cluster("exec", "-T", "node", "beach", "request", "/config/beach.yaml", "compose/pong", "ping")
        assert "time" in json.loads(reply.stdout), reply.stdout
        monitor = cluster("exec", "-T", "nats-1", "wget", "-q", "-O", "-",
                          "http://127.0.0.1:8222/jsz?streams=true&config=true")
        streams = {s["name"]: s for account in json.loads(monitor.stdout)["account_details"]
                   for s in account.get("stream_detail") or []}
        assert streams["KV_beach_actors"]["config"]["num_replicas"] == 3, sorted(streams)
    finally:
        cluster("down", "-v", "--remove-orphans", check=False, timeout=300)
    assert cluster.leftovers() == {"containers": [], "networks": [], "volumes": []}
