"""Decode an FS file and parse its detached CMS SignedData into plain values.

One job: bytes of an FS file in, a :class:`ParsedSignature` (or a :class:`Rejection`) out. Nothing
here looks at certificates' trust or at the signed content; ``gateway.core.signature`` does that.

The FS format (domain/batch-channel.md §3, DESIGN.md "Signature"): base64 of a DER ``ContentInfo``
holding a ``SignedData`` (RFC 5652 §5) that is *detached* (no eContent) over the exact FI bytes,
with exactly one ``SignerInfo`` and eContentType id-data. Senders produce the base64 on one line,
in 76-column lines separated by CR, or 64-column CRLF lines (PHP clients strip a PEM armour);
decoding therefore ignores every whitespace byte and tolerates a PEM armour.

Structural checks happen here, in this order, each with its code:

1. base64 and DER decodable, a ContentInfo of id-signedData .......................... 901
2. no embedded content (detached) ..................................................... 908
3. exactly one SignerInfo ............................................................. 909
4. eContentType (and the contentType signed attribute) is id-data ..................... 911
5. digest algorithm: MD5 refused .................................................. 906
   other than SHA-1/256/384/512, or a signature algorithm we do not verify .......... 910

SHA-1 is refused later, by ``verify_signature``, because only the policy knows whether it is
allowed. Every parse failure on peer bytes becomes a 901: a malformed FS is the peer's mistake,
never an exception.

How it parses: the SignedData skeleton (RFC 5652 §5) is walked by its DER tag/length octets
(``_elements``), because building asn1crypto's typed tree cost more than the whole rest of a
verification (bench/verify.py); asn1crypto decodes the parts that need it (algorithm identifiers
with their PSS parameters, signingTime, OIDs named in messages). Only definite lengths and
low tag numbers occur in a DER SignedData; anything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Literal

from asn1crypto import algos
from asn1crypto import cms as acms
from asn1crypto import core as acore

from gateway.core.codes import Code, Rejection, reject

__all__ = [
    "FsStyle",
    "ParsedSignature",
    "SignatureScheme",
    "SignerId",
    "decode_fs",
    "encode_fs",
    "parse_signature",
]

FsStyle = Literal["one-line", "76-cr", "64-crlf"]

# Digest algorithms by asn1crypto name -> hashlib name. SHA-1 is parsed so the policy can decide.
_DIGESTS = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
_WEAK_NEVER = frozenset({"md5", "md2", "md4"})

# DER contents of the object identifiers compared here (as bytes: cheaper than dotted strings).
_OID_DATA = bytes.fromhex("2a864886f70d010701")  # 1.2.840.113549.1.7.1 id-data
_OID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")  # 1.2.840.113549.1.7.2
_OID_CONTENT_TYPE = bytes.fromhex("2a864886f70d010903")  # 1.2.840.113549.1.9.3
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")  # 1.2.840.113549.1.9.4
_OID_SIGNING_TIME = bytes.fromhex("2a864886f70d010905")  # 1.2.840.113549.1.9.5
_WHITESPACE = b" \t\r\n\v\f"
_ARMOUR = re.compile(rb"-----(BEGIN|END) [A-Z0-9 ]+-----")


class SignatureScheme(Enum):
    """How the signature value is computed from the digest."""

    RSA_PKCS1V15 = "rsa-pkcs1v15"
    RSA_PSS = "rsa-pss"
    ECDSA = "ecdsa"


# signatureAlgorithm (asn1crypto name) -> (scheme, hash it implies or None for "the digest alg").
_SIGNATURE_ALGORITHMS: dict[str, tuple[SignatureScheme, str | None]] = {
    "rsassa_pkcs1v15": (SignatureScheme.RSA_PKCS1V15, None),
    "rsa": (SignatureScheme.RSA_PKCS1V15, None),
    "ecdsa": (SignatureScheme.ECDSA, None),
    "rsassa_pss": (SignatureScheme.RSA_PSS, None),
}
for _hash in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
    _SIGNATURE_ALGORITHMS[f"{_hash}_rsa"] = (SignatureScheme.RSA_PKCS1V15, _hash)
    _SIGNATURE_ALGORITHMS[f"{_hash}_ecdsa"] = (SignatureScheme.ECDSA, _hash)


@dataclass(frozen=True, slots=True)
class SignerId:
    """The SignerInfo's ``sid``: issuer DER + serial, or a subjectKeyIdentifier."""

    issuer_der: bytes | None
    serial: int | None
    key_identifier: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedSignature:
    """A structurally valid detached SignedData, reduced to the values verification needs."""

    digest_algorithm: str
    """hashlib name of the digest algorithm ("sha256"), to hash the FI while it streams."""
    scheme: SignatureScheme
    pss_salt_length: int | None
    signature: bytes
    signer_id: SignerId
    signed_attributes: bytes | None
    """DER of the SET OF signed attributes (what the signature covers), or None without them."""
    message_digest: bytes | None
    signing_time: datetime | None
    certificates: tuple[bytes, ...]
    """DER of every certificate carried in the SignedData (signer and intermediates)."""


