"""How access managers reach the registry from a browser or a script: console sessions, API tokens,
TOTP enrolment, and the account view the admin plane shows.

Rules (issue 13 §1, §3; SECURITY.md 1, 2, 7):

- **Secrets are stored hashed.** A console session id and an API token are 32 random bytes
  (``secrets.token_urlsafe``), given to the browser or the script once; the registry keeps their
  SHA-256 only, so a copy of the database opens no session and no token. A TOTP secret is stored
  as it is (the server must compute the codes) and is shown once, at enrolment.
- **A token is scoped** to one enterprise and one quality, and acts as the manager who made it:
  every rule of the rule table still applies to that manager, and the admin API refuses (404) a
  request for anything outside the token's enterprise and quality. It expires (at most
  ``MAX_TOKEN_DAYS``), can be revoked by its maker or by any manager of its quality, and stops
  working as soon as its maker is blocked, deleted, or loses every role on that quality.
- **A console session** ends after an idle timeout and after an absolute lifetime, whichever
  comes first, and at logout; each carries its own CSRF token, compared in constant time.
- Issuing and revoking tokens and enrolling TOTP are audited; opening a session is logged
  (``console.session_opened``), not audited: the audit trail records changes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import structlog
from sqlalchemy import ForeignKey, Integer, String, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.registry.audit import AuditEntry
from gateway.registry.base import Refused, RegistryBase, iso, refuse
from gateway.registry.db import Base
from gateway.registry.instant import UtcDateTime
from gateway.registry.models import AuditRow, PersonRow, QualityRow, RoleRow, UserRow
from gateway.registry.rules import Action
from gateway.registry.types import (
    AuthFailure,
    EnterpriseNumber,
    EnterpriseStatus,
    PrincipalKind,
    QualityRef,
    Refusal,
    UserStatus,
)
from gateway.registry.validate import check_text

log = structlog.get_logger(__name__)

MAX_TOKEN_DAYS = 366
TOKEN_PREFIX = "bgt_"  # noqa: S105  (a prefix, not a secret)
TOTP_ISSUER = "Batch Gateway"


class ApiTokenRow(Base):
    """An API token an access manager made for a script (its SHA-256 only)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    quality_id: Mapped[int] = mapped_column(ForeignKey("qualities.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class ConsoleSessionRow(Base):
    """A signed-in browser (its session id's SHA-256 only)."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2))
    method: Mapped[str] = mapped_column(String(16))  # password | totp | eid
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class TotpRow(Base):
    """A person's TOTP secret ("code uit een mobiele app"), once enrolled."""

    __tablename__ = "totp_secrets"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))
    enrolled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_step: Mapped[int] = mapped_column(Integer, default=0)  # no code is accepted twice


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A token just made: ``secret`` is shown once and never stored."""

    id: int
    name: str
    secret: str
    quality: QualityRef
    expires_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenView:
    """A token as its quality's managers see it (never its secret)."""

    id: int
    name: str
    maker: str
    quality: QualityRef
    created_at: str
    expires_at: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """Who a console session or a token acts as, and what it may reach."""

    login: str
    enterprise: EnterpriseNumber
    quality: QualityRef | None
    """The token's quality; None for a console session (the person's whole reach)."""
    token_id: int | None = None
    csrf: str = ""
    language: str = "nl"
    method: str = "token"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    """A person's account as the console shows it: enterprise, roles, status, second factor."""

    login: str
    name: str
    enterprise: EnterpriseNumber
    enterprise_name: str
    enterprise_status: str
    password_login: bool
    quality: str | None
    kind: str
    status: str
    roles: tuple[tuple[str, str | None], ...]
    """(role, quality kind or None for an enterprise role)."""
    must_change_password: bool
    totp: bool
    language: str


