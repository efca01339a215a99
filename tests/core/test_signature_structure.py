"""FS decoding, SignedData structure checks, the trust-store loader and the core's own signer."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import algos, cms, x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.core.cms import _elements
from gateway.core.codes import Rejection
from gateway.core.signature import (
    ParsedSignature,
    SignaturePolicy,
    TrustStore,
    TrustStoreError,
    VerifiedSignature,
    decode_fs,
    encode_fs,
    parse_signature,
    sign_detached,
    sort_blobs,
    verify_fs,
)
from gateway.core.trust import load_certificate, pem_blocks
from tests.pki import StandardPki, standard_pki
from tests.tools import require_tool


@pytest.fixture(scope="session")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI, built once per session with the real openssl."""
    require_tool("openssl")
    return standard_pki(tmp_path_factory.getbasetemp() / "signature-pki")


@pytest.fixture(scope="session")
def good_der(cast: StandardPki) -> bytes:
    """An openssl RSA-2048 SHA-256 detached signature with signed attributes over b"payload"."""
    return cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub])


def _code(result: object) -> int | None:
    return int(result.code) if isinstance(result, Rejection) else None


def _edit(der: bytes, change: Callable[[Any], None]) -> bytes:
    """Re-encode a SignedData after ``change(signer_info_or_info)`` alters it."""
    info = cms.ContentInfo.load(der)
    change(info)
    return bytes(info.dump(force=True))


def _signer(info: Any) -> Any:
    return info["content"]["signer_infos"][0]


# --- decode_fs / encode_fs ---------------------------------------------------------------------


@pytest.mark.parametrize("style", ["one-line", "76-cr", "64-crlf"])
def test_encode_decode_round_trip(good_der: bytes, style: str) -> None:
    """encode_fs writes the three layouts of the spec; decode_fs reads each back."""
    text = encode_fs(good_der, style)  # type: ignore[arg-type]
    width, end = {"one-line": (None, b""), "76-cr": (76, b"\r"), "64-crlf": (64, b"\r\n")}[style]
    lines = text.split(end) if end else [text]
    if width is not None:
        assert lines[-1] == b""
        assert all(len(line) == width for line in lines[:-2])
    assert decode_fs(text) == good_der


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"", "empty"),
        (b"  \r\n\t", "empty"),
        (b"MIIB*A==", "not valid base64"),
        (b"MIIBA", "not valid base64"),
        (b"MI=I", "not valid base64"),
        (b"-----BEGIN CMS-----\n-----END CMS-----\n", "empty"),
    ],
)
def test_decode_refuses_bad_text(text: bytes, reason: str) -> None:
    """Empty, whitespace-only or non-base64 FS text is 901 with a reason that says which."""
    result = decode_fs(text)
    assert isinstance(result, Rejection)
    assert int(result.code) == 901
    assert reason in result.reason


# --- parse_signature: structure ----------------------------------------------------------------


def test_parse_exposes_the_digest_algorithm(good_der: bytes) -> None:
    """The parsed signature names its digest as a hashlib name, for streaming callers."""
    parsed = parse_signature(good_der)
    assert isinstance(parsed, ParsedSignature)
    assert parsed.digest_algorithm == "sha256"
    assert parsed.signed_attributes is not None
    assert parsed.signed_attributes[0] == 0x31
    assert len(parsed.certificates) == 2


def test_not_signed_data_is_undecodable() -> None:
    """A ContentInfo of another type is 901."""
    der = cms.ContentInfo({"content_type": "data", "content": b"hello"}).dump()
    assert _code(parse_signature(der)) == 901


def test_trailing_garbage_is_undecodable(good_der: bytes) -> None:
    """Bytes after the DER structure are refused (strict parsing)."""
    assert _code(parse_signature(good_der + b"\x00")) == 901


def _set_sig_alg(name: str, parameters: Any = None) -> Callable[[Any], None]:
    def change(info: Any) -> None:
        spec: dict[str, Any] = {"algorithm": name}
        if parameters is not None:
            spec["parameters"] = parameters
        _signer(info)["signature_algorithm"] = algos.SignedDigestAlgorithm(spec)

    return change


