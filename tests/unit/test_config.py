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
    ("n_processes: many\n", "'n_processes' must be a whole number, not a string"),
    ("n_processes: -1\n", "'n_processes' must be a whole number >= 0"),
    ("nats:\n  servers: nats://x\n", "'nats.servers' must be a list, not a string"),
    ("nats:\n  colour: red\n", "unknown key 'nats.colour'"),
    ("admin_token: [1]\n", "'admin_token' must be a string or null, not a list"),
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
    with pytest.raises(ConfigError, match=r"'actor_modules\[0\]' must be a string matching regex"):
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


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BEACH_AUTH_FILE", raising=False)
    for c in (config.load(None), config.load(write(tmp_path, "")), config.load(write(tmp_path, "{}\n"))):
        assert c.code_directory == str(tmp_path)
        assert (c.n_processes, c.admin_token, c.private_key) == (0, None, None)
        assert c.accepted_keys == [] and c.actor_modules == []
        assert c.processes == (os.cpu_count() or 1)
        assert (c.replay_window, c.high_mem_watermark, c.log_level) == (15.0, 80.0, "INFO")
        assert c.sealer is None and c.keys == []
        assert c.nats.embedded and c.nats.urls == ["nats://127.0.0.1:4222"] and c.nats.port == 4222
        assert (c.nats.kv_replicas, c.nats.user, c.nats.auth_file, c.nats.tls, c.nats.store_dir) == (0, None, None,
                                                                                                     None, "")
        assert (c.logs.max_age, c.logs.max_bytes, c.logs.rate, c.logs.burst) == (86400.0, 256 * 1024 * 1024, 100.0,
                                                                                  500)
        assert (c.backlog.messages, c.backlog.bytes) == (10_000, 4 * 1024 * 1024)
        assert c.code.cache == os.path.expanduser("~/.cache/beach/code")
        assert (c.code.cache_bytes, c.code.max_bundle_bytes, c.code.pip, c.code.pip_args) == (
            512 * 1024 * 1024, 64 * 1024 * 1024, False, [])
        assert c.ignored == [] and c.seed_nodes == []


def test_every_section_is_read(tmp_path):
    c = config.load(write(tmp_path, """
n_processes: 3
replay_window: 2.5
high_mem_watermark: 90
log_level: debug
logs: {max_age: 60, max_bytes: 1000, rate: 5, burst: 7}
backlog: {messages: 11, bytes: 12}
code: {cache: cache, cache_bytes: 13, max_bundle_bytes: 14, pip: true, pip_args: [--no-index]}
nats: {servers: ["nats://a:1", "nats://b:2"], port: 5000, kv_replicas: 3, user: u, password: p, inbox_prefix: _I,
       sync_interval: 2m}
state: {max_value_bytes: 1000, max_keys: 20, retry_window: 30}
"""))
    assert (c.nats.sync_interval, c.state.max_value_bytes, c.state.max_keys, c.state.retry_window) == (
        "2m", 1000, 20, 30)
    assert (c.n_processes, c.processes, c.replay_window, c.high_mem_watermark, c.log_level) == (3, 3, 2.5, 90, "DEBUG")
    assert (c.logs.max_age, c.logs.max_bytes, c.logs.rate, c.logs.burst) == (60, 1000, 5, 7)
    assert (c.backlog.messages, c.backlog.bytes) == (11, 12)
    assert (c.code.cache, c.code.cache_bytes, c.code.max_bundle_bytes, c.code.pip, c.code.pip_args) == (
        str(tmp_path / "cache"), 13, 14, True, ["--no-index"])
    assert not c.nats.embedded and c.nats.urls == ["nats://a:1", "nats://b:2"]
    assert (c.nats.port, c.nats.kv_replicas, c.nats.user, c.nats.password, c.nats.inbox_prefix) == (5000, 3, "u", "p",
                                                                                                     "_I")
    assert config.load(write(tmp_path, "log_level: 10\n")).log_level == 10


