"""The online-services catalogue (``config/services.toml``): the application codes to subscribe to.

Each entry keeps its ``destination`` table as given (the pipeline routes with it), its ``parts``
flag (whether names carry the ``.N.n`` suffix), and its ``clients``: the PEM certificates with
which the online service authenticates to post notifications back over the web service
(``POST /v1/services/{CODE}/notifications``), as paths relative to the catalogue's folder. One
certificate listed under several codes is one service that may post for each of them
(:func:`load_service_clients`). Its ``format`` says what its declarations (FI) are: ``"xml"``
(the default: every application of domain/batch-channel.md §1.3 sends an XML structured message)
gets the formal checks of :mod:`gateway.core.declaration` before routing, with the optional
``root`` element name, ``namespace`` URI (``""``: none) and ``xsd`` schema file (relative to the
catalogue's folder, compiled at load time); ``"binary"`` skips them. A bad file raises
:class:`CatalogueError` naming the entry: the catalogue is configuration, loaded at start-up.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lxml import etree

from gateway.core.declaration import DeclarationRules
from gateway.core.names import default_parted
from gateway.core.trust import load_certificate, pem_blocks
from gateway.registry.types import ServiceClient

_CODE = re.compile(r"[A-Z]{4}")
XML_ANY = DeclarationRules()
"""``format = "xml"`` with no root, namespace or schema: well-formed XML in its encoding."""


class CatalogueError(Exception):
    """``config/services.toml`` is missing or invalid; the message names the entry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEntry:
    """One online service."""

    code: str
    title: str
    parts: bool
    destination: Mapping[str, Any]
    clients: tuple[Path, ...] = ()
    declaration: DeclarationRules | None = XML_ANY
    """The formal checks of its FI files (``format = "xml"``), or None (``"binary"``)."""


@dataclass(frozen=True, slots=True)
class PartsRule:
    """Whether names of an application carry the parts suffix: the catalogue's ``parts`` flag,
    else the core's default. Hashable (sets of codes), so the core memoises name verdicts made
    with it."""

    catalogued: frozenset[str]
    parted: frozenset[str]

    def __call__(self, application: str) -> bool:
        if application in self.catalogued:
            return application in self.parted
        return default_parted(application)


@dataclass(frozen=True, slots=True)
class ServiceCatalogue:
    """The services by application code."""

    entries: Mapping[str, ServiceEntry]

    def parts_rule(self) -> PartsRule:
        """The catalogue's parts flags as a :class:`PartsRule`."""
        return PartsRule(
            catalogued=frozenset(self.entries),
            parted=frozenset(code for code, entry in self.entries.items() if entry.parts),
        )

    def __contains__(self, code: object) -> bool:
        return code in self.entries

    def __iter__(self) -> Iterator[ServiceEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, code: str) -> ServiceEntry | None:
        """The entry for ``code``, or ``None``."""
        return self.entries.get(code)

    @property
    def codes(self) -> frozenset[str]:
        """Every application code in the catalogue."""
        return frozenset(self.entries)


def parse_service_catalogue(data: Mapping[str, Any], base: Path | None = None) -> ServiceCatalogue:
    """Build the catalogue from parsed TOML (``{"services": {CODE: {...}}}``); relative
    ``clients`` paths are taken under ``base`` (the catalogue's folder)."""
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise CatalogueError("services catalogue has no [services.CODE] entries")
    entries: dict[str, ServiceEntry] = {}
    for code, raw in services.items():
        if not _CODE.fullmatch(code):
            raise CatalogueError(f"services.{code}: code must be 4 uppercase letters")
        if not isinstance(raw, dict):
            raise CatalogueError(f"services.{code}: must be a table")
        unknown = set(raw) - {"title", "parts", "destination", "clients", *_FORMAT_KEYS}
        if unknown:
            raise CatalogueError(f"services.{code}: unknown keys {sorted(unknown)}")
        title, parts, destination = raw.get("title"), raw.get("parts"), raw.get("destination")
        if not isinstance(title, str) or not title:
            raise CatalogueError(f"services.{code}.title: must be a non-empty string")
        if not isinstance(parts, bool):
            raise CatalogueError(f"services.{code}.parts: must be true or false")
        if not isinstance(destination, dict) or "kind" not in destination:
            raise CatalogueError(f"services.{code}.destination: must be a table with a kind")
        clients = raw.get("clients", [])
        if not isinstance(clients, list) or not all(isinstance(c, str) and c for c in clients):
            raise CatalogueError(f"services.{code}.clients: must be a list of certificate paths")
        entries[code] = ServiceEntry(
            code=code,
            title=title,
            parts=parts,
            destination=MappingProxyType(dict(destination)),
            clients=tuple((base / c if base is not None else Path(c)) for c in clients),
            declaration=_declaration_rules(code, raw, base),
        )
    return ServiceCatalogue(MappingProxyType(entries))


