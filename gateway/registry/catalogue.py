"""The online-services catalogue (``config/services.toml``): the application codes to subscribe to.

Each entry keeps its ``destination`` table as given (the pipeline routes with it) and its
``parts`` flag (whether names carry the ``.N.n`` suffix). A bad file raises
:class:`CatalogueError` naming the entry: the catalogue is configuration, loaded at start-up.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.core.names import default_parted

_CODE = re.compile(r"[A-Z]{4}")


class CatalogueError(Exception):
    """``config/services.toml`` is missing or invalid; the message names the entry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEntry:
    """One online service."""

    code: str
    title: str
    parts: bool
    destination: Mapping[str, Any]


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


def parse_service_catalogue(data: Mapping[str, Any]) -> ServiceCatalogue:
    """Build the catalogue from parsed TOML (``{"services": {CODE: {...}}}``)."""
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise CatalogueError("services catalogue has no [services.CODE] entries")
    entries: dict[str, ServiceEntry] = {}
    for code, raw in services.items():
        if not _CODE.fullmatch(code):
            raise CatalogueError(f"services.{code}: code must be 4 uppercase letters")
        if not isinstance(raw, dict):
            raise CatalogueError(f"services.{code}: must be a table")
        unknown = set(raw) - {"title", "parts", "destination"}
        if unknown:
            raise CatalogueError(f"services.{code}: unknown keys {sorted(unknown)}")
        title, parts, destination = raw.get("title"), raw.get("parts"), raw.get("destination")
        if not isinstance(title, str) or not title:
            raise CatalogueError(f"services.{code}.title: must be a non-empty string")
        if not isinstance(parts, bool):
            raise CatalogueError(f"services.{code}.parts: must be true or false")
        if not isinstance(destination, dict) or "kind" not in destination:
            raise CatalogueError(f"services.{code}.destination: must be a table with a kind")
        entries[code] = ServiceEntry(
            code=code, title=title, parts=parts, destination=MappingProxyType(dict(destination))
        )
    return ServiceCatalogue(MappingProxyType(entries))


def load_service_catalogue(path: Path) -> ServiceCatalogue:
    """Load and check ``path`` (``config/services.toml``)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"services catalogue not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"services catalogue {path} is not valid TOML: {exc}") from None
    return parse_service_catalogue(data)
