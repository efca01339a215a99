"""One sync for every set that waits for one: the pipeline's file durability.

Why: a set's files (its delivery, its ACRF's three files, its archive) used to be made durable
one by one as they were written, an fsync per file and per directory in order: about a dozen per
set, each waited for alone. Now a set writes its new files under names nobody reads (a
dot-directory, dot-names), waits for a sync of their data, renames them into place, and waits
for a sync of the directories it touched before its commit. The sets in hand wait together
(:mod:`.turns`), and :class:`GroupFlush` turns the requests that arrive together into one hop
that syncs each file's data (``fdatasync``) and each directory once, runs each set's renames,
then syncs each directory they touched once, whatever the number of sets that named it (the
deliveries' folder, ``work/``, an archive folder).

By default each file and directory is synced on its own (in parallel); ``state_sync =
"filesystem"`` makes each of the two syncs one ``syncfs`` instead, for a state directory on a
filesystem of its own (:mod:`gateway.spool.durable` says why and what it costs).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gateway.spool.durable import StateSync, make_durable, resolved


def sync_paths(
    files: Iterable[str | Path],
    directories: Iterable[str | Path],
    pool: Executor | None = None,
    mode: StateSync = StateSync.FILES,
) -> None:
    """Make ``files`` (their data) and ``directories`` (their entries) durable (blocking): an
    ``fdatasync`` per file and ``fsync`` per directory, at once on ``pool``'s threads so the
    filesystem's journal commits them together; or one ``syncfs`` per filesystem
    (``state_sync = "filesystem"``, :mod:`gateway.spool.durable`)."""
    make_durable(list(files), list(directories), mode=mode, pool=pool)


Run = Callable[..., Awaitable[list[BaseException | None]]]
"""Runs a blocking function with its arguments on the pipeline's threads (``Context.blocking``)."""


@dataclass(slots=True)
class _Request:
    """One set's part of a flush: what it renames once its files are durable, and the
    directories those renames touch."""

    then: Callable[[], None] | None
    after: tuple[Path, ...]
    future: asyncio.Future[None]


class GroupFlush:
    """Coalesces the sync requests that arrive together into one blocking call."""

    def __init__(self, mode: StateSync = StateSync.FILES) -> None:
        self.mode = resolved(mode)
        self._files: set[Path] = set()
        self._directories: set[Path] = set()
        self._requests: list[_Request] = []
        self._next: asyncio.Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.flushes = 0
        """Blocking syncs run so far (for tests and benches)."""

    def pool(self) -> ThreadPoolExecutor | None:
        """The threads that sync files at once (made on first use; none in filesystem mode)."""
        if self.mode is not StateSync.FILES:
            return None
        with self._pool_lock:  # the batch path asks from its own threads
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pipeline-sync")
            return self._pool

    def sync_now(self, files: Iterable[str | Path], directories: Iterable[str | Path]) -> None:
        """Make ``files`` and ``directories`` durable now (blocking, from any thread): the syncs
        of a batch that runs its sets' file work in one hop (:mod:`.batch`)."""
        self.flushes += 1
        sync_paths(files, directories, self.pool(), self.mode)

    def close(self) -> None:
        """Release the sync threads (the next flush makes them again)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    async def __call__(
        self,
        run: Run,
        *,
        files: Iterable[Path] = (),
        directories: Iterable[Path] = (),
        then: Callable[[], None] | None = None,
        after: Iterable[Path] = (),
    ) -> None:
        """Make ``files`` (their data) and ``directories`` (their entries) durable, then run
        ``then`` (the renames that publish them) and make the directories ``after`` durable,
        in one hop shared with the other requests that arrive together. Raises what ``then``
        raised (for this request only) or what a sync raised (for all)."""
        self._files.update(files)
        self._directories.update(directories)
        mine = _Request(then, tuple(after), asyncio.get_running_loop().create_future())
        self._requests.append(mine)
        if self._next is None:
            # Its own task: a caller that is cancelled does not cancel the others' flush.
            self._next = asyncio.ensure_future(self._flush(run))
            self._next.add_done_callback(_retrieved)
        await asyncio.shield(mine.future)

    async def _flush(self, run: Run) -> None:
        await asyncio.sleep(0)  # the sets released together add theirs first
        self._next = None
        files, self._files = sorted(self._files), set()
        directories, self._directories = sorted(self._directories), set()
        requests, self._requests = self._requests, []
        self.flushes += 1
        try:
            errors = await run(_flush_paths, files, directories, requests, self.pool(), self.mode)
        except BaseException as exc:
            for request in requests:
                _settle(request.future, exc)
            raise
        for request, error in zip(requests, errors, strict=True):
            _settle(request.future, error)


def _flush_paths(
    files: list[Path],
    directories: list[Path],
    requests: list[_Request],
    pool: Executor | None,
    mode: StateSync,
) -> list[BaseException | None]:
    """Sync, publish each request (its failure is its own), sync what the renames touched."""
    sync_paths(files, directories, pool, mode)
    errors: list[BaseException | None] = []
    for request in requests:
        try:
            if request.then is not None:
                request.then()
        except Exception as exc:
            errors.append(exc)
        else:
            errors.append(None)
    touched = {d for r, e in zip(requests, errors, strict=True) if e is None for d in r.after}
    sync_paths([], sorted(touched), pool, mode)
    return errors


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
        future.exception()  # retrieved: a caller cancelled meanwhile does not leave it unread


def _retrieved(future: asyncio.Future[None]) -> None:
    # Every caller may have been cancelled meanwhile: the outcome is read here too.
    if not future.cancelled():
        future.exception()
