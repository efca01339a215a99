"""The file-name grammar: parse, check, explain and format every name a sender or the gateway uses.

The grammar (domain/batch-channel.md §1, "Filename grammar"; §1.10 for the regexes)::

    upload-name   = data-name / control-name
    data-name     = ("FI" / "FS") "." stem [ "." count "." part ]   ; §1.2, §1.8
    control-name  = ("GO" / "TD") "." stem [ "." count ]            ; §1.8: GO/TD carry only N
    return-name   = ("FO" / "FS" / "GO" / "CO") "." stem [ "." count [ "." part ] ]
    stem          = application "." sender "." date "." sequence "." environment
    application   = 4UPPER                         ; §1.3, e.g. DMFA, DIMN, WECH, ACRF
    sender        = 6DIGIT                         ; §1.4, leading zeros kept; 999999 = gateway
    date          = 8DIGIT                         ; §1.5, YYYYMMDD, a calendar date
    sequence      = 5( DIGIT / UPPER )             ; §1.6, not "00000"
    environment   = "R" / "T" / "S"                ; §1.7
    count         = %x31-39                        ; §1.8, 1..max_parts (9)
    part          = %x31-39                        ; §1.8, part <= count
    UPPER         = %x41-5A
    DIGIT         = %x30-39

The parts suffix is present exactly when the application's names carry it (``parted``): absent
for DRS (WECH, AOAT, ZIMA) and for ACRF (§1.9), present for every other application.

Rules, and why:
- Only printable ASCII, at most ``MAX_NAME_LENGTH`` characters: anything else (NUL, CR/LF, bidi
  overrides, spaces) is refused before an element is read (SECURITY.md §5).
- Every refusal is a :class:`Rejection` with the protocol's code and a reason naming the element
  and its value, escaped by :func:`printable` so it is safe in logs, replies and XML.
- Checks run element by element; the reported refusal is the first in the order of DESIGN.md
  "Checks": structure and parts (129, 131, 132, 107, 114-116, 128), sender (108), application
  (154), date (109-111, 126), sequence (112, 367, 127), environment and folder (117-119, 257).
  :func:`explain_name` shows every element's verdict; the parsers report the first refusal, so
  "every element ok" and "the name is accepted" are one and the same computation.
- Nothing here raises on any ``str`` input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import lru_cache

from gateway.core.codes import Code, Rejection
from gateway.core.folders import Folder
from gateway.core.types import (
    RETURN_KINDS,
    UPLOAD_KINDS,
    Application,
    Environment,
    FileName,
    Kind,
    SenderNumber,
    SetKey,
)

__all__ = [
    "MAX_NAME_LENGTH",
    "RETURN_KINDS",
    "UNPARTED_APPLICATIONS",
    "UPLOAD_KINDS",
    "Environment",
    "FileName",
    "Kind",
    "NameElement",
    "SetKey",
    "Verdict",
    "check_upload_name",
    "default_parted",
    "environment_hint",
    "explain_name",
    "format_return_name",
    "name_verdict",
    "parse_return_name",
    "parse_upload_name",
    "printable",
]

MAX_NAME_LENGTH = 64
"""Longest accepted name; the longest valid one has 35 characters."""

UNPARTED_APPLICATIONS = frozenset({"WECH", "AOAT", "ZIMA", "ACRF"})
"""Applications whose names carry no parts suffix (§1.9); config/services.toml says the same."""

_APPLICATION = re.compile(r"[A-Z]{4}")
_SENDER = re.compile(r"[0-9]{6}")
_DATE = re.compile(r"[0-9]{8}")
_SEQUENCE_CHARS = re.compile(r"[0-9A-Z]*")
_SEQUENCE_LENGTH = 5


_FOLDER_CODES = {
    Environment.R: Code.R_FILE_OUTSIDE_IN,
    Environment.T: Code.T_FILE_OUTSIDE_INTEST,
    Environment.S: Code.S_FILE_OUTSIDE_INTEST_S,
}


class Verdict(StrEnum):
    """The outcome of one element's checks."""

    OK = "ok"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class NameElement:
    """One element of a name as :func:`explain_name` judged it. ``value`` is already escaped."""

    element: str
    value: str
    verdict: Verdict
    code: Code | None = None
    reason: str | None = None

    @property
    def rejection(self) -> Rejection | None:
        """The refusal of this element, if any."""
        if self.code is None or self.reason is None:
            return None
        return Rejection(code=self.code, reason=self.reason)


def default_parted(application: str) -> bool:
    """Whether names of ``application`` carry the ``.N[.n]`` suffix (all but DRS and ACRF)."""
    return application not in UNPARTED_APPLICATIONS


