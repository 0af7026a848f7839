"""``docker compose up``: deploy/compose.yaml checked by a real Compose implementation that needs no
Docker engine (Debian's docker-compose, installed by .ci/run), and every service's command line,
as the file gives it, run outside containers against a real nats-server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from beach.bus.embedded import EmbeddedServer, server_binary

from .conftest import free_port, wait_for

REPO = Path(__file__).parent.parent
COMPOSE = REPO / "deploy" / "compose.yaml"
BIN = Path(sys.executable).parent


def compose(*args: str, env: dict[str, str] | None = None) -> dict:
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed: .ci/run must install it")
        pytest.skip("docker-compose (Debian's package) is not installed")
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), *args, "config"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "BEACH_CODE": str(REPO / "examples" / "multinode"),
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
