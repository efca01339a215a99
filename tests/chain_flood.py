"""Hostile chain-building inputs (issue 15, item 1), made in-process with ``cryptography``.

Reused by ``tests/core/test_chain_bounds.py`` and ``bench/chains.py``. Nothing is written to
disk here and nothing is committed: keys live in memory for one test or one bench run.

- :func:`self_issued_flood`: a signer issued by "Flood CA" and ``k`` self-issued CA
  certificates that all carry the subject "Flood CA" and the same key (what a tenant who
  controls a CA can put in an FS). Unbounded chain building tries about k!/(k-8)! orderings.
- :func:`key_ladder`: ``k`` CA certificates with one subject and ``k`` different keys, each
  step's issuer found last: most checks fail, so only the check limit stops the search.
- :func:`real_chain` and :func:`impostors`: a root, a signing CA and a signer, and junk CAs
  that carry the signing CA's subject with keys of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "KEY_KINDS",
    "Flood",
    "RealChain",
    "impostors",
    "key_ladder",
    "real_chain",
    "self_issued_flood",
]


KEY_KINDS: dict[str, Callable[[], CertificateIssuerPrivateKeyTypes]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
    "rsa2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa4096": lambda: rsa.generate_private_key(public_exponent=65537, key_size=4096),
}
"""CA key types :func:`key_ladder` can use."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Flood:
    """A signer (certificate and key, DER/PEM) and the CA certificates an FS carries (DER)."""

    signer_der: bytes
    signer_pem: bytes
    signer_key_pem: bytes
    carried: tuple[bytes, ...]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Batch Gateway Tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _cert(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signing_key: CertificateIssuerPrivateKeyTypes,
    serial: int,
    now: datetime,
    ca: bool,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signing_key, _digest(signing_key))
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _digest(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _flood(
    signer_key: ec.EllipticCurvePrivateKey,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    cas: list[x509.Certificate],
    now: datetime,
) -> Flood:
    signer = _cert(
        subject=_name("flood signer"),
        issuer=_name("Flood CA"),
        public_key=signer_key.public_key(),
        signing_key=issuer_key,
        serial=1,
        now=now,
        ca=False,
    )
    return Flood(
        signer_der=signer.public_bytes(serialization.Encoding.DER),
        signer_pem=signer.public_bytes(serialization.Encoding.PEM),
        signer_key_pem=signer_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        carried=tuple(c.public_bytes(serialization.Encoding.DER) for c in cas),
    )


def self_issued_flood(k: int, *, now: datetime) -> Flood:
    """A signer under "Flood CA" and ``k`` self-issued "Flood CA" certificates, one key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Flood CA")
    cas = [
        _cert(
            subject=name,
            issuer=name,
            public_key=ca_key.public_key(),
            signing_key=ca_key,
            serial=100 + index,
            now=now,
            ca=True,
        )
        for index in range(k)
    ]
    return _flood(ec.generate_private_key(ec.SECP256R1()), ca_key, cas, now)


def key_ladder(k: int, *, now: datetime, kind: str = "p256") -> Flood:
    """``k`` "Flood CA" certificates with ``k`` keys, CA i signed by key i-1 (the first by the
    last), the signer by the last key: in carried order each step finds its issuer last, so a
    search without a limit makes k(k+1)/2 checks, nearly all failing. ``kind`` is the CA keys'
    type (see ``KEY_KINDS``)."""
    keys = [KEY_KINDS[kind]() for _ in range(k)]
    name = _name("Flood CA")
    cas = [
        _cert(
            subject=name,
            issuer=name,
            public_key=keys[index].public_key(),
            signing_key=keys[(index - 1) % k],
            serial=100 + index,
            now=now,
            ca=True,
        )
        for index in range(k)
    ]
    return _flood(ec.generate_private_key(ec.SECP256R1()), keys[-1], cas, now)


@dataclass(frozen=True, slots=True, kw_only=True)
class RealChain:
    """A root (the trust anchor), a signing CA under it and a signer under that (DER)."""

    root: bytes
    sub: bytes
    signer: bytes


def real_chain(*, now: datetime) -> RealChain:
    """Root -> "Real Signing CA" -> signer, all P-256."""
    root_key, sub_key, signer_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root_name, sub_name = _name("Real Root CA"), _name("Real Signing CA")
    root = _cert(
        subject=root_name,
        issuer=root_name,
        public_key=root_key.public_key(),
        signing_key=root_key,
        serial=1,
        now=now,
        ca=True,
    )
    sub = _cert(
        subject=sub_name,
        issuer=root_name,
        public_key=sub_key.public_key(),
        signing_key=root_key,
        serial=2,
        now=now,
        ca=True,
    )
    signer = _cert(
        subject=_name("real signer"),
        issuer=sub_name,
        public_key=signer_key.public_key(),
        signing_key=sub_key,
        serial=3,
        now=now,
        ca=False,
    )
    der = serialization.Encoding.DER
    return RealChain(
        root=root.public_bytes(der), sub=sub.public_bytes(der), signer=signer.public_bytes(der)
    )


def impostors(like: bytes, k: int, *, now: datetime) -> tuple[bytes, ...]:
    """``k`` self-signed CAs with the subject of certificate ``like`` and keys of their own."""
    subject = x509.load_der_x509_certificate(like).subject
    out = []
    for index in range(k):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(
            subject=subject,
            issuer=subject,
            public_key=key.public_key(),
            signing_key=key,
            serial=500 + index,
            now=now,
            ca=True,
        )
        out.append(cert.public_bytes(serialization.Encoding.DER))
    return tuple(out)
