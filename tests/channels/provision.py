"""Provision senders in a real registry through its service API (no fakes, no direct SQL).

enterprise (operator) -> HTB first login (activates it) -> quality -> configuration saved ->
technical user -> SFTP channel with the test's SSH public key (assigns the sender number) ->
subscriptions. The steps are tests/pipeline/provision.py's; this module adds the SFTP tests' view
(several keys, a whole database at once). Used by the SFTP tests and by bench/sftp.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from tests.pipeline.provision import ok, provision

ROOT = Path(__file__).resolve().parents[2]
CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


@dataclass(frozen=True, slots=True)
class Sender:
    """A provisioned sender: the technical user's login, its sender number and applications."""

    login: str
    number: str
    applications: frozenset[str]


def registry_on(engine_url: str, state_dir: Path) -> Registry:
    """A registry with cheap password hashing (tests only)."""
    return Registry(
        create_engine(engine_url),
        clock=lambda: datetime.now(UTC),
        notifier=OutboxNotifier(state_dir / "outbox"),
        hashing=PasswordHashing(CHEAP),
        catalogue=load_service_catalogue(ROOT / "config" / "services.toml"),
    )


async def provision_sender(
    registry: Registry,
    *,
    index: int,
    public_keys: list[str],
    applications: tuple[str, ...] = ("DMFA", "WECH"),
) -> Sender:
    """One enterprise with one employer quality whose technical user sends over SFTP."""
    first, *others = public_keys
    made = await provision(registry, index=index, ssh_public_key=first, applications=applications)
    for key in others:
        ok(await registry.add_ssh_key(actor=made.htb, quality=made.quality, key=key))
    return Sender(login=made.login, number=made.number, applications=frozenset(applications))


async def provision_database(
    engine_url: str, state_dir: Path, keys: list[list[str]]
) -> list[Sender]:
    """Migrate ``engine_url`` and provision one sender per entry of ``keys`` (public key lines)."""
    await migrate(engine_url)
    registry = registry_on(engine_url, state_dir)
    try:
        return [
            await provision_sender(registry, index=i, public_keys=k) for i, k in enumerate(keys)
        ]
    finally:
        await registry.engine.dispose()
