"""Contract tests of access management on SQLite and PostgreSQL: provisioning, activation, users."""

from __future__ import annotations

import asyncio
import json
import re
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from gateway.registry.credentials import PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.notify import CombinedNotifier, OutboxNotifier, SmsHttpNotifier
from gateway.registry.service import Registry
from gateway.registry.types import (
    AuthFailure,
    PasswordCredential,
    Person,
    Principal,
    Refusal,
    Role,
)
from tests.registry.conftest import Clock
from tests.registry.world import EMPLOYER_A, KBO_A, ok, person, provision


async def test_provision_refuses_bad_kbo_and_duplicates(registry: Registry) -> None:
    """A wrong check digit and a second registration of the same number are refused."""
    bad = await registry.provision_enterprise(
        actor=None, kbo="0203201341", name="X", htb=person("Ann")
    )
    assert isinstance(bad, Refusal)
    assert "mod-97" in bad.message
    ok(await registry.provision_enterprise(actor=None, kbo=KBO_A, name="A", htb=person("Ann")))
    again = await registry.provision_enterprise(actor=None, kbo=KBO_A, name="A", htb=person("Bo"))
    assert isinstance(again, Refusal)
    assert again.reason == "duplicate"


async def test_national_numbers_with_wrong_check_digits_are_refused(registry: Registry) -> None:
    """Provisioning an HTB and creating a user both check the national number's check digits."""
    bad = person("Ann", nrn="12345678901")
    refused = await registry.provision_enterprise(actor=None, kbo=KBO_A, name="A", htb=bad)
    assert isinstance(refused, Refusal)
    assert (refused.reason, "mod-97" in refused.message) == ("invalid", True)
    ok(await registry.provision_enterprise(actor=None, kbo=KBO_A, name="A", htb=person("Ann")))
    ok(await registry.activate_quality(actor=None, kbo=KBO_A, kind=EMPLOYER_A.kind))
    user = await registry.create_user(actor=None, quality=EMPLOYER_A, person=bad, login="bo-x")
    assert isinstance(user, Refusal)
    assert "mod-97" in user.message


async def test_provision_is_the_operators_task(registry: Registry) -> None:
    """An access manager cannot provision an enterprise."""
    result = await registry.provision_enterprise(
        actor="someone", kbo=KBO_A, name="A", htb=person("Ann")
    )
    assert isinstance(result, Refusal)
    assert result.reason == "forbidden"


def _outbox(outbox: Path) -> tuple[str, str]:
    """The e-mail body and the SMS text written to the outbox."""
    eml = next(outbox.glob("*.eml"))
    sms = next(outbox.glob("*.sms.json"))
    body = message_from_bytes(eml.read_bytes(), policy=default_policy).get_body()
    assert body is not None
    return body.get_content(), json.loads(sms.read_text())["text"]


async def test_htb_without_national_number_is_activated_by_mail_and_sms(
    registry: Registry, outbox: Path
) -> None:
    """Username by e-mail, temporary password by SMS; the first login activates the enterprise."""
    done = await registry.provision_enterprise(
        actor=None, kbo=KBO_A, name="A", htb=person("Anne Martin", nrn=None)
    )
    assert not isinstance(done, Refusal)
    assert done.issued is None
    mail, sms = _outbox(outbox)
    login = re.search(r"username is: (\S+)", mail)
    password = re.search(r": (\S+)$", sms)
    assert login is not None
    assert password is not None
    assert login.group(1) == done.htb_login
    assert password.group(1) not in mail
    view = await registry.enterprise(actor=None, kbo=KBO_A)
    assert not isinstance(view, Refusal)
    assert view.status == "pending"
    principal = await registry.console_login(login.group(1), PasswordCredential(password.group(1)))
    assert isinstance(principal, Principal)
    assert principal.must_change_password
    view = await registry.enterprise(actor=None, kbo=KBO_A)
    assert not isinstance(view, Refusal)
    assert view.status == "active"


