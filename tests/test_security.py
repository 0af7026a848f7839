"""Safe on a shared bus: roles enforced by the NATS server (``beach secure init``), TLS, sealed
messages, the admin token proven by challenge-response, the audit log.

Each test plays someone else on the bus with a plain nats-py connection (no beach code) where the
finding was made that way: a client that publishes to a control subject, writes a KV bucket, joins
the actors' queue group or reads another client's replies; a sniffer looking for secrets; a
forger flipping a byte, replaying a message or moving a KV value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml

from beach import PermissionDenied, UsageError, wire
from beach import config as beach_config
from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.security import authority, roles, seal
from beach.security.certs import client_context
from beach.security.sealedkv import REFUSED, SealedBucket
from beach.state.records import NodeEntry

from .conftest import LEDGER, NodeProcess, free_port, holds_for, ledger, wait_for, write_config

MARKER = "zebra-7f3c"  # in data, private parameters, idents and log lines: never on the wire in clear


def auth(creds: Path, user: str) -> dict[str, Any]:
    """nats-py connect options for ``user`` of a ``beach secure init`` directory (TLS included)."""
    record = yaml.safe_load((creds / f"{user}.auth").read_text())
    return {"user": record["user"], "password": record["password"], "inbox_prefix": record["inbox_prefix"],
            "tls": client_context(str(creds / record["ca"]))}


class Refusals:
    """Collects the permission violations the server reports to a raw connection."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def cb(self, err: Exception) -> None:
        self.seen.append(str(err))

    def about(self, subject: str) -> bool:
        # nats-py hands the server's error over in lower case
        return any("permissions violation" in s.lower() and f'"{subject.lower()}"' in s.lower() for s in self.seen)


async def raw(url: str, refusals: Refusals | None = None, **options: Any) -> nats.NATS:
    return await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0, allow_reconnect=False,
                              error_cb=(refusals or Refusals()).cb, **options)


# ---------------------------------------------------------------------------- a secured cluster


class Secured:
    """A one-node cluster on its own embedded server with beach's roles, over TLS."""

    def __init__(self, root: Path) -> None:
        self.creds = root / "creds"
        roles.init(str(self.creds), realm_admins=["team"], clients=["alice", "bob"], tls_hosts=["127.0.0.1"])
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        node_config = write_config(root / "node.yaml", self.url, admin_token=None,
                                   nats={"port": self.port, "cluster_port": 0, "store_dir": str(root / "js")})
        self.node = NodeProcess(node_config, "secure-node", args=["--secure", str(self.creds)])
        self.configs = {user: write_config(root / f"{user}.yaml", self.url, admin_token=None,
                                           nats={"servers": [self.url], "auth_file": str(self.creds / f"{user}.auth")})
                        for user in ("admin", "alice", "bob", "observer", "admin-team")}

    def client(self, user: str, realm: str = "global") -> Beach:
        return Beach(self.configs[user], realm=realm)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    cluster = Secured(tmp_path_factory.mktemp("secured"))
    try:
        wait_for(lambda: _connects(cluster), 30, what="the secured node's server")
        with cluster.client("admin") as admin:
            cluster.node.wait_registered(admin)
        yield cluster
    finally:
        assert cluster.node.terminate() == 0


def _connects(cluster: Secured) -> bool:
    if cluster.node.process.poll() is not None:
        pytest.fail(f"the secured node exited with {cluster.node.process.returncode}")
    try:
        with cluster.client("observer") as observer:
            return cluster.node.node_id in observer._core.session.view.nodes
    except Exception:
        return False


@pytest.fixture
def admin(secured: Secured) -> Iterator[Beach]:
    client = secured.client("admin")
    yield client
    assert client.flush()
    client.close()


def test_the_server_refuses_plain_text_and_a_client_without_credentials(secured: Secured) -> None:
    async def attempts() -> list[str]:
        failures = []
        for options in ({}, {"tls": client_context(str(secured.creds / "tls" / "ca.pem"))}):
            try:
                nc = await raw(secured.url, **options)
            except Exception as err:
                failures.append(type(err).__name__)
            else:
                await nc.close()
        return failures

    # no CA: the server's certificate is not trusted; the CA but no user: authorization refused
    assert len(asyncio.run(attempts())) == 2


