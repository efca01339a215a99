"""Name grammar properties (hypothesis): never raises, round-trips, mutations are refused."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.core import names
from gateway.core.codes import Code, Rejection
from gateway.core.folders import Folder
from gateway.core.names import (
    UNPARTED_APPLICATIONS,
    Environment,
    FileName,
    Kind,
    Verdict,
    check_upload_name,
    default_parted,
    explain_name,
    name_verdict,
    parse_return_name,
    parse_upload_name,
)
from gateway.core.types import Application, SenderNumber

TODAY = date(2026, 1, 20)
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"

# Text biased toward name-like input, so that deep branches are reached, plus arbitrary text.
name_like = st.lists(
    st.one_of(
        st.sampled_from(["FI", "FS", "GO", "TD", "FO", "CO", "DMFA", "WECH", "006400"]),
        st.sampled_from(["20260115", "20260230", "00001", "00000", "R", "T", "S", "1", "4", "0"]),
        st.text(alphabet=UPPER + DIGITS + "x \x00.-", max_size=9),
    ),
    min_size=0,
    max_size=10,
).map(".".join)
any_text = st.one_of(st.text(), name_like)


@st.composite
def upload_names(draw: st.DrawFn) -> FileName:
    """Valid upload names within the date window of TODAY."""
    kind = draw(st.sampled_from([Kind.FI, Kind.FS, Kind.GO, Kind.TD]))
    application = draw(
        st.one_of(
            st.sampled_from(sorted(UNPARTED_APPLICATIONS)), st.text(UPPER, min_size=4, max_size=4)
        )
    )
    parts = part = None
    if application not in UNPARTED_APPLICATIONS:
        parts = draw(st.integers(1, 9))
        if kind in (Kind.FI, Kind.FS):
            part = draw(st.integers(1, parts))
    sequence = draw(st.text(UPPER + DIGITS, min_size=5, max_size=5).filter(lambda s: s != "00000"))
    return FileName(
        kind=kind,
        application=Application(application),
        sender=SenderNumber(draw(st.text(DIGITS, min_size=6, max_size=6))),
        date=TODAY - timedelta(days=draw(st.integers(0, 30))),
        sequence=sequence,
        environment=draw(st.sampled_from(list(Environment))),
        parts=parts,
        part=part,
    )


@given(any_text)
def test_parsers_never_raise(text: str) -> None:
    """Every parser returns a value for any text; explain agrees with parse."""
    result = parse_upload_name(text, today=TODAY)
    assert isinstance(result, FileName | Rejection)
    assert isinstance(parse_return_name(text), FileName | Rejection)
    checked = check_upload_name(
        text, folder="IN", sender=SenderNumber("006400"), applications={"DMFA"}, today=TODAY
    )
    assert isinstance(checked, FileName | Rejection)
    elements = explain_name(text, today=TODAY)
    all_ok = all(e.verdict is Verdict.OK for e in elements)
    assert all_ok == isinstance(result, FileName)
    assert name_verdict(elements) == (None if all_ok else result)


@given(any_text)
def test_reasons_are_printable_ascii(text: str) -> None:
    """A refusal's reason is one line of printable ASCII, whatever the input was."""
    result = parse_upload_name(text, today=TODAY)
    if isinstance(result, Rejection):
        assert result.reason.isascii()
        assert result.reason.isprintable()


@given(upload_names())
def test_valid_names_round_trip(name: FileName) -> None:
    """parse(str(n)) == n for every valid upload name."""
    assert parse_upload_name(str(name), today=TODAY) == name


@given(upload_names())
def test_check_accepts_own_names_in_their_folder(name: FileName) -> None:
    """A valid name is accepted in its own folder, by its own sender, when subscribed."""
    result = check_upload_name(
        str(name),
        folder=Folder.inbound_for(name.environment).value,
        sender=name.sender,
        applications={name.application},
        today=TODAY,
    )
    assert result == name


STRUCTURE = {
    Code.FI_NAME_INVALID,
    Code.FS_NAME_INVALID,
    Code.GO_NAME_INVALID,
    Code.NAME_PREFIX_INVALID,
}