async def test_pending_enterprise_only_lets_its_htb_in(registry: Registry) -> None:
    """Before the HTB's first login, other users of the enterprise are refused."""
    done = await registry.provision_enterprise(
        actor=None, kbo=KBO_A, name="A", htb=person("Ann"), htb_login="htb-a"
    )
    assert not isinstance(done, Refusal)
    ok(await registry.activate_quality(actor=None, kbo=KBO_A, kind="employer"))
    user = await registry.create_user(actor=None, quality=EMPLOYER_A, person=person("Bob"))
    assert not isinstance(user, Refusal)
    refused = await registry.console_login(user.login, PasswordCredential(user.password))
    assert refused == AuthFailure("enterprise_pending")
    wrong = await registry.console_login("htb-a", PasswordCredential("not the password 1"))
    assert wrong == AuthFailure("bad_credential")
    view = await registry.enterprise(actor=None, kbo=KBO_A)
    assert not isinstance(view, Refusal)
    assert view.status == "pending"


async def _enterprise_with_user(registry: Registry) -> tuple[str, str]:
    await provision(registry, KBO_A, "htb-a")
    ok(await registry.activate_quality(actor="htb-a", kbo=KBO_A, kind="employer"))
    user = await registry.create_user(
        actor="htb-a", quality=EMPLOYER_A, person=person("Bob"), login="bob"
    )
    assert not isinstance(user, Refusal)
    return user.login, user.password


async def test_user_lifecycle(registry: Registry) -> None:
    """Create, block, unblock, reset (temporary), change, delete; each login answers accordingly."""
    login, password = await _enterprise_with_user(registry)
    first = await registry.console_login(login, PasswordCredential(password))
    assert isinstance(first, Principal)
    assert first.must_change_password
    assert await registry.block_user(actor="htb-a", login=login) is None
    assert await registry.console_login(login, PasswordCredential(password)) == AuthFailure(
        "blocked"
    )
    assert await registry.unblock_user(actor="htb-a", login=login) is None
    reset = await registry.reset_password(actor="htb-a", login=login)
    assert not isinstance(reset, Refusal)
    old = await registry.console_login(login, PasswordCredential(password))
    assert old == AuthFailure("bad_credential")
    weak = await registry.change_password(login=login, old=reset.password, new="tooshort")
    assert isinstance(weak, Refusal)
    assert "at least 10 characters" in weak.message
    new = "correct-horse-42"
    assert await registry.change_password(login=login, old=reset.password, new=new) is None
    changed = await registry.console_login(login, PasswordCredential(new))
    assert isinstance(changed, Principal)
    assert not changed.must_change_password
    assert await registry.delete_user(actor="htb-a", login=login) is None
    assert await registry.console_login(login, PasswordCredential(new)) == AuthFailure("deleted")
    reuse = await registry.create_user(
        actor="htb-a", quality=EMPLOYER_A, person=person("Other Bob"), login=login
    )
    assert isinstance(reuse, Refusal)
    assert reuse.reason == "duplicate"


async def test_self_service_change_needs_the_current_password(registry: Registry) -> None:
    """A wrong current password is refused and the stored one is kept."""
    login, password = await _enterprise_with_user(registry)
    refused = await registry.change_password(login=login, old="wrong-pass-11", new="another-one-22")
    assert isinstance(refused, Refusal)
    assert refused.reason == "bad_credential"
    assert isinstance(await registry.console_login(login, PasswordCredential(password)), Principal)


async def test_password_login_switch(registry: Registry) -> None:
    """With password login off, every password login of the enterprise is refused."""
    login, password = await _enterprise_with_user(registry)
    assert await registry.set_password_login(actor="htb-a", kbo=KBO_A, enabled=False) is None
    refused = await registry.console_login(login, PasswordCredential(password))
    assert refused == AuthFailure("password_login_disabled")
    assert await registry.set_password_login(actor="htb-a", kbo=KBO_A, enabled=True) is None
    assert isinstance(await registry.console_login(login, PasswordCredential(password)), Principal)