def decode_fs(data: bytes) -> bytes | Rejection:
    """Base64 text of an FS file (any line length or ending, PEM armour tolerated) -> DER bytes."""
    if b"-----" in data:
        data = _ARMOUR.sub(b"", data)
    text = data.translate(None, _WHITESPACE)
    if not text:
        return reject(Code.SIGNATURE_UNDECODABLE, "the signature file is empty")
    try:
        der = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return reject(
            Code.SIGNATURE_UNDECODABLE,
            "the signature file is not valid base64 (characters A-Z a-z 0-9 + / = only)",
        )
    return der


def encode_fs(der: bytes, style: FsStyle = "76-cr") -> bytes:
    """DER SignedData -> FS text: one line, 76 columns + CR after each line, or 64 + CRLF."""
    text = base64.b64encode(der)
    if style == "one-line":
        return text
    width, end = {"76-cr": (76, b"\r"), "64-crlf": (64, b"\r\n")}[style]
    return b"".join(text[i : i + width] + end for i in range(0, len(text), width))


def parse_signature(fs_der: bytes) -> ParsedSignature | Rejection:
    """Parse a DER ContentInfo into a :class:`ParsedSignature`; refuse what cannot be verified."""
    try:
        return _parse(fs_der)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # The DER walk and asn1crypto report malformed input with these exception types.
        return reject(Code.SIGNATURE_UNDECODABLE, f"the signature is not a valid DER CMS: {exc}")


