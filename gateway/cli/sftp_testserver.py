"""Internal entry point: run the SFTP channel alone, for tests and benchmarks (not for production).

``python -m gateway.cli.sftp_testserver --state-dir DIR --database-url URL [--port 0]``
migrates the database, recovers the spool (a crash's leftovers go), starts the SFTP listener on
127.0.0.1 and prints one line ``port N`` on stdout once it accepts connections (JSON logs go
to stderr); it runs until killed. The registry must already be provisioned. The production
daemon is ``gateway serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from gateway.channels.sftp import SftpConfig, SftpGateway
from gateway.ops.heap import settle as settle_heap
from gateway.ops.logging import configure_logging
from gateway.ops.loop import EventLoop, run
from gateway.ops.settings import GatewaySettings, load_settings
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import build_registry
from gateway.spool import Spool, SpoolLimits
from gateway.spool.durable import StateSync, choose_state_sync
from gateway.spool.folders import Folders, NamePolicy


async def serve(settings: GatewaySettings, port: int) -> None:
    """Run the SFTP listener until cancelled."""
    state_dir, database_url = settings.state_dir, settings.database
    configure_logging(fmt="json", level="info", stream=sys.stderr)
    await migrate(database_url)
    engine = create_engine(database_url)
    registry = build_registry(
        settings, notifier=OutboxNotifier(state_dir / "outbox"), engine=engine
    )
    spool = Spool(
        state_dir=state_dir,
        engine=engine,
        limits=SpoolLimits.from_settings(settings.limits),
        state_sync=choose_state_sync(StateSync(settings.state_sync), state_dir).mode,
    )
    await spool.recover()
    config = SftpConfig.from_settings(settings)
    gateway = SftpGateway(
        config=dataclasses.replace(config, host="127.0.0.1", port=port),
        authenticator=registry,
        folders=Folders(spool=spool, names=NamePolicy.from_settings(settings)),
    )
    await gateway.start()
    settle_heap()  # as the daemon does once started, so benches measure what it runs
    sys.stdout.write(f"port {gateway.port}\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        gateway.close()
        await gateway.wait_closed()
        spool.close()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    settings = load_settings(state_dir=args.state_dir, database_url=args.database_url)
    run(lambda: serve(settings, args.port), EventLoop(settings.event_loop))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
