"""Value types shared by the core: ids that are easy to mix up, and the parts of a file name.

The ``NewType`` ids are plain ``str`` at run time and distinct for mypy. Each one is a value that
has already been checked by the code that builds it (the name parser, the ticket generator, the
registry); a function taking ``SenderNumber`` trusts its format. The name value types (kind,
environment, set key, parsed name) live here so that ``core.names`` holds only the grammar's
rules; ``core.names`` re-exports them, and callers import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import NewType

SenderNumber = NewType("SenderNumber", str)
"""A sender number: exactly 6 ASCII digits, leading zeros kept (``006400``; ``999999`` is the
gateway's own). domain/batch-channel.md §1.4."""

Ticket = NewType("Ticket", str)
"""The 13-character ``[0-9A-Z]`` reference of one processed set, written as ``ReferenceNbr`` in
its ACRF and bound to every log event about the set. domain/batch-channel.md §2.2."""

Application = NewType("Application", str)
"""An application (purpose) code: 4 upper-case ASCII letters (``DMFA``, ``WECH``, ``ACRF``).
domain/batch-channel.md §1.3."""


class Kind(StrEnum):
    """Element 1: the file kind (§1.2)."""

    FI = "FI"
    FS = "FS"
    GO = "GO"
    TD = "TD"
    FO = "FO"
    CO = "CO"


UPLOAD_KINDS = frozenset({Kind.FI, Kind.FS, Kind.GO, Kind.TD})
RETURN_KINDS = frozenset({Kind.FO, Kind.FS, Kind.GO, Kind.CO})


class Environment(StrEnum):
    """Element 6: the work environment (§1.7); its folders: ``gateway.core.folders``."""

    R = "R"
    T = "T"
    S = "S"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetKey:
    """What the names of one set share: FI, FS, GO and TD of a set differ only in kind and parts."""

    application: Application
    sender: SenderNumber
    date: date
    sequence: str
    environment: Environment


@dataclass(frozen=True, slots=True, kw_only=True)
class FileName:
    """A parsed, valid file name. ``str()`` gives the name back exactly."""

    kind: Kind
    application: Application
    sender: SenderNumber
    date: date
    sequence: str
    environment: Environment
    parts: int | None = None
    part: int | None = None

    def __str__(self) -> str:
        d = self.date
        text = (
            f"{self.kind}.{self.application}.{self.sender}."
            f"{d.year:04d}{d.month:02d}{d.day:02d}.{self.sequence}.{self.environment}"
        )
        if self.parts is not None:
            text += f".{self.parts}"
            if self.part is not None:
                text += f".{self.part}"
        return text

    @property
    def set_key(self) -> SetKey:
        """The key of the set this file belongs to (set assembly and the duplicate check)."""
        return SetKey(
            application=self.application,
            sender=self.sender,
            date=self.date,
            sequence=self.sequence,
            environment=self.environment,
        )
