"""The trust store: CA certificates and CRLs, chain building and revocation, as values.

One job: answer "does this signer certificate chain to a trusted CA, and is it revoked, at
``now``?". The store is built once from bytes (the command line or the daemon reads the trust
folder and passes the blobs in) and handed to every verification; it does no I/O and reads no
clock.

Rules:
- Every certificate given to the store is a trust anchor (as with OpenSSL's ``-partial_chain``):
  an operator who puts an intermediate CA in the folder trusts that CA. Intermediates the signer
  needs may also come from the SignedData's own certificates; those are never anchors.
- A chain link holds only when the child's issuer equals the parent's subject (compared as DER
  bytes), the parent's signature over the child verifies, the parent is valid at ``now`` and,
  unless it is an anchor, is a CA (basicConstraints cA). Depth is bounded.
- Revocation: a CRL counts only when its signature verifies with the key of the certificate's
  issuer in the chain. A certificate listed with a revocation date at or before ``now`` is revoked
  (904). With ``require_crl`` the signer's issuer must have a CRL current at ``now`` (913).
- Cache: the verified issuer chain of a signer is kept per signer certificate fingerprint, so a
  hit skips only the issuer-signature checks. Validity at ``now`` of every chain member, the
  presence of its intermediates (trust store or this SignedData) and revocation are checked
  again on every call, and the signature value is never cached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from gateway.core.codes import Code, Rejection, reject

__all__ = [
    "CertInfo",
    "SignaturePolicy",
    "TrustStore",
    "TrustStoreError",
    "load_certificate",
    "pem_blocks",
    "sort_blobs",
]

_MAX_DEPTH = 8
_CACHE_LIMIT = 4096
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


class TrustStoreError(ValueError):
    """A trust-store blob (operator configuration, not peer input) cannot be read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignaturePolicy:
    """What the gateway accepts beyond the fixed rules (MD5 never; RSA/ECDSA only)."""

    allow_sha1: bool = False
    min_rsa_bits: int = 2048
    require_crl: bool = False


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CertInfo:
    """A parsed certificate with the fields chain building compares, computed once."""

    der: bytes
    cert: x509.Certificate
    fingerprint: bytes
    subject_der: bytes
    issuer_der: bytes
    serial: int
    key_identifier: bytes | None
    is_ca: bool
    subject: str
    """RFC 4514 form of the subject, for messages and results."""
    not_before: datetime
    not_after: datetime

    def valid_at(self, now: datetime) -> bool:
        """True when ``now`` lies within notBefore..notAfter."""
        return self.not_before <= now <= self.not_after


@lru_cache(maxsize=_CACHE_LIMIT)
def load_certificate(der: bytes) -> CertInfo | None:
    """Parse a DER (or single PEM) certificate; None when it is not a readable certificate."""
    if der.lstrip().startswith(b"-----"):
        blocks = pem_blocks(der)
        if len(blocks) != 1 or blocks[0][0] != "CERTIFICATE":
            return None
        der = blocks[0][1]
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
        try:
            ski: bytes | None = extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            ).value.digest
        except x509.ExtensionNotFound:
            ski = None
        try:
            is_ca = extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        return CertInfo(
            der=der,
            cert=cert,
            fingerprint=hashlib.sha256(der).digest(),
            subject_der=cert.subject.public_bytes(),
            issuer_der=cert.issuer.public_bytes(),
            serial=cert.serial_number,
            key_identifier=ski,
            is_ca=is_ca,
            subject=cert.subject.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )
    except ValueError:
        return None


