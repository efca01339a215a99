"""Access management: provisioning, qualities, role appointments, the password switch, users.

Each operation checks the rule table for its actor first (so a refusal names the missing role and
nothing has been touched), then validates its input, then changes rows and writes one audit
record, all in one transaction. Passwords set here are temporary (``must_change_password``) and
are returned once as :class:`IssuedPassword`; the registry keeps only their argon2id hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.registry.base import Refused, RegistryBase, refuse, rule_target
from gateway.registry.lockout import is_locked, lift
from gateway.registry.models import EnterpriseRow, QualityRow, RoleRow, UserRow
from gateway.registry.notify import NotificationError
from gateway.registry.rules import APPOINT_ACTION, Action, Held, check_appointment
from gateway.registry.types import (
    EnterpriseNumber,
    EnterpriseStatus,
    IssuedPassword,
    Person,
    PrincipalKind,
    QualityRef,
    Refusal,
    Role,
    UserStatus,
)
from gateway.registry.validate import (
    check_kbo,
    check_login,
    check_quality_kind,
    check_text,
    generate_password,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioned:
    """A provisioned enterprise; ``issued`` is ``None`` when e-mail and SMS carried the login."""

    enterprise: EnterpriseNumber
    htb_login: str
    issued: IssuedPassword | None


_STATUS_ACTION = {
    UserStatus.active: "user.unblock",
    UserStatus.blocked: "user.block",
    UserStatus.deleted: "user.delete",
}


class AccessMixin(RegistryBase):
    """Enterprise, quality, role and user operations."""

    async def provision_enterprise(
        self, *, actor: str | None, kbo: str, name: str, htb: Person, htb_login: str | None = None
    ) -> Provisioned | Refusal:
        """Register an enterprise with its HTB (operator only). Pending until the HTB logs in.

        An HTB without a national register number gets a generated username by e-mail and the
        temporary password by SMS; otherwise the temporary password is returned to the operator.
        """
        if actor is not None:
            return Refusal("forbidden", "provision_enterprise is the gateway operator's task")
        number = check_kbo(kbo)
        if isinstance(number, Refusal):
            return number
        if htb.national_register_number is None and not htb.phone:
            return Refusal(
                "invalid", "an HTB without national register number needs a mobile number (SMS)"
            )
        password = generate_password()
        password_hash = await self.hashing.hash(password)

        async def body(session: AsyncSession) -> str:
            title = check_text(name, what="enterprise name")
            if isinstance(title, Refusal):
                raise Refused(title)
            taken = await session.scalar(
                select(EnterpriseRow.id).where(EnterpriseRow.kbo == number)
            )
            if taken is not None:
                raise refuse("duplicate", f"enterprise {number} is already registered")
            enterprise = EnterpriseRow(
                kbo=number,
                name=title,
                status=EnterpriseStatus.pending,
                password_login=True,
                created_at=self.now(),
            )
            session.add(enterprise)
            await session.flush()
            user, _person = await self._add_user(
                session,
                enterprise_id=enterprise.id,
                quality_id=None,
                person=htb,
                login=htb_login if htb.national_register_number is not None else None,
                kind=PrincipalKind.user,
                password_hash=password_hash,
            )
            login = user.login
            await session.flush()
            session.add(
                RoleRow(
                    enterprise_id=enterprise.id,
                    user_id=user.id,
                    role=Role.htb,
                    quality_id=None,
                    appointed_at=self.now(),
                )
            )
            await self._audit(
                session,
                actor=actor,
                action="enterprise.provision",
                target=number,
                after={"name": title, "status": "pending", "htb": login},
            )
            if htb.national_register_number is None:
                # Sent inside the transaction: if delivery fails, nothing was provisioned.
                await self._deliver(number, login, password, htb)
            return login

        login = await self._write(body)
        if isinstance(login, Refusal):
            return login
        issued = IssuedPassword(login, password) if htb.national_register_number else None
        return Provisioned(enterprise=number, htb_login=login, issued=issued)

    async def _deliver(self, number: str, login: str, password: str, htb: Person) -> None:
        """Username by e-mail, temporary password by SMS (guide: HTB without national number)."""
        try:
            await self.notifier.send_email(
                to=htb.email,
                subject="Your access-management username",
                body=(
                    f"You are the main access manager (HTB) of enterprise {number}.\n"
                    f"Your username is: {login}\n"
                    "A temporary password follows by SMS. Log in to activate the account.\n"
                ),
            )
            await self.notifier.send_sms(
                to=htb.phone, text=f"Temporary password for {login}: {password}"
            )
        except NotificationError as exc:
            raise refuse(
                "notification_failed", f"activation message not delivered: {exc}"
            ) from None

    async def activate_quality(
        self, *, actor: str | None, kbo: str, kind: str
    ) -> QualityRef | Refusal:
        """Activate a quality (employer, social secretariat…) of an enterprise."""

        async def body(session: AsyncSession) -> QualityRef:
            enterprise = await self._enterprise(session, kbo)
            await self._require(session, actor, Action.activate_quality, enterprise)
            clean = check_quality_kind(kind)
            if isinstance(clean, Refusal):
                raise Refused(clean)
            exists = await session.scalar(
                select(QualityRow.id).where(
                    QualityRow.enterprise_id == enterprise.id, QualityRow.kind == clean
                )
            )
            if exists is not None:
                raise refuse("duplicate", f"quality {clean} is already active for {enterprise.kbo}")
            session.add(
                QualityRow(
                    enterprise_id=enterprise.id,
                    kind=clean,
                    activated_at=self.now(),
                    structured_saved=False,
                )
            )
            ref = QualityRef(EnterpriseNumber(enterprise.kbo), clean)
            await self._audit(session, actor=actor, action="quality.activate", target=str(ref))
            return ref

        return await self._write(body)

    async def _role_target(
        self,
        session: AsyncSession,
        actor: str | None,
        role: Role,
        login: str,
        quality: QualityRef | None,
    ) -> tuple[UserRow, QualityRow | None]:
        """Check the actor's right to (dis)appoint ``role`` and the appointee; both rows."""
        user = await self._user(session, login)
        enterprise = await self._enterprise_by_id(session, user.enterprise_id)
        quality_row: QualityRow | None = None
        if role in (Role.tb, Role.co_tb):
            if quality is None:
                raise refuse("invalid", f"role {role.value} is held for a quality: name it")
            enterprise, quality_row = await self._quality(session, quality)
        elif quality is not None:
            raise refuse(
                "invalid", f"role {role.value} holds for the whole enterprise, not a quality"
            )
        if role is Role.htb:
            raise refuse("invalid", "the HTB is named when the enterprise is provisioned")
        await self._require(session, actor, APPOINT_ACTION[role], enterprise, quality_row)
        if user.enterprise_id != enterprise.id:
            raise refuse(
                "invalid", f"user {user.login} does not belong to enterprise {enterprise.kbo}"
            )
        return user, quality_row

    async def appoint(
        self, *, actor: str | None, role: Role, login: str, quality: QualityRef | None = None
    ) -> Refusal | None:
        """Appoint an existing user of the enterprise as co-HTB, TB (one per quality) or co-TB."""

        async def body(session: AsyncSession) -> None:
            user, quality_row = await self._role_target(session, actor, role, login, quality)
            if user.status != UserStatus.active or user.kind != PrincipalKind.user:
                raise refuse("invalid", f"{user.login} is not an active personal account")
            enterprise = await self._enterprise_by_id(session, user.enterprise_id)
            refusal = check_appointment(
                role,
                appointee=user.login,
                held=[
                    Held(role=Role(r.role), enterprise_id=r.enterprise_id, quality_id=r.quality_id)
                    for r in await self._roles_of(session, user.id)
                ],
                target=rule_target(enterprise, quality_row),
                by_self=actor is not None and check_login(actor) == user.login,
            )
            if refusal is not None:
                raise Refused(refusal)
            quality_id = quality_row.id if quality_row is not None else None
            if role is Role.tb:
                holder = await session.scalar(
                    select(RoleRow.user_id).where(
                        RoleRow.role == Role.tb, RoleRow.quality_id == quality_id
                    )
                )
                if holder is not None:
                    raise refuse("limit", f"quality {quality} already has its TB")
            existing = await session.scalar(
                select(RoleRow.id).where(
                    RoleRow.user_id == user.id,
                    RoleRow.role == role,
                    RoleRow.quality_id.is_(None)
                    if quality_id is None
                    else RoleRow.quality_id == quality_id,
                )
            )
            if existing is not None:
                raise refuse("duplicate", f"{user.login} already holds {role.value}")
            session.add(
                RoleRow(
                    enterprise_id=user.enterprise_id,
                    user_id=user.id,
                    role=role,
                    quality_id=quality_id,
                    appointed_at=self.now(),
                )
            )
            target = f"{user.login} {role.value}" + (f" {quality}" if quality else "")
            await self._audit(session, actor=actor, action="role.appoint", target=target)

        return await self._write(body)

    async def dismiss(
        self, *, actor: str | None, role: Role, login: str, quality: QualityRef | None = None
    ) -> Refusal | None:
        """Remove a role appointment."""

        async def body(session: AsyncSession) -> None:
            user, quality_row = await self._role_target(session, actor, role, login, quality)
            quality_id = quality_row.id if quality_row is not None else None
            result = await session.execute(
                delete(RoleRow).where(
                    RoleRow.user_id == user.id,
                    RoleRow.role == role,
                    RoleRow.quality_id.is_(None)
                    if quality_id is None
                    else RoleRow.quality_id == quality_id,
                )
            )
            if getattr(result, "rowcount", 0) == 0:
                raise refuse("not_found", f"{user.login} does not hold {role.value}")
            target = f"{user.login} {role.value}" + (f" {quality}" if quality else "")
            await self._audit(session, actor=actor, action="role.dismiss", target=target)

        return await self._write(body)

    async def set_password_login(
        self, *, actor: str | None, kbo: str, enabled: bool
    ) -> Refusal | None:
        """Switch password login on or off for every account of the enterprise (HTB only)."""

        async def body(session: AsyncSession) -> None:
            enterprise = await self._enterprise(session, kbo)
            await self._require(session, actor, Action.switch_password_login, enterprise)
            before = enterprise.password_login
            enterprise.password_login = enabled
            await self._audit(
                session,
                actor=actor,
                action="enterprise.password_login",
                target=enterprise.kbo,
                before={"password_login": before},
                after={"password_login": enabled},
            )

        return await self._write(body)

    async def create_user(
        self, *, actor: str | None, quality: QualityRef, person: Person, login: str | None = None
    ) -> IssuedPassword | Refusal:
        """Create a user of a quality with a temporary password (returned once)."""
        password = generate_password()
        password_hash = await self.hashing.hash(password)

        async def body(session: AsyncSession) -> IssuedPassword:
            enterprise, quality_row = await self._quality(session, quality)
            await self._require(session, actor, Action.manage_users, enterprise, quality_row)
            user, person_row = await self._add_user(
                session,
                enterprise_id=enterprise.id,
                quality_id=quality_row.id,
                person=person,
                login=login,
                kind=PrincipalKind.user,
                password_hash=password_hash,
            )
            new_login = user.login
            await self._audit(
                session,
                actor=actor,
                action="user.create",
                target=new_login,
                after={"quality": str(quality), "name": person_row.name, "status": "active"},
            )
            return IssuedPassword(new_login, password)

        return await self._write(body)

    async def _managed_user(self, session: AsyncSession, actor: str | None, login: str) -> UserRow:
        """The user ``login``, once the actor's right to manage users of its quality is checked."""
        user = await self._user(session, login)
        enterprise = await self._enterprise_by_id(session, user.enterprise_id)
        if user.quality_id is None:
            if actor is not None:
                raise refuse(
                    "forbidden",
                    f"{user.login} is the HTB of {enterprise.kbo}; only the operator manages it",
                )
            return user
        quality_row = await self._quality_by_id(session, user.quality_id)
        await self._require(session, actor, Action.manage_users, enterprise, quality_row)
        return user

    async def _set_status(
        self, actor: str | None, login: str, status: UserStatus, allowed_from: set[UserStatus]
    ) -> Refusal | None:
        async def body(session: AsyncSession) -> None:
            user = await self._managed_user(session, actor, login)
            before = UserStatus(user.status)
            if status is UserStatus.active:
                # An unblock also lifts the password lockout (registry.lockout); an active
                # account that is only locked out is unlocked, and that is audited too.
                lock = await lift(session, user.id)
                if before is UserStatus.active and lock is not None:
                    locked = is_locked(lock.locked_until, self.clock())
                    await self._audit(
                        session,
                        actor=actor,
                        action="user.unlock",
                        target=user.login,
                        before={"locked": locked, "failures": lock.failures},
                        after={"locked": False, "failures": 0},
                    )
                    return
            if before not in allowed_from:
                raise refuse("invalid", f"{user.login} is {before.value}")
            user.status = status
            if status is UserStatus.deleted:
                user.password_hash = None
                await session.execute(delete(RoleRow).where(RoleRow.user_id == user.id))
            await self._audit(
                session,
                actor=actor,
                action=_STATUS_ACTION[status],
                target=user.login,
                before={"status": before.value},
                after={"status": status.value},
            )

        return await self._write(body)

    async def block_user(self, *, actor: str | None, login: str) -> Refusal | None:
        """Block a user (or a technical user): every login is refused until unblocked."""
        return await self._set_status(actor, login, UserStatus.blocked, {UserStatus.active})

    async def unblock_user(self, *, actor: str | None, login: str) -> Refusal | None:
        """Unblock a blocked user, or unlock one locked out by failed password checks."""
        return await self._set_status(actor, login, UserStatus.active, {UserStatus.blocked})

    async def delete_user(self, *, actor: str | None, login: str) -> Refusal | None:
        """Delete a user: kept as a record (the login is never reused), roles removed."""
        return await self._set_status(
            actor, login, UserStatus.deleted, {UserStatus.active, UserStatus.blocked}
        )

    async def reset_password(self, *, actor: str | None, login: str) -> IssuedPassword | Refusal:
        """Give a user a new temporary password, to be changed at the next login."""
        password = generate_password()
        password_hash = await self.hashing.hash(password)

        async def body(session: AsyncSession) -> IssuedPassword:
            user = await self._managed_user(session, actor, login)
            if user.status == UserStatus.deleted:
                raise refuse("invalid", f"{user.login} is deleted")
            if user.kind != PrincipalKind.user:
                raise refuse("invalid", f"{user.login} is a technical user and has no password")
            user.password_hash = password_hash
            user.must_change_password = True
            await lift(session, user.id)  # a new password starts a new count
            await self._audit(
                session,
                actor=actor,
                action="user.reset_password",
                target=user.login,
                after={"must_change_password": True},
            )
            return IssuedPassword(user.login, password)

        return await self._write(body)