@pytest.mark.parametrize("text, message", [
    ("n_processes: true\n", "'n_processes' must be a whole number, not true or false"),
    ("n_processes: 1.5\n", "'n_processes' must be a whole number, not a number"),
    ("nats: {port: '4222'}\n", "'nats.port' must be a whole number, not a string"),
    ("nats: {port: 0}\n", "'nats.port' must be a whole number >= 1"),
    ("nats: {kv_replicas: -1}\n", "'nats.kv_replicas' must be a whole number >= 0"),
    ("replay_window: 0\n", "'replay_window' must be a number > 0"),
    ("replay_window: fast\n", "'replay_window' must be a number, not a string"),
    ("code: {max_bundle_bytes: 0}\n", "'code.max_bundle_bytes' must be a whole number >= 1"),
    ("code: {cache_bytes: -5}\n", "'code.cache_bytes' must be a whole number >= 1"),
    ("code: {pip: 1}\n", "'code.pip' must be true or false, not a whole number"),
    ("code: {pip_args: [1]}\n", "'code.pip_args\\[0\\]' must be a string, not a whole number"),
    ("logs: {rate: 0}\n", "'logs.rate' must be a number > 0"),
    ("backlog: {messages: 0}\n", "'backlog.messages' must be a whole number >= 1"),
    ("backlog: [1]\n", "'backlog' must be a map, not a list"),
    ("code: {colour: red}\n", "unknown key 'code.colour'"),
    ("nats: {servers: ['']}\n", "'nats.servers\\[0\\]' must be a non-empty string"),
    ("nats: {tls: {ca: x, pem: y}}\n", "'nats.tls' keys must be one of ca, cert, key, not 'pem'"),
    ("nats: {tls: {cert: c.pem}}\n", "'nats.tls' needs 'cert' and 'key' together"),
    ("nats: {tls: {ca: missing.pem}}\n", "'nats.tls.ca' .*missing.pem: no such file"),
    ("nats: {server_config: nope.conf}\n", "'nats.server_config' .*nope.conf: no such file"),
    ("accepted_keys: [old.key]\n", "'accepted_keys' without a 'private_key'"),
    ("accepted_keys: ['']\n", "'accepted_keys\\[0\\]' must be a non-empty string"),
    ("seed_nodes: 10.0.0.1\n", "'seed_nodes' must be a list, not str"),
    ("actor_modules: [3]\n", "'actor_modules\\[0\\]' must be a string, not a whole number"),
    ("log_level: 1.5\n", "'log_level' must be a whole number or a string, not a number"),
    ("nats: {sync_interval: soon}\n", "'nats.sync_interval' must be a string matching regex"),
    ("nats: {sync_interval: 2}\n", "'nats.sync_interval' must be a string, not a whole number"),
    ("state: {max_keys: 0}\n", "'state.max_keys' must be a whole number >= 1"),
    ("state: {max_value_bytes: big}\n", "'state.max_value_bytes' must be a whole number, not a string"),
    ("state: {retry_window: 0}\n", "'state.retry_window' must be a number > 0"),
    ("state: {colour: red}\n", "unknown key 'state.colour'"),
])
def test_each_wrong_value_is_named(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"^{path}: .*{message}"):
        config.load(path)


def test_null_values_of_optional_keys_are_their_defaults(tmp_path):
    c = config.load(write(tmp_path, "admin_token: null\nprivate_key: null\nnats: {user: null}\n"))
    assert c.admin_token is None and c.private_key is None and c.nats.user is None
    # a key left empty takes its default, whatever its type (before msgspec, these two were errors)
    c = config.load(write(tmp_path, "n_processes: null\nnats: {servers: null}\n"))
    assert c.n_processes == 0 and c.nats.servers == [] and c.nats.embedded


