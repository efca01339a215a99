"""Who may do what: the one rule table of access management, and the pure function that reads it.

The guide (domain/000_36f6d54a4c1c892a.txt) and DESIGN.md "Access management" give the rules:

- the HTB activates the enterprise account (first login), activates qualities, appoints co-HTBs
  and one TB per quality, and switches password login off for the whole enterprise;
- a TB appoints co-TBs for its quality; the HTB holds the TB profile for every quality, so it may
  too;
- users of a quality are managed, and its structured messages configured, by the (co-)HTB and by
  the (co-)TB of that quality; the same people may look at that quality's data.

HTB and co-HTB hold for the whole enterprise, TB and co-TB for one quality. Nobody acts on
another enterprise. The table is data: the service layer asks :func:`decide` before every change
and a test walks every role × action × target.

Who may be appointed is a second, smaller table (:data:`INCLUDED_IN`, read by
:func:`check_appointment`): nobody appoints themselves (a TB naming herself co-TB gains nothing
but a second appointment that outlives her dismissal), and nobody is appointed to a role that one
of their own already includes. The HTB is named at provisioning and holds every role of its
enterprise, so the HTB is appointed to nothing; a TB already holds co-TB for its quality.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gateway.registry.types import Refusal, Role


class Action(StrEnum):
    """Everything an access manager can ask the registry to do."""

    activate_account = "activate_account"
    activate_quality = "activate_quality"
    appoint_co_htb = "appoint_co_htb"
    appoint_tb = "appoint_tb"
    appoint_co_tb = "appoint_co_tb"
    manage_users = "manage_users"
    configure_structured = "configure_structured"
    switch_password_login = "switch_password_login"  # noqa: S105  (an action name)
    view = "view"


class Scope(StrEnum):
    """What an action is about: the whole enterprise, or one of its qualities."""

    enterprise = "enterprise"
    quality = "quality"


# Roles held for the whole enterprise; the others hold for the quality they were appointed for.
ENTERPRISE_ROLES = frozenset({Role.htb, Role.co_htb})

# THE rule table: action -> (scope, roles that may do it).
RULES: dict[Action, tuple[Scope, frozenset[Role]]] = {
    Action.activate_account: (Scope.enterprise, frozenset({Role.htb})),
    Action.activate_quality: (Scope.enterprise, frozenset({Role.htb})),
    Action.appoint_co_htb: (Scope.enterprise, frozenset({Role.htb})),
    Action.appoint_tb: (Scope.quality, frozenset({Role.htb})),
    Action.appoint_co_tb: (Scope.quality, frozenset({Role.htb, Role.tb})),
    Action.manage_users: (Scope.quality, frozenset({Role.htb, Role.co_htb, Role.tb, Role.co_tb})),
    Action.configure_structured: (
        Scope.quality,
        frozenset({Role.htb, Role.co_htb, Role.tb, Role.co_tb}),
    ),
    Action.switch_password_login: (Scope.enterprise, frozenset({Role.htb})),
    Action.view: (Scope.quality, frozenset({Role.htb, Role.co_htb, Role.tb, Role.co_tb})),
}

# The action that appointing (or dismissing) each role needs.
APPOINT_ACTION: dict[Role, Action] = {
    Role.htb: Action.activate_account,  # never granted through appoint(): the operator names HTBs
    Role.co_htb: Action.appoint_co_htb,
    Role.tb: Action.appoint_tb,
    Role.co_tb: Action.appoint_co_tb,
}

# role -> the roles whose holder already has it (for the appointment's own scope).
INCLUDED_IN: dict[Role, frozenset[Role]] = {
    Role.co_htb: frozenset({Role.htb}),
    Role.tb: frozenset({Role.htb}),
    Role.co_tb: frozenset({Role.htb, Role.tb}),
}

_ROLE_ORDER = (Role.htb, Role.co_htb, Role.tb, Role.co_tb)


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """One role appointment an actor holds."""

    role: Role
    enterprise_id: int
    quality_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What an action is applied to: an enterprise, and for quality actions one quality."""

    enterprise_id: int
    enterprise_label: str
    quality_id: int | None = None
    quality_label: str = ""


def covers(held: Held, target: Target, scope: Scope) -> bool:
    """True when appointment ``held`` reaches ``target`` for an action of ``scope``."""
    if held.enterprise_id != target.enterprise_id:
        return False
    if held.role in ENTERPRISE_ROLES:
        return True
    return scope is Scope.quality and held.quality_id == target.quality_id


def decide(action: Action, held: Iterable[Held], target: Target) -> Refusal | None:
    """``None`` if one of ``held`` grants ``action`` on ``target``, else a refusal naming roles."""
    scope, roles = RULES[action]
    for appointment in held:
        if appointment.role in roles and covers(appointment, target, scope):
            return None
    needed = " or ".join(role.value for role in _ROLE_ORDER if role in roles)
    where = f"enterprise {target.enterprise_label}"
    if scope is Scope.quality:
        where = f"quality {target.quality_label} of {where}"
    return Refusal("forbidden", f"{action.value} needs role {needed} for {where}")


def check_appointment(
    role: Role, *, appointee: str, held: Iterable[Held], target: Target, by_self: bool
) -> Refusal | None:
    """``None`` if ``appointee`` (holding ``held``) may be appointed ``role`` on ``target``.

    Asked after :func:`decide` has let the actor appoint at all; ``by_self`` is true when the
    actor names their own login.
    """
    if by_self:
        return Refusal("forbidden", f"{appointee} may not appoint themselves {role.value}")
    scope = RULES[APPOINT_ACTION[role]][0]
    for appointment in held:
        if appointment.role in INCLUDED_IN[role] and covers(appointment, target, scope):
            where = f"enterprise {target.enterprise_label}"
            if appointment.role not in ENTERPRISE_ROLES:
                where = f"quality {target.quality_label} of {where}"
            return Refusal(
                "invalid",
                f"{appointee} is the {appointment.role.value} of {where}, "
                f"which already includes {role.value}",
            )
    return None
