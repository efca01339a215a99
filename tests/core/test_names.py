"""Name grammar: examples from domain/batch-channel.md, every refusal code, check order."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.core.codes import Code, Rejection
from gateway.core.folders import Folder, out_folder_for
from gateway.core.names import (
    Environment,
    FileName,
    Kind,
    SetKey,
    Verdict,
    check_upload_name,
    default_parted,
    environment_hint,
    explain_name,
    format_return_name,
    name_verdict,
    parse_return_name,
    parse_upload_name,
    printable,
)
from gateway.core.types import Application, SenderNumber

TODAY = date(2026, 1, 20)
ME = SenderNumber("006400")
APPS = frozenset({"DMFA", "DIMN", "WECH"})


def parse(name: str) -> FileName | Rejection:
    return parse_upload_name(name, today=TODAY)


def code_of(result: FileName | Rejection) -> Code | None:
    return result.code if isinstance(result, Rejection) else None


@pytest.mark.parametrize(
    "name",
    [
        "FI.DMFA.006400.20260115.00001.R.1.1",
        "FS.DMFA.006400.20260115.00001.R.1.1",
        "GO.DMFA.006400.20260115.00001.R.1",
        "TD.DIMN.006400.20260115.00001.R.1",
        "FI.DMFA.006400.20260115.00001.R.4.4",
        "FI.WECH.123456.20260101.00001.R",
        "GO.WECH.123456.20260101.00001.R",
        "FI.ACRF.006400.20260115.00001.R",
        "FI.DMFA.006400.20260115.0A1Z9.T.1.1",
        "FI.DMFA.006400.20260115.00004.S.1.1",
        "FI.DMFA.006400.20251221.00001.R.9.9",
    ],
)
def test_valid_upload_names_round_trip(name: str) -> None:
    """Documented example names parse, and str() gives them back exactly."""
    result = parse(name)
    assert isinstance(result, FileName)
    assert str(result) == name


def test_parsed_fields() -> None:
    """Each element lands in its field with its type."""
    result = parse("FI.DMFA.006400.20260115.0A1Z9.T.4.2")
    assert result == FileName(
        kind=Kind.FI,
        application=Application("DMFA"),
        sender=SenderNumber("006400"),
        date=date(2026, 1, 15),
        sequence="0A1Z9",
        environment=Environment.T,
        parts=4,
        part=2,
    )
    assert result.set_key == SetKey(
        application=Application("DMFA"),
        sender=ME,
        date=date(2026, 1, 15),
        sequence="0A1Z9",
        environment=Environment.T,
    )


@pytest.mark.parametrize(
    ("name", "code", "fragment"),
    [
        ("", Code.NAME_PREFIX_INVALID, "(empty)"),
        ("XX.DMFA.006400.20260115.00001.R.1.1", Code.NAME_PREFIX_INVALID, "XX"),
        ("fi.DMFA.006400.20260115.00001.R.1.1", Code.NAME_PREFIX_INVALID, "fi"),
        ("FO.DMFA.006400.20260115.00001.R.1.1", Code.NAME_PREFIX_INVALID, "FO"),
        (" FI.DMFA.006400.20260115.00001.R.1.1", Code.NAME_PREFIX_INVALID, "position 1 "),
        ("FI.DMFA.006400.20260115.00001.R.1.1 ", Code.FI_NAME_INVALID, "position 36"),
        ("FI.DMFA.006400.20260115.00001.R.1.1\n", Code.FI_NAME_INVALID, "\\x0a"),
        ("FI.DMFA.006400.20260115.00001.R.1.1\u202e", Code.FI_NAME_INVALID, "\\u202e"),
        ("FI.DMFA.006400.20260115.00001.R.1.1" + ".1" * 20, Code.FI_NAME_INVALID, "75 char"),
        ("FI.DMF.006400.20260115.00001.R.1.1", Code.FI_NAME_INVALID, "application code DMF"),
        ("FS.dmfa.006400.20260115.00001.R.1.1", Code.FS_NAME_INVALID, "dmfa"),
        ("GO.DMFA.06400.20260115.00001.R.1", Code.GO_NAME_INVALID, "sender number 06400"),
        ("TD.DMFA.006400", Code.GO_NAME_INVALID, "date element is missing"),
        ("FI.DMFA.006400.20260115.00001.R", Code.FI_NAME_INVALID, "parts suffix is missing"),
        ("GO.DMFA.006400.20260115.00001.R", Code.GO_NAME_INVALID, "end in .N (parts)"),
        ("FI.DMFA.006400.20260115.00001.R.1", Code.FI_NAME_INVALID, "not .1"),
        ("GO.DMFA.006400.20260115.00001.R.1.1", Code.GO_NAME_INVALID, "not .1.1"),
        ("FI.WECH.006400.20260115.00001.R.1.1", Code.FI_NAME_INVALID, "no parts suffix"),
        ("FI.DMFA.006400.20260115.00001.R.1.1.1", Code.FI_NAME_INVALID, "not .1.1.1"),
        ("FI.DMFA.006400.2026011.00001.R.1.1", Code.DATE_NOT_NUMERIC, "2026011"),
        ("FI.DMFA.006400.2026011X.00001.R.1.1", Code.DATE_NOT_NUMERIC, "2026011X"),
        ("FI.DMFA.006400.20260230.00001.R.1.1", Code.DATE_INVALID, "20260230"),
        ("FI.DMFA.006400.00000101.00001.R.1.1", Code.DATE_INVALID, "00000101"),
        ("FI.DMFA.006400.20260121.00001.R.1.1", Code.DATE_IN_FUTURE, "20260121"),
        ("FI.DMFA.006400.20251220.00001.R.1.1", Code.DATE_TOO_OLD, "31 days old"),
        ("FI.DMFA.006400.20260115.0001.R.1.1", Code.SEQUENCE_LENGTH, "0001"),
        ("FI.DMFA.006400.20260115.000001.R.1.1", Code.SEQUENCE_LENGTH, "000001"),
        ("FI.DMFA.006400.20260115.0a001.R.1.1", Code.SEQUENCE_CHARACTERS, "0a001"),
        ("FI.DMFA.006400.20260115.00-01.R.1.1", Code.SEQUENCE_CHARACTERS, "00-01"),
        ("FI.DMFA.006400.20260115.00000.R.1.1", Code.SEQUENCE_ZERO, "00000"),
        ("FI.DMFA.006400.20260115.00001.X.1.1", Code.ENVIRONMENT_INVALID, "environment X"),
        ("FI.DMFA.006400.20260115.00001.r.1.1", Code.ENVIRONMENT_INVALID, "environment r"),
        ("FI.DMFA.006400.20260115.00001.R.A.1", Code.PARTS_COUNT_NOT_NUMERIC, "parts A"),
        ("GO.DMFA.006400.20260115.00001.R.", Code.PARTS_COUNT_NOT_NUMERIC, "(empty)"),
        ("FI.DMFA.006400.20260115.00001.R.0.1", Code.PARTS_COUNT_ZERO, "is 0"),
        ("FI.DMFA.006400.20260115.00001.R.10.1", Code.PARTS_COUNT_TOO_HIGH, "10"),
        ("FI.DMFA.006400.20260115.00001.R.01.1", Code.PARTS_COUNT_TOO_HIGH, "one digit"),
        ("FI.DMFA.006400.20260115.00001.R.4.5", Code.PART_NUMBER_INVALID, "part number 5"),
        ("FI.DMFA.006400.20260115.00001.R.4.0", Code.PART_NUMBER_INVALID, "part number 0"),
        ("FI.DMFA.006400.20260115.00001.R.4.x", Code.PART_NUMBER_INVALID, "part number x"),
        ("FI.DMFA.006400.20260115.00001.R.4.12", Code.PART_NUMBER_INVALID, "12"),
    ],
)
def test_refusals_carry_code_and_value(name: str, code: Code, fragment: str) -> None:
    """Each malformed element is refused with its protocol code and its value in the reason."""
    result = parse(name)
    assert isinstance(result, Rejection)
    assert (result.code, fragment in result.reason) == (code, True), result


def test_max_parts_is_configurable() -> None:
    """A count above max_parts is 116; below it is fine."""
    name = "FI.DMFA.006400.20260115.00001.R.5.1"
    assert code_of(parse_upload_name(name, today=TODAY, max_parts=4)) == Code.PARTS_COUNT_TOO_HIGH
    assert code_of(parse_upload_name(name, today=TODAY, max_parts=5)) is None


def test_age_window_bounds() -> None:
    """A date exactly max_age_days old is accepted, one day more is 126; today is accepted."""
    assert code_of(parse("FI.DMFA.006400.20251221.00001.R.1.1")) is None
    assert code_of(parse("FI.DMFA.006400.20260120.00001.R.1.1")) is None
    old = parse_upload_name("FI.DMFA.006400.20260110.00001.R.1.1", today=TODAY, max_age_days=9)
    assert code_of(old) == Code.DATE_TOO_OLD


def test_parted_is_injected() -> None:
    """The channel's own parts flag decides which applications carry the suffix."""
    name = "FI.DMFA.006400.20260115.00001.R"
    assert code_of(parse_upload_name(name, today=TODAY, parted=lambda app: False)) is None
    assert default_parted("DMFA")
    assert not default_parted("ZIMA")


