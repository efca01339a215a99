"""sign_detached's hand-encoded DER (signed attributes, algorithm identifiers) is byte for byte
what asn1crypto encodes from the same fields, and its signatures verify in openssl and the core.

The asn1crypto builders below are the reference: how sign_detached encoded these parts before
it wrote them from precomputed prefixes.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from asn1crypto import algos, cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.core.cms_sign import SigningIdentity, load_signing_identity, sign_detached
from gateway.core.signature import (
    SignaturePolicy,
    TrustStore,
    VerifiedSignature,
    encode_fs,
    verify_fs,
)
from tests.pki import StandardPki, self_signed_identity, standard_pki
from tests.tools import require_tool

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

# Signing times on every edge the encoding has: the UTCTime/GeneralizedTime years, microseconds
# (dropped by UTCTime, a trimmed fraction in GeneralizedTime) and offsets that move the UTC year.
_EDGE_TIMES = [
    datetime(1950, 1, 1, 0, 0, 0, tzinfo=UTC),
    datetime(1949, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    datetime(2049, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2050, 1, 1, 0, 0, 0, tzinfo=UTC),
    datetime(2050, 1, 1, 0, 0, 0, 120000, tzinfo=UTC),
    datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=UTC),
    datetime(2050, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
    datetime(2049, 12, 31, 23, 30, 0, 1, tzinfo=timezone(timedelta(hours=-1))),
    datetime(2026, 7, 1, 2, 0, tzinfo=timezone(timedelta(hours=5, minutes=45))),
]

# Fixed-offset zones from -23:59 to +23:59, and UTC itself.
_ZONES = st.one_of(
    st.just(UTC),
    st.builds(
        timezone,
        st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
            lambda minutes: timedelta(minutes=minutes)
        ),
    ),
)
# Years 1000..9999: below 1000 asn1crypto writes the year with strftime("%Y"), which glibc does
# not pad (year 999 gives "999...", not a GeneralizedTime); sign_detached writes four digits.
_TIMES = st.datetimes(
    min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES
)


def _self_signed(key: CertificateIssuerPrivateKeyTypes) -> SigningIdentity:
    """``key`` with a self-signed certificate made in memory, loaded as the gateway loads it."""
    return self_signed_identity(key, "cms_sign template test", valid_at=_NOW)


@pytest.fixture(scope="module")
def identities() -> dict[str, SigningIdentity]:
    """An EC P-256 and an RSA-2048 identity, made in memory (nothing on disk)."""
    return {
        "ec": _self_signed(ec.generate_private_key(ec.SECP256R1())),
        "rsa": _self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }


def _reference_attributes(content_digest: bytes, when: datetime | None) -> cms.CMSAttributes:
    """The signed attributes as asn1crypto builds them (the former sign_detached code)."""
    items = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "message_digest", "values": [content_digest]}),
    ]
    if when is not None:
        when = when.astimezone(UTC)
        kind = "utc_time" if 1950 <= when.year < 2050 else "generalized_time"
        items.append(cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({kind: when})]}))
    return cms.CMSAttributes(items)


def _reference_der(
    identity: SigningIdentity,
    digest: str,
    attributes: cms.CMSAttributes | None,
    signature: bytes,
) -> bytes:
    """The whole SignedData built field by field with asn1crypto around ``signature``."""
    if isinstance(identity.key, rsa.RSAPrivateKey):
        signature_algorithm = "rsassa_pkcs1v15"
    else:
        signature_algorithm = f"{digest}_ecdsa"
    signer: dict[str, object] = {
        "version": "v1",
        "sid": cms.SignerIdentifier.load(identity.sid_der),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest}),
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}),
        "signature": signature,
    }
    if attributes is not None:
        signer["signed_attrs"] = attributes
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest})],
            "encap_content_info": {"content_type": "data"},
            "certificates": list(identity.chain),
            "signer_infos": [cms.SignerInfo(signer)],
        }
    )
    info = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return bytes(info.dump())


def _check_signature(identity: SigningIdentity, digest: str, signed: bytes, value: bytes) -> None:
    """``value`` verifies under the identity's public key over ``signed`` (attributes or the
    content digest); raises InvalidSignature otherwise."""
    key = identity.key
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = _HASHES[digest]
        if len(signed) == algorithm.digest_size:
            key.public_key().verify(value, signed, padding.PKCS1v15(), Prehashed(algorithm))
        else:
            key.public_key().verify(value, signed, padding.PKCS1v15(), algorithm)
        return
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chosen: hashes.HashAlgorithm | Prehashed = _HASHES[digest]
    if len(signed) == _HASHES[digest].digest_size:
        chosen = Prehashed(_HASHES[digest])
    key.public_key().verify(value, signed, ec.ECDSA(chosen))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.binary(max_size=3000),
    digest=st.sampled_from(sorted(_HASHES)),
    who=st.sampled_from(["ec", "rsa"]),
    attrs=st.booleans(),
    when=st.one_of(st.none(), st.sampled_from(_EDGE_TIMES), _TIMES),
)
@example(content=b"", digest="sha512", who="rsa", attrs=True, when=_EDGE_TIMES[4])
@example(content=b"<ACRF/>", digest="sha384", who="ec", attrs=False, when=None)
def test_encoding_equals_asn1crypto(
    identities: dict[str, SigningIdentity],
    content: bytes,
    digest: str,
    who: str,
    attrs: bool,
    when: datetime | None,
) -> None:
    """For any content, digest, key type and signing time: the signed attributes are the bytes
    asn1crypto's ``CMSAttributes.dump()`` gives, the whole SignedData is what asn1crypto encodes
    around the same signature, and the signature verifies."""
    identity = identities[who]
    der = sign_detached(
        content, identity=identity, digest=digest, signed_attributes=attrs, signing_time=when
    )
    signer = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    signature = bytes(signer["signature"].native)
    content_digest = hashlib.new(digest, content).digest()
    reference: cms.CMSAttributes | None = None
    signed = content_digest
    if attrs:
        reference = _reference_attributes(content_digest, when)
        signed = reference.dump()
        # The [0] IMPLICIT signedAttrs, retagged as the SET OF that is signed.
        assert b"\x31" + signer["signed_attrs"].dump()[1:] == signed
    assert der == _reference_der(identity, digest, reference, signature)
    _check_signature(identity, digest, signed, signature)


def test_signed_attributes_are_sorted_as_der_sets(identities: dict[str, SigningIdentity]) -> None:
    """The members come out in the order of their encodings (X.690 §11.6), whatever the time's
    kind and length: contentType, signingTime, then messageDigest."""
    for when in _EDGE_TIMES:
        der = sign_detached(b"x", identity=identities["ec"], digest="sha512", signing_time=when)
        attrs = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"]
        members = [attribute.dump() for attribute in attrs]
        assert members == sorted(members)
        assert [a["type"].native for a in attrs] == [
            "content_type",
            "signing_time",
            "message_digest",
        ]


def test_year_below_1000_is_four_digits(identities: dict[str, SigningIdentity]) -> None:
    """GeneralizedTime always has a four-digit year (asn1crypto wrote "999..." here on glibc)."""
    when = datetime(999, 3, 4, 5, 6, 7, tzinfo=UTC)
    der = sign_detached(b"x", identity=identities["ec"], signing_time=when)
    assert b"\x18\x0f09990304050607Z" in der
    attrs = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["signed_attrs"]
    assert attrs[1]["values"][0].native == when


def test_naive_signing_time_is_refused_only_with_attributes(
    identities: dict[str, SigningIdentity],
) -> None:
    """A naive signing time is a ValueError when it would be written; without signed
    attributes it is not written, and not looked at (as before)."""
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="timezone"):
        sign_detached(b"x", identity=identities["rsa"], signing_time=naive)
    assert sign_detached(
        b"x", identity=identities["rsa"], signing_time=naive, signed_attributes=False
    ) == sign_detached(b"x", identity=identities["rsa"], signed_attributes=False)


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI (made by openssl), shared with the other signature tests."""
    require_tool("openssl")
    return standard_pki(tmp_path_factory.getbasetemp() / "signature-pki")


