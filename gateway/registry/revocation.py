"""Revoking a leaked credential without stopping the whole quality, and ending what it opened.

Issue 16: an SSH key, a signing certificate or a channel can be removed, and the technical user
replaced, by whoever may configure the quality's structured messages (the rule table's
``configure_structured``); each removal is audited with what was removed.

- **Logins**: a removed key, certificate, channel or technical user fails the next login at once
  (``authenticate`` reads the registry every time).
- **Open sessions**: every channel login carries a credential id (:attr:`Principal.credential`:
  the SSH key's SHA-256, the client certificate's SHA-256, or a digest of the FTP password's
  stored hash). :meth:`RevocationMixin.still_allowed` answers, for a batch of open sessions,
  which ones the registry would still admit; the daemon asks after every revocation on its node
  (:meth:`RevocationMixin.revocations` wakes it) and every few seconds in any case, so sessions
  on other nodes end within that interval too, and ends the others.
- **Signatures**: a set checked after its signing certificate was removed gets 153 (the
  certificate is no longer registered for the sender).

Fingerprints are accepted as ``ssh-keygen -lf`` prints them (``SHA256:`` and unpadded base64)
or as lower-case hex.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection, and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.registry.base import refuse
from gateway.registry.credentials import password_credential
from gateway.registry.models import (
    ChannelRow,
    EnterpriseRow,
    SigningCertificateRow,
    SshKeyRow,
    UserRow,
)
from gateway.registry.structured import StructuredMixin
from gateway.registry.types import (
    ChannelKind,
    EnterpriseStatus,
    OpenSession,
    Person,
    PrincipalKind,
    QualityRef,
    Refusal,
    UserStatus,
)

T = TypeVar("T")


def ssh_fingerprint(sha256_hex: str) -> str:
    """``SHA256:…`` as ``ssh-keygen -lf`` prints it, from the hex SHA-256 of a key blob."""
    return "SHA256:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode().rstrip("=")


def hex_fingerprint(text: str) -> str | None:
    """A fingerprint given as ``SHA256:base64`` or as 64 hex digits, in hex; None otherwise."""
    text = text.strip()
    if text.startswith("SHA256:"):
        body = text[len("SHA256:") :]
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.hex() if len(raw) == 32 else None
    lowered = text.lower().replace(":", "")
    if len(lowered) == 64 and all(c in "0123456789abcdef" for c in lowered):
        return lowered
    return None


class RevocationMixin(StructuredMixin):
    """Removing keys, certificates, channels; replacing the technical user; re-checking sessions."""

    @property
    def revocations(self) -> asyncio.Event:
        """Set after each revocation committed on this node (the daemon clears it)."""
        event: asyncio.Event | None = getattr(self, "_revocations", None)
        if event is None:
            event = asyncio.Event()
            self._revocations = event
        return event

    def _revoked(self) -> None:
        self.revocations.set()

    async def _fingerprint_or_refuse(self, text: str) -> str:
        found = hex_fingerprint(text)
        if found is None:
            raise refuse("invalid", "a fingerprint is SHA256:… (ssh-keygen -lf) or 64 hex digits")
        return found

    async def remove_ssh_key(
        self, *, actor: str | None, quality: QualityRef, fingerprint: str
    ) -> Refusal | None:
        """Remove one SSH key from the quality's SFTP channel."""

        async def body(session: AsyncSession) -> None:
            sha = await self._fingerprint_or_refuse(fingerprint)
            _, row = await self._configurable(session, actor, quality)
            key = await session.scalar(
                select(SshKeyRow)
                .join(ChannelRow, ChannelRow.id == SshKeyRow.channel_id)
                .where(
                    ChannelRow.quality_id == row.id,
                    ChannelRow.kind == ChannelKind.sftp,
                    SshKeyRow.sha256 == sha,
                )
            )
            if key is None:
                raise refuse("not_found", f"no SSH key {ssh_fingerprint(sha)} on {quality}")
            await session.delete(key)
            await self._audit(
                session,
                actor=actor,
                action="structured.ssh_key_removed",
                target=str(quality),
                before={"sha256": sha, "fingerprint": ssh_fingerprint(sha)},
            )

        return await self._revoking(body)

    async def remove_signing_certificate(
        self, *, actor: str | None, quality: QualityRef, fingerprint: str
    ) -> Refusal | None:
        """Remove one signing certificate of the quality (sets signed with it now get 153)."""

        async def body(session: AsyncSession) -> None:
            sha = await self._fingerprint_or_refuse(fingerprint)
            _, row = await self._configurable(session, actor, quality)
            cert = await session.scalar(
                select(SigningCertificateRow).where(
                    SigningCertificateRow.quality_id == row.id,
                    SigningCertificateRow.sha256 == sha,
                )
            )
            if cert is None:
                raise refuse("not_found", f"no signing certificate {sha} on {quality}")
            await session.delete(cert)
            await self._audit(
                session,
                actor=actor,
                action="structured.certificate_removed",
                target=str(quality),
                before={"sha256": sha, "subject": cert.subject},
            )

        return await self._revoking(body)

    async def remove_channel(
        self, *, actor: str | None, quality: QualityRef, kind: ChannelKind
    ) -> Refusal | None:
        """Remove one channel of the quality, with its keys, password or client certificate."""

        async def body(session: AsyncSession) -> None:
            _, row = await self._configurable(session, actor, quality)
            channel = await session.scalar(
                select(ChannelRow).where(ChannelRow.quality_id == row.id, ChannelRow.kind == kind)
            )
            if channel is None:
                raise refuse("not_found", f"quality {quality} has no {kind.value} channel")
            keys = list(
                await session.scalars(
                    select(SshKeyRow.sha256).where(SshKeyRow.channel_id == channel.id)
                )
            )
            await session.execute(delete(SshKeyRow).where(SshKeyRow.channel_id == channel.id))
            await session.delete(channel)
            await self._audit(
                session,
                actor=actor,
                action="structured.channel_removed",
                target=str(quality),
                before={
                    "kind": kind.value,
                    "ssh_keys": keys,
                    "client_certificate": channel.client_cert_sha256,
                },
            )

        return await self._revoking(body)

    async def replace_technical_user(
        self, *, actor: str | None, quality: QualityRef, person: Person, login: str | None = None
    ) -> str | Refusal:
        """A new technical user for the quality (its channels and sender number stay); the old
        one is deleted, so its logins and sessions end. Returns the new login."""

        async def body(session: AsyncSession) -> str:
            enterprise, row = await self._configurable(session, actor, quality)
            old = await self._technical(session, row.id)
            if old is None:
                raise refuse("step_order", f"quality {quality} has no technical user to replace")
            old.status = UserStatus.deleted
            old.password_hash = None
            await session.flush()
            new_login, person_row = await self._add_technical_user(
                session, enterprise, row, person, login
            )
            await self._audit(
                session,
                actor=actor,
                action="structured.technical_user_replaced",
                target=str(quality),
                before={"login": old.login},
                after={"login": new_login, "name": person_row.name},
            )
            return new_login

        return await self._revoking(body)

    async def _revoking(self, body: Callable[[AsyncSession], Awaitable[T]]) -> T | Refusal:
        result = await self._write(body)
        if not isinstance(result, Refusal):
            self._revoked()
        return result

    async def still_allowed(self, sessions: Sequence[OpenSession]) -> list[bool]:
        """For each open session, whether the registry would admit its credential now."""
        return await self._read_once(_still_allowed, list(sessions))


