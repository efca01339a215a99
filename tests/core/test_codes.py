"""The code catalogue: complete, stable, and documented in docs/codes.md."""

from __future__ import annotations

from pathlib import Path

from gateway.cli.offline import codes_markdown
from gateway.core.codes import CATALOGUE, Code, Rejection, info, reject

ROOT = Path(__file__).resolve().parents[2]


def test_every_code_has_one_entry() -> None:
    """Each Code has exactly one catalogue entry, keyed by itself, in code order."""
    assert list(CATALOGUE) == sorted(Code)
    assert all(info(code).code is code for code in Code)


def test_entries_are_printable_and_distinct() -> None:
    """Names are the lower-cased enum names; messages are one printable ASCII line each."""
    for code, entry in CATALOGUE.items():
        assert entry.name == code.name.lower()
        assert entry.message.isascii()
        assert entry.message.isprintable()
        assert entry.check
    assert len({e.message for e in CATALOGUE.values()}) == len(CATALOGUE)


def test_released_numbers_never_change() -> None:
    """A sample of protocol codes keeps its number (codes are API)."""
    assert (Code.GO_NAME_INVALID, Code.SENDER_NOT_OWNER, Code.NAME_PREFIX_INVALID) == (
        107,
        108,
        129,
    )
    assert (Code.S_FILE_OUTSIDE_INTEST_S, Code.SEQUENCE_CHARACTERS, Code.SET_CANCELLED) == (
        257,
        367,
        930,
    )


def test_rejection_text_forms() -> None:
    """A Rejection prints as 'code: reason' and names its ACRF ErrorID; reject() defaults."""
    rejection = reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours")
    assert str(rejection) == "108: sender number 006401 is not yours"
    assert rejection.acrf_error_id == "ACRF-108"
    assert reject(Code.NO_DATA) == Rejection(code=Code.NO_DATA, reason=info(Code.NO_DATA).message)


def test_docs_codes_md_matches_the_catalogue() -> None:
    """docs/codes.md is exactly `gateway codes --markdown` (regenerate it after a change)."""
    page = (ROOT / "docs" / "codes.md").read_text(encoding="utf-8")
    assert page == codes_markdown(), "run: gateway codes --markdown > docs/codes.md"
    for code in Code:
        assert f"| {int(code)} | `{code.name.lower()}` |" in page
