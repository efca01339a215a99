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
- Chain building is bounded, because the certificates of a SignedData are the peer's: at most
  ``MAX_CARRIED`` (16) of them are read, candidate issuers are grouped by (subject, public key)
  so that k copies of one CA cost one signature check, not k! orderings, a (subject, key) pair
  is entered at most once per search (breadth first, so the shortest chain wins), and the
  search spends at most ``MAX_CHECKS`` (64) check units, one per issuer-signature check of an
  ordinary key and more for the slow ones (``_check_cost``). Past either cap the answer is 905
  with a reason that names the cap. Issuer keys whose check cost is unbounded (an RSA public
  exponent above 2^32, a curve other than P-256/384/521, an unknown key type) are not used.
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
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.core.codes import Code, Rejection, reject

__all__ = [
    "MAX_CARRIED",
    "MAX_CHECKS",
    "CertInfo",
    "SignaturePolicy",
    "TrustStatistics",
    "TrustStore",
    "TrustStoreError",
    "load_certificate",
    "pem_blocks",
    "sort_blobs",
]

_MAX_DEPTH = 8
MAX_CARRIED = 16
"""Certificates read from one SignedData (the rest are ignored, and a 905 says so)."""
MAX_CHECKS = 64
"""Check units one chain search may spend: 64 issuer-signature checks of an ordinary key."""
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
    key_id: bytes
    """SHA-256 of the SubjectPublicKeyInfo (of the DER when the key cannot be read)."""
    check_cost: int | None
    """Check units one signature check with this key costs; None: never used as an issuer."""

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
        try:
            key = cert.public_key()
        except (ValueError, UnsupportedAlgorithm):
            key = None
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
            key_id=hashlib.sha256(
                der
                if key is None
                else key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            ).digest(),
            check_cost=None if key is None else _check_cost(key),
        )
    except ValueError:
        return None


