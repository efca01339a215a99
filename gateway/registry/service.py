"""The registry service: the one object every caller (channels, pipeline, admin CLI) goes through.

:class:`Registry` joins the access-management operations (``access``), the structured-message
configuration (``structured``) and authentication (``auth``), and adds the read-only views, the
audit verification and the reload of the secondary networks file. Build it with
:func:`build_registry` from settings, or directly from an engine in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.ops.settings import GatewaySettings
from gateway.registry import audit
from gateway.registry.access import AccessMixin, Provisioned
from gateway.registry.anchors import AnchorMixin
from gateway.registry.auth import AuthMixin
from gateway.registry.base import Notifier, iso, refuse
from gateway.registry.catalogue import ServiceCatalogue, load_service_catalogue
from gateway.registry.consoles import ConsoleMixin
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.instant import utc_now
from gateway.registry.lockout import LockoutPolicy, LoginLockoutRow, is_locked
from gateway.registry.models import (
    EnterpriseRow,
    PersonRow,
    QualityRow,
    RoleRow,
    SenderRow,
    UserRow,
)
from gateway.registry.networks import NetworkBook, load_networks
from gateway.registry.revocation import RevocationMixin
from gateway.registry.rules import Action
from gateway.registry.structured import Overview, StructuredMixin
from gateway.registry.trust import TrustSource, signature_policy
from gateway.registry.types import QualityRef, Refusal, Role

__all__ = [
    "Overview",
    "Provisioned",
    "Registry",
    "build_registry",
    "hashing_from",
    "lockout_from",
    "networks_from",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityView:
    """A quality of an enterprise, with its sender number once assigned."""

    kind: str
    activated_at: str
    configuration_saved: bool
    sender: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleView:
    """One role appointment."""

    login: str
    role: Role
    quality: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterpriseView:
    """An enterprise with its qualities and role appointments."""

    kbo: str
    name: str
    status: str
    password_login: bool
    qualities: tuple[QualityView, ...]
    roles: tuple[RoleView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UserView:
    """An account as the user list shows it (never its password hash)."""

    login: str
    name: str
    kind: str
    status: str
    quality: str | None
    must_change_password: bool
    locked_until: str | None = None
    """When the account lockout (``registry.lockout``) holds its password logins: until then
    (ISO-8601 UTC); a manager's unblock lifts it."""


class Registry(AccessMixin, RevocationMixin, StructuredMixin, AuthMixin, ConsoleMixin, AnchorMixin):
    """Enterprises, roles, users, senders and channels, behind the rule table and the audit."""

    async def enterprises(self, *, actor: str | None) -> list[str] | Refusal:
        """KBO numbers visible to the actor: all for the operator, its own for a manager."""

        async def body(session: AsyncSession) -> list[str]:
            if actor is None:
                return list(
                    await session.scalars(select(EnterpriseRow.kbo).order_by(EnterpriseRow.kbo))
                )
            user = await self._user(session, actor)
            return [(await self._enterprise_by_id(session, user.enterprise_id)).kbo]

        return await self._read(body)

    async def enterprise(self, *, actor: str | None, kbo: str) -> EnterpriseView | Refusal:
        """One enterprise with its qualities and roles (any access manager of it may look)."""

        async def body(session: AsyncSession) -> EnterpriseView:
            row = await self._enterprise(session, kbo)
            if actor is not None:
                held = await self._held(session, actor)
                if not any(h.enterprise_id == row.id for h in held):
                    raise refuse(
                        "forbidden", f"view needs an access-management role in enterprise {row.kbo}"
                    )
            qualities = list(
                await session.scalars(
                    select(QualityRow)
                    .where(QualityRow.enterprise_id == row.id)
                    .order_by(QualityRow.kind)
                )
            )
            kinds = {q.id: q.kind for q in qualities}
            senders = {
                s.quality_id: s.number
                for s in await session.scalars(
                    select(SenderRow).where(SenderRow.quality_id.in_(list(kinds)))
                )
            }
            roles = await session.execute(
                select(UserRow.login, RoleRow.role, RoleRow.quality_id)
                .join(UserRow, UserRow.id == RoleRow.user_id)
                .where(RoleRow.enterprise_id == row.id)
                .order_by(RoleRow.id)
            )
            return EnterpriseView(
                kbo=row.kbo,
                name=row.name,
                status=row.status,
                password_login=row.password_login,
                qualities=tuple(
                    QualityView(
                        kind=q.kind,
                        activated_at=iso(q.activated_at),
                        configuration_saved=q.structured_saved,
                        sender=senders.get(q.id),
                    )
                    for q in qualities
                ),
                roles=tuple(
                    RoleView(
                        login=login,
                        role=Role(role),
                        quality=kinds.get(qid) if qid is not None else None,
                    )
                    for login, role, qid in roles
                ),
            )

        return await self._read(body)

    async def users(self, *, actor: str | None, quality: QualityRef) -> list[UserView] | Refusal:
        """The accounts of one quality (users and its technical user)."""

        async def body(session: AsyncSession) -> list[UserView]:
            enterprise, row = await self._quality(session, quality)
            await self._require(session, actor, Action.view, enterprise, row)
            result = await session.execute(
                select(UserRow, PersonRow.name, LoginLockoutRow.locked_until)
                .join(PersonRow, PersonRow.id == UserRow.person_id)
                .outerjoin(LoginLockoutRow, LoginLockoutRow.user_id == UserRow.id)
                .where(UserRow.quality_id == row.id)
                .order_by(UserRow.login)
            )
            now = self.clock()
            return [
                UserView(
                    login=user.login,
                    name=name,
                    kind=user.kind,
                    status=user.status,
                    quality=row.kind,
                    must_change_password=user.must_change_password,
                    locked_until=iso(until)
                    if until is not None and is_locked(until, now)
                    else None,
                )
                for user, name, until in result
            ]

        return await self._read(body)

    async def audit_verify(self) -> audit.AuditReport:
        """Walk the audit hash chain (operator task)."""
        async with self._sessions() as session, session.begin():
            return await audit.verify(session)

    async def audit_entries(self, *, limit: int = 50) -> list[audit.AuditEntry]:
        """The newest audit records, newest first."""
        async with self._sessions() as session, session.begin():
            return await audit.entries(session, limit=limit)

    def reload_networks(self) -> NetworkBook:
        """Read the secondary networks file again (SIGHUP) and put the new book in force.

        Raises :class:`~gateway.registry.networks.NetworksError` and keeps the old book when the
        file is now invalid. Sessions are untouched: the next login matches the new ranges. A
        book built in memory (no file) is kept as it is. A file removed since is an empty book.
        """
        current = self.networks
        if current.source is None:
            return current
        book = load_networks(current.source, listeners=current.listeners)
        self.networks = book
        if current.source.exists():
            log.info("networks.reloaded", file=str(current.source), networks=list(book.names))
        else:
            log.warning("networks.missing", file=str(current.source))
        return book


