"""``python -m beach.beach_cli``: the interactive shell through a real pty, and the one-shot mode."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from .conftest import NODE_ID, free_port, wait_for, write_config

# what readline and the terminal add around the text: escape sequences and carriage returns
TERMINAL_NOISE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")
INTRO = "Welcome to Beach shell. Type help or ? to list commands."


def shell_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a shell under test: its own history file, a readline without bracketed paste."""
    inputrc = tmp_path / "inputrc"
    inputrc.write_text("set enable-bracketed-paste off\n")
    return dict(os.environ, BEACH_HISTORY=str(tmp_path / "history"), INPUTRC=str(inputrc), TERM="xterm")


class Shell:
    """The shell in a real pty: ``run(line)`` types a command and returns what it printed."""

    def __init__(self, config_path: Path, tmp_path: Path) -> None:
        self.transcript = io.StringIO()
        self.prompt = "(beach/global) "
        self.child = pexpect.spawn(sys.executable, ["-m", "beach.beach_cli", str(config_path)], encoding="utf-8",
                                   timeout=30, env=shell_env(tmp_path), dimensions=(50, 400))
        self.child.logfile_read = self.transcript
        self.child.expect_exact(INTRO)
        self.child.expect_exact(self.prompt)

    def run(self, line: str) -> str:
        """Send ``line``, wait for the prompt, return the output without the echoed line."""
        self.child.sendline(line)
        self.child.expect_exact(self.prompt)
        text = TERMINAL_NOISE.sub("", self.child.before)
        echoed, _, output = text.partition("\n")
        assert echoed.strip() == line.strip(), text
        return output.strip("\n")

    def json(self, line: str) -> object:
        """Run ``line`` and read its output as JSON."""
        return json.loads(self.run(line))

    def error(self, line: str) -> str:
        """Run ``line``, which must print exactly one ``error: ...`` line; return it."""
        output = self.run(line)
        assert output.startswith("error: ") and "\n" not in output, output
        return output

    def close(self) -> None:
        """Kill the shell if it still runs; no traceback may ever have been printed."""
        self.child.close(force=True)
        assert "Traceback" not in self.transcript.getvalue(), self.transcript.getvalue()


@pytest.fixture
def shell(beach, config_path, tmp_path):
    session = Shell(config_path, tmp_path)
    try:
        yield session
    finally:
        session.close()


def test_help_and_argument_errors(shell):
    listing = shell.run("help")
    for name in ("add_actor", "add_to_category", "exit", "flush", "gen_key", "get_cluster_health", "get_dir",
                 "get_load_info", "get_mtd", "quit", "realm", "remove_from_category", "request", "stop_actor"):
        assert name in listing
    assert "EOF" not in listing
    usage = shell.run("help add_actor")
    for option in ("--name", "--category", "-sh", "--params", "--resources", "--isolated", "-id", "--trusted",
                   "--log-level", "--log-dest", "--n-concurrent", "--drainable", "--realm", "--time-to-drain",
                   "--owner", "--restart", "--max-restarts", "--max-concurrent"):
        assert option in usage
    assert shell.run("add_actor -h") == usage
    assert "ALL realms" in shell.run("help flush")
    assert "-n/--name" in shell.error("add_actor -c shell/x")
    assert "invalid int value" in shell.error("add_actor -n Pong -c shell/x -o many")
    assert "No closing quotation" in shell.error("request 'shell/x ping")
    assert shell.error("xyz") == "error: unknown command 'xyz': type help"
    assert shell.error("help xyz") == "error: unknown command 'xyz': type help"
    assert shell.run("") == ""
    shell.child.sendeof()  # Ctrl-D leaves
    shell.child.expect(pexpect.EOF)
    shell.child.close()
    assert shell.child.exitstatus == 0


