"""The registry service's plumbing: transactions, the write lock, rule checks, audit, look-ups.

Every change runs in :meth:`RegistryBase._write`: one transaction that first takes the registry
write lock (the audit head row), then checks the rule table for the actor, then changes rows and
appends the audit record. A refusal raised anywhere inside rolls the whole transaction back, so a
refused action changes nothing.

An actor is a login (an access manager, rules enforced) or ``None`` for the gateway operator
(the command line without ``--as``), who is not bound by the rule table.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.core.trust import SignaturePolicy
from gateway.registry import audit
from gateway.registry.catalogue import ServiceCatalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import read_sync, sqlite_sync_engine
from gateway.registry.instant import as_utc
from gateway.registry.lockout import LockoutPolicy
from gateway.registry.models import EnterpriseRow, PersonRow, QualityRow, RoleRow, UserRow
from gateway.registry.networks import NetworkBook
from gateway.registry.rules import Action, Held, Target, decide
from gateway.registry.trust import TrustSource
from gateway.registry.types import (
    EnterpriseNumber,
    Person,
    PrincipalKind,
    QualityRef,
    Refusal,
    Role,
    UserStatus,
)
from gateway.registry.validate import check_kbo, check_login, check_person_fields, check_text

T = TypeVar("T")

OPERATOR = "operator"

log = structlog.get_logger(__name__)


class Notifier(Protocol):
    """How activation messages leave the gateway (implemented in ``gateway.registry.notify``)."""

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        """Send one e-mail."""

    async def send_sms(self, *, to: str, text: str) -> None:
        """Send one SMS."""


class Refused(Exception):
    """Raised inside a write to roll it back; :meth:`RegistryBase._write` returns the refusal."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def refuse(reason: str, message: str) -> Refused:
    """Build the exception that carries a refusal out of a write."""
    return Refused(Refusal(reason, message))


def iso(moment: datetime) -> str:
    """A UTC timestamp as stored (ISO-8601 with offset)."""
    return moment.astimezone(UTC).isoformat()