def digest(secret: str) -> str:
    """The stored form of a session id or a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ConsoleMixin(RegistryBase):
    """Console sessions, API tokens, TOTP and the account view."""

    # -- the account ---------------------------------------------------------------------------

    async def account(self, login: str) -> AccountView | None:
        """The account ``login`` (any kind), or None when there is none."""

        async def body(session: AsyncSession) -> AccountView | None:
            try:
                user = await self._user(session, login)
            except Refused:
                return None
            enterprise = await self._enterprise_by_id(session, user.enterprise_id)
            quality = (
                await self._quality_by_id(session, user.quality_id)
                if user.quality_id is not None
                else None
            )
            roles = []
            for role in await self._roles_of(session, user.id):
                kind = None
                if role.quality_id is not None:
                    kind = (await self._quality_by_id(session, role.quality_id)).kind
                roles.append((role.role, kind))
            person = await self._person_of(session, user)
            totp = await session.get(TotpRow, user.id)
            return AccountView(
                login=user.login,
                name=person[0],
                enterprise=EnterpriseNumber(enterprise.kbo),
                enterprise_name=enterprise.name,
                enterprise_status=enterprise.status,
                password_login=enterprise.password_login,
                quality=quality.kind if quality is not None else None,
                kind=user.kind,
                status=user.status,
                roles=tuple(sorted(roles, key=lambda r: (r[0], r[1] or ""))),
                must_change_password=user.must_change_password,
                totp=totp is not None,
                language=person[1],
            )

        result = await self._read(body)
        return None if isinstance(result, Refusal) else result

    async def _person_of(self, session: AsyncSession, user: UserRow) -> tuple[str, str]:
        person = await session.get(PersonRow, user.person_id)
        return (person.name, person.language) if person is not None else (user.login, "nl")

    async def _active_manager(self, session: AsyncSession, login: str) -> UserRow:
        user = await self._user(session, login)
        if user.kind != PrincipalKind.user or user.status != UserStatus.active:
            raise refuse("forbidden", f"{user.login} may not sign in to the console")
        enterprise = await self._enterprise_by_id(session, user.enterprise_id)
        if enterprise.status != EnterpriseStatus.active:
            raise refuse("forbidden", f"enterprise {enterprise.kbo} is not active")
        return user

    # -- API tokens ----------------------------------------------------------------------------

    async def issue_token(
        self, *, actor: str, quality: QualityRef, name: str, days: int
    ) -> IssuedToken | Refusal:
        """A token for ``actor``'s scripts on ``quality`` (the actor must manage it)."""
        clean = check_text(name, what="token name")
        if isinstance(clean, Refusal):
            return clean
        if not 1 <= days <= MAX_TOKEN_DAYS:
            return Refusal("invalid", f"a token lives 1 to {MAX_TOKEN_DAYS} days, not {days}")

        async def body(session: AsyncSession) -> IssuedToken:
            enterprise, quality_row = await self._quality(session, quality)
            await self._require(session, actor, Action.view, enterprise, quality_row)
            user = await self._active_manager(session, actor)
            secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
            expires = self.clock() + timedelta(days=days)
            row = ApiTokenRow(
                token_hash=digest(secret),
                name=clean,
                user_id=user.id,
                quality_id=quality_row.id,
                created_at=self.now(),
                expires_at=expires,
            )
            session.add(row)
            await session.flush()
            await self._audit(
                session,
                actor=actor,
                action="token.issue",
                target=f"{enterprise.kbo}/{quality_row.kind}",
                after={"token": row.id, "name": clean, "expires_at": iso(row.expires_at)},
            )
            return IssuedToken(
                id=row.id,
                name=clean,
                secret=secret,
                quality=QualityRef(EnterpriseNumber(enterprise.kbo), quality_row.kind),
                expires_at=iso(row.expires_at),
            )

        return await self._write(body)

    async def tokens(self, *, actor: str, quality: QualityRef) -> list[TokenView] | Refusal:
        """The tokens of ``quality`` (any manager of it sees them all, never their secrets)."""

        async def body(session: AsyncSession) -> list[TokenView]:
            enterprise, quality_row = await self._quality(session, quality)
            await self._require(session, actor, Action.view, enterprise, quality_row)
            rows = await session.execute(
                select(ApiTokenRow, UserRow.login)
                .join(UserRow, UserRow.id == ApiTokenRow.user_id)
                .where(ApiTokenRow.quality_id == quality_row.id)
                .order_by(ApiTokenRow.id)
            )
            ref = QualityRef(EnterpriseNumber(enterprise.kbo), quality_row.kind)
            return [
                TokenView(
                    id=row.id,
                    name=row.name,
                    maker=maker,
                    quality=ref,
                    created_at=iso(row.created_at),
                    expires_at=iso(row.expires_at),
                    revoked_at=None if row.revoked_at is None else iso(row.revoked_at),
                )
                for row, maker in rows.all()
            ]

        return await self._read(body)

    async def revoke_token(self, *, actor: str, token_id: int) -> Refusal | None:
        """Revoke a token of a quality the actor manages; unknown or foreign: not_found."""

        async def body(session: AsyncSession) -> None:
            row = await session.get(ApiTokenRow, token_id)
            if row is None:
                raise refuse("not_found", f"no token {token_id}")
            quality_row = await self._quality_by_id(session, row.quality_id)
            enterprise = await self._enterprise_by_id(session, quality_row.enterprise_id)
            try:
                await self._require(session, actor, Action.view, enterprise, quality_row)
            except Refused:
                raise refuse("not_found", f"no token {token_id}") from None
            if row.revoked_at is None:
                row.revoked_at = self.now()
                await self._audit(
                    session,
                    actor=actor,
                    action="token.revoke",
                    target=f"{enterprise.kbo}/{quality_row.kind}",
                    before={"token": row.id, "name": row.name},
                )

        return await self._write(body)

    async def token_grant(self, secret: str) -> Grant | AuthFailure:
        """What a presented token may do, or why it may not."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
            return AuthFailure("unknown_token")

        async def body(session: AsyncSession) -> Grant | AuthFailure:
            row = await session.scalar(
                select(ApiTokenRow).where(ApiTokenRow.token_hash == digest(secret))
            )
            if row is None:
                return AuthFailure("unknown_token")
            if row.revoked_at is not None:
                return AuthFailure("revoked")
            if row.expires_at <= self.clock():
                return AuthFailure("expired")
            user = await session.get(UserRow, row.user_id)
            quality_row = await session.get(QualityRow, row.quality_id)
            if user is None or quality_row is None or user.status != UserStatus.active:
                return AuthFailure("blocked")
            enterprise = await self._enterprise_by_id(session, quality_row.enterprise_id)
            if enterprise.status != EnterpriseStatus.active:
                return AuthFailure("enterprise_pending")
            try:  # the maker must still manage the quality
                await self._require(session, user.login, Action.view, enterprise, quality_row)
            except Refused:
                return AuthFailure("blocked")
            return Grant(
                login=user.login,
                enterprise=EnterpriseNumber(enterprise.kbo),
                quality=QualityRef(EnterpriseNumber(enterprise.kbo), quality_row.kind),
                token_id=row.id,
            )

        result = await self._read(body)
        return AuthFailure("unknown_token") if isinstance(result, Refusal) else result

    # -- console sessions ----------------------------------------------------------------------

    async def open_console(self, login: str, *, method: str, language: str | None = None) -> str:
        """A new console session for ``login`` (authenticated by the caller); its secret."""
        secret = secrets.token_urlsafe(32)

        async def body(session: AsyncSession) -> None:
            user = await self._active_manager(session, login)
            _, spoken = await self._person_of(session, user)
            now = self.now()
            session.add(
                ConsoleSessionRow(
                    session_hash=digest(secret),
                    user_id=user.id,
                    csrf=secrets.token_urlsafe(32),
                    language=language or spoken,
                    method=method,
                    created_at=now,
                    seen_at=now,
                )
            )
            user.last_login_at = now

        opened = await self._write(body)
        if isinstance(opened, Refusal):
            raise Refused(opened)
        log.info("console.session_opened", login=login, method=method)
        return secret

    async def console_grant(
        self, secret: str, *, idle: timedelta, lifetime: timedelta
    ) -> Grant | None:
        """The session ``secret`` opens, touched now; None when unknown, ended, idle too long or
        too old (an expired session is ended on the way)."""
        if not secret or len(secret) > 100:
            return None
        now = self.clock()

        async def body(session: AsyncSession) -> Grant | None:
            row = await session.scalar(
                select(ConsoleSessionRow).where(ConsoleSessionRow.session_hash == digest(secret))
            )
            if row is None or row.ended_at is not None:
                return None
            seen, created = row.seen_at, row.created_at
            user = await session.get(UserRow, row.user_id)
            if (
                now - seen > idle
                or now - created > lifetime
                or user is None
                or user.status != UserStatus.active
            ):
                row.ended_at = self.now()
                return None
            row.seen_at = self.now()
            enterprise = await self._enterprise_by_id(session, user.enterprise_id)
            return Grant(
                login=user.login,
                enterprise=EnterpriseNumber(enterprise.kbo),
                quality=None,
                csrf=row.csrf,
                language=row.language,
                method=row.method,
            )

        async with self._sessions() as session, session.begin():
            return await body(session)

    async def set_console_language(self, secret: str, language: str) -> None:
        """Remember the language the person picked, for this session and the next ones."""
        async with self._sessions() as session, session.begin():
            row = await session.scalar(
                select(ConsoleSessionRow).where(ConsoleSessionRow.session_hash == digest(secret))
            )
            if row is None:
                return
            row.language = language
            user = await session.get(UserRow, row.user_id)
            if user is not None:
                await session.execute(
                    update(PersonRow)
                    .where(PersonRow.id == user.person_id)
                    .values(language=language)
                )

    async def close_console(self, secret: str) -> None:
        """Log out: the session ends at once."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ConsoleSessionRow)
                .where(ConsoleSessionRow.session_hash == digest(secret))
                .values(ended_at=self.now())
            )

    @staticmethod
    def csrf_ok(grant: Grant, presented: str) -> bool:
        """Whether ``presented`` is the session's CSRF token (constant time)."""
        return bool(grant.csrf) and hmac.compare_digest(grant.csrf, presented)

    # -- TOTP ----------------------------------------------------------------------------------

    @staticmethod
    def new_totp_secret() -> str:
        """A fresh TOTP secret (base32), to show as a QR code before enrolment."""
        return pyotp.random_base32()

    @staticmethod
    def totp_uri(login: str, secret: str) -> str:
        """The ``otpauth://`` URI an authenticator app scans."""
        return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=TOTP_ISSUER)

    async def enroll_totp(self, *, login: str, secret: str, code: str) -> Refusal | None:
        """Bind ``secret`` to ``login`` once the person proves it with a current ``code``."""
        totp = pyotp.TOTP(secret)
        if not totp.verify(code, valid_window=1):
            return Refusal("bad_credential", "the code does not match: try the next one")

        async def body(session: AsyncSession) -> None:
            user = await self._active_manager(session, login)
            existing = await session.get(TotpRow, user.id)
            step = int(self.clock().timestamp()) // 30
            if existing is None:
                session.add(
                    TotpRow(user_id=user.id, secret=secret, enrolled_at=self.now(), last_step=step)
                )
            else:
                existing.secret, existing.enrolled_at, existing.last_step = secret, self.now(), step
            await self._audit(session, actor=login, action="totp.enroll", target=login)

        return await self._write(body)

    async def check_totp(self, login: str, code: str) -> bool:
        """Whether ``code`` is ``login``'s current TOTP code, not used before (a code is
        accepted once: the step it matched is remembered)."""
        now = self.clock()
        async with self._sessions() as session, session.begin():
            try:
                user = await self._active_manager(session, login)
            except Refused:
                return False
            row = await session.get(TotpRow, user.id)
            if row is None:
                return False
            totp = pyotp.TOTP(row.secret)
            for offset in (0, -1, 1):
                at = now + timedelta(seconds=30 * offset)
                step = int(at.timestamp()) // 30
                if step > row.last_step and hmac.compare_digest(totp.at(at), code):
                    row.last_step = step
                    return True
            return False

    # -- eID -----------------------------------------------------------------------------------

    async def login_by_national_number(self, nrn: str) -> str | None:
        """The active console account of the person with national register number ``nrn``
        (an eID certificate's subject serial number), or None."""
        async with self._sessions() as session, session.begin():
            rows = await session.scalars(
                select(UserRow)
                .join(PersonRow, PersonRow.id == UserRow.person_id)
                .where(
                    PersonRow.national_register_number == nrn,
                    UserRow.kind == PrincipalKind.user,
                    UserRow.status == UserStatus.active,
                )
                .order_by(UserRow.id)
            )
            users = list(rows)
            return users[0].login if len(users) == 1 else None

    async def manages(self, login: str) -> list[QualityRef]:
        """The qualities ``login`` holds a role on (every quality of its enterprise for an
        enterprise role), for the console's quality selector."""
        async with self._sessions() as session, session.begin():
            try:
                user = await self._user(session, login)
            except Refused:
                return []
            enterprise = await self._enterprise_by_id(session, user.enterprise_id)
            roles = list(await session.scalars(select(RoleRow).where(RoleRow.user_id == user.id)))
            everything = any(r.quality_id is None for r in roles)
            query = select(QualityRow).where(QualityRow.enterprise_id == enterprise.id)
            if not everything:
                query = query.where(QualityRow.id.in_([r.quality_id for r in roles]))
            kbo = EnterpriseNumber(enterprise.kbo)
            return [
                QualityRef(kbo, q.kind)
                for q in await session.scalars(query.order_by(QualityRow.kind))
            ]

    # -- the enterprise's activity (the console's "Activity") ---------------------------------

    async def activity(
        self,
        *,
        actor: str,
        who: str = "",
        action: str = "",
        text: str = "",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[AuditEntry], bool] | Refusal:
        """The audit records of the actor's enterprise, newest first, and whether more follow.

        A record belongs to the enterprise when one of its accounts made it, or its target is
        the enterprise (``KBO``, ``KBO/quality``) or one of its accounts (``login``, ``login
        role …``). Any access manager of the enterprise may read it. ``who`` is an exact actor,
        ``action`` an action prefix (``user.``), ``text`` a substring of the target.
        """

        async def body(session: AsyncSession) -> tuple[list[AuditEntry], bool]:
            user = await self._user(session, actor)
            if not await self._held(session, actor):
                raise refuse("forbidden", f"{user.login} is no access manager")
            enterprise = await self._enterprise_by_id(session, user.enterprise_id)
            logins = list(
                await session.scalars(
                    select(UserRow.login).where(UserRow.enterprise_id == enterprise.id)
                )
            )
            mine = or_(
                AuditRow.actor.in_(logins),
                AuditRow.target == enterprise.kbo,
                AuditRow.target.startswith(enterprise.kbo + "/", autoescape=True),
                AuditRow.target.in_(logins),
                *(AuditRow.target.startswith(login + " ", autoescape=True) for login in logins),
            )
            query = select(AuditRow).where(mine)
            if who:
                query = query.where(AuditRow.actor == who)
            if action:
                query = query.where(AuditRow.action.startswith(action, autoescape=True))
            if text:
                query = query.where(AuditRow.target.contains(text, autoescape=True))
            rows = list(
                await session.scalars(
                    query.order_by(AuditRow.seq.desc()).offset(max(0, offset)).limit(limit + 1)
                )
            )
            return [
                AuditEntry(
                    seq=r.seq,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    target=r.target,
                    before=r.before,
                    after=r.after,
                )
                for r in rows[:limit]
            ], len(rows) > limit

        return await self._read(body)
