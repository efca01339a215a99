"""Contract tests of ``authenticate`` (the channels' one login service) on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import pytest

from gateway.registry.service import Registry
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    ClientCertificateCredential,
    PasswordCredential,
    Principal,
    PrincipalKind,
    PublicKeyCredential,
    QualityRef,
    Refusal,
)
from tests.registry.configured import TECH, configured
from tests.registry.conftest import Certs, KeyPair
from tests.registry.world import EMPLOYER_A, KBO_A, ok, person

FTP_PASSWORD = "ftp-secret-42"


async def test_ssh_key_login(registry: Registry, ssh_keys: list[KeyPair]) -> None:
    """The registered key logs in, by login or by sender number, whatever its comment."""
    sender = await configured(registry, ssh_keys[0].public_line)
    algorithm, blob, _comment = ssh_keys[0].public_line.split(" ", 2)
    for login, line in (
        (TECH, ssh_keys[0].public_line),
        (TECH, f"{algorithm} {blob}"),
        (sender, f"{algorithm} {blob} another-comment"),
    ):
        principal = await registry.authenticate(
            login, PublicKeyCredential(line), channel=ChannelKind.sftp
        )
        assert isinstance(principal, Principal)
        assert principal.login == TECH
        assert principal.kind is PrincipalKind.technical
        assert principal.sender == sender
        assert principal.enterprise == KBO_A
        assert principal.applications == frozenset({"DMFA", "DIMN"})


def _garbage_keys(valid: str) -> list[str]:
    algorithm, blob = valid.split()[:2]
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    return [
        "",
        "ssh-ed25519",
        "ssh-ed25519 AAAA",
        "ssh-ed25519 !!!notbase64!!!",
        f"ssh-dss {blob}",
        f"ssh-rsa {blob}",  # type field disagrees with the blob
        f"{algorithm} {base64.b64encode(bytes(raw)).decode()}",  # another (valid-looking) key
        f"{algorithm} {blob}\n",
        f"{algorithm}\x00 {blob}",
    ]


async def test_ssh_key_negative_matrix(registry: Registry, ssh_keys: list[KeyPair]) -> None:
    """Empty, garbage, unknown-algorithm, mismatched and other users' keys are all refused."""
    await configured(registry, ssh_keys[0].public_line)
    for line in [*_garbage_keys(ssh_keys[0].public_line), ssh_keys[1].public_line]:
        if line.endswith("\n"):
            continue  # a trailing newline is whitespace, not a different key
        result = await registry.authenticate(
            TECH, PublicKeyCredential(line), channel=ChannelKind.sftp
        )
        assert result == AuthFailure("bad_credential"), line
    # The right key on a channel the quality does not have:
    result = await registry.authenticate(
        TECH, PublicKeyCredential(ssh_keys[0].public_line), channel=ChannelKind.webservice
    )
    assert result == AuthFailure("channel_not_allowed")


async def test_unknown_blocked_deleted_and_personal_accounts(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """Unknown logins, blocked or deleted technical users and personal users are refused."""
    key = PublicKeyCredential(ssh_keys[0].public_line)
    await configured(registry, ssh_keys[0].public_line)
    unknown = await registry.authenticate("nobody", key, channel=ChannelKind.sftp)
    assert unknown == AuthFailure("unknown_login")
    bad = await registry.authenticate("x' OR '1'='1", key, channel=ChannelKind.sftp)
    assert bad == AuthFailure("invalid_login")
    personal = await registry.authenticate("htb-a", key, channel=ChannelKind.sftp)
    assert personal == AuthFailure("channel_not_allowed")
    assert await registry.block_user(actor="htb-a", login=TECH) is None
    assert await registry.authenticate(TECH, key, channel=ChannelKind.sftp) == AuthFailure(
        "blocked"
    )
    assert await registry.unblock_user(actor="htb-a", login=TECH) is None
    assert isinstance(await registry.authenticate(TECH, key, channel=ChannelKind.sftp), Principal)
    assert await registry.delete_user(actor="htb-a", login=TECH) is None
    assert await registry.authenticate(TECH, key, channel=ChannelKind.sftp) == AuthFailure(
        "deleted"
    )


async def test_ftp_password_and_allow_list(registry: Registry, ssh_keys: list[KeyPair]) -> None:
    """FTP: the channel password, from an allowed network only; the switch turns it off."""
    await configured(registry, ssh_keys[0].public_line)
    ok(
        await registry.add_channel(
            actor="htb-a",
            quality=EMPLOYER_A,
            kind=ChannelKind.ftp,
            ftp_password=FTP_PASSWORD,
            networks=["192.0.2.0/24"],
        )
    )
    good = PasswordCredential(FTP_PASSWORD)
    inside = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="192.0.2.7")
    assert isinstance(inside, Principal)
    outside = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="198.51.100.1")
    assert outside == AuthFailure("network_not_allowed", networks=("192.0.2.0/24",))
    unknown_peer = await registry.authenticate(TECH, good, channel=ChannelKind.ftp)
    assert unknown_peer == AuthFailure("network_not_allowed", networks=("192.0.2.0/24",))
    wrong = await registry.authenticate(
        TECH, PasswordCredential("wrong-pass-1"), channel=ChannelKind.ftp, peer="192.0.2.7"
    )
    assert wrong == AuthFailure("bad_credential")
    on_sftp = await registry.authenticate(TECH, good, channel=ChannelKind.sftp)
    assert on_sftp == AuthFailure("bad_credential")
    assert await registry.set_password_login(actor="htb-a", kbo=KBO_A, enabled=False) is None
    off = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="192.0.2.7")
    assert off == AuthFailure("password_login_disabled")
    key = await registry.authenticate(
        TECH, PublicKeyCredential(ssh_keys[0].public_line), channel=ChannelKind.sftp
    )
    assert isinstance(key, Principal)


