"""Authentication: the one service the channels call, the console login, self-service passwords.

``authenticate`` answers a channel login (SFTP key, FTP password, web-service client
certificate) with a :class:`Principal` or an :class:`AuthFailure` whose reason is for logs only;
the peer sees a generic failure. Rules:

- a password offered for an unknown login is still verified against a dummy argon2 hash, so an
  unknown login takes as long as a known one (SECURITY.md 6);
- only the technical user of a quality logs in on a channel, and only on a channel configured for
  that quality; blocked and deleted accounts, and enterprises still pending, are refused;
- a password is refused when the enterprise switched password login off; an FTP password is
  also refused from an address outside the channel's allow-list (fail closed: a configured
  allow-list and no peer address is a refusal). An entry naming a secondary network counts the
  ranges the networks file (``registry.networks``, read at the time of the login) gives it; a
  name the file no longer holds admits no one;
- SSH keys are compared on algorithm + blob, certificates on their DER fingerprint;
- every password check (FTP, SFTP, the console) runs in the bounded password pool (a full pool
  is ``busy``: refused without a check, holding no slot) and under the account lockout
  (``registry.lockout``): a locked account's password logins are ``locked`` whatever the
  password, and a wrong password of an existing account counts towards the lock. The failure is
  returned at once; the channel answers it only after the pacing delay
  (``gateway.ops.pacing``), so a busy refusal cannot be turned into an instant retry.

``console_login`` is the access-management login of a person; the HTB's first successful one
activates the enterprise.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Row, Select, and_, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.registry import audit
from gateway.registry.base import Refused, RegistryBase, iso, refuse
from gateway.registry.credentials import (
    SshKey,
    Verdict,
    certificate_sha256,
    parse_ssh_key,
    password_credential,
)
from gateway.registry.lockout import LoginLockoutRow, is_locked, lift, lock_of, record_failure
from gateway.registry.models import (
    ChannelRow,
    EnterpriseRow,
    QualityRow,
    RoleRow,
    SenderRow,
    SigningCertificateRow,
    SshKeyRow,
    SubscriptionRow,
    UserRow,
)
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    ClientCertificateCredential,
    Credential,
    EnterpriseNumber,
    EnterpriseStatus,
    PasswordCredential,
    Principal,
    PrincipalKind,
    PublicKeyCredential,
    QualityId,
    Refusal,
    Role,
    SenderNumber,
    SenderProfile,
    UserStatus,
)
from gateway.registry.validate import check_login, check_password

_SENDER = re.compile(r"[0-9]{6}")

log = structlog.get_logger("gateway.registry.auth")


def _login_query(channel: ChannelKind) -> Select[*tuple[Any, ...]]:
    """Account + enterprise + the channel of ``channel`` + sender + the offered key, if any.

    The offered key comes as bound parameters ``sha256``, ``algorithm`` and ``blob`` (empty
    strings for other credentials). Built once per channel kind: reusing the statement object
    spares SQLAlchemy from rebuilding and re-keying it on every login.
    """
    key_match = and_(
        SshKeyRow.channel_id == ChannelRow.id,
        SshKeyRow.sha256 == bindparam("sha256"),
        SshKeyRow.algorithm == bindparam("algorithm"),
        SshKeyRow.blob == bindparam("blob"),
    )
    return (
        select(
            UserRow.id.label("user_id"),
            UserRow.login,
            UserRow.kind,
            UserRow.status,
            UserRow.quality_id,
            UserRow.must_change_password,
            EnterpriseRow.kbo,
            EnterpriseRow.status.label("enterprise_status"),
            EnterpriseRow.password_login,
            ChannelRow.id.label("channel_id"),
            ChannelRow.password_hash.label("channel_password"),
            ChannelRow.allowed_networks,
            ChannelRow.client_cert_sha256,
            SenderRow.number.label("sender"),
            SshKeyRow.id.label("key_id"),
            LoginLockoutRow.failures.label("lock_failures"),
            LoginLockoutRow.locked_until,
        )
        .join(EnterpriseRow, EnterpriseRow.id == UserRow.enterprise_id)
        .outerjoin(
            ChannelRow,
            and_(
                ChannelRow.quality_id == UserRow.quality_id,
                ChannelRow.kind == channel.value,
                UserRow.kind == PrincipalKind.technical.value,
            ),
        )
        .outerjoin(SenderRow, SenderRow.quality_id == UserRow.quality_id)
        .outerjoin(SshKeyRow, key_match)
        .outerjoin(LoginLockoutRow, LoginLockoutRow.user_id == UserRow.id)
    )


# Per channel kind: the query by login, and the query by sender number (technical users only).
_BY_LOGIN = {k: _login_query(k).where(UserRow.login == bindparam("login")) for k in ChannelKind}
_BY_SENDER = {
    k: _login_query(k).where(
        SenderRow.number == bindparam("login"),
        UserRow.kind == PrincipalKind.technical.value,
        UserRow.status != UserStatus.deleted.value,
    )
    for k in ChannelKind
}
_APPLICATIONS = select(SubscriptionRow.application).where(
    SubscriptionRow.quality_id == bindparam("quality_id")
)


def _login_rows(
    conn: Connection, channel: ChannelKind, params: dict[str, str], by_sender: bool
) -> tuple[Row[Any] | None, list[str]]:
    """One read: the account, its enterprise, the channel, the sender and the key in one query
    (by login, else by sender number when the login looks like one), and the subscriptions. The
    subscriptions are read for an unknown login too (of no quality), so both take the same
    statements (SECURITY.md 6)."""
    row = conn.execute(_BY_LOGIN[channel], params).first()
    if row is None and by_sender:
        row = conn.execute(_BY_SENDER[channel], params).first()
    quality = row.quality_id if row is not None else -1
    return row, list(conn.execute(_APPLICATIONS, {"quality_id": quality}).scalars())


def _certificate_login(conn: Connection, sha256: str) -> str | None:
    """The login of the technical user whose web-service channel holds ``sha256`` (a deleted
    one last, so that a live account wins), or None."""
    row = conn.execute(
        select(UserRow.login)
        .join(ChannelRow, ChannelRow.quality_id == UserRow.quality_id)
        .where(
            ChannelRow.kind == ChannelKind.webservice.value,
            ChannelRow.client_cert_sha256 == sha256,
            UserRow.kind == PrincipalKind.technical.value,
        )
        .order_by((UserRow.status == UserStatus.deleted.value).asc(), UserRow.id)
    ).first()
    return None if row is None else str(row.login)


def _client_certificates(conn: Connection) -> list[bytes]:
    rows = conn.execute(
        select(ChannelRow.client_cert_der)
        .where(
            ChannelRow.kind == ChannelKind.webservice.value,
            ChannelRow.client_cert_der.is_not(None),
        )
        .order_by(ChannelRow.id)
    ).scalars()
    return [bytes(der) for der in rows if der is not None]


def _credential_id(credential: Credential, key: SshKey | None, password_hash: str | None) -> str:
    """The id of what authenticated a login (see ``Principal.credential``)."""
    if key is not None:
        return key.sha256
    if isinstance(credential, ClientCertificateCredential):
        return certificate_sha256(credential.der)
    return password_credential(password_hash)


def _status_failure(status: str) -> AuthFailure | None:
    if status == UserStatus.deleted:
        return AuthFailure("deleted")
    if status == UserStatus.blocked:
        return AuthFailure("blocked")
    return None


class AuthMixin(RegistryBase):
    """Logins and the sender profile."""

    async def _find_login(self, session: AsyncSession, login: str) -> UserRow | None:
        """The account for ``login``: a login, or a 6-digit sender number (its technical user)."""
        user = await session.scalar(select(UserRow).where(UserRow.login == login))
        if user is None and _SENDER.fullmatch(login):
            user = await session.scalar(
                select(UserRow)
                .join(SenderRow, SenderRow.quality_id == UserRow.quality_id)
                .where(
                    SenderRow.number == login,
                    UserRow.kind == PrincipalKind.technical,
                    UserRow.status != UserStatus.deleted,
                )
            )
        return user

    async def _principal(
        self, session: AsyncSession, user: UserRow, enterprise: EnterpriseRow
    ) -> Principal:
        sender: SenderNumber | None = None
        applications: frozenset[str] = frozenset()
        if user.quality_id is not None:
            number = await session.scalar(
                select(SenderRow.number).where(SenderRow.quality_id == user.quality_id)
            )
            sender = SenderNumber(number) if number is not None else None
            apps = await session.scalars(
                select(SubscriptionRow.application).where(
                    SubscriptionRow.quality_id == user.quality_id
                )
            )
            applications = frozenset(apps)
        return Principal(
            login=user.login,
            kind=PrincipalKind(user.kind),
            enterprise=EnterpriseNumber(enterprise.kbo),
            quality=QualityId(user.quality_id) if user.quality_id is not None else None,
            sender=sender,
            applications=applications,
            must_change_password=user.must_change_password,
        )

    async def authenticate(
        self,
        login: str,
        credential: Credential,
        *,
        channel: ChannelKind,
        peer: str | None = None,
    ) -> Principal | AuthFailure:
        """Check a channel login; ``peer`` is the client's IP address (FTP allow-list, matched
        through the secondary networks now loaded)."""
        clean = check_login(login)
        key: SshKey | None = None
        if isinstance(credential, PublicKeyCredential):
            parsed = parse_ssh_key(credential.openssh_public_key)
            key = None if isinstance(parsed, Refusal) else parsed
        params = {
            "login": "" if isinstance(clean, Refusal) else clean,
            "sha256": key.sha256 if key is not None else "",
            "algorithm": key.algorithm if key is not None else "",
            "blob": key.blob if key is not None else "",
        }
        row: Row[Any] | None = None
        apps: list[str] = []
        if not isinstance(clean, Refusal):
            by_sender = _SENDER.fullmatch(clean) is not None
            row, apps = await self._read_once(_login_rows, channel, params, by_sender)
        verdict = await self._matches(credential, channel, row)
        if verdict is Verdict.busy:
            return AuthFailure("busy")
        if row is None:
            if isinstance(credential, PasswordCredential):
                await self._decoy_failure()
            return AuthFailure("invalid_login" if isinstance(clean, Refusal) else "unknown_login")
        password = isinstance(credential, PasswordCredential)
        failure = _status_failure(row.status)
        if failure is None and (row.kind != PrincipalKind.technical or row.channel_id is None):
            failure = AuthFailure("channel_not_allowed")
        if failure is None and password and not row.password_login:
            failure = AuthFailure("password_login_disabled")
        if failure is None and password and is_locked(row.locked_until, self.clock()):
            failure = AuthFailure("locked")
        if failure is None and verdict is not Verdict.match:
            failure = AuthFailure("bad_credential")
            if password:
                await self._password_failed(row.user_id, row.login)
        if failure is None and row.enterprise_status != EnterpriseStatus.active:
            failure = AuthFailure("enterprise_pending")
        if failure is None and channel is ChannelKind.ftp:
            allowed: list[str] = json.loads(row.allowed_networks)
            if allowed and (peer is None or not self.networks.allows(allowed, peer)):
                failure = AuthFailure("network_not_allowed", networks=tuple(allowed))
        if failure is not None:
            return failure
        if password and row.lock_failures:
            await self._password_succeeded(row.user_id)
        return Principal(
            login=row.login,
            kind=PrincipalKind.technical,
            enterprise=EnterpriseNumber(row.kbo),
            quality=QualityId(row.quality_id),
            sender=SenderNumber(row.sender) if row.sender is not None else None,
            applications=frozenset(apps),
            must_change_password=row.must_change_password,
            credential=_credential_id(credential, key, row.channel_password),
        )

    async def authenticate_certificate(
        self, der: bytes, *, peer: str | None = None
    ) -> Principal | AuthFailure:
        """A web-service login by client certificate alone: the technical user whose
        web-service channel holds the SHA-256 of ``der``, with :meth:`authenticate`'s checks
        (blocked or deleted user, pending enterprise). A certificate no channel holds is
        ``unknown_certificate``."""
        login = await self._read_once(_certificate_login, certificate_sha256(der))
        if login is None:
            return AuthFailure("unknown_certificate")
        return await self.authenticate(
            login, ClientCertificateCredential(der), channel=ChannelKind.webservice, peer=peer
        )

    async def client_certificates(self) -> list[bytes]:
        """The DER of every client certificate registered on a web-service channel (the web
        listener's TLS anchors)."""
        return await self._read_once(_client_certificates)

    async def _matches(
        self, credential: Credential, channel: ChannelKind, row: Row[Any] | None
    ) -> Verdict:
        if isinstance(credential, PasswordCredential):
            stored = (
                row.channel_password if row is not None and channel is ChannelKind.ftp else None
            )
            # Always one argon2 verification, whether or not there is a stored hash (or busy).
            return await self.hashing.check(stored, credential.password)
        return Verdict.match if self._key_matches(credential, channel, row) else Verdict.mismatch

    @staticmethod
    def _key_matches(credential: Credential, channel: ChannelKind, row: Row[Any] | None) -> bool:
        if row is None or row.channel_id is None:
            return False
        if isinstance(credential, PublicKeyCredential):
            return channel is ChannelKind.sftp and row.key_id is not None
        if isinstance(credential, ClientCertificateCredential):
            return (
                channel is ChannelKind.webservice
                and row.client_cert_sha256 == certificate_sha256(credential.der)
            )
        return False  # pragma: no cover  (the union is exhaustive)

    # -- the account lockout (gateway.registry.lockout) -------------------------------------------

    async def _password_failed(self, user_id: int, login: str) -> None:
        """Count a wrong password (or console code) of ``user_id``; log when it locks."""
        now = self.clock()
        try:
            locked = await self._count_failure(user_id, now)
        except IntegrityError:
            # Another node inserted this account's first failure meanwhile: count again, now
            # under the row's lock.
            locked = await self._count_failure(user_id, now)
        if locked is not None:
            log.warning("account.locked", login=login, until=iso(locked))

    async def _decoy_failure(self) -> None:
        """An unknown login's wrong password pays a committed write, as a known login's does
        (its failure count), so the refusal's time does not tell whether the login exists
        (SECURITY.md 6): a no-op update of the audit head row (a real page write on SQLite, a new
        row version on PostgreSQL), committed."""
        async with self._sessions() as session, session.begin():
            # The statements a known login's count runs (lock, read), on no row, then the write.
            await session.execute(
                update(LoginLockoutRow)
                .where(LoginLockoutRow.user_id == -1)
                .values(failures=LoginLockoutRow.failures)
            )
            await session.get(LoginLockoutRow, -1)
            await audit.lock_head(session)

    async def _count_failure(self, user_id: int, now: datetime) -> datetime | None:
        async with self._sessions() as session, session.begin():
            return await record_failure(session, user_id, now, self.lockout)

    async def _password_succeeded(self, user_id: int) -> None:
        """A good password (checked while not locked) clears the count."""
        async with self._sessions() as session, session.begin():
            await lift(session, user_id)

    async def _user_id(self, login: str) -> int | None:
        clean = check_login(login)
        if isinstance(clean, Refusal):
            return None
        async with self._sessions() as session, session.begin():
            user = await self._find_login(session, clean)
            return None if user is None else user.id

    async def login_locked(self, login: str) -> bool:
        """Whether ``login``'s password logins are locked now (False for an unknown login)."""
        user_id = await self._user_id(login)
        if user_id is None:
            return False
        async with self._sessions() as session, session.begin():
            state = await lock_of(session, user_id)
        return state is not None and is_locked(state.locked_until, self.clock())

    async def login_failed(self, login: str) -> None:
        """Count a failed check of ``login``'s password or console code (unknown: nothing)."""
        user_id = await self._user_id(login)
        if user_id is not None:
            await self._password_failed(user_id, login)
        else:
            await self._decoy_failure()

    async def login_succeeded(self, login: str) -> None:
        """A good console code clears ``login``'s count."""
        user_id = await self._user_id(login)
        if user_id is not None:
            await self._password_succeeded(user_id)

    @staticmethod
    def _account_failure(user: UserRow) -> AuthFailure | None:
        return _status_failure(user.status)

    async def console_login(
        self, login: str, credential: PasswordCredential
    ) -> Principal | AuthFailure:
        """A person's access-management login; the HTB's first one activates the enterprise."""
        clean = check_login(login)
        async with self._sessions() as session, session.begin():
            user = None if isinstance(clean, Refusal) else await self._find_login(session, clean)
            stored = (
                user.password_hash if user is not None and user.kind == PrincipalKind.user else None
            )
            enterprise = await self._enterprise_by_id(session, user.enterprise_id) if user else None
            lock = await lock_of(session, user.id) if user is not None else None
            is_htb = user is not None and (
                await session.scalar(
                    select(RoleRow.id).where(RoleRow.user_id == user.id, RoleRow.role == Role.htb)
                )
                is not None
            )
        # Checked outside the transaction: no database connection waits on argon2.
        verdict = await self.hashing.check(stored, credential.password)
        if verdict is Verdict.busy:
            return AuthFailure("busy")
        if user is None or enterprise is None:
            await self._decoy_failure()
            return AuthFailure("invalid_login" if isinstance(clean, Refusal) else "unknown_login")
        failure = self._account_failure(user)
        if failure is None and user.kind != PrincipalKind.user:
            failure = AuthFailure("channel_not_allowed")
        if failure is None and not enterprise.password_login:
            failure = AuthFailure("password_login_disabled")
        if failure is None and lock is not None and is_locked(lock.locked_until, self.clock()):
            failure = AuthFailure("locked")
        if failure is None and verdict is not Verdict.match:
            failure = AuthFailure("bad_credential")
            await self._password_failed(user.id, user.login)
        if failure is not None:
            return failure
        if lock is not None:
            await self._password_succeeded(user.id)
        if enterprise.status != EnterpriseStatus.active and not is_htb:
            return AuthFailure("enterprise_pending")
        user_id = user.id
        if enterprise.status != EnterpriseStatus.active:
            activated = await self._write(lambda s: self._activate(s, user_id))
            if isinstance(activated, Refusal):  # pragma: no cover  (the rows were just read)
                return AuthFailure("enterprise_pending")
        async with self._sessions() as session, session.begin():
            user = await self._user(session, login)
            enterprise = await self._enterprise_by_id(session, user.enterprise_id)
            return await self._principal(session, user, enterprise)

    async def activate_at_first_login(self, login: str) -> bool:
        """The HTB's first sign-in by a method other than a password (eID) activates its pending
        enterprise, as a password sign-in does (``console_login``); True when it did."""
        async with self._sessions() as session, session.begin():
            user = await self._find_login(session, login)
            if user is None or user.status != UserStatus.active:
                return False
            enterprise = await self._enterprise_by_id(session, user.enterprise_id)
            is_htb = await session.scalar(
                select(RoleRow.id).where(RoleRow.user_id == user.id, RoleRow.role == Role.htb)
            )
            if enterprise.status == EnterpriseStatus.active or is_htb is None:
                return False
            user_id = user.id
        return not isinstance(await self._write(lambda s: self._activate(s, user_id)), Refusal)

    async def _activate(self, session: AsyncSession, user_id: int) -> None:
        user = (await session.execute(select(UserRow).where(UserRow.id == user_id))).scalar_one()
        enterprise = await self._enterprise_by_id(session, user.enterprise_id)
        if enterprise.status == EnterpriseStatus.active:
            return
        enterprise.status = EnterpriseStatus.active
        enterprise.activated_at = self.now()
        user.last_login_at = self.now()
        await self._audit(
            session,
            actor=user.login,
            action="enterprise.activate",
            target=enterprise.kbo,
            before={"status": "pending"},
            after={"status": "active"},
        )

    async def change_password(self, *, login: str, old: str, new: str) -> Refusal | None:
        """Self-service: a user replaces its (temporary) password after logging in with it."""
        policy = check_password(new)
        if isinstance(policy, Refusal):
            return policy
        if new == old:
            return Refusal("password_policy", "the new password must differ from the old one")
        new_hash = await self.hashing.hash(new)

        async def body(session: AsyncSession) -> None:
            user = await self._user(session, login)
            if user.kind != PrincipalKind.user or user.status != UserStatus.active:
                raise refuse("forbidden", f"{user.login} cannot change a password")
            if not await self.hashing.verify(user.password_hash, old):
                raise refuse("bad_credential", "the current password is wrong")
            user.password_hash = new_hash
            user.must_change_password = False
            await self._audit(
                session,
                actor=user.login,
                action="user.change_password",
                target=user.login,
                after={"must_change_password": False},
            )

        return await self._write(body)

    async def sender_profile(self, sender: SenderNumber) -> SenderProfile | None:
        """Everything the pipeline checks about a sender: applications, certificates, channels."""
        return await self._read_once(load_sender_profile, sender)


# The profile's five reads, built once (a statement built per call cost more than its query).
_PROFILE_SENDER = (
    select(QualityRow.id, QualityRow.kind, EnterpriseRow.kbo, EnterpriseRow.status)
    .join(SenderRow, SenderRow.quality_id == QualityRow.id)
    .join(EnterpriseRow, EnterpriseRow.id == QualityRow.enterprise_id)
    .where(SenderRow.number == bindparam("b_sender"))
)
_PROFILE_APPLICATIONS = select(SubscriptionRow.application).where(
    SubscriptionRow.quality_id == bindparam("b_quality")
)
_PROFILE_CERTIFICATES = (
    select(SigningCertificateRow.der)
    .where(SigningCertificateRow.quality_id == bindparam("b_quality"))
    .order_by(SigningCertificateRow.id)
)
_PROFILE_CHANNELS = select(ChannelRow.kind).where(ChannelRow.quality_id == bindparam("b_quality"))
_PROFILE_TECHNICAL = select(UserRow.login, UserRow.status).where(
    UserRow.quality_id == bindparam("b_quality"),
    UserRow.kind == PrincipalKind.technical,
    UserRow.status != UserStatus.deleted,
)


def load_sender_profile(conn: Connection, sender: SenderNumber) -> SenderProfile | None:
    """:meth:`AuthMixin.sender_profile` as one read on a sync connection: the registry runs it
    through ``_read_once``, the pipeline on its own database thread (one hop, not one per
    statement)."""
    row = conn.execute(_PROFILE_SENDER, {"b_sender": sender}).first()
    if row is None:
        return None
    quality_id, quality_kind, kbo, enterprise_status = row
    by_quality = {"b_quality": quality_id}
    apps = conn.execute(_PROFILE_APPLICATIONS, by_quality).scalars()
    certs = conn.execute(_PROFILE_CERTIFICATES, by_quality).scalars()
    kinds = conn.execute(_PROFILE_CHANNELS, by_quality)
    technical = conn.execute(_PROFILE_TECHNICAL, by_quality).first()
    return SenderProfile(
        number=sender,
        enterprise=EnterpriseNumber(kbo),
        quality=QualityId(quality_id),
        quality_kind=quality_kind,
        applications=frozenset(apps),
        signing_certificates=tuple(certs),
        channels=frozenset(ChannelKind(k) for (k,) in kinds),
        technical_login=technical.login if technical is not None else None,
        active=(
            technical is not None
            and technical.status == UserStatus.active
            and enterprise_status == EnterpriseStatus.active
        ),
    )


__all__ = ["AuthMixin", "Refused"]
