"""How written files are made durable: one ``fsync`` per file and folder, or one ``syncfs``.

The spool's group commit and the pipeline's group flush both end a batch by making its new
files and folder entries durable before anything is answered or committed. Two ways
(``state_sync`` in the settings):

- ``files`` (the default): ``fdatasync``/``fsync`` each file and each folder the batch touched.
  Right on any filesystem, shared or not; it costs a journal commit per call where calls do not
  overlap, and a thread per call where they do.
- ``filesystem``: one ``syncfs(2)`` per filesystem the batch touched: every dirty page and
  inode of that filesystem is written and the journal committed once. Measured with
  ``bench/pipeline.py``: 2-4 ms less system CPU per set and 25 fewer context switches; with
  ``bench/e2e.py`` (20 SFTP senders, pinned): 203-207 sets/s at 4.5-4.6 ms of gateway CPU per
  set, against 139-155 at 5.3-6.0 with ``files``. It also writes back everybody else's dirty
  data on that filesystem, so it is for a state directory (and directory destinations) on a
  filesystem of their own. ``syncfs`` reports writeback errors only since Linux 5.8 (before,
  it returned 0 after an I/O error: a silent loss), so the setting is refused on older
  kernels and where the C library has no ``syncfs``.
- ``auto`` (the setting's default) is resolved once at start by :func:`choose_state_sync`:
  ``filesystem`` where that is known to be safe and private (the state directory is the root
  of a mount of a local disk filesystem, every directory destination is on it, and ``syncfs``
  reports errors), ``files`` otherwise, with the reason logged.

A file's data and its name are durable once :func:`make_durable` returns; it raises the first
``OSError`` met, after which the caller must treat every file of the batch as not durable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from gateway.spool.writer import fsync_dir

MIN_KERNEL = (5, 8)
"""The first Linux whose ``syncfs`` returns writeback errors (errseq on the superblock)."""


class StateSync(enum.StrEnum):
    """The ``state_sync`` setting."""

    FILES = "files"
    FILESYSTEM = "filesystem"
    AUTO = "auto"
    """The setting only: resolved at start to one of the others (:func:`choose_state_sync`)."""


def resolved(mode: StateSync) -> StateSync:
    """``mode``, which must be ``files`` or ``filesystem``: ``auto`` is the setting's value only,
    resolved once at start by :func:`choose_state_sync` (a writer given it would sync nothing
    the way the operator was told). ``ValueError`` otherwise."""
    if mode is StateSync.AUTO:
        raise ValueError('state_sync "auto" is resolved at start (choose_state_sync), not used')
    return mode


def _fdatasync(path: str | Path) -> None:
    """Make the data (and size) of the file at ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _libc_syncfs() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)  # a CDLL call releases the GIL
        function = libc.syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_SYNCFS = _libc_syncfs()


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel (or of ``release``, e.g. ``"6.1.0-18-amd64"``)."""
    text = release if release is not None else os.uname().release
    found = re.match(r"(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def syncfs_problem(release: str | None = None) -> str | None:
    """Why ``state_sync = "filesystem"`` cannot be used here, or None."""
    if _SYNCFS is None:
        return 'the C library has no syncfs(2); set state_sync = "files"'
    major, minor = kernel_version(release)
    if (major, minor) < MIN_KERNEL:
        return (
            f"Linux {major}.{minor} does not report write errors from syncfs(2) (5.8 and later "
            'do): a failed write would go unnoticed; set state_sync = "files"'
        )
    return None


LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})
"""Disk filesystems whose ``syncfs`` writes back and commits what this machine wrote (not a
network, FUSE or memory filesystem)."""


@dataclass(frozen=True, slots=True)
class SyncChoice:
    """What ``state_sync`` resolved to at start, and why (logged as ``storage.state_sync``)."""

    mode: StateSync
    reason: str


def mount_at(path: str | Path, mountinfo: str) -> str | None:
    """The filesystem type of the mount whose root is ``path`` (the last one mounted there),
    from the text of ``/proc/self/mountinfo``; None when ``path`` is not a mount point."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
        if point == str(path):
            found = fields[fields.index("-", 6) + 1]
    return found


def _device(path: Path) -> int:
    """The device of ``path``, or of its nearest existing parent (a folder made later)."""
    for candidate in (path, *path.parents):
        try:
            return os.stat(candidate).st_dev
        except FileNotFoundError:
            continue
    return -1  # pragma: no cover - "/" exists