def printable(value: str, limit: int = 40) -> str:
    """``value`` made safe for a log line, a protocol reply or XML: printable ASCII only.

    Spaces, backslashes and anything outside ``!``..``~`` are written as ``\\xNN``/``\\uNNNN``
    escapes, so a NUL, a CR/LF or a bidi override can never forge a line or hide a character.
    """
    if not value:
        return "(empty)"
    out: list[str] = []
    for ch in value[:limit]:
        o = ord(ch)
        if 0x20 < o < 0x7F and ch != "\\":
            out.append(ch)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    if len(value) > limit:
        out.append("...")
    return "".join(out)


_RANK = {
    Code.SENDER_NOT_OWNER: 1,
    Code.APPLICATION_NOT_ALLOWED: 2,
    Code.DATE_NOT_NUMERIC: 3,
    Code.DATE_INVALID: 3,
    Code.DATE_IN_FUTURE: 3,
    Code.DATE_TOO_OLD: 3,
    Code.SEQUENCE_LENGTH: 4,
    Code.SEQUENCE_CHARACTERS: 4,
    Code.SEQUENCE_ZERO: 4,
    Code.ENVIRONMENT_INVALID: 5,
    Code.R_FILE_OUTSIDE_IN: 6,
    Code.T_FILE_OUTSIDE_INTEST: 6,
    Code.S_FILE_OUTSIDE_INTEST_S: 6,
}
"""Check order of DESIGN.md "Checks"; structure and parts codes (absent here) rank 0."""

