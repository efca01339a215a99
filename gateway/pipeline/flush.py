"""One sync for every set that waits for one: the pipeline's file durability.

Why: a set's files (its delivery, its ACRF's three files, its archive) used to be made durable
one by one as they were written, an fsync per file and per directory in order: about a dozen per
set, each waited for alone. Now a set writes its new files under names nobody reads (a
dot-directory, dot-names), waits for a sync of their data, renames them into place, and waits
for a sync of the directories it touched before its commit. The sets in hand wait together
(:mod:`.turns`), and :class:`GroupFlush` turns the requests that arrive together into one hop
that syncs each file's data (``fdatasync``) and each directory once, whatever the number of
sets that named it (the deliveries' folder, ``work/``, an archive folder).

Not ``syncfs``: it would write back every dirty page of the filesystem, the uploads' too, and
charge this process for them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from gateway.spool.writer import fsync_dir


def sync_paths(files: Iterable[Path], directories: Iterable[Path]) -> None:
    """``fdatasync`` each file, then ``fsync`` each directory (blocking)."""
    for path in files:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
    for directory in directories:
        fsync_dir(directory)


Run = Callable[..., Awaitable[None]]
"""Runs a blocking function with its arguments on the pipeline's threads (``Context.blocking``)."""


class GroupFlush:
    """Coalesces the sync requests that arrive together into one blocking call."""

    def __init__(self) -> None:
        self._files: set[Path] = set()
        self._directories: set[Path] = set()
        self._next: asyncio.Future[None] | None = None
        self.flushes = 0
        """Blocking syncs run so far (for tests and benches)."""

    async def __call__(
        self, run: Run, *, files: Iterable[Path] = (), directories: Iterable[Path] = ()
    ) -> None:
        """Make ``files`` (their data) and ``directories`` (their entries) durable."""
        self._files.update(files)
        self._directories.update(directories)
        if self._next is None:
            # Its own task: a caller that is cancelled does not cancel the others' flush.
            self._next = asyncio.ensure_future(self._flush(run))
            self._next.add_done_callback(_retrieved)
        await asyncio.shield(self._next)

    async def _flush(self, run: Run) -> None:
        await asyncio.sleep(0)  # the sets released together add theirs first
        self._next = None
        files, self._files = sorted(self._files), set()
        directories, self._directories = sorted(self._directories), set()
        self.flushes += 1
        await run(sync_paths, files, directories)


def _retrieved(future: asyncio.Future[None]) -> None:
    # Every caller may have been cancelled meanwhile: the outcome is read here too.
    if not future.cancelled():
        future.exception()
