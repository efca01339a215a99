"""Certificate expiry as metrics: how many certificates expire within 30 days, and when the
first of each kind does.

A sender whose signing certificate expires gets 902 for every set from that day; a channel
client certificate that expires locks its FTPS or HTTPS client out; the gateway's own
acknowledgement certificate expiring makes every ACRF unverifiable. The console's overview warns
the sender's managers (``registry.structured.expiry_warning``); operators get the same facts as
``gateway_certificates_expiring{kind}`` and
``gateway_certificate_next_expiry_timestamp_seconds{kind}``, refreshed at start and every hour by
:func:`watch_certificate_expiry` (a daemon task), so an alert can fire weeks ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError

from gateway.core.trust import load_certificate
from gateway.ops.metrics import Metrics

log = structlog.get_logger("gateway.registry")

WINDOW = timedelta(days=30)
INTERVAL_SECONDS = 3600.0
KINDS = ("signing", "client", "gateway")


class CertificateSource(Protocol):
    """What the watcher reads: the registry's registered certificates."""

    async def registered_certificates(self) -> tuple[list[datetime], list[bytes]]:
        """Signing certificates' expiries, and channel client certificates (DER)."""


@dataclass(frozen=True, slots=True)
class Expiry:
    """One kind's figures: certificates expiring within the window (or expired), the first."""

    expiring: int
    first: datetime | None


def summarize(
    expiries: Mapping[str, Iterable[datetime]], now: datetime, window: timedelta = WINDOW
) -> dict[str, Expiry]:
    """Each kind's :class:`Expiry` as of ``now``."""
    summary: dict[str, Expiry] = {}
    for kind, moments in expiries.items():
        ordered = sorted(moments)
        expiring = sum(1 for moment in ordered if moment - now <= window)
        summary[kind] = Expiry(expiring=expiring, first=ordered[0] if ordered else None)
    return summary


def _client_expiries(ders: list[bytes]) -> list[datetime]:
    """The expiry of each readable client certificate (blocking: parses DER)."""
    infos = (load_certificate(der) for der in ders)
    return [info.not_after for info in infos if info is not None]


def publish(metrics: Metrics, summary: Mapping[str, Expiry]) -> None:
    """Set the two gauges from ``summary``; a kind with no certificate has no expiry sample."""
    for kind, figures in summary.items():
        metrics.certificates_expiring.labels(kind=kind).set(figures.expiring)
        if figures.first is None:
            with contextlib.suppress(KeyError):  # no sample yet
                metrics.certificate_next_expiry.remove(kind)
        else:
            metrics.certificate_next_expiry.labels(kind=kind).set(figures.first.timestamp())


async def refresh(
    source: CertificateSource,
    metrics: Metrics,
    *,
    gateway_not_after: datetime,
    now: datetime,
) -> dict[str, Expiry]:
    """Read the registered certificates, summarise them with the gateway's own, publish."""
    signing, client_ders = await source.registered_certificates()
    clients = await asyncio.to_thread(_client_expiries, client_ders)
    summary = summarize(
        {"signing": signing, "client": clients, "gateway": [gateway_not_after]}, now
    )
    publish(metrics, summary)
    soon = {kind: figures.expiring for kind, figures in summary.items() if figures.expiring}
    if soon:
        log.warning("certificates.expiring", within_days=WINDOW.days, **soon)
    return summary


async def watch_certificate_expiry(
    source: CertificateSource,
    metrics: Metrics,
    *,
    gateway_not_after: datetime,
    clock: Callable[[], datetime],
    interval: float = INTERVAL_SECONDS,
) -> None:
    """Refresh the expiry metrics now and every ``interval`` seconds, until cancelled; a
    database fault is logged and the next round tries again."""
    while True:
        try:
            await refresh(source, metrics, gateway_not_after=gateway_not_after, now=clock())
        except (SQLAlchemyError, OSError) as exc:
            log.error("certificates.expiry_unread", error=f"{type(exc).__name__}: {exc}"[:300])
        await asyncio.sleep(interval)
