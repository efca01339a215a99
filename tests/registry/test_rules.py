"""The rule table, exhaustively: every role × action × own quality, other quality, other enterprise.

The expected matrix below is written from the guide, independently of ``gateway.registry.rules``.
Each case runs through the real service on its own copy of a prepared SQLite database: an
allowed action succeeds; a forbidden one is refused with ``forbidden``, a message naming the
role it needs, and not one row changed.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.registry.catalogue import ServiceCatalogue
from gateway.registry.credentials import PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.rules import Action, Held, Target, decide
from gateway.registry.service import Registry
from gateway.registry.types import QualityRef, Refusal, Role
from tests.registry.conftest import CHEAP, Clock
from tests.registry.snapshot import snapshot
from tests.registry.world import (
    CANDIDATE,
    EMPLOYER_A,
    EMPLOYER_B,
    SOCIAL_A,
    build_world,
    person,
)

ACTORS = {"HTB": "htb-a", "co-HTB": "cohtb-a", "TB": "tb-a", "co-TB": "cotb-a", "user": "user-a"}
TARGETS = {"own quality": EMPLOYER_A, "other quality": SOCIAL_A, "other enterprise": EMPLOYER_B}
ALL_MANAGERS = {"HTB", "co-HTB", "TB", "co-TB"}

# action -> (who may act on their own quality, who on another quality of their enterprise).
# Nobody may act on another enterprise. TB and co-TB of "employer" are the actors' roles.
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "activate_quality": ({"HTB"}, {"HTB"}),
    "appoint_co_htb": ({"HTB"}, {"HTB"}),
    "appoint_tb": ({"HTB"}, {"HTB"}),
    "appoint_co_tb": ({"HTB", "TB"}, {"HTB"}),
    "manage_users.create": (ALL_MANAGERS, {"HTB", "co-HTB"}),
    "manage_users.block": (ALL_MANAGERS, {"HTB", "co-HTB"}),
    "manage_users.reset": (ALL_MANAGERS, {"HTB", "co-HTB"}),
    "configure_structured": (ALL_MANAGERS, {"HTB", "co-HTB"}),
    "switch_password_login": ({"HTB"}, {"HTB"}),
    "view": (ALL_MANAGERS, {"HTB", "co-HTB"}),
}
# The roles a refusal must name, in the order HTB, co-HTB, TB, co-TB.
NEEDS = {
    "activate_quality": "HTB",
    "appoint_co_htb": "HTB",
    "appoint_tb": "HTB",
    "appoint_co_tb": "HTB or TB",
    "manage_users.create": "HTB or co-HTB or TB or co-TB",
    "manage_users.block": "HTB or co-HTB or TB or co-TB",
    "manage_users.reset": "HTB or co-HTB or TB or co-TB",
    "configure_structured": "HTB or co-HTB or TB or co-TB",
    "switch_password_login": "HTB",
    "view": "HTB or co-HTB or TB or co-TB",
}
CURRENT_TB = {EMPLOYER_A: "tb-a", SOCIAL_A: "tb2-a"}

Attempt = Callable[[Registry, str, QualityRef], Awaitable[Any]]


async def _appoint_tb(reg: Registry, actor: str, q: QualityRef) -> Any:
    return await reg.appoint(actor=actor, role=Role.tb, login=CANDIDATE[q], quality=q)


ATTEMPTS: dict[str, Attempt] = {
    "activate_quality": lambda r, a, q: r.activate_quality(
        actor=a, kbo=q.enterprise, kind="service_provider"
    ),
    "appoint_co_htb": lambda r, a, q: r.appoint(actor=a, role=Role.co_htb, login=CANDIDATE[q]),
    "appoint_tb": _appoint_tb,
    "appoint_co_tb": lambda r, a, q: r.appoint(
        actor=a, role=Role.co_tb, login=CANDIDATE[q], quality=q
    ),
    "manage_users.create": lambda r, a, q: r.create_user(
        actor=a, quality=q, person=person("New Person"), login="new-person"
    ),
    "manage_users.block": lambda r, a, q: r.block_user(actor=a, login=CANDIDATE[q]),
    "manage_users.reset": lambda r, a, q: r.reset_password(actor=a, login=CANDIDATE[q]),
    "configure_structured": lambda r, a, q: r.save_configuration(actor=a, quality=q),
    "switch_password_login": lambda r, a, q: r.set_password_login(
        actor=a, kbo=q.enterprise, enabled=False
    ),
    "view": lambda r, a, q: r.overview(actor=a, quality=q),
}


@pytest.fixture(scope="module")
def world_file(tmp_path_factory: pytest.TempPathFactory, catalogue: ServiceCatalogue) -> Path:
    """A SQLite database holding the world, built once for the module."""
    path = tmp_path_factory.mktemp("world") / "world.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"

    async def build() -> None:
        await migrate(url)
        engine = create_engine(url)
        reg = Registry(
            engine,
            clock=Clock(),
            notifier=OutboxNotifier(path.parent / "outbox"),
            hashing=PasswordHashing(CHEAP),
            catalogue=catalogue,
        )
        await build_world(reg)
        await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture
async def world(
    world_file: Path, tmp_path: Path, hashing: PasswordHashing, catalogue: ServiceCatalogue
) -> AsyncIterator[Registry]:
    """A registry on a private copy of the world."""
    path = tmp_path / "world.sqlite3"
    shutil.copyfile(world_file, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    yield Registry(
        engine,
        clock=Clock(),
        notifier=OutboxNotifier(tmp_path / "outbox"),
        hashing=hashing,
        catalogue=catalogue,
    )
    await engine.dispose()


def _allowed(role: str, action: str, where: str) -> bool:
    if where == "other enterprise":
        return False
    own, other = EXPECTED[action]
    return role in (own if where == "own quality" else other)


@pytest.mark.parametrize("where", list(TARGETS))
@pytest.mark.parametrize("action", list(EXPECTED))
@pytest.mark.parametrize("role", list(ACTORS))
async def test_rule_matrix(world: Registry, role: str, action: str, where: str) -> None:
    """Each role may do exactly what the guide says, on exactly the targets it says."""
    target = TARGETS[where]
    if action == "appoint_tb" and target in CURRENT_TB:
        # Free the quality's single TB slot first (operator), so an allowed appointment succeeds.
        assert (
            await world.dismiss(actor=None, role=Role.tb, login=CURRENT_TB[target], quality=target)
            is None
        )
    before = await snapshot(world.engine)
    result = await ATTEMPTS[action](world, ACTORS[role], target)
    after = await snapshot(world.engine)
    if _allowed(role, action, where):
        assert not isinstance(result, Refusal), result
        if action != "view":
            assert after != before
    else:
        assert isinstance(result, Refusal)
        assert result.reason == "forbidden"
        assert f"needs role {NEEDS[action]} " in result.message
        assert after == before


def test_rule_table_covers_every_action() -> None:
    """The matrix tests every action of the rule table (activate_account is tested below)."""
    tested = {name.split(".")[0] for name in EXPECTED} | {"activate_account"}
    assert tested == {a.value for a in Action}


@pytest.mark.parametrize("where", ["same enterprise", "other enterprise"])
@pytest.mark.parametrize("role", list(Role))
def test_only_the_htb_activates_the_account(role: Role, where: str) -> None:
    """Pure rule: activate_account belongs to the HTB of that enterprise alone."""
    held = [
        Held(role=role, enterprise_id=1, quality_id=None if role in (Role.htb, Role.co_htb) else 7)
    ]
    target = Target(enterprise_id=1 if where == "same enterprise" else 2, enterprise_label="x")
    refusal = decide(Action.activate_account, held, target)
    assert (refusal is None) == (role is Role.htb and where == "same enterprise")


async def test_blocked_manager_cannot_act(world: Registry) -> None:
    """A blocked TB is refused even for what its role allows, and nothing changes."""
    assert await world.block_user(actor=None, login="tb-a") is None
    before = await snapshot(world.engine)
    result = await world.save_configuration(actor="tb-a", quality=EMPLOYER_A)
    assert isinstance(result, Refusal)
    assert result.reason == "forbidden"
    assert "blocked" in result.message
    assert await snapshot(world.engine) == before


# (actor, role, appointee, quality) -> (reason, words of the message). None acts as the operator.
APPOINTMENT_HOLES: dict[tuple[str | None, Role, str, QualityRef | None], tuple[str, str]] = {
    ("htb-a", Role.co_htb, "htb-a", None): ("forbidden", "htb-a may not appoint themselves co-HTB"),
    (None, Role.co_htb, "htb-a", None): ("invalid", "htb-a is the HTB of enterprise"),
    (None, Role.tb, "htb-a", SOCIAL_A): ("invalid", "which already includes TB"),
    ("htb-a", Role.co_tb, "htb-a", EMPLOYER_A): ("forbidden", "may not appoint themselves"),
    ("tb-a", Role.co_tb, "htb-a", EMPLOYER_A): ("invalid", "which already includes co-TB"),
    ("tb-a", Role.co_tb, "tb-a", EMPLOYER_A): ("forbidden", "tb-a may not appoint themselves"),
    ("htb-a", Role.co_tb, "tb-a", EMPLOYER_A): (
        "invalid",
        "tb-a is the TB of quality employer of enterprise",
    ),
}


@pytest.mark.parametrize(
    ("actor", "role", "appointee", "quality"),
    list(APPOINTMENT_HOLES),
    ids=[f"{a or 'operator'}:{r.value}:{p}" for a, r, p, _ in APPOINTMENT_HOLES],
)
async def test_nobody_is_appointed_to_a_role_they_hold_or_by_themselves(
    world: Registry, actor: str | None, role: Role, appointee: str, quality: QualityRef | None
) -> None:
    """The HTB is appointed to nothing, a TB not co-TB of its quality, nobody by themselves."""
    before = await snapshot(world.engine)
    result = await world.appoint(actor=actor, role=role, login=appointee, quality=quality)
    reason, words = APPOINTMENT_HOLES[(actor, role, appointee, quality)]
    assert isinstance(result, Refusal)
    assert (result.reason, words in result.message) == (reason, True), result
    assert await snapshot(world.engine) == before


async def test_a_tb_may_be_co_tb_of_another_quality(world: Registry) -> None:
    """The TB role covers its own quality only: co-TB of another quality is a new appointment."""
    assert (
        await world.appoint(actor="htb-a", role=Role.co_tb, login="tb-a", quality=SOCIAL_A) is None
    )


async def test_the_candidate_path_still_works_after_a_refusal(world: Registry) -> None:
    """A TB refused for appointing herself may still appoint another user co-TB."""
    assert isinstance(
        await world.appoint(actor="tb-a", role=Role.co_tb, login="tb-a", quality=EMPLOYER_A),
        Refusal,
    )
    result = await world.appoint(
        actor="tb-a", role=Role.co_tb, login=CANDIDATE[EMPLOYER_A], quality=EMPLOYER_A
    )
    assert result is None