def test_check_order_structure_before_date_before_sequence() -> None:
    """With several faults, the first in DESIGN.md check order is reported."""
    assert code_of(parse("FI.DMFA.006400.2026.000.X.0.1")) == Code.PARTS_COUNT_ZERO
    assert code_of(parse("FI.DMFA.006400.2026.000.X.1.1")) == Code.DATE_NOT_NUMERIC
    assert code_of(parse("FI.DMFA.006400.20260115.000.X.1.1")) == Code.SEQUENCE_LENGTH


def check(name: str, *, folder: str = "IN", sender: str = ME) -> FileName | Rejection:
    return check_upload_name(
        name, folder=folder, sender=SenderNumber(sender), applications=APPS, today=TODAY
    )


@pytest.mark.parametrize(
    ("name", "folder", "code"),
    [
        ("FI.DMFA.006400.20260115.00001.R.1.1", "IN", None),
        ("FI.DMFA.006400.20260115.00001.T.1.1", "INTEST", None),
        ("FI.DMFA.006400.20260115.00001.S.1.1", "INTEST-S", None),
        ("FI.DMFA.006401.20260115.00001.R.1.1", "IN", Code.SENDER_NOT_OWNER),
        ("FI.DMWA.006400.20260115.00001.R.1.1", "IN", Code.APPLICATION_NOT_ALLOWED),
        ("FI.DMFA.006400.20260115.00001.R.1.1", "INTEST", Code.R_FILE_OUTSIDE_IN),
        ("FI.DMFA.006400.20260115.00001.T.1.1", "IN", Code.T_FILE_OUTSIDE_INTEST),
        ("FI.DMFA.006400.20260115.00001.S.1.1", "OUT", Code.S_FILE_OUTSIDE_INTEST_S),
        # Order: structure, then sender, then application, then date, sequence, environment.
        ("FI.DMWA.006401.20260115.00001.R.1.1", "IN", Code.SENDER_NOT_OWNER),
        ("FI.DMWA.006400.20990115.00001.R.1.1", "IN", Code.APPLICATION_NOT_ALLOWED),
        ("FI.DMFA.006401.20260115.00001.R.1", "IN", Code.FI_NAME_INVALID),
        ("FI.DMFA.006400.20990115.00001.R.1.1", "INTEST", Code.DATE_IN_FUTURE),
        ("FI.DMFA.006400.20260115.00001.X.1.1", "INTEST", Code.ENVIRONMENT_INVALID),
    ],
)
def test_check_upload_name_in_context(name: str, folder: str, code: Code | None) -> None:
    """Sender (108), subscription (154) and folder (118/119/257) follow the parse, in order."""
    assert code_of(check(name, folder=folder)) == code


