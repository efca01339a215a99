"""A sender's pending-bytes quota (920), reserved as bytes are written.

Why: checking the quota against a figure read when an upload opens let every upload of a burst
pass (32 parallel 1 MiB uploads committed against a 3 MiB quota, SECURITY.md 21). Here every
write reserves its bytes first, against

    pending bytes (committed, not yet taken by the pipeline) + bytes reserved in flight,

and is refused (920) when that would pass the quota. The figure is one per sender for the
whole node (every session and channel shares the :class:`Quota` of the one spool), and the
check and the reservation happen with no ``await`` between them, so on one node no interleaving
of uploads commits more than the quota.

Reservations live until the upload ends: committed (the bytes move from reserved to pending),
aborted or refused (released). An upload parked under a client temporary name keeps its
reservation until its rename commits it or the session drops it: it holds disk space too.

The pending figure is read from the database when it is older than ``max_age`` seconds, and
again before any refusal (the pipeline may have taken files since), so a burst near the quota
costs one query per refused write, not one per write. Commits on this node while a read is in
flight are added to what it returns (a row the read saw is then counted twice until the next
read: conservative, never an overshoot).

Several nodes (PostgreSQL): each node holds its own reservations; the pending figure is shared
through the database, and each commit checks the committed total under a per-sender lock
(:meth:`gateway.spool.Spool.store` on PostgreSQL), so committed pending bytes never pass the
quota across nodes either. What a node cannot see is another node's uploads still in flight:
two nodes may both let a sender stream up to the quota, and the later commit is refused at its
close (920) instead of at a write.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.core.codes import Code, Rejection, reject
from gateway.core.types import SenderNumber

# A sender's pending bytes are re-read from the database at most this often (other nodes and
# the pipeline change them), and always before a refusal.
PENDING_MAX_AGE_SECONDS = 5.0
# Senders whose figures are kept; past it, those with nothing in flight are forgotten.
MAX_SENDERS = 10_000

ReadPending = Callable[[SenderNumber], Awaitable[int]]


@dataclass(slots=True)
class _Figures:
    """One sender's figures on this node."""

    pending: int = 0
    reserved: int = 0
    read_at: float | None = None
    committed: int = 0  # bytes committed here since start (to correct a read in flight)
    reading: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaStatistics:
    """One sender's figures, for tests and introspection."""

    pending: int
    reserved: int


class Quota:
    """Pending bytes plus reservations per sender, for one node."""

    def __init__(
        self,
        *,
        limit: int,
        read_pending: ReadPending,
        max_age: float = PENDING_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._read_pending = read_pending
        self._max_age = max_age
        self._clock = clock
        self._senders: dict[str, _Figures] = {}

    def statistics(self, sender: SenderNumber) -> QuotaStatistics:
        """What this node counts for ``sender`` now."""
        figures = self._senders.get(sender, _Figures())
        return QuotaStatistics(pending=figures.pending, reserved=figures.reserved)

    def _figures(self, sender: SenderNumber) -> _Figures:
        figures = self._senders.get(sender)
        if figures is None:
            if len(self._senders) >= MAX_SENDERS:
                self._senders = {s: f for s, f in self._senders.items() if f.reserved or f.reading}
            figures = self._senders[sender] = _Figures()
        return figures

    def _fresh(self, figures: _Figures) -> bool:
        return figures.read_at is not None and self._clock() - figures.read_at < self._max_age

    async def _read(self, sender: SenderNumber, figures: _Figures) -> None:
        before = figures.committed
        figures.reading += 1
        try:
            value = await self._read_pending(sender)
        finally:
            figures.reading -= 1
        figures.pending = value + (figures.committed - before)
        figures.read_at = self._clock()

    async def admit(self, sender: SenderNumber) -> Rejection | None:
        """Refuse a new upload at once when pending and reserved bytes fill the quota."""
        figures = self._figures(sender)
        if not self._fresh(figures) or figures.pending + figures.reserved >= self.limit:
            await self._read(sender, figures)
        held = figures.pending + figures.reserved
        if held >= self.limit:
            return reject(
                Code.QUOTA_EXCEEDED,
                f"pending and incoming files already hold {held} bytes, the quota is "
                f"{self.limit}; wait until they are processed",
            )
        return None

    async def reserve(self, sender: SenderNumber, size: int) -> Rejection | None:
        """Reserve ``size`` more bytes for ``sender``, or refuse (920) and reserve nothing."""
        figures = self._figures(sender)
        if self._fresh(figures) and figures.pending + figures.reserved + size <= self.limit:
            figures.reserved += size  # the common case: no await between check and reservation
            return None
        await self._read(sender, figures)
        # Decided after the read with no further await: atomic on this node's event loop.
        if figures.pending + figures.reserved + size > self.limit:
            return reject(
                Code.QUOTA_EXCEEDED,
                f"pending and incoming files would exceed the quota of {self.limit} bytes",
            )
        figures.reserved += size
        return None

    def release(self, sender: SenderNumber, size: int, *, uncertain: bool = False) -> None:
        """Give back a reservation (the upload ended without a commit). ``uncertain``: it may
        have been committed all the same (a cancelled commit), so the next check reads."""
        figures = self._figures(sender)
        figures.reserved = max(0, figures.reserved - size)
        if uncertain:
            figures.read_at = None

    def committed(self, sender: SenderNumber, size: int) -> None:
        """A reservation became a committed (pending) upload."""
        figures = self._figures(sender)
        figures.reserved = max(0, figures.reserved - size)
        figures.pending += size
        figures.committed += size

    def changed(self, sender: SenderNumber) -> None:
        """Pending files were removed: read the figure again at the next check."""
        figures = self._senders.get(sender)
        if figures is not None:
            figures.read_at = None
