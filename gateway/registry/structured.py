"""Structured-message configuration of a quality, in the guide's order, and its overview.

The steps (domain/000_36f6d54a4c1c892a.txt, "Verzending via gestructureerde berichten
configureren"): save the configuration data; appoint the one technical user (name, e-mail,
phone, language); choose the channel (SFTP with SSH keys, FTP with a password and optional
secondary network / allow-list, web service with a client certificate); upload the signing
certificate; pick the online services. A step before its predecessor is refused with
``step_order`` naming the missing step.

The sender number (6 digits, unique, never reused) is assigned when the quality's first channel
is created; ``senders`` rows are never deleted. 999999 is the transfer point's own number.

Certificates are refused at registration when verification would refuse them
(``gateway.registry.credentials``): the signing certificate against the injected trust source
and signature policy, a web-service client certificate on validity and key alone. One that
expires within ``EXPIRY_WARNING`` (30 days) is accepted with a warning, in the answer of the
upload and in the overview.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.core.trust import load_certificate
from gateway.registry.base import Refused, RegistryBase, iso, refuse
from gateway.registry.credentials import (
    SshKey,
    parse_client_certificate,
    parse_signing_certificate,
    parse_ssh_key,
)
from gateway.registry.models import (
    ChannelRow,
    EnterpriseRow,
    PersonRow,
    QualityRow,
    SenderRow,
    SigningCertificateRow,
    SshKeyRow,
    SubscriptionRow,
    UserRow,
)
from gateway.registry.rules import Action
from gateway.registry.types import (
    ChannelKind,
    Person,
    PrincipalKind,
    QualityRef,
    Refusal,
    SenderNumber,
    UserStatus,
)
from gateway.registry.validate import check_network, check_password

FIRST_SENDER = 1000
TRANSFER_POINT_SENDER = 999999
EXPIRY_WARNING = timedelta(days=30)


def expiry_warning(not_after: datetime, now: datetime) -> str | None:
    """The warning for a certificate that expires within :data:`EXPIRY_WARNING` of ``now``."""
    if not_after - now > EXPIRY_WARNING:
        return None
    days = max(0, (not_after - now).days)
    return f"expires on {not_after:%Y-%m-%d} (in {days} days): register its successor before then"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelView:
    """One configured channel as the overview shows it (fingerprints, never secrets).

    ``allowed_networks`` are the allow-list entries as stored; ``networks`` the same entries with
    the ranges behind them in the secondary networks file now loaded
    (:meth:`~gateway.registry.networks.NetworkBook.describe`).
    """

    kind: ChannelKind
    ssh_keys: tuple[str, ...] = ()
    password_set: bool = False
    allowed_networks: tuple[str, ...] = ()
    networks: tuple[Mapping[str, Any], ...] = ()
    client_certificate_sha256: str | None = None
    client_certificate_warning: str | None = None
    """Set when the client certificate expires within 30 days (:func:`expiry_warning`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateView:
    """A registered signing certificate; ``warning`` when it expires within 30 days."""

    subject: str
    sha256: str
    not_after: str
    warning: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    """The overview of the configuration data of one quality (guide: "Overzicht")."""

    enterprise: str
    enterprise_name: str
    quality: str
    configuration_saved: bool
    technical_user: dict[str, str] | None
    channels: tuple[ChannelView, ...]
    certificates: tuple[CertificateView, ...]
    services: tuple[str, ...]
    sender: SenderNumber | None


class StructuredMixin(RegistryBase):
    """The structured-message configuration steps."""

    async def _configurable(
        self, session: AsyncSession, actor: str | None, quality: QualityRef
    ) -> tuple[EnterpriseRow, QualityRow]:
        enterprise, quality_row = await self._quality(session, quality)
        await self._require(session, actor, Action.configure_structured, enterprise, quality_row)
        return enterprise, quality_row

    async def _technical(self, session: AsyncSession, quality_id: int) -> UserRow | None:
        return await session.scalar(
            select(UserRow).where(
                UserRow.quality_id == quality_id,
                UserRow.kind == PrincipalKind.technical,
                UserRow.status != UserStatus.deleted,
            )
        )

    async def _add_technical_user(
        self,
        session: AsyncSession,
        enterprise: EnterpriseRow,
        quality: QualityRow,
        person: Person,
        login: str | None,
    ) -> tuple[str, PersonRow]:
        """A new active technical user of ``quality`` (no password: it logs in with its
        channels' credentials); its login and person."""
        user, person_row = await self._add_user(
            session,
            enterprise_id=enterprise.id,
            quality_id=quality.id,
            person=person,
            login=login,
            kind=PrincipalKind.technical,
            password_hash=None,
        )
        return user.login, person_row

    async def _sender(self, session: AsyncSession, quality_id: int) -> str | None:
        return await session.scalar(
            select(SenderRow.number).where(SenderRow.quality_id == quality_id)
        )

    async def save_configuration(self, *, actor: str | None, quality: QualityRef) -> Refusal | None:
        """Step 1: save the configuration data (opens structured messages for the quality)."""

        async def body(session: AsyncSession) -> None:
            _, row = await self._configurable(session, actor, quality)
            before = row.structured_saved
            row.structured_saved = True
            await self._audit(
                session,
                actor=actor,
                action="structured.save",
                target=str(quality),
                before={"saved": before},
                after={"saved": True},
            )

        return await self._write(body)

    async def set_technical_user(
        self, *, actor: str | None, quality: QualityRef, person: Person, login: str | None = None
    ) -> str | Refusal:
        """Step 2: appoint the quality's one technical user (the contact person); its login."""

        async def body(session: AsyncSession) -> str:
            enterprise, row = await self._configurable(session, actor, quality)
            if not row.structured_saved:
                raise refuse("step_order", "save the configuration data first")
            existing = await self._technical(session, row.id)
            if existing is not None:
                raise refuse(
                    "duplicate", f"quality {quality} already has technical user {existing.login}"
                )
            new_login, person_row = await self._add_technical_user(
                session, enterprise, row, person, login
            )
            await self._audit(
                session,
                actor=actor,
                action="structured.technical_user",
                target=str(quality),
                after={"login": new_login, "name": person_row.name, "email": person_row.email},
            )
            return new_login

        return await self._write(body)

    async def _assign_sender(self, session: AsyncSession, quality_id: int) -> str:
        current = await self._sender(session, quality_id)
        if current is not None:
            return current
        highest = await session.scalar(select(func.max(SenderRow.number)))
        number = FIRST_SENDER if highest is None else int(highest) + 1
        if number == TRANSFER_POINT_SENDER:
            number += 1
        if number > TRANSFER_POINT_SENDER:
            raise refuse("limit", "no sender numbers are left")
        text = f"{number:06d}"
        session.add(SenderRow(number=text, quality_id=quality_id, assigned_at=self.now()))
        return text

    async def add_channel(
        self,
        *,
        actor: str | None,
        quality: QualityRef,
        kind: ChannelKind,
        ssh_keys: Sequence[str] = (),
        ftp_password: str | None = None,
        networks: Sequence[str] = (),
        client_certificate: bytes | None = None,
    ) -> SenderNumber | Refusal:
        """Step 3: create a channel; the quality's first channel assigns its sender number."""
        password_hash: str | None = None
        if kind is ChannelKind.ftp:
            if ftp_password is None:
                return Refusal("invalid", "an FTP channel needs a password")
            policy = check_password(ftp_password)
            if isinstance(policy, Refusal):
                return policy
            password_hash = await self.hashing.hash(ftp_password)

        async def body(session: AsyncSession) -> SenderNumber:
            _, row = await self._configurable(session, actor, quality)
            if await self._technical(session, row.id) is None:
                raise refuse("step_order", "appoint the technical user before choosing a channel")
            taken = await session.scalar(
                select(ChannelRow.id).where(
                    ChannelRow.quality_id == row.id, ChannelRow.kind == kind
                )
            )
            if taken is not None:
                raise refuse("duplicate", f"quality {quality} already has a {kind} channel")
            keys = [_key(text) for text in ssh_keys]
            if kind is ChannelKind.sftp and not keys:
                raise refuse("invalid", "an SFTP channel needs at least one SSH public key")
            if kind is not ChannelKind.sftp and keys:
                raise refuse("invalid", "SSH keys belong to the SFTP channel")
            allowed = [_network(n) for n in networks]
            if allowed and kind is not ChannelKind.ftp:
                raise refuse("invalid", "an allow-list belongs to the FTP channel")
            book = self.networks
            unknown = book.unknown(allowed)
            if unknown:
                known = ", ".join(book.names) or "none"
                raise refuse(
                    "invalid",
                    f"not in the secondary networks file: {', '.join(unknown)} (known: {known})",
                )
            cert_der = cert_sha = None
            if kind is ChannelKind.webservice:
                if client_certificate is None:
                    raise refuse("invalid", "a web-service channel needs a client certificate")
                parsed = parse_client_certificate(
                    client_certificate, now=self.clock(), policy=self.signature_policy
                )
                if isinstance(parsed, Refusal):
                    raise Refused(parsed)
                cert_der, cert_sha = parsed.der, parsed.sha256
            channel = ChannelRow(
                quality_id=row.id,
                kind=kind,
                password_hash=password_hash,
                allowed_networks=json.dumps(allowed),
                client_cert_der=cert_der,
                client_cert_sha256=cert_sha,
                created_at=self.now(),
            )
            session.add(channel)
            await session.flush()
            for key in {k.sha256: k for k in keys}.values():
                session.add(
                    SshKeyRow(
                        channel_id=channel.id,
                        algorithm=key.algorithm,
                        blob=key.blob,
                        sha256=key.sha256,
                    )
                )
            sender = await self._assign_sender(session, row.id)
            await self._audit(
                session,
                actor=actor,
                action="structured.channel",
                target=str(quality),
                after={
                    "kind": kind.value,
                    "ssh_keys": sorted(k.sha256 for k in keys),
                    "networks": allowed,
                    "client_certificate": cert_sha,
                    "sender": sender,
                },
            )
            return SenderNumber(sender)

        return await self._write(body)

    async def add_ssh_key(
        self, *, actor: str | None, quality: QualityRef, key: str
    ) -> str | Refusal:
        """Add one more SSH public key to the quality's SFTP channel; its SHA-256."""

        async def body(session: AsyncSession) -> str:
            _, row = await self._configurable(session, actor, quality)
            channel = await session.scalar(
                select(ChannelRow).where(
                    ChannelRow.quality_id == row.id, ChannelRow.kind == ChannelKind.sftp
                )
            )
            if channel is None:
                raise refuse("step_order", f"quality {quality} has no SFTP channel")
            parsed = _key(key)
            dup = await session.scalar(
                select(SshKeyRow.id).where(
                    SshKeyRow.channel_id == channel.id, SshKeyRow.sha256 == parsed.sha256
                )
            )
            if dup is not None:
                raise refuse("duplicate", "that SSH key is already registered")
            session.add(
                SshKeyRow(
                    channel_id=channel.id,
                    algorithm=parsed.algorithm,
                    blob=parsed.blob,
                    sha256=parsed.sha256,
                )
            )
            await self._audit(
                session,
                actor=actor,
                action="structured.ssh_key",
                target=str(quality),
                after={"sha256": parsed.sha256},
            )
            return parsed.sha256

        return await self._write(body)

    async def upload_certificate(
        self, *, actor: str | None, quality: QualityRef, data: bytes
    ) -> CertificateView | Refusal:
        """Step 4: register a signing certificate (PEM or DER) that verification would accept
        now (validity, key, chain to the trust store, revocation), for signing."""
        # Read before the write lock is taken: the trust folders are files.
        trust = await self.trust.current() if self.trust is not None else None

        async def body(session: AsyncSession) -> CertificateView:
            _, row = await self._configurable(session, actor, quality)
            if await self._sender(session, row.id) is None:
                raise refuse("step_order", "choose a channel before uploading the certificate")
            now = self.clock()
            parsed = parse_signing_certificate(
                data, now=now, trust=trust, policy=self.signature_policy
            )
            if isinstance(parsed, Refusal):
                raise Refused(parsed)
            dup = await session.scalar(
                select(SigningCertificateRow.id).where(
                    SigningCertificateRow.quality_id == row.id,
                    SigningCertificateRow.sha256 == parsed.sha256,
                )
            )
            if dup is not None:
                raise refuse("duplicate", "that certificate is already registered")
            view = CertificateView(
                subject=parsed.subject,
                sha256=parsed.sha256,
                not_after=iso(parsed.not_after),
                warning=expiry_warning(parsed.not_after, now),
            )
            session.add(
                SigningCertificateRow(
                    quality_id=row.id,
                    der=parsed.der,
                    sha256=parsed.sha256,
                    subject=parsed.subject,
                    not_after=parsed.not_after,
                    uploaded_at=self.now(),
                )
            )
            await self._audit(
                session,
                actor=actor,
                action="structured.certificate",
                target=str(quality),
                after={"subject": view.subject, "sha256": view.sha256, "not_after": view.not_after},
            )
            return view

        return await self._write(body)

    async def set_services(
        self, *, actor: str | None, quality: QualityRef, codes: Sequence[str]
    ) -> tuple[str, ...] | Refusal:
        """Step 5: the online services (catalogue application codes) the quality sends."""

        async def body(session: AsyncSession) -> tuple[str, ...]:
            _, row = await self._configurable(session, actor, quality)
            if await self._sender(session, row.id) is None:
                raise refuse("step_order", "choose a channel before picking online services")
            unknown = sorted(c for c in codes if c not in self.catalogue)
            if unknown:
                raise refuse(
                    "invalid", f"not in the services catalogue: {', '.join(c[:8] for c in unknown)}"
                )
            before = sorted(
                await session.scalars(
                    select(SubscriptionRow.application).where(SubscriptionRow.quality_id == row.id)
                )
            )
            wanted = tuple(sorted(set(codes)))
            await session.execute(
                delete(SubscriptionRow).where(SubscriptionRow.quality_id == row.id)
            )
            for code in wanted:
                session.add(SubscriptionRow(quality_id=row.id, application=code))
            await self._audit(
                session,
                actor=actor,
                action="structured.services",
                target=str(quality),
                before={"services": before},
                after={"services": list(wanted)},
            )
            return wanted

        return await self._write(body)

    async def overview(self, *, actor: str | None, quality: QualityRef) -> Overview | Refusal:
        """The overview of the configuration data, sender number included."""

        async def body(session: AsyncSession) -> Overview:
            enterprise, row = await self._quality(session, quality)
            await self._require(session, actor, Action.view, enterprise, row)
            now = self.clock()
            tech = await self._technical(session, row.id)
            technical: dict[str, str] | None = None
            if tech is not None:
                person = (
                    await session.execute(select(PersonRow).where(PersonRow.id == tech.person_id))
                ).scalar_one()
                technical = {
                    "login": tech.login,
                    "name": person.name,
                    "email": person.email,
                    "phone": person.phone,
                    "language": person.language,
                    "status": tech.status,
                }
            channels = []
            for ch in await session.scalars(
                select(ChannelRow).where(ChannelRow.quality_id == row.id).order_by(ChannelRow.kind)
            ):
                entries: list[str] = json.loads(ch.allowed_networks)
                keys = await session.scalars(
                    select(SshKeyRow.sha256)
                    .where(SshKeyRow.channel_id == ch.id)
                    .order_by(SshKeyRow.id)
                )
                channels.append(
                    ChannelView(
                        kind=ChannelKind(ch.kind),
                        ssh_keys=tuple(keys),
                        password_set=ch.password_hash is not None,
                        allowed_networks=tuple(entries),
                        networks=tuple(self.networks.describe(entries)),
                        client_certificate_sha256=ch.client_cert_sha256,
                        client_certificate_warning=_client_warning(ch.client_cert_der, now),
                    )
                )
            certs = await session.scalars(
                select(SigningCertificateRow)
                .where(SigningCertificateRow.quality_id == row.id)
                .order_by(SigningCertificateRow.id)
            )
            services = await session.scalars(
                select(SubscriptionRow.application)
                .where(SubscriptionRow.quality_id == row.id)
                .order_by(SubscriptionRow.application)
            )
            sender = await self._sender(session, row.id)
            return Overview(
                enterprise=enterprise.kbo,
                enterprise_name=enterprise.name,
                quality=row.kind,
                configuration_saved=row.structured_saved,
                technical_user=technical,
                channels=tuple(channels),
                certificates=tuple(
                    CertificateView(
                        subject=c.subject,
                        sha256=c.sha256,
                        not_after=iso(c.not_after),
                        warning=expiry_warning(c.not_after, now),
                    )
                    for c in certs
                ),
                services=tuple(services),
                sender=SenderNumber(sender) if sender is not None else None,
            )

        return await self._read(body)

    async def registered_certificates(self) -> tuple[list[datetime], list[bytes]]:
        """Every registered signing certificate's expiry, and every channel client
        certificate (DER, parsed by the caller off the event loop): what the expiry metrics
        (:mod:`gateway.registry.expiry`) watch."""

        async with self._sessions() as session, session.begin():
            signing = await session.scalars(select(SigningCertificateRow.not_after))
            clients = await session.scalars(
                select(ChannelRow.client_cert_der).where(ChannelRow.client_cert_der.is_not(None))
            )
            return list(signing), [d for d in clients if d]


def _client_warning(der: bytes | None, now: datetime) -> str | None:
    info = load_certificate(der) if der is not None else None
    return expiry_warning(info.not_after, now) if info is not None else None


def _key(text: str) -> SshKey:
    parsed = parse_ssh_key(text)
    if isinstance(parsed, Refusal):
        raise Refused(parsed)
    return parsed


def _network(text: str) -> str:
    parsed = check_network(text)
    if isinstance(parsed, Refusal):
        raise Refused(parsed)
    return parsed
