"""The rule table's role × action × target matrix (tests/registry/test_rules.py) through the admin
API with curl: each role's console session asks for each action on its own quality, another
quality of its enterprise and another enterprise.

Expected, from the same guide-written matrix: an allowed action answers 2xx and changes the
registry (a view changes nothing); a refused one in the caller's enterprise is 403 with code
``forbidden`` and the role it needs; anything in another enterprise is 404 ``not_found`` (no
IDOR). Nothing changes on a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.admin.config import AdminConfig
from gateway.admin.routes import ROUTES
from gateway.admin.server import AdminGateway, AdminPlane
from gateway.ops.tls import DevIdentity
from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.registry.types import QualityRef, Role
from tests.admin.admin_env import AdminEnv
from tests.admin.api_client import api, data, session_for
from tests.registry.conftest import CHEAP, ROOT, Clock
from tests.registry.snapshot import snapshot
from tests.registry.test_rules import ACTORS, CURRENT_TB, EXPECTED, NEEDS, TARGETS, _allowed
from tests.registry.world import CANDIDATE, build_world

pytestmark = pytest.mark.timeout(120)

Request = tuple[str, str, Any]


def request_for(action: str, q: QualityRef) -> Request:
    """The API request that asks for ``action`` on quality ``q`` (test_rules' ATTEMPTS)."""
    e, cand = f"/enterprises/{q.enterprise}", CANDIDATE[q]
    quality = f"{e}/qualities/{q.kind}"
    return {
        "activate_quality": ("POST", f"{e}/qualities", {"kind": "service_provider"}),
        "appoint_co_htb": ("POST", f"{e}/roles", {"role": "co-HTB", "login": cand}),
        "appoint_tb": ("POST", f"{e}/roles", {"role": "TB", "login": cand, "quality": q.kind}),
        "appoint_co_tb": (
            "POST",
            f"{e}/roles",
            {"role": "co-TB", "login": cand, "quality": q.kind},
        ),
        "manage_users.create": (
            "POST",
            f"{quality}/users",
            {"name": "New Person", "email": "new@example.be", "login": "new-person"},
        ),
        "manage_users.block": ("POST", f"/users/{cand}/block", None),
        "manage_users.reset": ("POST", f"/users/{cand}/password", None),
        "configure_structured": ("POST", f"{quality}/structured/save", None),
        "switch_password_login": ("PUT", f"{e}/password-login", {"enabled": False}),
        "view": ("GET", f"{quality}/structured", None),
    }[action]


@pytest.fixture(scope="module")
def world_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rule tests' world (tests/registry/world.py) in a SQLite file, built once."""
    path = tmp_path_factory.mktemp("api-world") / "world.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"

    async def build() -> None:
        await migrate(url)
        registry = _registry(url, path.parent)
        await build_world(registry)
        await registry.engine.dispose()

    asyncio.run(build())
    # The world's people have replaced their temporary passwords (the API refuses to act for a
    # session whose password is still temporary; test_sign_in covers that rule).
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE users SET must_change_password = 0")
    return path


def _registry(url: str, folder: Path) -> Registry:
    return Registry(
        create_engine(url),
        clock=Clock(),
        notifier=OutboxNotifier(folder / "outbox"),
        hashing=PasswordHashing(CHEAP),
        catalogue=load_service_catalogue(ROOT / "config" / "services.toml"),
    )


@pytest.fixture
async def world_api(
    world_file: Path, tmp_path: Path, admin_identity: DevIdentity
) -> AsyncIterator[AdminEnv]:
    """An admin listener over a private copy of the world."""
    db = tmp_path / "world.sqlite3"
    shutil.copyfile(world_file, db)
    registry = _registry(f"sqlite+aiosqlite:///{db}", tmp_path)
    config = AdminConfig(tls_cert=admin_identity.cert, tls_key=admin_identity.key, port=0)
    gateway = AdminGateway(AdminPlane(registry=registry, config=config), ROUTES)
    await gateway.start()
    try:
        yield AdminEnv(gateway, registry, [], admin_identity.ca, tmp_path)
    finally:
        await gateway.stop()
        await registry.engine.dispose()


def _state(tables: dict[str, list[str]]) -> dict[str, list[str]]:
    """The registry without the caller's own console session (touched by every request)."""
    return {name: rows for name, rows in tables.items() if name != "console_sessions"}


@pytest.mark.parametrize("where", list(TARGETS))
@pytest.mark.parametrize("action", list(EXPECTED))
@pytest.mark.parametrize("role", list(ACTORS))
async def test_rule_matrix_through_the_api(
    world_api: AdminEnv, role: str, action: str, where: str
) -> None:
    """Each role may do through the API exactly what the registry lets it do; another
    enterprise's target is 404, a refusal in its own enterprise 403 naming the role needed."""
    registry, target = world_api.registry, TARGETS[where]
    if action == "appoint_tb" and target in CURRENT_TB:
        # Free the quality's single TB slot first (operator), so an allowed appointment succeeds.
        freed = await registry.dismiss(
            actor=None, role=Role.tb, login=CURRENT_TB[target], quality=target
        )
        assert freed is None
    session = await session_for(world_api, ACTORS[role])
    method, path, body = request_for(action, target)
    before = _state(await snapshot(registry.engine))
    answer = await api(world_api, method, path, body, auth=session)
    after = _state(await snapshot(registry.engine))
    if _allowed(role, action, where):
        assert 200 <= answer.status < 300, answer
        assert (after != before) == (action != "view")
        return
    assert after == before
    if where == "other enterprise":
        assert (answer.status, data(answer)["code"]) == (404, "not_found"), answer
    else:
        problem = data(answer)
        assert (answer.status, problem["code"]) == (403, "forbidden"), answer
        assert f"needs role {NEEDS[action]} " in problem["detail"]
