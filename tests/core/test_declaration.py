"""The formal checks of a declaration (core.declaration): each fault its code, fed in any chunks."""

from __future__ import annotations

import codecs
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.core.codes import Code
from gateway.core.declaration import (
    MAX_DEPTH,
    MAX_TOKEN_BYTES,
    DeclarationCheck,
    DeclarationRules,
    check_declaration,
)

ANY = DeclarationRules()
NS = "urn:test:dmfa"
XSD = f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{NS}"
  xmlns="{NS}" elementFormDefault="qualified">
  <xs:element name="DmfAOriginal"><xs:complexType><xs:sequence>
    <xs:element name="Row" maxOccurs="unbounded"><xs:complexType><xs:sequence>
      <xs:element name="N" type="xs:int"/>
    </xs:sequence></xs:complexType></xs:element>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>""".encode()
SCHEMA = DeclarationRules(
    root="DmfAOriginal",
    namespace=NS,
    schema=etree.XMLSchema(etree.fromstring(XSD)),
    schema_name="dmfa.xsd",
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""


def verdict(data: bytes, rules: DeclarationRules = ANY, size: int = 7) -> Code | None:
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    found = check_declaration(chunks, rules, name="FI.DMFA.000001.20260115.00001.R.1.1")
    if found is not None:
        assert found.reason.startswith("FI.DMFA.000001.20260115.00001.R.1.1: "), found
    return None if found is None else found.code


def row(n: str) -> bytes:
    return f"<Row><N>{n}</N></Row>".encode()


def dmfa(*rows: bytes, ns: str = NS, root: str = "DmfAOriginal") -> bytes:
    return (
        f'<?xml version="1.0"?><{root} xmlns="{ns}">'.encode()
        + b"".join(rows)
        + (f"</{root}>\r\n".encode())
    )


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><DmfAOriginal/>\r\n',
        b"<declaration part='1'>" + b"x" * 300 + b"</declaration>\r\n",
        b"\xef\xbb\xbf<a>\xc3\xa9</a>",
        b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>',
        b"<?xml version='1.0' encoding='windows-1252'?><a>\x80</a>",
        "<?xml version='1.0' encoding='UTF-16'?><a>\u00e9</a>".encode("utf-16"),
        b"<!-- a comment --><?pi data?><a b='1'><![CDATA[<x>]]>&amp;&#233;</a><!-- end -->",
    ],
)
def test_a_well_formed_declaration_in_its_encoding_passes(data: bytes) -> None:
    """UTF-8 (with or without BOM), a declared single-byte encoding, UTF-16 with a BOM."""
    assert verdict(data) is None
    assert verdict(data, size=1) is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", Code.NO_DATA),
        (b"  \r\n", Code.NO_DATA),
        (b'<?xml version="1.0"?>', Code.NO_DATA),
        (b"payload", Code.XML_NOT_WELL_FORMED),
        (b"<a>", Code.XML_NOT_WELL_FORMED),
        (b"<a></b>", Code.XML_NOT_WELL_FORMED),
        (b"<a/><b/>", Code.XML_NOT_WELL_FORMED),
        (b"<second, different/>", Code.XML_NOT_WELL_FORMED),
        (b"<a>&foo;</a>", Code.XML_NOT_WELL_FORMED),
        (b"<?xml version='1.0'", Code.XML_NOT_WELL_FORMED),
        (b"<!DOCTYPE a><a/>", Code.XML_NOT_WELL_FORMED),
        (b'<!DOCTYPE a SYSTEM "http://example.test/a.dtd"><a/>', Code.XML_NOT_WELL_FORMED),
        (b"<a>\xff</a>", Code.XML_ENCODING),
        (b"<a>\xe9t\xe9</a>", Code.XML_ENCODING),  # Latin-1 bytes, no declaration: not UTF-8
        (b'<?xml version="1.0" encoding="US-ASCII"?><a>\xe9</a>', Code.XML_ENCODING),
        (b'<?xml version="1.0" encoding="klingon"?><a/>', Code.XML_ENCODING),
        (b'<?xml version="1.0" encoding="Shift_JIS"?><a/>', Code.XML_ENCODING),
        ("<a/>".encode("utf-32"), Code.XML_ENCODING),
        ("<?xml version='1.0'?><a/>".encode("utf-16-le"), Code.XML_ENCODING),
        (b"<p:a/>", Code.XML_NAMESPACE),
    ],
)
def test_each_fault_gets_its_code(data: bytes, code: Code) -> None:
    """Not well-formed 135, encoding 136, unbound prefix 138, nothing there 134."""
    assert verdict(data) == code
    assert verdict(data, size=4096) == code


@pytest.mark.parametrize(
    "declared",
    [
        "UTF-16",
        "utf_32",
        "UTF-32BE",
        "zlib",
        "bz2_codec",
        "base64",
        "hex",
        "rot13",
        "uu",
        "quopri",
        "punycode",
        "undefined",
    ],
)
@pytest.mark.parametrize("size", [1, 7, 4096])
def test_a_declared_encoding_python_cannot_read_as_text_is_136(declared: str, size: int) -> None:
    """Encodings Python looks up but that read no document: UTF-16 and UTF-32 declared with no
    byte order mark, the codec registry's transforms (zlib, base64, rot13...), punycode. They
    raised from the check before (zlib.error, TypeError, UnicodeError), which stopped the set
    with a traceback and retried it for ever."""
    data = f'<?xml version="1.0" encoding="{declared}"?><a>\u00e9</a>'.encode()
    assert verdict(data, size=size) == Code.XML_ENCODING


def test_billion_laughs_is_refused_at_its_dtd_before_any_entity() -> None:
    """The DOCTYPE is refused where it starts: 135 from the first chunk, nothing expanded, and
    the file is read no further (one chunk taken of a file padded to 64 MiB)."""
    taken = 0

    def chunks() -> Iterator[bytes]:
        nonlocal taken
        yield BILLION_LAUGHS
        taken += 1
        for _ in range(64):
            taken += 1
            yield b"<!-- padding -->" * 65536

    found = check_declaration(chunks(), ANY, name="FI")
    assert found is not None
    assert found.code == Code.XML_NOT_WELL_FORMED
    assert found.reason == (
        "FI: line 2: a document type declaration (<!DOCTYPE lolz>) is refused: "
        "no DTD, no entity is read"
    )
    assert taken == 0


def test_a_refusal_is_final_and_reads_nothing_more() -> None:
    """After a fault every feed answers the same refusal and takes no byte."""
    check = DeclarationCheck(ANY, name="FI")
    first = check.feed(BILLION_LAUGHS)
    assert first is not None
    assert check.feed(b"<more/>" * 1000) is first
    assert check.close() is first
    assert check.bytes_checked == len(BILLION_LAUGHS)


def test_an_endless_start_tag_is_refused_past_the_token_limit() -> None:
    """expat holds a token whole: one attribute value of more than 8 MiB is refused (135)."""
    check = DeclarationCheck(ANY, name="FI")
    assert check.feed(b'<a b="') is None
    piece = b"x" * (1024 * 1024)
    for _ in range(MAX_TOKEN_BYTES // len(piece) - 1):
        assert check.feed(piece) is None
    found = check.feed(piece + piece)
    assert found is not None
    assert found.code == Code.XML_NOT_WELL_FORMED
    assert "8 MiB" in found.reason


def test_long_text_streams_past_the_token_limit() -> None:
    """Text is consumed as it comes: 16 MiB of character data in one element passes."""
    check = DeclarationCheck(ANY, name="FI")
    assert check.feed(b"<a>") is None
    for _ in range(16):
        assert check.feed(b"y" * (1024 * 1024)) is None
    assert check.feed(b"</a>") is None
    assert check.close() is None


@pytest.mark.parametrize(
    ("data", "rules", "code"),
    [
        (dmfa(row("1")), SCHEMA, None),
        (dmfa(row("1"), root="DmfAReplacement"), DeclarationRules(root="DmfAOriginal"), 137),
        (dmfa(row("1"), ns="urn:other"), DeclarationRules(namespace=NS), 138),
        (b"<DmfAOriginal/>", DeclarationRules(namespace=NS), 138),
        (dmfa(row("1")), DeclarationRules(namespace=""), 138),
        (b"<DmfAOriginal/>", DeclarationRules(root="DmfAOriginal", namespace=""), None),
        (dmfa(row("1"), row("x")), SCHEMA, 139),
        (dmfa(), SCHEMA, 139),
        (dmfa(row("1"), b"<Extra/>"), SCHEMA, 139),
        (dmfa(row("1")) + b"<junk", SCHEMA, 135),
    ],
)
def test_root_namespace_and_schema(data: bytes, rules: DeclarationRules, code: int | None) -> None:
    """137 wrong root, 138 wrong namespace (``""``: none wanted), 139 the XSD's verdict."""
    assert verdict(data, rules) == code
    assert verdict(data, rules, size=1 << 20) == code


