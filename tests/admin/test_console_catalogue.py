"""The console's catalogues: every message of the templates and screens is in each language's
``.po``, Dutch, French and German translate all of them, and the committed ``.mo`` files are the
compiled ``.po`` files (so a translation edited without recompiling fails here)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from gateway.admin.console_core import LANGUAGES, LOCALE

ROOT = Path(__file__).resolve().parents[2]
METHODS = [
    ("gateway/admin/console*.py", "python"),
    ("gateway/admin/templates/**.html", "jinja2"),
]


def _extracted() -> set[str]:
    found = extract_from_dir(
        str(ROOT),
        METHODS,
        options_map={"gateway/admin/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "gettext": None, "N_": None},
    )
    return {str(message) for _, _, message, _, _ in found if isinstance(message, str)}


def _po(language: str) -> dict[str, str]:
    with (LOCALE / language / "LC_MESSAGES" / "console.po").open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle) if m.id}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_in_the_catalogue(language: str) -> None:
    """The screens' messages are all in the catalogue; nl, fr and de translate each one."""
    catalogue = _po(language)
    assert sorted(_extracted() - set(catalogue)) == []
    if language != "en":
        assert [msgid for msgid, text in catalogue.items() if not text] == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_committed_mo_is_the_compiled_po(language: str) -> None:
    """``console.mo`` holds exactly what compiling ``console.po`` gives."""
    folder = LOCALE / language / "LC_MESSAGES"
    with (folder / "console.po").open("rb") as handle:
        compiled = io.BytesIO()
        write_mo(compiled, read_po(handle))
    compiled.seek(0)
    with (folder / "console.mo").open("rb") as handle:
        committed = read_mo(handle)
    fresh = read_mo(compiled)
    assert {str(m.id): m.string for m in committed if m.id} == {
        str(m.id): m.string for m in fresh if m.id
    }
