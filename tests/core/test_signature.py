"""Detached CMS signatures made by the real openssl, verified by the core (issue 2, item 4)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.codes import Rejection
from gateway.core.signature import (
    ParsedSignature,
    SignaturePolicy,
    SignatureScheme,
    TrustStore,
    VerifiedSignature,
    decode_fs,
    encode_fs,
    parse_signature,
    verify_fs,
    verify_signature,
)
from tests.pki import Identity, SignatureCase, StandardPki, signature_cases, standard_pki
from tests.tools import require_tool

Verify = Callable[..., VerifiedSignature | Rejection]


@pytest.fixture(scope="session")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI, built once per session with the real openssl."""
    require_tool("openssl")
    return standard_pki(tmp_path_factory.getbasetemp() / "signature-pki")


@pytest.fixture(scope="session")
def cases(cast: StandardPki) -> list[SignatureCase]:
    """Every positive and negative case of the issue, signed by openssl."""
    return signature_cases(cast)


@pytest.fixture(scope="session")
def trust(cast: StandardPki) -> TrustStore:
    """Trust store: the root CA and the signing CA's CRL."""
    return TrustStore.from_blobs([cast.root.cert_pem], [cast.crl.read_bytes()])


def _now() -> datetime:
    return datetime.now(UTC)


def _verify(
    fs: bytes,
    content: bytes,
    registered: list[Identity] | tuple[Identity, ...],
    trust: TrustStore,
    **policy: bool | int,
) -> VerifiedSignature | Rejection:
    return verify_fs(
        fs,
        content=content,
        registered=[i.cert_der for i in registered],
        trust=trust,
        policy=SignaturePolicy(**policy),  # type: ignore[arg-type]
        now=_now(),
    )


def _code(result: VerifiedSignature | Rejection) -> int | None:
    return int(result.code) if isinstance(result, Rejection) else None


def test_every_case_gets_its_code(cases: list[SignatureCase], trust: TrustStore) -> None:
    """Each openssl-made case (12 positive, the negative suite) gets exactly its expected code."""
    expected = {case.name: case.code for case in cases}
    actual = {
        case.name: _code(
            _verify(
                case.fs, case.fi.read_bytes(), case.registered, trust, allow_sha1=case.allow_sha1
            )
        )
        for case in cases
    }
    assert expected == actual


def test_digest_path_agrees_with_content_path(
    cases: list[SignatureCase], trust: TrustStore
) -> None:
    """Verifying with a digest computed while streaming gives the same verdict as the bytes."""
    for case in cases:
        der = decode_fs(case.fs)
        if isinstance(der, Rejection):
            continue
        parsed = parse_signature(der)
        if isinstance(parsed, Rejection):
            continue
        digest = hashlib.new(parsed.digest_algorithm)
        with case.fi.open("rb") as handle:
            while chunk := handle.read(1000):
                digest.update(chunk)
        common = {
            "registered": [i.cert_der for i in case.registered],
            "trust": trust,
            "policy": SignaturePolicy(allow_sha1=case.allow_sha1),
            "now": _now(),
        }
        by_digest = verify_signature(parsed, content_digest=digest.digest(), **common)  # type: ignore[arg-type]
        by_content = verify_signature(parsed, content=case.fi.read_bytes(), **common)  # type: ignore[arg-type]
        assert (case.name, by_content) == (case.name, by_digest)


def test_verified_signature_names_the_signer(cast: StandardPki, trust: TrustStore) -> None:
    """A valid signature reports the signer's subject, fingerprint, digest and signing time."""
    der = cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub])
    result = _verify(encode_fs(der), b"payload", [cast.rsa], trust)
    assert isinstance(result, VerifiedSignature)
    assert result.signer_subject == "O=Batch Gateway Tests,CN=sender 006400 rsa"
    assert result.signer_fingerprint == hashlib.sha256(cast.rsa.cert_der).hexdigest()
    assert result.digest_algorithm == "sha256"
    assert result.signing_time is not None
    assert abs(result.signing_time - _now()) < timedelta(minutes=10)


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_longer_sha2_digests_verify(cast: StandardPki, trust: TrustStore, digest: str) -> None:
    """SHA-384 and SHA-512 signatures are accepted and reported as such."""
    der = cast.pki.sign(b"payload", cast.ec, certfile=[cast.sub], digest=digest)
    result = _verify(encode_fs(der), b"payload", [cast.ec], trust)
    assert isinstance(result, VerifiedSignature)
    assert result.digest_algorithm == digest