def choose_state_sync(
    setting: StateSync,
    state_dir: Path,
    directories: Iterable[Path] = (),
    *,
    mountinfo: str | None = None,
    device: Callable[[Path], int] = _device,
    release: str | None = None,
) -> SyncChoice:
    """Resolve ``setting`` for a state directory and the directory destinations it delivers to.

    ``files`` is kept as set; so is ``filesystem``, or ``ValueError`` says why this machine
    cannot use it (:func:`syncfs_problem`). ``auto`` is ``filesystem`` only where a
    ``syncfs`` is known to be safe (it reports write errors) and private (the state directory
    is the root of a mount of a local disk filesystem, given to the gateway, and every
    directory destination is on it); otherwise ``files``, which is right on any filesystem.
    ``mountinfo`` (the text of ``/proc/self/mountinfo``), ``device`` and ``release`` are read
    from this machine unless given.
    """
    problem = None if setting is StateSync.FILES else syncfs_problem(release)
    if setting is StateSync.FILESYSTEM and problem is not None:
        raise ValueError(problem)
    if setting is not StateSync.AUTO:
        return SyncChoice(setting, "set in the configuration")
    if problem is not None:
        return SyncChoice(StateSync.FILES, problem.split(";")[0])
    root = Path(os.path.realpath(state_dir))
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            mountinfo = ""
    kind = mount_at(root, mountinfo)
    if kind is None:
        return SyncChoice(
            StateSync.FILES,
            f"{root} is not a mount point: a syncfs would write back a filesystem shared with "
            "other programs",
        )
    if kind not in LOCAL_FILESYSTEMS:
        return SyncChoice(StateSync.FILES, f"{root} is on {kind}, not a local disk filesystem")
    own = device(root)
    for folder in directories:
        if device(Path(os.path.realpath(folder))) != own:
            return SyncChoice(
                StateSync.FILES, f"the directory destination {folder} is on another filesystem"
            )
    return SyncChoice(
        StateSync.FILESYSTEM,
        f"{root} is the root of its own {kind} filesystem, holding every directory destination",
    )


def syncfs(path: str | Path) -> None:
    """``syncfs(2)`` the filesystem holding ``path``; ``OSError`` on a write error."""
    if _SYNCFS is None:  # pragma: no cover - refused at start (syncfs_problem)
        raise OSError("syncfs is not available")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _SYNCFS(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(path))
    finally:
        os.close(fd)


def one_per_filesystem(paths: Iterable[str | Path]) -> list[str | Path]:
    """One of ``paths`` for each filesystem they are on (a path gone meanwhile: its own)."""
    chosen: dict[int, str | Path] = {}
    lost: list[str | Path] = []
    for path in paths:
        try:
            device = os.stat(path).st_dev
        except FileNotFoundError:
            lost.append(path)
            continue
        chosen.setdefault(device, path)
    return [*chosen.values(), *lost]


def _parent(path: str | Path) -> str:
    return os.path.dirname(os.path.abspath(path))


def make_durable(
    files: Sequence[str | Path],
    directories: Sequence[str | Path],
    *,
    mode: StateSync,
    pool: Executor | None = None,
) -> None:
    """Make ``files`` (their data) and ``directories`` (their entries) durable (blocking).

    ``files``: ``fdatasync`` each file (with ``pool``, at once on its threads, so the journal
    commits them together: each file's data is written back by its own call), then ``fsync``
    each folder.
    ``filesystem``: one ``syncfs`` per filesystem the paths are on.
    """
    if resolved(mode) is StateSync.FILESYSTEM:
        # A file is on its folder's filesystem: one stat per folder, not per file.
        folders = dict.fromkeys([*(str(d) for d in directories), *(_parent(f) for f in files)])
        for path in one_per_filesystem(folders):
            syncfs(path)
        return
    if pool is None or len(files) < 2:
        for path in files:
            _fdatasync(path)
    else:
        list(pool.map(_fdatasync, files))  # raises the first failure
    # In order, on this thread: a folder's entries change in the journal's running
    # transaction, so the first fsync commits every folder's changes and the others find
    # them committed already (measured on ext4: one commit for 16 folders, where syncing them
    # at once on the pool cost more time and CPU).
    for path in directories:
        fsync_dir(path)
