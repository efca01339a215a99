"""Run a pipeline to quiescence in its own process (the crash-safety tests' subject).

    python -m tests.pipeline.runner --state DIR --db URL --trust ROOT.pem [--workers N]

Builds the registry and the pipeline exactly as ``build_harness`` does (the sender is already
provisioned in the database), then calls ``run_once()`` until a pass finds nothing to do, and
exits 0. With ``GATEWAY_TEST_CRASH_AT`` set, the pipeline kills the process at that step (exit
status 137) instead.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

from gateway.core.signature import TrustStore
from gateway.ops.settings import LimitSettings, PipelineSettings, SignatureSettings
from gateway.pipeline import Pipeline, ensure_gateway_identity
from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.spool.durable import StateSync

ROOT = Path(__file__).resolve().parents[2]


async def main(
    state: Path,
    db: str,
    trust: Path,
    concurrency: int,
    single_node: bool,
    state_sync: StateSync = StateSync.FILES,
) -> int:
    """Process every pending set, then return 0."""
    engine = create_engine(db)
    anchors = [trust.read_bytes()]  # noqa: ASYNC240 - start-up, before any work
    catalogue = load_service_catalogue(ROOT / "config" / "services.toml")
    registry = Registry(
        engine,
        clock=lambda: datetime.now(UTC),
        notifier=OutboxNotifier(state / "outbox"),
        hashing=PasswordHashing(Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)),
        catalogue=catalogue,
    )
    settings = PipelineSettings()
    key, cert = ensure_gateway_identity(state, settings)
    pipeline = Pipeline(
        pipeline=settings,
        limits=LimitSettings(),
        signature=SignatureSettings(),
        engine=engine,
        registry=registry,
        state_dir=state,
        gateway_key=key,
        gateway_cert=cert,
        trust=TrustStore.from_blobs(anchors, []),
        catalogue=catalogue,
        concurrency=concurrency,
        single_node=single_node,
        state_sync=state_sync,
    )
    if pipeline.single_node:
        await pipeline.ctx.store.release_all_claims()
    while await pipeline.run_once():
        pass
    await engine.dispose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--trust", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--multi-node", action="store_true")
    parser.add_argument("--state-sync", type=StateSync, default=StateSync.FILES)
    args = parser.parse_args()
    raise SystemExit(
        asyncio.run(
            main(
                args.state,
                args.db,
                args.trust,
                args.concurrency,
                not args.multi_node,
                args.state_sync,
            )
        )
    )
