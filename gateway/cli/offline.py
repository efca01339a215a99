"""Offline commands for senders and operators: ``codes`` (and, as they land, ``check-name``,
``sign``, ``verify``). They touch no database and no network."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.core.codes import CATALOGUE


def _codes(args: argparse.Namespace) -> int:
    rows = [
        {"code": int(i.code), "name": i.name, "message": i.message, "check": i.check}
        for i in CATALOGUE.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows, ("code", "name", "message", "check")))
    return 0


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Render ``rows`` as a plain left-aligned text table with a header line."""
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def register(sub: Any) -> None:
    """Add the offline commands to the ``gateway`` parser."""
    p = sub.add_parser("codes", help="print the catalogue of result codes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_codes)
