"""Return files in OUT*: list, open, delete for the channels; place atomically for the pipeline.

A return file is visible once it is complete: :func:`place_return_file` writes ``.<name>.tmp``,
fsyncs it and renames it into place. Listings skip dot-files (writes in progress) and anything
that is not a regular file with an acceptable name.
"""

from __future__ import annotations

import os
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


def list_return_files(
    layout: SpoolLayout, sender: SenderNumber, folder: Folder
) -> list[ReturnFile]:
    """The sender's return files in ``folder``, by name (blocking: call off the event loop)."""
    directory = layout.out_folder(sender, folder)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    files = []
    for entry in entries:
        if entry.name.startswith(".") or check_name(entry.name) is not None:
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        stat = entry.stat(follow_symlinks=False)
        files.append(ReturnFile(name=entry.name, size=stat.st_size, mtime=stat.st_mtime))
    files.sort(key=lambda f: f.name)
    return files


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