def test_sender_refusal_reads_like_the_design() -> None:
    """The reply text starts with the code and names the value (DESIGN.md example)."""
    result = check("FI.DMFA.006401.20260115.00001.R.1.1")
    assert str(result) == "108: sender number 006401 is not yours"


def test_environment_folders() -> None:
    """Each environment has its IN and OUT folder; folders map back to environments."""
    pairs = [(Folder.inbound_for(e).value, Folder.outbound(e).value) for e in Environment]
    assert pairs == [("IN", "OUT"), ("INTEST", "OUTTEST"), ("INTEST-S", "OUTTEST-S")]
    assert [Folder.inbound_for(e).environment for e in Environment] == list(Environment)
    assert [Folder.outbound(e).environment for e in Environment] == list(Environment)
    assert [f.answers for f in Folder] == [Folder.OUT, Folder.OUTTEST, Folder.OUTTEST_S] * 2
    assert [out_folder_for(x) for x in ("T", None, "X")] == [Folder.OUTTEST, Folder.OUT, Folder.OUT]


def test_explain_name_lists_every_element() -> None:
    """explain_name gives each element its value and verdict, refused ones with code and reason."""
    elements = explain_name(
        "FI.DMFA.006401.20260115.0000.R.4.5", today=TODAY, sender="006400", folder="IN"
    )
    table = [(e.element, e.value, e.verdict, e.code) for e in elements]
    assert table == [
        ("kind", "FI", Verdict.OK, None),
        ("application", "DMFA", Verdict.OK, None),
        ("sender", "006401", Verdict.REFUSED, Code.SENDER_NOT_OWNER),
        ("date", "20260115", Verdict.OK, None),
        ("sequence", "0000", Verdict.REFUSED, Code.SEQUENCE_LENGTH),
        ("environment", "R", Verdict.OK, None),
        ("parts", "4", Verdict.OK, None),
        ("part", "5", Verdict.REFUSED, Code.PART_NUMBER_INVALID),
    ]
    verdict = name_verdict(elements)
    assert verdict is not None
    assert verdict.code == Code.PART_NUMBER_INVALID
    assert elements[0].rejection is None


