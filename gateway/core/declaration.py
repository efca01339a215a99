"""Formal checks of a declaration (FI): encoding, well-formed XML, root element, namespace, schema.

domain/batch-channel.md §2.2: the transfer point refuses a set whose declaration it cannot read
(134 no data, 135-139 XML schema, encoding or namespace). Sans-IO: :class:`DeclarationCheck` is
fed the FI's bytes in order, in chunks of any size, and answers at the first fault, so a refused
file is read no further and a 2 GiB file is never held.

The checks, each with its code, in the order a reader meets them:

- **136 encoding** (XML 1.0 §4.3.3 and Appendix F): a byte order mark, else the XML declaration's
  ``encoding="..."``, else UTF-8, names the encoding; every byte must decode strictly in it (an
  incremental decoder beside the parser, so a bad byte is told apart from bad markup). UTF-32 and
  UTF-16 without a byte order mark are refused; so is an encoding expat cannot read.
- **135 well-formed** (expat, non-validating): a document type declaration is refused where it
  starts. With no DTD nothing can declare an entity, so nothing is expanded (billion laughs,
  quadratic blow-up) and nothing external is fetched (XXE); the entity and external-reference
  handlers refuse too, in case. One markup token (a tag, comment, processing instruction) longer
  than :data:`MAX_TOKEN_BYTES` is refused, because expat holds a token whole until it ends; text
  is consumed as it streams. Elements nested deeper than :data:`MAX_DEPTH` are refused at the
  first one too deep, because expat holds every open element (about 120 bytes each: 4 million
  nested ``<a>`` in 12 MB would hold 500 MB); so memory stays flat whatever the document.
- **137 root element** and **138 namespace**: the first element's local name and namespace URI
  against the application's ``root`` and ``namespace`` (``""`` is "no namespace"); an unbound
  prefix is 138 too.
- **139 schema**: when the application has an XSD, lxml (libxml2) validates the same bytes as
  they stream: a pull parser with the schema, entities unresolved, no network, no huge trees,
  no DTD loading; the tree it builds is pruned after every chunk (only the open elements' spine
  stays), so validation too runs in bounded memory. It is fed only what expat accepted.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from xml.parsers import expat

from lxml import etree

from gateway.core.codes import Code, Rejection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

MAX_TOKEN_BYTES: Final = 8 * 1024 * 1024
"""The longest single markup token (a start tag with its attributes, a comment, a PI) taken."""

MAX_DEPTH: Final = 256
"""The deepest element nesting taken (the root is level 1): libxml2's own limit without
``huge_tree``, so an XSD's tree-building parser agrees; DmfA and Dimona nest about 10 levels.

Counted exactly, at every start tag, the cheapest way measured (bench/formal_checks.py): an
element takes a slot from a list of this many when it opens (``list.pop`` in a one-line Python
handler; IndexError when none is left) and gives one back when it closes (``list.append`` is
itself the end handler: no Python frame). pyexpat's own cost of reporting each element is most
of it: the check takes 3x as long on an element-dense FI, 1.4x on a DmfA-like one. No cheaper:
lxml with a target builds no tree, and libxml2 2.14 then checks no depth at all (only when it
pushes a tree node); lxml building a tree costs as much and holds every open text node whole.
"""

MAX_DECLARATION_BYTES: Final = 1024
"""How far the XML declaration (``<?xml ... ?>``) may run before it is taken as malformed."""

_DECLARED = re.compile(
    rb"""encoding\s*=\s*(?:"([A-Za-z][A-Za-z0-9._-]*)"|'([A-Za-z][A-Za-z0-9._-]*)')"""
)
_BOMS: tuple[tuple[bytes, str | None], ...] = (
    (codecs.BOM_UTF32_LE, None),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, None),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ENCODING_ERRORS = frozenset(
    {
        expat.errors.codes[expat.errors.XML_ERROR_UNKNOWN_ENCODING],
        expat.errors.codes[expat.errors.XML_ERROR_INCORRECT_ENCODING],
    }
)
_NO_ELEMENTS: Final = expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS]
_NAMESPACE_ERRORS = frozenset(
    {
        expat.errors.codes[expat.errors.XML_ERROR_UNBOUND_PREFIX],
        expat.errors.codes[expat.errors.XML_ERROR_UNDECLARING_PREFIX],
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclarationRules:
    """What an application's declarations must be, beyond well-formed XML in their encoding."""

    root: str | None = None
    """The root element's local name, or None for any."""
    namespace: str | None = None
    """The root element's namespace URI (``""``: none), or None for any."""
    schema: etree.XMLSchema | None = None
    """The application's compiled XSD, or None."""
    schema_name: str = "the schema"
    """How the schema is named in a refusal (its file name)."""


