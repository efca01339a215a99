"""Identifier types that are easy to mix up: plain ``str`` at run time, distinct for mypy.

Each one is a value that has already been checked by the code that builds it (the name parser,
the ticket generator, the registry); a function taking ``SenderNumber`` trusts its format.
"""

from __future__ import annotations

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
