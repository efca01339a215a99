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