@given(upload_names(), st.data())
def test_mutations_are_refused(name: FileName, data: st.DataObject) -> None:
    """Breaking one element of a valid name gives that element's refusal code."""
    elements = str(name).split(".")
    mutations = [
        (0, "XX", {Code.NAME_PREFIX_INVALID}),
        (1, name.application.lower(), STRUCTURE),
        (2, name.sender[:5], STRUCTURE),
        (3, elements[3][:7], {Code.DATE_NOT_NUMERIC}),
        (3, elements[3][:4] + "13" + elements[3][6:], {Code.DATE_INVALID}),
        (4, name.sequence + "0", {Code.SEQUENCE_LENGTH}),
        (4, name.sequence[:4] + "a", {Code.SEQUENCE_CHARACTERS}),
        (5, "Q", {Code.ENVIRONMENT_INVALID}),
        (5, f"{name.environment}\x00", STRUCTURE),
    ]
    if name.parts is not None:
        mutations.append((6, "0", {Code.PARTS_COUNT_ZERO}))
    if name.part is not None:
        mutations.append((7, str(name.parts + 1 if name.parts else 1), {Code.PART_NUMBER_INVALID}))
    index, value, codes = data.draw(st.sampled_from(mutations))
    elements[index] = value
    result = parse_upload_name(".".join(elements), today=TODAY)
    assert isinstance(result, Rejection)
    assert result.code in codes
    dropped = parse_upload_name(".".join(str(name).split(".")[:-1]), today=TODAY)
    assert isinstance(dropped, Rejection)


@given(
    st.one_of(any_text, upload_names().map(str)),
    st.sampled_from([f.value for f in Folder]),
    st.sampled_from(["006400", "000001"]),
    st.integers(1, 9),
)
def test_quick_acceptance_agrees_with_the_judge(
    text: str, folder: str, sender: str, max_parts: int
) -> None:
    """The quick check of an upload name accepts exactly what the element-by-element judge
    accepts, in any sender's context."""
    ctx = names._Context(
        returning=False,
        today=TODAY,
        max_age_days=30,
        max_parts=max_parts,
        parted=default_parted,
        sender=sender,
        applications=frozenset({"DMFA", "WECH", "ABCD"}),
        folder=folder,
    )
    judged = all(e.verdict is Verdict.OK for e in names._judge(text, ctx))
    accepted = names._accepted(text, ctx)
    assert (accepted is not None) == judged
    if accepted is not None:
        assert accepted == names._build(text)


@st.composite
def return_names(draw: st.DrawFn) -> str:
    """Well-formed return names (any calendar date, an optional suffix), as the gateway writes."""
    kind = draw(st.sampled_from([Kind.FO, Kind.FS, Kind.GO, Kind.CO]))
    parts = draw(st.one_of(st.none(), st.integers(1, 9)))
    part = None if parts is None else draw(st.one_of(st.none(), st.integers(1, parts)))
    return str(
        FileName(
            kind=kind,
            application=Application(draw(st.text(UPPER, min_size=4, max_size=4))),
            sender=SenderNumber(draw(st.text(DIGITS, min_size=6, max_size=6))),
            date=draw(st.dates(date(1990, 1, 1), date(2099, 12, 31))),
            sequence=draw(st.text(UPPER + DIGITS, min_size=5, max_size=5)),
            environment=draw(st.sampled_from(list(Environment))),
            parts=parts,
            part=part,
        )
    )


@given(st.one_of(any_text, return_names()), st.integers(1, 9))
def test_quick_acceptance_of_return_names_agrees_with_the_judge(text: str, max_parts: int) -> None:
    """The quick check of a return name accepts exactly what the judge accepts (any sender, any
    calendar date, FO/FS/GO/CO, an optional suffix), and the parse gives the same value."""
    ctx = names._Context(
        returning=True, today=None, max_age_days=0, max_parts=max_parts, parted=default_parted
    )
    judged = all(e.verdict is Verdict.OK for e in names._judge(text, ctx))
    accepted = names._accepted(text, ctx)
    assert (accepted is not None) == judged
    if accepted is not None:
        assert accepted == names._build(text)
    if judged and max_parts == 9:
        assert str(parse_return_name(text)) == text
