"""Notifications back: an online service's answer placed in a sender's OUT folder, signed.

``gateway publish`` and the admin API call :func:`publish_notification`: it names the files
(``FO.<APPL>.<gateway sender>.<date>.<seq>.<ENV>``, the sequence shared with ACRFs, so unique per
recipient, date and environment), signs the content with the gateway key and places FO + FS + GO.
Content above ``compress_above`` bytes goes as ``CO.…`` instead: a ZIP holding one entry named
like the FO (domain/batch-channel.md §2.3). The FS then signs the ZIP, the bytes the sender gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC

import structlog

from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder
from gateway.core.names import Environment
from gateway.core.receipts import format_sequence
from gateway.core.types import SenderNumber
from gateway.pipeline.acks import place_return_set, return_names, zip_one
from gateway.pipeline.context import Context

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


async def publish_notification(
    ctx: Context,
    *,
    sender: str,
    environment: Environment,
    application: str,
    content: bytes,
) -> Published | Rejection:
    """Place a notification for ``sender``; a Rejection when the sender or code is not valid."""
    if not _SENDER.fullmatch(sender):
        return reject(Code.SENDER_NOT_OWNER, "sender number must be 6 digits")
    if not _APPLICATION.fullmatch(application):
        return reject(Code.NAME_PREFIX_INVALID, "application code must be 4 upper-case letters")
    profile = await ctx.registry.sender_profile(SenderNumber(sender))
    if profile is None:
        return reject(Code.SENDER_NOT_OWNER, f"sender {sender} is not registered")
    now = ctx.clock().astimezone(UTC)  # stored times are UTC
    local = ctx.local(now)  # names and the ZIP entry time: the gateway's calendar
    number = await ctx.store.next_sequence(sender, local.date(), str(environment))
    compressed = len(content) > ctx.settings.compress_above
    names = return_names(
        application=application,
        gateway_sender=ctx.settings.gateway_sender,
        day=local.date(),
        sequence=format_sequence(number),
        environment=environment,
        compressed=compressed,
    )
    if compressed:
        plain = return_names(
            application=application,
            gateway_sender=ctx.settings.gateway_sender,
            day=local.date(),
            sequence=format_sequence(number),
            environment=environment,
        )
        data = zip_one(plain.main, content, at=local)
    else:
        data = content
    folder = Folder.outbound(environment)
    await ctx.blocking(
        place_return_set,
        ctx.layout,
        sender=sender,
        folder=folder,
        names=names,
        content=data,
        signer=ctx.signer,
        signed_at=now,
    )
    await ctx.store.record_return_files(
        [
            {
                "sender": sender,
                "folder": folder.value,
                "name": name,
                "kind": "noti",
                "ticket": None,
                "subject": names.main,
                "code": None,
                "written_at": now,
                "purged_at": None,
            }
            for name in names.all()
        ]
    )
    log.info(
        "notification.published",
        sender=sender,
        folder=folder.value,
        name=names.main,
        bytes=len(content),
        compressed=compressed,
    )
    return Published(
        sender=sender, folder=folder.value, names=names.all(), compressed=compressed, size=len(data)
    )
