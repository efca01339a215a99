"""The virtual folders: canonical paths and per-folder permissions for every channel."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.codes import Code, Rejection
from gateway.core.folders import (
    ROOT,
    Folder,
    Operation,
    VPath,
    _check_characters,
    canonicalise,
    check_rename,
    permit,
    split_temp_name,
)

NAME = "FI.DMFA.006400.20260115.00001.R.1.1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", ROOT),
        (".", ROOT),
        ("", ROOT),
        ("/.", ROOT),
        ("IN", VPath(Folder.IN)),
        ("/IN/", VPath(Folder.IN)),
        ("/INTEST-S", VPath(Folder.INTEST_S)),
        (f"/IN/{NAME}", VPath(Folder.IN, NAME)),
        (f"IN/./{NAME}", VPath(Folder.IN, NAME)),
        (
            b"/OUT/FO.ACRF.999999.20260115.00001.R",
            VPath(Folder.OUT, "FO.ACRF.999999.20260115.00001.R"),
        ),
    ],
)
def test_canonical_forms(raw: str | bytes, expected: VPath) -> None:
    """Equivalent spellings of a path give the same canonical path."""
    assert canonicalise(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "../etc/passwd",
        "/IN/../OUT/x",
        "IN/..",
        "/..",
        "//IN",
        "/IN//x",
        "/etc/passwd",
        "/in/x",
        "/IN/sub/x",
        "IN\\x",
        "..\\..\\x",
        "/IN/x\x00y",
        "/IN/x\ny",
        "/IN/x\x7f",
        "/IN/x\u202ey",
        "/IN/x\u200by",
        "/IN/e\u0301",
        "/IN/%2e%2e%2f",
        "/IN/" + "A" * 256,
        "/IN/x.",
        "/IN/x ",
        "/IN/ x",
        "/IN/.hidden",
        "/IN/CON",
        "/IN/nul.txt",
        "/IN/COM1.txt",
        "/IN/a:b",
        b"/IN/\xc0\xae\xc0\xae",
        b"/IN/\xff",
        b"/IN/\xed\xa0\x80",
    ],
)
def test_path_attacks_are_refused(raw: str | bytes) -> None:
    """Traversal, separators, control bytes, non-NFC, long and device names give 922."""
    result = canonicalise(raw)
    assert isinstance(result, Rejection)
    assert result.code is Code.PATH_REFUSED


def test_root_lists_exactly_six_folders() -> None:
    """The root holds IN INTEST INTEST-S OUT OUTTEST OUTTEST-S and nothing else."""
    assert [f.value for f in Folder] == ["IN", "INTEST", "INTEST-S", "OUT", "OUTTEST", "OUTTEST-S"]


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_canonicalise_never_raises(raw: str | bytes) -> None:
    """Any input gives a canonical path or a 922 refusal, and canonical paths are fixed points."""
    result = canonicalise(raw)
    if isinstance(result, Rejection):
        assert result.code is Code.PATH_REFUSED
    else:
        assert canonicalise(str(result)) == result


@pytest.mark.parametrize(
    ("op", "path", "allowed"),
    [
        (Operation.LIST, ROOT, True),
        (Operation.CREATE, ROOT, False),
        (Operation.MKDIR, VPath(Folder.IN), False),
        (Operation.RMDIR, VPath(Folder.OUT), False),
        (Operation.LIST, VPath(Folder.OUT), True),
        (Operation.CREATE, VPath(Folder.IN, NAME), True),
        (Operation.REMOVE, VPath(Folder.INTEST, NAME), True),
        (Operation.READ, VPath(Folder.IN, NAME), False),
        (Operation.LINK, VPath(Folder.IN, NAME), False),
        (Operation.SETSTAT, VPath(Folder.IN, NAME), False),
        (Operation.READ, VPath(Folder.OUT, "x"), True),
        (Operation.REMOVE, VPath(Folder.OUTTEST_S, "x"), True),
        (Operation.CREATE, VPath(Folder.OUT, "x"), False),
        (Operation.RENAME, VPath(Folder.OUT, "x"), False),
    ],
)
def test_permissions(op: Operation, path: VPath, allowed: bool) -> None:
    """IN* allows create/remove, OUT* allows read/remove, folders only list."""
    result = permit(op, path)
    assert (result is None) is allowed
    if result is not None:
        assert result.code is Code.OPERATION_NOT_PERMITTED


def test_rename_only_from_temp_to_final() -> None:
    """NAME.filepart -> NAME is allowed; anything else is 923."""
    assert split_temp_name(NAME + ".filepart") == NAME
    assert split_temp_name(NAME) is None
    ok = check_rename(VPath(Folder.IN, NAME + ".part"), VPath(Folder.IN, NAME))
    assert ok is None
    for source, target in [
        (VPath(Folder.IN, NAME + ".part"), VPath(Folder.INTEST, NAME)),
        (VPath(Folder.IN, NAME), VPath(Folder.IN, NAME + "2")),
        (VPath(Folder.IN, NAME + ".tmp"), VPath(Folder.IN, NAME + "X")),
        (VPath(Folder.OUT, NAME + ".tmp"), VPath(Folder.OUT, NAME)),
    ]:
        problem = check_rename(source, target)
        assert problem is not None
        assert problem.code is Code.OPERATION_NOT_PERMITTED


def _characters_by_category(path: str) -> Rejection | None:
    """The character rule spelt out, every character looked up (what the fast path skips)."""
    for char in path:
        if char in '\\:*?"<>|%':
            return Rejection(Code.PATH_REFUSED, f"character {char!r} is not allowed in a path")
        if unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn"}:
            return Rejection(
                Code.PATH_REFUSED, f"control or format character U+{ord(char):04X} is not allowed"
            )
    if unicodedata.normalize("NFC", path) != path:
        return Rejection(Code.PATH_REFUSED, "path is not in Unicode normal form C")
    return None


@given(
    st.one_of(
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=60),
        st.text(max_size=60),
    )
)
def test_the_ascii_fast_path_decides_as_the_full_rule(path: str) -> None:
    """Printable ASCII is checked in C; the verdict is the per-character rule's, for any text."""
    expected = _characters_by_category(path)
    got = _check_characters(path)
    assert (got is None) == (expected is None), (path, got, expected)
    if got is not None and expected is not None:
        assert got.reason == expected.reason
