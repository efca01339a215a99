"""No IDOR through the admin API: every endpoint that names an enterprise, a quality, a login, a
role holder, a token or a file answers another enterprise's the same 404 as what does not exist
(never 403), with a token and with a console session, and changes nothing. A token is held to
its own quality within its enterprise too."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin.api import ENDPOINTS, Endpoint
from gateway.pipeline.trace import TraceReport
from gateway.registry.types import EnterpriseNumber, Person, QualityRef
from tests.admin.admin_env import AdminEnv, _ssh_line
from tests.admin.api_client import Credential, api, data, session_for, token_for
from tests.admin.test_api import _set
from tests.pipeline.provision import ok
from tests.registry.snapshot import snapshot

pytestmark = pytest.mark.timeout(120)

PERSON = {"name": "Eve Intruder", "email": "eve@example.test"}
BODIES: dict[str, Any] = {
    "PUT /enterprises/{kbo}/password-login": {"enabled": False},
    "POST /enterprises/{kbo}/qualities": {"kind": "service_provider"},
    "POST /enterprises/{kbo}/roles": {"role": "co-HTB", "login": "htb1"},
    "POST /enterprises/{kbo}/qualities/{kind}/users": PERSON,
    "POST /enterprises/{kbo}/qualities/{kind}/structured/technical-user": PERSON,
    "POST /enterprises/{kbo}/qualities/{kind}/structured/channels": {
        "kind": "ftp",
        "ftp_password": "Pass-word-42!",
    },
    "POST /enterprises/{kbo}/qualities/{kind}/structured/ssh-keys": {"key": _ssh_line()},
    "POST /enterprises/{kbo}/qualities/{kind}/structured/certificates": {"pem": "-----BEGIN"},
    "PUT /enterprises/{kbo}/qualities/{kind}/structured/services": {"codes": ["DMFA"]},
    "PUT /enterprises/{kbo}/qualities/{kind}/structured/technical-user": PERSON,
}
NAMING = [e for e in ENDPOINTS if "{" in e.path]
"""Every endpoint whose path names something."""


def label(endpoint: Endpoint) -> str:
    """``METHOD path``."""
    return f"{endpoint.method} {endpoint.path}"


# Untouched tables a request of a foreign caller may write: its own session's last use.
def _state(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: rows for name, rows in tables.items() if name != "console_sessions"}


async def _foreign(admin: AdminEnv) -> dict[str, str]:
    """Path values naming enterprise 1's things; its token, and a trace that finds its set."""
    other = admin.senders[1]
    token = ok(
        await admin.registry.issue_token(
            actor=other.htb, quality=other.quality, name="theirs", days=30
        )
    )

    async def trace(query: str) -> TraceReport:
        report = TraceReport(query=query)
        report.sets.append(_set(other.number, query))
        return report

    admin.gateway.plane.trace = trace
    return {
        "kbo": other.quality.enterprise,
        "kind": "employer",
        "login": other.login,
        "role": "co-TB",
        "channel": "sftp",
        "fingerprint": "ab" * 32,
        "token_id": str(token.id),
        "query": "FI.DMFA.000000.20260115.00001.R.1.1",
    }


async def _caller(admin: AdminEnv, how: str) -> Credential:
    mine = admin.senders[0]
    if how == "token":
        return await token_for(admin, mine.htb, mine.quality)
    return await session_for(admin, mine.htb)


async def _refused_as_missing(
    admin: AdminEnv, auth: Credential, method: str, path: str, body: Any
) -> None:
    before = _state(await snapshot(admin.registry.engine))
    answer = await api(admin, method, path, body, auth=auth)
    assert (answer.status, data(answer).get("code")) == (404, "not_found"), (path, answer)
    assert _state(await snapshot(admin.registry.engine)) == before


@pytest.mark.parametrize("how", ["token", "session"])
@pytest.mark.parametrize("endpoint", NAMING, ids=label)
async def test_another_enterprise_is_not_found(
    admin: AdminEnv, endpoint: Endpoint, how: str
) -> None:
    """The endpoint with enterprise 1's kbo, login, role holder, token id or file: 404."""
    values = await _foreign(admin)
    auth = await _caller(admin, how)
    path = endpoint.path.format(**values)
    if endpoint.path.endswith("/roles/{role}/{login}"):
        path += "?quality=employer"
    await _refused_as_missing(admin, auth, endpoint.method, path, BODIES.get(label(endpoint)))


