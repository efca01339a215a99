"""Property tests: no FS input, however broken, makes the signature core raise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.codes import Rejection
from gateway.core.signature import (
    ParsedSignature,
    SignaturePolicy,
    TrustStore,
    VerifiedSignature,
    decode_fs,
    encode_fs,
    parse_signature,
    verify_fs,
)
from tests.pki import StandardPki, standard_pki
from tests.tools import require_tool

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="session")
def material(tmp_path_factory: pytest.TempPathFactory) -> tuple[StandardPki, bytes, TrustStore]:
    """The standard PKI, one good openssl signature over b"payload", and the trust store."""
    require_tool("openssl")
    cast = standard_pki(tmp_path_factory.getbasetemp() / "signature-pki")
    der = cast.pki.sign(b"payload", cast.rsa, certfile=[cast.sub])
    return cast, der, TrustStore.from_blobs([cast.root.cert_pem], [cast.crl.read_bytes()])


def _verify(cast: StandardPki, trust: TrustStore, fs: bytes) -> VerifiedSignature | Rejection:
    return verify_fs(
        fs,
        content=b"payload",
        registered=[cast.rsa.cert_der],
        trust=trust,
        policy=SignaturePolicy(),
        now=datetime.now(UTC),
    )


@_SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_decode_to_bytes_or_901(data: bytes) -> None:
    """decode_fs never raises: it returns DER bytes or a 901."""
    result = decode_fs(data)
    assert isinstance(result, bytes) or int(result.code) == 901


@_SETTINGS
@given(st.binary(max_size=600))
def test_random_der_is_rejected(data: bytes) -> None:
    """parse_signature on random bytes never raises and never accepts."""
    result = parse_signature(data)
    assert isinstance(result, Rejection)


@_SETTINGS
@given(st.binary(min_size=1, max_size=600))
def test_random_base64_fs_is_rejected(data: bytes) -> None:
    """An FS that is base64 of random bytes is refused with 901 without raising."""
    result = verify_fs(
        encode_fs(data),
        content=b"payload",
        registered=[],
        trust=TrustStore.from_blobs([]),
        policy=SignaturePolicy(),
        now=NOW,
    )
    assert isinstance(result, Rejection)
    assert int(result.code) == 901


@_SETTINGS
@given(data=st.data())
def test_corrupted_der_never_raises(
    material: tuple[StandardPki, bytes, TrustStore], data: st.DataObject
) -> None:
    """Flipping, cutting or inserting bytes in a good SignedData never raises."""
    cast, der, trust = material
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(der) - 1))
    if kind == "flip":
        bad = der[:pos] + bytes([der[pos] ^ data.draw(st.integers(1, 255))]) + der[pos + 1 :]
    elif kind == "truncate":
        bad = der[:pos]
    elif kind == "insert":
        bad = der[:pos] + data.draw(st.binary(min_size=1, max_size=8)) + der[pos:]
    else:
        bad = der[:pos] + der[pos + data.draw(st.integers(1, 8)) :]
    parsed = parse_signature(bad)
    assert isinstance(parsed, ParsedSignature | Rejection)
    result = _verify(cast, trust, encode_fs(bad))
    assert isinstance(result, VerifiedSignature | Rejection)
    if kind in {"truncate", "delete", "insert"}:
        # Any change of length breaks the DER structure or the signed bytes.
        assert isinstance(result, Rejection)


@_SETTINGS
@given(data=st.data())
def test_corrupted_base64_never_raises(
    material: tuple[StandardPki, bytes, TrustStore], data: st.DataObject
) -> None:
    """Random characters inserted into or replacing parts of the FS text never raise."""
    cast, der, trust = material
    text = bytearray(encode_fs(der, data.draw(st.sampled_from(["one-line", "76-cr", "64-crlf"]))))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text) - 1))
        text[pos : pos + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=4))
    result = _verify(cast, trust, bytes(text))
    assert isinstance(result, VerifiedSignature | Rejection)
