"""Notifications back: an online service's answer placed in a sender's OUT folder, signed.

``gateway publish`` calls :func:`publish_notification`; the web service's service API (``POST
/v1/services/{application}/notifications``) calls :func:`post_notification`. Both name the files
(``FO.<KIND>.<gateway sender>.<date>.<seq>.<ENV>``, the sequence shared with ACRFs, so unique per
recipient, date and environment), sign the content with the gateway key and place FO + FS + GO.
Content above ``compress_above`` bytes goes as ``CO.…`` instead: a ZIP holding one entry named
like the FO (domain/batch-channel.md §2.3). The FS then signs the ZIP, the bytes the sender gets.

A posted notification is idempotent on (application, the key the service sent): the first
request reserves a ``notifications`` row holding the names before anything is written, places
the files, then records them and marks the row placed in one commit. A retry with the same key
and the same request (sender, environment, kind, content) answers the same names and places
nothing new; a crash between the reservation and the mark is mended by the retry, which places
the reserved names (the same files: the same sequence number never names anything else). The
same key with another request is refused with 928, so a service's bug cannot silently drop a
notification.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
from gateway.core.names import Environment
from gateway.core.receipts import format_sequence
from gateway.core.types import SenderNumber
from gateway.pipeline.acks import ReturnNames, place_return_set, return_names, zip_one
from gateway.pipeline.context import Context
from gateway.pipeline.records import ReturnFileValues
from gateway.registry.types import SenderProfile

log = structlog.get_logger("gateway.pipeline")

_APPLICATION = re.compile(r"[A-Z]{4}")
_SENDER = re.compile(r"[0-9]{6}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """What :func:`publish_notification` placed."""

    sender: str
    folder: str
    names: tuple[str, str, str]
    compressed: bool
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PostedNotification:
    """What :func:`post_notification` placed, now or for an earlier request with the same key
    (``replayed``). ``size`` and ``sha256`` are the content's, as the service sent it."""

    application: str
    kind: str
    sender: str
    environment: str
    folder: str
    names: tuple[str, str, str]
    compressed: bool
    size: int
    sha256: str
    idempotency_key: str
    replayed: bool

    def as_json(self) -> dict[str, Any]:
        """The web service's answer body."""
        return {
            "application": self.application,
            "kind": self.kind,
            "sender": self.sender,
            "environment": self.environment,
            "folder": self.folder,
            "files": list(self.names),
            "compressed": self.compressed,
            "size": self.size,
            "sha256": self.sha256,
            "idempotency_key": self.idempotency_key,
            "replayed": self.replayed,
        }


async def _recipient(ctx: Context, sender: str, kind: str) -> SenderProfile | Rejection:
    """The profile of ``sender``, to whom a notification of ``kind`` may go, or why not."""
    if not _SENDER.fullmatch(sender):
        return reject(Code.SENDER_NOT_OWNER, "sender number must be 6 digits")
    if not _APPLICATION.fullmatch(kind):
        return reject(Code.NAME_PREFIX_INVALID, "application code must be 4 upper-case letters")
    profile = await ctx.registry.sender_profile(SenderNumber(sender))
    if profile is None:
        return reject(Code.SENDER_NOT_OWNER, f"sender {sender} is not registered")
    return profile


async def _allocate(
    ctx: Context, sender: str, environment: Environment, kind: str, at: datetime, compressed: bool
) -> ReturnNames:
    """The next return names for ``sender`` on ``at``'s day in the gateway's calendar."""
    day = ctx.local(at).date()
    number = await ctx.store.next_sequence(sender, day, str(environment))
    return return_names(
        application=kind,
        gateway_sender=ctx.settings.gateway_sender,
        day=day,
        sequence=format_sequence(number),
        environment=environment,
        compressed=compressed,
    )


async def _place(
    ctx: Context, *, sender: str, folder: Folder, names: ReturnNames, content: bytes, at: datetime
) -> int:
    """Write the set (the ZIP of ``content`` for a CO), signed as of ``at``; returns its size."""
    data = content
    if names.main.startswith("CO."):
        data = zip_one("FO." + names.main[3:], content, at=ctx.local(at))
    await ctx.blocking(
        place_return_set,
        ctx.layout,
        sender=sender,
        folder=folder,
        names=names,
        content=data,
        signer=ctx.signer,
        signed_at=at,
    )
    return len(data)


