"""The console's revocations, API tokens and quality activation in Chromium (Playwright), in
Dutch with axe-core and the untranslated-text check on every screen: an SSH key, a channel and a
signing certificate removed after a confirmation, a refused removal showing the registry's
reason, the technical user replaced; a token made (its secret shown once) and revoked; a quality
activated; forms without their CSRF token refused; another enterprise's token 404.

With ``CONSOLE_SCREENSHOTS=1`` the screens are added to docs/console/ after the main walk's."""

from __future__ import annotations

import os
from typing import Any

import pytest

from gateway.registry.consoles import Grant
from gateway.registry.revocation import ssh_fingerprint
from gateway.registry.types import AuthFailure, ChannelKind, QualityRef
from tests.admin.admin_env import set_password
from tests.admin.console_env import PASSWORD, ConsoleRig, browser, rig, ssh_line
from tests.admin.test_console import SHOTS, Walk, signing_certificate
from tests.pipeline.provision import ok, provision

__all__ = ["browser", "rig"]

pytestmark = pytest.mark.timeout(120)

FIRST_SHOT = 25  # after the main walk's 24


def _fingerprints(rig: ConsoleRig, htb: str, quality: QualityRef) -> list[str]:
    overview = ok(rig.call(rig.registry.overview(actor=htb, quality=quality)))
    return [ssh_fingerprint(k) for ch in overview.channels for k in ch.ssh_keys]


def test_revocations_tokens_and_a_quality(rig: ConsoleRig, browser: Any) -> None:
    """Removals through their confirmation (and one refused by the registry, its reason shown),
    the technical user replaced, a token made then revoked, a quality activated; no CSRF: 403;
    another enterprise's token and an unmanaged quality: 404."""
    registry = rig.registry
    sender = rig.call(
        provision(registry, index=40, ssh_public_key=ssh_line(), certificates=(
            signing_certificate("Revoked Signer"),))
    )  # fmt: skip
    htb, quality = sender.htb, sender.quality
    rig.call(set_password(registry, htb))
    ok(rig.call(registry.add_ssh_key(actor=htb, quality=quality, key=ssh_line())))
    ok(rig.call(registry.add_channel(
        actor=htb, quality=quality, kind=ChannelKind.ftp, ftp_password="Ftp-Wachtwoord-42",
    )))  # fmt: skip
    shots = SHOTS if os.environ.get("CONSOLE_SCREENSHOTS") == "1" else None
    walk = Walk(rig, browser, "nl", shots, first=FIRST_SHOT)
    page = walk.page
    walk.login(htb, PASSWORD)

    # Step 2: one SSH key removed after its confirmation, then the FTP channel.
    first, second = _fingerprints(rig, htb, quality)
    walk.go("/q/employer/structured/channel")
    assert first in page.inner_text("main table")
    walk.check("structured-revoke")
    page.click(f"form:has(input[name=item][value='{first}']) button")
    assert page.inner_text("#remove-item") == first
    walk.check("structured-remove-confirm")
    page.click("main form button.primary")
    assert "done=removed" in page.url
    assert _fingerprints(rig, htb, quality) == [second]
    page.click("form:has(input[name=item][value=ftp]) button")
    page.click("main form button.primary")
    assert "done=removed" in page.url
    overview = ok(rig.call(registry.overview(actor=htb, quality=quality)))
    assert [ch.kind for ch in overview.channels] == [ChannelKind.sftp]

    # A removal the registry refuses (another manager removed the key in between): its reason.
    page.click(f"form:has(input[name=item][value='{second}']) button")
    assert rig.call(registry.remove_ssh_key(actor=htb, quality=quality, fingerprint=second)) is None
    with page.expect_response(lambda r: r.url.endswith("/remove/run")) as answer:
        page.click("main form button.primary")
    assert answer.value.status == 422
    assert f"no SSH key {second}" in page.inner_text("div.alert")
    walk.check("structured-remove-refused")

    # Step 3: the signing certificate; step 1: the technical user replaced.
    walk.go("/q/employer/structured/certificate")
    page.click("form:has(input[name=what][value=certificate]) button")
    assert "Revoked Signer" in page.inner_text("#remove-item")
    page.click("main form button.primary")
    assert "done=removed" in page.url
    assert ok(rig.call(registry.overview(actor=htb, quality=quality))).certificates == ()
    walk.go("/q/employer/structured/technical")
    page.click("details summary")
    page.fill("#r-name", "Nieuwe Technicus")
    page.fill("#r-email", "nieuw40@example.test")
    page.click("#r-name >> xpath=ancestor::form//button")
    assert "Nieuwe Technicus" in page.inner_text("#remove-new")
    walk.check("structured-replace-confirm")
    page.click("main form button.primary")
    assert "done=replaced" in page.url
    technical = ok(rig.call(registry.overview(actor=htb, quality=quality))).technical_user
    assert technical is not None
    assert technical["name"] == "Nieuwe Technicus"
    old = rig.call(registry.account(sender.login))
    assert old is not None
    assert old.status == "deleted"

    # API tokens: made (the secret shown once), then revoked after a confirmation.
    walk.go("/q/employer/tokens")
    walk.check("tokens")
    page.fill("#token-name", "Loonscript")
    page.fill("#token-days", "30")
    page.click("main form button.primary")
    secret = page.inner_text("#token-secret")
    assert secret.startswith("bgt_")
    walk.check("token-issued")
    assert isinstance(rig.call(registry.token_grant(secret)), Grant)
    walk.go("/q/employer/tokens")
    assert secret not in page.content()
    assert "Loonscript" in page.inner_text("main table")
    page.click("main table form button")
    walk.check("token-revoke-confirm")
    page.click("main form button.primary")
    assert "done=revoked" in page.url
    assert page.locator("main table .bad").count() == 1
    assert rig.call(registry.token_grant(secret)) == AuthFailure("revoked")

    # Another enterprise's token id, and a quality htb40 does not manage: 404, nothing revoked.
    other = ok(rig.call(registry.issue_token(
        actor=rig.senders[1].htb, quality=rig.senders[1].quality, name="theirs", days=5,
    )))  # fmt: skip
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    api = page.request
    for path in ("revoke", "revoke/run"):
        url = f"{rig.url}/q/employer/tokens/{other.id}/{path}"
        assert api.post(url, form={"csrf": token}).status == 404
    assert isinstance(rig.call(registry.token_grant(other.secret)), Grant)
    assert walk.go("/q/social_secretariat/tokens").status == 404

    # Forms posted without their CSRF token: 403, nothing done.
    for path, fields in (
        ("/q/employer/tokens", {"name": "forged", "days": "5"}),
        ("/q/employer/structured/remove/run", {"what": "channel", "item": "sftp"}),
        ("/qualities/new", {"kind": "social_secretariat"}),
    ):
        assert api.post(rig.url + path, form=fields).status == 403, path
    assert [t.name for t in ok(rig.call(registry.tokens(actor=htb, quality=quality)))] == [
        "Loonscript"
    ]

    # The HTB activates a second quality from the quality selector.
    walk.go("/")
    page.click("#activate-quality")
    walk.check("quality-activate")
    page.check("input[name=kind][value=social_secretariat]")
    page.click("main form button.primary")
    assert "done=quality" in page.url
    assert "social_secretariat" in page.inner_text("main .qualities")
    walk.check("quality-activated")
    view = ok(rig.call(registry.enterprise(actor=htb, kbo=quality.enterprise)))
    assert sorted(q.kind for q in view.qualities) == ["employer", "social_secretariat"]
    walk.close()
