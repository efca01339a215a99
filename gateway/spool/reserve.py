"""The space reserve: a preallocated file under the state directory, given up when the disk is
full, so that what frees space can still be written.

Why: with the SQLite registry and the spool on one filesystem, a full disk also stops the
writes that would free it: a sender's removal of a pending upload is a database write, and so
are the ACRF and the records of a set in hand. Mature servers keep ballast for this. The daemon
keeps ``[limits] reserve_bytes`` (default 8 MiB; 0: none) allocated for real
(``posix_fallocate``: blocks taken, not a sparse file) in ``<state_dir>/space-reserve``, 0600.

Rules:

- It is released (unlinked) the first time the spool meets a full filesystem: ENOSPC or EDQUOT
  under an upload's write (the :class:`~gateway.spool.disk.Disk` boundary, wrapped by
  :meth:`SpaceReserve.guarding`), a commit refused for space, or a removal whose database write
  is (that removal is then tried once more). Logged once, critical, ``storage.reserve_released``
  with ``alert=True``; counted in ``gateway_storage_reserve_released_total{cause}``.
- While it is released the spool counts as short of space: new uploads get 929 and ``/readyz``
  503, so the space it gave goes to removals, the registry and the sets in hand, not to the next
  upload.
- The spool's free-space check (each new upload, each ``/readyz``) takes it back
  (``storage.reserve_restored``) once the filesystem has, besides the reserve, the larger of the
  floor and the reserve's size free: taking it back never puts the spool below its floor, and a
  disk that is still nearly full does not release and take it back in turn.
- Writes run in the spool's threads and the check on the event loop: one lock orders them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from gateway.ops.faults import short_of_space
from gateway.ops.metrics import Metrics
from gateway.ops.private import PRIVATE_FILE
from gateway.spool.disk import Disk, FreeSpace

RESERVE_NAME = "space-reserve"

log = structlog.get_logger("gateway.spool.reserve")


def _allocate(path: Path, size: int) -> bool:
    """Make ``path`` a file of ``size`` allocated bytes, 0600; False (and no file) when the
    filesystem has no room for it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    except OSError as exc:  # no inode left is a full disk too
        if short_of_space(exc):
            return False
        raise
    try:
        os.fchmod(fd, PRIVATE_FILE)  # a file left by an older run, whatever its mode
        os.ftruncate(fd, size)  # shorter when the setting was lowered; sparse until allocated
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        if short_of_space(exc):
            return False
        raise
    os.close(fd)
    return True


class SpaceReserve:
    """The reserve file of one state directory: held, released, or off (size 0)."""

    def __init__(self, path: Path, size: int, *, metrics: Metrics | None = None) -> None:
        self.path = path
        self.size = size
        self._metrics = metrics
        self._held = False
        self._lock = threading.Lock()

    @classmethod
    def at_start(
        cls, state_dir: Path, size: int, *, metrics: Metrics | None = None
    ) -> SpaceReserve:
        """The reserve of ``state_dir``, allocated now (blocking: run it in a thread). Size 0
        removes a reserve left by an earlier setting. No room for it: logged, and released."""
        reserve = cls(state_dir / RESERVE_NAME, size, metrics=metrics)
        if size == 0:
            reserve.path.unlink(missing_ok=True)
        elif _allocate(reserve.path, size):
            reserve._held = True
            log.info("storage.reserve_held", path=str(reserve.path), bytes=size)
        else:
            reserve._released("start")
        return reserve

    @property
    def short(self) -> bool:
        """Released and not taken back yet: the spool is short of space."""
        return self.size > 0 and not self._held

    def release(self, cause: str) -> bool:
        """Give the reserve's space back to the filesystem (``cause``: where a full filesystem
        was met); True when it was held until now."""
        with self._lock:
            if not self._held:
                return False
            self._held = False
            self.path.unlink(missing_ok=True)
        self._released(cause)
        return True

    def _released(self, cause: str) -> None:
        log.critical(
            "storage.reserve_released",
            alert=True,
            cause=cause,
            bytes=self.size,
            path=str(self.path),
        )
        if self._metrics is not None:
            self._metrics.storage_reserve_released_total.labels(cause=cause).inc()

    def take_back(self, space: FreeSpace, floor: int) -> bool:
        """While released, allocate the reserve again when ``space`` leaves, besides it, the
        larger of ``floor`` and its size free; whether the spool has its reserve now (True when
        off). Blocking, but only at the one check that finds room again."""
        if not self.short:
            return True
        if space.free < self.size + max(floor, self.size):
            return False
        with self._lock:
            if not self._held:
                self._held = _allocate(self.path, self.size)
        if self._held:
            log.warning("storage.reserve_restored", bytes=self.size, free_bytes=space.free)
        return self._held

    def guarding(self, disk: Disk) -> Disk:
        """``disk`` whose writes release the reserve when they meet a full filesystem (and
        raise as before: the upload still gets its 929)."""
        write = disk.write

        def guarded(fd: int, buffers: Sequence[memoryview]) -> int:
            try:
                return write(fd, buffers)
            except OSError as exc:
                if short_of_space(exc):
                    self.release("upload")
                raise

        return replace(disk, write=guarded)
