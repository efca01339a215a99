"""The checks of one set, in DESIGN.md's order, on the files taken into the set's work directory.

Order (DESIGN.md "Checks"): names and parts consistent (the core's set assembly: 107, 120-124,
131, 132, 142, 134, 912, 121); then every name in its sender's context (108, 154, 109-111, 126,
112, 127, 367, 117-119, 257); size limits (184); the duplicate check (133) is the worker's, in
the database, between this module's two halves; then the signatures (125, 153, 9xx); last the
formal checks of each FI of an XML application (134-139, :func:`check_declarations`), on content
whose sender the signature has already proven.

Signatures are checked on the digest the spool computed while the FI streamed in: when the FS
uses SHA-256 the FI is never read again; another digest (SHA-384/512, SHA-1 where allowed) is
computed by reading the file once, in chunks. Everything here blocks (file reads, RSA/ECDSA):
the worker runs :func:`verify_signatures` on the pipeline's own threads (``Context.blocking``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from gateway.core.codes import Code, Rejection, reject
from gateway.core.declaration import DeclarationCheck, DeclarationRules
from gateway.core.names import FileName, Kind, check_upload_name, parse_upload_name
from gateway.core.sets import CompleteSet, UploadedFile, add_file, on_go
from gateway.core.signature import (
    SignaturePolicy,
    TrustStore,
    VerifiedSignature,
    decode_fs,
    parse_signature,
    verify_signature,
)
from gateway.core.types import SenderNumber

CHUNK_BYTES = 1024 * 1024
"""How much of an FI is read at a time for the formal checks."""

MAX_FS_BYTES = 1024 * 1024
"""An FS is a few KiB of base64; anything above this is refused (901) without being parsed."""

_FAR_FUTURE = date(9999, 12, 31)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberFile:
    """A file of the set as recorded at intake, and where its bytes are now."""

    name: str
    size: int
    sha256: str
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class NameRules:
    """The context the names are checked in."""

    folder: str
    sender: SenderNumber
    applications: Collection[str]
    today: date
    max_age_days: int
    max_parts: int
    parted: Callable[[str], bool]
    max_file_bytes: int


def parse_key_name(name: str, parted: Callable[[str], bool], max_parts: int) -> FileName | None:
    """Parse a stored name only to learn its set key (no date window: that is checked later)."""
    parsed = parse_upload_name(
        name, today=_FAR_FUTURE, max_age_days=10**7, max_parts=max_parts, parted=parted
    )
    return None if isinstance(parsed, Rejection) else parsed


def assemble(
    go_name: str, members: Sequence[MemberFile], rules: NameRules, *, now: datetime
) -> CompleteSet | Rejection:
    """Names and parts consistent, then each name in context, then sizes: the set or a refusal."""
    go = parse_key_name(go_name, rules.parted, rules.max_parts)
    if go is None or go.kind is not Kind.GO:
        return reject(Code.GO_NAME_INVALID, f"{go_name} is not a valid GO name")
    state = None
    for member in sorted(members, key=lambda m: m.name):
        parsed = parse_key_name(member.name, rules.parted, rules.max_parts)
        if parsed is None or parsed.kind not in (Kind.FI, Kind.FS):
            continue
        added = add_file(
            state,
            UploadedFile(name=parsed, size=member.size, sha256=bytes.fromhex(member.sha256)),
            now=now,
        )
        if isinstance(added, Rejection):
            return added
        state = added
    closed = on_go(state, go, now=now)
    if not isinstance(closed, CompleteSet):
        return closed.rejection
    for name in [go_name, *sorted(m.name for m in members)]:
        checked = check_upload_name(
            name,
            folder=rules.folder,
            sender=rules.sender,
            applications=rules.applications,
            today=rules.today,
            max_age_days=rules.max_age_days,
            max_parts=rules.max_parts,
            parted=rules.parted,
        )
        if isinstance(checked, Rejection):
            return checked
    for member in members:
        if member.size > rules.max_file_bytes:
            return reject(
                Code.FILE_TOO_LARGE,
                f"{member.name} has {member.size} bytes; the limit is {rules.max_file_bytes}",
            )
    return closed


def digests_text(members: Sequence[MemberFile]) -> str:
    """The set's content fingerprint for the exact-resend check: ``name=sha256`` of FI/FS files.

    Names are compared without their kind-independent parts: two sets are the same resend when
    every FI and FS has the same name and the same bytes.
    """
    items = sorted(f"{m.name}={m.sha256}" for m in members if m.name[:3] in ("FI.", "FS."))
    return ";".join(items)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedPart:
    """One FI with its verified signature."""

    fi: str
    signature: VerifiedSignature | None


def _digest_of(path: Path, algorithm: str) -> bytes:
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.digest()


def verify_signatures(
    complete: CompleteSet,
    members: Sequence[MemberFile],
    *,
    registered: Sequence[bytes],
    trust: TrustStore,
    policy: SignaturePolicy,
    now: datetime,
) -> list[SignedPart] | Rejection:
    """Verify each FI against its FS (blocking). S sets have no FS: their parts are unsigned."""
    by_name = {m.name: m for m in members}
    parts: list[SignedPart] = []
    for fi, fs in complete.pairs:
        fi_member = by_name[str(fi.name)]
        if fs is None:
            parts.append(SignedPart(fi=fi_member.name, signature=None))
            continue
        fs_member = by_name[str(fs.name)]
        if fs_member.size > MAX_FS_BYTES:
            return reject(
                Code.SIGNATURE_UNDECODABLE,
                f"{fs_member.name} has {fs_member.size} bytes: not a signature file",
            )
        try:
            fs_bytes = fs_member.path.read_bytes()
        except FileNotFoundError:
            return reject(Code.SIGNATURE_MISSING, f"{fs_member.name} disappeared before checks")
        der = decode_fs(fs_bytes)
        if isinstance(der, Rejection):
            return _named(der, fs_member.name)
        parsed = parse_signature(der)
        if isinstance(parsed, Rejection):
            return _named(parsed, fs_member.name)
        if parsed.digest_algorithm == "sha256":
            digest = bytes.fromhex(fi_member.sha256)
        else:
            try:
                digest = _digest_of(fi_member.path, parsed.digest_algorithm)
            except FileNotFoundError:
                return reject(Code.INTERNAL_ERROR, f"{fi_member.name} disappeared before checks")
        verified = verify_signature(
            parsed,
            content_digest=digest,
            registered=registered,
            trust=trust,
            policy=policy,
            now=now,
        )
        if isinstance(verified, Rejection):
            return _named(verified, fs_member.name)
        parts.append(SignedPart(fi=fi_member.name, signature=verified))
    return parts


def _named(rejection: Rejection, name: str) -> Rejection:
    """Prefix the reason with the FS name, so a multi-part set's ACRF says which part failed."""
    return Rejection(code=rejection.code, reason=f"{name}: {rejection.reason}")


def check_declarations(
    complete: CompleteSet,
    members: Sequence[MemberFile],
    rules: DeclarationRules,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> Rejection | None:
    """The formal checks of every FI of the set, in part order (blocking: reads each file once,
    in chunks, and stops at its first fault)."""
    by_name = {m.name: m for m in members}
    for fi, _fs in complete.pairs:
        member = by_name[str(fi.name)]
        check = DeclarationCheck(rules, name=member.name)
        try:
            with member.path.open("rb") as fh:
                while chunk := fh.read(chunk_bytes):
                    if (verdict := check.feed(chunk)) is not None:
                        return verdict
        except FileNotFoundError:
            return reject(Code.INTERNAL_ERROR, f"{member.name} disappeared before checks")
        if (verdict := check.close()) is not None:
            return verdict
    return None
