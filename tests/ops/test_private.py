"""The daemon's folders are 0700 and its files 0600 whatever the umask (issue 16): each creation
site says its mode. Run under umask 000, the most open an operator's shell could have."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.private import create_private_file, private_dirs
from gateway.pipeline.files import move_durable
from gateway.registry.migrate import migrate
from gateway.spool.layout import SpoolLayout
from gateway.spool.out import place_return_file


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 000 for the test (process-wide: restored at once after it)."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in sorted(root.rglob("*"))
    }


@pytest.mark.usefixtures("open_umask")
def test_private_dirs_makes_every_missing_parent_0700(tmp_path: Path) -> None:
    """Every folder it creates is 0700, the parents too; an existing one is left alone."""
    (tmp_path / "kept").mkdir(mode=0o755)
    private_dirs(tmp_path / "kept" / "a" / "b" / "c")
    private_dirs(tmp_path / "kept" / "a" / "b" / "c")  # exists: nothing to do
    assert _modes(tmp_path) == {
        "kept": 0o755,
        "kept/a": 0o700,
        "kept/a/b": 0o700,
        "kept/a/b/c": 0o700,
    }


@pytest.mark.usefixtures("open_umask")
def test_a_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    """A file where a folder should be is not silently accepted."""
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(FileExistsError):
        private_dirs(tmp_path / "f")
    with pytest.raises(FileExistsError):
        private_dirs(tmp_path / "f" / "below")


@pytest.mark.usefixtures("open_umask")
def test_return_files_and_moves_are_private(tmp_path: Path) -> None:
    """An ACRF in OUT is 0600 in 0700 folders; a move (work -> archive) makes 0700 folders."""
    layout = SpoolLayout(tmp_path)
    path = place_return_file(
        layout, SenderNumber("006400"), Folder.OUT, "FO.ACRF.999999.20260115.00001.R", b"<x/>"
    )
    work = tmp_path / "work" / "T1"
    private_dirs(work)
    (work / "FI").write_bytes(b"x")
    os.chmod(work / "FI", 0o600)
    assert move_durable(work, tmp_path / "archive" / "2026" / "T1")
    assert path.stat().st_mode & 0o777 == 0o600
    assert _modes(tmp_path) == {
        "archive": 0o700,
        "archive/2026": 0o700,
        "archive/2026/T1": 0o700,
        "archive/2026/T1/FI": 0o600,
        "out": 0o700,
        "out/006400": 0o700,
        "out/006400/OUT": 0o700,
        "out/006400/OUT/FO.ACRF.999999.20260115.00001.R": 0o600,
        "work": 0o700,
    }


def _modes_while_open(database: Path) -> dict[str, int]:
    """The modes of the database's folder while a WAL connection has its journal files open."""
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        return {p.name: stat.S_IMODE(p.stat().st_mode) for p in database.parent.iterdir()}


@pytest.mark.usefixtures("open_umask")
async def test_the_sqlite_registry_and_its_journal_are_0600(tmp_path: Path) -> None:
    """migrate() creates registry.sqlite3 0600 before SQLite would (0666 under umask 000);
    SQLite gives its -wal and -shm files the database's mode."""
    database = tmp_path / "registry.sqlite3"
    await migrate(f"sqlite+aiosqlite:///{database}")
    assert _modes_while_open(database) == {
        "registry.sqlite3": 0o600,
        "registry.sqlite3-wal": 0o600,
        "registry.sqlite3-shm": 0o600,
    }
    assert not create_private_file(database)  # never touches an existing file
