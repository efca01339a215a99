"""A small registry world for the rule tests: two enterprises, their managers and users.

Enterprise A has qualities ``employer`` (TB ``tb-a``, co-TB ``cotb-a``) and
``social_secretariat`` (TB ``tb2-a``), an HTB ``htb-a`` and a co-HTB ``cohtb-a``; ``user-a`` holds
no role. Enterprise B has one quality ``employer`` and its HTB ``htb-b``. Each quality has a
candidate user (``cand-…``) that actions can be aimed at.
"""

from __future__ import annotations

from gateway.registry.service import Registry
from gateway.registry.types import (
    AuthFailure,
    EnterpriseNumber,
    PasswordCredential,
    Person,
    QualityRef,
    Refusal,
    Role,
)
from gateway.registry.validate import kbo_with_check_digits

KBO_A = kbo_with_check_digits(2000001)
KBO_B = kbo_with_check_digits(3000001)
EMPLOYER_A = QualityRef(KBO_A, "employer")
SOCIAL_A = QualityRef(KBO_A, "social_secretariat")
EMPLOYER_B = QualityRef(KBO_B, "employer")
CANDIDATE = {EMPLOYER_A: "cand-a-emp", SOCIAL_A: "cand-a-ss", EMPLOYER_B: "cand-b-emp"}


def person(name: str, *, nrn: str | None = "85010112387") -> Person:
    """Contact data for a test person."""
    return Person(
        name=name,
        email=f"{name.lower().replace(' ', '.')}@example.be",
        phone="+32470123456",
        language="nl",
        national_register_number=nrn,
    )


def ok(value: object) -> None:
    """Fail loudly when a setup step was refused."""
    if isinstance(value, Refusal | AuthFailure):
        raise AssertionError(f"setup step refused: {value}")


async def provision(reg: Registry, kbo: EnterpriseNumber, htb: str) -> None:
    """Provision ``kbo`` with HTB ``htb`` and activate it by the HTB's first login."""
    done = await reg.provision_enterprise(
        actor=None, kbo=kbo, name=f"Enterprise {kbo}", htb=person(htb), htb_login=htb
    )
    if isinstance(done, Refusal) or done.issued is None:
        raise AssertionError(f"provisioning refused: {done}")
    ok(await reg.console_login(htb, PasswordCredential(done.issued.password)))


async def build_world(reg: Registry) -> None:
    """Create the world described in the module docstring."""
    await provision(reg, KBO_A, "htb-a")
    await provision(reg, KBO_B, "htb-b")
    for quality in (EMPLOYER_A, SOCIAL_A, EMPLOYER_B):
        ok(await reg.activate_quality(actor=None, kbo=quality.enterprise, kind=quality.kind))
    for login, quality in (
        ("cohtb-a", EMPLOYER_A),
        ("tb-a", EMPLOYER_A),
        ("cotb-a", EMPLOYER_A),
        ("tb2-a", SOCIAL_A),
        ("user-a", EMPLOYER_A),
        ("cand-a-emp", EMPLOYER_A),
        ("cand-a-ss", SOCIAL_A),
        ("cand-b-emp", EMPLOYER_B),
    ):
        ok(await reg.create_user(actor=None, quality=quality, person=person(login), login=login))
    ok(await reg.appoint(actor=None, role=Role.co_htb, login="cohtb-a"))
    ok(await reg.appoint(actor=None, role=Role.tb, login="tb-a", quality=EMPLOYER_A))
    ok(await reg.appoint(actor=None, role=Role.co_tb, login="cotb-a", quality=EMPLOYER_A))
    ok(await reg.appoint(actor=None, role=Role.tb, login="tb2-a", quality=SOCIAL_A))