def test_seed_nodes_are_nats_servers(tmp_path):
    c = config.load(write(tmp_path, "seed_nodes: [10.0.0.1, 'h:4333', 'tls://x:1']\nnats: {servers: ['nats://y:2']}\n"))
    assert c.seed_nodes == ["10.0.0.1", "h:4333", "tls://x:1"]
    assert c.nats.servers == ["nats://y:2", "nats://10.0.0.1:4222", "nats://h:4333", "tls://x:1"]
    assert config.load(write(tmp_path, "seed_nodes: []\n")).nats.embedded


def test_a_private_key_makes_a_sealer_with_the_replay_window(tmp_path):
    (tmp_path / "k.key").write_bytes(bytes(32))
    (tmp_path / "old.key").write_bytes(bytes(range(32)))
    c = config.load(write(tmp_path, "private_key: k.key\naccepted_keys: [old.key]\nreplay_window: 4\n"))
    assert c.keys == [bytes(32), bytes(range(32))]
    assert c.sealer is c.sealer and c.sealer.window == 4
    assert c.accepted_keys == [str(tmp_path / "old.key")]


def test_an_auth_file_fills_in_the_connection(tmp_path, monkeypatch):
    monkeypatch.delenv("BEACH_AUTH_FILE", raising=False)
    secure = tmp_path / "secure"
    secure.mkdir()
    (secure / "ca.pem").write_text("x")
    (secure / "client.auth").write_text("user: alice\npassword: pw\ninbox_prefix: _INBOX_a\nrole: admin\n"
                                        "realm: shop\nca: ca.pem\n")
    c = config.load(write(tmp_path, "nats: {auth_file: secure/client.auth}\n"))
    assert (c.nats.user, c.nats.password, c.nats.inbox_prefix, c.nats.role, c.nats.realm) == (
        "alice", "pw", "_INBOX_a", "admin", "shop")
    assert c.nats.tls == {"ca": str(secure / "ca.pem")}
    # a config naming none takes BEACH_AUTH_FILE's
    monkeypatch.setenv("BEACH_AUTH_FILE", str(secure / "client.auth"))
    assert config.load(write(tmp_path, "{}\n")).nats.user == "alice"
    (secure / "bad.auth").write_text("user: alice\npassword: pw\ncolour: red\n")
    with pytest.raises(ConfigError, match=r"'nats.auth_file' .*bad.auth: unknown key 'colour'$"):
        config.load(write(tmp_path, "nats: {auth_file: secure/bad.auth}\n"))
    (secure / "bad.auth").write_text("user: alice\n")
    with pytest.raises(ConfigError, match=r"'nats.auth_file' .*bad.auth: 'password' is missing$"):
        config.load(write(tmp_path, "nats: {auth_file: secure/bad.auth}\n"))
    with pytest.raises(ConfigError, match=r"'nats.auth_file' .*none.auth: No such file"):
        config.load(write(tmp_path, "nats: {auth_file: secure/none.auth}\n"))


def test_a_key_left_empty_in_any_section_takes_its_default(tmp_path):
    # (every section: the list of them is derived from ConfigFile, so a new section is not forgotten)
    text = "".join(f"{section}:\n  {key}:\n" for section, key in [
        ("nats", "port"), ("logs", "rate"), ("backlog", "bytes"), ("code", "cache_bytes"),
        ("restbridge", "max_retries"), ("dashboard", "max_streams"), ("state", "max_keys")])
    c = config.load(write(tmp_path, text))
    assert (c.nats.port, c.logs.rate, c.backlog.bytes, c.code.cache_bytes, c.restbridge.max_retries,
            c.dashboard.max_streams, c.state.max_keys) == (4222, 100.0, 4 * 1024 * 1024, 512 * 1024 * 1024, 10, 64,
                                                           100_000)
    # a null inside a value that is not a section is the value's own: refused
    with pytest.raises(ConfigError, match=r"'nats\.tls\[\.\.\.\]' must be a string, not null$"):
        config.load(write(tmp_path, "nats: {tls: {ca: null}}\n"))