_FORMAT_KEYS = ("format", "root", "namespace", "xsd")
_FORMATS = ("xml", "binary")


def _declaration_rules(
    code: str, raw: Mapping[str, Any], base: Path | None
) -> DeclarationRules | None:
    """The ``format``, ``root``, ``namespace`` and ``xsd`` keys of one entry (blocking: an
    ``xsd`` is read and compiled here, so a bad one stops the start, naming the entry)."""
    kind = raw.get("format", "xml")
    if kind not in _FORMATS:
        raise CatalogueError(f"services.{code}.format: must be one of {', '.join(_FORMATS)}")
    if kind == "binary":
        extra = sorted(key for key in ("root", "namespace", "xsd") if key in raw)
        if extra:
            raise CatalogueError(f'services.{code}: {extra} need format = "xml"')
        return None
    root, namespace, xsd = raw.get("root"), raw.get("namespace"), raw.get("xsd")
    if root is not None and not (isinstance(root, str) and root and ":" not in root):
        raise CatalogueError(f"services.{code}.root: must be an element name without prefix")
    if namespace is not None and not isinstance(namespace, str):
        raise CatalogueError(f'services.{code}.namespace: must be a string ("": none)')
    if xsd is None:
        return DeclarationRules(root=root, namespace=namespace)
    if not isinstance(xsd, str) or not xsd:
        raise CatalogueError(f"services.{code}.xsd: must be the path of an XML schema file")
    path = base / xsd if base is not None else Path(xsd)
    return DeclarationRules(
        root=root, namespace=namespace, schema=load_schema(code, path), schema_name=path.name
    )


def load_schema(code: str, path: Path) -> etree.XMLSchema:
    """Compile the XSD at ``path``: no network, no entity expansion, no DTD (includes and
    imports are read from local files beside it)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.XMLSchema(etree.parse(str(path), parser))
    except OSError as exc:
        raise CatalogueError(
            f"services.{code}.xsd: cannot read {path}: {exc.strerror or exc}"
        ) from None
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise CatalogueError(
            f"services.{code}.xsd: {path} is not a usable XML schema: {exc}"
        ) from None


def load_service_catalogue(path: Path) -> ServiceCatalogue:
    """Load and check ``path`` (``config/services.toml``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"services catalogue not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"services catalogue {path} is not valid TOML: {exc}") from None
    return parse_service_catalogue(data, base=path.parent)


def load_service_clients(catalogue: ServiceCatalogue) -> tuple[ServiceClient, ...]:
    """The online services of ``catalogue``'s ``clients`` certificates (blocking: reads them),
    one per certificate, with every code that lists it. A file that cannot be read or holds no
    certificate raises :class:`CatalogueError` naming the entry."""
    found: dict[bytes, tuple[str, set[str]]] = {}
    for entry in catalogue:
        for path in entry.clients:
            try:
                blob = path.read_bytes()
            except OSError as exc:
                raise CatalogueError(
                    f"services.{entry.code}.clients: cannot read {path}: {exc.strerror or exc}"
                ) from None
            ders = [der for label, der in pem_blocks(blob) if label == "CERTIFICATE"]
            if len(ders) != 1 or load_certificate(ders[0]) is None:
                raise CatalogueError(
                    f"services.{entry.code}.clients: {path} must hold one PEM certificate"
                )
            found.setdefault(ders[0], (path.stem, set()))[1].add(entry.code)
    return tuple(
        ServiceClient(
            name=name,
            fingerprint=hashlib.sha256(der).hexdigest(),
            certificate=der,
            applications=frozenset(codes),
        )
        for der, (name, codes) in found.items()
    )