async def test_client_certificate(
    registry: Registry, ssh_keys: list[KeyPair], certs: Certs
) -> None:
    """The web service accepts exactly the registered client certificate."""
    await configured(registry, ssh_keys[0].public_line)
    client = certs.make("client", key_usage="critical,digitalSignature", der=True)
    other = certs.make("other-client", key_usage="critical,digitalSignature", der=True)
    ok(
        await registry.add_channel(
            actor="htb-a",
            quality=EMPLOYER_A,
            kind=ChannelKind.webservice,
            client_certificate=client,
        )
    )
    good = await registry.authenticate(
        TECH, ClientCertificateCredential(client), channel=ChannelKind.webservice
    )
    assert isinstance(good, Principal)
    for der in (other, b"", client[:-1]):
        bad = await registry.authenticate(
            TECH, ClientCertificateCredential(der), channel=ChannelKind.webservice
        )
        assert bad == AuthFailure("bad_credential")


async def test_pending_enterprise_refuses_its_technical_user(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """A technical user of an enterprise whose HTB never logged in cannot log in."""
    done = await registry.provision_enterprise(
        actor=None, kbo=KBO_A, name="A", htb=person("Ann"), htb_login="htb-a"
    )
    ok(done)
    ok(await registry.activate_quality(actor=None, kbo=KBO_A, kind="employer"))
    ok(await registry.save_configuration(actor=None, quality=EMPLOYER_A))
    ok(
        await registry.set_technical_user(
            actor=None, quality=EMPLOYER_A, person=person("T"), login=TECH
        )
    )
    ok(
        await registry.add_channel(
            actor=None,
            quality=EMPLOYER_A,
            kind=ChannelKind.sftp,
            ssh_keys=[ssh_keys[0].public_line],
        )
    )
    result = await registry.authenticate(
        TECH, PublicKeyCredential(ssh_keys[0].public_line), channel=ChannelKind.sftp
    )
    assert result == AuthFailure("enterprise_pending")


@pytest.mark.parametrize(
    "payload",
    [
        "' OR 1=1 --",
        "admin'--",
        'x"; DROP TABLE users; --',
        "1; SELECT pg_sleep(5)",
        "%' OR login LIKE '%",
    ],
)
async def test_sql_injection_payloads_in_logins(
    registry: Registry, ssh_keys: list[KeyPair], payload: str
) -> None:
    """SQL payloads as logins and passwords are refused as logins, and every table survives."""
    await configured(registry, ssh_keys[0].public_line)
    for credential in (PasswordCredential(payload), PublicKeyCredential(payload)):
        result = await registry.authenticate(payload, credential, channel=ChannelKind.ftp)
        assert isinstance(result, AuthFailure)
        assert result.reason in {"invalid_login", "unknown_login"}
    unknown = await registry.overview(actor=None, quality=QualityRef(KBO_A, payload))
    assert isinstance(unknown, Refusal)
    overview = await registry.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    assert overview.technical_user is not None


async def test_certificate_alone_finds_its_sender(
    registry: Registry, ssh_keys: list[KeyPair], certs: Certs
) -> None:
    """By certificate alone: the channel's technical user, or why not (unknown, blocked...)."""
    sender = await configured(registry, ssh_keys[0].public_line)
    client = certs.make("client-alone", key_usage="critical,digitalSignature", der=True)
    other = certs.make("other-alone", key_usage="critical,digitalSignature", der=True)
    ok(
        await registry.add_channel(
            actor="htb-a",
            quality=EMPLOYER_A,
            kind=ChannelKind.webservice,
            client_certificate=client,
        )
    )
    assert await registry.client_certificates() == [client]
    good = await registry.authenticate_certificate(client, peer="192.0.2.7")
    assert isinstance(good, Principal)
    assert (good.login, good.sender) == (TECH, sender)
    for der in (other, b"", client[:-1]):
        assert await registry.authenticate_certificate(der) == AuthFailure("unknown_certificate")
    assert await registry.block_user(actor="htb-a", login=TECH) is None
    assert await registry.authenticate_certificate(client) == AuthFailure("blocked")
    assert await registry.delete_user(actor="htb-a", login=TECH) is None
    assert await registry.authenticate_certificate(client) == AuthFailure("deleted")