def test_urls_of_an_embedded_server_and_of_named_ones():
    nats = config.NatsConfig(port=5000, join=["nats://10.0.0.9:4222", "nats://127.0.0.1:5000"])
    assert nats.embedded and nats.local_url == "nats://127.0.0.1:5000"
    assert nats.urls == ["nats://127.0.0.1:5000", "nats://10.0.0.9:4222"]  # its own first, once
    for wildcard in ("0.0.0.0", "::", ""):
        assert config.NatsConfig(listen=wildcard).local_url == "nats://127.0.0.1:4222"
    assert config.NatsConfig(listen="10.1.1.1", port=4).local_url == "nats://10.1.1.1:4"
    named = config.NatsConfig(servers=["nats://a:1"], join=["nats://b:2"])
    assert not named.embedded and named.urls == ["nats://a:1"]
    named.urls.append("nats://c:3")
    assert named.servers == ["nats://a:1"], "urls is a copy"


def test_join_urls_and_seeds_take_a_scheme_and_the_default_port(tmp_path):
    c = config.load(write(tmp_path, "nats: {join: [10.0.0.5, 'h:4333', 'tls://x:1'], listen: 0.0.0.0,\n"
                                    "       advertise: 10.0.0.2, cluster_port: 0}\n"))
    assert c.nats.join == ["nats://10.0.0.5:4222", "nats://h:4333", "tls://x:1"]
    assert (c.nats.listen, c.nats.advertise, c.nats.cluster_port) == ("0.0.0.0", "10.0.0.2", 0)
    assert c.nats.urls == ["nats://127.0.0.1:4222", *c.nats.join]
    with pytest.raises(ConfigError, match=r"'nats.advertise' must be a string matching regex"):
        config.load(write(tmp_path, "nats: {advertise: 'nats://x:1'}\n"))


