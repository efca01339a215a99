"""A registry with one enterprise whose employer quality is configured for structured messages."""

from __future__ import annotations

from gateway.registry.service import Registry
from gateway.registry.types import ChannelKind, Refusal, SenderNumber
from tests.registry.world import EMPLOYER_A, KBO_A, ok, person, provision

TECH = "tech-a"


async def configured(registry: Registry, ssh_key: str) -> SenderNumber:
    """Enterprise A (active), quality employer, technical user ``tech-a``, SFTP with ``ssh_key``."""
    await provision(registry, KBO_A, "htb-a")
    ok(await registry.activate_quality(actor="htb-a", kbo=KBO_A, kind="employer"))
    ok(await registry.save_configuration(actor="htb-a", quality=EMPLOYER_A))
    ok(
        await registry.set_technical_user(
            actor="htb-a", quality=EMPLOYER_A, person=person("Tech A"), login=TECH
        )
    )
    sender = await registry.add_channel(
        actor="htb-a", quality=EMPLOYER_A, kind=ChannelKind.sftp, ssh_keys=[ssh_key]
    )
    if isinstance(sender, Refusal):
        raise AssertionError(sender)
    ok(await registry.set_services(actor="htb-a", quality=EMPLOYER_A, codes=["DMFA", "DIMN"]))
    return sender
