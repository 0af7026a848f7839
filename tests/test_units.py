"""Pure functions: subject escaping, the wire format and its rules, config checking."""

from __future__ import annotations

import pytest

from beach import config, wire
from beach.client.routing import affinity_choice
from beach.errors import CategoryError, ConfigError, EncodeError, UsageError
from beach.wire import subjects


@pytest.mark.parametrize("name", ["plain", "1.2", "a b", "*", ">", "=", "ü", "tab\tx", "$sys", "x=3D"])
def test_escape_roundtrip(name):
    token = subjects.escape(name)
    assert subjects.unescape(token) == name
    assert all(c.isalnum() or c in "_-=" for c in token), token


def test_plain_names_stay_readable():
    assert subjects.escape("my_crypt-actor") == "my_crypt-actor"
    assert subjects.request_subject("global", "my_crypt_actor/1.2") == "beach.r.global.my_crypt_actor.1=2E2"


def test_category_segments():
    assert subjects.normalize("/foo/bars/") == "foo/bars"
    assert subjects.prefix_categories(["a/b/c", "a/d"]) == ["a", "a/b", "a/b/c", "a/d"]
    assert subjects.matches("myactors/pongers", "myactors")
    assert not subjects.matches("myactors/pongers", "myactors/pong")
    with pytest.raises(CategoryError, match="empty segment"):
        subjects.normalize("a//b")
    with pytest.raises(CategoryError, match="empty category"):
        subjects.normalize("/")
    with pytest.raises(CategoryError, match="must be a string"):
        subjects.normalize(3)


def test_hidden_actor_category():
    assert subjects.request_subject("r", "_ACTORS/abc") == subjects.actor_subject("r", "abc")


@pytest.mark.parametrize("ret, expected", [
    ((True,), (True, "", {})),
    ((True, {"a": 1}), (True, "", {"a": 1})),
    ((True, 1, 2), (True, "", {})),
    ((False,), (False, "error", {})),
    ((False, "bad"), (False, "bad", {})),
    ((False, "bad", [1]), (False, "bad", [1])),
    ([True, 5], (True, "", 5)),
    ({"a": 1}, (False, wire.INVALID_RESPONSE, {"a": 1})),
    ("text", (False, wire.INVALID_RESPONSE, "text")),
    ((), (False, wire.INVALID_RESPONSE, ())),
    (None, (False, wire.INVALID_RESPONSE, None)),
])
def test_handler_return_normalisation(ret, expected):
    assert wire.normalize_return(ret) == expected


def test_wire_keeps_lists_and_refuses_objects():
    body = wire.pack_request("id", "t", {"l": [1, 2], "t": (3, 4), "s": {5}, "b": b"\x00"}, None, 1.5)
    request = wire.unpack_request(body)
    assert request.data == {"l": [1, 2], "t": [3, 4], "s": [5], "b": b"\x00"}
    assert request.ttl == 1.5
    with pytest.raises(EncodeError, match="object"):
        wire.pack_request("id", "t", {"x": object()}, None, None)


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x93\x01\x02\x03", wire.pack({"a": 1}),
                                  wire.pack([2, "i", "r", {}, None, None])])
def test_malformed_request_bodies_are_rejected(body):
    with pytest.raises(ValueError):
        wire.unpack_request(body)


def test_affinity_is_stable_and_consistent():
    uids = [f"actor{i}" for i in range(10)]
    owners = {k: affinity_choice(f"key{k}", uids) for k in range(2000)}
    assert owners == {k: affinity_choice(f"key{k}", list(reversed(uids))) for k in range(2000)}
    fewer = uids[:-1]
    moved = sum(owners[k] != affinity_choice(f"key{k}", fewer) for k in owners)
    # only the keys of the removed actor move (about 1/10)
    assert moved == sum(1 for o in owners.values() if o == "actor9")


