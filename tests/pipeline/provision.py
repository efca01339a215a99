"""Provision a sender for the pipeline tests through the registry's service API (no direct SQL).

enterprise (operator) → HTB first login (activates it) → employer quality → configuration saved →
technical user → SFTP channel (assigns the sender number) → subscriptions → signing certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

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

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sender:
    """A provisioned sender."""

    login: str
    number: str
    htb: str
    quality: QualityRef


def kbo(index: int) -> str:
    """A valid enterprise number (starts with 0, mod-97 check digits) for ``index``."""
    body = 4_000_000 + index
    return f"{body:08d}{97 - body % 97:02d}"


def nrn(index: int) -> str:
    """A valid national register number (born 1985-07-30) with serial ``index``."""
    body = int(f"850730{index + 1:03d}")
    return f"{body:09d}{97 - body % 97:02d}"


def ok(value: T | Refusal) -> T:
    """The value, or fail the test with the registry's refusal."""
    if isinstance(value, Refusal):
        raise AssertionError(f"provisioning refused: {value}")
    return value


async def provision(
    registry: Registry,
    *,
    index: int,
    ssh_public_key: str,
    applications: tuple[str, ...] = ("DMFA", "WECH"),
    certificates: tuple[bytes, ...] = (),
) -> Sender:
    """One enterprise with an employer quality sending over SFTP, with signing certificates."""
    number = kbo(index)
    htb = f"htb{index}"
    provisioned = ok(
        await registry.provision_enterprise(
            actor=None,
            kbo=number,
            name=f"Employer {index}",
            htb=Person(
                name=f"Manager {index}",
                email=f"htb{index}@example.test",
                phone="+3220000000",
                national_register_number=nrn(index),
            ),
            htb_login=htb,
        )
    )
    assert provisioned.issued is not None
    login = await registry.console_login(htb, PasswordCredential(provisioned.issued.password))
    assert isinstance(login, Principal), login
    activated = ok(await registry.activate_quality(actor=htb, kbo=number, kind="employer"))
    quality = (
        activated
        if isinstance(activated, QualityRef)
        else QualityRef(EnterpriseNumber(number), "employer")
    )
    assert await registry.save_configuration(actor=htb, quality=quality) is None
    technical = ok(
        await registry.set_technical_user(
            actor=htb,
            quality=quality,
            person=Person(name=f"Payroll {index}", email=f"tu{index}@example.test"),
            login=f"tu{index}",
        )
    )
    sender = ok(
        await registry.add_channel(
            actor=htb, quality=quality, kind=ChannelKind.sftp, ssh_keys=[ssh_public_key]
        )
    )
    ok(await registry.set_services(actor=htb, quality=quality, codes=applications))
    for cert in certificates:
        ok(await registry.upload_certificate(actor=htb, quality=quality, data=cert))
    return Sender(login=technical, number=str(sender), htb=htb, quality=quality)
