"""``state_sync``: files made durable one by one, or by one ``syncfs`` per filesystem and batch.

The C library's ``syncfs`` is the boundary: tests wrap the real function to count its calls (it
still runs) or replace it with one that fails as a disk would, and check what the spool and the
pipeline do then. ``fsync``/``fdatasync`` are counted the same way, through ``os``.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.settings import LimitSettings, SettingsError, load_settings
from gateway.pipeline.flush import GroupFlush
from gateway.spool import durable
from gateway.spool.durable import (
    StateSync,
    choose_state_sync,
    kernel_version,
    make_durable,
    mount_at,
    one_per_filesystem,
    syncfs_problem,
)
from gateway.spool.limits import SpoolLimits
from gateway.spool.store import INLINE_MAX_BYTES, Spool, StoredUpload
from gateway.spool.tables import UploadContentRow, UploadRow
from gateway.spool.writer import UploadTarget, UploadWriter


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of syncfs, fsync and fdatasync calls (each still runs)."""
    seen = {"syncfs": 0, "fsync": 0, "fdatasync": 0}
    real_syncfs = durable._SYNCFS
    assert real_syncfs is not None, "this C library has syncfs"

    def counting_syncfs(fd: int) -> int:
        seen["syncfs"] += 1
        return real_syncfs(fd)

    def counted(name: str, real: Callable[[int], None]) -> Callable[[int], None]:
        def call(fd: int) -> None:
            seen[name] += 1
            real(fd)

        return call

    monkeypatch.setattr(durable, "_SYNCFS", counting_syncfs)
    monkeypatch.setattr(os, "fsync", counted("fsync", os.fsync))
    monkeypatch.setattr(os, "fdatasync", counted("fdatasync", os.fdatasync))
    return seen


def failing_syncfs(code: int) -> Callable[[int], int]:
    """A syncfs that reports ``code`` (as the kernel does after a lost write)."""

    def call(fd: int) -> int:
        ctypes.set_errno(code)
        return -1

    return call


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("6.18.44-fc-v1272", (6, 18)),
        ("5.8.0", (5, 8)),
        ("5.10.0-28-amd64", (5, 10)),
        ("4.19.0-26-cloud-amd64", (4, 19)),
        ("5.4.0-150-generic", (5, 4)),
        ("6.1rc2", (6, 1)),
        ("weird", (0, 0)),
    ],
)
def test_kernel_version_is_read_from_the_release(release: str, expected: tuple[int, int]) -> None:
    assert kernel_version(release) == expected


def test_syncfs_is_refused_before_linux_5_8_with_the_reason() -> None:
    """Before 5.8 syncfs returned 0 after a failed write: the setting would lose files."""
    problem = syncfs_problem("5.4.0-150-generic")
    assert problem is not None
    assert "Linux 5.4" in problem
    assert "5.8 and later" in problem
    assert 'state_sync = "files"' in problem
    assert syncfs_problem("5.8.0") is None
    assert syncfs_problem("6.18.44") is None


def test_the_setting_takes_three_values_and_names_the_key_otherwise() -> None:
    assert load_settings().state_sync == "auto"
    assert load_settings(state_sync="files").state_sync == "files"
    assert load_settings(state_sync="filesystem").state_sync == "filesystem"
    with pytest.raises(SettingsError, match="state_sync"):
        load_settings(state_sync="fsync")


def _mountinfo(*mounts: tuple[str, str]) -> str:
    """/proc/self/mountinfo lines for (mount point, filesystem type), after the root's."""
    lines = ["22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw"]
    for n, (point, kind) in enumerate(mounts, start=30):
        lines.append(f"{n} 22 7:{n} / {point} rw,relatime shared:{n} - {kind} /dev/loop{n} rw")
    return "\n".join(lines) + "\n"


def test_mount_points_are_read_from_mountinfo() -> None:
    """Escaped mount points (a space is \\040) match; optional fields before "-" are skipped;
    the last mount on a point wins; a folder below a mount point is no mount point."""
    text = _mountinfo(("/srv/batch gateway", "xfs"), ("/srv/batch gateway", "ext4"))
    text = text.replace("/srv/batch gateway", "/srv/batch\\040gateway")
    assert mount_at("/srv/batch gateway", text) == "ext4"
    assert mount_at("/", text) == "ext4"
    assert mount_at("/srv", text) is None
    assert mount_at("/srv/batch gateway/state", text) is None


