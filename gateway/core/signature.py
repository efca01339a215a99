"""Verify an FS file (detached CMS SignedData) against the FI bytes or their digest.

One job: decide whether a sender's signature over an FI is acceptable, and say why not with a
stable code. Sans-IO: bytes, values and ``now`` in, a :class:`VerifiedSignature` or a
:class:`Rejection` out. Parsing is in ``gateway.core.cms``, trust (chain, CRLs) in
``gateway.core.trust``, signing in ``gateway.core.cms_sign``; this module re-exports their public
names so callers import one module.

Checks, in this order (the first failure is the answer):

1. structure and algorithms (``parse_signature``): 901 undecodable, 908 attached content,
   909 signer count, 911 eContentType, 910 unsupported algorithm, 906 MD5;
   then 906 SHA-1 unless the policy allows it;
2. the signer certificate is one of the sender's registered certificates (exact DER, i.e. its
   SHA-256 fingerprint) and matches the SignerInfo's sid ........................... 153
3. signer certificate valid at ``now``: 902 expired, 903 not yet valid;
4. key strength: RSA below ``min_rsa_bits`` or an EC curve other than P-256/384/521 ... 907
   (other key types: 910);
5. chain to the trust store .................................................... 905
6. revocation: 904 revoked, 913 no current CRL when ``require_crl``;
7. signature value: messageDigest equals the content digest, and the signature verifies
   over the DER SET OF signed attributes (or over the content digest without them) ... 125.

Why this order: cheap, peer-caused structural faults first; then "who signed" before "is it
trustworthy" so that a sender using the wrong certificate gets 153, not a chain error; the
signature value last because it is the only step that needs the content digest.

Registration asks the same questions before a certificate is accepted:
:func:`signing_certificate_rejection` runs steps 3-6 on a signing certificate and
:func:`client_certificate_rejection` steps 3-4 on a web-service client certificate, so that a
certificate verification would refuse is refused when it is registered, with the same code.

For a large FI the caller hashes it while it streams (``hashlib.new(parsed.digest_algorithm)``)
and passes ``content_digest``: the content is never read twice.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from gateway.core.cms import (
    FsStyle,
    ParsedSignature,
    SignatureScheme,
    SignerId,
    decode_fs,
    encode_fs,
    parse_signature,
)
from gateway.core.cms_sign import sign_detached
from gateway.core.codes import Code, Rejection, reject
from gateway.core.trust import (
    CertInfo,
    SignaturePolicy,
    TrustStore,
    TrustStoreError,
    load_certificate,
    sort_blobs,
)

__all__ = [
    "FsStyle",
    "ParsedSignature",
    "SignaturePolicy",
    "SignatureScheme",
    "SignerId",
    "TrustStore",
    "TrustStoreError",
    "VerifiedSignature",
    "client_certificate_rejection",
    "decode_fs",
    "encode_fs",
    "parse_signature",
    "sign_detached",
    "signing_certificate_rejection",
    "sort_blobs",
    "verify_fs",
    "verify_signature",
]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedSignature:
    """An accepted signature: who signed, with which certificate and digest, and when."""

    signer_subject: str
    """RFC 4514 string of the signer certificate's subject."""
    signer_fingerprint: str
    """SHA-256 of the signer certificate's DER, lowercase hex."""
    digest_algorithm: str
    signing_time: datetime | None


