"""``gateway doctor [--demo] [--json]``: the findings of :mod:`gateway.doctor` for the settings in
force, one line each (``ID: what to fix``); exit 1 when there is one, 0 and ``ok`` otherwise.

``--demo`` judges the setup ``gateway serve --demo`` runs: the demo's listeners on, and the
demo CA (named in ``demo/demo.json`` under the state directory) in the trust store.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.failures import EXIT_REFUSED
from gateway.cli.main import settings_from
from gateway.doctor import examine
from gateway.ops.settings import GatewaySettings


def _demo(settings: GatewaySettings) -> tuple[GatewaySettings, list[Path]]:
    """The demo's settings and trust folders (the demo CA once the demo has run)."""
    from gateway.demo import demo_settings  # deferred: the demo imports the whole registry

    folders = [settings.signature.trust_dir]
    facts = settings.state_dir / "demo" / "demo.json"
    if facts.is_file():
        trust = json.loads(facts.read_text(encoding="utf-8")).get("trust_dir")
        if isinstance(trust, str):
            folders.append(Path(trust))
    return demo_settings(settings), folders


def _doctor(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    folders = [settings.signature.trust_dir]
    if args.demo:
        settings, folders = _demo(settings)
    findings = examine(settings, now=datetime.now(UTC), trust_dirs=folders)
    if args.json:
        print(json.dumps({"ok": not findings, "findings": [asdict(f) for f in findings]}, indent=2))
    elif findings:
        for finding in findings:
            print(finding.line())
    else:
        print("ok")
    return EXIT_REFUSED if findings else 0


def register(sub: Any) -> None:
    """Add ``doctor`` to the ``gateway`` parser."""
    parser = sub.add_parser(
        "doctor",
        help="report what is unsafe or will fail in the setup (exit 1 when anything is)",
    )
    parser.add_argument(
        "--demo", action="store_true", help="judge the setup that 'gateway serve --demo' runs"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.set_defaults(handler=_doctor)