def _parse(fs_der: bytes) -> ParsedSignature | Rejection:
    # RFC 5652 §3: ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }
    (info,) = _one(_elements(fs_der), 0x30)
    content_type, explicit = _seq(info, 0x06, 0xA0)
    if content_type[1] != _OID_SIGNED_DATA:
        return reject(
            Code.SIGNATURE_UNDECODABLE,
            f"the signature holds {_oid_name(content_type[2])}, not a CMS SignedData",
        )
    # §5.1: SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo,
    #   certificates [0] IMPLICIT OPTIONAL, crls [1] IMPLICIT OPTIONAL, signerInfos SET }
    (signed,) = _one(_elements(explicit[1]), 0x30)
    fields = _elements(signed[1])
    if len(fields) < 4 or [f[0] for f in fields[:3]] != [0x02, 0x31, 0x30] or fields[-1][0] != 0x31:
        raise ValueError("SignedData fields are not version, digestAlgorithms, encapContentInfo")
    optional = [f[0] for f in fields[3:-1]]
    if optional not in ([], [0xA0], [0xA1], [0xA0, 0xA1]):
        raise ValueError("SignedData holds unexpected optional fields")
    # §5.2: EncapsulatedContentInfo ::= SEQUENCE { eContentType OID, eContent [0] EXPLICIT OPT }
    encap = _elements(fields[2][1])
    if not encap or encap[0][0] != 0x06 or len(encap) > 2:
        raise ValueError("malformed encapContentInfo")
    if len(encap) == 2:
        return reject(
            Code.SIGNATURE_NOT_DETACHED,
            "the signature embeds content; send a detached signature (openssl cms -sign without "
            "-nodetach)",
        )
    signers = _elements(fields[-1][1])
    if len(signers) != 1:
        return reject(Code.SIGNER_COUNT, f"the signature has {len(signers)} signers, not 1")
    if encap[0][1] != _OID_DATA:
        return reject(
            Code.CONTENT_TYPE_WRONG, f"eContentType is {_oid_name(encap[0][2])}, not id-data"
        )
    # §5.3: SignerInfo ::= SEQUENCE { version, sid, digestAlgorithm, signedAttrs [0] IMPLICIT
    #   OPTIONAL, signatureAlgorithm, signature OCTET STRING, unsignedAttrs [1] IMPLICIT OPTIONAL }
    (signer,) = _one(signers, 0x30)
    parts = _elements(signer[1])
    if parts and parts[-1][0] == 0xA1:
        parts = parts[:-1]
    attrs = None
    if len(parts) == 6 and parts[3][0] == 0xA0:
        attrs = parts.pop(3)
    if len(parts) != 5 or [parts[0][0], *(p[0] for p in parts[2:])] != [0x02, 0x30, 0x30, 0x04]:
        raise ValueError("SignerInfo fields are not as RFC 5652 §5.3 orders them")
    _, sid, digest_alg, signature_alg, signature = parts
    digest_algorithm = _digest_name(algos.DigestAlgorithm.load(digest_alg[2], strict=True))
    if isinstance(digest_algorithm, Rejection):
        return digest_algorithm
    scheme = _scheme(
        algos.SignedDigestAlgorithm.load(signature_alg[2], strict=True), digest_algorithm
    )
    if isinstance(scheme, Rejection):
        return scheme
    scheme_kind, salt = scheme
    attributes = _signed_attributes(attrs)
    if isinstance(attributes, Rejection):
        return attributes
    attrs_der, message_digest, signing_time = attributes
    certificates = [f for f in fields[3:-1] if f[0] == 0xA0]
    return ParsedSignature(
        digest_algorithm=digest_algorithm,
        scheme=scheme_kind,
        pss_salt_length=salt,
        signature=signature[1],
        signer_id=_signer_id(sid),
        signed_attributes=attrs_der,
        message_digest=message_digest,
        signing_time=signing_time,
        # Only plain X.509 certificates (universal SEQUENCE); attribute certs etc. are ignored.
        certificates=tuple(
            der for c in certificates for tag, _, der in _elements(c[1]) if tag == 0x30
        ),
    )


_Element = tuple[int, bytes, bytes]


def _one(elements: list[_Element], tag: int) -> list[_Element]:
    """Exactly one element, with identifier octet ``tag``."""
    if len(elements) != 1 or elements[0][0] != tag:
        raise ValueError(f"expected one element with tag 0x{tag:02x}")
    return elements


def _seq(element: _Element, *tags: int | None) -> list[_Element]:
    """The members of a constructed ``element``, checked against ``tags`` (None: any)."""
    members = _elements(element[1])
    if len(members) != len(tags) or any(
        want is not None and got[0] != want for got, want in zip(members, tags, strict=True)
    ):
        raise ValueError("unexpected structure")
    return members


def _oid_name(element: bytes) -> str:
    return str(acore.ObjectIdentifier.load(element).native)