def _pss(hash_name: str, mgf_hash: str, trailer: str = "trailer_field_bc") -> dict[str, Any]:
    return {
        "hash_algorithm": {"algorithm": hash_name},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": mgf_hash}},
        "salt_length": 32,
        "trailer_field": trailer,
    }


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_set_sig_alg("sha256_dsa"), 910),
        (_set_sig_alg("sha384_rsa"), 910),
        (_set_sig_alg("md5_rsa"), 906),
        (_set_sig_alg("rsassa_pss", _pss("sha256", "sha1")), 910),
        (_set_sig_alg("rsassa_pss", _pss("sha384", "sha384")), 910),
        (_set_sig_alg("sha256_ecdsa"), None),
        (_set_sig_alg("sha256_rsa"), None),
    ],
)
def test_signature_algorithm_checks(good_der: bytes, change: Any, code: int | None) -> None:
    """Unknown algorithms, hash mismatches and unusual PSS parameters are refused."""
    assert _code(parse_signature(_edit(good_der, change))) == code


def _attrs(*attributes: dict[str, Any]) -> Callable[[Any], None]:
    def change(info: Any) -> None:
        _signer(info)["signed_attrs"] = cms.CMSAttributes(list(attributes))

    return change


_CT = {"type": "content_type", "values": ["data"]}
_MD = {"type": "message_digest", "values": [b"\x00" * 32]}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (_attrs(_CT), 901),
        (_attrs(_MD), 901),
        (_attrs(_CT, _MD, _MD), 901),
        (_attrs(_CT, {"type": "message_digest", "values": [b"\x00" * 32, b"\x01" * 32]}), 901),
        (_attrs({"type": "content_type", "values": ["signed_data"]}, _MD), 911),
        (_attrs(_CT, _MD), None),
    ],
)
def test_signed_attribute_checks(good_der: bytes, change: Any, code: int | None) -> None:
    """contentType and messageDigest must each occur once; contentType must be id-data."""
    assert _code(parse_signature(_edit(good_der, change))) == code


def test_message_digest_must_be_an_octet_string(good_der: bytes) -> None:
    """A messageDigest attribute holding something else is 901."""
    parsed = parse_signature(good_der)
    assert isinstance(parsed, ParsedSignature)
    assert parsed.signed_attributes is not None
    digest_attr = b"\x04\x20" + parsed.message_digest  # type: ignore[operator]
    broken = good_der.replace(digest_attr, b"\x05\x20" + b"\x00" * 32)
    assert _code(parse_signature(broken)) == 901


def test_malformed_attribute_is_undecodable(good_der: bytes) -> None:
    """An attribute that is not SEQUENCE { OID, SET } is 901."""
    info = cms.ContentInfo.load(good_der)
    raw = _signer(info)["signed_attrs"].dump()
    # Turn the first attribute's SET (0x31) into an OCTET STRING tag.
    broken_attrs = raw.replace(b"\x31\x0b\x06\x09", b"\x04\x0b\x06\x09", 1)
    assert broken_attrs != raw
    assert _code(parse_signature(good_der.replace(raw, broken_attrs))) == 901


@pytest.mark.parametrize(
    "blob",
    [b"\x30", b"\x30\x85\x00\x00\x00\x00\x01", b"\x30\x80", b"\x3f\x01\x00", b"\x30\x05\x00"],
)
def test_raw_walk_refuses_bad_lengths(blob: bytes) -> None:
    """The attribute/certificate walk raises ValueError (901 upstream) on non-DER lengths."""
    with pytest.raises(ValueError, match=r"."):
        _elements(blob)


def test_raw_walk_splits_elements() -> None:
    """Short and long definite lengths split into (tag, contents, element)."""
    long = b"\x04\x81\x80" + b"a" * 128
    assert _elements(b"\x02\x01\x05" + long) == [
        (0x02, b"\x05", b"\x02\x01\x05"),
        (0x04, b"a" * 128, long),
    ]


