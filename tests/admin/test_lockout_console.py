"""The console's sign-in under the registry's shared lockout (issue 16): the lock is the
registry's, so a manager's unblock lifts it and a second process on the database sees it."""

from __future__ import annotations

import json

from tests.admin.admin_env import PASSWORD, AdminEnv, Answer, curl


async def _sign_in(admin: AdminEnv, login: str, password: str) -> Answer:
    body = json.dumps({"login": login, "password": password})
    return await curl(
        admin, "POST", "/admin/api/v1/session", "-H", "Content-Type: application/json",
        "--data", body,
    )  # fmt: skip


async def test_a_locked_console_account_is_unlocked_by_the_operators_unblock(
    admin: AdminEnv,
) -> None:
    """Five wrong passwords through curl lock the HTB (the registry says so too); the right
    one is refused with the same 401; the operator's unblock lifts it and the HTB signs in."""
    htb = admin.senders[0].htb
    for _ in range(5):
        wrong = await _sign_in(admin, htb, "nope-nope-nope")
        assert wrong.status == 401
    assert await admin.registry.login_locked(htb)
    locked = await _sign_in(admin, htb, PASSWORD)
    assert (locked.status, locked.body) == (401, wrong.body)
    assert await admin.registry.unblock_user(actor=None, login=htb) is None
    signed = await _sign_in(admin, htb, PASSWORD)
    assert signed.status in (200, 201), signed.body
