"""The one certificate builder behind the development identity and the demo's PKI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.pipeline.identity import issue_certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def test_a_certificate_carries_exactly_the_named_usages_and_constraints() -> None:
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    now = datetime(2026, 11, 29, tzinfo=UTC)
    leaf = issue_certificate(
        subject=_name("signer"),
        issuer=_name("ca"),
        public_key=leaf_key.public_key(),
        signing_key=ca_key,
        not_before=now,
        not_after=now + timedelta(days=1),
        ca=False,
        usages=frozenset({"digital_signature", "content_commitment"}),
    )
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    leaf.verify_directly_issued_by(
        issue_certificate(
            subject=_name("ca"),
            issuer=_name("ca"),
            public_key=ca_key.public_key(),
            signing_key=ca_key,
            not_before=now,
            not_after=now + timedelta(days=1),
            ca=True,
            usages=frozenset({"key_cert_sign"}),
        )
    )


def test_an_unknown_usage_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime(2026, 11, 29, tzinfo=UTC)
    with pytest.raises(ValueError, match="signing"):
        issue_certificate(
            subject=_name("x"),
            issuer=_name("x"),
            public_key=key.public_key(),
            signing_key=key,
            not_before=now,
            not_after=now + timedelta(days=1),
            ca=True,
            usages=frozenset({"signing"}),
        )
