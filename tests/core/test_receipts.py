"""ACRF XML, tickets, return-file names and sequences."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.codes import Code, Rejection, reject
from gateway.core.names import Environment, FileName, parse_return_name
from gateway.core.receipts import (
    MAX_ACRF_BYTES,
    MAX_SEQUENCE,
    SCHEMA_LOCATION,
    XSI,
    Acrf,
    AcrfError,
    _xml_safe,
    ack_names,
    build_acrf,
    format_sequence,
    new_ticket,
    parse_acrf,
    parse_sequence,
)
from gateway.core.types import Ticket

CREATED = datetime(2026, 1, 15, 9, 3, 4, 56789, tzinfo=UTC)
TICKET = Ticket("0380579A83Q1Z")
GO = "GO.DMFA.006400.20260115.00001.R.1"

POSITIVE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ACRF xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:noNamespaceSchemaLocation="ACRF_20262.xsd">
  <Form>
    <Identification>ACRF001</Identification>
    <FormCreationDate>2026-01-15</FormCreationDate>
    <FormCreationHour>09:03:04.056</FormCreationHour>
    <AttestationStatus>0</AttestationStatus>
    <TypeForm>FA</TypeForm>
    <FileReference>
      <FileName>GO.DMFA.006400.20260115.00001.R.1</FileName>
      <ReferenceOrigin>2</ReferenceOrigin>
      <ReferenceNbr>0380579A83Q1Z</ReferenceNbr>
    </FileReference>
    <ReceptionResult>
      <ResultCode>1</ResultCode>
    </ReceptionResult>
  </Form>
</ACRF>
"""


def test_positive_acrf_is_exact() -> None:
    """A positive ACRF is byte for byte the documented structure."""
    assert build_acrf(file_name=GO, ticket=TICKET, created=CREATED, rejection=None) == POSITIVE


def test_negative_acrf_carries_code_and_description() -> None:
    """A negative ACRF has ResultCode 0, ErrorID ACRF-<code> and the reason, and reads back."""
    rejection = reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours")
    data = build_acrf(file_name=GO, ticket=TICKET, created=CREATED, rejection=rejection)
    assert b"<ResultCode>0</ResultCode>" in data
    assert b"<ErrorID>ACRF-108</ErrorID>" in data
    assert b"<Description>sender number 006401 is not yours</Description>" in data
    assert parse_acrf(data) == Acrf(
        file_name=GO,
        ticket=TICKET,
        created=datetime(2026, 1, 15, 9, 3, 4, 56000),
        accepted=False,
        error_id="ACRF-108",
        code=Code.SENDER_NOT_OWNER,
        description="sender number 006401 is not yours",
    )


def test_positive_reads_back() -> None:
    """parse_acrf reads what build_acrf wrote."""
    acrf = parse_acrf(POSITIVE)
    assert (acrf.accepted, acrf.code, acrf.error_id, acrf.description) == (True, None, None, None)
    assert acrf.file_name == GO


def test_created_wall_clock_is_written_as_given() -> None:
    """Date and hour are the wall-clock fields of `created`, in its own zone."""
    brussels = CREATED.astimezone(timezone(timedelta(hours=1)))
    data = build_acrf(file_name=GO, ticket=TICKET, created=brussels, rejection=None)
    assert b"<FormCreationHour>10:03:04.056</FormCreationHour>" in data


@given(st.text(max_size=300), st.text(max_size=300))
def test_any_input_text_keeps_the_xml_valid(name: str, reason: str) -> None:
    """Control characters, markup and any Unicode in name or reason never break the XML."""
    data = build_acrf(
        file_name=name,
        ticket=TICKET,
        created=CREATED,
        rejection=reject(Code.FI_NAME_INVALID, reason),
    )
    acrf = parse_acrf(data)
    assert acrf.code == Code.FI_NAME_INVALID
    assert acrf.file_name.isprintable()
    assert acrf.description is not None
    assert "\n" not in acrf.description
    ET.fromstring(data)  # noqa: S314 - our own output, checked for well-formedness


