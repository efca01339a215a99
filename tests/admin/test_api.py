"""The admin API with the real client: the guide's tasks through a token and a console session,
the registry's refusals as problem answers, the audit and trace of one's own enterprise, and the
OpenAPI document served as committed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.admin import openapi
from gateway.pipeline.trace import SetTrace, TraceReport
from gateway.registry.types import QualityRef
from tests.admin.admin_env import PASSWORD, AdminEnv, _ssh_line, curl, set_password, sign_in
from tests.admin.api_client import Credential, api, data, session_for, token_for
from tests.registry.conftest import Certs

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
PERSON = {"name": "Ann Peeters", "email": "ann@example.test", "language": "nl"}


async def test_the_served_document_is_the_committed_one(admin: AdminEnv) -> None:
    """GET /admin/api/v1/openapi.json needs no credential and is docs/admin-api.openapi.json,
    byte for byte (regenerate: python -m gateway.admin.openapi > docs/admin-api.openapi.json)."""
    served = await curl(admin, "GET", "/admin/api/v1/openapi.json")
    assert served.status == 200
    committed = (ROOT / "docs" / "admin-api.openapi.json").read_text()
    assert served.body.decode() == committed == openapi.document_text()
    document = json.loads(committed)
    assert document["openapi"] == "3.1.0"
    assert "enterprise provision" in document["info"]["description"]


async def test_a_token_manages_the_users_of_its_quality(admin: AdminEnv) -> None:
    """Create (201, the temporary password once), search and page by cursor and by page number,
    block, unblock, reset and delete, each as the registry does it."""
    sender = admin.senders[0]
    token = await token_for(admin, sender.htb, sender.quality)
    users = f"/enterprises/{sender.quality.enterprise}/qualities/employer/users"
    made = []
    for index in range(3):
        body = {**PERSON, "name": f"Payroll Clerk {index}", "login": f"clerk{index}"}
        created = await api(admin, "POST", users, body, auth=token)
        assert created.status == 201, created
        assert created.headers["location"] == f"/admin/api/v1/users/clerk{index}"
        made.append(data(created))
    assert [u["login"] for u in made] == ["clerk0", "clerk1", "clerk2"]
    assert all(len(u["temporary_password"]) >= 10 for u in made)

    first = data(await api(admin, "GET", users + "?search=CLERK&limit=2", auth=token))
    assert (first["total"], [u["login"] for u in first["users"]]) == (3, ["clerk0", "clerk1"])
    assert first["next_cursor"] == "clerk1"
    rest = data(await api(admin, "GET", users + "?search=clerk&limit=2&cursor=clerk1", auth=token))
    assert ([u["login"] for u in rest["users"]], rest["next_cursor"]) == (["clerk2"], None)
    page2 = data(await api(admin, "GET", users + "?search=clerk&limit=2&page=2", auth=token))
    assert [u["login"] for u in page2["users"]] == ["clerk2"]
    both = await api(admin, "GET", users + "?cursor=a&page=1", auth=token)
    assert (both.status, data(both)["code"]) == (422, "invalid")

    blocked = await api(admin, "POST", "/users/clerk0/block", auth=token)
    assert data(blocked) == {"login": "clerk0", "status": "blocked"}
    again = await api(admin, "POST", "/users/clerk0/block", auth=token)
    assert (again.status, data(again)["code"]) == (422, "invalid")
    unblocked = await api(admin, "POST", "/users/clerk0/unblock", auth=token)
    assert data(unblocked)["status"] == "active"
    reset = data(await api(admin, "POST", "/users/clerk1/password", auth=token))
    assert reset["login"] == "clerk1"
    assert reset["temporary_password"] != made[1]["temporary_password"]
    assert (await api(admin, "DELETE", "/users/clerk2", auth=token)).status == 204
    listed = data(await api(admin, "GET", users + "?search=clerk2", auth=token))
    assert [u["status"] for u in listed["users"]] == ["deleted"]


async def test_a_new_user_signs_in_and_changes_the_temporary_password(admin: AdminEnv) -> None:
    """POST /me/password with the session's CSRF token: the policy and a wrong current password
    are the registry's refusals; then the new password signs in."""
    sender = admin.senders[0]
    token = await token_for(admin, sender.htb, sender.quality)
    path = f"/enterprises/{sender.quality.enterprise}/qualities/employer/users"
    issued = data(await api(admin, "POST", path, {**PERSON, "login": "newbie"}, auth=token))
    csrf = await sign_in(admin, "newbie", issued["temporary_password"])
    change = ("-H", f"X-CSRF-Token: {csrf}", "-H", "Content-Type: application/json")

    async def attempt(old: str, new: str) -> tuple[int, str | None]:
        body = json.dumps({"old": old, "new": new})
        answer = await curl(
            admin, "POST", "/admin/api/v1/me/password", *change, "--data", body, who="newbie"
        )
        return answer.status, (data(answer).get("code") if answer.body else None)

    assert await attempt(issued["temporary_password"], "short") == (422, "password_policy")
    assert await attempt("not-the-password", PASSWORD) == (401, "bad_credential")
    assert await attempt(issued["temporary_password"], PASSWORD) == (204, None)
    fresh = json.dumps({"login": "newbie", "password": PASSWORD})  # a browser without a cookie
    signed = await curl(admin, "POST", "/admin/api/v1/session", "--data", fresh)
    assert signed.status == 201
    assert data(signed)["must_change_password"] is False


