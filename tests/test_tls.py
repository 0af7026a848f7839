"""beach.security.certs: the PKI it makes loads in ssl, and real nats-servers serve clients and routes with it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
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

from .conftest import free_port

NATS_SERVER = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "nats-server"
HOSTS = ("127.0.0.1", "localhost")

pytestmark = pytest.mark.skipif(not NATS_SERVER.exists(), reason=f"no nats-server binary at {NATS_SERVER}")


def _connect(url: str, **options: object):
    # No tls_hostname needed: nats-py hands the URL's host (here the IP 127.0.0.1) to ssl as server_hostname,
    # and ssl matches an IP against the certificate's IP SANs.
    return nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **options)


def _wait_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"nats-server exited with {process.returncode}:\n{log.read_text()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"nats-server not accepting on port {port} after {timeout}s:\n{log.read_text()}")
            time.sleep(0.02)


@contextmanager
def nats_server(config: Path, port: int) -> Iterator[subprocess.Popen]:
    """Run ``nats-server -c config`` until the block ends; yield it once it accepts connections on ``port``."""
    log = config.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen([str(NATS_SERVER), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, process, log)
        yield process
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
    port = free_port()
    config = tmp_path / "server.conf"
    config.write_text(f"listen: 127.0.0.1:{port}\n{_tls_block(pki['cert'], pki['key'], pki['ca'], False)}\n")
    other_ca, _ = make_ca(str(tmp_path / "other"))
    url = f"nats://127.0.0.1:{port}"

    async def scenario() -> None:
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

    with nats_server(config, port):
        asyncio.run(scenario())
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
    client_ports, route_ports = [free_port(), free_port()], [free_port(), free_port()]
    configs = []
    for i in range(2):
        other = route_ports[1 - i]
        config = tmp_path / f"server-{i + 1}.conf"
        config.write_text(
            f"server_name: tls-{i + 1}\n"
            f"listen: 127.0.0.1:{client_ports[i]}\n"
            f"{_tls_block(pki['cert'], pki['key'], pki['ca'], False)}\n"
            f"cluster {{\n  name: beach-tls\n  listen: 127.0.0.1:{route_ports[i]}\n"
            f"  routes: [\"nats-route://127.0.0.1:{other}\"]\n"
            f"  {_tls_block(pki['cert'], pki['key'], pki['ca'], True)}\n}}\n"
        )
        configs.append(config)

    async def scenario() -> None:
        context = client_context(pki["ca"])
        one = await _connect(f"nats://127.0.0.1:{client_ports[0]}", tls=context)
        two = await _connect(f"nats://127.0.0.1:{client_ports[1]}", tls=context)
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
            await one.close()
            await two.close()

    with nats_server(configs[0], client_ports[0]), nats_server(configs[1], client_ports[1]):
        asyncio.run(scenario())