def test_paths_are_relative_to_the_config_file_and_urls_are_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("BEACH_AUTH_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "server.conf").write_text("x")
    sub = tmp_path / "sub"
    sub.mkdir()
    for name in ("ca.pem", "c.pem", "k.pem"):
        (sub / name).write_text("x")
    c = config.load(write(tmp_path, "code_directory: ./a/../code\nnats: {credentials: sub/x.creds, store_dir: st,\n"
                                    "  server_config: server.conf,\n"
                                    "  tls: {ca: sub/ca.pem, cert: sub/c.pem, key: sub/k.pem}}\n"
                                    "code: {cache: ~/cache}\n"))
    assert c.path == str(tmp_path / "c.yaml") and c.base_dir == str(tmp_path)
    assert c.code_directory == str(tmp_path / "code")
    assert c.nats.credentials == str(sub / "x.creds") and c.nats.store_dir == str(tmp_path / "st")
    assert c.nats.server_config == str(tmp_path / "server.conf")
    assert c.nats.tls == {"ca": str(sub / "ca.pem"), "cert": str(sub / "c.pem"), "key": str(sub / "k.pem")}
    assert c.code.cache == str(tmp_path / "home" / "cache")
    c = config.load(write(tmp_path, f"code_directory: {tmp_path / 'abs'}\ncode: {{cache: 'file:///c'}}\n"
                                    "nats: {credentials: 'nats://not/a/path'}\n"))
    assert c.code_directory == str(tmp_path / "abs") and c.code.cache == "file:///c"
    assert c.nats.credentials == "nats://not/a/path"
    # an empty code_directory is the config's own directory
    assert config.load(write(tmp_path, "code_directory: ''\n")).code_directory == str(tmp_path)
    monkeypatch.chdir(sub)
    assert config.load(None).base_dir == str(sub) and config.load(None).path is None


def test_the_realm_is_checked_and_an_auth_files_realm_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("BEACH_AUTH_FILE", raising=False)
    assert config.load(write(tmp_path, "realm: shop\n")).realm == "shop"
    with pytest.raises(ConfigError, match=r"c.yaml: 'realm': 'a b' is not a realm name"):
        config.load(write(tmp_path, "realm: a b\n"))
    (tmp_path / "admin.auth").write_text("user: u\npassword: p\nrealm: shop\n")
    assert config.load(write(tmp_path, "nats: {auth_file: admin.auth}\n")).realm == "shop"
    assert config.load(write(tmp_path, "realm: other\nnats: {auth_file: admin.auth}\n")).realm == "other"
    (tmp_path / "node.auth").write_text("user: u\npassword: p\ninbox_prefix: _I_auth\n")
    c = config.load(write(tmp_path, "nats: {auth_file: node.auth, inbox_prefix: _I_own}\n"))
    assert (c.realm, c.nats.inbox_prefix, c.nats.role, c.nats.tls) == ("global", "_I_own", None, None)
    # a CA the auth file names must exist; a config's own tls wins over it
    (tmp_path / "ca.auth").write_text("user: u\npassword: p\nca: missing.pem\n")
    with pytest.raises(ConfigError, match=r"'nats.auth_file' .*ca.auth: its CA .*missing.pem: no such file$"):
        config.load(write(tmp_path, "nats: {auth_file: ca.auth}\n"))
    (tmp_path / "mine.pem").write_text("x")
    assert config.load(write(tmp_path, "nats: {auth_file: ca.auth, tls: {ca: mine.pem}}\n")).nats.tls == {
        "ca": str(tmp_path / "mine.pem")}
    (tmp_path / "bad.auth").write_text("user: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml: 'nats.auth_file' .*bad.auth is not YAML: "):
        config.load(write(tmp_path, "nats: {auth_file: bad.auth}\n"))


def test_log_levels(tmp_path):
    assert config.load(write(tmp_path, "log_level: warning\n")).log_level == "WARNING"
    assert config.load(write(tmp_path, "log_level: 25\n")).log_level == 25
    with pytest.raises(ConfigError, match=r"^.*c.yaml: 'log_level' 'loud' is not a logging level$"):
        config.load(write(tmp_path, "log_level: loud\n"))


def test_repr_never_shows_the_keys(tmp_path):
    (tmp_path / "k.key").write_bytes(b"K" * 32)
    c = config.load(write(tmp_path, "private_key: k.key\n"))
    assert repr(c) == f"Config(path={str(tmp_path / 'c.yaml')!r})" and "KKKK" not in repr(c)
    assert c.sealer is not None and c.sealer.window == 15.0


def test_processes_is_the_cpu_count_unless_given(monkeypatch):
    assert config.parse({"n_processes": 2}).processes == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert config.parse({}).processes == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert config.parse({}).processes == 1


def test_a_config_must_be_a_mapping_and_errors_name_it():
    assert config.parse(None).realm == "global"
    with pytest.raises(ConfigError, match=r"^config: the config must be a YAML mapping, not list$"):
        config.parse([1])
    with pytest.raises(ConfigError, match=r"^x.yaml: unknown key 'bogus'$"):
        config.parse({"bogus": 1}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^config: 'seed_nodes' must be a list, not dict$"):
        config.parse({"seed_nodes": {"a": 1}})


def test_use_ports_and_use_address():
    c = config.use_ports(config.parse({}), port=5001)
    assert (c.nats.port, c.nats.cluster_port) == (5001, 6222)
    c = config.use_ports(config.parse({}), cluster_port=0)
    assert (c.nats.port, c.nats.cluster_port) == (4222, 0)
    c = config.use_ports(config.parse({}), 7, 8)
    assert (c.nats.port, c.nats.cluster_port) == (7, 8)
    with pytest.raises(ConfigError, match=r"^the command line: 'nats.port' must be a whole number <= 65535$"):
        config.use_ports(config.parse({}), port=70000)
    with pytest.raises(ConfigError, match=r"^the command line: 'nats.cluster_port' must be a whole number >= 0$"):
        config.use_ports(config.parse({}), cluster_port=-1)
    c = config.use_address(config.parse({}), "10.0.0.7")  # loopback default: binds every interface
    assert (c.nats.advertise, c.nats.listen) == ("10.0.0.7", "0.0.0.0")
    c = config.use_address(config.parse({"nats": {"listen": "10.0.0.7"}}), "10.0.0.7")
    assert (c.nats.advertise, c.nats.listen) == ("10.0.0.7", "10.0.0.7")
    c = config.use_address(config.parse({"nats": {"listen": "::"}}), "10.0.0.7")
    assert c.nats.listen == "::"


def test_use_secure_dir(tmp_path):
    (tmp_path / "node.auth").write_text("user: n\npassword: p\nrole: node\n")
    (tmp_path / "admin.auth").write_text("user: a\npassword: q\nrole: admin\n")
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: no nats-server.conf \(made by 'beach secure init "):
        config.use_secure_dir(config.parse({}), str(tmp_path))
    (tmp_path / "nats-server.conf").write_text("x")
    c = config.use_secure_dir(config.parse({}), str(tmp_path))
    assert (c.secure_dir, c.nats.auth_file, c.nats.server_config) == (
        str(tmp_path), str(tmp_path / "node.auth"), str(tmp_path / "nats-server.conf"))
    assert (c.nats.user, c.nats.password, c.nats.role) == ("n", "p", "node")
    c = config.use_secure_dir(config.parse({"nats": {"servers": ["nats://x:1"]}}), str(tmp_path), "admin")
    assert (c.nats.user, c.nats.role, c.nats.server_config) == ("a", "admin", None)  # not embedded: no server
    with pytest.raises(ConfigError, match=r"^config: 'nats.auth_file' .*client.auth: No such file"):
        config.use_secure_dir(config.parse({}), str(tmp_path), "client")


def test_read_refuses_a_url_and_names_the_file(tmp_path):
    assert config.is_url("nats://h:4222") and not config.is_url("c.yaml")
    with pytest.raises(ConfigError, match=r"^'nats://h:4222' is a URL: a config file is needed here"):
        config.read("nats://h:4222")
    with pytest.raises(ConfigError, match=rf"^config file not found: {tmp_path / 'none.yaml'}$"):
        config.read(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match=rf"^cannot read config file {tmp_path}: "):
        config.read(tmp_path)
    assert config.read(write(tmp_path, "a: 1\n")) == {"a": 1}


def test_warn_ignored_says_nothing_without_ignored_keys(caplog):
    config.warn_ignored(config.parse({}))
    assert caplog.records == []
    config.warn_ignored(config.parse({"ops_port": 1, "directory_port": 2}, "/etc/beach.yaml"))
    config.warn_ignored(config.parse({"ops_port": 1}))
    assert [r.getMessage() for r in caplog.records] == [
        "/etc/beach.yaml: 'ops_port', 'directory_port' ignored: NATS does their job in this version of beach",
        "config: 'ops_port' ignored: NATS does their job in this version of beach"]


@pytest.fixture
def latin1_locale(monkeypatch):
    """As on a machine whose locale's encoding is Latin-1: what ``open`` reads without an encoding."""
    def opener(file, mode="r", buffering=-1, encoding=None, *args, **kwargs):
        return open(file, mode, buffering, encoding or "latin-1", *args, **kwargs)

    monkeypatch.setattr(config, "open", opener, raising=False)


def test_the_config_and_auth_files_are_utf8_whatever_the_locale(tmp_path, latin1_locale, monkeypatch):
    monkeypatch.delenv("BEACH_AUTH_FILE", raising=False)
    (tmp_path / "a.auth").write_text("user: zoë\npassword: café\n", encoding="utf-8")
    c = config.load(write(tmp_path, "admin_token: café\nnats: {auth_file: a.auth}\n"))
    assert (c.admin_token, c.nats.user, c.nats.password) == ("café", "zoë", "café")