async def test_the_structured_message_wizard_through_a_session(
    admin: AdminEnv, tmp_path: Path
) -> None:
    """An HTB activates a quality and configures it in the guide's order: each step before its
    predecessor is 409 step_order; the certificate answer shows subject, issuer, validity and
    the expiry warning; a refused certificate carries its transfer code; the overview has it
    all, sender number included."""
    sender = admin.senders[0]
    kbo = sender.quality.enterprise
    session = await session_for(admin, sender.htb)
    created = await api(
        admin, "POST", f"/enterprises/{kbo}/qualities", {"kind": "social_secretariat"}, auth=session
    )
    assert (created.status, data(created)) == (
        201,
        {"enterprise": kbo, "kind": "social_secretariat"},
    )
    twice = await api(
        admin, "POST", f"/enterprises/{kbo}/qualities", {"kind": "social_secretariat"}, auth=session
    )
    assert (twice.status, data(twice)["code"]) == (409, "duplicate")
    wizard = f"/enterprises/{kbo}/qualities/social_secretariat/structured"
    early = await api(admin, "POST", wizard + "/technical-user", PERSON, auth=session)
    assert (early.status, data(early)["code"]) == (409, "step_order")
    assert (await api(admin, "POST", wizard + "/save", auth=session)).status == 200
    technical = await api(
        admin, "POST", wizard + "/technical-user", {**PERSON, "login": "ss-tech"}, auth=session
    )
    assert data(technical) == {"technical_user": "ss-tech"}

    weak = await api(
        admin, "POST", wizard + "/channels", {"kind": "ftp", "ftp_password": "weak"}, auth=session
    )
    assert (weak.status, data(weak)["code"]) == (422, "password_policy")
    ftp = await api(
        admin,
        "POST",
        wizard + "/channels",
        {"kind": "ftp", "ftp_password": "Ftp-Password-2026!", "networks": ["192.0.2.0/24"]},
        auth=session,
    )
    assert ftp.status == 201, ftp
    number = data(ftp)["sender"]
    assert len(number) == 6

    certs = Certs(tmp_path)
    client = certs.make("ws-client", key_usage="critical,digitalSignature", days=400)
    web = await api(
        admin,
        "POST",
        wizard + "/channels",
        {"kind": "webservice", "client_certificate": client.decode()},
        auth=session,
    )
    assert data(web) == {"kind": "webservice", "sender": number}

    signing = certs.make("Ann Signer", days=10)
    uploaded = await api(
        admin, "POST", wizard + "/certificates", {"pem": signing.decode()}, auth=session
    )
    assert uploaded.status == 201, uploaded
    shown = data(uploaded)
    assert "CN=Ann Signer" in shown["subject"]
    assert shown["issuer"] == shown["subject"]  # self-signed
    assert shown["not_before"] < shown["not_after"]
    assert "register its successor" in shown["warning"]
    refused = await api(admin, "POST", wizard + "/certificates", {"pem": _expired()}, auth=session)
    problem = data(refused)
    assert (refused.status, problem["code"], problem["gateway_code"]) == (
        422,
        "bad_certificate",
        902,
    ), problem
    assert problem["detail"].startswith("902: ")
    ca_only = certs.make("Not For Signing", key_usage="critical,keyCertSign,cRLSign")
    unfit = await api(
        admin, "POST", wizard + "/certificates", {"pem": ca_only.decode()}, auth=session
    )
    assert (unfit.status, data(unfit)["code"]) == (422, "bad_certificate")
    garbage = await api(
        admin, "POST", wizard + "/certificates", {"pem": "not a certificate"}, auth=session
    )
    assert (garbage.status, data(garbage)["code"]) == (422, "bad_certificate")

    unknown = await api(admin, "PUT", wizard + "/services", {"codes": ["NOPE"]}, auth=session)
    assert (unknown.status, data(unknown)["code"]) == (422, "invalid")
    catalogue = data(await api(admin, "GET", "/services", auth=session))
    assert "DMFA" in {s["code"] for s in catalogue["services"]}
    chosen = await api(admin, "PUT", wizard + "/services", {"codes": ["DMFA"]}, auth=session)
    assert data(chosen) == {"services": ["DMFA"]}

    seen = data(await api(admin, "GET", wizard, auth=session))
    assert seen["sender"] == number
    assert seen["technical_user"]["login"] == "ss-tech"
    assert [c["kind"] for c in seen["channels"]] == ["ftp", "webservice"]
    assert seen["channels"][0]["allowed_networks"] == ["192.0.2.0/24"]
    assert [c["sha256"] for c in seen["certificates"]] == [shown["sha256"]]
    assert seen["services"] == ["DMFA"]


