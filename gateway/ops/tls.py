"""TLS for the sender-facing listeners: the one certificate builder, the development identity of
the FTPS and HTTPS listeners, and their server context.

Rules (SECURITY.md 15):

- TLS 1.2 or 1.3 only; on TLS 1.2 only ECDHE key exchange with AEAD ciphers (AES-GCM,
  ChaCha20-Poly1305); no compression, no renegotiation. TLS 1.3's own suites are all AEAD.
- No TLS 1.3 session tickets (``num_tickets = 0``). OpenSSL writes two tickets after each
  handshake; an FTP client closes a data connection at once after a small upload, the ticket
  write then fails on the closed socket, and the transfer fails with it (measured:
  shared/notes/aioftp-ftps.md). Without tickets TLS 1.3 data connections cannot resume the
  control connection's session, so the FTP channel ties a data connection to its control
  connection by peer address instead.
- Production names a certificate chain and its key (``[ftp] tls_cert``/``tls_key``). Without
  them a development CA and a server certificate for the loopback names (``localhost``,
  ``127.0.0.1``, ``127.0.0.2``, ``::1``) are made once per listener, under ``<state_dir>/ftps/``
  for FTPS and ``<state_dir>/web/`` for HTTPS: the key is written 0600, and ``ca.pem`` is what a
  client verifies with (``curl --cacert``). Each CA names the listener it is for ("Batch Gateway
  HTTPS development CA"), so an operator who finds one in a trust store knows what it vouches
  for. The CA's own key is not kept: nothing else is ever issued from it. An identity already
  made is kept as it is (clients trust its ``ca.pem``): one made before the CAs were named per
  listener keeps its old name until its folder is removed.

:func:`issue_certificate` is the product's one certificate builder (the gateway's signing
identity, the demo's PKI and this module use it); it lives here because ops is the utility layer
every other layer may import.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEV_CA_NAME",
    "DevIdentity",
    "TlsIdentityError",
    "ensure_dev_server_identity",
    "issue_certificate",
    "private_pem",
    "server_context",
]

DEV_CA_NAME = "ca.pem"
DEV_CERT_NAME = "server.pem"
DEV_KEY_NAME = "server.key"
DEV_NAMES: tuple[str, ...] = ("localhost",)
DEV_ADDRESSES: tuple[str, ...] = ("127.0.0.1", "127.0.0.2", "::1")
DEV_VALIDITY = timedelta(days=3650)

# TLS 1.2 suites: forward secrecy and AEAD only (OpenSSL cipher-string syntax).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


class TlsIdentityError(Exception):
    """The configured TLS certificate or key cannot be used."""


def issue_certificate(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signing_key: CertificateIssuerPrivateKeyTypes,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    usages: frozenset[str],
    extensions: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    """A v3 certificate with basic constraints and the named key usages (``KeyUsage`` field
    names, e.g. ``"digital_signature"``), signed with SHA-256: the gateway's development
    identity, the demo's CA and signer, and the FTPS development certificates. ``extensions``
    are added as non-critical (subject alternative names, extended key usage...)."""
    unknown = usages - set(_KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown key usages: {sorted(unknown)}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.KeyUsage(**{u: u in usages for u in _KEY_USAGES}), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def issue_ca(
    name: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    *,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A self-signed CA certificate that signs certificates and CRLs (the development and demo
    CAs)."""
    return issue_certificate(
        subject=name,
        issuer=name,
        public_key=key.public_key(),
        signing_key=key,
        not_before=not_before,
        not_after=not_after,
        ca=True,
        usages=frozenset({"key_cert_sign", "crl_sign"}),
    )


def private_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """A private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class DevIdentity:
    """Where a listener's development identity lives: the CA clients trust, the chain, the
    key."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Batch Gateway (development)"),
        ]
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (set at creation, never widened)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def ensure_dev_server_identity(
    folder: Path, *, purpose: str = "TLS", now: datetime | None = None
) -> DevIdentity:
    """The development CA and server certificate under ``folder``, made on first use; the CA is
    named for ``purpose``, the listener it serves ("FTPS", "HTTPS": "Batch Gateway HTTPS
    development CA"). The default, "TLS", names no listener and is not wrong for any."""
    paths = DevIdentity(
        ca=folder / DEV_CA_NAME, cert=folder / DEV_CERT_NAME, key=folder / DEV_KEY_NAME
    )
    if paths.ca.is_file() and paths.cert.is_file() and paths.key.is_file():
        return paths
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = (now or datetime.now(UTC)) - timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"Batch Gateway {purpose} development CA")
    ca = issue_ca(ca_name, ca_key, not_before=start, not_after=start + DEV_VALIDITY)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in DEV_NAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in DEV_ADDRESSES]
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = issue_certificate(
        subject=_name("localhost"),
        issuer=ca_name,
        public_key=key.public_key(),
        signing_key=ca_key,
        not_before=start,
        not_after=start + DEV_VALIDITY,
        ca=False,
        usages=frozenset({"digital_signature"}),
        extensions=(
            x509.SubjectAlternativeName(alt_names),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
        ),
    )
    pem = serialization.Encoding.PEM
    _write(paths.key, private_pem(key), 0o600)
    _write(paths.cert, cert.public_bytes(pem) + ca.public_bytes(pem), 0o644)
    _write(paths.ca, ca.public_bytes(pem), 0o644)  # last: its presence marks a complete set
    return paths


PURPOSES: dict[str, str] = {"ftp": "FTPS", "web": "HTTPS", "admin": "admin console"}
"""A listener's settings section -> what its development CA is named for."""


def listener_identity(
    section: str, cert: Path | None, key: Path | None, dev_folder: Path
) -> tuple[Path, Path]:
    """The certificate chain and key a TLS listener uses: the configured pair, or the
    development identity made (once) under ``dev_folder``, its CA named for the listener of
    ``[section]`` (:data:`PURPOSES`). ``ValueError`` names ``[section]`` when only one of the
    two is set."""
    if (cert is None) != (key is None):
        raise ValueError(f"[{section}] tls_cert and tls_key go together")
    if cert is not None and key is not None:
        return cert, key
    purpose = PURPOSES.get(section, section.upper())
    dev = ensure_dev_server_identity(dev_folder, purpose=purpose)
    return dev.cert, dev.key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server context of a TLS listener: FTPS (control and data connections alike) and
    HTTPS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    )
    context.num_tickets = 0  # see the module's rules: tickets broke every second transfer
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsIdentityError(
            f"cannot load the TLS certificate {cert} and key {key}: {exc}"
        ) from None
    return context
