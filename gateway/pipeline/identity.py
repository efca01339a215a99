"""The gateway's own signing identity: the key and certificate that sign every return file.

Production names both files in the settings (``pipeline.gateway_key``/``gateway_cert``). When
neither is named, a development ECDSA P-256 key and a self-signed certificate are generated once
under ``state_dir/keys/`` on first start and reused afterwards; senders verify ACRF signatures
against that certificate (``openssl cms -verify … -CAfile gateway.pem``).

Why P-256 for the development key: the core's signer loads the PEM key for every signature, and
loading an RSA key runs its consistency check (about 0.3 s for RSA-3072), which would cap the
acknowledgement rate; an EC key loads in well under a millisecond.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.ops.settings import PipelineSettings

# The one certificate builder lives in the utility layer (channels use it too); re-exported here
# for the pipeline's callers.
from gateway.ops.tls import issue_certificate, private_pem

__all__ = [
    "IdentityError",
    "dev_identity_paths",
    "ensure_gateway_identity",
    "issue_certificate",
    "private_pem",
]

DEV_KEY_NAME = "gateway.key"
DEV_CERT_NAME = "gateway.pem"


class IdentityError(Exception):
    """The configured gateway key or certificate cannot be used."""


def dev_identity_paths(state_dir: Path) -> tuple[Path, Path]:
    """Where the development key and certificate live under ``state_dir``."""
    keys = state_dir / "keys"
    return keys / DEV_KEY_NAME, keys / DEV_CERT_NAME


def _generate(common_name: str, now: datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Batch Gateway (development)"),
        ]
    )
    cert = issue_certificate(
        subject=name,
        issuer=name,
        public_key=key.public_key(),
        signing_key=key,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=3650),
        ca=True,
        usages=frozenset({"digital_signature", "content_commitment", "key_cert_sign"}),
    )
    return private_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _check_pair(key_pem: bytes, cert_pem: bytes) -> None:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise IdentityError(f"gateway key or certificate is not readable PEM: {exc}") from None
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise IdentityError("gateway key does not match the gateway certificate")


def ensure_gateway_identity(
    state_dir: Path, settings: PipelineSettings, *, now: datetime | None = None
) -> tuple[bytes, bytes]:
    """Return ``(key_pem, cert_pem)``: the configured pair, or the development pair (made once)."""
    if settings.gateway_key is not None or settings.gateway_cert is not None:
        if settings.gateway_key is None or settings.gateway_cert is None:
            raise IdentityError("pipeline.gateway_key and pipeline.gateway_cert go together")
        try:
            key_pem = settings.gateway_key.read_bytes()
            cert_pem = settings.gateway_cert.read_bytes()
        except OSError as exc:
            raise IdentityError(f"cannot read the gateway key or certificate: {exc}") from None
        _check_pair(key_pem, cert_pem)
        return key_pem, cert_pem
    key_path, cert_path = dev_identity_paths(state_dir)
    if key_path.is_file() and cert_path.is_file():
        key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
        _check_pair(key_pem, cert_pem)
        return key_pem, cert_pem
    key_pem, cert_pem = _generate(
        f"Batch Gateway {settings.gateway_sender} (development)", now or datetime.now(UTC)
    )
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert_pem, 0o644)
    return key_pem, cert_pem
