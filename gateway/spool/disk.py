"""The spool's storage boundary: the writes and the free-space probe every upload goes through.

Why a boundary: a full disk must be answered (929, SECURITY.md 22), and tests must be able to
show it without filling a disk. Every byte of an upload is written by :attr:`Disk.write` (in
the spool's threads), and the free-space floor reads :attr:`Disk.free_space`; a test passes a
:class:`Disk` whose write raises ENOSPC, or whose probe reports little space.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class FreeSpace:
    """What a filesystem has: bytes free to an unprivileged writer, and its size."""

    free: int
    total: int


def statvfs_space(path: Path) -> FreeSpace:
    """The free space of the filesystem holding ``path`` (one ``statvfs``)."""
    info = os.statvfs(path)
    return FreeSpace(free=info.f_bavail * info.f_frsize, total=info.f_blocks * info.f_frsize)


Write = Callable[[int, memoryview], int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Disk:
    """The calls the spool makes to store bytes and to look at free space."""

    write: Write = os.write
    free_space: Callable[[Path], FreeSpace] = statvfs_space

    def write_all(self, fd: int, data: bytes) -> None:
        """Write every byte of ``data`` to ``fd``."""
        view = memoryview(data)
        while view:
            written = self.write(fd, view)
            view = view[written:]


REAL_DISK = Disk()
