"""The spool's storage boundary: the writes and the free-space probe every upload goes through.

Why a boundary: a full disk must be answered (929, SECURITY.md 22), and tests must be able to
show it without filling a disk. Every byte of an upload is written by :attr:`Disk.write` (in
the spool's threads), and the free-space floor reads :attr:`Disk.free_space`; a test passes a
:class:`Disk` whose write raises ENOSPC, or whose probe reports little space.

:attr:`Disk.write` is a gathered write (``os.writev``): an upload's chunk arrives as the SFTP
client's 32 KiB writes and goes to disk as they are, in one call, without first being joined
into one buffer (a fresh 1 MiB buffer per chunk cost its copy and a page fault per 4 KiB).

:attr:`Disk.writeback` starts writing a file's dirty pages to disk without waiting for them
(``sync_file_range(2)``, as PostgreSQL's ``*_flush_after`` settings do), after each chunk of a
large upload. Without it the kernel keeps up to ``dirty_background_ratio`` of memory dirty (2.4
GB on a 24 GB machine), so a large upload's close (its fsync) waited for the whole file to be
written: the disk's time for 256 MiB, at the end of the transfer, while the client waits.
"""

from __future__ import annotations

import contextlib
import ctypes
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

# sync_file_range(2)'s flag: start writing the range's dirty pages, do not wait (linux/fs.h).
SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux; the os module has none), or None."""
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
        function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        function.restype = ctypes.c_int
        return function
    return None


_SYNC_FILE_RANGE = _sync_file_range()


def start_writeback(fd: int) -> None:
    """Start writing ``fd``'s dirty pages to disk, without waiting for them. Advisory: where
    there is no ``sync_file_range``, or it fails (its -1 is ignored), nothing changes but the
    wait at the fsync that makes the file durable."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, SYNC_FILE_RANGE_WRITE)  # offset 0, length 0: the whole file


@dataclass(frozen=True, slots=True, kw_only=True)
class Disk:
    """The calls the spool makes to store bytes and to look at free space."""

    write: Write = os.writev
    free_space: Callable[[Path], FreeSpace] = statvfs_space
    writeback: Callable[[int], None] = start_writeback

    def write_all(self, fd: int, chunks: Sequence[bytes | memoryview]) -> None:
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

    def write_chunk(self, fd: int, chunks: Sequence[bytes | memoryview]) -> None:
        """:meth:`write_all`, then start the file's writeback: a large upload's chunk."""
        self.write_all(fd, chunks)
        self.writeback(fd)


REAL_DISK = Disk()