class _Refused(Exception):
    """Raised inside an expat handler to stop the parse with a refusal."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


class DeclarationCheck:
    """One FI's formal checks: :meth:`feed` its bytes in order, then :meth:`close`.

    Each call answers a :class:`Rejection` at the first fault (and the same one ever after), or
    None. ``name`` prefixes every reason, so a multi-part set's ACRF says which part failed.
    """

    def __init__(self, rules: DeclarationRules, *, name: str) -> None:
        self._rules = rules
        self._name = name
        self._head = b""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._encoding = "utf-8"
        self._parser = expat.ParserCreate(namespace_separator=" ")
        self._parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser.StartDoctypeDeclHandler = self._doctype
        self._parser.EntityDeclHandler = self._entity
        self._parser.UnparsedEntityDeclHandler = self._unparsed_entity
        self._parser.ExternalEntityRefHandler = self._external_entity
        self._parser.StartElementHandler = self._root_element
        # One slot per element that may still open; expat hands each end tag's name straight to
        # append, and the start handler after the root only pops (see MAX_DEPTH).
        self._room: list[object] = [None] * MAX_DEPTH
        self._parser.EndElementHandler = self._room.append
        self._root: str | None = None
        self._schema: _SchemaFeed | None = None
        self._held: list[bytes] = []  # bytes expat accepted before the root: the schema's too
        self._fed = 0
        self._verdict: Rejection | None = None
        self.bytes_checked = 0
        """How many bytes were taken in (a refused file stops being read at its fault)."""

    # -- the caller's side ----------------------------------------------------------------------

    def feed(self, chunk: bytes) -> Rejection | None:
        """Check the next bytes of the file."""
        if self._verdict is not None or not chunk:
            return self._verdict
        self.bytes_checked += len(chunk)
        if self._decoder is None:
            self._head += chunk
            if not self._head_complete():
                return None
            chunk, self._head = self._head, b""
            if (verdict := self._choose_encoding(chunk)) is not None:
                return self._refuse(verdict)
        return self._take(chunk, final=False)

    def close(self) -> Rejection | None:
        """The end of the file: the final verdict."""
        if self._verdict is not None:
            return self._verdict
        if self._decoder is None:
            head, self._head = self._head, b""
            if not head:
                return self._refuse(self._rejection(Code.NO_DATA, "the declaration is empty"))
            if (verdict := self._choose_encoding(head)) is not None:
                return self._refuse(verdict)
            if (verdict := self._take(head, final=False)) is not None:
                return verdict
        return self._take(b"", final=True)

    # -- encoding -------------------------------------------------------------------------------

    def _head_complete(self) -> bool:
        """Enough bytes to name the encoding: past a byte order mark and the XML declaration."""
        head = self._head
        if len(head) >= MAX_DECLARATION_BYTES or (len(head) >= 5 and not head.startswith(b"<?xml")):
            return True
        return head.startswith(b"<?xml") and b"?>" in head

    def _choose_encoding(self, head: bytes) -> Rejection | None:
        """Name the encoding from the head of the file and start its decoder."""
        codec = "utf-8"
        for bom, name in _BOMS:
            if head.startswith(bom):
                if name is None:
                    return self._rejection(Code.XML_ENCODING, "UTF-32 is not accepted")
                codec = name
                break
        else:
            if head[:4] in (b"\x00<\x00?", b"<\x00?\x00"):
                return self._rejection(Code.XML_ENCODING, "UTF-16 without a byte order mark")
            if head.startswith(b"<?xml"):
                end = head.find(b"?>")
                if end < 0:
                    return self._rejection(
                        Code.XML_NOT_WELL_FORMED, "the XML declaration does not end"
                    )
                declared = _DECLARED.search(head[:end])
                if declared is not None:
                    codec = (declared.group(1) or declared.group(2)).decode("ascii")
        try:
            info = codecs.lookup(codec)
        except LookupError:
            return self._rejection(Code.XML_ENCODING, f"unknown encoding {codec!r}")
        # Python's codec registry also holds transforms (zlib, bz2, base64, hex, rot13...), which
        # bytes.decode refuses by this flag: they are no character encoding of a document.
        if not getattr(info, "_is_text_encoding", True):
            return self._rejection(Code.XML_ENCODING, f"unknown encoding {codec!r}")
        self._encoding = info.name
        self._decoder = codecs.getincrementaldecoder(self._encoding)("strict")
        return None

    # -- parsing --------------------------------------------------------------------------------

    def _take(self, chunk: bytes, *, final: bool) -> Rejection | None:
        bad_byte: int | None = None
        # The decoder may still hold the first bytes of a character from the last chunk: its
        # error offsets count from those, not from this chunk.
        start = self._fed
        try:
            if self._decoder is not None:  # always: _choose_encoding ran before any _take
                start -= len(self._decoder.getstate()[0])
                self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            bad_byte = start + exc.start
        except UnicodeError:
            # A decoder that refuses the stream as a whole, not one byte: declared UTF-16 or
            # UTF-32 with no byte order mark, punycode, "undefined".
            bad_byte = start
        try:
            self._parser.Parse(chunk, final)
        except _Refused as refused:
            return self._refuse(refused.rejection)
        except IndexError:  # only _opened raises it: no slot left for one more open element
            if bad_byte is not None and bad_byte <= self._parser.CurrentByteIndex:
                return self._refuse(self._undecodable(bad_byte))
            line = self._parser.CurrentLineNumber
            return self._refuse(
                self._rejection(
                    Code.XML_NOT_WELL_FORMED,
                    f"line {line}: elements nested deeper than {MAX_DEPTH}",
                )
            )
        except ValueError:  # pyexpat: "multi-byte encodings are not supported"
            return self._refuse(
                self._rejection(Code.XML_ENCODING, f"encoding {self._encoding!r} is not accepted")
            )
        except expat.ExpatError as exc:
            if bad_byte is not None and bad_byte <= self._parser.ErrorByteIndex:
                return self._refuse(self._undecodable(bad_byte))
            return self._refuse(self._parse_error(exc))
        if bad_byte is not None:
            return self._refuse(self._undecodable(bad_byte))
        self._fed += len(chunk)
        if self._fed - self._parser.CurrentByteIndex > MAX_TOKEN_BYTES:
            line = self._parser.CurrentLineNumber
            return self._refuse(
                self._rejection(
                    Code.XML_NOT_WELL_FORMED,
                    f"line {line}: a single tag, comment or processing instruction runs past "
                    f"{MAX_TOKEN_BYTES // (1024 * 1024)} MiB",
                )
            )
        return self._validate(chunk, final=final)

    def _validate(self, chunk: bytes, *, final: bool) -> Rejection | None:
        if self._rules.schema is None:
            return None
        if self._schema is None:
            if self._root is None:  # the pull parser waits for the root's name
                self._held.append(chunk)
                return None
            self._schema = _SchemaFeed(self._rules.schema, root=self._root)
            held, self._held = self._held, []
            for piece in held:
                if (fault := self._schema.feed(piece)) is not None:
                    return self._refuse(self._invalid(fault))
        fault = self._schema.feed(chunk) if chunk else None
        if fault is None and final:
            fault = self._schema.close()
        return None if fault is None else self._refuse(self._invalid(fault))

    def _root_element(self, name: str, attributes: object) -> None:
        self._room.pop()  # the root is the first level
        # One element is enough: every later start tag only counts its depth.
        self._parser.StartElementHandler = _opened(self._room)
        namespace, _, local = name.rpartition(" ")
        self._root = f"{{{namespace}}}{local}" if namespace else local
        rules = self._rules
        line = self._parser.CurrentLineNumber
        if rules.root is not None and local != rules.root:
            raise _Refused(
                self._rejection(
                    Code.XML_ROOT_ELEMENT,
                    f"line {line}: the root element is <{local}>, not <{rules.root}>",
                )
            )
        if rules.namespace is not None and namespace != rules.namespace:
            found = f"namespace {namespace!r}" if namespace else "no namespace"
            wanted = f"namespace {rules.namespace!r}" if rules.namespace else "no namespace"
            raise _Refused(
                self._rejection(
                    Code.XML_NAMESPACE,
                    f"line {line}: the root element <{local}> has {found}, not {wanted}",
                )
            )

    def _doctype(self, name: str, *args: object) -> None:
        raise _Refused(
            self._rejection(
                Code.XML_NOT_WELL_FORMED,
                f"line {self._parser.CurrentLineNumber}: a document type declaration "
                f"(<!DOCTYPE {name}>) is refused: no DTD, no entity is read",
            )
        )

    def _entity(self, name: str, *args: object) -> None:
        raise _Refused(
            self._rejection(
                Code.XML_NOT_WELL_FORMED,
                f"line {self._parser.CurrentLineNumber}: entity declaration {name!r} refused",
            )
        )

    def _unparsed_entity(self, name: str, *args: object) -> None:
        self._entity(name)

    def _external_entity(self, *args: object) -> int:
        raise _Refused(
            self._rejection(
                Code.XML_NOT_WELL_FORMED,
                f"line {self._parser.CurrentLineNumber}: an external entity is refused",
            )
        )

    # -- verdicts -------------------------------------------------------------------------------

    def _refuse(self, rejection: Rejection) -> Rejection:
        self._verdict = rejection
        return rejection

    def _rejection(self, code: Code, reason: str) -> Rejection:
        return Rejection(code=code, reason=f"{self._name}: {reason}")

    def _undecodable(self, offset: int) -> Rejection:
        return self._rejection(
            Code.XML_ENCODING, f"byte {offset} is not valid {_label(self._encoding)}"
        )

    def _parse_error(self, exc: expat.ExpatError) -> Rejection:
        message = expat.errors.messages[exc.code] if exc.code else str(exc)
        where = f"line {exc.lineno}, column {exc.offset}"
        if exc.code in _ENCODING_ERRORS:
            return self._rejection(Code.XML_ENCODING, f"{where}: {message}")
        if exc.code in _NAMESPACE_ERRORS:
            return self._rejection(Code.XML_NAMESPACE, f"{where}: {message}")
        if exc.code == _NO_ELEMENTS:
            if self._root is None:
                return self._rejection(Code.NO_DATA, "the declaration holds no element")
            return self._rejection(
                Code.XML_NOT_WELL_FORMED, f"{where}: the file ends inside an element"
            )
        return self._rejection(Code.XML_NOT_WELL_FORMED, f"{where}: {message}")

    def _invalid(self, fault: str) -> Rejection:
        return self._rejection(
            Code.XML_SCHEMA, f"does not conform to {self._rules.schema_name}: {fault}"
        )


def _opened(room: list[object]) -> Callable[[str, object], None]:
    """The start handler after the root: take a slot, IndexError when none is left.

    The cheapest Python handler measured: a closure over the bound ``pop`` (no attribute lookup,
    no comparison in Python); the end handler is ``room.append`` itself.
    """
    take = room.pop

    def opened(name: str, attributes: object) -> None:
        take()

    return opened


def _label(codec: str) -> str:
    return {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16"}.get(codec, codec)


class _SchemaFeed:
    """lxml's pull parser validating against an XSD as bytes come, its tree pruned as it goes."""

    def __init__(self, schema: etree.XMLSchema, *, root: str) -> None:
        # Only the root's start is reported (the tag filter): the one handle needed to prune.
        self._parser = etree.XMLPullParser(
            events=("start",),
            tag=root,
            schema=schema,
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
        )
        self._root: etree._Element | None = None

    def feed(self, chunk: bytes) -> str | None:
        try:
            self._parser.feed(chunk)
        except etree.XMLSyntaxError as exc:
            return _lxml_fault(exc)
        for _event, element in self._parser.read_events():
            if self._root is None:
                self._root = element
        self._prune()
        return None

    def close(self) -> str | None:
        try:
            self._parser.close()
        except etree.XMLSyntaxError as exc:
            return _lxml_fault(exc)
        return None

    def _prune(self) -> None:
        # Every child but the last of each open element is complete: drop them (libxml2 only
        # appends to the last one). What stays is the spine of open elements.
        node = self._root
        while node is not None and len(node):
            del node[:-1]
            node = node[-1]


def _lxml_fault(exc: etree.XMLSyntaxError) -> str:
    return f"line {exc.lineno}: {exc.msg}" if exc.lineno else str(exc.msg)


def check_declaration(
    chunks: Iterable[bytes], rules: DeclarationRules, *, name: str
) -> Rejection | None:
    """Feed ``chunks`` (the file, in order) to a :class:`DeclarationCheck`; stop at a fault."""
    check = DeclarationCheck(rules, name=name)
    for chunk in chunks:
        if (verdict := check.feed(chunk)) is not None:
            return verdict
    return check.close()
