"""A small private PKI for a beach cluster's NATS TLS.

One CA (:func:`make_ca`) signs one certificate per node (:func:`make_cert`); each node certificate serves
clients, and authenticates the node both ways on cluster routes. :func:`client_context` builds the
``ssl.SSLContext`` a NATS client connects with::

    ca, ca_key = make_ca("pki")
    cert, key = make_cert("pki", "node-1", ca, ca_key, hosts=["10.0.0.5", "node-1.lan"])
    await nats.connect("tls://10.0.0.5:4222", tls=client_context(ca))

Keys are EC P-256, written readable by their owner only (mode 0600).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import ssl
from collections.abc import Sequence
from typing import TypeGuard, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from beach.errors import ConfigError

__all__ = ["make_ca", "make_cert", "client_context"]

# Clocks across a cluster disagree a little: a certificate made on one node must already be valid on the next.
_CLOCK_SKEW = datetime.timedelta(minutes=5)


def make_ca(directory: str, name: str = "beach CA", days: int = 3650) -> tuple[str, str]:
    """Make a new certificate authority: write ``ca.pem`` and ``ca-key.pem`` (mode 0600) into ``directory``.

    ``directory`` is created if missing; existing files of those names are replaced. Returns the paths
    ``(cert, key)``. Raises `ValueError` if ``days`` is not positive, `OSError` if the files cannot be written.
    """
    _check_days(days)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        # path_length=0: this CA signs node certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    cert_path, key_path = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca-key.pem")
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def make_cert(
    directory: str,
    name: str,
    ca_cert: str,
    ca_key: str,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 825,
) -> tuple[str, str]:
    """Make a certificate for ``hosts`` signed by the CA: write ``<name>.pem`` and ``<name>-key.pem`` (mode 0600).

    Each host that parses as an IP address goes into the certificate as an IP address, the rest as DNS names.
    The certificate is good for both TLS server and client authentication, as NATS cluster routes use one
    certificate in both directions. ``directory`` is created if missing. Returns the paths ``(cert, key)``.

    Raises `ValueError` if ``hosts`` is empty, ``name`` is not a plain file name or ``days`` is not positive;
    `ConfigError` (naming the file) if ``ca_cert`` or ``ca_key`` is missing, unreadable, not PEM, or the key
    is not the certificate's; `OSError` if the files cannot be written.
    """
    if isinstance(hosts, str):  # a str is a Sequence[str] of its characters: take it as the one host it names
        hosts = (hosts,)
    if not hosts:
        raise ValueError("make_cert needs at least one host (an IP address or DNS name) for the certificate")
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"certificate name {name!r} must be a plain file name (no directory part)")
    _check_days(days)
    issuer = _load_certs(ca_cert)[0]
    issuer_key = _load_key(ca_key)
    if issuer_key.public_key() != issuer.public_key():
        raise ConfigError(f"{ca_key} is not the private key of the CA certificate {ca_cert}")
    if not _can_sign(issuer_key):
        raise ConfigError(f"{ca_key} is a {type(issuer_key).__name__}, which cannot sign certificates")

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        # Not past the CA's own expiry: a chain is only as valid as its issuer.
        .not_valid_after(min(now + datetime.timedelta(days=days), _not_after(issuer)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName([_general_name(host) for host in hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    cert_path, key_path = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}-key.pem")
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def client_context(ca: str | None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """An SSL context for a NATS client: verifies the server against ``ca`` (the system store when None).

    With ``cert`` (and ``key``, unless the key is in the ``cert`` file) the client presents that certificate,
    for servers that verify their clients. Raises `ConfigError` naming the file if one is missing, unreadable
    or not PEM, or if the key is not the certificate's.

    nats-py uses the context only when the server's INFO says ``tls_required``; neither the context nor a
    ``tls://`` URL makes it refuse a plain-text server, so the server's config must require TLS.
    """
    if ca is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        _load_certs(ca)
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"cannot load the CA certificates in {ca}: {err}") from None
    if key is not None and cert is None:
        raise ConfigError(f"the client key {key} is given without its certificate (cert)")
    if cert is not None:
        # Checked one by one first, so that the error names the bad file; ssl alone says only "PEM lib".
        _load_certs(cert)
        if key is not None:
            _load_key(key)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"cannot load the client certificate {cert} with key {key or cert}: {err}") from None
    return context


def _check_days(days: int) -> None:
    if days <= 0:
        raise ValueError(f"days must be positive, not {days}")


def _key_usage(digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None


def _load_certs(path: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(path))
    except ValueError:
        raise ConfigError(f"{path} is not a PEM certificate file") from None


def _load_key(path: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except TypeError:  # the key is encrypted: neither NATS nor ssl here can ask for its passphrase
        raise ConfigError(f"{path} is an encrypted private key; an unencrypted one is needed") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{path} is not a PEM private key file") from None


def _can_sign(key: PrivateKeyTypes) -> TypeGuard[CertificateIssuerPrivateKeyTypes]:
    # not every private key signs (DH, X25519...); the alias is a typing.Union, get_args gives its classes
    return isinstance(key, get_args(CertificateIssuerPrivateKeyTypes))


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    # not_valid_after_utc is cryptography 42+; the naive not_valid_after it replaces warns there.
    after = getattr(cert, "not_valid_after_utc", None)
    return after if after is not None else cert.not_valid_after.replace(tzinfo=datetime.UTC)


def _write(path: str, data: bytes, private: bool = False) -> None:
    # Written to a new file beside the target and renamed over it, so that a reader (a nats-server starting
    # up) sees the old file or the new one, never half of one. A key file is created 0600 by os.open itself,
    # rather than chmod-ed after, so it is never readable by others, not even for a moment.
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
