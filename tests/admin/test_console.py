"""The console in Chromium (Playwright): the guide walked as an HTB and then as a TB, in Dutch,
French and German, with axe-core and an untranslated-text check on every screen; XSS, CSRF and
another enterprise's pages.

The Dutch walk takes a screenshot of every screen; with ``CONSOLE_SCREENSHOTS=1`` they replace
the committed ones under docs/console/ (otherwise they go to the test's temporary folder, so a
test run leaves the working tree alone)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from babel.messages.pofile import read_po
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import Dialog

from gateway.admin.console_core import LOCALE
from gateway.registry.types import ChannelKind, EnterpriseNumber, Person, QualityRef
from tests.admin.console_env import (
    PASSWORD,
    VIEWPORT,
    ConsoleRig,
    browser,
    rig,
    set_trace,
    ssh_line,
)
from tests.pipeline.provision import kbo, nrn, ok

__all__ = ["browser", "rig"]

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "console"
# What a screenshot masks: values shown once that are credentials.
SECRETS = "#token-secret, #totp-secret, img.qr"
XSS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
AXE = Axe()
NEW_PASSWORD = "Nieuw-Wachtwoord-2026!"


def fragments(language: str) -> list[str]:
    """Message ids of ``language``'s catalogue that have a different translation, cut at their
    placeholders, long enough not to occur by chance: none may be seen on a page."""
    if language == "en":
        return []
    with (LOCALE / language / "LC_MESSAGES" / "console.po").open("rb") as handle:
        catalogue = read_po(handle)
    found = []
    for message in catalogue:
        if message.id and message.string and message.string != message.id:
            for part in re.split(r"%\(\w+\)s", str(message.id)):
                if len(part.strip()) >= 12 and part.strip() not in str(message.string):
                    found.append(part.strip())
    return found


class Walk:
    """One browser context walking the console, checking every screen it reaches."""

    def __init__(
        self,
        rig: ConsoleRig,
        browser: Any,
        language: str,
        shots: Path | None = None,
        *,
        first: int = 1,
    ) -> None:
        self.rig = rig
        self.language = language
        self.shots = shots
        self.context = browser.new_context(
            ignore_https_errors=True, viewport=VIEWPORT, locale=language
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dismiss)
        self.untranslated = fragments(language)
        self.screens: list[str] = []
        self.first = first  # the number of the walk's first screenshot
        # axe-core runs on every screen of the Dutch walk and of the other tests; the French
        # and German walks render the same templates (checked for their words instead), which
        # keeps the module near 60 s.
        self.axe = language in ("nl", "en")

    def _dismiss(self, dialog: Dialog) -> None:
        """A dialog the page opened: its message kept, the dialog dismissed."""
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check(self, name: str) -> None:
        """axe-core (no serious or critical violation), no untranslated text, a screenshot."""
        page = self.page
        if self.axe:
            results = AXE.run(page)
            bad = [
                (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                for v in results.response["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            assert bad == [], (name, bad)
        text = page.inner_text("body") + " " + page.title()
        left = [f for f in self.untranslated if f in text]
        assert left == [], (name, self.language, left)
        assert page.locator("html").get_attribute("lang") == self.language
        self.screens.append(name)
        if self.shots is not None:
            number = self.first + len(self.screens) - 1
            # Secrets a screen shows once (an API token, a TOTP key and its QR code) are
            # masked: the committed screenshots hold no credential, even a test's.
            page.screenshot(
                path=str(self.shots / f"{number:02d}-{name}.png"),
                mask=[page.locator(SECRETS)],
            )

    def go(self, path: str) -> Any:
        """Open a console path."""
        return self.page.goto(self.rig.url + path)

    def login(self, login: str, password: str) -> None:
        """The username-and-password form of the sign-in page, in the walk's language."""
        self.go(f"/login?lang={self.language}")
        self.page.fill("#pw-login", login)
        self.page.fill("#pw-password", password)
        self.page.click("#pw-login >> xpath=ancestor::form//button[@type='submit']")

    def logout(self) -> None:
        """The header's sign-out button."""
        self.page.click("header form[action$='/logout'] button")

    def close(self) -> None:
        """Close the context; no page opened a dialog."""
        assert self.dialogs == []
        self.context.close()


@pytest.fixture
def shots_dir(tmp_path: Path) -> Path:
    """Where the Dutch walk's screenshots go: docs/console/ (emptied first) when
    ``CONSOLE_SCREENSHOTS=1``, else a temporary folder."""
    if os.environ.get("CONSOLE_SCREENSHOTS") != "1":
        return tmp_path
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    return SHOTS


