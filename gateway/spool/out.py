"""Return files in OUT*: list, open, delete for the channels; place atomically for the pipeline.

A return file is visible once it is complete: :func:`place_return_file` writes ``.<name>.tmp``,
fsyncs it and renames it into place. Listings skip dot-files (writes in progress) and anything
that is not a regular file with an acceptable name.

Listings hold bounded memory whatever the folder holds (SECURITY.md 14: 100,000 files in OUT is
a normal morning after a bulk run, and a hostile tenant can make more):

- :class:`ReturnScan` reads the folder in chunks (``os.scandir``, at most ``count`` files a
  call; blocking, one call per thread hop), in the directory's own order: SFTP and FTP stream
  the chunks to the client, and nothing promises them an order.
- :func:`page_return_files` answers the web channel's pages, which are sorted by name with a
  keyset cursor (the names after ``after``): one pass over the folder keeps only the ``count``
  smallest names in a heap, and only those are checked in full and ``lstat``'ed. A page costs
  one pass of ``readdir`` whatever the page, never a list of the folder.
"""

from __future__ import annotations

import heapq
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.core.folders import Folder, check_name
from gateway.core.types import SenderNumber
from gateway.ops.private import PRIVATE_FILE, private_dirs
from gateway.spool.layout import SpoolLayout


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnFile:
    """One file in an OUT folder."""

    name: str
    size: int
    mtime: float


def _listed(entry: os.DirEntry[str]) -> ReturnFile | None:
    """``entry`` as a return file, or None: a dot-file, a name the folder service would refuse,
    anything but a regular file (links are not followed), or a file gone since the scan."""
    name = entry.name
    if name.startswith(".") or check_name(name) is not None:
        return None
    try:
        if not entry.is_file(follow_symlinks=False):
            return None
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    return ReturnFile(name=name, size=info.st_size, mtime=info.st_mtime)


class ReturnScan:
    """One listing of an OUT folder, read a chunk at a time (the methods block: call them in
    the spool's threads). The folder is opened at the first :meth:`read`, so a listing that is
    never read holds nothing.

    :meth:`close` may come from the event loop while a :meth:`read` runs in a thread (its
    listing was cancelled): ``closedir`` under a running ``readdir`` would be a use after free,
    so a read holds the lock and a close that finds it held leaves the closing to the read,
    which looks again once it has let go of the lock.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._entries: Iterator[os.DirEntry[str]] | None = None
        self._done = False
        self._closing = False
        self._lock = threading.Lock()

    def read(self, count: int) -> list[ReturnFile]:
        """Up to ``count`` more return files; an empty list only at the end (blocking)."""
        try:
            with self._lock:
                return self._read(count)
        finally:
            if self._closing:
                self.close()

    def _read(self, count: int) -> list[ReturnFile]:
        if self._done or self._closing:
            return []
        if self._entries is None:
            try:
                self._entries = os.scandir(self._directory)
            except FileNotFoundError:  # no return file was ever placed for this sender
                self._done = True
                return []
        files: list[ReturnFile] = []
        for entry in self._entries:
            listed = _listed(entry)
            if listed is not None:
                files.append(listed)
                if len(files) >= count:
                    return files
        self._finish()
        return files

    def _finish(self) -> None:
        self._done = True
        entries, self._entries = self._entries, None
        if entries is not None:
            entries.close()  # type: ignore[attr-defined]  # os.scandir's iterator

    def close(self) -> None:
        """Let the folder go (now, or when the read in progress ends); idempotent."""
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._finish()
            finally:
                self._lock.release()


class _Largest:
    """A name in a max-heap (heapq is a min-heap): the root is the largest name kept."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __lt__(self, other: _Largest) -> bool:
        return self.name > other.name


def page_return_files(
    layout: SpoolLayout,
    sender: SenderNumber,
    folder: Folder,
    *,
    after: str | None,
    limit: int,
) -> tuple[list[ReturnFile], str | None]:
    """The first ``limit`` return files by name (code point order) whose names come after
    ``after``, and the page's last name when more follow (the next page's ``after``), else None.

    Blocking: call it in the spool's threads. Memory holds ``limit + 1`` names whatever the
    folder holds, and ``lstat`` is called on the page's files only (a file removed since the
    scan is left out of the page). The full name check costs about 10 us a name, more than the
    rest of a scan: it is made on the page's names, and only when one of them fails it (the
    pipeline writes no such name) is the folder scanned again with every name checked."""
    directory = layout.out_folder(sender, folder)
    try:
        names = _smallest_names(directory, after, limit + 1, checked=False)
        if any(check_name(name) is not None for name in names):
            names = _smallest_names(directory, after, limit + 1, checked=True)
    except FileNotFoundError:  # no return file was ever placed for this sender
        return [], None
    page = names[:limit]
    files = []
    for name in page:
        try:
            info = os.lstat(directory / name)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode):
            files.append(ReturnFile(name=name, size=info.st_size, mtime=info.st_mtime))
    return files, page[-1] if len(names) > limit else None


def _smallest_names(directory: Path, after: str | None, most: int, *, checked: bool) -> list[str]:
    """The ``most`` smallest names after ``after`` of the folder's regular files (by the
    directory entry's type: no ``stat``), dot-files left out, each name checked in full when
    ``checked``; sorted. One pass, a heap of ``most`` names."""
    kept: list[_Largest] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if (after is not None and name <= after) or name.startswith("."):
                continue
            if len(kept) >= most and name >= kept[0].name:
                continue  # not among the smallest names seen so far
            if not entry.is_file(follow_symlinks=False):
                continue
            if checked and check_name(name) is not None:
                continue
            if len(kept) < most:
                heapq.heappush(kept, _Largest(name))
            else:
                heapq.heapreplace(kept, _Largest(name))
    return sorted(k.name for k in kept)


def place_return_file(
    layout: SpoolLayout,
    sender: SenderNumber,
    folder: Folder,
    name: str,
    data: bytes,
    *,
    sync_dir: bool = True,
) -> Path:
    """Write a return file atomically (temp, fsync, rename, fsync dir) and return its path.

    ``sync_dir=False`` leaves the directory's fsync to the caller (several files, one fsync).
    """
    if folder.inbound:
        raise ValueError(f"return files go to OUT folders, not {folder.value}")
    if check_name(name) is not None:
        raise ValueError(f"invalid return file name {name!r}")
    directory = layout.out_folder(sender, folder)
    private_dirs(directory)
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    final = directory / name
    os.replace(tmp, final)
    if not sync_dir:
        return final
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final