def _return_rows(
    sender: str, folder: Folder, names: ReturnNames, at: datetime
) -> list[ReturnFileValues]:
    return [
        {
            "sender": sender,
            "folder": folder.value,
            "name": name,
            "kind": "noti",
            "ticket": None,
            "subject": names.main,
            "code": None,
            "written_at": at,
            "purged_at": None,
        }
        for name in names.all()
    ]


async def publish_notification(
    ctx: Context,
    *,
    sender: str,
    environment: Environment,
    application: str,
    content: bytes,
) -> Published | Rejection:
    """Place a notification for ``sender``; a Rejection when the sender or code is not valid."""
    recipient = await _recipient(ctx, sender, application)
    if isinstance(recipient, Rejection):
        return recipient
    now = ctx.now()  # stored times are UTC
    compressed = len(content) > ctx.settings.compress_above
    names = await _allocate(ctx, sender, environment, application, now, compressed)
    folder = Folder.outbound(environment)
    size = await _place(ctx, sender=sender, folder=folder, names=names, content=content, at=now)
    await ctx.store.record_return_files(_return_rows(sender, folder, names, now))
    log.info(
        "notification.published",
        sender=sender,
        folder=folder.value,
        name=names.main,
        bytes=len(content),
        compressed=compressed,
    )
    return Published(
        sender=sender, folder=folder.value, names=names.all(), compressed=compressed, size=size
    )


def request_digest(sender: str, environment: Environment, kind: str, content_sha: str) -> str:
    """What a retry must repeat exactly: the request, less its key and application."""
    return hashlib.sha256(f"{sender}\0{environment}\0{kind}\0{content_sha}".encode()).hexdigest()


async def post_notification(
    ctx: Context,
    *,
    client: str,
    application: str,
    idempotency_key: str,
    sender: str,
    environment: Environment,
    kind: str,
    content: bytes,
) -> PostedNotification | Rejection:
    """Place a notification an online service posted for ``application`` (the caller checked
    that the service may post for it), once per ``idempotency_key`` (see the module)."""
    profile = await _recipient(ctx, sender, kind)
    if isinstance(profile, Rejection):
        return profile
    if application not in profile.applications:
        return reject(
            Code.APPLICATION_NOT_ALLOWED,
            f"sender {sender} is not subscribed to the online service {application}",
        )
    content_sha = hashlib.sha256(content).hexdigest()
    digest = request_digest(sender, environment, kind, content_sha)
    folder = Folder.outbound(environment)
    row = await ctx.store.notification(application, idempotency_key)
    if row is None:  # a new key: names first, reserved with the key before anything is written
        now = ctx.now()
        compressed = len(content) > ctx.settings.compress_above
        names = await _allocate(ctx, sender, environment, kind, now, compressed)
        row = await ctx.store.reserve_notification(
            {
                "application": application,
                "idempotency_key": idempotency_key,
                "request_sha256": digest,
                "client": client,
                "sender": sender,
                "environment": str(environment),
                "kind": kind,
                "folder": folder.value,
                "main_name": names.main,
                "signature_name": names.fs,
                "go_name": names.go,
                "compressed": compressed,
                "size": len(content),
                "content_sha256": content_sha,
                "created_at": now,
                "placed_at": None,
            }
        )  # a concurrent request with the same key may have won: its row is returned
    if row.request_sha256 != digest:
        log.info("notification.key_reused", application=application, key=idempotency_key)
        return reject(
            Code.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used for another notification: use a new key",
        )
    names = ReturnNames(main=row.main_name, fs=row.signature_name, go=row.go_name)
    replayed = row.placed_at is not None
    if not replayed:  # new, or reserved by a request that did not finish: place the names
        created = row.created_at
        await _place(ctx, sender=sender, folder=folder, names=names, content=content, at=created)
        await ctx.store.notification_placed(
            row.id, ctx.now(), _return_rows(sender, folder, names, created)
        )
    log.info(
        "notification.posted",
        application=application,
        client=client[:16],
        sender=sender,
        folder=folder.value,
        name=names.main,
        bytes=len(content),
        compressed=bool(row.compressed),
        replayed=replayed,
    )
    return PostedNotification(
        application=application,
        kind=kind,
        sender=sender,
        environment=str(environment),
        folder=folder.value,
        names=names.all(),
        compressed=bool(row.compressed),
        size=len(content),
        sha256=content_sha,
        idempotency_key=idempotency_key,
        replayed=replayed,
    )