def _acrf_by_elementtree(
    file_name: str, ticket: str, created: datetime, rejection: Rejection | None
) -> bytes:
    """The ElementTree builder build_acrf replaced: its bytes are the contract."""
    root = ET.Element("ACRF", {"xmlns:xsi": XSI, "xsi:noNamespaceSchemaLocation": SCHEMA_LOCATION})
    form = ET.SubElement(root, "Form")

    def child(parent: ET.Element, tag: str, text: str) -> None:
        ET.SubElement(parent, tag).text = text

    child(form, "Identification", "ACRF001")
    child(form, "FormCreationDate", f"{created:%Y-%m-%d}")
    child(form, "FormCreationHour", f"{created:%H:%M:%S}.{created.microsecond // 1000:03d}")
    child(form, "AttestationStatus", "0")
    child(form, "TypeForm", "FA")
    reference = ET.SubElement(form, "FileReference")
    child(reference, "FileName", _xml_safe(file_name, limit=255))
    child(reference, "ReferenceOrigin", "2")
    child(reference, "ReferenceNbr", ticket)
    result = ET.SubElement(form, "ReceptionResult")
    child(result, "ResultCode", "1" if rejection is None else "0")
    if rejection is not None:
        child(result, "ErrorID", rejection.acrf_error_id)
        child(result, "Description", _xml_safe(rejection.reason))
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


@given(
    name=st.text(max_size=300),
    reason=st.one_of(st.none(), st.text(max_size=1100)),
    code=st.sampled_from(list(Code)),
    created=st.datetimes(timezones=st.just(UTC)),
)
def test_the_template_writes_what_elementtree_wrote(
    name: str, reason: str | None, code: Code, created: datetime
) -> None:
    """Byte for byte, for any name, reason (empty, markup, control characters, over the limit),
    code and time: the ACRF is the same as the tree-built one."""
    rejection = None if reason is None else reject(code, reason)
    assert build_acrf(
        file_name=name, ticket=TICKET, created=created, rejection=rejection
    ) == _acrf_by_elementtree(name, TICKET, created, rejection)


def test_build_refuses_a_malformed_ticket() -> None:
    """A ticket that is not 13 characters 0-9A-Z is a caller bug."""
    with pytest.raises(ValueError, match="ticket"):
        build_acrf(file_name=GO, ticket="short", created=CREATED, rejection=None)


def replace_in(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe<ACRF/>",
        b"<ACRF>",
        b"x" * (MAX_ACRF_BYTES + 1),
        b'<!DOCTYPE a [<!ENTITY x "y">]><ACRF/>',
        b"<!doctype ACRF><ACRF/>",
        b"<NOTI/>",
        b"<ACRF/>",
        replace_in(POSITIVE, b"ACRF001", b"NOTI001"),
        replace_in(POSITIVE, b"2026-01-15", b"2026-13-15"),
        replace_in(POSITIVE, b"0380579A83Q1Z", b"0380579A83Q1"),
        replace_in(POSITIVE, b"<ResultCode>1", b"<ResultCode>2"),
        replace_in(POSITIVE, b"<ResultCode>1", b"<ResultCode>0"),
        replace_in(
            POSITIVE,
            b"<ResultCode>1</ResultCode>",
            b"<ResultCode>0</ResultCode><ErrorID>108</ErrorID>",
        ),
        replace_in(POSITIVE, b"<ReferenceOrigin>2</ReferenceOrigin>", b""),
        replace_in(POSITIVE, b"<ReferenceOrigin>2", b"<ReferenceOrigin>1"),
        replace_in(POSITIVE, b"<FileName>GO.DMFA.006400.20260115.00001.R.1</FileName>", b""),
    ],
)
def test_parse_refuses_anything_else(data: bytes) -> None:
    """Malformed, oversized, DOCTYPE-bearing or incomplete documents raise AcrfError."""
    with pytest.raises(AcrfError):
        parse_acrf(data)