def test_sha224_is_unsupported(cast: StandardPki, trust: TrustStore) -> None:
    """A digest outside SHA-1/256/384/512 is refused as unsupported (910)."""
    der = cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub], digest="sha224")
    assert _code(_verify(encode_fs(der), b"payload", [cast.rsa], trust)) == 910


def test_pem_armour_and_pem_registered_cert(cast: StandardPki, trust: TrustStore) -> None:
    """An FS with a PEM armour decodes, and a registered certificate may be given as PEM."""
    der = cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub])
    armoured = b"-----BEGIN CMS-----\n" + encode_fs(der, "64-crlf") + b"-----END CMS-----\n"
    result = verify_fs(
        armoured,
        content=b"payload",
        registered=[cast.rsa.cert_pem],
        trust=trust,
        policy=SignaturePolicy(),
        now=_now(),
    )
    assert isinstance(result, VerifiedSignature)


def test_signer_certificate_only_registered(cast: StandardPki) -> None:
    """Without certificates in the SignedData, the registered cert and a trusted sub-CA suffice."""
    der = cast.pki.sign(b"payload", cast.rsa, extra=["-nocerts"])
    trust = TrustStore.from_blobs([cast.sub.cert_pem])
    assert isinstance(_verify(encode_fs(der), b"payload", [cast.rsa], trust), VerifiedSignature)
    assert _code(_verify(encode_fs(der), b"payload", [cast.ec], trust)) == 153


def test_subject_key_identifier_sid(cast: StandardPki, trust: TrustStore) -> None:
    """A SignerInfo naming its signer by subjectKeyIdentifier (-keyid) verifies."""
    der = cast.pki.sign(b"payload", cast.ec, certfile=[cast.sub], extra=["-keyid"])
    parsed = parse_signature(der)
    assert isinstance(parsed, ParsedSignature)
    assert parsed.signer_id.key_identifier is not None
    assert isinstance(_verify(encode_fs(der), b"payload", [cast.ec], trust), VerifiedSignature)


def test_missing_intermediate_is_untrusted(cast: StandardPki, trust: TrustStore) -> None:
    """Without the signing CA in the SignedData or the trust store there is no chain (905)."""
    der = cast.pki.sign(b"payload", cast.rsa)
    assert _code(_verify(encode_fs(der), b"payload", [cast.rsa], trust)) == 905


def test_revocation_needs_a_crl(cast: StandardPki) -> None:
    """Without its CRL a revoked cert passes; with require_crl the missing CRL is 913."""
    der = cast.pki.sign(b"payload", cast.revoked, certfile=[cast.sub])
    trust = TrustStore.from_blobs([cast.root.cert_pem])
    fs = encode_fs(der)
    assert isinstance(_verify(fs, b"payload", [cast.revoked], trust), VerifiedSignature)
    assert _code(_verify(fs, b"payload", [cast.revoked], trust, require_crl=True)) == 913
    with_crl = TrustStore.from_blobs([cast.root.cert_pem], [cast.crl.read_bytes()])
    good = encode_fs(cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub]))
    assert isinstance(
        _verify(good, b"payload", [cast.rsa], with_crl, require_crl=True), VerifiedSignature
    )


def test_forged_crl_is_ignored(cast: StandardPki, tmp_path: Path) -> None:
    """A CRL carrying the signing CA's name but signed by another key does not count."""
    impostor_pki = type(cast.pki)(tmp_path / "impostor")
    impostor = impostor_pki.root_ca("Test Signing CA")
    forged = impostor_pki.crl(impostor)
    trust = TrustStore.from_blobs([cast.root.cert_pem], [forged.read_bytes()])
    fs = encode_fs(cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub]))
    assert _code(_verify(fs, b"payload", [cast.rsa], trust, require_crl=True)) == 913


