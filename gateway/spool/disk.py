"""The spool's storage boundary: the writes and the free-space probe every upload goes through.

Why a boundary: a full disk must be answered (929, SECURITY.md 22), and tests must be able to
show it without filling a disk. Every byte of an upload is written by :attr:`Disk.write` (in
the spool's threads), and the free-space floor reads :attr:`Disk.free_space`; a test passes a
:class:`Disk` whose write raises ENOSPC, or whose probe reports little space.

:attr:`Disk.write` is a gathered write (``os.writev``): an upload's chunk arrives as the SFTP
client's 32 KiB writes and goes to disk as they are, in one call, without first being joined
into one buffer (a fresh 1 MiB buffer per chunk cost its copy and a page fault per 4 KiB).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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


Write = Callable[[int, Sequence[memoryview]], int]
"""``os.writev``'s contract: write the buffers' bytes in order; return how many were written."""

# Buffers one gathered write takes at most (the kernel's limit: 1,024 on Linux).
IOV_MAX = os.sysconf("SC_IOV_MAX")


@dataclass(frozen=True, slots=True, kw_only=True)
class Disk:
    """The calls the spool makes to store bytes and to look at free space."""

    write: Write = os.writev
    free_space: Callable[[Path], FreeSpace] = statvfs_space

    def write_all(self, fd: int, chunks: Sequence[bytes]) -> None:
        """Write every byte of ``chunks`` to ``fd``, in order: one gathered write per
        ``IOV_MAX`` chunks, and again from where a short write stopped."""
        views = [memoryview(chunk).cast("B") for chunk in chunks if chunk]
        start = 0
        while start < len(views):
            written = self.write(fd, views[start : start + IOV_MAX])
            while written > 0:
                size = len(views[start])
                if written < size:
                    views[start] = views[start][written:]
                    break
                written -= size
                start += 1


REAL_DISK = Disk()