def test_actors_directory_and_requests(shell, beach):
    spawned = shell.json("add_actor -n Pong -c shell/pong -p \"{'x': 1}\" -r '{\"cpu\": 1}' --owner me")
    uid = spawned["uid"]
    assert spawned["node"] == NODE_ID
    directory = shell.json("get_dir")
    assert uid in directory["shell/pong"] and f"_ACTORS/{uid}" in directory
    assert uid in shell.json("get_dir -c shell/pong/")
    assert "'shell/nobody'" in shell.error("get_dir -c shell/nobody")
    mtd = shell.json("get_mtd")
    assert mtd[NODE_ID]["data"]["mtd"][uid]["owner"] == "me"

    reply = shell.json("request shell/pong ping -d \"{'a': 1}\"")
    assert reply["echo"] == {"a": 1} and reply["uid"] == uid
    assert "neither JSON nor a Python literal" in shell.error("request shell/pong ping -d \"{'a': \"")
    assert "request type not supported" in shell.error("request shell/pong nothing")
    assert "no actors available in category 'shell/nobody'" in shell.error("request shell/nobody ping")
    assert "must be a mapping" in shell.error("add_actor -n Pong -c shell/x -p '[1, 2]'")
    failure = shell.error("add_actor -n NoSuchActor -c shell/x")
    assert failure.startswith("error: add_actor: ")

    assert shell.json("add_to_category -i " + uid[:10] + " -c shell/extra") is True  # a unique uid prefix will do
    assert shell.json("request shell/extra ping")["uid"] == uid
    assert shell.json("remove_from_category -i " + uid + " -c shell/extra") is True
    assert "no live actor has a uid starting with 'nobody'" in shell.error("add_to_category -i nobody -c shell/extra")

    assert NODE_ID in shell.json("get_cluster_health")
    assert isinstance(shell.json("get_load_info"), dict)

    assert shell.run("flush") == "Please confirm ( see command help )"
    assert beach.getActorHandle("shell/pong").getNumAvailable() == 1
    assert "-i ID or -c CATEGORY" in shell.error("stop_actor")
    assert shell.json("stop_actor -i " + uid) == {"stopped": [uid], "not_found": []}
    wait_for(lambda: beach.getActorHandle("shell/pong").getNumAvailable() == 0, 10, what="the actor to stop")
    assert "shell/pong" not in shell.json("get_dir")

    first, second = (shell.json("add_actor -n Pong -c shell/all")["uid"] for _ in range(2))
    replies = shell.json("request shell/all ping --from-all -t 5")
    assert sorted(r["uid"] for r in replies) == sorted([first, second])
    assert sorted(shell.json("stop_actor -c shell/all")["stopped"]) == sorted([first, second])

    shell.json("add_actor -n Pong -c shell/flushed --realm realm-one")
    assert shell.json("flush --confirm") is True
    wait_for(lambda: not beach.getDirectory()["realms"], 10, what="every realm to be empty")


def test_completion_realm_keys_and_exit(shell, beach, tmp_path):
    assert beach.addActor("Pong", "shell/pong").isSuccess
    child = shell.child
    child.send("get_d\t")
    child.expect_exact("get_dir")
    child.send(" -c shell/p\t")
    child.expect_exact("shell/pong")
    child.sendline("")
    child.expect_exact(shell.prompt)
    child.send("request shell/p\t")
    child.expect_exact("shell/pong")
    child.sendline(" ping")
    child.expect_exact('"echo": {}')
    child.expect_exact(shell.prompt)

    key = tmp_path / "k"
    assert shell.run(f"gen_key {key}") == f"key written to {key}"
    assert len(key.read_bytes()) == 32
    assert "exists" in shell.error(f"gen_key {key}")
    assert key.stat().st_size == 32

    shell.prompt = "(beach/other) "
    assert shell.run("realm other") == ""
    assert shell.run("realm") == "other"
    assert shell.json("get_dir") == {}
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    history = (tmp_path / "history").read_text()
    assert "realm other" in history and f"gen_key {key}" in history


def test_history_ctrl_c_and_ctrl_d(beach, config_path, tmp_path):
    (tmp_path / "history").write_text("get_cluster_health\n")
    shell = Shell(config_path, tmp_path)
    try:
        child = shell.child
        child.send("\x1b[A")  # up: the last command of the history file
        child.expect_exact("get_cluster_health")
        child.send("\x03")  # Ctrl-C drops the line and gives a new prompt
        child.expect_exact(shell.prompt)
        assert beach.addActor("Sleeper", "shell/sleep").isSuccess
        child.sendline("request shell/sleep sleep -d \"{'seconds': 5}\" -t 20")
        wait_for(lambda: any(v["inflight"] for v in beach.getLoadInfo().values()), 10, what="the request to run")
        child.send("\x03")  # Ctrl-C stops waiting for a reply
        child.expect_exact(shell.prompt)
        assert shell.run("realm") == "global"
        child.send("\x03")  # two Ctrl-C in a row leave
        child.expect_exact(shell.prompt)
        child.send("\x03")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert "realm" in (tmp_path / "history").read_text().splitlines()
    finally:
        shell.close()