def _slug(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", ".", name.lower()).strip(".")
    return (base or "user")[:40]


class RegistryBase:
    """Engine, clock, notifier, hashing, catalogue, the secondary networks, the trust source and
    signature policy certificates are judged by, the account lockout rule, and the helpers every
    operation uses.

    ``networks`` is replaced whole (never changed in place) by ``reload_networks``: a login reads
    the attribute once, so it sees one book.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime],
        notifier: Notifier,
        hashing: PasswordHashing | None = None,
        catalogue: ServiceCatalogue | None = None,
        networks: NetworkBook | None = None,
        trust: TrustSource | None = None,
        signature_policy: SignaturePolicy | None = None,
        lockout: LockoutPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.notifier = notifier
        # Defaults: RFC 9106 argon2id costs, an empty catalogue (no subscriptions possible) and
        # no secondary networks (a network name admits no one, and add_channel refuses it).
        self.hashing = hashing or PasswordHashing(Argon2Parameters())
        self.catalogue = catalogue or ServiceCatalogue(MappingProxyType({}))
        self.networks = networks if networks is not None else NetworkBook()
        # Certificates are judged at registration as verification will judge them: the
        # pipeline's policy, and its trust store when one is given (gateway.registry.trust;
        # without one the chain is left to verification). Replaced whole, like networks.
        self.trust = trust
        self.signature_policy = signature_policy or SignaturePolicy()
        # The account lockout every password login shares (gateway.registry.lockout).
        self.lockout = lockout or LockoutPolicy()
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._sync = sqlite_sync_engine(engine)

    async def _read_once(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the read ``fn(conn, *args)`` on a sync connection in one worker-thread hop (SQLite
        file database: :func:`~gateway.registry.db.sqlite_sync_engine`), or through
        ``run_sync`` on the async engine. For the hot reads of every login and set."""
        if self._sync is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(
            None, read_sync, self._sync, fn, args
        )

    def now(self) -> datetime:
        """The clock's instant in UTC, as the time columns store it (the audit trail's ``at``
        is its :func:`iso` text)."""
        return as_utc(self.clock())

    async def _write(self, body: Callable[[AsyncSession], Awaitable[T]]) -> T | Refusal:
        """Run ``body`` in one locked transaction; a :class:`Refused` rolls it back."""
        try:
            async with self._sessions() as session, session.begin():
                await audit.lock_head(session)
                result = await body(session)
                events: list[dict[str, Any]] = session.info.pop("events", [])
        except Refused as exc:
            return exc.refusal
        # Logged once committed, so a rolled-back change never shows up as done.
        for event in events:
            log.info("registry.changed", **event)
        return result

    async def _read(self, body: Callable[[AsyncSession], Awaitable[T]]) -> T | Refusal:
        """Run ``body`` in a read transaction; a :class:`Refused` becomes the result."""
        try:
            async with self._sessions() as session, session.begin():
                return await body(session)
        except Refused as exc:
            return exc.refusal

    async def _audit(
        self,
        session: AsyncSession,
        *,
        actor: str | None,
        action: str,
        target: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        seq = await audit.append(
            session,
            at=iso(self.clock()),
            actor=actor or OPERATOR,
            action=action,
            target=target,
            before=before,
            after=after,
        )
        # Before/after stay in the audit trail only; the event names what changed, never values.
        session.info.setdefault("events", []).append(
            {"action": action, "actor": actor or OPERATOR, "target": target, "seq": seq}
        )

    # -- look-ups ------------------------------------------------------------------------------

    async def _enterprise(self, session: AsyncSession, kbo: str) -> EnterpriseRow:
        number = check_kbo(kbo)
        if isinstance(number, Refusal):
            raise Refused(number)
        row = await session.scalar(select(EnterpriseRow).where(EnterpriseRow.kbo == number))
        if row is None:
            raise refuse("not_found", f"enterprise {number} is not registered")
        return row

    async def _quality(
        self, session: AsyncSession, ref: QualityRef
    ) -> tuple[EnterpriseRow, QualityRow]:
        enterprise = await self._enterprise(session, ref.enterprise)
        row = await session.scalar(
            select(QualityRow).where(
                QualityRow.enterprise_id == enterprise.id, QualityRow.kind == ref.kind
            )
        )
        if row is None:
            raise refuse("not_found", f"quality {ref.kind} is not activated for {enterprise.kbo}")
        return enterprise, row

    async def _user(self, session: AsyncSession, login: str) -> UserRow:
        clean = check_login(login)
        if isinstance(clean, Refusal):
            raise Refused(clean)
        row = await session.scalar(select(UserRow).where(UserRow.login == clean))
        if row is None:
            raise refuse("not_found", f"user {clean} does not exist")
        return row

    async def _quality_by_id(self, session: AsyncSession, quality_id: int) -> QualityRow:
        return (
            await session.execute(select(QualityRow).where(QualityRow.id == quality_id))
        ).scalar_one()

    async def _enterprise_by_id(self, session: AsyncSession, enterprise_id: int) -> EnterpriseRow:
        stmt = select(EnterpriseRow).where(EnterpriseRow.id == enterprise_id)
        return (await session.execute(stmt)).scalar_one()

    async def _new_login(self, session: AsyncSession, wanted: str | None, name: str) -> str:
        if wanted is not None:
            login = check_login(wanted)
            if isinstance(login, Refusal):
                raise Refused(login)
            if await session.scalar(select(UserRow.id).where(UserRow.login == login)) is not None:
                raise refuse("duplicate", f"login {login} is already taken")
            return login
        while True:
            login = f"{_slug(name)}.{secrets.randbelow(10**6):06d}"
            if await session.scalar(select(UserRow.id).where(UserRow.login == login)) is None:
                return login

    async def _new_person(self, session: AsyncSession, person: Person) -> PersonRow:
        name = check_text(person.name, what="name")
        if isinstance(name, Refusal):
            raise Refused(name)
        refusal = check_person_fields(
            email=person.email,
            phone=person.phone,
            language=person.language,
            nrn=person.national_register_number,
        )
        if refusal is not None:
            raise Refused(refusal)
        row = PersonRow(
            name=name,
            email=person.email,
            phone=person.phone,
            language=person.language,
            national_register_number=person.national_register_number,
        )
        session.add(row)
        await session.flush()
        return row

    async def _add_user(
        self,
        session: AsyncSession,
        *,
        enterprise_id: int,
        quality_id: int | None,
        person: Person,
        login: str | None,
        kind: PrincipalKind,
        password_hash: str | None,
    ) -> tuple[UserRow, PersonRow]:
        """A new active user and its person: with a temporary password it must change at its
        first login, or with none (a technical user logs in with its channels' credentials).
        ``login``: the one asked for (checked, unique), or None for one made from the name."""
        person_row = await self._new_person(session, person)
        user = UserRow(
            login=await self._new_login(session, login, person.name),
            enterprise_id=enterprise_id,
            quality_id=quality_id,
            person_id=person_row.id,
            kind=kind,
            status=UserStatus.active,
            password_hash=password_hash,
            must_change_password=password_hash is not None,
            created_at=self.now(),
        )
        session.add(user)
        return user, person_row

    # -- the rule table ------------------------------------------------------------------------

    async def _held(self, session: AsyncSession, actor: str) -> list[Held]:
        user = await self._user(session, actor)
        if user.status != UserStatus.active:
            raise refuse("forbidden", f"{user.login} is {user.status} and may not act")
        rows = await session.scalars(select(RoleRow).where(RoleRow.user_id == user.id))
        return [
            Held(role=Role(r.role), enterprise_id=r.enterprise_id, quality_id=r.quality_id)
            for r in rows
        ]

    async def _require(
        self,
        session: AsyncSession,
        actor: str | None,
        action: Action,
        enterprise: EnterpriseRow,
        quality: QualityRow | None = None,
    ) -> None:
        """Refuse unless ``actor`` (``None``: the operator) may do ``action`` on the target."""
        if actor is None:
            return
        held = await self._held(session, actor)
        refusal = decide(action, held, rule_target(enterprise, quality))
        if refusal is not None:
            raise Refused(refusal)

    async def _roles_of(self, session: AsyncSession, user_id: int) -> list[RoleRow]:
        return list(await session.scalars(select(RoleRow).where(RoleRow.user_id == user_id)))


def rule_target(enterprise: EnterpriseRow, quality: QualityRow | None = None) -> Target:
    """The rule table's view of an enterprise, or of one of its qualities."""
    return Target(
        enterprise_id=enterprise.id,
        enterprise_label=enterprise.kbo,
        quality_id=quality.id if quality is not None else None,
        quality_label=quality.kind if quality is not None else "",
    )


def enterprise_number(row: EnterpriseRow) -> EnterpriseNumber:
    """The row's KBO number as its NewType."""
    return EnterpriseNumber(row.kbo)
