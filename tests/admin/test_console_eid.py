"""eID sign-in in Chromium (Playwright's client certificates): with ``[admin] eid_trust_dir`` the
listener asks for a client certificate verified against those CAs, and the console's eID button
signs in the account whose person has the certificate's subject serial number as national
register number; an unknown number or no certificate is refused with the generic page, and a
certificate of a CA not in the folder ends the handshake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from gateway.ops.tls import ensure_dev_server_identity
from gateway.registry.types import Person, Refusal
from tests.admin.console_env import VIEWPORT, ConsoleRig, browser
from tests.pipeline.provision import kbo, nrn
from tests.pki import Identity, Pki

__all__ = ["browser"]

pytestmark = pytest.mark.timeout(120)


def _eid(pki: Pki, issuer: Identity, name: str, number: str) -> Identity:
    """An eID-like authentication certificate: the national number as subject serial number."""
    return pki.leaf(
        name, issuer=issuer, key="ec:P-256",
        subject=f"/C=BE/CN={name} (Authentication)/serialNumber={number}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def eid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Identity, Path]:
    """A citizen CA in the admin listener's eID trust folder."""
    pki = Pki(tmp_path_factory.mktemp("eid-pki"))
    citizen_ca = pki.root_ca("Test Citizen CA", key="ec:P-256")
    trust = tmp_path_factory.mktemp("eid-trust")
    (trust / "citizen-ca.pem").write_bytes(citizen_ca.cert_pem)
    return pki, citizen_ca, trust


@pytest.fixture(scope="module")
def eid_rig(
    tmp_path_factory: pytest.TempPathFactory, eid: tuple[Pki, Identity, Path]
) -> Iterator[ConsoleRig]:
    """A console whose listener asks for an eID."""
    identity = ensure_dev_server_identity(
        tmp_path_factory.mktemp("eid-tls"), purpose="admin console"
    )
    made = ConsoleRig(tmp_path_factory.mktemp("eid-console"), identity, eid_trust_dir=eid[2])
    try:
        yield made
    finally:
        made.close()


def _sign_in_with(rig: ConsoleRig, browser: Any, card: Identity | None) -> tuple[int, Any]:
    """Press "Sign in with eID" in a context presenting ``card``: (status, page)."""
    origin = rig.url.split("/admin/", 1)[0]
    certificates = (
        [{"origin": origin, "certPath": str(card.cert), "keyPath": str(card.key)}]
        if card is not None
        else []
    )
    context = browser.new_context(
        ignore_https_errors=True, viewport=VIEWPORT, locale="en",
        client_certificates=certificates,
    )  # fmt: skip
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{rig.url}/login?lang=en")
    except PlaywrightError:
        context.close()
        raise
    with page.expect_response(lambda r: r.url.endswith("/login/eid")) as answer:
        page.click("form[action$='/login/eid'] button")
    page.wait_for_load_state()
    return answer.value.status, page


def test_an_eid_signs_in_its_person_and_nothing_else_does(
    eid_rig: ConsoleRig, browser: Any, eid: tuple[Pki, Identity, Path]
) -> None:
    """The HTB's eID (national number of htb0's person) opens htb0's console; an eID with a
    number no account has, or no certificate: the generic refusal; one of a CA not trusted: no
    TLS connection."""
    pki, citizen_ca, _ = eid

    status, page = _sign_in_with(eid_rig, browser, _eid(pki, citizen_ca, "Htb Zero", nrn(0)))
    assert status == 303, status
    assert page.url.rstrip("/").endswith("/admin/console")
    assert "Manager 0 · Employer 0 (0400000086)" in page.inner_text("header")  # htb0's
    page.context.close()

    stranger = _eid(pki, citizen_ca, "Nobody Known", nrn(77))
    for card in (stranger, None):
        status, page = _sign_in_with(eid_rig, browser, card)
        assert status == 401, (card, status)
        assert "Sign-in refused" in page.inner_text("div.alert")
        assert "/login/eid" in page.url
        page.context.close()

    # A certificate of a CA the folder does not hold ends the TLS handshake: no page at all.
    other_ca = pki.root_ca("Untrusted Citizen CA", key="ec:P-256")
    forged = _eid(pki, other_ca, "Htb Zero Forged", nrn(0))
    with pytest.raises(PlaywrightError):
        _sign_in_with(eid_rig, browser, forged)


def test_the_htbs_first_eid_sign_in_activates_the_enterprise(
    eid_rig: ConsoleRig, browser: Any, eid: tuple[Pki, Identity, Path]
) -> None:
    """A Belgian HTB's first sign-in is with the eID: it activates the pending enterprise and
    the console says so, as a first password sign-in does."""
    pki, citizen_ca, _ = eid
    number = nrn(40)
    provisioned = eid_rig.registry.provision_enterprise(
        actor=None,
        kbo=kbo(40),
        name="Eid Employer",
        htb=Person(name="Eva Eid", email="eva@example.test", national_register_number=number),
        htb_login="eva-eid",
    )
    made = eid_rig.call(provisioned)
    assert not isinstance(made, Refusal), made
    before = eid_rig.call(eid_rig.registry.account("eva-eid"))
    assert before is not None
    assert before.enterprise_status == "pending"
    status, page = _sign_in_with(eid_rig, browser, _eid(pki, citizen_ca, "Eva Eid", number))
    assert status == 200, status  # the activation notice, before the console
    page.context.close()
    after = eid_rig.call(eid_rig.registry.account("eva-eid"))
    assert after is not None
    assert after.enterprise_status == "active"
