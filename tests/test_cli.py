"""The ``beach`` command against the session node."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import wait_for


def beach_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beach.cli", *args], capture_output=True, text=True, timeout=60)


def test_request_and_status(beach, config_path):
    assert beach.addActor("Pong", "cli/pong").isSuccess
    result = beach_cli("request", str(config_path), "cli/pong", "ping", "--data", '{"a": 1}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"] == {"a": 1}
    result = beach_cli("request", str(config_path), "cli/nobody", "ping")
    assert result.returncode == 1 and "no actor available" in result.stderr
    result = beach_cli("request", str(config_path), "cli", "ping", "--all")
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 1
    status = beach_cli("status", str(config_path))
    assert status.returncode == 0 and "1 node(s)" in status.stdout and "cli/pong (1)" in status.stdout


def test_patrol_commands(beach, config_path, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("owner: clitest\nactors:\n  - {name: p, actor: Pong, category: cli/patrol, instances: 2}\n")
    result = beach_cli("patrol", "apply", str(config_path), str(spec))
    assert result.returncode == 0, result.stderr
    assert "patrol spec 'clitest' applied" in result.stdout
    wait_for(lambda: beach.getActorHandle("cli/patrol").getNumAvailable() == 2, 15, what="the patrol's actors")
    assert "clitest" in json.loads(beach_cli("patrol", "list", str(config_path)).stdout)
    assert beach_cli("patrol", "remove", str(config_path), "clitest").returncode == 0
    assert beach_cli("patrol", "remove", str(config_path), "clitest").returncode == 1
    wait_for(lambda: beach.getActorHandle("cli/patrol").getNumAvailable() == 0, 15, what="them to stop")
    bad = tmp_path / "bad.yaml"
    bad.write_text("owner: x\nactors:\n  - {name: p, actor: Pong, category: c, instances: -1}\n")
    result = beach_cli("patrol", "apply", str(config_path), str(bad))
    assert result.returncode == 2 and "'instances' must be 0 or more" in result.stderr