def signing_certificate(common_name: str = "Payroll Signer") -> bytes:
    """A valid self-signed EC signing certificate (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


INDEX = {"nl": 20, "fr": 21, "de": 22}


@pytest.mark.parametrize("language", ["nl", "fr", "de"])
def test_the_guide_as_htb_then_as_tb(
    rig: ConsoleRig, browser: Any, language: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Activation by the non-Belgian HTB (e-mailed username, SMS'd temporary password, changed at
    once); users added, blocked, unblocked and deleted in bulk, a new password; a TB appointed
    and a refused appointment; the TB's structured-message wizard to its overview; the HTB's
    TOTP enrolment, password switch (then a password sign-in is refused, a code one is not),
    activity and "Where is my file?"."""
    shots = request.getfixturevalue("shots_dir") if language == "nl" else None
    index = INDEX[language]
    number = kbo(index)
    registry = rig.registry
    mails_before, sms_before = len(rig.emails()), len(rig.sms())
    made = ok(
        rig.call(
            registry.provision_enterprise(
                actor=None, kbo=number, name=f"Bakkerij {language.upper()}",
                htb=Person(name=f"Jean Dupont {language}", email=f"jd{index}@example.test",
                           phone="+32470000000", language=language),
            )
        )
    )  # fmt: skip
    assert made.issued is None  # no national number: e-mail and SMS carry the login
    mail = rig.emails()[mails_before]
    assert made.htb_login in mail
    sms = rig.sms()[sms_before]["text"]
    temporary = sms.rsplit(": ", 1)[1]
    htb = made.htb_login

    walk = Walk(rig, browser, language, shots)
    page = walk.page
    walk.go(f"/login?lang={language}")
    walk.check("login")
    walk.login(htb, temporary)
    assert page.locator("p.notice").count() == 1  # the activation notice
    assert number in page.inner_text("main")
    walk.check("activated")
    page.click("main a.button")
    assert page.url.endswith("/password")
    walk.check("password-temporary")
    page.fill("#old", temporary)
    page.fill("#new", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("main form button[type=submit]")
    assert page.url.endswith("/?done=password")
    quality = ok(rig.call(registry.activate_quality(actor=htb, kbo=number, kind="employer")))
    assert isinstance(quality, QualityRef)
    walk.go("/")
    walk.check("home")

    # Gebruikers: add three, block two after a confirmation, unblock them, delete one.
    logins = {}
    for who in ("Anna Peeters", "Bert Maes", "Carl Jacobs"):
        walk.go("/q/employer/users/new")
        if who.startswith("Anna"):
            walk.check("user-add")
        page.fill("#name", who)
        page.fill("#email", f"{who.split()[0].lower()}{index}@example.test")
        page.click("main form button[type=submit]")
        logins[who.split()[0]] = page.inner_text("#issued-login")
        if who.startswith("Anna"):
            anna_password = page.inner_text("#issued-password")
            walk.check("user-added")
    walk.go("/q/employer/users")
    walk.check("users")
    for action, names in (("block", "Bert Carl"), ("unblock", "Bert Carl"), ("delete", "Carl")):
        walk.go("/q/employer/users")
        for name in names.split():
            page.check(f"input[type=checkbox][value='{logins[name]}']")
        page.select_option("#action", action)
        page.click("#action ~ button")
        if action == "block":
            walk.check("users-confirm")
        page.click("main form button.primary")
        assert page.locator("td .good").count() == len(names.split()), page.inner_text("main")
        if action == "block":
            walk.check("users-outcome")
    users = {u.login: u.status for u in ok(rig.call(registry.users(actor=htb, quality=quality)))}
    assert (users[logins["Bert"]], users[logins["Carl"]]) == ("active", "deleted")
    walk.go("/q/employer/users")
    page.click(f"button[formaction$='/users/{logins['Bert']}/password']")  # the key icon
    assert page.inner_text("#issued-login") == logins["Bert"]
    walk.check("user-new-password")

    # Beheerders: Anna TB of employer; Anna co-TB as well is refused with the registry's reason.
    walk.go("/managers")
    page.select_option("#role", "TB")
    page.select_option("#appointee", logins["Anna"])
    page.select_option("#for-quality", "employer")
    page.click("main form[action$='/appoint'] button")
    assert "done=appointed" in page.url
    walk.check("managers")
    page.select_option("#role", "co-TB")
    page.select_option("#appointee", logins["Anna"])
    page.select_option("#for-quality", "employer")
    page.click("main form[action$='/appoint'] button")
    assert "already includes co-TB" in page.inner_text("div.alert")
    walk.check("managers-refused")

    # TOTP enrolment (the code of the app, computed here from the key the page shows).
    walk.go("/totp")
    walk.check("totp")
    secret = page.inner_text("#totp-secret")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("main form button[type=submit]")
    assert page.url.endswith("/?done=totp")
    walk.logout()

    # The TB: temporary password replaced first, then the wizard in the guide's order.
    walk.login(logins["Anna"], anna_password)
    assert page.url.endswith("/password")
    page.fill("#old", anna_password)
    page.fill("#new", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("main form button[type=submit]")
    walk.go("/q/employer/structured")
    walk.check("structured-save")
    page.click("main form button.primary")
    page.fill("#t-name", "Tom Technisch")
    page.fill("#t-email", f"tom{index}@example.test")
    page.click("main form button.primary")
    assert "done=saved" in page.url
    walk.check("structured-technical")
    page.click("main a.button")  # Volgende
    page.fill("#keys", ssh_line())
    page.click("#keys >> xpath=ancestor::form//button")
    page.fill("#ftp-password", "Ftp-Wachtwoord-42")
    page.click("#ftp-password >> xpath=ancestor::form//button")
    assert "done=saved" in page.url, page.inner_text("main")
    walk.check("structured-channel")
    page.click("main a.button")
    cert = tmp_path / "signer.pem"
    cert.write_bytes(signing_certificate())
    page.set_input_files("#certificate", str(cert))
    page.click("main form button.primary")
    assert page.inner_text("#cert-subject") == "CN=Payroll Signer"
    walk.check("structured-certificate")
    page.click("main a.button")
    page.check("input[name=service][value=DMFA]")
    page.click("main form button.primary")
    walk.check("structured-services")
    page.click("main a.button")
    sender = page.inner_text("#sender-number")
    assert re.fullmatch(r"[0-9]{6}", sender)
    walk.check("structured-sender")
    page.click("main a.button")
    overview = page.inner_text("main")
    assert sender in overview
    assert "DMFA" in overview
    assert "CN=Payroll Signer" in overview
    walk.check("structured-overview")
    # A TB appoints a co-TB of its quality, but no co-HTB: the registry says why.
    walk.go("/managers")
    page.select_option("#role", "co-HTB")
    page.select_option("#appointee", logins["Bert"])
    page.click("main form[action$='/appoint'] button")
    assert "appoint_co_htb needs role HTB" in page.inner_text("div.alert")
    page.select_option("#role", "co-TB")
    page.select_option("#appointee", logins["Bert"])
    page.select_option("#for-quality", "employer")
    page.click("main form[action$='/appoint'] button")
    assert "done=appointed" in page.url
    walk.logout()

    # The HTB switches password login off: a password is refused, the app's code is not.
    walk.login(htb, NEW_PASSWORD)
    walk.go("/password-login")
    walk.check("password-login")
    page.click("main form button.primary")
    assert "done=off" in page.url
    walk.logout()
    walk.login(htb, NEW_PASSWORD)
    assert page.locator("div.alert").count() == 1
    walk.check("login-refused")
    code = pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30))
    page.fill("#totp-login", htb)
    page.fill("#totp-code", code)
    page.click("#totp-code >> xpath=ancestor::form//button")
    assert page.url.endswith("/admin/console/"), page.url
    walk.go("/activity")
    assert "enterprise.password_login" in page.inner_text("main")
    walk.check("activity")
    rig.trace.sets.append(set_trace(f"T{index}ABCDEFGHIJK"[:13], sender, f"GO.DMFA.{sender}.1"))
    rig.trace.sets.append(set_trace("FOREIGNTICKET", "000001", "GO.DMFA.000001.1"))
    walk.go(f"/trace?q=T{index}ABCDEFGHIJK"[: 13 + len("/trace?q=")])
    assert sender in page.inner_text("main table")
    walk.check("trace")
    walk.go("/trace?q=FOREIGNTICKET")
    assert page.locator("main table").count() == 0
    walk.close()