def test_schema_validation_keeps_memory_flat_on_a_long_document() -> None:
    """The schema's pull parser is pruned after each chunk: after 200,000 rows the tree it holds
    is the root and its last child."""
    check = DeclarationCheck(SCHEMA, name="FI")
    assert check.feed(dmfa()[: -len(b"</DmfAOriginal>\r\n")]) is None
    block = row("7") * 10_000
    for _ in range(20):
        assert check.feed(block) is None
    feed = check._schema  # the pruned tree is what this test is about
    assert feed is not None
    assert feed._root is not None
    assert len(feed._root) <= 1
    assert check.feed(b"</DmfAOriginal>") is None
    assert check.close() is None


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=64))
def test_the_verdict_never_depends_on_the_chunking_and_never_raises(data: bytes, size: int) -> None:
    """Any bytes, any chunk size: a verdict (or None), the same as in one piece."""
    assert verdict(data, size=size) == verdict(data, size=len(data) or 1)


@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=50),
    st.integers(min_value=1, max_value=16),
)
def test_escaped_text_in_utf8_always_passes(text: str, size: int) -> None:
    """Any text, escaped, in an element: well-formed UTF-8 unless XML 1.0 forbids a character."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;")
    data = f"<a>{escaped}</a>".encode()
    allowed = all(
        ch in "\t\n\r"
        or 0x20 <= ord(ch) <= 0xD7FF
        or 0xE000 <= ord(ch) <= 0xFFFD
        or ord(ch) >= 0x10000
        for ch in text
    )
    assert verdict(data, size=size) == (None if allowed else Code.XML_NOT_WELL_FORMED)


# -- bytes not in their declared encoding ---------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            '<?xml version="1.0" encoding="UTF-8"?><a>\u00e9</a>'.encode("utf-16"),
            id="utf16-bom-declared-utf8",
        ),
        pytest.param(
            '<?xml version="1.0" encoding="UTF-8"?><a>\u00e9</a>'.encode("utf-16-le"),
            id="utf16-no-bom-declared-utf8",
        ),
        pytest.param(
            b'<?xml version="1.0" encoding="UTF-8"?><a>\xe9</a>', id="latin1-declared-utf8"
        ),
        pytest.param(b'<?xml version="1.0" encoding="UTF-8"?><a>\xc0\xaf</a>', id="overlong-utf8"),
        pytest.param(
            b'<?xml version="1.0" encoding="UTF-8"?><a>\xed\xa0\x80</a>', id="utf8-surrogate"
        ),
    ],
)
def test_bytes_not_in_their_declared_encoding_are_136(data: bytes) -> None:
    """UTF-16 (with or without its BOM) or Latin-1 bytes declared UTF-8, and UTF-8's own
    forbidden forms (overlong, surrogates): the same 136 naming the same byte in any chunks.
    (A bad byte at the end of a chunk, held by the decoder, was counted from the next chunk:
    "byte 42", or 135 "not well-formed" when expat saw it first, depending on the chunking.)"""
    answers = set()
    for size in (*range(1, 9), 4096):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        found = check_declaration(chunks, ANY, name="FI")
        assert found is not None
        answers.add((found.code, found.reason))
    [(code, _)] = answers
    assert code == Code.XML_ENCODING


# -- SECURITY.md 19: variants of the billion laughs ------------------------------------------------

QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><q>'
    + b"&a;" * 50_000
    + b"</q>"
)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(QUADRATIC, id="quadratic-blowup"),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<d>&x;</d>",
            id="external-entity-file",
        ),
        pytest.param(
            b'<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><d/>',
            id="external-parameter-entity",
        ),
        pytest.param(
            b"<!DOCTYPE d [<!ENTITY % e \"<!ENTITY x 'y'>\"> %e;]><d>&x;</d>",
            id="internal-parameter-entity",
        ),
        pytest.param(
            b'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE lolz [<!ENTITY l "lol">]>'
            b"<lolz>&l;</lolz>".decode().encode("utf-16"),
            id="dtd-in-utf16",
        ),
    ],
)
def test_every_entity_trick_is_refused_at_its_dtd(data: bytes) -> None:
    """Entity blow-ups and external references in any form: 135 at the DOCTYPE, in any chunks,
    with nothing read from the file they name."""
    for size in (1, 64, 1 << 20):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        found = check_declaration(chunks, ANY, name="FI")
        assert found is not None
        assert found.code == Code.XML_NOT_WELL_FORMED
        assert "document type declaration" in found.reason
        assert "root:" not in found.reason


def test_xinclude_is_not_followed() -> None:
    """An XInclude element is only an element: nothing is fetched, the document passes."""
    data = (
        b'<a xmlns:xi="http://www.w3.org/2001/XInclude">'
        b'<xi:include href="file:///etc/passwd" parse="text"/></a>'
    )
    assert verdict(data) is None


def test_deep_nesting_is_refused_by_a_schema_early() -> None:
    """An application with an XSD: 100,000 nested elements are refused within the first chunk,
    not held. expat checks a chunk before the schema's parser sees it, so the depth cap answers
    (135 naming the depth) before the XSD's 139 for <Row> in <Row>."""
    depth = 100_000
    data = dmfa(b"<Row>" * depth + b"</Row>" * depth)
    check = DeclarationCheck(SCHEMA, name="FI")
    found = check.feed(data[: 1 << 16])
    assert found is not None
    assert found.code == Code.XML_NOT_WELL_FORMED
    assert found.reason == f"FI: line 1: elements nested deeper than {MAX_DEPTH}"