def test_parse_keeps_an_unknown_code() -> None:
    """An ErrorID of a code this version does not know keeps error_id, with code None."""
    data = replace_in(
        POSITIVE,
        b"<ResultCode>1</ResultCode>",
        b"<ResultCode>0</ResultCode><ErrorID>ACRF-555</ErrorID>",
    )
    acrf = parse_acrf(data)
    assert (acrf.accepted, acrf.error_id, acrf.code) == (False, "ACRF-555", None)
    assert acrf.description is None


def test_ticket_shape_and_order() -> None:
    """Tickets are 13 characters 0-9A-Z, sort by creation second, and differ with entropy."""
    first = new_ticket(bytes(8), created=CREATED)
    later = new_ticket(b"\xff" * 8, created=CREATED + timedelta(seconds=1))
    other = new_ticket(b"\x01" * 8, created=CREATED)
    assert len(first) == 13
    assert first.isalnum()
    assert first.upper() == first
    assert first < later
    assert first != other
    assert first[:6] == other[:6]


@pytest.mark.parametrize(
    ("entropy", "created"),
    [
        (b"1234567", CREATED),
        (b"12345678", CREATED.replace(tzinfo=None)),
        (b"12345678", datetime(2019, 12, 31, tzinfo=UTC)),
        (b"12345678", datetime(2100, 1, 1, tzinfo=UTC)),
    ],
)
def test_ticket_refuses_bad_arguments(entropy: bytes, created: datetime) -> None:
    """Too little entropy, a naive instant or one outside the range are caller bugs."""
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages, one contract
        new_ticket(entropy, created=created)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "00001"),
        (99_999, "99999"),
        (100_000, "A0000"),
        (100_001, "A0001"),
        (100_000 + 36**4, "B0000"),
        (MAX_SEQUENCE, "ZZZZZ"),
    ],
)
def test_sequences(n: int, text: str) -> None:
    """Return sequences run 00001..99999, then letter-led A0000..ZZZZZ."""
    assert format_sequence(n) == text
    assert parse_sequence(text) == n


@pytest.mark.parametrize("n", [0, -1, MAX_SEQUENCE + 1])
def test_sequence_range(n: int) -> None:
    """Numbers outside 1..MAX_SEQUENCE cannot be formatted."""
    with pytest.raises(ValueError, match="outside"):
        format_sequence(n)


@pytest.mark.parametrize("text", ["00000", "0A1Z9", "abcde", "0001", "A000!"])
def test_parse_sequence_refuses_foreign_sequences(text: str) -> None:
    """Sequences format_sequence never writes give None."""
    assert parse_sequence(text) is None


@given(st.integers(1, MAX_SEQUENCE))
def test_sequence_round_trip(n: int) -> None:
    """format_sequence is injective and its output is a valid 5-character sequence."""
    text = format_sequence(n)
    assert parse_sequence(text) == n
    assert len(text) == 5


def test_ack_names() -> None:
    """FO, FS and GO of an ACRF share one stem without parts suffix, and parse back."""
    fo, fs, go = ack_names(
        gateway_sender="999999", date=date(2026, 1, 15), sequence=1, environment=Environment.T
    )
    assert (fo, fs, go) == (
        "FO.ACRF.999999.20260115.00001.T",
        "FS.ACRF.999999.20260115.00001.T",
        "GO.ACRF.999999.20260115.00001.T",
    )
    assert all(isinstance(parse_return_name(n), FileName) for n in (fo, fs, go))
    noti = ack_names(
        application="NOTI",
        gateway_sender="999999",
        date=date(2014, 6, 28),
        sequence="24AZG",
        environment=Environment.R,
    )
    assert noti[0] == "FO.NOTI.999999.20140628.24AZG.R"
