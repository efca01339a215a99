"""Formal checks of the declaration before routing: each fault one negative ACRF with its code,
nothing routed; a valid declaration still routed; an application declared binary skips them."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.codes import Code
from gateway.registry.catalogue import (
    CatalogueError,
    ServiceCatalogue,
    parse_service_catalogue,
)
from tests.core.test_declaration import BILLION_LAUGHS, NS, XSD
from tests.pipeline.conftest import ROOT, Harness, harness_on, set_names
from tests.pki import StandardPki

VALID = (
    f'<?xml version="1.0" encoding="UTF-8"?>\r\n<DmfAOriginal xmlns="{NS}">'
    "<Row><N>1</N></Row></DmfAOriginal>\r\n"
).encode()


def strict_catalogue(folder: Path) -> ServiceCatalogue:
    """The shipped catalogue with DMFA held to a root, a namespace and an XSD, WECH binary."""
    (folder / "dmfa.xsd").write_bytes(XSD)
    data = tomllib.loads((ROOT / "config" / "services.toml").read_text())
    data["services"]["DMFA"].update(root="DmfAOriginal", namespace=NS, xsd="dmfa.xsd")
    data["services"]["WECH"]["format"] = "binary"
    return parse_service_catalogue(data, base=folder)


@pytest.fixture
async def strict(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str
) -> AsyncIterator[Harness]:
    """A pipeline whose DMFA declarations must match the test XSD; WECH is binary."""
    h = await harness_on(
        tmp_path, sqlite_url, cast, ssh_public_key, catalogue=strict_catalogue(tmp_path)
    )
    yield h
    await h.engine.dispose()


async def refused_with(h: Harness, contents: list[bytes], **kw: object) -> tuple[Code, str]:
    await h.send_set(contents=contents, parts=len(contents), **kw)  # type: ignore[arg-type]
    assert await h.pipeline.run_once() == 1
    [(_, acrf)] = h.acrfs()
    assert not acrf.accepted
    assert h.routed() == {}
    assert acrf.code is not None
    return acrf.code, acrf.description or ""


async def test_billion_laughs_gets_a_negative_acrf_with_135(harness: Harness) -> None:
    """The shipped catalogue (DMFA is XML): the DTD is refused before any entity, ACRF-135."""
    code, reason = await refused_with(harness, [BILLION_LAUGHS])
    assert code == Code.XML_NOT_WELL_FORMED
    assert "document type declaration (<!DOCTYPE lolz>) is refused" in reason
    assert reason.startswith("FI.DMFA.")


async def test_an_existing_style_declaration_still_passes(harness: Harness) -> None:
    """What the demo and the other tests send: a small XML document, routed as before."""
    await harness.send_set(contents=[b'<?xml version="1.0"?><DmfAOriginal/>\r\n'])
    await harness.pipeline.run_once()
    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted
    assert len(harness.routed()) == 1


@pytest.mark.parametrize(
    ("contents", "code"),
    [
        ([b"payload"], Code.XML_NOT_WELL_FORMED),
        ([VALID, VALID.replace(b"<Row>", b"<Row><unclosed>")], Code.XML_NOT_WELL_FORMED),
        ([VALID.replace(b"<N>1</N>", b"<N>1</N><!-- \xe9 -->")], Code.XML_ENCODING),
        # Declared encodings Python can look up but that are no text encoding (a set stuck in
        # set.failed before, the exception retried forever): 136 like any other.
        ([VALID.replace(b'"UTF-8"', b'"zlib"')], Code.XML_ENCODING),
        ([VALID.replace(b'"UTF-8"', b'"UTF-16"')], Code.XML_ENCODING),
        ([VALID.replace(b"DmfAOriginal", b"DmfAReplacement")], Code.XML_ROOT_ELEMENT),
        ([VALID.replace(NS.encode(), b"urn:other")], Code.XML_NAMESPACE),
        ([VALID.replace(b"<N>1</N>", b"<N>one</N>")], Code.XML_SCHEMA),
    ],
)
async def test_each_fault_gets_its_code_in_the_acrf(
    strict: Harness, contents: list[bytes], code: Code
) -> None:
    """135 not well-formed, 136 encoding, 137 root, 138 namespace, 139 schema; the reason names
    the part that failed."""
    found, reason = await refused_with(strict, contents)
    assert found == code
    fis, _, _, _ = set_names(sender=strict.number, parts=len(contents))
    assert reason.startswith(f"{fis[-1]}: ")


async def test_a_valid_declaration_passes_every_check(strict: Harness) -> None:
    """Root, namespace and XSD all met: routed, positive ACRF."""
    await strict.send_set(contents=[VALID, VALID.replace(b"<N>1</N>", b"<N>2</N>")], parts=2)
    await strict.pipeline.run_once()
    [(_, acrf)] = strict.acrfs()
    assert acrf.accepted
    assert len(strict.routed()) == 1


async def test_a_binary_application_skips_the_checks(strict: Harness) -> None:
    """WECH declared format = "binary": any bytes are routed."""
    await strict.send_set(app="WECH", parts=None, contents=[b"\x00\xff not xml at all"])
    await strict.pipeline.run_once()
    [(_, acrf)] = strict.acrfs()
    assert acrf.accepted
    assert len(strict.routed("WECH")) == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"format": "json"}, "services.DMFA.format: must be one of xml, binary"),
        ({"format": "binary", "root": "A"}, "services.DMFA: ['root'] need format"),
        ({"root": "p:A"}, "services.DMFA.root: must be an element name"),
        ({"namespace": 3}, "services.DMFA.namespace: must be a string"),
        ({"xsd": "missing.xsd"}, "services.DMFA.xsd: cannot read"),
        ({"xsd": "bad.xsd"}, "services.DMFA.xsd: "),
    ],
)
def test_a_bad_format_entry_stops_the_catalogue(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    """Each new key is checked at load time, naming the entry; an XSD is compiled then."""
    (tmp_path / "bad.xsd").write_bytes(b"<xs:schema xmlns:xs='urn:not-xsd'/>")
    data = {
        "services": {
            "DMFA": {
                "title": "DmfA",
                "parts": True,
                "destination": {"kind": "directory", "path": "routed/DMFA"},
                **entry,
            }
        }
    }
    with pytest.raises(CatalogueError) as caught:
        parse_service_catalogue(data, base=tmp_path)
    assert str(caught.value).startswith(message)