def hashing_from(settings: GatewaySettings) -> PasswordHashing:
    """The argon2id hasher with the parameters of ``[security]`` and the password pool of
    ``[limits]``."""
    return PasswordHashing(
        Argon2Parameters(
            time_cost=settings.security.argon2_time_cost,
            memory_kib=settings.security.argon2_memory_kib,
            parallelism=settings.security.argon2_parallelism,
        ),
        workers=settings.limits.password_checks,
        queue=settings.limits.password_check_queue,
    )


def lockout_from(settings: GatewaySettings) -> LockoutPolicy:
    """The account lockout rule of ``[limits]``."""
    limits = settings.limits
    return LockoutPolicy(
        failures=limits.login_lockout_failures,
        window=timedelta(seconds=limits.login_lockout_window_seconds),
        duration=timedelta(seconds=limits.login_lockout_seconds),
    )


def networks_from(settings: GatewaySettings) -> NetworkBook:
    """The secondary networks of ``[ftp] networks_file``, for the ``[ftp.plain_listeners]``.

    A missing file is an empty book; with FTP enabled that is logged (``networks.missing``), as
    a channel bound to a network name then admits no one.
    """
    path = settings.ftp.networks_file
    book = load_networks(path, listeners=frozenset(settings.ftp.plain_listeners))
    if settings.ftp.enabled and not path.exists():
        log.warning("networks.missing", file=str(path))
    return book


def build_registry(
    settings: GatewaySettings,
    *,
    notifier: Notifier,
    database_url: str | None = None,
    engine: AsyncEngine | None = None,
    catalogue: ServiceCatalogue | None = None,
    networks: NetworkBook | None = None,
    clock: Callable[[], datetime] = utc_now,
    trust: TrustSource | None = None,
) -> Registry:
    """A registry on ``database_url`` (default: the settings' database), ready to use.

    The catalogue and the secondary networks are read from the settings' files unless given;
    an invalid networks file raises :class:`~gateway.registry.networks.NetworksError`.
    Certificates are judged with the ``[signature]`` policy, and signing certificates against
    ``trust`` when it is given (the command line passes ``[signature] trust_dir``; the daemon
    the folders its pipeline reads); without it their chain is left to verification.
    """
    return Registry(
        engine or create_engine(database_url or settings.database),
        clock=clock,
        notifier=notifier,
        hashing=hashing_from(settings),
        catalogue=(
            catalogue
            if catalogue is not None
            else load_service_catalogue(settings.pipeline.services_file)
        ),
        networks=networks if networks is not None else networks_from(settings),
        trust=trust,
        signature_policy=signature_policy(settings.signature),
        lockout=lockout_from(settings),
    )