def _elements(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split concatenated DER elements into (identifier octet, contents, whole element).

    asn1crypto builds a typed object per node, which costs more than the rest of verification for
    the SET OF attributes and certificates that we only need as bytes; this walk splits them by
    their definite DER lengths and raises ``ValueError`` (a 901 upstream) on anything else.
    """
    out: list[tuple[int, bytes, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 2 or data[pos] & 0x1F == 0x1F:
            raise ValueError("truncated element or unexpected high tag number")
        length, header = data[pos + 1], 2
        if length & 0x80:
            count = length & 0x7F
            if not 0 < count <= 4 or pos + 2 + count > end:
                raise ValueError("indefinite or oversized length")
            length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
            header += count
        stop = pos + header + length
        if stop > end:
            raise ValueError("element runs past its container")
        out.append((data[pos], data[pos + header : stop], data[pos:stop]))
        pos = stop
    return out


def _digest_name(algorithm: algos.DigestAlgorithm) -> str | Rejection:
    name = algorithm["algorithm"].native
    if name in _WEAK_NEVER:
        return reject(Code.DIGEST_WEAK, f"digest algorithm {name.upper()} is never accepted")
    if name not in _DIGESTS:
        return reject(
            Code.ALGORITHM_UNSUPPORTED,
            f"digest algorithm {name} is not supported (use SHA-256, SHA-384 or SHA-512)",
        )
    return _DIGESTS[name]


def _scheme(
    algorithm: acore.Asn1Value, digest_algorithm: str
) -> tuple[SignatureScheme, int | None] | Rejection:
    name = algorithm["algorithm"].native
    if name not in _SIGNATURE_ALGORITHMS:
        return reject(Code.ALGORITHM_UNSUPPORTED, f"signature algorithm {name} is not supported")
    scheme, implied = _SIGNATURE_ALGORITHMS[name]
    salt: int | None = None
    if scheme is SignatureScheme.RSA_PSS:
        params = algorithm["parameters"]
        mgf = params["mask_gen_algorithm"]
        if (
            mgf["algorithm"].native != "mgf1"
            or mgf["parameters"]["algorithm"].native != params["hash_algorithm"]["algorithm"].native
            or params["trailer_field"].native != "trailer_field_bc"
        ):
            return reject(Code.ALGORITHM_UNSUPPORTED, "RSA-PSS parameters are not supported")
        implied = params["hash_algorithm"]["algorithm"].native
        salt = int(params["salt_length"].native)
    if implied in _WEAK_NEVER:
        return reject(Code.DIGEST_WEAK, f"signature algorithm {name} uses a refused digest")
    if implied is not None and implied != digest_algorithm:
        return reject(
            Code.ALGORITHM_UNSUPPORTED,
            f"signature algorithm {name} does not match digest algorithm {digest_algorithm}",
        )
    return scheme, salt


def _signed_attributes(
    attrs: _Element | None,
) -> tuple[bytes | None, bytes | None, datetime | None] | Rejection:
    if attrs is None:
        return None, None, None
    values: dict[bytes, bytes] = {}
    for tag, contents, _ in _elements(attrs[1]):
        parts = _elements(contents)
        if tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06 or parts[1][0] != 0x31:
            return reject(Code.SIGNATURE_UNDECODABLE, "a signed attribute is malformed")
        oid = parts[0][1]
        members = _elements(parts[1][1])
        if oid in values or len(members) != 1:
            return reject(
                Code.SIGNATURE_UNDECODABLE, "a signed attribute must occur once with one value"
            )
        values[oid] = members[0][2]
    if _OID_MESSAGE_DIGEST not in values or _OID_CONTENT_TYPE not in values:
        return reject(
            Code.SIGNATURE_UNDECODABLE,
            "signed attributes must hold contentType and messageDigest (RFC 5652 §5.3)",
        )
    if values[_OID_CONTENT_TYPE] != b"\x06" + bytes([len(_OID_DATA)]) + _OID_DATA:
        return reject(Code.CONTENT_TYPE_WRONG, "the contentType signed attribute is not id-data")
    digest = values[_OID_MESSAGE_DIGEST]
    if digest[0] != 0x04:
        return reject(Code.SIGNATURE_UNDECODABLE, "messageDigest is not an OCTET STRING")
    signing_time = None
    if _OID_SIGNING_TIME in values:
        signing_time = acms.Time.load(values[_OID_SIGNING_TIME], strict=True).native
    # The signature covers the DER of the attributes as a SET OF (tag 0x31), not the [0] IMPLICIT
    # form in which they travel (RFC 5652 §5.4). The original bytes are kept, never re-encoded.
    return b"\x31" + attrs[2][1:], _elements(digest)[0][1], signing_time


def _signer_id(sid: _Element) -> SignerId:
    # SignerIdentifier ::= CHOICE { issuerAndSerialNumber, subjectKeyIdentifier [0] IMPLICIT }
    if sid[0] == 0x30:
        issuer, serial = _seq(sid, 0x30, 0x02)
        return SignerId(
            issuer_der=issuer[2],
            serial=int.from_bytes(serial[1], "big", signed=True),
            key_identifier=None,
        )
    if sid[0] != 0x80:
        raise ValueError("unknown SignerIdentifier")
    return SignerId(issuer_der=None, serial=None, key_identifier=sid[1])