def test_non_certificate_choices_are_ignored(cast: StandardPki, good_der: bytes) -> None:
    """Only plain certificates are taken from the SignedData's certificate set."""
    info = cms.ContentInfo.load(good_der)
    info["content"]["certificates"] = [info["content"]["certificates"][0]]
    der = bytes(info.dump(force=True))
    parsed = parse_signature(der)
    assert isinstance(parsed, ParsedSignature)
    assert len(parsed.certificates) == 1
    nocerts = cast.pki.sign(b"payload", cast.rsa, extra=["-nocerts"])
    parsed = parse_signature(nocerts)
    assert isinstance(parsed, ParsedSignature)
    assert parsed.certificates == ()


# --- trust store loading -----------------------------------------------------------------------


def test_trust_store_from_pem_bundle_and_der(cast: StandardPki) -> None:
    """Certificates and CRLs load from PEM bundles or DER; garbage is a TrustStoreError."""
    bundle = cast.root.cert_pem + cast.sub.cert_pem
    crl_der = pem_blocks(cast.crl.read_bytes())[0][1]
    store = TrustStore.from_blobs([bundle, cast.rsa.cert_der], [crl_der, cast.crl.read_bytes()])
    assert store.anchor_count == 3
    with pytest.raises(TrustStoreError):
        TrustStore.from_blobs([b"not a certificate"])
    with pytest.raises(TrustStoreError):
        TrustStore.from_blobs([cast.root.cert_pem], [b"not a crl"])


def test_sort_blobs_splits_a_trust_folder(cast: StandardPki) -> None:
    """sort_blobs separates certificates from CRLs, PEM or DER, and ignores keys and junk."""
    crl_der = pem_blocks(cast.crl.read_bytes())[0][1]
    certs, crls = sort_blobs(
        [cast.root.cert_pem, cast.sub.cert_der, cast.crl.read_bytes(), crl_der,
         cast.rsa.key_pem, b"junk"]
    )  # fmt: skip
    assert (len(certs), len(crls)) == (2, 2)


def test_load_certificate_rejects_non_certificates(cast: StandardPki) -> None:
    """Two PEM certificates, a key or random bytes are not one certificate."""
    assert load_certificate(cast.root.cert_pem + cast.sub.cert_pem) is None
    assert load_certificate(cast.rsa.key_pem) is None
    assert load_certificate(b"\x30\x03\x02\x01\x00") is None
    info = load_certificate(cast.root.cert_pem)
    assert info is not None
    assert info.is_ca
    assert pem_blocks(b"-----BEGIN X-----\n!!!!\n-----END X-----\n") == []


def test_certificate_without_extensions(cast: StandardPki, tmp_path: Path) -> None:
    """A certificate without extensions (no SKI, no basicConstraints) loads and is not a CA."""
    key, csr, cert = tmp_path / "k.pem", tmp_path / "r.csr", tmp_path / "c.pem"
    cast.pki.run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-subj", "/CN=plain", "-out", csr)  # fmt: skip
    cast.pki.run("x509", "-req", "-in", csr, "-signkey", key, "-days", "2", "-out", cert)
    info = load_certificate(cert.read_bytes())
    assert info is not None
    assert (info.is_ca, info.key_identifier) == (False, None)


def test_key_that_is_neither_rsa_nor_ec(cast: StandardPki, good_der: bytes, tmp_path: Path) -> None:
    """A registered Ed25519 certificate named as the signer is an unsupported key (910)."""
    key, csr, cert = tmp_path / "k.pem", tmp_path / "r.csr", tmp_path / "c.pem"
    cast.pki.run("genpkey", "-algorithm", "ED25519", "-out", key)
    cast.pki.run("req", "-new", "-key", key, "-subj", "/CN=ed", "-out", csr)
    cast.pki.run("x509", "-req", "-in", csr, "-signkey", key, "-days", "2", "-out", cert)
    ed = load_certificate(cert.read_bytes())
    assert ed is not None
    info = cms.ContentInfo.load(good_der)
    sid = _signer(info)["sid"].chosen
    sid["issuer"] = x509.Name.load(ed.issuer_der)
    sid["serial_number"] = ed.serial
    der = bytes(info.dump(force=True))
    result = verify_fs(
        encode_fs(der),
        content=b"payload",
        registered=[ed.der],
        trust=TrustStore.from_blobs([cert.read_bytes()]),
        policy=SignaturePolicy(),
        now=datetime.now(UTC),
    )
    assert _code(result) == 910