def test_a_client_may_not_publish_control_write_kv_or_join_the_actors_queue(secured: Secured, admin: Beach) -> None:
    uid = admin.addActor("Pong", "sec/pong").data["uid"]

    async def misbehave() -> tuple[Refusals, dict[str, int]]:
        refusals = Refusals()
        nc = await raw(secured.url, refusals, **auth(secured.creds, "alice"))
        spy = await nc.subscribe("beach.r.global.sec.pong", queue="beach", cb=_forge_reply(nc))
        await nc.publish(authority.control_subject("secure-node", "flush", None, "alice"), b"")
        await nc.publish("beach.n.secure-node.flush", b"")
        await nc.publish("$KV.beach_actors.global.fake", b"planted")
        await nc.publish("$KV.beach_desired.lease.supervisor", b"planted")
        await nc.publish("beach.h.secure-node-h1.stop", b"")
        await nc.flush()
        await asyncio.sleep(0.5)
        await spy.unsubscribe()
        await nc.close()
        return refusals, {}

    refusals, _ = asyncio.run(misbehave())
    for subject in ("beach.r.global.sec.pong", authority.control_subject("secure-node", "flush", None, "alice"),
                    "beach.n.secure-node.flush", "$KV.beach_actors.global.fake", "$KV.beach_desired.lease.supervisor",
                    "beach.h.secure-node-h1.stop"):
        assert refusals.about(subject), (subject, refusals.seen)
    # nothing was stopped, planted or forged: every one of 40 requests gets the real actor's answer
    assert uid in admin.getDirectory()["reverse"] and "fake" not in admin.getDirectory()["reverse"]
    with secured.client("alice") as alice:
        handle = alice.getActorHandle("sec/pong")
        replies = [handle.request("ping", {"n": i}, timeout=10) for i in range(40)]
    assert all(r.isSuccess and r.data["uid"] == uid for r in replies), [r for r in replies if not r.isSuccess][:3]


def _forge_reply(nc: nats.NATS):
    async def forge(msg: Any) -> None:
        await nc.publish(msg.reply, b"forged")

    return forge


def test_no_client_reads_another_clients_replies(secured: Secured, admin: Beach) -> None:
    admin.addActor("Pong", "sec/private")

    async def eavesdrop() -> tuple[Refusals, list[bytes]]:
        refusals = Refusals()
        bob = await raw(secured.url, refusals, **auth(secured.creds, "bob"))
        heard: list[bytes] = []

        async def keep(msg: Any) -> None:
            heard.append(msg.data)

        for subject in ("_INBOX_alice.>", "_INBOX.>", ">", "beach.r.>"):
            await bob.subscribe(subject, cb=keep)
        await bob.flush()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(alice_asks)  # alice's request and its reply, while bob listens
        await asyncio.sleep(0.3)
        await bob.close()
        return refusals, heard

    def alice_asks() -> None:
        with secured.client("alice") as alice:
            assert alice.getActorHandle("sec/private").request("ping", {"m": MARKER}, timeout=10).isSuccess

    refusals, heard = asyncio.run(eavesdrop())
    for subject in ("_INBOX_alice.>", "_INBOX.>", ">", "beach.r.>"):
        assert refusals.about(subject), (subject, refusals.seen)
    assert not heard


def test_a_client_sends_and_receives_payloads_larger_than_a_message(secured: Secured, admin: Beach) -> None:
    # (through the object store: the client role may write, read and delete its chunks)
    assert admin.addActor("Blobs", "sec/blobs").isSuccess
    blob = os.urandom(3 * 1024 * 1024)
    with secured.client("alice") as alice:
        handle = alice.getActorHandle("sec/blobs")
        assert handle.request("digest", {"blob": blob}, timeout=30).data["sha256"] == hashlib.sha256(blob).hexdigest()
        reply = handle.request("repeat", {"text": "z", "times": 3 * 1024 * 1024}, timeout=30)
        assert reply.isSuccess and reply.data["blob"] == b"z" * (3 * 1024 * 1024), reply.error


def test_library_calls_without_the_right_get_a_clear_permission_error(secured: Secured, admin: Beach) -> None:
    admin.addActor("Pong", "sec/observed")
    with secured.client("alice") as alice:
        started = time.monotonic()
        with pytest.raises(PermissionDenied, match=r"permission denied: NATS user 'alice' may not publish to "
                                                   r"'beach\.n\.secure-node\.spawn\._\.alice'"):
            alice.addActor("Pong", "sec/nope")
        assert time.monotonic() - started < 5  # told at once, not after the control timeout
    with secured.client("observer") as observer:
        response = observer.getActorHandle("sec/observed").request("ping", timeout=10, nRetries=0)
        assert not response.isSuccess and "permission denied: NATS user 'observer' may not publish to" in response.error
        assert observer.getDirectory()["realms"]["global"]["sec/observed"]  # reading is allowed


