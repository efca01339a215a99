"""The one certificate builder behind the development identity and the demo's PKI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.pipeline.identity import issue_certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _issue(
    cn: str, key: ec.EllipticCurvePrivateKey, by: ec.EllipticCurvePrivateKey, issuer: str, **kw: Any
) -> x509.Certificate:
    return issue_certificate(
        subject=_name(cn),
        issuer=_name(issuer),
        public_key=key.public_key(),
        signing_key=by,
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
        **kw,
    )


def test_a_certificate_carries_exactly_the_named_usages_and_constraints() -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    usages = frozenset({"digital_signature", "content_commitment"})
    leaf = _issue("signer", leaf_key, ca_key, "ca", ca=False, usages=usages)
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    ca = _issue("ca", ca_key, ca_key, "ca", ca=True, usages=frozenset({"key_cert_sign"}))
    leaf.verify_directly_issued_by(ca)


def test_an_unknown_usage_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="signing"):
        _issue("x", key, key, "x", ca=True, usages=frozenset({"signing"}))
