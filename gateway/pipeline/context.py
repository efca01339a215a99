"""What every step of the pipeline needs, built once by :class:`gateway.pipeline.Pipeline`.

One frozen value instead of a state bag: the settings pieces, the store, the signer, the clock,
the trust store, the catalogue, and the on-disk layout (spool, work, archive, OUT).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from gateway.core.signature import SignaturePolicy, TrustStore
from gateway.core.types import SenderNumber
from gateway.ops.metrics import Metrics
from gateway.ops.settings import LimitSettings, PipelineSettings
from gateway.pipeline.acks import GatewaySigner
from gateway.pipeline.faults import Faults
from gateway.pipeline.flush import GroupFlush
from gateway.pipeline.routing import Destination, DestinationError, parse_destination
from gateway.pipeline.store import SetStore
from gateway.pipeline.turns import Turns
from gateway.registry.catalogue import PartsRule, ServiceCatalogue
from gateway.registry.instant import as_utc
from gateway.registry.types import SenderProfile
from gateway.spool.layout import SpoolLayout

Clock = Callable[[], datetime]
P = ParamSpec("P")
T = TypeVar("T")


class SenderDirectory(Protocol):
    """The registry's side the pipeline uses (``gateway.registry.Registry`` satisfies it)."""

    async def sender_profile(self, sender: SenderNumber) -> SenderProfile | None:
        """The sender's enterprise, subscriptions and registered signing certificates."""
        ...


PROFILE_TTL_SECONDS = 2.0
"""How long a sender profile is reused: a changed subscription or certificate counts within it."""


class ProfileCache:
    """Sender profiles for a couple of seconds: a burst of sets costs one registry lookup.

    Sets of one sender that miss the cache together share one lookup (the first one's), instead
    of each running the registry's queries.
    """

    def __init__(self, registry: SenderDirectory, ttl: float = PROFILE_TTL_SECONDS) -> None:
        self._registry = registry
        self._ttl = ttl
        self._entries: dict[str, tuple[float, SenderProfile | None]] = {}
        self._loading: dict[str, asyncio.Future[SenderProfile | None]] = {}

    async def get(self, sender: SenderNumber) -> SenderProfile | None:
        """The sender's profile, fresh to within the TTL."""
        now = time.monotonic()
        cached = self._entries.get(sender)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        loading = self._loading.get(sender)
        if loading is not None:
            with contextlib.suppress(_LookupCancelled):
                return await _shared(loading)
            # The lookup we waited for was cancelled (its set is stopping): look up ourselves.
        future: asyncio.Future[SenderProfile | None] = asyncio.get_running_loop().create_future()
        self._loading[sender] = future
        try:
            profile = await self._registry.sender_profile(sender)
        except asyncio.CancelledError:
            future.set_exception(_LookupCancelled())
            future.exception()  # retrieved: waiters get it through their shield
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            if self._loading.get(sender) is future:
                del self._loading[sender]
        future.set_result(profile)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[sender] = (now, profile)
        return profile


class _LookupCancelled(Exception):
    """Internal: the shared profile lookup was cancelled; a waiter looks up on its own."""


async def _shared(future: asyncio.Future[SenderProfile | None]) -> SenderProfile | None:
    # Shielded: a waiter that is cancelled must not cancel the lookup the others wait for.
    return await asyncio.shield(future)


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Shared, immutable dependencies of the pipeline's steps."""

    settings: PipelineSettings
    limits: LimitSettings
    policy: SignaturePolicy
    store: SetStore
    registry: SenderDirectory
    layout: SpoolLayout
    clock: Clock
    signer: GatewaySigner
    trust: TrustStore
    catalogue: ServiceCatalogue
    metrics: Metrics | None
    faults: Faults
    ssl_context: ssl.SSLContext | None
    allowed_urls: frozenset[str]
    profiles: ProfileCache
    executor: ThreadPoolExecutor
    parted: PartsRule
    """Whether names of an application carry the parts suffix (catalogue, else default)."""
    zone: tzinfo
    """The calendar of dates in file names (``pipeline.timezone``): stored times stay UTC."""
    single_node: bool
    """This process alone works on the database and spool (SQLite, unless a test says
    otherwise): at start it takes back every claim, and the spool's start-up recovery, with no
    grace, runs before anything is served."""
    turns: Turns = field(default_factory=Turns)
    """The sets in flight, which commit together (:mod:`.turns`)."""
    flush: GroupFlush = field(default_factory=GroupFlush)
    """One filesystem sync for the sets that wait for one (:mod:`.flush`)."""
    _destinations: dict[str, Destination | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Each application's destination once parsed (the catalogue does not change under a
    context; ``dataclasses.replace`` starts a new one)."""

    def now(self) -> datetime:
        """The clock's instant in UTC (what the pipeline stores and logs)."""
        return as_utc(self.clock())

    def local(self, moment: datetime) -> datetime:
        """``moment`` on the wall clock of the gateway's zone (ACRF date and hour, ZIP times)."""
        return moment.astimezone(self.zone)

    def day(self, moment: datetime) -> date:
        """The calendar date of ``moment`` in the gateway's zone: the date a sender writes in a
        name at that moment, and the date of the return files made then."""
        return self.local(moment).date()

    async def blocking(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking work (files, fsync, signatures, HTTP) on the pipeline's own threads.

        Not the loop's default executor: the spool and the channels fill that one with uploads
        that wait for the database, and the pipeline must not queue behind them.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def profile(self, sender: SenderNumber) -> SenderProfile | None:
        """The sender's profile (cached for a couple of seconds)."""
        return await self.profiles.get(sender)

    @property
    def state_dir(self) -> Path:
        """The state directory."""
        return self.layout.state_dir

    def work_dir(self, ticket: str) -> Path:
        """Where a set's files live between intake and archive/removal."""
        return self.layout.state_dir.joinpath("work", ticket)  # one join: a set asks often

    def archive_dir(self, sender: str, ticket: str) -> Path:
        """Where an accepted set's files are kept for ``archive_retention``."""
        return self.layout.state_dir.joinpath("archive", sender, ticket)

    def destination(self, application: str) -> Destination | None:
        """The routing destination of ``application``; None when it has none (or a bad one).
        Parsed once per context: a set asks for it several times (batchable, its accepted
        step, its delivery)."""
        if application not in self._destinations:
            self._destinations[application] = self._parse_destination(application)
        return self._destinations[application]

    def _parse_destination(self, application: str) -> Destination | None:
        entry = self.catalogue.get(application)
        if entry is None:
            return None
        try:
            return parse_destination(entry.destination, state_dir=self.layout.state_dir)
        except DestinationError:
            return None


def declared_urls(catalogue: ServiceCatalogue) -> frozenset[str]:
    """Every https URL the catalogue declares: the only hosts the pipeline may contact."""
    urls = set()
    for entry in catalogue:
        if entry.destination.get("kind") == "https":
            url = entry.destination.get("url")
            if isinstance(url, str):
                urls.add(url)
    return frozenset(urls)
