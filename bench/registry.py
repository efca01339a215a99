"""Registry authentication speed with 10,000 senders provisioned, against named peers.

(a) SSH-key logins: ``Registry.authenticate(login, PublicKeyCredential, channel=sftp)`` per second,
    against the bare peer: one indexed ``SELECT`` of the same key through the stdlib ``sqlite3``
    module (what any key lookup must at least cost on this database).
(b) Password logins (FTP): ``Registry.authenticate(login, PasswordCredential, channel=ftp)`` per
    second with the argon2id parameters of the settings (``[security]``, defaults unless
    ``--config`` names a file), against the bare peer: ``argon2.PasswordHasher.verify`` with the
    same parameters and nothing else.

Both are measured sequentially (one login at a time) and with ``--concurrency`` logins in flight,
as a listener serving several clients would run them. The senders are provisioned with bulk
inserts (bound parameters) rather than through the service, which would take minutes; all FTP
channels share one password hash so provisioning does not pay 10,000 argon2 computations.
Usage: ``python bench/registry.py [--senders N] [--logins N] [--passwords N] [--database URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import insert

from gateway.ops.settings import load_settings
from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import parse_ssh_key
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.models import (
    ChannelRow,
    EnterpriseRow,
    PersonRow,
    QualityRow,
    SenderRow,
    SshKeyRow,
    SubscriptionRow,
    UserRow,
)
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry, hashing_from
from gateway.registry.types import (
    ChannelKind,
    PasswordCredential,
    Principal,
    PublicKeyCredential,
    Refusal,
)
from gateway.registry.validate import kbo_with_check_digits

PASSWORD = "bench-password-42"  # noqa: S105  (the benchmark's own throwaway FTP password)
BATCH = 1000
SERVICES = Path(__file__).resolve().parent.parent / "config" / "services.toml"


def _keys(count: int) -> list[str]:
    lines = []
    for _ in range(count):
        public = Ed25519PrivateKey.generate().public_key()
        lines.append(public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode())
    return lines


async def provision(registry: Registry, senders: int, keys: list[str]) -> None:
    """Bulk-insert ``senders`` active enterprises, each with an SFTP+FTP technical user."""
    now = datetime.now(UTC).isoformat()
    password_hash = await registry.hashing.hash(PASSWORD)
    rows: dict[type, list[dict[str, object]]] = {
        t: []
        for t in (
            EnterpriseRow,
            QualityRow,
            PersonRow,
            UserRow,
            SenderRow,
            ChannelRow,
            SshKeyRow,
            SubscriptionRow,
        )
    }
    for i in range(senders):
        n = i + 1
        key = parse_ssh_key(keys[i])
        assert not isinstance(key, Refusal)
        rows[EnterpriseRow].append(
            {
                "id": n,
                "kbo": kbo_with_check_digits(1_000_000 + n),
                "name": f"Bench {n}",
                "status": "active",
                "password_login": True,
                "created_at": now,
                "activated_at": now,
            }
        )
        rows[QualityRow].append(
            {
                "id": n,
                "enterprise_id": n,
                "kind": "employer",
                "activated_at": now,
                "structured_saved": True,
            }
        )
        rows[PersonRow].append(
            {
                "id": n,
                "name": f"Tech {n}",
                "email": f"t{n}@example.be",
                "phone": "",
                "language": "nl",
            }
        )
        rows[UserRow].append(
            {
                "id": n,
                "login": f"tech{n:05d}",
                "enterprise_id": n,
                "quality_id": n,
                "person_id": n,
                "kind": "technical",
                "status": "active",
                "password_hash": None,
                "must_change_password": False,
                "created_at": now,
            }
        )
        rows[SenderRow].append({"number": f"{10_000 + n:06d}", "quality_id": n, "assigned_at": now})
        for offset, kind, hashed in ((0, "sftp", None), (1, "ftp", password_hash)):
            rows[ChannelRow].append(
                {
                    "id": 2 * n - 1 + offset,
                    "quality_id": n,
                    "kind": kind,
                    "password_hash": hashed,
                    "allowed_networks": "[]",
                    "created_at": now,
                }
            )
        rows[SshKeyRow].append(
            {
                "id": n,
                "channel_id": 2 * n - 1,
                "algorithm": key.algorithm,
                "blob": key.blob,
                "sha256": key.sha256,
            }
        )
        rows[SubscriptionRow].append({"id": n, "quality_id": n, "application": "DMFA"})
    async with registry.engine.begin() as conn:
        for table, values in rows.items():
            for start in range(0, len(values), BATCH):
                await conn.execute(insert(table), values[start : start + BATCH])


async def _rate(
    calls: Sequence[tuple[str, object, ChannelKind]], registry: Registry, concurrency: int
) -> float:
    queue = list(calls)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            login, credential, channel = queue.pop()
            result = await registry.authenticate(login, credential, channel=channel)  # type: ignore[arg-type]
            if not isinstance(result, Principal):
                failures += 1

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{failures} logins failed; the benchmark is invalid")
    return len(calls) / elapsed


def _peer_key_lookups(path: Path, picks: list[tuple[str, str]]) -> float:
    conn = sqlite3.connect(path)
    try:
        start = time.perf_counter()
        for login, line in picks:
            key = parse_ssh_key(line)
            assert not isinstance(key, Refusal)
            row = conn.execute(
                "SELECT k.id FROM users u JOIN channels c ON c.quality_id = u.quality_id "
                "JOIN ssh_keys k ON k.channel_id = c.id "
                "WHERE u.login = ? AND c.kind = 'sftp' AND k.sha256 = ?",
                (login, key.sha256),
            ).fetchone()
            assert row is not None
        return len(picks) / (time.perf_counter() - start)
    finally:
        conn.close()


async def run(args: argparse.Namespace, folder: Path) -> None:
    settings = load_settings(args.config)
    sqlite_path = folder / "registry.sqlite3"
    url = args.database or f"sqlite+aiosqlite:///{sqlite_path}"
    await migrate(url)
    hashing = hashing_from(settings)
    registry = Registry(
        create_engine(url),
        clock=lambda: datetime.now(UTC),
        notifier=OutboxNotifier(folder / "outbox"),
        hashing=hashing,
        catalogue=load_service_catalogue(SERVICES),
    )
    p = hashing.params
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite (file, WAL)"
    print(f"registry: {args.senders} senders provisioned on {backend}")
    print(
        f"argon2id parameters (settings [security]): time_cost={p.time_cost}, "
        f"memory_kib={p.memory_kib}, parallelism={p.parallelism}"
    )
    started = time.perf_counter()
    keys = _keys(args.senders)
    await provision(registry, args.senders, keys)
    print(f"provisioning: {time.perf_counter() - started:.1f} s (bulk insert, keys generated)")

    rng = random.Random(7)
    picks = [
        (f"tech{n:05d}", keys[n - 1])
        for n in (rng.randint(1, args.senders) for _ in range(args.logins))
    ]
    key_calls = [(login, PublicKeyCredential(line), ChannelKind.sftp) for login, line in picks]
    results: dict[str, float] = {}
    for concurrency in (1, args.concurrency):
        await _rate(key_calls[:50], registry, concurrency)  # warm-up
        results[f"ssh_key_c{concurrency}"] = await _rate(key_calls, registry, concurrency)
    if not url.startswith("postgresql"):
        results["ssh_key_peer"] = _peer_key_lookups(sqlite_path, picks)

    password_calls = [
        (f"tech{rng.randint(1, args.senders):05d}", PasswordCredential(PASSWORD), ChannelKind.ftp)
        for _ in range(args.passwords)
    ]
    for concurrency in (1, args.concurrency):
        results[f"password_c{concurrency}"] = await _rate(password_calls, registry, concurrency)
    stored = await hashing.hash(PASSWORD)
    start = time.perf_counter()
    for _ in range(args.passwords):
        hashing.verify_sync(stored, PASSWORD)
    results["password_peer"] = args.passwords / (time.perf_counter() - start)
    await registry.engine.dispose()

    c = args.concurrency
    print(f"(a) SSH-key login, {args.logins} random senders:")
    print(f"    authenticate, 1 at a time      {results['ssh_key_c1']:9.0f} /s")
    print(f"    authenticate, {c} in flight      {results[f'ssh_key_c{c}']:9.0f} /s")
    if "ssh_key_peer" in results:
        print(f"    peer: bare sqlite3 SELECT      {results['ssh_key_peer']:9.0f} /s")
        ratio = results["ssh_key_c1"] / results["ssh_key_peer"]
        print(f"    ratio authenticate/peer (1 at a time): {ratio:.2f}")
    print(f"(b) password login (FTP), {args.passwords} logins:")
    print(f"    authenticate, 1 at a time      {results['password_c1']:9.1f} /s")
    print(f"    authenticate, {c} in flight      {results[f'password_c{c}']:9.1f} /s")
    print(f"    peer: argon2 verify alone      {results['password_peer']:9.1f} /s")
    ratio = results["password_c1"] / results["password_peer"]
    print(f"    ratio authenticate/peer (1 at a time): {ratio:.2f}")
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=10_000)
    parser.add_argument("--logins", type=int, default=3000, help="SSH-key logins to time")
    parser.add_argument("--passwords", type=int, default=40, help="password logins to time")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: temp SQLite)")
    parser.add_argument("--config", type=Path, default=None, help="settings file ([security])")
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as folder:
        asyncio.run(run(parser.parse_args(), Path(folder)))


if __name__ == "__main__":
    main()
