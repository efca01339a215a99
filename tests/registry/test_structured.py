"""Contract tests of the structured-message configuration on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.registry.service import Registry
from gateway.registry.types import ChannelKind, QualityRef, Refusal, SenderNumber
from tests.registry.configured import TECH, configured
from tests.registry.conftest import Certs, Clock, KeyPair
from tests.registry.world import EMPLOYER_A, KBO_A, ok, person, provision


async def test_steps_run_in_the_guides_order(registry: Registry, ssh_keys: list[KeyPair]) -> None:
    """Each step before its predecessor is refused with step_order, naming the missing step."""
    await provision(registry, KBO_A, "htb-a")
    ok(await registry.activate_quality(actor="htb-a", kbo=KBO_A, kind="employer"))
    q = EMPLOYER_A
    early_tech = await registry.set_technical_user(actor="htb-a", quality=q, person=person("T"))
    assert isinstance(early_tech, Refusal)
    assert early_tech.reason == "step_order"
    assert "save the configuration" in early_tech.message
    ok(await registry.save_configuration(actor="htb-a", quality=q))
    early_channel = await registry.add_channel(
        actor="htb-a", quality=q, kind=ChannelKind.sftp, ssh_keys=[ssh_keys[0].public_line]
    )
    assert isinstance(early_channel, Refusal)
    assert "technical user" in early_channel.message
    early_services = await registry.set_services(actor="htb-a", quality=q, codes=["DMFA"])
    assert isinstance(early_services, Refusal)
    assert early_services.reason == "step_order"
    overview = await registry.overview(actor="htb-a", quality=q)
    assert not isinstance(overview, Refusal)
    assert overview.sender is None
    assert overview.configuration_saved


async def test_sender_number_assigned_at_first_channel(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """The first channel assigns a 6-digit number; a second channel keeps it; qualities differ."""
    sender = await configured(registry, ssh_keys[0].public_line)
    assert len(sender) == 6
    assert sender.isdigit()
    second = await registry.add_channel(
        actor="htb-a",
        quality=EMPLOYER_A,
        kind=ChannelKind.ftp,
        ftp_password="ftp-secret-42",
        networks=["192.0.2.0/24", "Publilink"],
    )
    assert second == sender
    ok(await registry.activate_quality(actor="htb-a", kbo=KBO_A, kind="social_secretariat"))
    other = QualityRef(KBO_A, "social_secretariat")
    ok(await registry.save_configuration(actor="htb-a", quality=other))
    ok(await registry.set_technical_user(actor="htb-a", quality=other, person=person("T2")))
    other_sender = await registry.add_channel(
        actor="htb-a", quality=other, kind=ChannelKind.sftp, ssh_keys=[ssh_keys[1].public_line]
    )
    assert isinstance(other_sender, str)
    assert other_sender != sender
    # Deleting the technical user frees nothing: the number stays with its quality.
    assert await registry.delete_user(actor="htb-a", login=TECH) is None
    overview = await registry.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    assert overview.sender == sender
    assert overview.technical_user is None


async def test_overview_shows_everything(
    registry: Registry, ssh_keys: list[KeyPair], certs: Certs
) -> None:
    """The overview lists technical user, channels, certificate, services and sender number."""
    sender = await configured(registry, ssh_keys[0].public_line)
    cert = await registry.upload_certificate(
        actor="htb-a", quality=EMPLOYER_A, data=certs.make("signer-overview")
    )
    assert not isinstance(cert, Refusal)
    overview = await registry.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    assert overview.sender == sender
    assert overview.technical_user is not None
    assert overview.technical_user["login"] == TECH
    assert [c.kind for c in overview.channels] == [ChannelKind.sftp]
    assert len(overview.channels[0].ssh_keys) == 1
    assert overview.services == ("DIMN", "DMFA")
    assert [c.sha256 for c in overview.certificates] == [cert.sha256]
    assert "CN=signer-overview" in overview.certificates[0].subject


@pytest.mark.parametrize("der", [False, True])
async def test_certificate_pem_and_der(
    registry: Registry, ssh_keys: list[KeyPair], certs: Certs, der: bool
) -> None:
    """A signing certificate is accepted as PEM and as DER, and reaches the sender profile."""
    sender = await configured(registry, ssh_keys[0].public_line)
    data = certs.make(f"signer-{der}", der=der)
    view = await registry.upload_certificate(actor="htb-a", quality=EMPLOYER_A, data=data)
    assert not isinstance(view, Refusal)
    profile = await registry.sender_profile(sender)
    assert profile is not None
    assert len(profile.signing_certificates) == 1
    assert profile.signing_certificates[0][:1] == b"\x30"  # DER SEQUENCE
    again = await registry.upload_certificate(actor="htb-a", quality=EMPLOYER_A, data=data)
    assert isinstance(again, Refusal)
    assert again.reason == "duplicate"


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("expired", "expired on"),
        ("not_yet_valid", "valid only from"),
        ("not_signing", "not for signing"),
        ("malformed", "malformed"),
    ],
)
async def test_certificate_refusals(
    registry: Registry,
    ssh_keys: list[KeyPair],
    certs: Certs,
    clock: Clock,
    case: str,
    words: str,
) -> None:
    """Expired, not yet valid, non-signing and malformed certificates are refused with a reason."""
    await configured(registry, ssh_keys[0].public_line)
    data = certs.make(f"c-{case}", days=10)
    if case == "expired":
        clock.offset = timedelta(days=11)
    elif case == "not_yet_valid":
        clock.offset = -timedelta(days=1)
    elif case == "not_signing":
        data = certs.make("c-encipher", key_usage="critical,keyEncipherment,keyAgreement")
    else:
        data = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    refused = await registry.upload_certificate(actor="htb-a", quality=EMPLOYER_A, data=data)
    assert isinstance(refused, Refusal)
    assert refused.reason == "bad_certificate"
    assert words in refused.message


async def test_services_must_be_in_the_catalogue(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """An application code outside config/services.toml is refused; the old set is kept."""
    sender = await configured(registry, ssh_keys[0].public_line)
    refused = await registry.set_services(actor="htb-a", quality=EMPLOYER_A, codes=["DMFA", "XXXX"])
    assert isinstance(refused, Refusal)
    assert "XXXX" in refused.message
    profile = await registry.sender_profile(sender)
    assert profile is not None
    assert profile.applications == frozenset({"DMFA", "DIMN"})


async def test_channel_inputs_are_checked(registry: Registry, ssh_keys: list[KeyPair]) -> None:
    """Weak FTP passwords, garbage keys and bad networks are refused; nothing is created."""
    await configured(registry, ssh_keys[0].public_line)
    weak = await registry.add_channel(
        actor="htb-a", quality=EMPLOYER_A, kind=ChannelKind.ftp, ftp_password="password"
    )
    assert isinstance(weak, Refusal)
    assert weak.reason == "password_policy"
    bad_net = await registry.add_channel(
        actor="htb-a",
        quality=EMPLOYER_A,
        kind=ChannelKind.ftp,
        ftp_password="ftp-secret-42",
        networks=["the internet"],
    )
    assert isinstance(bad_net, Refusal)
    garbage = await registry.add_ssh_key(
        actor="htb-a", quality=EMPLOYER_A, key="ssh-ed25519 AAAAnotakey comment"
    )
    assert isinstance(garbage, Refusal)
    assert garbage.reason == "bad_key"
    overview = await registry.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    assert [c.kind for c in overview.channels] == [ChannelKind.sftp]


async def test_unknown_sender_has_no_profile(registry: Registry) -> None:
    """sender_profile answers None for a number nobody holds."""
    assert await registry.sender_profile(SenderNumber("123456")) is None