def test_a_realm_admins_rights_stop_at_its_realm(secured: Secured, admin: Beach) -> None:
    # (realms without code directories here: the test actors' module serves every realm)
    admin.setRealm("team")
    ours = admin.addActor(LEDGER, "sec/ours").data["uid"]
    admin.setRealm("other")
    theirs = admin.addActor(LEDGER, "sec/theirs").data["uid"]
    admin.setRealm("global")
    with secured.client("admin-team", realm="team") as team:
        assert team.addActor(LEDGER, "sec/more").isSuccess
        team.setRealm("other")
        with pytest.raises(PermissionDenied, match="may not publish to"):
            team.addActor(LEDGER, "sec/intruder")
        team.setRealm("team")
        assert team.flush()  # the team's flush: its realm only
    wait_for(lambda: ours not in admin.getDirectory()["reverse"], 10, what="the team's actors to go")
    reverse = admin.getDirectory()["reverse"]
    assert theirs in reverse and not any(a.realm == "team" for a in admin._core.session.view.live())


TALLY = "beach_test_actors:Tally"


def test_actor_state_is_read_by_admins_a_realm_admin_its_realm_observers_sizes_only(secured: Secured,
                                                                                   admin: Beach) -> None:
    from beach.state import stateview

    assert admin.addActor(TALLY, "sec/tally").isSuccess
    assert admin.getActorHandle("sec/tally").request("add", {"key": MARKER}).data["value"] == 1
    admin.setRealm("team")
    assert admin.addActor(TALLY, "tally").isSuccess
    assert admin.getActorHandle("tally").request("add", {"key": "ours"}).data["value"] == 1
    admin.setRealm("global")
    assert admin.getState("sec/tally") == {MARKER: 1} and admin.getState("tally", realm="team") == {"ours": 1}
    with secured.client("admin-team", realm="team") as team:
        assert team.getState("tally") == {"ours": 1}
        assert team._runner.run(stateview.read_key(team._core.session, "team", "tally", "ours"))[0] > 0
        with pytest.raises(PermissionDenied, match="may not publish to"):
            team.getState("sec/tally", realm="global")
        with pytest.raises(PermissionDenied, match="may not publish to"):
            team._runner.run(stateview.read_key(team._core.session, "global", "sec/tally", MARKER))
        with pytest.raises(PermissionDenied, match="may not publish to"):  # outside its realm
            team.deleteState("sec/tally", MARKER, realm="global")
        assert team.deleteState("tally", "ours").isSuccess
        assert team.getState("tally") == {}
    for user in ("alice", "observer"):
        with secured.client(user) as other, pytest.raises(PermissionDenied, match="may not publish to"):
            other.getState("sec/tally")
    # an observer sees how big the state is, not what it holds
    status = subprocess.run([sys.executable, "-m", "beach.cli", "status", str(secured.configs["observer"]), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    sizes = {(c["realm"], c["category"]): c["keys"] for c in json.loads(status.stdout)["state"]["categories"]}
    assert sizes[("global", "sec/tally")] == 1 and MARKER not in status.stdout
    assert {b["name"] for b in json.loads(status.stdout)["state"]["buckets"]} >= {"KV_beach_state", "KV_beach_actors"}

    async def write_as_client() -> Refusals:
        refusals = Refusals()
        nc = await raw(secured.url, refusals, **auth(secured.creds, "admin"))
        await nc.publish(f"$KV.beach_state.global.k.sec=2Ftally.{MARKER}", b"\x05")
        await nc.flush()
        await asyncio.sleep(0.3)
        await nc.close()
        return refusals

    assert asyncio.run(write_as_client()).about(f"$KV.beach_state.global.k.sec=2Ftally.{MARKER}")
    assert admin.getState("sec/tally") == {MARKER: 1}  # only nodes write actor state


def test_deploying_code_takes_admin_credentials(secured: Secured, admin: Beach, tmp_path: Path) -> None:
    from beach.code import bundle, deploy
    from beach.code import store as codestore

    from .test_code import write_realm

    code = write_realm(tmp_path / "code", "secure-one")
    record = admin._runner.run(deploy.deploy(admin._core, "secreal", code))
    admin.setRealm("secreal")
    assert admin.addActor("Echo", "sec/echo").isSuccess
    assert admin.getActorHandle("sec/echo").request("echo", {"n": 1}).data == {"version": "secure-one", "n": 1}
    with secured.client("alice") as alice:
        with pytest.raises(UsageError, match="deploy needs admin rights.*user 'alice', role client"):
            alice._runner.run(deploy.deploy(alice._core, "secreal", code))
        packed = bundle.pack(write_realm(tmp_path / "evil", "evil"))  # straight at the store: NATS says no
        with pytest.raises(PermissionDenied, match="NATS user 'alice' may not publish to '.*obj_beach_code"):
            alice._runner.run(codestore.upload(alice._core.session, packed))
    with secured.client("admin-team", realm="team") as team:
        assert team._runner.run(deploy.deploy(team._core, "team", code)).version == "v1"
        with pytest.raises(PermissionDenied, match="may not publish to 'beach.n.secure-node.desired.other"):
            team._runner.run(deploy.deploy(team._core, "other", code))
    versions = admin._runner.run(deploy.versions(admin._core))
    assert {(v.realm, v.version) for v, _ in versions} == {("secreal", "v1"), ("team", "v1")}
    assert [v.who for v, _ in versions if v.realm == "secreal"] == ["admin"] and record.who == "admin"


def test_admin_operations_are_in_the_audit_log(secured: Secured, admin: Beach) -> None:
    admin.addActor("Pong", "sec/audited", parameters={"_secret": MARKER})
    with secured.client("admin-team", realm="team") as team:
        team.flush()
    result = subprocess.run([sys.executable, "-m", "beach.cli", "audit", str(secured.configs["observer"]), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    spawn = [e for e in entries if e["op"] == "spawn" and e["what"]["categories"] == ["sec/audited"]]
    assert spawn and spawn[-1]["who"] == "admin" and spawn[-1]["ok"] and spawn[-1]["node"] == "secure-node"
    assert any(e["op"] == "flush" and e["who"] == "admin-team" and e["realm"] == "team" for e in entries)
    assert MARKER not in result.stdout  # parameters are never recorded
    text = subprocess.run([sys.executable, "-m", "beach.cli", "audit", str(secured.configs["observer"]),
                           "--who", "admin-team"], capture_output=True, text=True, timeout=60)
    assert " admin-team flush realm=team on secure-node" in text.stdout and " admin spawn" not in text.stdout


def test_the_tools_follow_the_credentials(secured: Secured, tmp_path: Path) -> None:
    for user, read_only in (("admin", None), ("admin-team", None), ("alice", "role client"),
                            ("observer", "role observer")):
        config = beach_config.load(secured.configs[user])
        reason = authority.read_only(config)
        assert (reason is None) if read_only is None else (read_only in reason), (user, reason)
    from textual.widgets import Label

    from beach.console import BeachConsole

    async def console(user: str) -> tuple[str, str | None, str | None]:
        app = BeachConsole(secured.configs[user])
        async with app.run_test(size=(100, 32)) as pilot:
            for _ in range(200):
                if app.model is not None:
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            app.save_screenshot(f"console-{user}.svg", str(tmp_path))
            return str(app.query_one("#status-access", Label).render()), app.unavailable("flush"), \
                app.unavailable("add_actor")

    access, flush, add = asyncio.run(console("observer"))
    assert access == "read-only: no admin rights" and flush == add and "role observer" in (flush or "")
    access, flush, add = asyncio.run(console("admin"))
    assert access == "admin" and flush is None and add is None


# ---------------------------------------------------------------------------- sealed messages


class Sealed:
    """A one-node cluster on its own server whose config has a private_key (and an admin token)."""

    def __init__(self, root: Path) -> None:
        self.server = EmbeddedServer(free_port(), str(root / "js"), name="beach-sealed",
                                     log_file=str(root / "nats.log")).start()
        self.key = root / "cluster.key"
        self.key.write_bytes(os.urandom(32))
        self.token = f"token-{MARKER}"
        self.config = write_config(root / "sealed.yaml", self.server.url, private_key=str(self.key),
                                   admin_token=self.token)
        self.node = NodeProcess(self.config, "sealed-node")


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    cluster = Sealed(tmp_path_factory.mktemp("sealed"))
    try:
        with Beach(cluster.config) as client:
            cluster.node.wait_registered(client)
        yield cluster
    finally:
        try:
            assert cluster.node.terminate() == 0
        finally:
            cluster.server.stop()


def test_a_sniffer_sees_no_secret_anywhere_when_messages_are_sealed(sealed: Sealed) -> None:
    captured: list[tuple[str, bytes]] = []

    async def sniff(stop: asyncio.Event) -> None:
        nc = await raw(sealed.server.url)

        async def keep(msg: Any) -> None:
            captured.append((msg.subject, msg.data))

        await nc.subscribe(">", cb=keep)
        await nc.flush()
        await stop.wait()
        await asyncio.sleep(1.5)  # a stats push and a heartbeat or two
        await nc.close()

    async def main() -> None:
        stop = asyncio.Event()
        sniffer = asyncio.create_task(sniff(stop))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(work)
        stop.set()
        await sniffer

    def work() -> None:
        with Beach(sealed.config) as client:
            pong = client.addActor("Pong", "sealed/pong", parameters={"_secret": MARKER}, trustedIdents=[MARKER])
            assert pong.isSuccess, pong
            chatty = client.addActor("Chatty", "sealed/chatty")
            handle = client.getActorHandle("sealed/pong", ident=MARKER)
            reply = handle.request("ping", {"text": MARKER}, timeout=10)
            assert reply.isSuccess and reply.data["echo"] == {"text": MARKER}
            client.getActorHandle("sealed/chatty").broadcast("say", {"text": f"said {MARKER}"})
            client.getActorHandle("sealed/chatty").shoot("say", {"text": f"shot {MARKER}"})
            # a payload larger than a message: its chunks are encrypted with the key the sealed message carries
            assert client.addActor("Blobs", "sealed/blobs").isSuccess
            large = client.getActorHandle("sealed/blobs").request("repeat", {"text": MARKER, "times": 200_000},
                                                                   timeout=30)
            assert large.isSuccess and large.data["blob"] == MARKER.encode() * 200_000
            wait_for(lambda: _logged(client, f"shot {MARKER}"), 15, what="the actor's log line")
            assert client.stopActors(withId=chatty.data["uid"]).isSuccess
            assert client.flush()

    asyncio.run(main())
    assert len(captured) > 50
    kinds = {s.split(".")[0] + "." + s.split(".")[1] for s, _ in captured if "." in s}
    assert {"beach.n", "beach.h", "beach.r", "$KV.beach_actors", "beach.log", "beach.audit", "$O.beach_payloads"} <= \
        kinds, kinds
    leaks = [(s, d[:80]) for s, d in captured if MARKER.encode() in d or b"zebra" in d]
    assert not leaks


def _logged(client: Beach, text: str) -> bool:
    async def read() -> bool:
        from beach import logs

        session = client._core.session
        async for line in logs.read(session.nc, "beach.log.app.>", sealer=session.sealer):
            if line.msg == text:
                return True
        return False

    return client._core.session.runner.run(read())


def test_a_flipped_byte_a_replay_and_an_unsealed_message_are_refused_and_counted(sealed: Sealed) -> None:
    with Beach(sealed.config) as client:
        uid = client.addActor(LEDGER, "sealed/ledger").data["uid"]
        subject = f"beach.a.global.{uid}"

        async def forge() -> None:
            nc = await raw(sealed.server.url)
            original: list[Any] = []

            async def keep(msg: Any) -> None:
                original.append(msg)

            await nc.subscribe(subject, cb=keep)  # a plain subscriber: sees the sealed request too
            await nc.flush()
            await asyncio.to_thread(lambda: client.getActorHandle(f"_ACTORS/{uid}").request(
                "work", {"tag": "real"}, timeout=10))
            await asyncio.sleep(0.2)
            assert len(original) == 1
            body = original[0].data
            flipped = bytearray(body)
            flipped[-20] ^= 1
            await nc.publish(subject, bytes(flipped), reply=original[0].reply)
            await nc.publish(subject, body, reply=original[0].reply)  # the very same message again
            await nc.publish(subject, b"\x96\x01\xa1x\xa4work\x81\xa3tag\xa6forged\xc0\xc0")  # unsealed
            await nc.flush()
            await nc.close()

        asyncio.run(forge())
        holds_for(lambda: [e["tag"] for e in ledger(client, uid)] == ["real"], 1.5, "only the real request served")
        assert client.getLoadInfo()[uid]["refused"] == 3


def test_a_bundle_is_sealed_in_the_store(sealed: Sealed, tmp_path: Path) -> None:
    from beach.code import deploy
    from beach.code import store as codestore

    from .test_code import write_realm

    code = write_realm(tmp_path / "code", f"sealed-{MARKER}")
    with Beach(sealed.config, realm="sealedcode") as client:
        record = client._runner.run(deploy.deploy(client._core, "sealedcode", code))
        assert record.sealed
        assert client.addActor("Echo", "sealed/echo").isSuccess
        answer = client.getActorHandle("sealed/echo").request("echo", {"n": 2})
        assert answer.data == {"version": f"sealed-{MARKER}", "n": 2}, answer

    async def stored() -> bytes:
        nc = await raw(sealed.server.url)
        try:
            store = await nc.jetstream().object_store(codestore.CODE_BUCKET)
            return bytes((await store.get(codestore.object_name(record.digest))).data)
        finally:
            await nc.close()

    data = asyncio.run(stored())
    assert data and MARKER.encode() not in data and not data.startswith(b"\x1f\x8b")  # no gzip: sealed
    assert seal.is_sealed(data)


def test_actor_state_values_and_request_records_are_sealed(sealed: Sealed) -> None:
    with Beach(sealed.config) as client:
        assert client.addActor(TALLY, "sealed/tally").isSuccess
        assert client.getActorHandle("sealed/tally").request("add", {"key": "k", "note": MARKER}).isSuccess
        assert client.getState("sealed/tally") == {"k": 1}

        async def stored() -> list[bytes]:
            nc = await raw(sealed.server.url)
            js = nc.jetstream()
            info = await js.stream_info("KV_beach_state")
            values = [(await js.get_msg("KV_beach_state", seq)).data or b""
                      for seq in range(info.state.first_seq, info.state.last_seq + 1)]
            await nc.close()
            return values

        values = [v for v in asyncio.run(stored()) if v]
        assert len(values) == 2 and all(seal.is_sealed(v) for v in values)  # the key's value, the request's record
        assert client.flush(state=True)
        assert client.getState("sealed/tally") == {}


def test_a_kv_value_moved_to_another_key_is_refused(sealed: Sealed) -> None:
    with Beach(sealed.config) as client:
        uid = client.addActor("Pong", "sealed/moved").data["uid"]
        sealer = beach_config.load(sealed.config).sealer
        assert sealer is not None
        moved = f"global.{'f' * 32}"

        async def move() -> tuple[Any, Any]:
            nc = await raw(sealed.server.url)
            kv = await nc.jetstream().key_value("beach_actors")
            entry = await kv.get(f"global.{uid}")
            assert MARKER.encode() not in entry.value and seal.is_sealed(entry.value)
            await kv.put(moved, entry.value)  # a copy under another key
            opened = SealedBucket(kv, sealer)  # read as beach reads its buckets
            here, there = await opened.get(f"global.{uid}"), await opened.get(moved)
            await nc.close()
            return here.value, there.value

        here, there = asyncio.run(move())
        assert wire.unpack(here)["uid"] == uid and there == REFUSED
        assert sealer.rejected[seal.TAMPERED] == 1
        holds_for(lambda: "f" * 32 not in client.getDirectory()["reverse"] and uid in client.getDirectory()["reverse"],
                  1.0, "the moved value staying out of the directory")


def test_the_admin_token_never_crosses_the_bus_and_a_captured_spawn_cannot_be_replayed(sealed: Sealed,
                                                                                        tmp_path: Path) -> None:
    # no key here: what the challenge-response alone protects (the seal would hide the rest)
    server = EmbeddedServer(free_port(), str(tmp_path / "js"), name="beach-token").start()
    config = write_config(tmp_path / "token.yaml", server.url, admin_token=sealed.token)
    node = NodeProcess(config, "token-node")
    try:
        captured: list[Any] = []

        async def run() -> tuple[bytes, bool]:
            nc = await raw(server.url)

            async def keep(msg: Any) -> None:
                captured.append(msg)

            await nc.subscribe("beach.n.>", cb=keep)
            await nc.subscribe("beach.h.>", cb=keep)
            await nc.flush()

            def spawn() -> None:
                with Beach(config) as client:
                    node.wait_registered(client)
                    assert client.addActor("Pong", "token/pong").isSuccess
                    assert client.flush()

            await asyncio.to_thread(spawn)
            await asyncio.sleep(0.2)
            spawn_msg = next(m for m in captured if ".spawn." in m.subject)
            replayed = await nc.request(spawn_msg.subject, spawn_msg.data, timeout=10)
            await nc.close()
            return replayed.data, any(sealed.token.encode() in m.data for m in captured)

        answer, leaked = asyncio.run(run())
        assert not leaked
        assert b"unprivileged" in answer  # the challenge was used up by the real spawn
        with Beach(config) as wrong:
            wrong._admin_token = "not-the-token"
            assert wrong.addActor("Pong", "token/pong").error == "unprivileged"
    finally:
        assert node.terminate() == 0
        server.stop()


def test_keys_rotate_old_and_new_accepted_during_a_rotation(sealed: Sealed, tmp_path: Path) -> None:
    new_key = tmp_path / "new.key"
    new_key.write_bytes(os.urandom(32))
    # step 1 of a rotation: a node that seals with the old key and accepts the new one as well
    accepting = write_config(tmp_path / "accepting.yaml", sealed.server.url, private_key=str(sealed.key),
                             accepted_keys=[str(new_key)], admin_token=sealed.token)
    # step 2, on one client already: it seals with the new key and still accepts the old
    rotated = write_config(tmp_path / "rotated.yaml", sealed.server.url, private_key=str(new_key),
                           accepted_keys=[str(sealed.key)], admin_token=sealed.token)
    node = NodeProcess(accepting, "rotating-node")
    try:
        with Beach(sealed.config) as old:
            node.wait_registered(old)
            on_old = old.addActor("Pong", "rotation/old-only", strategy="host_affinity", strategy_hint="sealed-node")
            on_new = old.addActor("Pong", "rotation/accepting", strategy="host_affinity",
                                  strategy_hint="rotating-node")
            assert on_old.isSuccess and on_new.isSuccess, (on_old, on_new)
            with Beach(rotated) as new:
                assert new.getActorHandle("rotation/accepting").request("ping", timeout=10).isSuccess
                # the node that knows only the old key refuses what the new one sealed
                assert new.getActorHandle("rotation/old-only").request("ping", timeout=2, nRetries=0).isTimedOut
                assert new.getDirectory()["realms"]["global"]["rotation/old-only"]  # old-key values open
            assert old.flush()
    finally:
        assert node.terminate() == 0


def test_a_symlink_out_of_the_realms_directory_does_not_load(tmp_path: Path) -> None:
    from beach.errors import ActorLoadError
    from beach.runtime.loader import load_actor_class

    marker = tmp_path / "ran"
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "Evil.py").write_text(f"open({str(marker)!r}, 'w').write('planted code ran')\n")
    realm = tmp_path / "code" / "global"
    realm.mkdir(parents=True)
    (realm / "Evil.py").symlink_to(tmp_path / "outside" / "Evil.py")
    (tmp_path / "code" / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    for realm_name, name in (("global", "Evil"), ("linked", "Evil")):
        with pytest.raises(ActorLoadError, match="outside"):
            load_actor_class(str(tmp_path / "code"), realm_name, name)
    assert not marker.exists()


def test_an_open_cluster_lets_everyone_deploy_and_says_so_once(tmp_path: Path) -> None:
    """No NATS authorization and no admin_token anywhere: as in py-beach, everyone is admin — addActor,
    deploy and config push alike — and the node agent and every tool say so, once, in one line."""
    server = EmbeddedServer(free_port(), str(tmp_path / "js"), name=f"open-{os.getpid()}",
                            log_file=str(tmp_path / "nats.log")).start()
    config = write_config(tmp_path / "open.yaml", server.url, admin_token=None, n_processes=1)
    log = tmp_path / "node.log"
    node = NodeProcess(config, f"open-{os.getpid()}", args=["--log-dest", str(log)])
    try:
        with Beach(config) as client:
            node.wait_registered(client)
            session = client._core.session
            assert authority.is_open(session.config, session.view.nodes.values())
            assert session.read_only() is None
            assert client.addActor("Pong", "open/pong").isSuccess
        code = tmp_path / "realm"
        code.mkdir()
        (code / "Echo.py").write_text("from beach.actor import Actor\n\nclass Echo(Actor):\n"
                                      "    def init(self, parameters):\n"
                                      "        self.handle('echo', lambda msg: (True, msg.data))\n")
        notice = ("beach: note: this cluster is open: anyone who reaches its NATS port is admin "
                  "(NATS listens on loopback only)\n")
        for command in (["deploy", str(config), "opened", str(code), "--json"], ["config", "push", str(config)]):
            result = subprocess.run([sys.executable, "-m", "beach.cli", *command], capture_output=True, text=True,
                                    timeout=120)
            assert result.returncode == 0, (command, result.stderr)
            assert result.stderr == notice, result.stderr  # that line, once, and nothing else
        said = [line for line in log.read_text().splitlines() if "this cluster is open" in line]
        assert len(said) == 1 and " INFO " in said[0], said  # loopback only: said, not shouted
    finally:
        assert node.terminate() == 0
        server.stop()
    # beyond loopback the same line is a warning naming where NATS listens
    loud = authority.open_notice(beach_config.parse({}), [], "0.0.0.0")
    assert loud is not None and loud.startswith("WARNING: this cluster is open") and "0.0.0.0" in loud
    assert authority.open_notice(beach_config.parse({"admin_token": "x"}), [], "0.0.0.0") is None
    assert authority.read_only(beach_config.parse({}), [NodeEntry(id="n1", open=False)]) == authority.NO_TOKEN, \
        "nodes that need a token make a tool without one read-only: one rule, both sides"


def test_beach_logs_request_shows_the_lines_of_one_request_across_actors_and_nodes(sealed: Sealed) -> None:
    """A requestFromAll is one request (one id) served by two actors on two nodes of a sealed
    cluster: ``beach logs --request ID`` shows both actors' lines of it, and no other line."""
    second = NodeProcess(sealed.config, "sealed-node-2")
    try:
        with Beach(sealed.config) as client:
            second.wait_registered(client)
            uids = {client.addActor("Chatty", "sealed/bylog", strategy="host_affinity", strategy_hint=node)
                    .data["uid"]: node for node in ("sealed-node", "sealed-node-2")}
            handle = client.getActorHandle("sealed/bylog")
            marker = os.urandom(6).hex()
            replies = handle.requestFromAll("say", {"text": f"asked {marker}"}).waitAll(10)
            assert len(replies) == 2 and all(r.isSuccess for r in replies)
            assert handle.request("say", {"text": f"another request {marker}"}).isSuccess

        def cli(*args: str) -> list[dict[str, Any]]:
            result = subprocess.run([sys.executable, "-m", "beach.cli", "logs", str(sealed.config), *args, "--json"],
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
            return [json.loads(line) for line in result.stdout.splitlines()]

        # as an operator would: a line names its request; then every line of that request
        lines = wait_for(lambda: [x for x in cli("sealed/bylog") if marker in x["msg"]] if
                         len([x for x in cli("sealed/bylog") if marker in x["msg"]]) == 3 else None,
                         15, 0.3, "the three lines in the stream")
        asked = {x["req"] for x in lines if x["msg"] == f"asked {marker}"}
        assert len(asked) == 1 and None not in asked and all(x["trace"] is None for x in lines)
        req = asked.pop()
        found = cli("--request", req)
        assert sorted((x["uid"], x["node"], x["msg"]) for x in found) == sorted(
            (uid, node, f"asked {marker}") for uid, node in uids.items())
        assert cli("--request", "0" * 24) == []
        # as a person reads it: the start of the id on each line, and that start is enough to ask for
        shown = subprocess.run([sys.executable, "-m", "beach.cli", "logs", str(sealed.config), "--request", req[:8]],
                               capture_output=True, text=True, timeout=60)
        lines = [x for x in shown.stdout.splitlines() if marker in x]
        assert len(lines) == 2 and all(f"req {req[:8]}" in x and f"asked {marker}" in x for x in lines), shown
        short = subprocess.run([sys.executable, "-m", "beach.cli", "logs", str(sealed.config), "--request", "abc"],
                               capture_output=True, text=True, timeout=60)
        assert short.returncode == 2 and "at least its first 8 characters" in short.stderr
    finally:
        assert second.terminate() == 0
