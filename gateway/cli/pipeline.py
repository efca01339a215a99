"""``gateway publish`` (a notification back to a sender) and ``gateway trace`` (where is my file?).

Both work on the settings' database and state directory, next to a running daemon or without
one: ``publish`` places signed files in the sender's OUT folder (the SFTP OUT listing shows them
at once), ``trace`` only reads, and refuses (exit 2) a database that is missing or not migrated
rather than create an empty one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.cli.database import migrate_database, require_schema
from gateway.cli.main import settings_from
from gateway.ops.settings import GatewaySettings

EXIT_REFUSED = 1
EXIT_NOT_FOUND = 1


async def _publish(settings: GatewaySettings, args: argparse.Namespace, content: bytes) -> int:
    from gateway.core.codes import Rejection
    from gateway.core.names import Environment
    from gateway.core.signature import TrustStore
    from gateway.pipeline import Pipeline, ensure_gateway_identity
    from gateway.registry.catalogue import load_service_catalogue
    from gateway.registry.notify import build_notifier
    from gateway.registry.service import build_registry

    await migrate_database(settings.database)
    catalogue = load_service_catalogue(settings.pipeline.services_file)
    registry = build_registry(
        settings,
        notifier=build_notifier(settings.notify, settings.state_dir),
        catalogue=catalogue,
    )
    key, cert = ensure_gateway_identity(settings.state_dir, settings.pipeline)
    pipeline = Pipeline(
        pipeline=settings.pipeline,
        limits=settings.limits,
        signature=settings.signature,
        engine=registry.engine,
        registry=registry,
        state_dir=settings.state_dir,
        gateway_key=key,
        gateway_cert=cert,
        trust=TrustStore.from_blobs([], []),
        catalogue=catalogue,
    )
    try:
        result = await pipeline.publish(
            sender=args.sender,
            environment=Environment(args.env),
            application=args.application,
            content=content,
        )
    finally:
        await registry.engine.dispose()
    if isinstance(result, Rejection):
        print(f"gateway publish: {result}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        facts = {
            "sender": result.sender,
            "folder": result.folder,
            "files": list(result.names),
            "compressed": result.compressed,
        }
        print(json.dumps(facts))
    else:
        for name in result.names:
            print(f"{result.folder}/{name}")
    return 0


def _publish_command(args: argparse.Namespace) -> int:
    from gateway.ops.logging import configure_logging

    settings = settings_from(args)
    # The command prints the placed names on stdout; its log events go to stderr.
    configure_logging(fmt=settings.log_format, level=settings.log_level, stream=sys.stderr)
    path: Path = args.file
    try:
        content = path.read_bytes()
    except OSError as exc:
        print(f"gateway publish: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_REFUSED
    return asyncio.run(_publish(settings, args, content))


async def _trace(settings: GatewaySettings, query: str) -> Any:
    from gateway.pipeline.trace import trace
    from gateway.registry.db import create_engine

    await require_schema(settings.database)
    engine = create_engine(settings.database)
    try:
        return await trace(engine, query)
    finally:
        await engine.dispose()


def _trace_command(args: argparse.Namespace) -> int:
    from gateway.pipeline.trace import render

    report = asyncio.run(_trace(settings_from(args), args.query))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        sys.stdout.write(render(report))
    return 0 if report.found else EXIT_NOT_FOUND


def register(sub: Any) -> None:
    """Add ``publish`` and ``trace`` to the ``gateway`` parser."""
    p = sub.add_parser(
        "publish",
        help="place a signed notification (FO/CO + FS + GO) in a sender's OUT folder",
    )
    p.add_argument("--sender", required=True, help="6-digit sender number")
    p.add_argument("--env", choices=["R", "T", "S"], default="R", help="environment (OUT folder)")
    p.add_argument("--application", default="NOTI", help="4-letter code in the name (NOTI)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("file", type=Path, help="the notification's content")
    p.set_defaults(handler=_publish_command)

    t = sub.add_parser("trace", help="where is my file? a ticket or a file name, from the DB")
    t.add_argument("query", help="13-character ticket or a file name")
    t.add_argument("--json", action="store_true", help="print the report as JSON")
    t.set_defaults(handler=_trace_command)