def test_config_defaults_and_relative_paths(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("code_directory: code\nnats:\n  store_dir: state\n")
    c = config.load(path)
    assert c.code_directory == str(tmp_path / "code")
    assert c.nats.store_dir == str(tmp_path / "state")
    assert c.nats.embedded and c.nats.urls == ["nats://127.0.0.1:4222"]


def test_config_legacy_keys(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text("seed_nodes: [10.1.2.3]\nops_port: 4999\ndirectory_port: ipc:///tmp/x\ninterface: eth0\n")
    c = config.load(path)
    assert c.nats.servers == ["nats://10.1.2.3:4222"] and c.seed_nodes == ["10.1.2.3"]
    assert c.interface == "eth0", "the original's interface: the one whose address a node announces"
    assert caplog.text == "", "loading a config says nothing: the node agent warns, once"
    config.warn_ignored(c)
    [line] = caplog.text.splitlines()
    assert "'ops_port', 'directory_port' ignored" in line


@pytest.mark.parametrize("text, message", [
    ("bogus: 1\n", "unknown key 'bogus'"),
    ("n_processes: many\n", "'n_processes' must be int"),
    ("n_processes: -1\n", "'n_processes' must be 0 or more"),
    ("nats:\n  servers: nats://x\n", "'servers' must be list"),
    ("nats:\n  colour: red\n", "unknown key 'nats.colour'"),
    ("admin_token: [1]\n", "'admin_token' must be str"),
    ("log_level: LOUD\n", "'log_level'"),
    ("- a list\n", "must be a YAML mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_config_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        config.load(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")


def test_a_private_key_that_is_missing_or_not_a_key_is_named_when_the_config_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("private_key: nope.key\n")
    with pytest.raises(ConfigError, match=r"'private_key' .*nope.key: No such file"):
        config.load(path)
    (tmp_path / "short.key").write_bytes(b"x" * 5)
    path.write_text("private_key: short.key\n")
    with pytest.raises(ConfigError, match="holds 5 bytes, not a key"):
        config.load(path)
    (tmp_path / "good.key").write_bytes(bytes(32))
    path.write_text("private_key: good.key\nactor_modules: [myapp.actors]\n")
    loaded = config.load(path)
    assert loaded.private_key == str(tmp_path / "good.key") and loaded.actor_modules == ["myapp.actors"]
    path.write_text("actor_modules: ['os; rm']\n")
    with pytest.raises(ConfigError, match="'actor_modules' entries must be module names"):
        config.load(path)


def test_failure_kinds_are_read_back_from_the_error_text():
    from beach import wire
    from beach.client.response import ActorResponse

    assert ActorResponse(False, "busy").failure is wire.Failure.BUSY
    assert ActorResponse(False, "no actor available in category 'x' of realm 'global'").failure is wire.Failure.NO_ACTOR
    assert ActorResponse(False, "bus unavailable: reconnecting").failure is wire.Failure.BUS_UNAVAILABLE
    assert ActorResponse.timeout().failure is wire.Failure.TIMEOUT
    # a handler's own text is its own error, even when it starts like one of ours
    assert ActorResponse(False, "timeout calling the bank").failure is None
    assert ActorResponse(False, "busy doing x").failure is None
    assert ActorResponse(True, "", {}).failure is None
    # the seed's strings stay what callers compare with
    assert wire.BUSY == "busy" and f"{wire.NO_ACTOR} in" == "no actor available in"
    assert wire.unpack(wire.pack_reply(False, wire.BUSY, {})) == [1, False, "busy", {}]
    assert wire.RETRYABLE == {wire.Failure.TIMEOUT, wire.Failure.BUSY, wire.Failure.NO_ACTOR,
                              wire.Failure.BUS_UNAVAILABLE}


def test_a_log_line_names_its_node_actor_or_system():
    from beach import logs

    app = {"t": 0, "level": "INFO", "kind": "app", "realm": "global", "actor": "Pong", "uid": "ab" * 16,
           "node": "n1", "host": "n1-h2", "msg": "hello"}
    assert logs.format_line(app).endswith(" INFO     global/Pong abababab @n1  hello")
    agent = {**app, "kind": "sys", "host": "agent", "msg": "disk full"}
    assert logs.format_line(agent).endswith(" INFO     n1/agent  disk full")
    host = {**agent, "host": "n1-h2"}
    assert logs.format_line(host).endswith(" INFO     n1/h2  disk full")


def test_data_a_person_types_is_read_or_refused_in_one_line_naming_the_problem():
    from beach.output import parse_data

    assert parse_data("{'n': 5}") == {"n": 5} and parse_data('{"n": 5}') == {"n": 5} and parse_data("") == {}
    for text, problem in (("foo", "foo is a name, not a value: quote text ('foo')"),
                          ("{'a': f(1)}", "f(1) is a call: only values are read, never run"),
                          ("{'a': ", "'{' was never closed"), ("1 if 2 else 3", "is an expression, not a value")):
        with pytest.raises(UsageError) as caught:
            parse_data(text, "data")
        message = str(caught.value)
        assert problem in message and "\n" not in message and "object at 0x" not in message, message
