"""Durable file operations for the pipeline: writes, moves and removals, fsync'ed.

A crash leaves either the old state or the whole new file, never a torn one: files are written
and fsync'ed inside a directory nobody sees yet (a delivery's staging directory), which is then
renamed into place; moves rename and fsync both directories. Return files have their own atomic
write (:func:`gateway.spool.out.place_return_file`). These functions block; callers run them
on the pipeline's own threads (``Context.blocking``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from gateway.ops.private import private_dirs
from gateway.spool.writer import fsync_dir

CHUNK = 1024 * 1024


def write_new(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Create ``path`` (never over an existing file) with ``data``, fsync'ed unless ``sync`` is
    False (the caller syncs the filesystem: :mod:`.flush`).

    For a directory nobody else sees yet (a delivery's staging directory): the directory's
    rename publishes the files, so each needs no temporary name of its own. The caller fsyncs
    the directory.
    """
    with path.open("xb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def copy_new(source: Path, path: Path, *, sync: bool = True) -> None:
    """Copy ``source`` to a new ``path``, streaming (see :func:`write_new`)."""
    with source.open("rb") as src, path.open("xb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
        if sync:
            dst.flush()
            os.fsync(dst.fileno())


def move_durable(source: Path, target: Path) -> bool:
    """Move ``source`` to ``target`` (same filesystem); idempotent: True when moved or already.

    Returns False when neither the source nor the target exists (the file is gone).
    """
    if not source.exists():
        return target.exists()
    private_dirs(target.parent)
    os.replace(source, target)
    fsync_dir(target.parent)
    fsync_dir(source.parent)
    return True


def move(source: Path, target: Path) -> bool:
    """:func:`move_durable` without the fsyncs (the caller syncs the filesystem)."""
    if not source.exists():
        return target.exists()
    private_dirs(target.parent)
    os.replace(source, target)
    return True


def remove_files(paths: Iterable[Path]) -> int:
    """Remove each existing path, fsync the directories touched; return how many were removed."""
    removed = 0
    dirs: set[Path] = set()
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
        dirs.add(path.parent)
    for directory in dirs:
        fsync_dir(directory)
    return removed


def remove_tree(path: Path, *, sync: bool = True) -> bool:
    """Remove a directory tree if it exists; True when something was removed. Its parent is
    fsync'ed unless ``sync`` is False (the caller syncs the filesystem)."""
    if not path.exists():
        return False
    shutil.rmtree(path)
    if sync and path.parent.exists():
        fsync_dir(path.parent)
    return True