def verify_signature(
    parsed: ParsedSignature,
    *,
    content: bytes | None = None,
    content_digest: bytes | None = None,
    registered: Sequence[bytes],
    trust: TrustStore,
    policy: SignaturePolicy,
    now: datetime,
) -> VerifiedSignature | Rejection:
    """Verify ``parsed`` over ``content`` (or its precomputed digest); see the module for order.

    Exactly one of ``content`` and ``content_digest`` is given; ``content_digest`` is the digest
    with ``parsed.digest_algorithm``. ``registered`` holds the sender's certificates (DER or PEM).
    ``now`` must be timezone-aware. Misuse of these arguments raises ``ValueError`` (a bug of the
    caller, not a peer fault).
    """
    algorithm = parsed.digest_algorithm
    if content is not None and content_digest is None:
        digest = hashlib.new(algorithm, content).digest()
    elif content_digest is not None and content is None:
        digest = content_digest
        if len(digest) != hashlib.new(algorithm).digest_size:
            raise ValueError(f"content_digest is not a {algorithm} digest")
    else:
        raise ValueError("give exactly one of content and content_digest")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if algorithm == "sha1" and not policy.allow_sha1:
        return reject(Code.DIGEST_WEAK, "digest algorithm SHA-1 is not allowed; use SHA-256")

    signer = _registered_signer(parsed, registered)
    if isinstance(signer, Rejection):
        return signer
    key = _judge_signer(signer, parsed.certificates, trust=trust, policy=policy, now=now)
    if isinstance(key, Rejection):
        return key
    bad = _signature_value(parsed, key, digest)
    if bad is not None:
        return bad
    return VerifiedSignature(
        signer_subject=signer.subject,
        signer_fingerprint=signer.fingerprint.hex(),
        digest_algorithm=algorithm,
        signing_time=parsed.signing_time,
    )


def signing_certificate_rejection(
    certificate: bytes,
    *,
    carried: Sequence[bytes] = (),
    trust: TrustStore | None,
    policy: SignaturePolicy,
    now: datetime,
) -> Rejection | None:
    """What verification at ``now`` would refuse about ``certificate`` (DER or PEM) as a signer,
    before any signature is looked at: steps 3-6 of the module's order (902/903, 907/910, 905,
    904/913), or None. The registry asks this when a signing certificate is registered, so
    registration and verification judge alike. ``carried`` are intermediate CA certificates
    offered with it (an FS carries them; at registration they may follow the certificate in its
    PEM file), never anchors. With ``trust`` None the chain and revocation
    steps are skipped (the caller knows no trust store) and only the certificate's own
    validity and key are judged. An unreadable certificate is 901.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    info = load_certificate(certificate)
    if info is None:
        return reject(Code.SIGNATURE_UNDECODABLE, "the certificate is not a readable X.509 one")
    if trust is None:
        validity = _validity(info, now, "signing")
        return validity if validity is not None else _rejection(_signing_key(info, policy))
    return _rejection(_judge_signer(info, carried, trust=trust, policy=policy, now=now))


def client_certificate_rejection(
    certificate: bytes, *, policy: SignaturePolicy, now: datetime
) -> Rejection | None:
    """What the gateway refuses about a TLS client certificate (DER or PEM) at ``now``: its
    validity (902/903) and a weak key (907: RSA below ``policy.min_rsa_bits``, an EC curve
    other than P-256/384/521; Ed25519 and Ed448 are accepted; other types 910). No chain: a
    registered client certificate is its own anchor.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    info = load_certificate(certificate)
    if info is None:
        return reject(Code.SIGNATURE_UNDECODABLE, "the certificate is not a readable X.509 one")
    validity = _validity(info, now, "client")
    if validity is not None:
        return validity
    try:
        key = info.cert.public_key()
    except ValueError:  # pragma: no cover - cryptography cannot load this key type
        key = None
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return None
    return _rejection(_signing_key(info, policy, who="client"))


def _rejection(value: object) -> Rejection | None:
    return value if isinstance(value, Rejection) else None


def _validity(info: CertInfo, now: datetime, who: str) -> Rejection | None:
    if now < info.not_before:
        return reject(
            Code.CERTIFICATE_NOT_YET_VALID,
            f"the {who} certificate is valid only from {info.not_before:%Y-%m-%d}",
        )
    if now > info.not_after:
        return reject(
            Code.CERTIFICATE_EXPIRED,
            f"the {who} certificate expired on {info.not_after:%Y-%m-%d}",
        )
    return None


def _judge_signer(
    signer: CertInfo,
    carried: Sequence[bytes],
    *,
    trust: TrustStore,
    policy: SignaturePolicy,
    now: datetime,
) -> _Key | Rejection:
    """Steps 3-6: validity, key strength, chain, revocation; the key when all hold."""
    validity = _validity(signer, now, "signing")
    if validity is not None:
        return validity
    key = _signing_key(signer, policy)
    if isinstance(key, Rejection):
        return key
    chain = trust.chain_for(signer, carried, now)
    if isinstance(chain, Rejection):
        return chain
    revoked = trust.revocation(signer, chain, now, require_crl=policy.require_crl)
    return key if revoked is None else revoked


