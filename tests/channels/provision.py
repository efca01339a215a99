"""Provision senders in a real registry through its service API (no fakes, no direct SQL).

enterprise (operator) -> HTB first login (activates it) -> quality -> configuration saved ->
technical user -> SFTP channel with the test's SSH public key (assigns the sender number) ->
subscriptions. Used by the SFTP tests and by bench/sftp.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.registry.types import (
    ChannelKind,
    EnterpriseNumber,
    PasswordCredential,
    Person,
    Principal,
    QualityRef,
    Refusal,
)

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


@dataclass(frozen=True, slots=True)
class Sender:
    """A provisioned sender: the technical user's login, its sender number and applications."""

    login: str
    number: str
    applications: frozenset[str]


def kbo(prefix: int) -> str:
    """A valid 10-digit enterprise number (mod-97 check digits) from an 8-digit prefix."""
    return f"{prefix:08d}{97 - prefix % 97:02d}"


def nrn(birth: str, serial: int) -> str:
    """A valid national register number (born before 2000) from YYMMDD and a serial."""
    body = int(f"{birth}{serial:03d}")
    return f"{body:09d}{97 - body % 97:02d}"


def registry_on(engine_url: str, state_dir: Path) -> Registry:
    """A registry with cheap password hashing (tests only)."""
    return Registry(
        create_engine(engine_url),
        clock=lambda: datetime.now(UTC),
        notifier=OutboxNotifier(state_dir / "outbox"),
        hashing=PasswordHashing(CHEAP),
        catalogue=load_service_catalogue(ROOT / "config" / "services.toml"),
    )


def _ok(value: T | Refusal) -> T:
    if isinstance(value, Refusal):
        raise AssertionError(f"provisioning refused: {value}")
    return value


async def provision_sender(
    registry: Registry,
    *,
    index: int,
    public_keys: list[str],
    applications: tuple[str, ...] = ("DMFA", "WECH"),
) -> Sender:
    """One enterprise with one employer quality whose technical user sends over SFTP."""
    number = kbo(4_000_000 + index)
    htb_login = f"htb{index}"
    provisioned = _ok(
        await registry.provision_enterprise(
            actor=None,
            kbo=number,
            name=f"Employer {index}",
            htb=Person(
                name=f"Manager {index}",
                email=f"htb{index}@example.test",
                phone="+3220000000",
                national_register_number=nrn("850730", index + 1),
            ),
            htb_login=htb_login,
        )
    )
    issued = provisioned.issued
    if issued is None:
        raise AssertionError("an HTB with a national number gets the password directly")
    login = await registry.console_login(htb_login, PasswordCredential(issued.password))
    if not isinstance(login, Principal):
        raise AssertionError(f"HTB login failed: {login}")
    quality = _ok(await registry.activate_quality(actor=htb_login, kbo=number, kind="employer"))
    if not isinstance(quality, QualityRef):
        quality = QualityRef(EnterpriseNumber(number), "employer")
    _ok(await registry.save_configuration(actor=htb_login, quality=quality) or quality)
    technical = _ok(
        await registry.set_technical_user(
            actor=htb_login,
            quality=quality,
            person=Person(name=f"Payroll {index}", email=f"tu{index}@example.test"),
            login=f"tu{index}",
        )
    )
    sender = _ok(
        await registry.add_channel(
            actor=htb_login, quality=quality, kind=ChannelKind.sftp, ssh_keys=public_keys
        )
    )
    _ok(await registry.set_services(actor=htb_login, quality=quality, codes=applications))
    return Sender(login=technical, number=str(sender), applications=frozenset(applications))


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