def pem_blocks(blob: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block of ``blob`` as (label, DER); undecodable blocks are skipped."""
    out: list[tuple[str, bytes]] = []
    for match in _PEM_BLOCK.finditer(blob):
        body = re.sub(rb"\s+", b"", match.group(2))
        try:
            out.append((match.group(1).decode("ascii"), base64.b64decode(body, validate=True)))
        except binascii.Error:
            continue
    return out


def sort_blobs(blobs: Iterable[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Split the files of a trust folder into (certificate DERs, CRL DERs); others are ignored."""
    certs: list[bytes] = []
    crls: list[bytes] = []
    for blob in blobs:
        if b"-----BEGIN" in blob:
            for label, der in pem_blocks(blob):
                if label == "CERTIFICATE":
                    certs.append(der)
                elif label == "X509 CRL":
                    crls.append(der)
            continue
        if load_certificate(blob) is not None:
            certs.append(blob)
        elif _load_crl(blob) is not None:
            crls.append(blob)
    return certs, crls


def _load_crl(der: bytes) -> x509.CertificateRevocationList | None:
    try:
        crl = x509.load_der_x509_crl(der)
        crl.issuer.public_bytes()
    except ValueError:
        return None
    return crl


def _issued_by(child: CertInfo, parent: CertInfo) -> bool:
    try:
        child.cert.verify_directly_issued_by(parent.cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class _Crl:
    crl: x509.CertificateRevocationList
    issuer_der: bytes


class TrustStore:
    """Trusted CA certificates and CRLs, with a per-signer cache of verified chains."""

    __slots__ = ("_anchors", "_by_subject", "_cache_limit", "_chains", "_crl_checked", "_crls")

    def __init__(
        self, anchors: Sequence[CertInfo], crls: Sequence[_Crl], *, cache_limit: int = _CACHE_LIMIT
    ) -> None:
        self._cache_limit = cache_limit
        self._anchors = {info.fingerprint: info for info in anchors}
        self._by_subject: dict[bytes, list[CertInfo]] = {}
        for info in self._anchors.values():
            self._by_subject.setdefault(info.subject_der, []).append(info)
        self._crls: dict[bytes, list[_Crl]] = {}
        for item in crls:
            self._crls.setdefault(item.issuer_der, []).append(item)
        self._chains: dict[bytes, tuple[CertInfo, ...]] = {}
        self._crl_checked: dict[tuple[int, bytes], bool] = {}

    @classmethod
    def from_blobs(
        cls, certs: Iterable[bytes], crls: Iterable[bytes] = (), *, cache_limit: int = _CACHE_LIMIT
    ) -> TrustStore:
        """Build from certificate and CRL blobs, each PEM (one or more blocks) or DER.

        ``cache_limit`` bounds the per-signer chain cache (cleared when full).
        """
        anchors: list[CertInfo] = []
        for index, blob in enumerate(certs):
            ders = [d for label, d in pem_blocks(blob) if label == "CERTIFICATE"]
            for der in ders if b"-----BEGIN" in blob else [blob]:
                info = load_certificate(der)
                if info is None:
                    raise TrustStoreError(f"trust certificate #{index} is not a certificate")
                anchors.append(info)
        loaded: list[_Crl] = []
        for index, blob in enumerate(crls):
            ders = [d for label, d in pem_blocks(blob) if label == "X509 CRL"]
            for der in ders if b"-----BEGIN" in blob else [blob]:
                crl = _load_crl(der)
                if crl is None:
                    raise TrustStoreError(f"CRL #{index} is not a CRL")
                loaded.append(_Crl(crl=crl, issuer_der=crl.issuer.public_bytes()))
        return cls(anchors, loaded, cache_limit=cache_limit)

    @property
    def anchor_count(self) -> int:
        """Number of trusted certificates."""
        return len(self._anchors)

    def chain_for(
        self, signer: CertInfo, carried: Sequence[bytes], now: datetime
    ) -> tuple[CertInfo, ...] | Rejection:
        """The issuers of ``signer`` up to an anchor (signer excluded), or a 905 rejection."""
        cached = self._chains.get(signer.fingerprint)
        if cached is not None and all(
            info.valid_at(now) and (info.fingerprint in self._anchors or info.der in carried)
            for info in cached
        ):
            # Same verdict as a rebuild: every member is still valid and still available (an
            # intermediate seen in an earlier FS does not help one that omits it).
            return cached
        pool: dict[bytes, list[CertInfo]] = {}
        for der in carried:
            info = load_certificate(der)
            if info is not None and info.fingerprint not in self._anchors:
                pool.setdefault(info.subject_der, []).append(info)
        chain = self._build(signer, pool, now, 0, {signer.fingerprint})
        if chain is None:
            return reject(
                Code.CERTIFICATE_UNTRUSTED,
                "the signing certificate does not chain to a trusted CA "
                f"(issuer {signer.cert.issuer.rfc4514_string()})",
            )
        if len(self._chains) >= self._cache_limit:
            self._chains.clear()
        self._chains[signer.fingerprint] = chain
        return chain

    def _build(
        self,
        cert: CertInfo,
        pool: dict[bytes, list[CertInfo]],
        now: datetime,
        depth: int,
        seen: set[bytes],
    ) -> tuple[CertInfo, ...] | None:
        if cert.fingerprint in self._anchors:
            return ()
        if depth >= _MAX_DEPTH:
            return None
        candidates = self._by_subject.get(cert.issuer_der, []) + pool.get(cert.issuer_der, [])
        for parent in candidates:
            anchor = parent.fingerprint in self._anchors
            if parent.fingerprint in seen or not parent.valid_at(now):
                continue
            if not (anchor or parent.is_ca) or not _issued_by(cert, parent):
                continue
            rest = self._build(parent, pool, now, depth + 1, seen | {parent.fingerprint})
            if rest is not None:
                return (parent, *rest)
        return None

    def revocation(
        self, signer: CertInfo, chain: Sequence[CertInfo], now: datetime, *, require_crl: bool
    ) -> Rejection | None:
        """904 when a chain member is revoked, 913 when a current CRL is required and missing."""
        members = (signer, *chain)
        for child, parent in itertools.pairwise(members):
            for item in self._crls_of(parent):
                entry = item.crl.get_revoked_certificate_by_serial_number(child.serial)
                if entry is not None and entry.revocation_date_utc <= now:
                    who = "signing" if child is signer else "issuing CA"
                    return reject(
                        Code.CERTIFICATE_REVOKED,
                        f"the {who} certificate (serial {child.serial:x}) was revoked on "
                        f"{entry.revocation_date_utc:%Y-%m-%d}",
                    )
        if (
            require_crl
            and chain
            and not any(_current(item, now) for item in self._crls_of(chain[0]))
        ):
            return reject(
                Code.REVOCATION_UNKNOWN,
                "no current CRL of the signing certificate's issuer is loaded",
            )
        return None

    def _crls_of(self, issuer: CertInfo) -> list[_Crl]:
        """The CRLs issued and signed by ``issuer`` (signature checked once per pair)."""
        out: list[_Crl] = []
        for item in self._crls.get(issuer.subject_der, []):
            key = (id(item), issuer.fingerprint)
            ok = self._crl_checked.get(key)
            if ok is None:
                try:
                    ok = item.crl.is_signature_valid(issuer.cert.public_key())  # type: ignore[arg-type]
                except (TypeError, ValueError, UnsupportedAlgorithm):  # pragma: no cover
                    ok = False  # a CA key type cryptography cannot check CRLs with
                self._crl_checked[key] = ok
            if ok:
                out.append(item)
        return out


def _current(item: _Crl, now: datetime) -> bool:
    next_update = item.crl.next_update_utc
    return item.crl.last_update_utc <= now and (next_update is None or now <= next_update)
