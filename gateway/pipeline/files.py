"""Durable file operations for the pipeline: atomic writes, moves and removals, fsync'ed.

Every file the pipeline creates (return files, routed payloads, envelopes, archive copies) is
written under a temporary name on the same filesystem, fsync'ed, renamed into place, and the
directory fsync'ed, so a crash leaves either the old state or the whole new file, never a torn
one. These functions block; callers run them on the pipeline's own threads
(``Context.blocking``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from gateway.spool.writer import fsync_dir

CHUNK = 1024 * 1024


def _tmp_name(tmp_dir: Path, final: Path) -> Path:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return tmp_dir / f"{final.name}.{secrets.token_hex(6)}.tmp"


def write_atomic(path: Path, data: bytes, *, tmp_dir: Path, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp in ``tmp_dir``, fsync, rename, fsync dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(tmp_dir, path)
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if sync_dir:
        fsync_dir(path.parent)


def copy_atomic(source: Path, path: Path, *, tmp_dir: Path, sync_dir: bool = True) -> None:
    """Copy ``source`` to ``path`` atomically, streaming (never the whole file in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(tmp_dir, path)
    try:
        with source.open("rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if sync_dir:
        fsync_dir(path.parent)


def move_durable(source: Path, target: Path) -> bool:
    """Move ``source`` to ``target`` (same filesystem); idempotent: True when moved or already.

    Returns False when neither the source nor the target exists (the file is gone).
    """
    if not source.exists():
        return target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    fsync_dir(target.parent)
    fsync_dir(source.parent)
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


def remove_tree(path: Path) -> bool:
    """Remove a directory tree if it exists; True when something was removed."""
    if not path.exists():
        return False
    shutil.rmtree(path)
    if path.parent.exists():
        fsync_dir(path.parent)
    return True
