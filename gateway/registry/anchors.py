"""Anchors of the audit chain outside the database (issue 15 item 5; SECURITY.md 18).

The hash chain detects an edited, inserted or deleted record, but someone who can write the
database can also delete the tail and rewind ``audit_head``, or rewrite the whole chain after an
edit: the chain is then consistent again. An **anchor** pins the chain's head as it was: the
daemon signs ``(seq, hash, time)`` with the gateway key every ``[security]
audit_anchor_minutes`` and at stop, logs it (``audit.anchored``, with the signature) and appends
it as one JSON line to an append-only file (``[security] audit_anchor_file``) that operators ship
elsewhere. ``gateway admin audit verify --anchors FILE`` then checks each anchor's signature
with the gateway certificate, and that the chain still holds the anchored record with the same
hash: a chain that ends before an anchor was **truncated**, a record whose hash differs from its
anchor was **rewritten**. Both exit 3.

The signature is over :func:`statement` (plain text, so an operator can also check it with
``openssl dgst -sha256 -verify``): ECDSA or RSA PKCS#1 v1.5 with SHA-256, or Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.registry.audit import AuditProblem
from gateway.registry.base import RegistryBase
from gateway.registry.models import AuditHeadRow, AuditRow


@dataclass(frozen=True, slots=True)
class Anchor:
    """One signed head of the chain."""

    seq: int
    hash: str
    at: str
    signature: bytes

    def line(self) -> str:
        """Its line in the anchors file (JSON, no newline)."""
        return json.dumps(
            {
                "seq": self.seq,
                "hash": self.hash,
                "at": self.at,
                "signature": base64.b64encode(self.signature).decode(),
            },
            separators=(",", ":"),
        )


def statement(seq: int, digest: str, at: str) -> bytes:
    """The bytes an anchor's signature covers."""
    return f"batch-gateway audit anchor\nseq={seq}\nhash={digest}\nat={at}\n".encode()


def sign_anchor(key: PrivateKeyTypes, seq: int, digest: str, at: str) -> Anchor:
    """An anchor of ``(seq, digest)`` signed with the gateway key."""
    data = statement(seq, digest, at)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(data)
    else:
        raise ValueError(f"the gateway key ({type(key).__name__}) cannot sign audit anchors")
    return Anchor(seq, digest, at, signature)


def signature_ok(anchor: Anchor, certificate: x509.Certificate) -> bool:
    """Whether ``anchor`` was signed by ``certificate``'s key."""
    public = certificate.public_key()
    data = statement(anchor.seq, anchor.hash, anchor.at)
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(anchor.signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(anchor.signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(anchor.signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def parse_anchors(text: str) -> tuple[list[Anchor], list[AuditProblem]]:
    """The anchors of an anchors file, and a problem per line that is not one."""
    anchors: list[Anchor] = []
    problems: list[AuditProblem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            anchor = Anchor(
                seq=int(raw["seq"]),
                hash=str(raw["hash"]),
                at=str(raw["at"]),
                signature=base64.b64decode(str(raw["signature"]), validate=True),
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            problems.append(AuditProblem(0, f"anchors file line {number} is not an anchor"))
            continue
        anchors.append(anchor)
    return anchors, problems


def check_anchors(
    anchors: Sequence[Anchor],
    certificate: x509.Certificate,
    *,
    hashes_by_seq: Mapping[int, str],
    last_seq: int,
) -> list[AuditProblem]:
    """What the chain in the database says against each anchor (see the module docstring)."""
    problems: list[AuditProblem] = []
    for anchor in anchors:
        if not signature_ok(anchor, certificate):
            problems.append(AuditProblem(anchor.seq, "anchor signature does not verify"))
        elif anchor.seq > last_seq:
            problems.append(
                AuditProblem(
                    anchor.seq,
                    f"chain truncated: it ends at record {last_seq}, but record {anchor.seq} "
                    f"was anchored at {anchor.at}",
                )
            )
        elif hashes_by_seq.get(anchor.seq) != anchor.hash:
            problems.append(
                AuditProblem(
                    anchor.seq,
                    f"chain rewritten: record {anchor.seq} differs from its anchor of {anchor.at}",
                )
            )
    return problems


def append_anchor(path: Path, anchor: Anchor) -> None:
    """Append ``anchor`` to the anchors file, durably (blocking): one ``write`` in O_APPEND
    mode, then fsync; the file is created 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (anchor.line() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class AnchorMixin(RegistryBase):
    """The chain's head and hashes, for anchoring and for checking anchors."""

    async def audit_head(self) -> tuple[int, str] | None:
        """The chain head ``(seq, hash)``, or None when the head row is missing."""
        async with self._sessions() as session, session.begin():
            head = await session.scalar(select(AuditHeadRow).where(AuditHeadRow.id == 1))
            return None if head is None else (head.seq, head.hash)

    async def audit_anchor_problems(
        self, anchors: Sequence[Anchor], certificate: x509.Certificate
    ) -> list[AuditProblem]:
        """:func:`check_anchors` against the records in the database."""
        async with self._sessions() as session, session.begin():
            return await _check(session, anchors, certificate)


async def _check(
    session: AsyncSession, anchors: Sequence[Anchor], certificate: x509.Certificate
) -> list[AuditProblem]:
    seqs = sorted({a.seq for a in anchors})
    rows = await session.execute(select(AuditRow.seq, AuditRow.hash).where(AuditRow.seq.in_(seqs)))
    found = {int(seq): str(digest) for seq, digest in rows.all()}
    last = await session.scalar(select(AuditRow.seq).order_by(AuditRow.seq.desc()).limit(1))
    return check_anchors(anchors, certificate, hashes_by_seq=found, last_seq=int(last or 0))
