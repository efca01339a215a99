"""Receipts: the ACRF acknowledgement XML, its names, its ticket and return-file sequences.

Every processed set gets one ACRF (DESIGN.md "Acknowledgement"; domain/batch-channel.md §2.2)::

    <?xml version="1.0" encoding="UTF-8"?>
    <ACRF xmlns:xsi="..." xsi:noNamespaceSchemaLocation="ACRF_20262.xsd">
      <Form>
        <Identification>ACRF001</Identification>
        <FormCreationDate>YYYY-MM-DD</FormCreationDate>
        <FormCreationHour>hh:mm:ss.SSS</FormCreationHour>
        <AttestationStatus>0</AttestationStatus>
        <TypeForm>FA</TypeForm>
        <FileReference>
          <FileName>the GO name, or the refused file's name</FileName>
          <ReferenceOrigin>2</ReferenceOrigin>            (2 = ticket of the transfer point)
          <ReferenceNbr>13-character ticket</ReferenceNbr>
        </FileReference>
        <ReceptionResult>
          <ResultCode>1 received | 0 rejected</ResultCode>
          <ErrorID>ACRF-<code></ErrorID>                  (rejected only)
          <Description>readable reason</Description>     (rejected only)
        </ReceptionResult>
      </Form>
    </ACRF>

Rules, and why:
- Text that came from a sender (a refused name, a reason quoting it) is made XML-safe: characters
  XML 1.0 cannot carry, line breaks and bidi controls are written as visible escapes, so no input
  can break or disguise the document.
- :func:`parse_acrf` reads only what :func:`build_acrf` writes: UTF-8, no DOCTYPE (so no entity
  tricks), bounded size; anything else raises :class:`AcrfError`.
- Core reads no clock and no randomness: ``created`` and the ticket's ``entropy`` come from the
  caller. Date and hour are written as the wall-clock fields of ``created`` (the pipeline passes
  its configured zone).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from xml.sax.saxutils import escape  # & < > as ElementTree escapes character data

from gateway.core.codes import Code, Rejection
from gateway.core.names import Environment, Kind, format_return_name, printable
from gateway.core.types import Ticket

SCHEMA_LOCATION = "ACRF_20262.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_ACRF_BYTES = 64 * 1024

TICKET_LENGTH = 13
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TICKET = re.compile(r"[0-9A-Z]{13}")
_TICKET_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_TICKET_TIME_CHARS = 6  # 36**6 seconds: about 69 years from 2020
_TICKET_RANDOM_CHARS = TICKET_LENGTH - _TICKET_TIME_CHARS

_NUMERIC_SEQUENCES = 99_999
_LETTER_BLOCK = 36**4
MAX_SEQUENCE = _NUMERIC_SEQUENCES + 26 * _LETTER_BLOCK
"""The last return-file sequence number of a day (``ZZZZZ``)."""


class AcrfError(ValueError):
    """Raised by :func:`parse_acrf` for anything that is not an ACRF this module wrote."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Acrf:
    """The content of an ACRF: what a sender's system reads from it."""

    file_name: str
    ticket: Ticket
    created: datetime
    accepted: bool
    error_id: str | None = None
    code: Code | None = None
    description: str | None = None


