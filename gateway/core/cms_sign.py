"""Make a detached CMS SignedData (the gateway's own FS files), pure and deterministic.

One job: sign bytes with a key and certificate given as PEM bytes (or loaded once into a
:class:`SigningIdentity`, for a signer that signs many times), returning DER that
``openssl cms -verify -binary -inform DER -content FO`` accepts and that
``gateway.core.signature`` verifies. No clock: a signingTime attribute is written only when the
caller passes ``signing_time``. RSA keys sign with PKCS#1 v1.5, EC keys with ECDSA.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import cms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

__all__ = ["SigningIdentity", "load_signing_identity", "sign_detached"]


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """A private key and its certificate chain (signer first), parsed once.

    ``sid_der`` (the signer's IssuerAndSerialNumber) and ``certificates_der`` (the chain as the
    SignedData's ``[0] IMPLICIT CertificateSet``) are encoded once here: re-encoding a parsed
    certificate with asn1crypto on every signature cost about 1.5 ms, thirty times the ECDSA
    signature itself.
    """

    key: PrivateKeyTypes
    chain: tuple[ax509.Certificate, ...]
    sid_der: bytes
    certificates_der: bytes


def load_signing_identity(key_pem: bytes, cert_pem: bytes) -> SigningIdentity:
    """Parse a PEM key and PEM certificate(s); ``ValueError`` when either is unusable.

    ``cert_pem`` holds the signer's certificate first; further PEM certificates in it (the
    issuing CAs) are carried in the SignedData so a verifier can build the chain.
    """
    key = serialization.load_pem_private_key(key_pem, password=None)
    chain = tuple(
        ax509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
        for c in x509.load_pem_x509_certificates(cert_pem)
    )
    if not chain:
        raise ValueError("no certificate in cert_pem")
    signer = chain[0]
    sid = cms.SignerIdentifier(
        {
            "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                {"issuer": signer.issuer, "serial_number": signer.serial_number}
            )
        }
    )
    # The chain with the field's own tagging, taken from a SignedData that holds only it.
    certificates = cms.SignedData({"certificates": list(chain)})["certificates"]
    return SigningIdentity(
        key=key, chain=chain, sid_der=sid.dump(), certificates_der=certificates.dump()
    )


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element: ``tag``, definite length, ``content``."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER element (X.690 §8.19): base-128 arcs, the first two combined."""
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in (arcs[0] * 40 + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


_SEQUENCE, _SET, _OCTET_STRING, _CONTEXT_0 = 0x30, 0x31, 0x04, 0xA0
_UTC_TIME, _GENERALIZED_TIME, _NULL = 0x17, 0x18, b"\x05\x00"
_VERSION_1 = b"\x02\x01\x01"
_ID_DATA = _oid("1.2.840.113549.1.7.1")
_DATA_CONTENT_INFO = _tlv(_SEQUENCE, _ID_DATA)
_SIGNED_DATA_OID = _oid("1.2.840.113549.1.7.2")
# RFC 5652 §11.1: contentType is always id-data here, so the whole attribute is fixed.
_CONTENT_TYPE_ATTRIBUTE = _tlv(_SEQUENCE, _oid("1.2.840.113549.1.9.3") + _tlv(_SET, _ID_DATA))
_MESSAGE_DIGEST_OID = _oid("1.2.840.113549.1.9.4")
_SIGNING_TIME_OID = _oid("1.2.840.113549.1.9.5")
# AlgorithmIdentifier as asn1crypto wrote it: RSA with NULL parameters (RFC 3370 §3.2), ECDSA
# without parameters (RFC 5758 §3.2).
_RSA_ALGORITHM = _tlv(_SEQUENCE, _oid("1.2.840.113549.1.1.1") + _NULL)


def _attribute(oid: bytes, value: bytes) -> bytes:
    """An Attribute (RFC 5652 §5.3) holding one value: SEQUENCE { type, SET { value } }."""
    return _tlv(_SEQUENCE, oid + _tlv(_SET, value))


@dataclass(frozen=True, slots=True)
class _Digest:
    """What one digest algorithm contributes, encoded once: only the digest value varies."""

    new: Callable[[bytes], hashlib._Hash]
    hash_algorithm: hashes.HashAlgorithm
    algorithm_der: bytes
    """The DigestAlgorithmIdentifier (with NULL parameters, as asn1crypto encodes it)."""
    ecdsa_der: bytes
    """The SignatureAlgorithmIdentifier ecdsa-with-SHAx."""
    message_digest_prefix: bytes
    """The messageDigest attribute up to (without) the digest value, whose size is fixed."""


def _digest(
    new: Callable[[bytes], hashlib._Hash], algorithm: hashes.HashAlgorithm, nist: int, ecdsa: int
) -> _Digest:
    """The encoded parts of a SHA-2 digest: ``nist`` its arc under 2.16.840.1.101.3.4.2,
    ``ecdsa`` its arc under ecdsa-with-SHA2 (1.2.840.10045.4.3)."""
    blank = bytes(algorithm.digest_size)
    attribute = _attribute(_MESSAGE_DIGEST_OID, _tlv(_OCTET_STRING, blank))
    return _Digest(
        new=new,
        hash_algorithm=algorithm,
        algorithm_der=_tlv(_SEQUENCE, _oid(f"2.16.840.1.101.3.4.2.{nist}") + _NULL),
        ecdsa_der=_tlv(_SEQUENCE, _oid(f"1.2.840.10045.4.3.{ecdsa}")),
        message_digest_prefix=attribute[: -len(blank)],
    )


_DIGESTS: dict[str, _Digest] = {
    "sha256": _digest(hashlib.sha256, hashes.SHA256(), 1, 2),
    "sha384": _digest(hashlib.sha384, hashes.SHA384(), 2, 3),
    "sha512": _digest(hashlib.sha512, hashes.SHA512(), 3, 4),
}


def _time(when: datetime) -> bytes:
    """The signingTime value (RFC 5652 §11.3) in UTC, encoded as asn1crypto encoded it.

    UTCTime ``YYMMDDHHMMSSZ`` for 1950..2049 (microseconds dropped); GeneralizedTime
    ``YYYYMMDDHHMMSS[.f]Z`` otherwise, with microseconds as a fraction without trailing zeros.
    """
    if when.tzinfo is None:
        raise ValueError("signing_time must be timezone-aware")
    when = when.astimezone(UTC)
    year = when.year
    clock = f"{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}{when.second:02d}"
    if 1950 <= year < 2050:
        return _tlv(_UTC_TIME, f"{year % 100:02d}{clock}Z".encode("ascii"))
    fraction = f".{when.microsecond:06d}".rstrip("0") if when.microsecond else ""
    return _tlv(_GENERALIZED_TIME, f"{year:04d}{clock}{fraction}Z".encode("ascii"))


def _signed_attributes(parts: _Digest, content_digest: bytes, when: datetime | None) -> bytes:
    """The DER SET OF signed attributes: contentType id-data, messageDigest, signingTime.

    X.690 §11.6: a SET OF's members are sorted by their encodings, so sorted here, each time
    (the signingTime's length varies with its kind and fraction).
    """
    members = [_CONTENT_TYPE_ATTRIBUTE, parts.message_digest_prefix + content_digest]
    if when is not None:
        members.append(_attribute(_SIGNING_TIME_OID, _time(when)))
    members.sort()
    return _tlv(_SET, b"".join(members))


def sign_detached(
    content: bytes,
    *,
    key_pem: bytes | None = None,
    cert_pem: bytes | None = None,
    identity: SigningIdentity | None = None,
    digest: str = "sha256",
    signed_attributes: bool = True,
    signing_time: datetime | None = None,
) -> bytes:
    """Detached SignedData (DER) over ``content``; ``ValueError`` on an unusable key or digest.

    The signer is ``identity`` (loaded once), or ``key_pem`` with ``cert_pem`` (parsed now; see
    :func:`load_signing_identity`).
    """
    parts = _DIGESTS.get(digest)
    if parts is None:
        raise ValueError(f"digest {digest!r} is not one of {sorted(_DIGESTS)}")
    if identity is None:
        if key_pem is None or cert_pem is None:
            raise ValueError("sign_detached needs identity, or key_pem and cert_pem")
        identity = load_signing_identity(key_pem, cert_pem)
    content_digest = parts.new(content).digest()
    if signed_attributes:
        data = _signed_attributes(parts, content_digest, signing_time)
        algorithm: hashes.HashAlgorithm | Prehashed = parts.hash_algorithm
    else:
        data = content_digest
        algorithm = Prehashed(parts.hash_algorithm)
    signature, signature_algorithm = _sign(identity.key, data, algorithm, parts)

    # RFC 5652 §5.1 and §5.3, assembled from encoded parts (the fixed ones encoded once, in the
    # identity): SignedData version 1, issuerAndSerialNumber, eContentType id-data, no content.
    signer_info = [_VERSION_1, identity.sid_der, parts.algorithm_der]
    if signed_attributes:
        # signedAttrs is [0] IMPLICIT SET OF: the bytes signed above, retagged.
        signer_info.append(bytes((_CONTEXT_0,)) + data[1:])
    signer_info += [signature_algorithm, _tlv(_OCTET_STRING, signature)]
    signed_data = _tlv(
        _SEQUENCE,
        _VERSION_1
        + _tlv(_SET, parts.algorithm_der)
        + _DATA_CONTENT_INFO
        + identity.certificates_der
        + _tlv(_SET, _tlv(_SEQUENCE, b"".join(signer_info))),
    )
    return _tlv(_SEQUENCE, _SIGNED_DATA_OID + _tlv(_CONTEXT_0, signed_data))


def _sign(
    key: PrivateKeyTypes, data: bytes, algorithm: hashes.HashAlgorithm | Prehashed, parts: _Digest
) -> tuple[bytes, bytes]:
    """The signature over ``data`` and its encoded SignatureAlgorithmIdentifier."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm), _RSA_ALGORITHM
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm)), parts.ecdsa_der
    raise ValueError("the signing key must be RSA or EC")