def nested(depth: int, name: bytes = b"a") -> bytes:
    return b"<%s>" % name * depth + b"</%s>" % name * depth


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
def test_nesting_is_capped_at_max_depth(size: int) -> None:
    """MAX_DEPTH levels pass, one more is 135 naming the depth and its line, in any chunks;
    going back up frees the levels (256 deep a thousand times over passes; three times in
    one-byte chunks, which a thousand would make a 1.8 MB byte-by-byte feed)."""
    assert verdict(nested(MAX_DEPTH), size=size) is None
    assert verdict(dmfa(nested(MAX_DEPTH - 1, b"Row")), size=size) is None
    repeats = 3 if size == 1 else 1000
    assert verdict(b"<r>" + nested(MAX_DEPTH - 1) * repeats + b"</r>", size=size) is None
    too_deep = b"<r>\r\n" + nested(MAX_DEPTH)[: -len(b"</a>") * MAX_DEPTH] + b"\r\n<b/>"
    chunks = [too_deep[i : i + size] for i in range(0, len(too_deep), size)]
    found = check_declaration(chunks, ANY, name="FI")
    assert found is not None
    assert found.code == Code.XML_NOT_WELL_FORMED
    assert found.reason == f"FI: line 2: elements nested deeper than {MAX_DEPTH}"
    assert verdict(dmfa(nested(MAX_DEPTH, b"Row")), size=size) == Code.XML_NOT_WELL_FORMED