def _base36(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_ticket(entropy: bytes, *, created: datetime) -> Ticket:
    """A 13-character ``[0-9A-Z]`` ticket: 6 characters of seconds since 2020 (so tickets sort
    by time, which helps ``gateway trace``) and 7 from ``entropy`` (at least 8 random bytes from
    the caller, e.g. ``os.urandom(8)``; about 36 bits, unique enough within one second)."""
    if len(entropy) < 8:
        raise ValueError("a ticket needs at least 8 bytes of entropy")
    if created.tzinfo is None:
        raise ValueError("created must be timezone-aware")
    seconds = int((created - _TICKET_EPOCH).total_seconds())
    if not 0 <= seconds < 36**_TICKET_TIME_CHARS:
        raise ValueError(f"created {created.isoformat()} is outside the ticket's time range")
    random_part = int.from_bytes(entropy, "big") % 36**_TICKET_RANDOM_CHARS
    return Ticket(_base36(seconds, _TICKET_TIME_CHARS) + _base36(random_part, _TICKET_RANDOM_CHARS))


def format_sequence(n: int) -> str:
    """The ``n``-th return-file sequence number of a day: ``00001``..``99999``, then letters
    first (``A0000``..``ZZZZZ``), as number.htm says Smals does when digits run out (§1.6)."""
    if not 1 <= n <= MAX_SEQUENCE:
        raise ValueError(f"sequence number {n} outside 1..{MAX_SEQUENCE}")
    if n <= _NUMERIC_SEQUENCES:
        return f"{n:05d}"
    rest = n - _NUMERIC_SEQUENCES - 1
    letter, tail = divmod(rest, _LETTER_BLOCK)
    return _ALPHABET[10 + letter] + _base36(tail, 4)


def parse_sequence(text: str) -> int | None:
    """The inverse of :func:`format_sequence`; None for a sequence it would never produce."""
    if len(text) != 5 or not all(c in _ALPHABET for c in text):
        return None
    if text.isdigit():
        return int(text) or None
    if text[0].isdigit():
        return None
    tail = int(text[1:], 36)
    return _NUMERIC_SEQUENCES + 1 + (_ALPHABET.index(text[0]) - 10) * _LETTER_BLOCK + tail


def ack_names(
    *,
    application: str = "ACRF",
    gateway_sender: str,
    date: date,
    sequence: int | str,
    environment: Environment,
) -> tuple[str, str, str]:
    """The ``(FO, FS, GO)`` names of one return file triple, e.g. ``FO.ACRF.999999.…00001.R``.
    Write FO and FS first and the GO last: the GO tells the sender the triple is complete."""
    seq = format_sequence(sequence) if isinstance(sequence, int) else sequence
    fo, fs, go = (
        format_return_name(
            kind=kind,
            application=application,
            sender=gateway_sender,
            date=date,
            sequence=seq,
            environment=environment,
        )
        for kind in (Kind.FO, Kind.FS, Kind.GO)
    )
    return fo, fs, go


def _xml_safe(text: str, limit: int = 1000) -> str:
    """One line of text XML 1.0 can carry, with every odd character visibly escaped."""
    out: list[str] = []
    for ch in text[:limit]:
        o = ord(ch)
        if 0x20 <= o < 0x7F or (0xA0 <= o <= 0xD7FF and ch.isprintable()):
            out.append(ch)
        else:
            out.append(printable(ch))
    return "".join(out) + ("..." if len(text) > limit else "")


def _leaf(depth: int, tag: str, text: str) -> str:
    """One element with text on its own line, indented two spaces per level (``ET.indent``)."""
    pad = "  " * depth
    return f"{pad}<{tag} />\n" if not text else f"{pad}<{tag}>{escape(text)}</{tag}>\n"


_ACRF_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<ACRF xmlns:xsi="{XSI}" xsi:noNamespaceSchemaLocation="{SCHEMA_LOCATION}">\n'
    "  <Form>\n"
    "    <Identification>ACRF001</Identification>\n"
)


def build_acrf(
    *,
    file_name: str,
    ticket: str,
    created: datetime,
    rejection: Rejection | None,
) -> bytes:
    """The ACRF of one set (``rejection`` None: received, ResultCode 1), as UTF-8 XML bytes.

    ``ticket`` is normally a :data:`Ticket` from :func:`new_ticket`; a plain ``str`` read back
    from storage is accepted and its format is checked here (ValueError: a caller bug).

    Written from a template, byte for byte what ElementTree made of the same tree with
    ``ET.indent`` (tests/core/test_receipts.py keeps that builder and compares): a tree built
    and serialised per set cost about ten times as much.
    """
    if not _TICKET.fullmatch(ticket):
        raise ValueError(f"ticket {printable(ticket)} is not 13 characters 0-9A-Z")
    parts = [
        _ACRF_HEAD,
        f"    <FormCreationDate>{created:%Y-%m-%d}</FormCreationDate>\n",
        f"    <FormCreationHour>{created:%H:%M:%S}.{created.microsecond // 1000:03d}"
        "</FormCreationHour>\n",
        "    <AttestationStatus>0</AttestationStatus>\n",
        "    <TypeForm>FA</TypeForm>\n",
        "    <FileReference>\n",
        _leaf(3, "FileName", _xml_safe(file_name, limit=255)),
        "      <ReferenceOrigin>2</ReferenceOrigin>\n",
        f"      <ReferenceNbr>{ticket}</ReferenceNbr>\n",
        "    </FileReference>\n",
        "    <ReceptionResult>\n",
    ]
    if rejection is None:
        parts.append("      <ResultCode>1</ResultCode>\n")
    else:
        parts += [
            "      <ResultCode>0</ResultCode>\n",
            _leaf(3, "ErrorID", rejection.acrf_error_id),
            _leaf(3, "Description", _xml_safe(rejection.reason)),
        ]
    parts.append("    </ReceptionResult>\n  </Form>\n</ACRF>\n")
    return "".join(parts).encode("utf-8")