def test_chain_building_skips_impostors_and_carried_anchors(
    cast: StandardPki, tmp_path: Path
) -> None:
    """A same-named CA with another key is skipped; a carried root is not used as a pool cert."""
    impostor = type(cast.pki)(tmp_path / "impostor").root_ca("Test Signing CA")
    trust = TrustStore.from_blobs([impostor.cert_pem, cast.root.cert_pem], cache_limit=1)
    for signer in (cast.rsa, cast.ec):
        der = cast.pki.sign(b"payload", signer, certfile=[cast.sub, cast.root])
        result = verify_fs(
            encode_fs(der),
            content=b"payload",
            registered=[signer.cert_der],
            trust=trust,
            policy=SignaturePolicy(),
            now=datetime.now(UTC),
        )
        assert isinstance(result, VerifiedSignature)


# --- the core's own signer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "attrs", "when"),
    [
        ("rsa", True, datetime(2026, 1, 15, 12, 0, tzinfo=UTC)),
        ("rsa", False, None),
        ("ec", True, datetime(2051, 1, 1, tzinfo=UTC)),
        ("ec", True, None),
    ],
)
def test_sign_detached_verifies_in_core_and_openssl(
    cast: StandardPki, tmp_path: Path, who: str, attrs: bool, when: datetime | None
) -> None:
    """The gateway's FS over an FO passes its own verifier and `openssl cms -verify`."""
    require_tool("openssl")
    signer = getattr(cast, who)
    fo = tmp_path / "FO.ACRF.999999.20260115.00001.R"
    fo.write_bytes(b"<ACRF>ok</ACRF>")
    der = sign_detached(
        fo.read_bytes(),
        key_pem=signer.key_pem,
        cert_pem=signer.cert_pem + cast.sub.cert_pem,
        signed_attributes=attrs,
        signing_time=when,
    )
    trust = TrustStore.from_blobs([cast.root.cert_pem])
    result = verify_fs(
        encode_fs(der),
        content=fo.read_bytes(),
        registered=[signer.cert_der],
        trust=trust,
        policy=SignaturePolicy(),
        now=datetime.now(UTC),
    )
    assert isinstance(result, VerifiedSignature)
    assert result.signing_time == when
    accepted, err = cast.pki.openssl_verify(fo, der, trusted=[cast.root])
    assert accepted, err


def test_sign_detached_openssl_with_gateway_pem(cast: StandardPki, tmp_path: Path) -> None:
    """A self-signed gateway certificate: `-CAfile gateway.pem -purpose any` accepts the FS."""
    gateway = cast.pki.root_ca("Batch Gateway 999999", key="ec:P-384")
    fo = tmp_path / "FO"
    fo.write_bytes(b"<ACRF/>")
    der = sign_detached(
        fo.read_bytes(), key_pem=gateway.key_pem, cert_pem=gateway.cert_pem, digest="sha384"
    )
    (tmp_path / "FS.der").write_bytes(der)
    result = cast.pki.run("cms", "-verify", "-binary", "-inform", "DER", "-in",
                          tmp_path / "FS.der", "-content", fo, "-CAfile", gateway.cert,
                          "-purpose", "any", "-out", tmp_path / "out", check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_sign_detached_refuses_bad_inputs(cast: StandardPki) -> None:
    """Unknown digest, a non-RSA/EC key or a naive signing time raise ValueError."""
    with pytest.raises(ValueError, match="digest"):
        sign_detached(b"x", key_pem=cast.rsa.key_pem, cert_pem=cast.rsa.cert_pem, digest="md5")
    ed_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="RSA or EC"):
        sign_detached(b"x", key_pem=ed_key, cert_pem=cast.rsa.cert_pem)
    with pytest.raises(ValueError, match="timezone"):
        sign_detached(
            b"x",
            key_pem=cast.rsa.key_pem,
            cert_pem=cast.rsa.cert_pem,
            signing_time=datetime(2026, 1, 1),
        )