@pytest.mark.parametrize("how", ["token", "session"])
@pytest.mark.parametrize(
    ("method", "where", "body"),
    [
        ("POST", "/enterprises/{mine}/roles", {"role": "co-HTB", "login": "htb1"}),
        (
            "POST",
            "/enterprises/{mine}/roles",
            {"role": "TB", "login": "tu1", "quality": "employer"},
        ),
        ("DELETE", "/enterprises/{mine}/roles/co-HTB/htb1", None),
        ("DELETE", "/enterprises/{mine}/roles/TB/htb1?quality=employer", None),
    ],
    ids=["appoint-their-htb", "appoint-their-user", "dismiss-their-htb", "dismiss-their-tb"],
)
async def test_a_login_of_another_enterprise_is_not_found(
    admin: AdminEnv, how: str, method: str, where: str, body: Any
) -> None:
    """Naming another enterprise's login under one's own enterprise is 404 too."""
    auth = await _caller(admin, how)
    path = where.format(mine=admin.senders[0].quality.enterprise)
    await _refused_as_missing(admin, auth, method, path, body)


async def test_a_token_reaches_only_its_own_quality(admin: AdminEnv) -> None:
    """Enterprise 0 gains a second quality with a user and a token: the employer token gets
    404 for the quality, its user and its token, where a session of the same HTB gets 200."""
    mine = admin.senders[0]
    kbo = mine.quality.enterprise
    social = QualityRef(EnterpriseNumber(kbo), "social_secretariat")
    ok(await admin.registry.activate_quality(actor=mine.htb, kbo=kbo, kind=social.kind))
    ok(
        await admin.registry.create_user(
            actor=mine.htb,
            quality=social,
            login="ss-user",
            person=Person(name="Social Clerk", email="clerk@example.test"),
        )
    )
    theirs = ok(
        await admin.registry.issue_token(actor=mine.htb, quality=social, name="ss", days=30)
    )
    token = await token_for(admin, mine.htb, mine.quality)
    session = await session_for(admin, mine.htb)
    users = f"/enterprises/{kbo}/qualities/social_secretariat/users"
    assert (await api(admin, "GET", users, auth=session)).status == 200
    for method, path, body in (
        ("GET", users, None),
        ("POST", users, PERSON),
        ("GET", f"/enterprises/{kbo}/qualities/social_secretariat/structured", None),
        ("POST", f"/enterprises/{kbo}/qualities/social_secretariat/structured/save", None),
        ("POST", "/users/ss-user/block", None),
        ("POST", "/users/ss-user/password", None),
        ("DELETE", "/users/ss-user", None),
        ("GET", "/tokens?quality=social_secretariat", None),
        ("DELETE", f"/tokens/{theirs.id}", None),
        (
            "POST",
            f"/enterprises/{kbo}/roles",
            {"role": "TB", "login": "ss-user", "quality": "social_secretariat"},
        ),
    ):
        await _refused_as_missing(admin, token, method, path, body)
    assert (await api(admin, "GET", users, auth=session)).status == 200


async def test_lists_hold_only_the_callers_enterprise(admin: AdminEnv) -> None:
    """GET /enterprises is the caller's own; a token made in a session is for its own
    enterprise whatever the body says (it has no enterprise field: 422)."""
    mine, other = admin.senders
    session = await session_for(admin, mine.htb)
    listed = data(await api(admin, "GET", "/enterprises", auth=session))
    assert listed == {"enterprises": [mine.quality.enterprise]}
    sneaky = {"quality": "employer", "name": "x", "enterprise": other.quality.enterprise}
    assert (await api(admin, "POST", "/tokens", sneaky, auth=session)).status == 422


def test_every_naming_endpoint_is_covered() -> None:
    """The parametrised test above walks every endpoint whose path names something."""
    assert {label(e) for e in NAMING} >= set(BODIES)
    assert all(
        e.method in {"GET", "DELETE"} or label(e) in BODIES or e.body is None for e in NAMING
    )
