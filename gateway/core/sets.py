"""Set assembly: which uploaded files make a complete set, as a pure state machine.

A set (DESIGN.md "A set"; domain/batch-channel.md §1.8, §2.1) is the FI parts 1..N, one FS per FI
part (required in R and T, refused in S), and the GO that closes it; a TD instead of the GO
cancels it; a set whose GO does not come within ``set_timeout`` is dropped. Names without the
parts suffix (DRS, ACRF) make single-file sets: one FI, its FS, and a GO without ``.N``.

The machine, h11-style: the only live state is :class:`PendingSet` (phase ``COLLECTING``); every
event either keeps it collecting or ends it in one terminal value. :data:`TRANSITIONS` is the
table, and the functions below are its only implementation:

    phase        event    next phase                 function
    (none)       FILE     COLLECTING | refused       add_file(None, f)
    COLLECTING   FILE     COLLECTING | refused       add_file(state, f)
    (any)        GO       COMPLETE | REJECTED        on_go(state, go)
    (any)        TD       CANCELLED                  on_td(state, td)
    COLLECTING   TICK     COLLECTING | EXPIRED       expire(state, now=, timeout=)

Rules, and why:
- ``add_file`` refuses only what can never become valid: a second file with the same name (123
  for FI, 124 for FS; the channel already refuses the overwrite with 924, so reaching the core
  means a consistency error). A refused file leaves the state unchanged.
- Everything about the set as a whole is judged once, when the GO arrives, so that one set gets
  one acknowledgement (§2.2), in this order: 142 no FI; 123 FI count differs from the GO's; 121
  FS in S; 124 FS count differs from the GO's; 122 an FS whose part has no FI; 123 an FI part
  missing; 912 no FS at all (R, T) or 120 some FS missing; 134 an empty FI.
- A TD cancels whatever is pending (even nothing); its own count is not checked, since a sender
  cancelling a broken set must not be refused for the same fault. The record carries 930.
- Timeouts compare the last activity (the last accepted file) with an injected ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar

from gateway.core.codes import Code, Rejection
from gateway.core.names import Environment, FileName, Kind, SetKey


class Phase(StrEnum):
    """Where a set stands."""

    COLLECTING = "collecting"
    COMPLETE = "complete"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Event(StrEnum):
    """What can happen to a set."""

    FILE = "file"
    GO = "go"
    TD = "td"
    TICK = "tick"


TRANSITIONS: dict[tuple[Phase | None, Event], frozenset[Phase | None]] = {
    (None, Event.FILE): frozenset({Phase.COLLECTING, None}),
    (Phase.COLLECTING, Event.FILE): frozenset({Phase.COLLECTING}),
    (None, Event.GO): frozenset({Phase.REJECTED}),
    (Phase.COLLECTING, Event.GO): frozenset({Phase.COMPLETE, Phase.REJECTED}),
    (None, Event.TD): frozenset({Phase.CANCELLED}),
    (Phase.COLLECTING, Event.TD): frozenset({Phase.CANCELLED}),
    (Phase.COLLECTING, Event.TICK): frozenset({Phase.COLLECTING, Phase.EXPIRED}),
}
"""(phase before, event) -> the phases it may lead to; None is "no pending set". A refused FILE
leaves the phase as it was. Terminal phases accept no event: a second GO for a finished set is
the duplicate check's business (133), not assembly's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadedFile:
    """One stored FI or FS: its name, its size in bytes and the SHA-256 computed while it
    streamed in."""

    name: FileName
    size: int
    sha256: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingSet:
    """The FI and FS files of one set key received so far, in arrival order."""

    key: SetKey
    files: tuple[UploadedFile, ...]
    last_activity: datetime

    phase: ClassVar[Phase] = Phase.COLLECTING

    @property
    def total_bytes(self) -> int:
        """Bytes held by the set so far (for quotas)."""
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteSet:
    """A set ready for signature checks and routing: the GO and (FI, FS or None) per part."""

    go: FileName
    pairs: tuple[tuple[UploadedFile, UploadedFile | None], ...]

    phase: ClassVar[Phase] = Phase.COMPLETE

    @property
    def key(self) -> SetKey:
        """The set's key."""
        return self.go.set_key

    @property
    def total_bytes(self) -> int:
        """Bytes of all FI and FS files of the set."""
        return sum(fi.size + (fs.size if fs else 0) for fi, fs in self.pairs)


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedSet:
    """A set refused when its GO arrived: one negative ACRF naming the GO; files to drop."""

    go: FileName
    files: tuple[UploadedFile, ...]
    rejection: Rejection

    phase: ClassVar[Phase] = Phase.REJECTED


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancelled:
    """A set cancelled by a TD: its files are removed, nothing is routed (code 930 recorded)."""

    td: FileName
    files: tuple[UploadedFile, ...]
    rejection: Rejection

    phase: ClassVar[Phase] = Phase.CANCELLED


@dataclass(frozen=True, slots=True, kw_only=True)
class Expired:
    """A set whose GO did not come in time: dropped with a negative acknowledgement (130)."""

    key: SetKey
    files: tuple[UploadedFile, ...]
    rejection: Rejection

    phase: ClassVar[Phase] = Phase.EXPIRED


def _require(state: PendingSet | None, name: FileName, kinds: tuple[Kind, ...]) -> None:
    """Caller bugs, not peer input: the name was parsed and routed to the wrong function."""
    if name.kind not in kinds:
        raise ValueError(f"{name} is not one of {', '.join(kinds)}")
    if state is not None and state.key != name.set_key:
        raise ValueError(f"{name} does not belong to the pending set {state.key}")