@pytest.mark.parametrize("when", [None, *_EDGE_TIMES])
@pytest.mark.parametrize("digest", sorted(_HASHES))
@pytest.mark.parametrize("who", ["rsa", "ec"])
def test_openssl_and_core_verify(
    cast: StandardPki, tmp_path: Path, who: str, digest: str, when: datetime | None
) -> None:
    """`openssl cms -verify -noverify` and the core's verify_fs accept the FS, and the core reads
    back the signing time (to the second for UTCTime, to the microsecond otherwise)."""
    signer = getattr(cast, who)
    fo = tmp_path / "FO.ACRF"
    fo.write_bytes(b"<ACRF>" + digest.encode() + b"</ACRF>\r\n")
    identity = load_signing_identity(signer.key_pem, signer.cert_pem + cast.sub.cert_pem)
    der = sign_detached(fo.read_bytes(), identity=identity, digest=digest, signing_time=when)
    (tmp_path / "FS.der").write_bytes(der)
    result = cast.pki.run("cms", "-verify", "-binary", "-inform", "DER", "-in",
                          tmp_path / "FS.der", "-content", fo, "-noverify",
                          "-out", tmp_path / "out", check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    verified = verify_fs(
        encode_fs(der),
        content=fo.read_bytes(),
        registered=[signer.cert_der],
        trust=TrustStore.from_blobs([cast.root.cert_pem]),
        policy=SignaturePolicy(),
        now=datetime.now(UTC),
    )
    assert isinstance(verified, VerifiedSignature), verified
    assert verified.digest_algorithm == digest
    expected = None if when is None else when.astimezone(UTC)
    if expected is not None and 1950 <= expected.year < 2050:
        expected = expected.replace(microsecond=0)
    assert verified.signing_time == expected