async def test_an_ssh_key_is_added_to_the_sftp_channel(admin: AdminEnv) -> None:
    """POST …/ssh-keys answers the key's SHA-256; the same key again is 409 duplicate, a
    malformed one 422."""
    sender = admin.senders[0]
    token = await token_for(admin, sender.htb, sender.quality)
    path = f"/enterprises/{sender.quality.enterprise}/qualities/employer/structured/ssh-keys"
    line = _ssh_line()
    added = await api(admin, "POST", path, {"key": line}, auth=token)
    assert added.status == 201, added
    assert len(data(added)["sha256"]) == 64
    again = await api(admin, "POST", path, {"key": line}, auth=token)
    assert (again.status, data(again)["code"]) == (409, "duplicate")
    bad = await api(admin, "POST", path, {"key": "ssh-ed25519 AAAAnot-base64"}, auth=token)
    assert bad.status == 422
    extra = await api(admin, "POST", path, {"key": line, "comment": "x"}, auth=token)
    assert (extra.status, data(extra)["code"]) == (422, "invalid")


async def test_a_leaked_credential_is_revoked(admin: AdminEnv, tmp_path: Path) -> None:
    """Through a token: remove an SSH key by the hex fingerprint the overview lists, a signing
    certificate, a channel; replace the technical user. An unknown one is 404."""
    sender = admin.senders[0]
    token = await token_for(admin, sender.htb, sender.quality)
    wizard = f"/enterprises/{sender.quality.enterprise}/qualities/employer/structured"
    added = data(await api(admin, "POST", wizard + "/ssh-keys", {"key": _ssh_line()}, auth=token))
    pem = Certs(tmp_path).make("Leaked Signer").decode()
    cert = data(await api(admin, "POST", wizard + "/certificates", {"pem": pem}, auth=token))
    before = data(await api(admin, "GET", wizard, auth=token))
    assert added["sha256"] in before["channels"][0]["ssh_keys"]
    gone = await api(admin, "DELETE", f"{wizard}/ssh-keys/{added['sha256']}", auth=token)
    assert gone.status == 204, gone
    again = await api(admin, "DELETE", f"{wizard}/ssh-keys/{added['sha256']}", auth=token)
    assert (again.status, data(again)["code"]) == (404, "not_found")
    removed = await api(admin, "DELETE", f"{wizard}/certificates/{cert['sha256']}", auth=token)
    assert removed.status == 204
    replaced = await api(
        admin, "PUT", wizard + "/technical-user", {**PERSON, "login": "tu0-new"}, auth=token
    )
    assert data(replaced) == {"technical_user": "tu0-new"}
    assert (await api(admin, "DELETE", wizard + "/channels/sftp", auth=token)).status == 204
    after = data(await api(admin, "GET", wizard, auth=token))
    assert (after["channels"], after["certificates"]) == ([], [])
    assert after["technical_user"]["login"] == "tu0-new"
    assert after["sender"] == sender.number
    assert (
        await api(admin, "DELETE", wizard + "/channels/carrier-pigeon", auth=token)
    ).status == 404


