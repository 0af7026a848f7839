"""The ``beach`` command, every subcommand run as a subprocess against the session node, and the
cluster-wide logs and stacks behind ``beach logs`` / ``beach stack``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from beach import logs
from beach.cli import parser
from beach.client.session import CANCEL_WAIT

from .conftest import free_port, wait_for, write_config


def beach_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "beach.cli", *args], capture_output=True, text=True,
                            timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_every_argument_of_every_subcommand_has_help():
    top = parser()
    [sub] = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    expected = {"up", "node", "status", "nodes", "actors", "add", "stop", "flush", "request", "broadcast", "logs",
                "stack", "patrol", "gen-key", "shell", "console", "dashboard", "restbridge", "deploy", "code",
                "rollout", "drain", "uncordon", "backup", "restore", "config"}
    assert expected <= set(sub.choices)
    commands = list(sub.choices.items())
    while commands:  # and the subcommands' own (beach code list, beach config push)
        name, command = commands.pop()
        assert command.description, f"beach {name} has no description"
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands += [(f"{name} {n}", c) for n, c in action.choices.items()]
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"beach {name}: {action.dest} has no help text"
    assert beach_cli("add", "--help").returncode == 0


def test_request_broadcast_and_data_forms(beach, config_path):
    assert beach.addActor("Pong", "cli/pong").isSuccess
    config = str(config_path)
    result = beach_cli("request", config, "cli/pong", "ping", "--data", '{"a": 1}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"] == {"a": 1}
    result = beach_cli("request", config, "cli/pong", "ping", "--data", "{'a': (1, 2), 'b': b'x'}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"] == {"a": [1, 2], "b": "x"}, "a Python literal, bytes shown as text"
    result = beach_cli("request", config, "cli/pong", "ping", "--data", "{'a': ")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--data \"{'a': \" is neither JSON nor a Python literal" in result.stderr
    result = beach_cli("request", config, "cli/pong", "ping", "--data", "__import__('os').getcwd()")
    assert result.returncode == 2 and "neither JSON nor a Python literal" in result.stderr, "never evaluated"
    result = beach_cli("request", config, "cli/nobody", "ping")
    assert result.returncode == 1 and "no actor available in category 'cli/nobody'" in result.stderr
    result = beach_cli("request", config, "cli", "ping", "--from-all")
    assert result.returncode == 0 and [r["ok"] for r in json.loads(result.stdout)] == [True]
    result = beach_cli("broadcast", config, "cli/pong", "ping")
    assert result.returncode == 0 and "sent to 1 actor(s)" in result.stdout
    result = beach_cli("request", config, "cli/pong", "ping", "--realm", "elsewhere")
    assert result.returncode == 1 and "of realm 'elsewhere'" in result.stderr


def test_add_actors_stop_and_flush(beach, config_path):
    config = str(config_path)
    result = beach_cli("add", config, "Pong", "cli/many", "--count", "3", "--params", "{'a': 1, '_secret': 2}",
                       "--json")
    assert result.returncode == 0, result.stderr
    started = json.loads(result.stdout)
    assert len(started) == 3 and beach.getActorHandle("cli/many").getNumAvailable() == 3
    listed = json.loads(beach_cli("actors", config, "--realm", "global", "--category", "cli/many", "--json").stdout)
    assert sorted(a["uid"] for a in listed) == sorted(s["uid"] for s in started)
    assert all(a["params"] == {"a": 1, "_secret": "<PRIVATE>"} and a["bound"] == 64 for a in listed)
    table = beach_cli("actors", config).stdout
    assert "global/Pong" in table and started[0]["uid"][:12] in table and "in-flight" in table
    result = beach_cli("stop", config, started[0]["uid"], "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["stopped"] == [started[0]["uid"]]
    result = beach_cli("stop", config, "--category", "cli/many")
    assert result.returncode == 0 and beach.getActorHandle("cli/many").getNumAvailable() == 0
    result = beach_cli("add", config, "NoSuchClass", "cli/none")
    assert result.returncode == 1 and "not started: unknown actor class 'NoSuchClass'" in result.stderr
    assert beach_cli("add", config, "Pong", "cli/left").returncode == 0
    result = beach_cli("flush", config)
    assert result.returncode == 1 and "add --confirm" in result.stderr
    assert beach.getActorHandle("cli/left").getNumAvailable() == 1, "nothing stopped without --confirm"
    result = beach_cli("flush", config, "--confirm")
    assert result.returncode == 0 and "flushed" in result.stdout
    assert beach.getActorHandle("cli/left").getNumAvailable() == 0


def test_status_nodes_and_actors_tables(beach, config_path, node):
    wait_for(lambda: beach.getNodeCount() == 1, 10, what="the session's node alone in the registry")
    assert beach.addActor("Pong", "cli/status", restart="on-failure").isSuccess
    config = str(config_path)
    status = beach_cli("status", config)
    assert status.returncode == 0, status.stderr
    assert "1 node(s)" in status.stdout and "cli/status" in status.stdout and "Supervised" in status.stdout
    summary = json.loads(beach_cli("status", config, "--json").stdout)
    assert summary["nodes"][0]["id"] == node.node_id and summary["realms"]["global"]["cli/status"] == 1
    assert [s["state"] for s in summary["supervised"]] == ["running"]
    nodes = json.loads(beach_cli("nodes", config, "--json", "--wait", "1").stdout)
    assert [n["id"] for n in nodes] == [node.node_id] and nodes[0]["cores"] >= 1
    assert node.node_id in beach_cli("nodes", config).stdout
    result = beach_cli("nodes", config, "--wait", "5", "--timeout", "1")
    assert result.returncode == 1 and "only 1 of 5 nodes came up within 1s" in result.stderr


def test_patrol_commands(beach, config_path, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("owner: clitest\nactors:\n  - {name: p, actor: Pong, category: cli/patrol, instances: 2}\n")
    result = beach_cli("patrol", "apply", str(config_path), str(spec), "--wait")
    assert result.returncode == 0, result.stderr
    assert "patrol spec 'clitest' applied" in result.stdout and "every actor is running" in result.stdout
    assert beach.getActorHandle("cli/patrol").getNumAvailable() == 2
    listed = json.loads(beach_cli("patrol", "list", str(config_path), "--json").stdout)
    assert [(e["running"], e["target"]) for p in listed if p["owner"] == "clitest" for e in p["entries"]] == [(2, 2)]
    assert beach_cli("patrol", "remove", str(config_path), "clitest").returncode == 0
    assert beach_cli("patrol", "remove", str(config_path), "clitest").returncode == 1
    wait_for(lambda: beach.getActorHandle("cli/patrol").getNumAvailable() == 0, 15, what="them to stop")
    bad = tmp_path / "bad.yaml"
    bad.write_text("owner: x\nactors:\n  - {name: p, actor: Pong, category: c, instances: -1}\n")
    result = beach_cli("patrol", "apply", str(config_path), str(bad))
    assert result.returncode == 2 and "'actors[0].instances' must be a whole number >= 0" in result.stderr
    for instances, error in [("{per_core: .inf}", "'actors[0].instances.per_core' must be a number <= 1000000"),
                             ("{min: 5, max: 2}", "'actors[0].instances': 'min' (5) is more than 'max' (2)")]:
        bad.write_text(f"owner: x\nactors:\n  - {{name: p, actor: Pong, category: c, instances: {instances}}}\n")
        result = beach_cli("patrol", "apply", str(config_path), str(bad))
        assert result.returncode == 2 and result.stderr.strip().endswith(error), result.stderr
        assert "Traceback" not in result.stderr
    assert "x" not in [p["owner"] for p in json.loads(beach_cli("patrol", "list", str(config_path), "--json").stdout)]


def test_the_originals_patrol_module_applies_the_spec(beach, config_path, tmp_path):
    path = tmp_path / "legacy.py"
    path.write_text("Patrol('pongs', initialInstances=1, actorArgs=['Pong', 'cli/legacy-patrol'])\n")
    result = subprocess.run([sys.executable, "-m", "beach.patrol", str(config_path), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: beach.getActorHandle("cli/legacy-patrol").getNumAvailable() == 1, 15, what="the patrol's actor")
    assert beach.removePatrol("legacy")


def stream_lines(beach, subject: str) -> list[dict]:
    async def read():
        return [line async for line in logs.read(beach._core.session.nc, subject)]

    return beach._runner.run(read())


def test_an_actors_log_lines_outlive_it_and_are_read_from_another_process(beach, config_path):
    marker = uuid.uuid4().hex
    resp = beach.addActor("Chatty", "cli/chatty", parameters={"tag": marker})
    assert resp.isSuccess, resp
    uid = resp.data["uid"]
    handle = beach.getActorHandle("cli/chatty")
    assert handle.request("say", {"text": f"plain {marker}"}).isSuccess
    assert handle.request("say", {"text": f"critical {marker}", "level": "critical"}).isSuccess
    assert handle.request("say", {"text": f"logging {marker}", "level": "logging"}).isSuccess
    assert handle.request("thread", {"text": f"thread {marker}"}).isSuccess
    assert beach.stopActors(withId=uid).isSuccess
    wait_for(lambda: len([x for x in stream_lines(beach, logs.subject_filter(uid=uid)) if marker in x.msg]) == 5,
             10, what="the actor's 5 lines in the stream")
    result = beach_cli("logs", str(config_path), uid)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if marker in line]
    assert [line.split()[2] for line in lines] == ["INFO", "INFO", "ERROR", "WARNING", "INFO"]
    assert all(f"global/Chatty {uid[:8]} @test-node-1 " in line for line in lines), "the node, always"
    assert not any("!!!~~~!!!" in line for line in lines)
    by_category = beach_cli("logs", str(config_path), "cli/chatty", "--since", "10m", "--level", "warning", "--json")
    found = [json.loads(x) for x in by_category.stdout.splitlines()]
    assert [(x["level"], x["msg"]) for x in found if marker in x["msg"]] == [
        ("ERROR", f"critical {marker}"), ("WARNING", f"logging {marker}")]
    assert all(x["categories"] == ["cli/chatty"] and x["uid"] == uid and x["kind"] == "app" for x in found)
    assert marker not in beach_cli("logs", str(config_path), "cli/other").stdout
    assert marker not in beach_cli("logs", str(config_path), "--realm", "other-realm").stdout
    assert beach_cli("logs", str(config_path), "--since", "soon").returncode == 2


def test_logs_follow_shows_new_lines_live(beach, config_path):
    resp = beach.addActor("Chatty", "cli/follow")
    follower = subprocess.Popen([sys.executable, "-m", "beach.cli", "logs", str(config_path), "cli/follow",
                                 "--follow", "--since", "1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    try:
        marker = uuid.uuid4().hex
        time.sleep(1.5)  # the follower has caught up with the history (there is none after --since 1s)
        assert beach.getActorHandle("cli/follow").request("say", {"text": f"live {marker}"}).isSuccess
        os.set_blocking(follower.stdout.fileno(), False)
        seen = ""

        def arrived() -> bool:
            nonlocal seen
            try:  # the raw bytes: a text read of an empty non-blocking pipe can raise TypeError (CPython)
                seen += os.read(follower.stdout.fileno(), 65536).decode()
            except BlockingIOError:
                pass
            return marker in seen

        wait_for(arrived, 15, what="the live line in beach logs --follow")
        assert follower.poll() is None, "--follow keeps running"
        assert resp.data["uid"][:8] in seen
    finally:
        os.killpg(follower.pid, signal.SIGINT)
        os.set_blocking(follower.stdout.fileno(), True)
        try:
            _, stderr = follower.communicate(timeout=10)
        finally:  # (one that did not stop on Ctrl-C fails the test, and is not left running)
            if follower.poll() is None:
                os.killpg(follower.pid, signal.SIGKILL)
                follower.communicate()
    assert "Traceback" not in stderr


def test_a_tool_stops_on_ctrl_c_even_if_its_work_drops_the_cancel(beach):
    # Python 3.11's wait_for can drop a cancellation that comes as its wait ends (gh-86296): a tool
    # whose work misses Ctrl-C's cancel that way stops all the same (a follower once ran on for 45 min)
    session = beach._core.session

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # dropped, as wait_for may
        await asyncio.sleep(3600)  # (a second cancel, the client's close, ends it)

    async def interrupted() -> float:
        tool = asyncio.ensure_future(session.unless_lost(stubborn()))
        await asyncio.sleep(0.2)
        asked = time.monotonic()
        tool.cancel()  # what asyncio.Runner does on Ctrl-C
        with contextlib.suppress(asyncio.CancelledError):
            await tool
        assert tool.cancelled()
        return time.monotonic() - asked

    took = beach._runner.run(interrupted())
    assert CANCEL_WAIT - 0.5 < took < CANCEL_WAIT + 3


def test_a_log_flood_is_bounded_and_counted(beach, config_path):
    resp = beach.addActor("Chatty", "cli/flood")
    uid = resp.data["uid"]
    assert beach.addActor("Pong", "cli/flood-neighbour").isSuccess
    started = time.monotonic()
    flood = beach.getActorHandle("cli/flood").request("flood", {"n": 20000}, isWithFuture=True)
    pings = [beach.getActorHandle("cli/flood-neighbour").request("ping", timeout=5) for _ in range(20)]
    assert all(p.isSuccess for p in pings), "requests are served during the flood"
    assert flood.waitAll(30)[0].isSuccess
    elapsed = time.monotonic() - started
    dropped = wait_for(lambda: beach.getLoadInfo()[uid]["logs_dropped"], 10, what="dropped lines to be counted")
    wait_for(lambda: any("log lines dropped" in x.msg for x in stream_lines(beach, logs.subject_filter(uid=uid))),
             10, what="the drop report")
    kept = [x for x in stream_lines(beach, logs.subject_filter(uid=uid)) if x.msg.startswith("flood line")]
    print(f"\nlog flood: 20000 lines in {elapsed:.2f}s, {len(kept)} kept, {dropped} dropped")
    assert len(kept) + dropped >= 20000 - 5
    assert len(kept) <= 500 + 100 * (elapsed + 2), "the burst, then 100 lines/s"
    assert dropped >= 20000 - 500 - 100 * (elapsed + 2)


def test_stack_shows_what_a_handler_is_doing(beach, config_path):
    resp = beach.addActor("Sleeper", "cli/stack")
    uid = resp.data["uid"]
    handle = beach.getActorHandle("cli/stack")
    future = handle.request("sleep", {"seconds": 4}, timeout=10, isWithFuture=True)
    wait_for(lambda: beach.getLoadInfo()[uid]["inflight"] == 1, 10, what="the handler to be running")
    result = beach_cli("stack", str(config_path), uid)
    assert result.returncode == 0, result.stderr
    first_thread = result.stdout.split("\nThread ")[1]
    assert "<- serving 'sleep' (this actor)" in first_thread, result.stdout
    assert "in sleep_handler" in first_thread and "time.sleep(" in first_thread
    data = json.loads(beach_cli("stack", str(config_path), uid, "--json", "--tasks").stdout)
    assert data["uid"] == uid and data["actor"] == "Sleeper" and data["tasks"]
    result = beach_cli("stack", str(config_path), "0" * 32)
    assert result.returncode == 1 and result.stderr == f"beach: no live actor has a uid starting with '{'0' * 32}'\n"
    future.waitAll(10)


def test_gen_key(tmp_path):
    path = tmp_path / "cluster.key"
    assert beach_cli("gen-key", str(path)).returncode == 0
    assert len(path.read_bytes()) == 32 and (path.stat().st_mode & 0o777) == 0o600
    result = beach_cli("gen-key", str(path))
    assert result.returncode == 2 and "exists" in result.stderr


def test_clear_errors_for_bad_input(tmp_path, config_path):
    result = beach_cli("status", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and result.stderr.startswith("beach: config file not found")
    result = beach_cli("frobnicate")
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr
    result = beach_cli("stop", str(config_path))
    assert result.returncode == 1 and "give UIDs and/or --category" in result.stderr
    result = beach_cli("logs", str(config_path), "--level", "loud")
    assert result.returncode == 2 and "--level 'loud'" in result.stderr
    seeds = write_config(tmp_path / "seeds.yaml", "nats://127.0.0.1:1", seed_nodes=[f"127.0.0.1:{free_port()}"])
    result = beach_cli("status", str(seeds))
    assert result.returncode == 1 and "seed_nodes" in result.stderr and "NATS servers" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["status"], ["actors"], ["nodes"], ["logs"], ["patrol", "list"]])
def test_listing_commands_print_json_for_scripts(beach, config_path, command):
    result = beach_cli(*command, str(config_path), "--json")
    assert result.returncode == 0, result.stderr
    if command == ["logs"]:
        assert all(json.loads(line)["kind"] == "app" for line in result.stdout.splitlines())
    else:
        json.loads(result.stdout)


def test_the_shell_and_console_subcommands(beach, config_path, tmp_path):
    import pexpect

    shell = pexpect.spawn(sys.executable, ["-m", "beach.cli", "shell", str(config_path), "--realm", "other"],
                          encoding="utf-8", timeout=30, env={**os.environ, "BEACH_HISTORY": str(tmp_path / "h")})
    try:
        shell.expect_exact("(beach/other) ")
        shell.sendline("realm")
        shell.expect_exact("other")
        shell.sendline("exit")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 0
    result = beach_cli("console", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and result.stderr.startswith("beach: config file not found")


def test_uid_prefixes_for_stop_stack_and_logs(beach, config_path):
    config = str(config_path)
    chatty = beach.addActor("Chatty", "cli/prefix/chatty")
    assert chatty.isSuccess
    uid = chatty.data["uid"]
    pongs = [beach.addActor("Pong", "cli/prefix/pong") for _ in range(16)]
    assert all(r.isSuccess for r in pongs)
    live = [uid] + [r.data["uid"] for r in pongs]
    # 17 uids, 16 hex digits: two start alike (pigeonhole)
    first = next(c for c in "0123456789abcdef" if sum(u.startswith(c) for u in live) >= 2)
    result = beach_cli("stop", config, first)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"uid prefix '{first}' is ambiguous" in result.stderr
    assert all(u in result.stderr for u in live if u.startswith(first)), "the matches are listed"
    assert beach.getActorHandle("cli/prefix").getNumAvailable() == 17, "nothing stopped"
    # the shortest prefix of Chatty's uid that no other uid has
    prefix = next(uid[:n] for n in range(1, 33) if not any(u.startswith(uid[:n]) for u in live if u != uid))
    assert beach.getActorHandle("cli/prefix/chatty").request("say", {"text": f"prefix {uid}"}).isSuccess
    wait_for(lambda: f"prefix {uid}" in beach_cli("logs", config, prefix).stdout, 10, what="the line, by prefix")
    result = beach_cli("stack", config, prefix, "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["uid"] == uid, result.stderr
    result = beach_cli("stop", config, prefix, "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == {"stopped": [uid], "not_found": []}, result.stderr
    # gone: its logs are still there by prefix; stop and stack say "not found" and exit 1
    assert f"prefix {uid}" in beach_cli("logs", config, uid[:12]).stdout
    for command in ("stop", "stack"):
        result = beach_cli(command, config, uid[:12])
        assert result.returncode == 1, (command, result)
        assert result.stderr == f"beach: no live actor has a uid starting with '{uid[:12]}'\n"
    unknown = next(p for p in ("ffffffff", "eeeeeeee", "dddddddd") if not any(u.startswith(p) for u in live))
    result = beach_cli("logs", config, unknown)
    assert result.returncode == 1 and "no log line of one, has a uid starting with" in result.stderr


def test_the_configs_realm_is_the_default_of_the_library_and_the_tools(beach, config_path, nats_server, tmp_path):
    from beach.beach_api import Beach

    dev = write_config(tmp_path / "dev.yaml", nats_server.url, realm="realm-one")
    with Beach(dev) as client:
        assert client.realm == "realm-one"
        assert client.addActor("Pong", "realmed/one").isSuccess
    result = beach_cli("add", str(dev), "Pong", "realmed/two", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(beach_cli("actors", str(dev), "--category", "realmed", "--json").stdout)
    assert sorted((a["realm"], a["categories"][0]) for a in listed) == [("realm-one", "realmed/one"),
                                                                         ("realm-one", "realmed/two")]
    result = beach_cli("request", str(dev), "realmed/one", "ping")
    assert result.returncode == 0 and json.loads(result.stdout) == {"realm": "realm-one"}, result.stderr
    # the session's config has no realm: global, where nothing matches; the other realm is named
    result = beach_cli("actors", str(config_path), "--category", "realmed")
    assert result.returncode == 0 and "no actor under 'realmed' in realm 'global'; realm 'realm-one' has some" in \
        result.stderr, result.stderr
    result = beach_cli("request", str(config_path), "realmed/one", "ping")
    assert result.returncode == 1 and "of realm 'global' (realm 'realm-one' has some)" in result.stderr, result.stderr
    result = beach_cli("stop", str(config_path), "-c", "realmed")
    assert result.returncode == 1 and "realm 'realm-one' has some" in result.stderr, result.stderr
    result = beach_cli("stop", str(dev), "-c", "realmed/two")
    assert result.returncode == 0, result.stderr
    remaining = json.loads(beach_cli("actors", str(dev), "--json").stdout)
    assert [a["categories"] for a in remaining if a["realm"] == "realm-one"] == [["realmed/one"]]


def test_a_client_and_commands_by_url(beach, config_path, nats_server, tmp_path, monkeypatch):
    from beach.beach_api import Beach

    from .conftest import ADMIN_TOKEN

    shared = write_config(tmp_path / "shared.yaml", nats_server.url, realm="realm-one")
    result = beach_cli("config", "push", str(shared), "--json")
    assert result.returncode == 0 and "realm" in json.loads(result.stdout)["pushed"], result.stderr
    token = tmp_path / "token"
    token.write_text(ADMIN_TOKEN + "\n")
    monkeypatch.setenv("BEACH_ADMIN_TOKEN_FILE", str(token))  # secrets never travel: this machine's own
    with Beach(nats_server.url) as client:
        assert client.realm == "realm-one", "the pushed config's realm"
        assert client._core.session.config.admin_token == ADMIN_TOKEN
        started = client.addActor("Pong", "url/pong")
        assert started.isSuccess, started
        assert client.getActorHandle("url/pong").request("ping").isSuccess
    listed = json.loads(beach_cli("actors", nats_server.url, "--category", "url/pong", "--json").stdout)
    assert [(a["uid"], a["realm"]) for a in listed] == [(started.data["uid"], "realm-one")]
    result = beach_cli("request", nats_server.url, "url/pong", "ping", "--data", "{'by': 'url'}")
    assert result.returncode == 0 and json.loads(result.stdout) == {"realm": "realm-one"}, result.stderr
    result = beach_cli("stop", nats_server.url, started.data["uid"][:10], "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["stopped"] == [started.data["uid"]], result.stderr
    result = beach_cli("status", "http://example.invalid/")
    assert result.returncode == 2 and "is not a NATS URL" in result.stderr, result.stderr