class _NoDoctype(ET.TreeBuilder):
    """A tree builder that refuses any DOCTYPE, so entity declarations never reach expat."""

    def doctype(self, name: str, pubid: str, system: str) -> None:
        raise AcrfError("an ACRF has no DOCTYPE")


def _optional(parent: ET.Element, path: str) -> str | None:
    node = parent.find(path)
    return None if node is None else node.text or ""


def _text(parent: ET.Element, path: str) -> str:
    value = _optional(parent, path)
    if value is None:
        raise AcrfError(f"missing element {path}")
    return value


def parse_acrf(data: bytes) -> Acrf:
    """Read an ACRF written by :func:`build_acrf`; :class:`AcrfError` on anything else."""
    if len(data) > MAX_ACRF_BYTES:
        raise AcrfError(f"an ACRF is at most {MAX_ACRF_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AcrfError("an ACRF is UTF-8") from exc
    # S314: _NoDoctype aborts the parse at the DOCTYPE, before any entity can be referenced, so
    # no entity expansion or external fetch happens; defusedxml would add a dependency for that.
    parser = ET.XMLParser(target=_NoDoctype())  # noqa: S314
    try:
        parser.feed(text)
        root: Any = parser.close()
    except ET.ParseError as exc:
        raise AcrfError(f"not well-formed XML: {exc}") from exc
    if root.tag != "ACRF" or root.get(f"{{{XSI}}}noNamespaceSchemaLocation") is None:
        raise AcrfError("root element is not an ACRF with its schema location")
    form = root.find("Form")
    if form is None or _text(form, "Identification") != "ACRF001":
        raise AcrfError("missing Form with Identification ACRF001")
    try:
        created = datetime.strptime(
            f"{_text(form, 'FormCreationDate')} {_text(form, 'FormCreationHour')}",
            "%Y-%m-%d %H:%M:%S.%f",
        )
    except ValueError as exc:
        raise AcrfError("FormCreationDate/FormCreationHour malformed") from exc
    if _text(form, "FileReference/ReferenceOrigin") != "2":
        raise AcrfError("ReferenceOrigin must be 2 (ticket of the transfer point)")
    ticket = _text(form, "FileReference/ReferenceNbr")
    if not _TICKET.fullmatch(ticket):
        raise AcrfError("ReferenceNbr is not a 13-character ticket")
    result_code = _text(form, "ReceptionResult/ResultCode")
    if result_code not in ("0", "1"):
        raise AcrfError("ResultCode must be 0 or 1")
    error_id = _optional(form, "ReceptionResult/ErrorID")
    if (error_id is None) != (result_code == "1"):
        raise AcrfError("ErrorID is present exactly when ResultCode is 0")
    code: Code | None = None
    if error_id is not None:
        match = re.fullmatch(r"ACRF-([0-9]{3})", error_id)
        if match is None:
            raise AcrfError("ErrorID must be ACRF-<code>")
        try:
            code = Code(int(match.group(1)))
        except ValueError:
            code = None  # a code of a newer gateway: keep error_id, leave code unknown
    return Acrf(
        file_name=_text(form, "FileReference/FileName"),
        ticket=Ticket(ticket),
        created=created,
        accepted=result_code == "1",
        error_id=error_id,
        code=code,
        description=_optional(form, "ReceptionResult/Description"),
    )
