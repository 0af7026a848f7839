"""beach.config: reading a node's config file, its defaults and its errors."""

from __future__ import annotations

import os

import pytest

from beach import config
from beach.errors import ConfigError


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


def test_a_missing_or_malformed_key_file_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("private_key: k.key\naccepted_keys: [old.key]\n")
    (tmp_path / "k.key").write_bytes(os.urandom(32))
    with pytest.raises(ConfigError, match=r"'accepted_keys' .*old\.key: No such file"):
        config.load(path)
    (tmp_path / "old.key").write_text("not a key")
    with pytest.raises(ConfigError, match=r"'accepted_keys' .*old\.key holds 9 bytes"):
        config.load(path)