def add_file(
    state: PendingSet | None, file: UploadedFile, *, now: datetime
) -> PendingSet | Rejection:
    """Add a received FI or FS to its set (None: the first file of the set)."""
    _require(state, file.name, (Kind.FI, Kind.FS))
    if state is None:
        return PendingSet(key=file.name.set_key, files=(file,), last_activity=now)
    if any(f.name == file.name for f in state.files):
        code = Code.FI_NUMBERING_WRONG if file.name.kind is Kind.FI else Code.FS_NUMBERING_WRONG
        return Rejection(code=code, reason=f"{file.name} was already received for this set")
    return replace(state, files=(*state.files, file), last_activity=now)


def _label(name: FileName) -> str:
    return "without parts" if name.parts is None else f"with {name.parts} parts"


def _judge(go: FileName, files: tuple[UploadedFile, ...]) -> Rejection | None:
    """The first set-level fault, in the order of the module docstring, or None."""
    fis = sorted((f for f in files if f.name.kind is Kind.FI), key=lambda f: f.name.part or 0)
    fss = sorted((f for f in files if f.name.kind is Kind.FS), key=lambda f: f.name.part or 0)
    expected = list(range(1, go.parts + 1)) if go.parts is not None else [None]
    if not fis:
        return Rejection(code=Code.NO_DECLARATION_FILE, reason=f"no FI file received for {go}")
    for fi in fis:
        if fi.name.parts != go.parts:
            reason = f"{fi.name} is {_label(fi.name)} but {go} is {_label(go)}"
            return Rejection(code=Code.FI_NUMBERING_WRONG, reason=reason)
    if fss and go.environment is Environment.S:
        reason = f"{fss[0].name}: no signature file may be sent in environment S"
        return Rejection(code=Code.SIGNATURE_NOT_ALLOWED, reason=reason)
    for fs in fss:
        if fs.name.parts != go.parts:
            reason = f"{fs.name} is {_label(fs.name)} but {go} is {_label(go)}"
            return Rejection(code=Code.FS_NUMBERING_WRONG, reason=reason)
    fi_parts = [fi.name.part for fi in fis]
    for fs in fss:
        if fs.name.part not in fi_parts:
            reason = f"{fs.name} has no matching FI file"
            return Rejection(code=Code.FI_FS_NUMBER_MISMATCH, reason=reason)
    for n in expected:
        if n not in fi_parts:
            reason = f"FI part {n} of {go.parts} is missing for {go}"
            return Rejection(code=Code.FI_NUMBERING_WRONG, reason=reason)
    if go.environment is not Environment.S:
        fs_parts = [fs.name.part for fs in fss]
        missing = [fi.name for fi in fis if fi.name.part not in fs_parts]
        if missing and not fss:
            reason = (
                f"no FS file received; each FI needs its signature in environment {go.environment}"
            )
            return Rejection(code=Code.SIGNATURE_MISSING, reason=reason)
        if missing:
            reason = f"{len(fss)} FS for {len(fis)} FI files; the FS of {missing[0]} is missing"
            return Rejection(code=Code.FI_FS_COUNT_MISMATCH, reason=reason)
    for fi in fis:
        if fi.size == 0:
            return Rejection(code=Code.NO_DATA, reason=f"{fi.name} is empty")
    return None


def on_go(state: PendingSet | None, go: FileName, *, now: datetime) -> CompleteSet | RejectedSet:
    """Close the set with its GO: a complete set, or the first set-level fault.

    ``now`` is accepted for symmetry with the other events and future rules (none use it yet).
    """
    del now
    _require(state, go, (Kind.GO,))
    files = state.files if state is not None else ()
    rejection = _judge(go, files)
    if rejection is not None:
        return RejectedSet(go=go, files=files, rejection=rejection)
    fss = {f.name.part: f for f in files if f.name.kind is Kind.FS}
    fis = sorted((f for f in files if f.name.kind is Kind.FI), key=lambda f: f.name.part or 0)
    return CompleteSet(go=go, pairs=tuple((fi, fss.get(fi.name.part)) for fi in fis))


def on_td(state: PendingSet | None, td: FileName) -> Cancelled:
    """Cancel the pending set (if any) on a TD."""
    _require(state, td, (Kind.TD,))
    files = state.files if state is not None else ()
    reason = f"set cancelled by {td}; {len(files)} file(s) removed, nothing routed"
    return Cancelled(
        td=td, files=files, rejection=Rejection(code=Code.SET_CANCELLED, reason=reason)
    )


def expiry_reason(timeout: timedelta) -> str:
    """The 130 reason a sender reads, with the timeout in the largest whole unit that fits."""
    seconds = int(timeout.total_seconds())
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return (
                f"no GO file received within {seconds // size} {unit} of the last file of this set"
            )
    return f"no GO file received within {timeout.total_seconds():g} s of the last file of this set"


def expire(state: PendingSet, *, now: datetime, timeout: timedelta) -> Expired | None:
    """Drop the set if its last file came ``timeout`` or more before ``now``."""
    idle = now - state.last_activity
    if idle < timeout:
        return None
    reason = expiry_reason(timeout)
    return Expired(
        key=state.key,
        files=state.files,
        rejection=Rejection(code=Code.GO_NOT_RECEIVED, reason=reason),
    )