def _still_allowed(conn: Connection, sessions: list[OpenSession]) -> list[bool]:
    """One read per session (a few dozen at most, every few seconds)."""
    answers = []
    for open_session in sessions:
        row = conn.execute(
            select(
                UserRow.status,
                UserRow.kind,
                EnterpriseRow.status.label("enterprise_status"),
                EnterpriseRow.password_login,
                ChannelRow.id.label("channel_id"),
                ChannelRow.password_hash,
                ChannelRow.client_cert_sha256,
            )
            .join(EnterpriseRow, EnterpriseRow.id == UserRow.enterprise_id)
            .outerjoin(
                ChannelRow,
                and_(
                    ChannelRow.quality_id == UserRow.quality_id,
                    ChannelRow.kind == open_session.channel.value,
                ),
            )
            .where(UserRow.login == open_session.login)
        ).first()
        allowed = (
            row is not None
            and row.status == UserStatus.active
            and row.kind == PrincipalKind.technical
            and row.enterprise_status == EnterpriseStatus.active
            and row.channel_id is not None
        )
        if allowed and row is not None:
            credential = open_session.credential
            if open_session.channel is ChannelKind.sftp:
                allowed = (
                    conn.execute(
                        select(SshKeyRow.id).where(
                            SshKeyRow.channel_id == row.channel_id, SshKeyRow.sha256 == credential
                        )
                    ).first()
                    is not None
                )
            elif open_session.channel is ChannelKind.webservice:
                allowed = row.client_cert_sha256 == credential
            else:
                allowed = bool(row.password_login) and (
                    password_credential(row.password_hash) == credential
                )
        answers.append(allowed)
    return answers