_STRUCTURE_CODES = {
    Kind.FI: Code.FI_NAME_INVALID,
    Kind.FS: Code.FS_NAME_INVALID,
    Kind.GO: Code.GO_NAME_INVALID,
    Kind.TD: Code.GO_NAME_INVALID,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    """What a check needs besides the name; None disables that check."""

    returning: bool
    today: date | None
    max_age_days: int
    max_parts: int
    parted: Callable[[str], bool]
    sender: str | None = None
    applications: Collection[str] | None = None
    folder: str | None = None


def _ok(element: str, value: str) -> NameElement:
    return NameElement(element=element, value=printable(value), verdict=Verdict.OK)


def _no(element: str, value: str, code: Code, reason: str) -> NameElement:
    return NameElement(
        element=element, value=printable(value), verdict=Verdict.REFUSED, code=code, reason=reason
    )


def _check_date(value: str, ctx: _Context) -> tuple[Code, str] | None:
    if not _DATE.fullmatch(value):
        return Code.DATE_NOT_NUMERIC, f"creation date {printable(value)} is not 8 digits YYYYMMDD"
    try:
        day = date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return Code.DATE_INVALID, f"creation date {value} is not a calendar date"
    return _check_window(day, value, ctx)


def _check_window(day: date, value: str, ctx: _Context) -> tuple[Code, str] | None:
    """The creation date ``day`` (written ``value``) against today's window, if one is set."""
    today = ctx.today
    if today is None:
        return None
    if day > today:
        return Code.DATE_IN_FUTURE, f"creation date {value} is after today ({today:%Y%m%d})"
    age = (today - day).days
    if age > ctx.max_age_days:
        return (
            Code.DATE_TOO_OLD,
            f"creation date {value} is {age} days old; at most {ctx.max_age_days} are accepted",
        )
    return None


_KINDS = {kind.value: kind for kind in Kind}
_ENVIRONMENTS = {environment.value: environment for environment in Environment}
_UPLOAD_FOLDERS = {e.value: Folder.inbound_for(e).value for e in Environment}


def _in_folder(environment: str) -> str:
    """The upload folder's name of an environment letter (already checked)."""
    return _UPLOAD_FOLDERS[environment]


def _check_sequence(value: str) -> tuple[Code, str] | None:
    shown = printable(value)
    if len(value) != _SEQUENCE_LENGTH:
        return Code.SEQUENCE_LENGTH, f"sequence number {shown} must be 5 characters"
    if not _SEQUENCE_CHARS.fullmatch(value):
        return Code.SEQUENCE_CHARACTERS, f"sequence number {shown} may hold only 0-9 and A-Z"
    if value == "00000":
        return Code.SEQUENCE_ZERO, "sequence number 00000 is not allowed; start at 00001"
    return None


def _stem(parts: list[str], ctx: _Context, structure: Code) -> list[NameElement]:
    """Elements 2-6: application, sender, date, sequence, environment."""
    out: list[NameElement] = []
    labels = ("application", "sender", "date", "sequence", "environment")
    for index, label in enumerate(labels, start=1):
        if index >= len(parts):
            reason = f"{label} element is missing (KIND.APPL.SENDER.YYYYMMDD.SEQ.ENV)"
            out.append(_no(label, "", structure, reason))
            continue
        value = parts[index]
        shown = printable(value)
        problem: tuple[Code, str] | None = None
        if label == "application":
            if not _APPLICATION.fullmatch(value):
                problem = structure, f"application code {shown} must be 4 letters A-Z"
            elif ctx.applications is not None and value not in ctx.applications:
                problem = (
                    Code.APPLICATION_NOT_ALLOWED,
                    f"sender is not subscribed to application {value}",
                )
        elif label == "sender":
            if not _SENDER.fullmatch(value):
                problem = structure, f"sender number {shown} must be 6 digits"
            elif ctx.sender is not None and value != ctx.sender:
                problem = Code.SENDER_NOT_OWNER, f"sender number {value} is not yours"
        elif label == "date":
            problem = _check_date(value, ctx)
        elif label == "sequence":
            problem = _check_sequence(value)
        elif value not in Environment.__members__:
            problem = Code.ENVIRONMENT_INVALID, f"environment {shown} must be R, T or S"
        elif ctx.folder is not None and ctx.folder != _in_folder(value):
            env = Environment(value)
            problem = (
                _FOLDER_CODES[env],
                f"a {env} file must be put in {_in_folder(value)}, not in {printable(ctx.folder)}",
            )
        out.append(_ok(label, value) if problem is None else _no(label, value, *problem))
    return out


def _suffix_shape(kind: Kind | None, application: str, ctx: _Context) -> tuple[int, ...] | None:
    """Allowed suffix lengths, or None when they cannot be told (unknown kind or application)."""
    if ctx.returning:
        return (0, 1, 2)
    if kind is None or not _APPLICATION.fullmatch(application):
        return None
    if not ctx.parted(application):
        return (0,)
    return (2,) if kind in (Kind.FI, Kind.FS) else (1,)


def _suffix(
    parts: list[str], kind: Kind | None, ctx: _Context, structure: Code
) -> list[NameElement]:
    """Element 7: the number of parts and the part number (§1.8)."""
    suffix = parts[6:]
    application = parts[1] if len(parts) > 1 else ""
    shape = _suffix_shape(kind, application, ctx)
    text = ".".join(suffix)
    if shape is not None and len(suffix) not in shape:
        if shape == (0,):
            reason = f"{application} names carry no parts suffix; remove .{printable(text)}"
        elif not suffix:
            ending = ".N.n (number of parts, part number)" if shape == (2,) else ".N (parts)"
            reason = f"parts suffix is missing: {kind} names of {application} end in {ending}"
        elif shape == (2,):
            reason = f"{kind} names end in .N.n (number of parts, part number), not .{text}"
        elif shape == (1,):
            reason = f"{kind} names end in .N (number of parts) only, not .{printable(text)}"
        else:
            reason = f"too many elements: .{printable(text)} after the environment"
        return [_no("parts", text, structure, reason)]
    if len(suffix) > 2:
        return [_no("parts", text, structure, f"too many elements after the environment: {text}")]
    out: list[NameElement] = []
    count = 0
    if suffix:
        value = suffix[0]
        shown = printable(value)
        if not value.isascii() or not value.isdigit():
            out.append(
                _no(
                    "parts",
                    value,
                    Code.PARTS_COUNT_NOT_NUMERIC,
                    f"number of parts {shown} is not a digit",
                )
            )
        elif int(value) == 0:
            out.append(_no("parts", value, Code.PARTS_COUNT_ZERO, "number of parts is 0"))
        elif len(value) > 1 or int(value) > ctx.max_parts:
            reason = f"number of parts {value} is above the maximum of {ctx.max_parts}"
            if len(value) > 1:
                reason = f"number of parts {value} must be one digit (at most {ctx.max_parts})"
            out.append(_no("parts", value, Code.PARTS_COUNT_TOO_HIGH, reason))
        else:
            count = int(value)
            out.append(_ok("parts", value))
    if len(suffix) == 2:
        value = suffix[1]
        if len(value) == 1 and "1" <= value <= "9" and (count == 0 or int(value) <= count):
            out.append(_ok("part", value))
        else:
            reason = f"part number {printable(value)} must be a digit from 1 to the number of parts"
            out.append(_no("part", value, Code.PART_NUMBER_INVALID, reason))
    return out


def _judge(name: str, ctx: _Context) -> list[NameElement]:
    """Every element of ``name`` with its verdict, in name order."""
    parts = name.split(".")
    allowed = RETURN_KINDS if ctx.returning else UPLOAD_KINDS
    kind = Kind(parts[0]) if parts[0] in {k.value for k in allowed} else None
    if ctx.returning:
        structure = Code.RETURN_NAME_INVALID
    elif kind is None:
        structure = Code.NAME_PREFIX_INVALID
    else:
        structure = _STRUCTURE_CODES[kind]
    out: list[NameElement] = []
    if len(name) > MAX_NAME_LENGTH:
        reason = f"name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are accepted"
        out.append(_no("name", name, structure, reason))
    bad = next((i for i, ch in enumerate(name) if not 0x20 < ord(ch) < 0x7F), None)
    if bad is not None:
        reason = f"character {printable(name[bad])} at position {bad + 1} is not allowed"
        out.append(_no("name", name, structure, reason))
    if kind is None:
        kinds = ", ".join(sorted(k.value for k in allowed))
        reason = f"file kind {printable(parts[0])} must be one of {kinds}"
        out.append(_no("kind", parts[0], structure, reason))
    else:
        out.append(_ok("kind", parts[0]))
    out += _stem(parts, ctx, structure)
    out += _suffix(parts, kind, ctx, structure)
    return out


def _first_refusal(elements: list[NameElement]) -> Rejection | None:
    refused = [
        (_RANK.get(e.code, 0), i, e.rejection)
        for i, e in enumerate(elements)
        if e.code is not None and e.rejection is not None
    ]
    return min(refused, key=lambda r: (r[0], r[1]))[2] if refused else None


def _build(name: str) -> FileName:
    """The value of a name that :func:`_judge` accepted."""
    parts = name.split(".")
    raw_date = parts[3]
    return _file_name(
        parts[0],
        parts[1],
        parts[2],
        date(int(raw_date[:4]), int(raw_date[4:6]), int(raw_date[6:])),
        parts[4],
        parts[5],
        parts[6] if len(parts) > 6 else None,
        parts[7] if len(parts) > 7 else None,
    )


def _file_name(
    kind: str,
    application: str,
    sender: str,
    day: date,
    sequence: str,
    environment: str,
    count: str | None,
    part: str | None,
) -> FileName:
    """The value of an accepted name from its elements (already checked)."""
    return FileName(
        kind=_KINDS[kind],
        application=Application(application),
        sender=SenderNumber(sender),
        date=day,
        sequence=sequence,
        environment=_ENVIRONMENTS[environment],
        parts=None if count is None else int(count),
        part=None if part is None else int(part),
    )


def _decide(name: str, ctx: _Context) -> FileName | Rejection:
    # One name is judged several times on its way (at upload, at intake, in the set's checks,
    # for its ACRF) with the same context: the verdict is a pure function of both, so it is
    # memoised. A context that cannot be hashed (a list of applications) is judged afresh.
    try:
        hash(ctx)
    except TypeError:
        return _decide_fresh(name, ctx)
    return _decide_memo(name, ctx)


@lru_cache(maxsize=8192)
def _decide_memo(name: str, ctx: _Context) -> FileName | Rejection:
    return _decide_fresh(name, ctx)


def _well_formed(kinds: frozenset[Kind]) -> re.Pattern[str]:
    """The shape of a name of one of ``kinds`` every element of which is well formed (§1.8)."""
    return re.compile(
        rf"({'|'.join(sorted(kind.value for kind in kinds))})"
        r"\.([A-Z]{4})\.([0-9]{6})\.([0-9]{8})\.([0-9A-Z]{5})\.([RTS])"
        r"(?:\.([1-9])(?:\.([1-9]))?)?"
    )


# The accepted names the quick check below decides without judging each element (which also
# explains refusals): upload names, and the return names the gateway itself writes.
_WELL_FORMED = _well_formed(UPLOAD_KINDS)
_WELL_FORMED_RETURN = _well_formed(RETURN_KINDS)


def _accepted(name: str, ctx: _Context) -> FileName | None:
    """The value of a name :func:`_judge` would refuse no element of (the common case, in a few
    microseconds, from the one match); None means "judge it" (refused, or a shape this does not
    know).

    Return names take this path too: each ACRF's name is new (a new sequence number), so the
    memo never knows it, and the gateway checks every name it writes.
    """
    match = (_WELL_FORMED_RETURN if ctx.returning else _WELL_FORMED).fullmatch(name)
    if match is None or len(name) > MAX_NAME_LENGTH:
        return None
    kind, application, sender, day, sequence, environment, count, part = match.groups()
    if ctx.applications is not None and application not in ctx.applications:
        return None
    if (ctx.sender is not None and sender != ctx.sender) or sequence == "00000":
        return None
    try:
        when = date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        return None
    if _check_window(when, day, ctx) is not None:
        return None
    if ctx.folder is not None and ctx.folder != _in_folder(environment):
        return None
    shape = _suffix_shape(_KINDS[kind], application, ctx)
    given = 0 if count is None else 1 if part is None else 2
    if shape is None or given not in shape:
        return None
    if count is not None and (int(count) > ctx.max_parts or (part is not None and part > count)):
        return None
    return _file_name(kind, application, sender, when, sequence, environment, count, part)


def _decide_fresh(name: str, ctx: _Context) -> FileName | Rejection:
    accepted = _accepted(name, ctx)
    if accepted is not None:
        return accepted
    rejection = _first_refusal(_judge(name, ctx))
    if rejection is None:
        return _build(name)
    if ctx.returning:
        return Rejection(code=Code.RETURN_NAME_INVALID, reason=rejection.reason)
    return rejection


def parse_upload_name(
    name: str,
    *,
    today: date,
    max_age_days: int = 30,
    max_parts: int = 9,
    parted: Callable[[str], bool] = default_parted,
) -> FileName | Rejection:
    """Parse an FI, FS, GO or TD name a sender uploads; the date must lie in the window
    ``[today - max_age_days, today]``. Refusals carry the first code in DESIGN.md check order."""
    ctx = _Context(
        returning=False, today=today, max_age_days=max_age_days, max_parts=max_parts, parted=parted
    )
    return _decide(name, ctx)


def check_upload_name(
    name: str,
    *,
    folder: str,
    sender: SenderNumber,
    applications: Collection[str],
    today: date,
    max_age_days: int = 30,
    max_parts: int = 9,
    parted: Callable[[str], bool] = default_parted,
) -> FileName | Rejection:
    """:func:`parse_upload_name` plus the sender's context: the name's sender is ``sender``
    (108), the application is one of ``applications`` (154), the environment's upload folder is
    ``folder`` (118, 119, 257). This is the check run when an upload is opened."""
    ctx = _Context(
        returning=False,
        today=today,
        max_age_days=max_age_days,
        max_parts=max_parts,
        parted=parted,
        sender=sender,
        applications=applications,
        folder=folder,
    )
    return _decide(name, ctx)


def explain_name(
    name: str,
    *,
    today: date,
    sender: str | None = None,
    folder: str | None = None,
    applications: Collection[str] | None = None,
    max_age_days: int = 30,
    max_parts: int = 9,
    parted: Callable[[str], bool] = default_parted,
) -> list[NameElement]:
    """Every element of an upload name with its verdict (for ``gateway check-name``).

    The name is accepted exactly when every element is ok; :func:`name_verdict` gives the one
    refusal a sender would receive."""
    ctx = _Context(
        returning=False,
        today=today,
        max_age_days=max_age_days,
        max_parts=max_parts,
        parted=parted,
        sender=sender,
        applications=applications,
        folder=folder,
    )
    return _judge(name, ctx)


def name_verdict(elements: list[NameElement]) -> Rejection | None:
    """The refusal a sender receives for the explained name (first in check order), or None."""
    return _first_refusal(elements)


def environment_hint(name: str) -> Environment | None:
    """The environment a (possibly invalid) name targets, or None: it picks the OUT folder of
    the negative ACRF for a refused name (DESIGN.md: "OUT when it cannot be told")."""
    parts = name.split(".")
    if len(parts) > 5 and parts[5] in Environment.__members__:
        return Environment(parts[5])
    return None


def parse_return_name(name: str) -> FileName | Rejection:
    """Parse an FO, FS, GO or CO name of a return file (§1.2, §1.9): any sender (usually
    999999), a calendar date (no age window), an optional ``.N`` or ``.N.n`` suffix. Every
    refusal has code 925."""
    ctx = _Context(returning=True, today=None, max_age_days=0, max_parts=9, parted=default_parted)
    return _decide(name, ctx)


def format_return_name(
    *,
    kind: Kind,
    application: str,
    sender: str,
    date: date,
    sequence: str,
    environment: Environment,
    parts: int | None = None,
    part: int | None = None,
) -> str:
    """The name of a return file. Invalid values are a bug of the caller (ValueError)."""
    value = FileName(
        kind=kind,
        application=Application(application),
        sender=SenderNumber(sender),
        date=date,
        sequence=sequence,
        environment=environment,
        parts=parts,
        part=part,
    )
    parsed = parse_return_name(str(value))
    if isinstance(parsed, Rejection) or parsed != value:
        raise ValueError(f"not a valid return file name: {printable(str(value))} ({parsed})")
    return str(value)