def test_base64_helper_matches_core(good_der: bytes) -> None:
    """The one-line layout is plain base64 of the DER."""
    assert encode_fs(good_der, "one-line") == base64.b64encode(good_der)


# --- hand-built structures that break RFC 5652's field order ----------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


_SD_OID = _tlv(0x06, bytes.fromhex("2a864886f70d010702"))
_DATA_OID = _tlv(0x06, bytes.fromhex("2a864886f70d010701"))
_V1 = _tlv(0x02, b"\x01")
_DIGESTS = _tlv(0x31, algos.DigestAlgorithm({"algorithm": "sha256"}).dump())
_ENCAP = _tlv(0x30, _DATA_OID)


def _content_info(signed_body: bytes) -> bytes:
    return _tlv(0x30, _SD_OID + _tlv(0xA0, _tlv(0x30, signed_body)))


def _signer_info(sid: bytes) -> bytes:
    return _tlv(
        0x30,
        _V1
        + sid
        + algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        + algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}).dump()
        + _tlv(0x04, b"\x00" * 8),
    )


_GOOD_SID = _tlv(0x80, b"\x01" * 20)


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(_content_info(_V1), id="signed-data-too-short"),
        pytest.param(
            _content_info(_V1 + _DIGESTS + _ENCAP + _tlv(0xA2, b"") + _tlv(0x31, b"")),
            id="unknown-optional-field",
        ),
        pytest.param(
            _content_info(_V1 + _DIGESTS + _tlv(0x30, b"") + _tlv(0x31, b"")), id="empty-encap"
        ),
        pytest.param(
            _content_info(_V1 + _DIGESTS + _ENCAP + _tlv(0x31, _tlv(0x30, _V1))),
            id="signer-info-fields",
        ),
        pytest.param(_tlv(0x30, _SD_OID + _tlv(0x04, b"")), id="content-not-explicit"),
        pytest.param(
            _content_info(_V1 + _DIGESTS + _ENCAP + _tlv(0x31, _signer_info(_tlv(0x04, b"\x01")))),
            id="unknown-sid-choice",
        ),
    ],
)
def test_structures_out_of_order_are_undecodable(der: bytes) -> None:
    """Fields missing, unknown or out of RFC 5652 order are 901, never an exception."""
    assert _code(parse_signature(der)) == 901


def test_hand_built_minimal_signed_data_parses() -> None:
    """The hand-built structure itself is well formed (the cases above differ by one field)."""
    der = _content_info(_V1 + _DIGESTS + _ENCAP + _tlv(0x31, _signer_info(_GOOD_SID)))
    parsed = parse_signature(der)
    assert isinstance(parsed, ParsedSignature)
    assert parsed.signer_id.key_identifier == b"\x01" * 20


def test_unsigned_attributes_are_ignored(cast: StandardPki, good_der: bytes) -> None:
    """Unsigned attributes (e.g. a timestamp) do not change the verdict."""

    def change(info: Any) -> None:
        when = cms.Time({"utc_time": datetime(2026, 1, 1, tzinfo=UTC)})
        _signer(info)["unsigned_attrs"] = cms.CMSAttributes(
            [{"type": "signing_time", "values": [when]}]
        )

    der = _edit(good_der, change)
    result = verify_fs(
        encode_fs(der),
        content=b"payload",
        registered=[cast.rsa.cert_der],
        trust=TrustStore.from_blobs([cast.root.cert_pem]),
        policy=SignaturePolicy(),
        now=datetime.now(UTC),
    )
    assert isinstance(result, VerifiedSignature)