async def test_one_tb_per_quality_and_roles_need_members(registry: Registry) -> None:
    """A second TB for a quality and a role for another enterprise's user are refused."""
    login, _ = await _enterprise_with_user(registry)
    assert (
        await registry.appoint(actor="htb-a", role=Role.tb, login=login, quality=EMPLOYER_A) is None
    )
    other = await registry.create_user(actor="htb-a", quality=EMPLOYER_A, person=person("Cy"))
    assert not isinstance(other, Refusal)
    second = await registry.appoint(
        actor="htb-a", role=Role.tb, login=other.login, quality=EMPLOYER_A
    )
    assert isinstance(second, Refusal)
    assert second.reason == "limit"
    no_quality = await registry.appoint(actor="htb-a", role=Role.co_tb, login=other.login)
    assert isinstance(no_quality, Refusal)
    assert "quality" in no_quality.message
    htb = await registry.appoint(actor="htb-a", role=Role.htb, login=other.login)
    assert isinstance(htb, Refusal)
    assert "provisioned" in htb.message
    assert (
        await registry.dismiss(actor="htb-a", role=Role.tb, login=login, quality=EMPLOYER_A) is None
    )
    again = await registry.appoint(
        actor="htb-a", role=Role.tb, login=other.login, quality=EMPLOYER_A
    )
    assert again is None


async def test_hostile_text_is_stored_verbatim_or_refused(registry: Registry) -> None:
    """SQL-looking names are plain data; control characters in names are refused."""
    await _enterprise_with_user(registry)
    sqlish = "Robert'); DROP TABLE users;--"
    made = await registry.create_user(actor="htb-a", quality=EMPLOYER_A, person=person(sqlish))
    assert not isinstance(made, Refusal)
    users = await registry.users(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(users, Refusal)
    assert sqlish in {u.name for u in users}
    forged = await registry.create_user(
        actor="htb-a", quality=EMPLOYER_A, person=person('Eve\n{"event":"forged"}')
    )
    assert isinstance(forged, Refusal)
    assert forged.reason == "invalid"


async def _refusing_sms_gateway() -> tuple[asyncio.Server, int]:
    """A local HTTP SMS gateway that answers every request with 503."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_undelivered_activation_provisions_nothing(
    backend_url: str, hashing: PasswordHashing, outbox: Path
) -> None:
    """When the SMS gateway refuses, provisioning is refused and leaves no row and no record."""
    server, port = await _refusing_sms_gateway()
    engine = create_engine(backend_url)
    registry = Registry(
        engine,
        clock=Clock(),
        notifier=CombinedNotifier(
            email=OutboxNotifier(outbox), sms=SmsHttpNotifier(f"http://127.0.0.1:{port}/sms")
        ),
        hashing=hashing,
    )
    try:
        async with asyncio.timeout(30):
            result = await registry.provision_enterprise(
                actor=None, kbo=KBO_A, name="A", htb=person("Anne", nrn=None)
            )
        assert isinstance(result, Refusal)
        assert result.reason == "notification_failed"
        missing = await registry.enterprise(actor=None, kbo=KBO_A)
        assert isinstance(missing, Refusal)
        assert missing.reason == "not_found"
        assert (await registry.audit_verify()).records == 0
    finally:
        server.close()
        await server.wait_closed()
        await engine.dispose()


async def test_htb_without_national_number_needs_a_mobile(registry: Registry) -> None:
    """The temporary password goes by SMS, so a phone number is required."""
    htb = Person(name="Anne", email="anne@example.be", phone="")
    result = await registry.provision_enterprise(actor=None, kbo=KBO_A, name="A", htb=htb)
    assert isinstance(result, Refusal)
    assert "mobile" in result.message