# ---------------------------------------------------------------- one-shot mode and start-up

def beach_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beach.beach_cli", *args], capture_output=True, text=True,
                          timeout=60)


def assert_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_one_shot(beach, config_path):
    assert beach.addActor("Pong", "once/pong").isSuccess
    assert beach.addActor("Pong", "once/pong").isSuccess
    request = ("-rm", "global", "-rcat", "once/pong", "-rcmd", "ping")
    result = beach_cli(str(config_path), *request, "-rd", "{'a': 1}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"] == {"a": 1}

    result = beach_cli(str(config_path), *request, "-b", "-rt", "5")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2

    result = beach_cli(str(config_path), "-rm", "global", "-rcat", "once/nobody", "-rcmd", "ping")
    assert result.returncode == 1 and "no actors available in category 'once/nobody'" in assert_one_line(result)

    result = beach_cli(str(config_path), "-rm", "global", "-rcat", "once/pong", "-rcmd", "nothing")
    assert result.returncode == 1 and "request type not supported" in assert_one_line(result)

    assert beach.addActor("Faulty", "once/faulty").isSuccess
    result = beach_cli(str(config_path), "-rm", "global", "-rcat", "once/faulty", "-rcmd", "raise")
    assert result.returncode == 1 and result.stdout == ""
    assert assert_one_line(result) == "beach: exception: RuntimeError: handler blew up on purpose\n"

    result = beach_cli(str(config_path), *request, "-rd", "{'a': ")
    assert result.returncode == 2 and "neither JSON nor a Python literal" in assert_one_line(result)
    assert result.stdout == ""


def test_one_shot_interrupted(beach, config_path):
    assert beach.addActor("Sleeper", "once/sleep").isSuccess
    process = subprocess.Popen([sys.executable, "-m", "beach.beach_cli", str(config_path), "-rm", "global",
                                "-rcat", "once/sleep", "-rcmd", "sleep", "-rd", "{'seconds': 5}", "-rt", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(v["inflight"] for v in beach.getLoadInfo().values()), 15, what="the request to run")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 130 and "Traceback" not in stderr, stderr
    finally:
        process.kill()
        process.wait()


def test_arguments_and_start_up_errors(tmp_path):
    result = beach_cli(str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert assert_one_line(result).startswith("beach: config file not found")

    result = beach_cli(str(tmp_path / "missing.yaml"), "-rm", "global")
    assert result.returncode == 2 and "-rcat/--req-cat, -rcmd/--req-cmd" in result.stderr
    assert "Traceback" not in result.stderr

    unreachable = write_config(tmp_path / "dead.yaml", f"nats://127.0.0.1:{free_port()}")
    result = beach_cli(str(unreachable))
    assert result.returncode == 2 and "cannot connect to NATS" in assert_one_line(result)



def test_without_readline_in_process(beach, tmp_path, monkeypatch):
    """The shell as a class, on plain streams and without readline: no history file, same output."""
    from beach import shell as shell_module

    monkeypatch.setattr(shell_module, "readline", None)
    out = io.StringIO()
    session = shell_module.BeachShell(beach, out=out)
    session.use_rawinput = False
    session.stdin = io.StringIO("realm realm-one\nget_dir -c x\nrealm\nget_dir\n")  # then end of input
    session.run(str(tmp_path / "history"))
    assert out.getvalue().splitlines() == [
        INTRO, "(beach/global) (beach/realm-one) error: no category 'x' in realm 'realm-one'",
        "(beach/realm-one) realm-one", "(beach/realm-one) {}", "(beach/realm-one) "]
    assert not (tmp_path / "history").exists()
    assert beach.realm == "realm-one"
