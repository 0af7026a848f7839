"""``docker compose up``: deploy/compose.yaml checked by a real Compose implementation that needs no
Docker engine (Debian's docker-compose, installed by .ci/run), and every service's command line,
as the file gives it, run outside containers against a real nats-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from beach.bus.embedded import server_binary

from .conftest import free_port, wait_for

REPO = Path(__file__).parent.parent
COMPOSE = REPO / "deploy" / "compose.yaml"
BIN = Path(sys.executable).parent


def compose(*args: str) -> dict:
    if shutil.which("docker-compose") is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed: .ci/run must install it")
        pytest.skip("docker-compose (Debian's package) is not installed")
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), *args, "config"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "BEACH_CODE": str(REPO / "examples" / "multinode")})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_file_is_valid_for_compose():
    raw = yaml.safe_load(COMPOSE.read_text())
    assert "name" not in raw, "no top-level name: docker-compose 1.29 does not know it"
    config = compose()
    # docker-compose 1.29 lists the services of every profile; Compose v2 only the active ones
    default = {name for name, s in config["services"].items() if not s.get("profiles")}
    assert default == {"nats", "node", "dashboard", "restbridge"}
    cluster = compose("--profile", "cluster")["services"]
    assert {name for name, s in cluster.items() if s.get("profiles") == ["cluster"]} == {"nats-1", "nats-2", "nats-3"}
    for name, service in cluster.items():
        assert service.get("healthcheck", {}).get("test"), f"service {name} has no health check"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    assert config["services"]["nats"]["image"].endswith("-alpine")
    assert "-js" in config["services"]["nats"]["command"]
    node = config["services"]["node"]
    assert node["depends_on"] == {"nats": {"condition": "service_healthy"}}
    assert {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in node["volumes"]} == {"/config/beach.yaml",
                                                                                                    "/code"}


def _substitute(command: list[str], paths: dict[str, str], ports: dict[str, str]) -> list[str]:
    out = []
    for arg in command:
        for inside, outside in {**paths, **ports}.items():
            arg = arg.replace(inside, outside)
        out.append(arg)
    return out


def test_every_service_command_runs_outside_containers(tmp_path):
    config = compose()
    services = config["services"]
    nats_port, monitor = free_port(), free_port()
    # the nats service as compose starts it, on the test's own ports and state directory
    nats_cmd = [server_binary(), *_substitute(services["nats"]["command"], {"/data": str(tmp_path / "js")},
                                              {"8222": str(monitor)}), "-a", "127.0.0.1", "-p", str(nats_port)]
    beach_config = yaml.safe_load((REPO / "deploy" / "compose" / "beach.yaml").read_text())
    beach_config["nats"]["servers"] = [f"nats://127.0.0.1:{nats_port}"]
    beach_config["code_directory"] = str(REPO / "examples" / "multinode")
    (tmp_path / "beach.yaml").write_text(yaml.safe_dump(beach_config))
    paths = {"/config/beach.yaml": str(tmp_path / "beach.yaml")}
    ports = {"8080": str(free_port()), "8081": str(free_port())}
    processes: dict[str, subprocess.Popen] = {}
    logs = {}
    try:
        logs["nats"] = open(tmp_path / "nats.log", "wb")
        processes["nats"] = subprocess.Popen(nats_cmd, stdout=logs["nats"], stderr=subprocess.STDOUT)
        health = _substitute(services["nats"]["healthcheck"]["test"][1:], {}, {"8222": str(monitor)})
        url = next(a for a in health if a.startswith("http"))

        def answers(address: str) -> bool:
            try:
                return urllib.request.urlopen(address, timeout=1).status == 200
            except OSError:
                return False

        wait_for(lambda: answers(url), 20, 0.1, what="the nats service's health check")
        for name in ("node", "dashboard", "restbridge"):
            logs[name] = open(tmp_path / f"{name}.log", "wb")
            command = [str(BIN / "beach"), *_substitute(services[name]["command"], paths, ports)]
            processes[name] = subprocess.Popen(command, stdout=logs[name], stderr=subprocess.STDOUT,
                                               start_new_session=True)
        for name in ("node", "dashboard", "restbridge"):
            test = _substitute(services[name]["healthcheck"]["test"], paths, ports)
            assert test[0] == "CMD"
            command = [str(BIN / test[1]) if (BIN / test[1]).exists() else sys.executable, *test[2:]]

            def healthy(cmd=command, service=name) -> bool:
                assert processes[service].poll() is None, (tmp_path / f"{service}.log").read_text()
                return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0

            wait_for(healthy, 60, 0.5, what=f"the {name} service's health check")
    finally:
        for process in reversed(list(processes.values())):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(40)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for log in logs.values():
            log.close()
    assert processes["node"].returncode == 0, (tmp_path / "node.log").read_text()