def verify_fs(
    fs_bytes: bytes,
    *,
    content: bytes | None = None,
    content_digest: bytes | None = None,
    registered: Sequence[bytes],
    trust: TrustStore,
    policy: SignaturePolicy,
    now: datetime,
) -> VerifiedSignature | Rejection:
    """Decode, parse and verify an FS file in one call (see :func:`verify_signature`)."""
    der = decode_fs(fs_bytes)
    if isinstance(der, Rejection):
        return der
    parsed = parse_signature(der)
    if isinstance(parsed, Rejection):
        return parsed
    return verify_signature(
        parsed,
        content=content,
        content_digest=content_digest,
        registered=registered,
        trust=trust,
        policy=policy,
        now=now,
    )


def _matches(info: CertInfo, sid: SignerId) -> bool:
    if sid.key_identifier is not None:
        return info.key_identifier == sid.key_identifier
    return info.serial == sid.serial and info.issuer_der == sid.issuer_der


def _registered_signer(
    parsed: ParsedSignature, registered: Sequence[bytes]
) -> CertInfo | Rejection:
    sid = parsed.signer_id
    for der in registered:
        info = load_certificate(der)
        if info is not None and _matches(info, sid):
            return info
    for der in parsed.certificates:
        info = load_certificate(der)
        if info is not None and _matches(info, sid):
            return reject(
                Code.CERTIFICATE_NOT_REGISTERED,
                f"the signing certificate {info.subject} (SHA-256 "
                f"{info.fingerprint.hex()}) is not registered for this sender",
            )
    return reject(
        Code.CERTIFICATE_NOT_REGISTERED,
        "the signing certificate is neither in the signature nor registered for this sender",
    )


_Key = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def _signing_key(
    signer: CertInfo, policy: SignaturePolicy, who: str = "signing"
) -> _Key | Rejection:
    """The signer's public key, when it is RSA or ECDSA and strong enough (907, 910)."""
    try:
        key = signer.cert.public_key()
    except ValueError:  # pragma: no cover - cryptography cannot load this key type (e.g. GOST)
        return reject(Code.ALGORITHM_UNSUPPORTED, f"the {who} certificate's key cannot be read")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < policy.min_rsa_bits:
            return reject(
                Code.KEY_WEAK,
                f"RSA key of {key.key_size} bits; at least {policy.min_rsa_bits} are required",
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            return reject(Code.KEY_WEAK, f"EC curve {key.curve.name} is not P-256, P-384 or P-521")
        return key
    return reject(Code.ALGORITHM_UNSUPPORTED, f"the {who} key is neither RSA nor ECDSA")


def _signature_value(parsed: ParsedSignature, key: _Key, digest: bytes) -> Rejection | None:
    hash_algorithm = _HASHES[parsed.digest_algorithm]()
    if parsed.signed_attributes is not None:
        if parsed.message_digest is None or not hmac.compare_digest(parsed.message_digest, digest):
            return reject(
                Code.SIGNATURE_INVALID,
                "the file's digest differs from the signed messageDigest: the file was changed "
                "or the signature belongs to another file",
            )
        data = parsed.signed_attributes
        algorithm: hashes.HashAlgorithm | Prehashed = hash_algorithm
    else:
        data = digest
        algorithm = Prehashed(hash_algorithm)
    try:
        if isinstance(key, rsa.RSAPublicKey) and parsed.scheme is SignatureScheme.RSA_PKCS1V15:
            key.verify(parsed.signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, rsa.RSAPublicKey) and parsed.scheme is SignatureScheme.RSA_PSS:
            pss = padding.PSS(
                mgf=padding.MGF1(_HASHES[parsed.digest_algorithm]()),
                salt_length=parsed.pss_salt_length or 0,
            )
            key.verify(parsed.signature, data, pss, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and parsed.scheme is SignatureScheme.ECDSA:
            key.verify(parsed.signature, data, ec.ECDSA(algorithm))
        else:
            return reject(
                Code.SIGNATURE_INVALID,
                f"signature scheme {parsed.scheme.value} does not fit the certificate's key",
            )
    except (InvalidSignature, ValueError):
        return reject(
            Code.SIGNATURE_INVALID,
            "the signature value does not verify with the signing certificate",
        )
    return None