def test_auto_chooses_syncfs_only_for_a_local_filesystem_of_its_own(tmp_path: Path) -> None:
    """``auto``: one syncfs per batch where the state directory is the root of a local disk
    filesystem that also holds every directory destination; an fsync per file otherwise, with
    the reason. ``files`` and ``filesystem`` are kept as set."""
    state = tmp_path / "state"
    state.mkdir()
    root = str(state.resolve())
    devices = {state.resolve(): 1, (tmp_path / "elsewhere").resolve(): 2}

    def device(path: Path) -> int:
        return devices.get(path, 1)

    def choose(mounts: str, *folders: Path, release: str = "6.1.0") -> tuple[StateSync, str]:
        choice = choose_state_sync(
            StateSync.AUTO, state, folders, mountinfo=mounts, device=device, release=release
        )
        return choice.mode, choice.reason

    own = _mountinfo((root, "ext4"))
    assert choose(own, state / "routed" / "DMFA")[0] is StateSync.FILESYSTEM
    mode, reason = choose(_mountinfo())
    assert mode is StateSync.FILES
    assert "not a mount point" in reason
    mode, reason = choose(_mountinfo((root, "nfs4")))
    assert (mode, reason) == (StateSync.FILES, f"{root} is on nfs4, not a local disk filesystem")
    mode, reason = choose(own, state / "routed", tmp_path / "elsewhere")
    assert mode is StateSync.FILES
    assert "elsewhere is on another filesystem" in reason
    mode, reason = choose(own, release="5.4.0")
    assert mode is StateSync.FILES
    assert "Linux 5.4" in reason
    for kept in (StateSync.FILES, StateSync.FILESYSTEM):
        choice = choose_state_sync(kept, state, mountinfo=_mountinfo(), release="6.1.0")
        assert choice.mode is kept
    assert choose_state_sync(StateSync.FILES, state, release="5.4.0").mode is StateSync.FILES
    with pytest.raises(ValueError, match=r"Linux 5\.4 does not report write errors"):
        choose_state_sync(StateSync.FILESYSTEM, state, mountinfo=own, release="5.4.0")


def test_auto_on_this_machine_keeps_files_for_a_folder_of_the_root_filesystem(
    tmp_path: Path,
) -> None:
    """Read from this machine's own mountinfo: a test's temporary folder is no mount point."""
    choice = choose_state_sync(StateSync.AUTO, tmp_path)
    assert choice.mode is StateSync.FILES
    assert choice.reason