async def test_roles_and_the_password_switch(admin: AdminEnv) -> None:
    """The HTB appoints a user TB of its quality and dismisses it; the password switch goes
    off and on; a TB without the HTB's role is refused with the role it needs (403)."""
    sender = admin.senders[0]
    kbo = sender.quality.enterprise
    session = await session_for(admin, sender.htb)
    users = f"/enterprises/{kbo}/qualities/employer/users"
    await api(admin, "POST", users, {**PERSON, "login": "tb-zero"}, auth=session)
    appointed = await api(
        admin,
        "POST",
        f"/enterprises/{kbo}/roles",
        {"role": "TB", "login": "tb-zero", "quality": "employer"},
        auth=session,
    )
    assert (appointed.status, data(appointed)["role"]) == (201, "TB")
    shown = data(await api(admin, "GET", f"/enterprises/{kbo}", auth=session))
    assert {"login": "tb-zero", "role": "TB", "quality": "employer"} in shown["roles"]

    await set_password(admin.registry, "tb-zero")  # the TB chose its own password first
    tb = await session_for(admin, "tb-zero")
    refused = await api(
        admin, "PUT", f"/enterprises/{kbo}/password-login", {"enabled": False}, auth=tb
    )
    assert (refused.status, data(refused)["code"]) == (403, "forbidden")
    assert "needs role HTB" in data(refused)["detail"]

    off = await api(
        admin, "PUT", f"/enterprises/{kbo}/password-login", {"enabled": False}, auth=session
    )
    assert data(off) == {"enterprise": kbo, "password_login": False}
    assert (
        data(await api(admin, "GET", f"/enterprises/{kbo}", auth=session))["password_login"]
        is False
    )
    await api(admin, "PUT", f"/enterprises/{kbo}/password-login", {"enabled": True}, auth=session)

    gone = await api(
        admin, "DELETE", f"/enterprises/{kbo}/roles/TB/tb-zero?quality=employer", auth=session
    )
    assert gone.status == 204
    again = await api(
        admin, "DELETE", f"/enterprises/{kbo}/roles/TB/tb-zero?quality=employer", auth=session
    )
    assert (again.status, data(again)["code"]) == (404, "not_found")


async def test_tokens_are_made_in_a_session_and_never_by_a_token(admin: AdminEnv) -> None:
    """A session makes a token (its secret once); the token lists its quality's tokens but may
    not make one (403); revoked, it stops working (401)."""
    sender = admin.senders[0]
    session = await session_for(admin, sender.htb)
    made = await api(
        admin,
        "POST",
        "/tokens",
        {"quality": "employer", "name": "payroll", "days": 7},
        auth=session,
    )
    assert made.status == 201, made
    issued = data(made)
    assert issued["secret"].startswith("bgt_")
    assert (issued["enterprise"], issued["quality"]) == (sender.quality.enterprise, "employer")
    token = Credential(("-H", f"Authorization: Bearer {issued['secret']}"))
    listed = data(await api(admin, "GET", "/tokens?quality=employer", auth=token))
    assert [(t["id"], t["name"], t["maker"]) for t in listed["tokens"]] == [
        (issued["id"], "payroll", sender.htb)
    ]
    assert "secret" not in listed["tokens"][0]
    nested = await api(
        admin, "POST", "/tokens", {"quality": "employer", "name": "child"}, auth=token
    )
    assert (nested.status, data(nested)["code"]) == (403, "forbidden")
    long = await api(
        admin, "POST", "/tokens", {"quality": "employer", "name": "x", "days": 999}, auth=session
    )
    assert long.status == 422
    assert (await api(admin, "DELETE", f"/tokens/{issued['id']}", auth=token)).status == 204
    assert (await api(admin, "GET", "/tokens?quality=employer", auth=token)).status == 401


