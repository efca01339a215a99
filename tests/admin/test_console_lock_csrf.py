"""A locked account as managers see it, and the console's CSRF refusal page, in Chromium.

- An account the registry's lockout holds shows "locked until T" on Gebruikers (and
  ``locked_until`` in the API's user list); its own sign-in answer stays the generic refusal;
  the bulk "unblock" lifts the lock.
- A console form posted without its CSRF token gets a translated HTML page (403, nothing done);
  the API, with the same session, keeps its JSON problem."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.registry.types import Person, Role
from tests.admin.admin_env import set_password
from tests.admin.console_env import PASSWORD, ConsoleRig, browser, rig, ssh_line
from tests.admin.test_console import Walk
from tests.pipeline.provision import ok, provision

__all__ = ["browser", "rig"]

pytestmark = pytest.mark.timeout(120)


def test_a_locked_account_is_shown_and_unblocked(rig: ConsoleRig, browser: Any) -> None:
    """A TB locked by five failed checks: "vergrendeld tot …" on the list and its page,
    ``locked_until`` in the API; the TB's right password gets the same page as a wrong one; the
    HTB's bulk unblock lifts the lock (audited user.unlock) and the TB signs in."""
    registry = rig.registry
    sender = rig.call(provision(registry, index=50, ssh_public_key=ssh_line()))
    htb, quality = sender.htb, sender.quality
    rig.call(set_password(registry, htb))
    issued = ok(rig.call(registry.create_user(
        actor=htb, quality=quality, person=Person(name="Tina Locked", email="tina@example.test"),
    )))  # fmt: skip
    tb = issued.login
    assert rig.call(registry.appoint(actor=htb, role=Role.tb, login=tb, quality=quality)) is None
    rig.call(set_password(registry, tb))
    for _ in range(5):
        rig.call(registry.login_failed(tb))
    assert rig.call(registry.login_locked(tb))

    # The TB's own sign-in: the right password is refused exactly as a wrong one is.
    answers = []
    for password in (PASSWORD, "Verkeerd-Wachtwoord-1"):
        own = Walk(rig, browser, "nl")
        with own.page.expect_response(lambda r: r.url.endswith("/login")) as answer:
            own.login(tb, password)
        answers.append((answer.value.status, own.page.inner_text("div.alert")))
        own.close()
    assert answers[0] == answers[1]
    assert answers[0][0] == 401

    walk = Walk(rig, browser, "nl")
    page = walk.page
    walk.login(htb, PASSWORD)
    walk.go("/q/employer/users")
    row = page.locator("tr", has=page.locator(f"input[value='{tb}']"))
    shown = row.inner_text()
    assert "vergrendeld tot " in shown
    assert row.locator(".locked").count() == 1
    walk.check("users-locked")
    walk.go(f"/q/employer/users/{tb}")
    assert "vergrendeld tot " in page.inner_text("main dl")
    api = rig.url.replace("/admin/console", "/admin/api/v1")
    listed = page.request.get(f"{api}/enterprises/{quality.enterprise}/qualities/employer/users")
    assert listed.status == 200
    until = {u["login"]: u["locked_until"] for u in listed.json()["users"]}
    assert until[sender.login] is None  # the technical user
    assert until[tb] is not None
    assert until[tb][:16].replace("T", " ") + " UTC" in shown

    # Unblock, as the guide's drop-down does it: the lock is lifted and audited.
    walk.go("/q/employer/users")
    page.check(f"input[type=checkbox][value='{tb}']")
    page.select_option("#action", "unblock")
    page.click("#action ~ button")
    page.click("main form button.primary")
    assert page.locator("td .good").count() == 1, page.inner_text("main")
    assert not rig.call(registry.login_locked(tb))
    walk.go("/q/employer/users")
    assert page.locator("main .locked").count() == 0
    last = rig.call(registry.audit_entries(limit=1))[0]
    assert (last.action, last.actor, last.target) == ("user.unlock", htb, tb)
    walk.close()

    signed = Walk(rig, browser, "nl")
    signed.login(tb, PASSWORD)
    assert signed.page.url.rstrip("/").endswith("/admin/console")
    signed.close()


@pytest.mark.parametrize(
    ("language", "title"), [("nl", "Formulier geweigerd"), ("de", "Formular abgelehnt")]
)
def test_a_console_form_without_csrf_gets_a_page_and_the_api_a_problem(
    rig: ConsoleRig, browser: Any, language: str, title: str
) -> None:
    """The password-login switch posted with its CSRF field removed: a 403 HTML page in the
    session's language (axe, no untranslated text), the switch untouched; a DELETE of the API
    session with the same cookie and no X-CSRF-Token: 403 application/problem+json, code csrf."""
    walk = Walk(rig, browser, language)
    page = walk.page
    walk.login("htb1", PASSWORD)
    walk.go("/password-login")
    page.locator("main form input[name=csrf]").evaluate("input => input.remove()")
    with page.expect_response(lambda r: r.url.endswith("/password-login")) as answer:
        page.click("main form button.primary")
    refused = answer.value
    assert refused.status == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert page.inner_text("main h1") == title
    walk.check("csrf-refused")
    account = rig.call(rig.registry.account("htb1"))
    assert account is not None
    assert account.password_login

    api = rig.url.replace("/admin/console", "/admin/api/v1")
    problem = page.request.delete(f"{api}/session")
    assert problem.status == 403
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["code"] == "csrf"
    walk.close()