def _check_cost(key: CertificatePublicKeyTypes) -> int | None:
    """Check units of one signature check with ``key`` (None: too costly to bound, not used).

    One unit is about one RSA-2048 or P-256 check (35-80 us); the other weights follow the
    measured ratios (bench/chains.py prints them), so 64 units stay far below 20 ms whatever the
    keys. RSA grows with the square of the modulus and linearly with the exponent's length.
    """
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        if numbers.e.bit_length() > 32:  # a huge exponent makes one check cost a private op
            return None
        return max(1, (key.key_size * key.key_size) // (2048 * 2048)) * (
            1 if numbers.e.bit_length() <= 17 else 2
        )
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVE_COST.get(key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 2
    if isinstance(key, ed448.Ed448PublicKey):
        return 4
    if isinstance(key, dsa.DSAPublicKey) and key.key_size <= 3072:
        return 8
    return None


_CURVE_COST = {"secp256r1": 1, "secp384r1": 8, "secp521r1": 8}


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


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustStatistics:
    """What chain building has done since the store was built (``TrustStore.statistics()``).

    Counted without a lock: exact in one thread, close enough for metrics under several.
    """

    searches: int
    """Chain searches (calls that did not end on a cached chain)."""
    cache_hits: int
    signature_checks: int
    """Issuer-signature checks made by all searches."""
    check_units: int
    """Check units those checks cost (see ``MAX_CHECKS``)."""
    budget_exhausted: int
    """Searches stopped at ``MAX_CHECKS`` (each answered 905)."""
    carried_ignored: int
    """SignedData certificates left unread beyond ``MAX_CARRIED``."""


class _Search:
    """One bounded chain search: the signer, the peer's candidates, and the work spent."""

    __slots__ = ("checks", "exhausted", "groups", "now", "pool", "store", "units")

    def __init__(self, store: TrustStore, pool: dict[bytes, list[CertInfo]], now: datetime) -> None:
        self.store = store
        self.pool = pool
        self.now = now
        self.checks = 0
        self.units = 0
        self.exhausted = False
        # Memoised issuer look-up: subject DER -> candidate groups, one per (subject, key).
        self.groups: dict[bytes, list[tuple[int, list[CertInfo]]]] = {}

    def candidates(self, subject_der: bytes) -> list[tuple[int, list[CertInfo]]]:
        """The usable issuers named ``subject_der`` grouped by key (anchors first), each group
        with the check cost of its key."""
        found = self.groups.get(subject_der)
        if found is not None:
            return found
        by_key: dict[bytes, tuple[int, list[CertInfo]]] = {}
        for info in [*self.store.anchors_named(subject_der), *self.pool.get(subject_der, [])]:
            usable = info.valid_at(self.now) and (info.is_ca or self.store.is_anchor(info))
            if usable and info.check_cost is not None:
                by_key.setdefault(info.key_id, (info.check_cost, []))[1].append(info)
        groups = list(by_key.values())
        self.groups[subject_der] = groups
        return groups

    def issued_by(self, child: CertInfo, cost: int, group: list[CertInfo]) -> bool | None:
        """Whether the key of ``group`` signed ``child``; None when the budget is spent."""
        if self.units + cost > MAX_CHECKS:
            self.exhausted = True
            return None
        self.units += cost
        self.checks += 1
        # Members of a group share subject and key, so one check answers for all of them.
        return _issued_by(child, group[0])

    def run(self, signer: CertInfo) -> tuple[CertInfo, ...] | None:
        """Breadth first from ``signer``: the shortest chain to an anchor, or None."""
        if self.store.is_anchor(signer):
            return ()
        entered = {(signer.subject_der, signer.key_id)}
        frontier: list[tuple[CertInfo, tuple[CertInfo, ...]]] = [(signer, ())]
        for _ in range(_MAX_DEPTH):
            following: list[tuple[CertInfo, tuple[CertInfo, ...]]] = []
            for child, path in frontier:
                for cost, group in self.candidates(child.issuer_der):
                    node = (group[0].subject_der, group[0].key_id)
                    if node in entered:
                        continue
                    verdict = self.issued_by(child, cost, group)
                    if verdict is None:
                        return None
                    if not verdict:
                        continue
                    entered.add(node)
                    anchor = next((m for m in group if self.store.is_anchor(m)), None)
                    if anchor is not None:
                        return (*path, anchor)
                    # Same key, possibly other issuers (cross-certificates): each one is a way up.
                    following += [(member, (*path, member)) for member in group]
            if not following:
                return None
            frontier = following
        return None


class TrustStore:
    """Trusted CA certificates and CRLs, with a per-signer cache of verified chains."""

    __slots__ = (
        "_anchors",
        "_by_subject",
        "_cache_limit",
        "_chains",
        "_counts",
        "_crl_checked",
        "_crls",
    )

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
        self._counts = dict.fromkeys(TrustStatistics.__dataclass_fields__, 0)

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

    def is_anchor(self, info: CertInfo) -> bool:
        """True when ``info`` is one of the trusted certificates."""
        return info.fingerprint in self._anchors

    def anchors_named(self, subject_der: bytes) -> Sequence[CertInfo]:
        """The trusted certificates whose subject is ``subject_der`` (DER)."""
        return self._by_subject.get(subject_der, ())

    def statistics(self) -> TrustStatistics:
        """The chain-building counters so far."""
        return TrustStatistics(**self._counts)

    def chain_for(
        self, signer: CertInfo, carried: Sequence[bytes], now: datetime
    ) -> tuple[CertInfo, ...] | Rejection:
        """The issuers of ``signer`` up to an anchor (signer excluded), or a 905 rejection.

        Only the first ``MAX_CARRIED`` of ``carried`` are read, and the search stops after
        ``MAX_CHECKS`` check units; either cap, when it is why no chain was found, is named in
        the rejection's reason.
        """
        counts = self._counts
        taken = carried[:MAX_CARRIED]
        cached = self._chains.get(signer.fingerprint)
        if cached is not None and all(
            info.valid_at(now) and (info.fingerprint in self._anchors or info.der in taken)
            for info in cached
        ):
            # Same verdict as a rebuild: every member is still valid and still available (an
            # intermediate seen in an earlier FS does not help one that omits it).
            counts["cache_hits"] += 1
            return cached
        ignored = len(carried) - len(taken)
        counts["carried_ignored"] += ignored
        pool: dict[bytes, list[CertInfo]] = {}
        seen: set[bytes] = set()
        for der in taken:
            info = load_certificate(der)
            if info is None or info.fingerprint in self._anchors or info.fingerprint in seen:
                continue
            seen.add(info.fingerprint)
            pool.setdefault(info.subject_der, []).append(info)
        search = _Search(self, pool, now)
        chain = search.run(signer)
        counts["searches"] += 1
        counts["signature_checks"] += search.checks
        counts["check_units"] += search.units
        if chain is None:
            issuer = signer.cert.issuer.rfc4514_string()
            if search.exhausted:
                counts["budget_exhausted"] += 1
                return reject(
                    Code.CERTIFICATE_UNTRUSTED,
                    "the signing certificate does not chain to a trusted CA within the chain "
                    f"building limit of {MAX_CHECKS} signature checks (issuer {issuer}; the "
                    f"signature carries {len(carried)} certificates)",
                )
            beyond = (
                f"; the signature carries {len(carried)} certificates and only the first "
                f"{MAX_CARRIED} are read"
                if ignored
                else ""
            )
            return reject(
                Code.CERTIFICATE_UNTRUSTED,
                f"the signing certificate does not chain to a trusted CA (issuer {issuer}{beyond})",
            )
        if len(self._chains) >= self._cache_limit:
            self._chains.clear()
        self._chains[signer.fingerprint] = chain
        return chain

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