async def test_the_audit_trail_is_the_enterprise_s_own(admin: AdminEnv) -> None:
    """GET /audit: newest first, only records of the caller's enterprise, filtered and paged."""
    mine, other = admin.senders
    token = await token_for(admin, mine.htb, mine.quality)
    await api(
        admin,
        "POST",
        f"/enterprises/{mine.quality.enterprise}/qualities/employer/users",
        {**PERSON, "login": "audited"},
        auth=token,
    )
    page = data(await api(admin, "GET", "/audit?limit=200", auth=token))
    entries = page["entries"]
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs, reverse=True)
    assert entries[0]["action"] == "user.create"
    assert entries[0]["target"] == "audited"
    text = json.dumps(entries)
    assert other.quality.enterprise not in text
    assert other.htb not in text
    users_only = data(await api(admin, "GET", "/audit?action=user.&limit=1", auth=token))
    assert [e["action"] for e in users_only["entries"]] == ["user.create"]
    assert users_only["next_offset"] == 1
    assert (await api(admin, "GET", "/audit?limit=0", auth=token)).status == 422


def _expired() -> str:
    """A signing certificate (PEM) whose validity ended yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Expired Signer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now - timedelta(days=1))
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _set(sender: str, name: str) -> SetTrace:
    return SetTrace(
        ticket="T" * 13,
        sender=sender,
        folder="IN",
        trigger="GO",
        trigger_name=name,
        state="acknowledged",
        finished=True,
        code=None,
        reason=None,
        received_at=None,
        routed_at=None,
        destination=None,
        duplicate_of=None,
        signer_subject=None,
        files=[],
        attempts=[],
        acknowledgement=[],
        archive=None,
    )


async def test_trace_shows_only_the_callers_senders(admin: AdminEnv) -> None:
    """GET /trace/{query} filters the pipeline's answer to the caller's senders; a file that
    is only another enterprise's is 404, like one that does not exist."""
    mine, other = admin.senders

    async def fake_trace(query: str) -> TraceReport:
        report = TraceReport(query=query)
        if query in ("shared", "mine"):
            report.sets.append(_set(mine.number, query))
        if query in ("shared", "theirs"):
            report.sets.append(_set(other.number, query))
            report.refusals.append({"sender": other.number, "code": 108})
        return report

    admin.gateway.plane.trace = fake_trace
    token = await token_for(admin, mine.htb, mine.quality)
    shared = data(await api(admin, "GET", "/trace/shared", auth=token))
    assert [s["sender"] for s in shared["sets"]] == [mine.number]
    assert shared["refusals"] == []
    assert (await api(admin, "GET", "/trace/mine", auth=token)).status == 200
    for query in ("theirs", "nothing"):
        answer = await api(admin, "GET", f"/trace/{query}", auth=token)
        assert (answer.status, data(answer)["code"]) == (404, "not_found")


async def test_bodies_are_closed_and_bounded(admin: AdminEnv) -> None:
    """Unknown keys, wrong types, oversized strings and non-JSON are 422 before the registry is
    asked; no credential is 401."""
    sender = admin.senders[0]
    token = await token_for(admin, sender.htb, sender.quality)
    path = f"/enterprises/{sender.quality.enterprise}/qualities/employer/users"
    for body in (
        {**PERSON, "role": "HTB"},
        {**PERSON, "name": "x" * 201},
        {**PERSON, "language": "xx"},
        {"name": 5, "email": "a@b.c"},
        "not an object",
    ):
        answer = await api(admin, "POST", path, body, auth=token)
        assert (answer.status, data(answer)["code"]) == (422, "invalid"), body
    assert (await api(admin, "POST", path, PERSON)).status == 401
    assert isinstance(sender.quality, QualityRef)