def test_xss_payloads_render_inert(rig: ConsoleRig, browser: Any, tmp_path: Path) -> None:
    """Script in an enterprise name, a user's name and a certificate subject is shown as text:
    no dialog opens, the text is there as typed."""
    number = kbo(30)
    made = ok(
        rig.call(
            rig.registry.provision_enterprise(
                actor=None, kbo=number, name=XSS[0] + XSS[1],
                htb=Person(name=XSS[1], email="x@example.test",
                           national_register_number=nrn(30)),
                htb_login="htbxss",
            )
        )
    )  # fmt: skip
    assert made.issued is not None
    walk = Walk(rig, browser, "en")
    page = walk.page
    walk.login("htbxss", made.issued.password)
    page.click("main a.button")
    page.fill("#old", made.issued.password)
    page.fill("#new", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("main form button[type=submit]")
    assert XSS[0] + XSS[1] in page.inner_text("header")
    quality = ok(
        rig.call(rig.registry.activate_quality(actor="htbxss", kbo=number, kind="employer"))
    )
    ok(rig.call(rig.registry.create_user(
        actor="htbxss", quality=quality, person=Person(name=XSS[0], email="u@example.test"),
        login="xssuser",
    )))  # fmt: skip
    walk.go("/q/employer/users")
    assert XSS[0] in page.inner_text("main table")
    assert page.locator("main script").count() == 0
    assert page.locator("main img").count() == 0
    rig.call(rig.registry.save_configuration(actor="htbxss", quality=quality))
    ok(rig.call(rig.registry.set_technical_user(
        actor="htbxss", quality=quality, person=Person(name=XSS[1], email="t@example.test"),
    )))  # fmt: skip
    ok(rig.call(rig.registry.add_channel(
        actor="htbxss", quality=quality, kind=ChannelKind.sftp,
        ssh_keys=[ssh_line()],
    )))  # fmt: skip
    walk.go("/q/employer/structured/certificate")
    cert = tmp_path / "xss.pem"
    cert.write_bytes(signing_certificate(XSS[1]))
    page.set_input_files("#certificate", str(cert))
    page.click("main form button.primary")
    # RFC 4514 escapes < > " in the subject's text; the tag is shown, never made.
    assert "img src=x onerror=alert(1)" in page.inner_text("#cert-subject")
    assert page.locator("main img").count() == 0
    walk.go("/q/employer/structured/overview")
    assert "img src=x onerror=alert(1)" in page.inner_text("main")
    assert page.locator("main img").count() == 0
    walk.close()


def test_a_form_without_its_csrf_token_is_refused(rig: ConsoleRig, browser: Any) -> None:
    """The same session posting a form without (or with a wrong) CSRF token: 403, nothing done."""
    walk = Walk(rig, browser, "en")
    walk.login("htb0", PASSWORD)
    api = walk.page.request
    url = rig.url + "/password-login"
    assert api.post(url, form={"enabled": "off"}).status == 403
    assert api.post(url, form={"enabled": "off", "csrf": "forged"}).status == 403
    token = walk.page.locator("input[name=csrf]").first.get_attribute("value")
    new = api.post(rig.url + "/q/employer/users/new", form={"name": "N", "email": "n@example.test"})
    assert new.status == 403
    assert token
    account = rig.call(rig.registry.account("htb0"))
    assert account is not None
    assert account.password_login
    walk.close()


def test_another_enterprises_pages_answer_404(rig: ConsoleRig, browser: Any) -> None:
    """htb0 asking for enterprise 1's user, its key icon, or a quality it does not manage: 404."""
    walk = Walk(rig, browser, "en")
    walk.login("htb0", PASSWORD)
    other = rig.senders[1].login  # enterprise 1's technical user
    assert walk.go(f"/q/employer/users/{other}").status == 404
    walk.check("not-found")
    assert walk.go("/q/social_secretariat/users").status == 404
    assert walk.go("/q/employer/structured/nothing").status == 404
    token = walk.page.locator("input[name=csrf]").first.get_attribute("value") or ""
    api = walk.page.request
    refused = api.post(
        rig.url + "/q/employer/users/htb1/password", form={"csrf": token}, max_redirects=0
    )
    assert refused.status == 404
    bulk = api.post(
        rig.url + "/q/employer/users/bulk/run",
        form={"csrf": token, "action": "block", "login": other},
    )
    assert bulk.status == 404
    still = rig.call(rig.registry.account(other))
    assert still is not None
    assert still.status == "active"
    assert EnterpriseNumber(kbo(1)) == rig.senders[1].quality.enterprise
    walk.close()