def test_a_bad_byte_before_the_element_too_deep_is_136_in_any_chunks() -> None:
    """A lone UTF-16 surrogate (which expat lets through, the decoder not) then MAX_DEPTH + 44
    levels: the first fault in the file answers, 136, whether the decoder meets the byte in an
    earlier chunk or in the same chunk as the element too deep."""
    data = (
        codecs.BOM_UTF16_LE
        + "<r>".encode("utf-16-le")
        + b"\x00\xd8"  # a high surrogate with no low one after it
        + ("x" + "<a>" * (MAX_DEPTH + 44)).encode("utf-16-le")
    )
    for size in (1, 7, 4096):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        found = check_declaration(chunks, ANY, name="FI")
        assert found is not None
        assert (found.code, found.reason) == (Code.XML_ENCODING, "FI: byte 8 is not valid UTF-16")


def test_deep_nesting_keeps_memory_flat() -> None:
    """1,000,000 nested elements (3 MB) with no schema, fed in 3 KiB chunks: 135 at element
    257 in the first chunk, nothing more read, and the check's memory (expat allocates through
    Python's allocator, so tracemalloc sees it) stays under 256 KiB. Before the cap expat held
    ~120 bytes per open element: 12 MB for 100,000, 120 MB for this document."""
    chunk = b"<a>" * 1024
    check = DeclarationCheck(ANY, name="FI")
    tracemalloc.start()
    try:
        verdicts = {check.feed(chunk) for _ in range(1_000_000 // 1024)}
        verdicts.add(check.close())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [found] = verdicts
    assert found is not None
    assert found.code == Code.XML_NOT_WELL_FORMED
    assert f"nested deeper than {MAX_DEPTH}" in found.reason
    assert check.bytes_checked == len(chunk)
    assert peak < 256 * 1024
