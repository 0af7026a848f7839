"""beach.security.certs: the PKI it makes loads in ssl, and real nats-servers serve clients and routes with it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest
from cryptography import x509

from beach.errors import ConfigError
from beach.security.certs import client_context, make_ca, make_cert

NATS_SERVER = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "nats-server"
HOSTS = ("127.0.0.1", "localhost")

pytestmark = pytest.mark.skipif(not NATS_SERVER.exists(), reason=f"no nats-server binary at {NATS_SERVER}")


def _connect(url: str, **options: object):
    # No tls_hostname needed: nats-py hands the URL's host (here the IP 127.0.0.1) to ssl as server_hostname,
    # and ssl matches an IP against the certificate's IP SANs.
    return nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **options)


LISTENING = re.compile(rb"Listening for (client|route) connections on 127\.0\.0\.1:(\d+)")


@contextmanager
def nats_server(config: Path, timeout: float = 10.0) -> Iterator[dict[str, int]]:
    """Run ``nats-server -c config`` (its ports ``-1``: chosen by the server, so no other process can
    take one between its choice and its use) until the block ends; yield the ports it listens on, by
    kind (``client``, ``route``), once its log says it is ready."""
    log = config.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen([str(NATS_SERVER), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while b"Server is ready" not in (text := log.read_bytes()):
            assert process.poll() is None, f"nats-server exited with {process.returncode}:\n{text.decode()}"
            if time.monotonic() > deadline:
                pytest.fail(f"nats-server not ready after {timeout}s:\n{text.decode()}")
            time.sleep(0.02)
        yield {kind.decode(): int(port) for kind, port in LISTENING.findall(text)}
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tls_block(cert: str, key: str, ca: str, verify: bool) -> str:
    return (f"tls {{ cert_file: {json.dumps(cert)}, key_file: {json.dumps(key)}, ca_file: {json.dumps(ca)}, "
            f"verify: {json.dumps(verify)}, timeout: 2 }}")


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca, ca_key = make_ca(str(tmp_path / "pki"))
    cert, key = make_cert(str(tmp_path / "pki"), "node-1", ca, ca_key, hosts=HOSTS)
    return {"ca": ca, "ca_key": ca_key, "cert": cert, "key": key}


def test_certs_load_in_ssl_with_the_hosts_and_private_keys(tmp_path: Path, pki: dict[str, str]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca"])
    context.load_cert_chain(pki["cert"], pki["key"])
    client = client_context(pki["ca"], pki["cert"], pki["key"])
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname

    cert = x509.load_pem_x509_certificate(Path(pki["cert"]).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}  # serverAuth, clientAuth
    ca = x509.load_pem_x509_certificate(Path(pki["ca"]).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca)

    for key in (pki["ca_key"], pki["key"]):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, key
    assert sorted(os.listdir(tmp_path / "pki")) == ["ca-key.pem", "ca.pem", "node-1-key.pem", "node-1.pem"]

    with pytest.raises(ValueError, match="at least one host"):
        make_cert(str(tmp_path / "pki"), "node-2", pki["ca"], pki["ca_key"], hosts=[])
    _, other_key = make_ca(str(tmp_path / "other"))
    with pytest.raises(ConfigError, match="other/ca-key.pem"):
        make_cert(str(tmp_path / "pki"), "node-2", pki["ca"], other_key)


def test_client_context_names_the_bad_file(tmp_path: Path, pki: dict[str, str]) -> None:
    missing = str(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="missing.pem"):
        client_context(missing)
    with pytest.raises(ConfigError, match="garbage.pem"):
        client_context(str(garbage))
    with pytest.raises(ConfigError, match="missing.pem"):
        client_context(pki["ca"], pki["cert"], missing)
    with pytest.raises(ConfigError, match="garbage.pem"):
        client_context(pki["ca"], str(garbage), pki["key"])
    with pytest.raises(ConfigError, match="node-1.pem"):  # a certificate where the key should be
        client_context(pki["ca"], pki["cert"], pki["cert"])


def test_nats_client_over_tls(tmp_path: Path, pki: dict[str, str]) -> None:
    config = tmp_path / "server.conf"
    config.write_text(f"listen: 127.0.0.1:-1\n{_tls_block(pki['cert'], pki['key'], pki['ca'], False)}\n")
    other_ca, _ = make_ca(str(tmp_path / "other"))

    async def scenario(url: str) -> None:
        nc = await _connect(url, tls=client_context(pki["ca"]))
        try:
            sub = await nc.subscribe("tls.test")
            await nc.publish("tls.test", b"over tls")
            assert (await sub.next_msg(timeout=2)).data == b"over tls"
        finally:
            await nc.close()

        # Signed by another CA: the server's certificate does not verify.
        with pytest.raises(ssl.SSLCertVerificationError):
            await _connect(url, tls=client_context(other_ca))
        # nats-py upgrades to TLS by itself when the server's INFO says tls_required, with the system store,
        # which knows nothing of this CA: a client without tls= cannot connect either.
        with pytest.raises(ssl.SSLCertVerificationError):
            await _connect(url)

    with nats_server(config) as ports:
        port = ports["client"]
        asyncio.run(scenario(f"nats://127.0.0.1:{port}"))
        # nats-py goes TLS only because INFO says tls_required (tls= and a tls:// URL do not make it insist), so
        # the server must require it, and does: a client that ignores tls_required and talks plain text is
        # dropped (the server takes the bytes for a bad TLS handshake) before it gets a PONG.
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            info = raw.recv(4096)
            assert info.startswith(b"INFO ") and json.loads(info[5:])["tls_required"] is True
            raw.sendall(b'CONNECT {"verbose":false,"tls_required":false}\r\nPING\r\n')
            reply = b""
            while chunk := raw.recv(4096):
                reply += chunk
            assert b"PONG" not in reply and (not reply or reply.startswith(b"-ERR")), reply


def test_cluster_routes_over_tls(tmp_path: Path, pki: dict[str, str]) -> None:
    def config(name: str, routes: str) -> Path:
        path = tmp_path / f"{name}.conf"
        path.write_text(
            f"server_name: {name}\n"
            f"listen: 127.0.0.1:-1\n"
            f"{_tls_block(pki['cert'], pki['key'], pki['ca'], False)}\n"
            f"cluster {{\n  name: beach-tls\n  listen: 127.0.0.1:-1\n  routes: [{routes}]\n"
            f"  {_tls_block(pki['cert'], pki['key'], pki['ca'], True)}\n}}\n"
        )
        return path

    async def scenario(url_one: str, url_two: str) -> None:
        context = client_context(pki["ca"])
        one = await _connect(url_one, tls=context)
        try:
            two = await _connect(url_two, tls=context)
            try:
                async def answer(msg) -> None:
                    await one.publish(msg.reply, b"pong from 1 via " + msg.data)

                await one.subscribe("tls.route", cb=answer)
                await one.flush()
                # The subscription reaches server 2 only once the TLS route is up: retry a request until it does.
                deadline = time.monotonic() + 10
                while True:
                    try:
                        reply = await two.request("tls.route", b"2", timeout=0.5)
                        break
                    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                        assert time.monotonic() < deadline, "no route between the servers after 10 s"
                        await asyncio.sleep(0.1)
                assert reply.data == b"pong from 1 via 2"
            finally:
                await two.close()
        finally:
            await one.close()

    # (the second names the first's route port, which the first chose: a route is used both ways)
    with nats_server(config("tls-1", "")) as first:
        with nats_server(config("tls-2", f'"nats-route://127.0.0.1:{first["route"]}"')) as second:
            asyncio.run(scenario(f"nats://127.0.0.1:{first['client']}", f"nats://127.0.0.1:{second['client']}"))