def test_expired_crl_is_not_current(cast: StandardPki, trust: TrustStore) -> None:
    """At a time past the CRL's nextUpdate, require_crl refuses with 913."""
    fs = encode_fs(cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub]))
    result = verify_fs(
        fs,
        content=b"payload",
        registered=[cast.rsa.cert_der],
        trust=trust,
        policy=SignaturePolicy(require_crl=True),
        now=_now() + timedelta(days=60),
    )
    assert _code(result) == 913


def test_cached_chain_is_rechecked_at_now(cast: StandardPki, tmp_path: Path) -> None:
    """A cached chain whose CA has since expired is rebuilt and refused (905)."""
    pki = type(cast.pki)(tmp_path / "short")
    now = _now()
    short_ca = pki.ca("Short CA", issuer=cast.root, not_after=now + timedelta(days=10))
    leaf = pki.leaf("short leaf", issuer=short_ca, key="ec:P-256")
    fs = encode_fs(pki.sign(b"payload", leaf, certfile=[short_ca]))
    trust = TrustStore.from_blobs([cast.root.cert_pem])
    common = {"content": b"payload", "registered": [leaf.cert_der], "trust": trust}
    first = verify_fs(fs, policy=SignaturePolicy(), now=now, **common)  # type: ignore[arg-type]
    again = verify_fs(fs, policy=SignaturePolicy(), now=now, **common)  # type: ignore[arg-type]
    later = verify_fs(fs, policy=SignaturePolicy(), now=now + timedelta(days=20), **common)  # type: ignore[arg-type]
    assert isinstance(first, VerifiedSignature)
    assert first == again
    assert _code(later) == 905


def test_cache_never_skips_the_signature_value(cast: StandardPki, trust: TrustStore) -> None:
    """After a signer's chain is cached, a bad signature by the same signer is still 125."""
    fs = encode_fs(cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub]))
    assert isinstance(_verify(fs, b"payload", [cast.rsa], trust), VerifiedSignature)
    assert _code(_verify(fs, b"payload!", [cast.rsa], trust)) == 125


def test_weak_curve_is_refused(cast: StandardPki, tmp_path: Path) -> None:
    """An EC key on a curve other than P-256/384/521 is a weak key (907)."""
    pki = type(cast.pki)(tmp_path / "k1")
    leaf = pki.leaf("k1 leaf", issuer=cast.root, key="ec:secp256k1")
    fs = encode_fs(pki.sign(b"payload", leaf))
    trust = TrustStore.from_blobs([cast.root.cert_pem])
    assert _code(_verify(fs, b"payload", [leaf], trust)) == 907


def test_min_rsa_bits_is_a_policy(cast: StandardPki, trust: TrustStore) -> None:
    """RSA-1024 passes when the policy's minimum is lowered (the code path is the policy)."""
    fs = encode_fs(cast.pki.sign(b"payload", cast.rsa1024, certfile=[cast.sub]))
    result = _verify(fs, b"payload", [cast.rsa1024], trust, min_rsa_bits=1024)
    assert isinstance(result, VerifiedSignature)


def test_scheme_that_does_not_fit_the_key(cast: StandardPki, trust: TrustStore) -> None:
    """An ECDSA signature info over an RSA certificate is an invalid signature (125)."""
    parsed = parse_signature(cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub]))
    assert isinstance(parsed, ParsedSignature)
    wrong = replace(parsed, scheme=SignatureScheme.ECDSA)
    result = verify_signature(
        wrong,
        content=b"payload",
        registered=[cast.rsa.cert_der],
        trust=trust,
        policy=SignaturePolicy(),
        now=_now(),
    )
    assert _code(result) == 125


def test_argument_misuse_raises(cast: StandardPki, trust: TrustStore) -> None:
    """Caller bugs (both or neither content, naive now, wrong digest size) raise ValueError."""
    parsed = parse_signature(cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub]))
    assert isinstance(parsed, ParsedSignature)
    common = {"registered": [cast.rsa.cert_der], "trust": trust, "policy": SignaturePolicy()}
    with pytest.raises(ValueError, match="exactly one"):
        verify_signature(parsed, now=_now(), **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one"):
        verify_signature(parsed, content=b"", content_digest=b"", now=_now(), **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        verify_signature(parsed, content=b"x", now=datetime(2026, 1, 1), **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sha256 digest"):
        verify_signature(parsed, content_digest=b"short", now=_now(), **common)  # type: ignore[arg-type]
