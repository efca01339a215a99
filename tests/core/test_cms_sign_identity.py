"""A signing identity parsed once signs exactly as the PEM form does (the gateway's ACRF signer
loads its key once instead of once per FS)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.core.cms_sign import load_signing_identity, sign_detached
from tests.pki import StandardPki, standard_pki


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI (made by openssl)."""
    return standard_pki(tmp_path_factory.mktemp("cms-sign-identity"))


def test_identity_and_pem_give_the_same_signature(cast: StandardPki, tmp_path: Path) -> None:
    """RSA PKCS#1 v1.5 is deterministic: the same DER from a loaded identity and from PEM."""
    chain = cast.rsa.cert_pem + cast.sub.cert_pem
    when = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    identity = load_signing_identity(cast.rsa.key_pem, chain)
    from_pem = sign_detached(
        b"<ACRF/>", key_pem=cast.rsa.key_pem, cert_pem=chain, signing_time=when
    )
    assert sign_detached(b"<ACRF/>", identity=identity, signing_time=when) == from_pem
    assert len(identity.chain) == 2


def test_no_signer_is_a_value_error() -> None:
    """Neither an identity nor a key and certificate: ValueError, never a half-made signature."""
    with pytest.raises(ValueError, match="identity"):
        sign_detached(b"x")


def _reference(content: bytes, chain_pem: bytes, key_pem: bytes, when: datetime | None) -> bytes:
    """The same SignedData built field by field with asn1crypto (how sign_detached made it
    before it assembled pre-encoded parts)."""
    import hashlib

    from asn1crypto import algos, cms
    from asn1crypto import x509 as ax509
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    chain = [
        ax509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
        for c in x509.load_pem_x509_certificates(chain_pem)
    ]
    digest = hashlib.sha256(content).digest()
    signer: dict[str, object] = {
        "version": "v1",
        "sid": cms.SignerIdentifier(
            {
                "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                    {"issuer": chain[0].issuer, "serial_number": chain[0].serial_number}
                )
            }
        ),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
    }
    if when is None:
        signer["signature"] = key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    else:
        attributes = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
                cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
                cms.CMSAttribute(
                    {"type": "signing_time", "values": [cms.Time({"utc_time": when})]}
                ),
            ]
        )
        signer["signature"] = key.sign(attributes.dump(), padding.PKCS1v15(), hashes.SHA256())
        signer["signed_attrs"] = attributes
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data"},
            "certificates": chain,
            "signer_infos": [cms.SignerInfo(signer)],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


@pytest.mark.parametrize("when", [datetime(2026, 1, 15, 12, 0, tzinfo=UTC), None])
@pytest.mark.parametrize("size", [0, 100, 70_000])
def test_assembled_der_equals_asn1crypto_encoding(
    cast: StandardPki, when: datetime | None, size: int
) -> None:
    """The SignedData assembled from pre-encoded parts is byte for byte what asn1crypto encodes
    from the same fields (with and without signed attributes; short and long-form lengths)."""
    chain = cast.rsa.cert_pem + cast.sub.cert_pem
    content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    identity = load_signing_identity(cast.rsa.key_pem, chain)
    made = sign_detached(
        content, identity=identity, signing_time=when, signed_attributes=when is not None
    )
    assert made == _reference(content, chain, cast.rsa.key_pem, when)