def test_explain_name_with_unknown_kind_and_missing_elements() -> None:
    """A broken name still gets an element list: unknown kind, missing elements."""
    elements = explain_name("ZZ.DMFA", today=TODAY)
    assert [(e.element, e.code) for e in elements] == [
        ("kind", Code.NAME_PREFIX_INVALID),
        ("application", None),
        ("sender", Code.NAME_PREFIX_INVALID),
        ("date", Code.NAME_PREFIX_INVALID),
        ("sequence", Code.NAME_PREFIX_INVALID),
        ("environment", Code.NAME_PREFIX_INVALID),
    ]


def test_explain_name_unknown_kind_with_suffix() -> None:
    """With an unknown kind the suffix is judged on its own values."""
    elements = explain_name("ZZ.DMFA.006400.20260115.00001.R.4.5.6", today=TODAY)
    assert elements[-1].element == "parts"
    assert elements[-1].code == Code.NAME_PREFIX_INVALID
    elements = explain_name("ZZ.DMFA.006400.20260115.00001.R.4.2", today=TODAY)
    assert [(e.element, e.verdict) for e in elements[-2:]] == [
        ("parts", Verdict.OK),
        ("part", Verdict.OK),
    ]


def test_environment_hint() -> None:
    """The environment of a refused name picks the OUT folder of its negative ACRF."""
    assert environment_hint("FI.DMFA.006401.20260115.00001.T.1.1") is Environment.T
    assert environment_hint("FI.DMFA.006401.20260115.00001.Q.1.1") is None
    assert environment_hint("garbage") is None


@pytest.mark.parametrize(
    "name",
    [
        "FO.ACRF.999999.20110701.00001.T",
        "FS.ACRF.999999.20110701.00001.T",
        "GO.ACRF.999999.20110701.00001.T",
        "FO.NOTI.999999.20140628.24AZG.R",
        "CO.NOTI.999999.20140628.00001.R",
        "FO.DMNO.999999.20070425.00010.R.1.1",
        "GO.DMNO.999999.20070425.00010.R.1",
    ],
)
def test_return_names_round_trip(name: str) -> None:
    """Documented return file names parse (no date window) and format back exactly."""
    result = parse_return_name(name)
    assert isinstance(result, FileName)
    assert str(result) == name


@pytest.mark.parametrize(
    "name",
    [
        "FI.ACRF.999999.20110701.00001.T",
        "TD.ACRF.999999.20110701.00001.T",
        "FO.ACRF.999999.20110732.00001.T",
        "FO.ACRF.999999.20110701.00000.T",
        "FO.ACRF.999999.20110701.00001.T.1.1.1",
        "FO.ACRF.99999.20110701.00001.T",
    ],
)
def test_bad_return_names(name: str) -> None:
    """Anything off in a return name is refused with 925."""
    assert code_of(parse_return_name(name)) == Code.RETURN_NAME_INVALID


def test_format_return_name() -> None:
    """format_return_name builds a valid name and refuses to build an invalid one."""
    name = format_return_name(
        kind=Kind.FO,
        application="ACRF",
        sender="999999",
        date=date(2026, 1, 15),
        sequence="00001",
        environment=Environment.R,
    )
    assert name == "FO.ACRF.999999.20260115.00001.R"
    with pytest.raises(ValueError, match="not a valid return file name"):
        format_return_name(
            kind=Kind.TD,
            application="ACRF",
            sender="999999",
            date=date(2026, 1, 15),
            sequence="00001",
            environment=Environment.R,
        )


def test_printable_escapes_everything_odd() -> None:
    """printable() keeps visible ASCII and escapes the rest, and truncates long values."""
    assert printable("A b\\\x00\u202e\U0001f600") == "A\\x20b\\x5c\\x00\\u202e\\U0001f600"
    assert printable("x" * 50) == "x" * 40 + "..."
    assert printable("") == "(empty)"