async def test_auto_unresolved_is_refused_by_every_writer(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    """ "auto" is the setting's value only: the spool, the pipeline's flush and make_durable
    refuse it (they would otherwise sync as "files" with nobody told)."""
    with pytest.raises(ValueError, match="resolved at start"):
        make_durable([], [tmp_path], mode=StateSync.AUTO)
    with pytest.raises(ValueError, match="resolved at start"):
        GroupFlush(StateSync.AUTO)
    with pytest.raises(ValueError, match="resolved at start"):
        Spool(
            state_dir=tmp_path / "state",
            engine=engine,
            limits=SpoolLimits.from_settings(LimitSettings()),
            state_sync=StateSync.AUTO,
        )


def test_one_path_per_filesystem(tmp_path: Path) -> None:
    """Paths on one filesystem share one syncfs; /proc is another filesystem."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    b.mkdir()
    chosen = one_per_filesystem([a, b, tmp_path, Path("/proc/self")])
    assert chosen == [a, Path("/proc/self")]


def test_filesystem_mode_makes_one_syncfs_and_no_fsync(
    tmp_path: Path, calls: dict[str, int]
) -> None:
    files = [tmp_path / f"f{i}" for i in range(5)]
    for f in files:
        f.write_bytes(b"data")
    make_durable(files, [tmp_path], mode=StateSync.FILESYSTEM)
    assert calls == {"syncfs": 1, "fsync": 0, "fdatasync": 0}
    make_durable(files, [tmp_path], mode=StateSync.FILES)
    assert calls == {"syncfs": 1, "fsync": 1, "fdatasync": 5}


def test_a_syncfs_error_is_raised_with_its_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "_SYNCFS", failing_syncfs(errno.EIO))
    with pytest.raises(OSError, match="Input/output error") as caught:
        make_durable([], [tmp_path], mode=StateSync.FILESYSTEM)
    assert caught.value.errno == errno.EIO


# -- the spool --------------------------------------------------------------------------------


@pytest.fixture
async def spool(tmp_path: Path, engine: AsyncEngine) -> AsyncIterator[Spool]:
    spool = Spool(
        state_dir=tmp_path / "state",
        engine=engine,
        limits=SpoolLimits.from_settings(LimitSettings()),
        state_sync=StateSync.FILESYSTEM,
    )
    yield spool
    await asyncio.to_thread(spool.close)


async def _store(spool: Spool, name: str, data: bytes) -> StoredUpload | object:
    target = UploadTarget(
        sender=SenderNumber("006400"),
        folder=Folder("IN"),
        name=name,
        session_id="s",
        channel="test",
    )
    writer = await spool.begin(target)
    assert isinstance(writer, UploadWriter), writer
    assert await writer.write(0, data) is None
    return await spool.store(writer)


async def _rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(UploadRow))).scalar_one())


async def test_the_spool_syncs_a_batch_of_closes_with_one_syncfs(
    spool: Spool, engine: AsyncEngine, calls: dict[str, int]
) -> None:
    """Uploads closed together (larger than the inline bound, some past a chunk): stored,
    recorded, and no per-file fsync."""
    bodies = {
        f"FI.DMFA.006400.20260115.0000{i}.R.1.1": os.urandom(70_000 + i * 700_000) for i in range(8)
    }
    stored = await asyncio.gather(*(_store(spool, n, b) for n, b in bodies.items()))
    assert all(isinstance(s, StoredUpload) for s in stored), stored
    for name, body in bodies.items():
        assert (spool.layout.spool_dir / "006400" / "IN" / name).read_bytes() == body
    assert await _rows(engine) == len(bodies)
    assert calls["fsync"] == 0
    assert calls["fdatasync"] == 0
    assert calls["syncfs"] == spool._group.batches  # one per batch (closes that meet share one)


async def test_small_uploads_are_not_placed_inline_when_one_syncfs_covers_them(
    spool: Spool, engine: AsyncEngine, calls: dict[str, int]
) -> None:
    """Uploads within the inline bound, closed together: the batch's one syncfs makes them
    durable as it does larger ones, so their bytes are not recorded (that would only add WAL
    pages and the intake's sync; inline placement is for state_sync "files")."""
    bodies = {f"FI.DMFA.006400.20260115.0000{i}.R.1.1": os.urandom(i * 9_000) for i in range(8)}
    stored = await asyncio.gather(*(_store(spool, n, b) for n, b in bodies.items()))
    assert all(isinstance(s, StoredUpload) for s in stored), stored
    for name, body in bodies.items():
        assert (spool.layout.spool_dir / "006400" / "IN" / name).read_bytes() == body
    async with engine.connect() as conn:
        contents = (await conn.execute(select(func.count()).select_from(UploadContentRow))).one()
    assert contents == (0,)
    assert await _rows(engine) == len(bodies)
    assert (calls["fsync"], calls["fdatasync"]) == (0, 0)
    assert calls["syncfs"] == spool._group.batches >= 1


async def test_a_failed_syncfs_refuses_the_batch_and_keeps_nothing(
    spool: Spool, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error reported by syncfs: no name, no row; the next batch is stored again."""
    monkeypatch.setattr(durable, "_SYNCFS", failing_syncfs(errno.EIO))
    with pytest.raises(OSError, match="Input/output error"):
        await _store(spool, "FI.DMFA.006400.20260115.00001.R.1.1", b"l" * (INLINE_MAX_BYTES + 1))
    folder = spool.layout.spool_dir / "006400" / "IN"
    assert not (folder / "FI.DMFA.006400.20260115.00001.R.1.1").exists()
    assert await _rows(engine) == 0
    monkeypatch.undo()
    assert isinstance(
        await _store(spool, "FI.DMFA.006400.20260115.00001.R.1.1", b"ok"), StoredUpload
    )
    assert await _rows(engine) == 1
