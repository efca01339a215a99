"""Signing in to the admin plane with the real client: sessions, CSRF, tokens, lockout, headers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from gateway.admin.server import CSP
from gateway.ops.pacing import FailurePacing
from gateway.registry.types import Person, QualityRef
from tests.admin.admin_env import PASSWORD, AdminEnv, Answer, curl, sign_in
from tests.ops.test_pacing import HeldSleep
from tests.pipeline.provision import ok

pytestmark = pytest.mark.timeout(120)


async def test_a_session_signs_in_acts_with_its_csrf_token_and_signs_out(admin: AdminEnv) -> None:
    """Password sign-in sets a __Host- cookie (Secure, HttpOnly, SameSite=Strict); /me knows
    the HTB; a change without the CSRF token is 403; sign-out ends the session at once."""
    htb = admin.senders[0].htb
    anonymous = await curl(admin, "GET", "/admin/api/v1/me")
    assert anonymous.status == 401
    csrf = await sign_in(admin, htb)
    jar = admin.jars[htb].read_text()
    assert "#HttpOnly_127.0.0.1" in jar
    assert "__Host-bg-session" in jar
    me = await curl(admin, "GET", "/admin/api/v1/me", who=htb)
    assert me.status == 200
    body = me.json()
    assert isinstance(body, dict)
    assert body["login"] == htb
    assert {"role": "HTB", "quality": None} in body["roles"] or any(
        r["role"].lower() == "htb" for r in body["roles"]
    )
    refused = await curl(admin, "DELETE", "/admin/api/v1/session", who=htb)
    assert refused.status == 403
    assert refused.json()["code"] == "csrf"  # type: ignore[index]
    out = await curl(admin, "DELETE", "/admin/api/v1/session", "-H", f"X-CSRF-Token: {csrf}",
                     who=htb)  # fmt: skip
    assert out.status == 204
    after = await curl(admin, "GET", "/admin/api/v1/me", who=htb)
    assert after.status == 401


async def test_every_answer_carries_the_security_headers(admin: AdminEnv) -> None:
    """CSP without inline script, no framing, no sniffing, no caching, a fixed Server."""
    answer = await curl(admin, "GET", "/admin/api/v1/me")
    assert answer.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["server"] == "batch-gateway"
    missing = await curl(admin, "GET", "/nothing-here")
    assert missing.status == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_wrong_passwords_lock_the_account_and_the_answer_does_not_say_why(
    admin: AdminEnv,
) -> None:
    """Five wrong passwords lock the account: the right one is then refused with the same 401."""
    htb = admin.senders[1].htb
    for _ in range(5):
        wrong = await _session(admin, htb, "nope-nope-nope")
        assert wrong.status == 401
    locked = await _session(admin, htb, PASSWORD)
    assert locked.status == 401
    assert locked.body == wrong.body
    unknown = await _session(admin, "nobody", PASSWORD)
    assert unknown.body == wrong.body


async def test_a_failed_sign_in_is_answered_after_the_delay_while_others_sign_in(
    admin: AdminEnv,
) -> None:
    """A wrong console password is answered 401 only when its delay ends (the pacing's sleep,
    held here); meanwhile another person signs in with the right one."""
    held = HeldSleep()
    plane = admin.gateway.plane
    pacing = FailurePacing(seconds=1.0, clock=lambda: 0.0, sleep=held)
    plane.config = replace(plane.config, pacing=pacing)
    wrong = asyncio.create_task(_session(admin, admin.senders[1].htb, "nope-nope-nope"))
    try:
        await held.until(1)
        assert held.waits == [1.0]
        await sign_in(admin, admin.senders[0].htb)
        assert not wrong.done()
    finally:
        held.release.set()
    async with asyncio.timeout(60):
        assert (await wrong).status == 401


async def _session(admin: AdminEnv, login: str, password: str) -> Answer:
    body = json.dumps({"login": login, "password": password})
    return await curl(admin, "POST", "/admin/api/v1/session", "--data", body)


async def test_a_token_acts_within_its_quality_until_revoked(admin: AdminEnv) -> None:
    """A token made by the HTB for its quality authenticates as that HTB with the quality's
    scope; a revoked token, a foreign scheme or garbage is 401."""
    sender = admin.senders[0]
    issued = ok(
        await admin.registry.issue_token(
            actor=sender.htb, quality=sender.quality, name="payroll script", days=30
        )
    )
    bearer = ("-H", f"Authorization: Bearer {issued.secret}")
    me = await curl(admin, "GET", "/admin/api/v1/me", *bearer)
    assert me.status == 200, me
    body = me.json()
    assert isinstance(body, dict)
    assert body["login"] == sender.htb
    assert body["token"] == {"id": issued.id, "quality": "employer"}
    for header in ("Authorization: Basic aHRiMDp4", "Authorization: Bearer bgt_forged"):
        assert (await curl(admin, "GET", "/admin/api/v1/me", "-H", header)).status == 401
    other = admin.senders[1]
    foreign = await admin.registry.issue_token(
        actor=other.htb, quality=sender.quality, name="not mine", days=30
    )
    assert not hasattr(foreign, "secret")  # another enterprise's quality: refused
    assert await admin.registry.revoke_token(actor=sender.htb, token_id=issued.id) is None
    assert (await curl(admin, "GET", "/admin/api/v1/me", *bearer)).status == 401
    views = ok(await admin.registry.tokens(actor=sender.htb, quality=sender.quality))
    assert [(v.name, v.revoked_at is not None) for v in views] == [("payroll script", True)]
    assert isinstance(sender.quality, QualityRef)


async def test_a_temporary_password_must_be_changed_before_the_api_acts(admin: AdminEnv) -> None:
    """A user signed in with the temporary password the manager gave: every API operation but
    changing the password is 403 (password_change_required); after the change, it acts."""
    sender = admin.senders[0]
    issued = ok(
        await admin.registry.create_user(
            actor=sender.htb,
            quality=sender.quality,
            person=Person(name="Tess Temp", email="tess@example.test"),
            login="tess",
        )
    )
    csrf = await sign_in(admin, "tess", issued.password)
    blocked = await curl(admin, "GET", "/admin/api/v1/enterprises", who="tess")
    assert blocked.status == 403, blocked
    assert blocked.json()["code"] == "password_change_required"  # type: ignore[index]
    body = json.dumps({"old": issued.password, "new": "Tess-own-pass-2026"})
    changed = await curl(admin, "POST", "/admin/api/v1/me/password", "--data", body,
                         "-H", "Content-Type: application/json", "-H", f"X-CSRF-Token: {csrf}",
                         who="tess")  # fmt: skip
    assert changed.status in (200, 204), changed
    after = await curl(admin, "GET", "/admin/api/v1/enterprises", who="tess")
    assert after.status == 200, after


async def test_a_token_does_not_act_for_the_whole_enterprise(admin: AdminEnv) -> None:
    """Even the HTB's token is scoped to one quality: switching password login, activating a
    quality and appointing a co-HTB are the console's (403), while the quality's own work is
    allowed (its users list)."""
    sender = admin.senders[0]
    issued = ok(
        await admin.registry.issue_token(
            actor=sender.htb, quality=sender.quality, name="script", days=1
        )
    )
    bearer = (
        "-H",
        f"Authorization: Bearer {issued.secret}",
        "-H",
        "Content-Type: application/json",
    )
    kbo = sender.quality.enterprise
    refused = [
        ("PUT", f"/admin/api/v1/enterprises/{kbo}/password-login", {"enabled": False}),
        ("POST", f"/admin/api/v1/enterprises/{kbo}/qualities", {"kind": "social_secretariat"}),
        ("POST", f"/admin/api/v1/enterprises/{kbo}/roles", {"role": "co-HTB", "login": sender.htb}),
    ]
    for method, path, body in refused:
        answer = await curl(admin, method, path, *bearer, "--data", json.dumps(body))
        assert answer.status == 403, (path, answer)
    users = await curl(admin, "GET", f"/admin/api/v1/enterprises/{kbo}/qualities/employer/users",
                       *bearer)  # fmt: skip
    assert users.status == 200, users
    account = await admin.registry.account(sender.htb)
    assert account is not None
    assert account.password_login is True  # nothing was switched
