"""The space reserve (``gateway.spool.reserve``) on a real filesystem, alone and under a spool
whose disk fills (the :class:`Disk` boundary raising ENOSPC, the free-space probe set)."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.core.codes import Code, Rejection
from gateway.ops.metrics import Metrics
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.spool import Spool, SpoolLimits, StoredUpload
from gateway.spool.disk import Disk, FreeSpace
from gateway.spool.reserve import RESERVE_NAME, SpaceReserve
from tests.spool.test_store import begin, target

KIB = 1024
SIZE = 64 * KIB


def _released(metrics: Metrics, cause: str) -> float:
    value: float = metrics.storage_reserve_released_total.labels(cause=cause)._value.get()
    return value


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_at_start_the_reserve_is_allocated_private_and_resized(tmp_path: Path) -> None:
    """A reserve is a 0600 file whose blocks are taken (not sparse); a larger one left by an
    earlier setting is cut to the size; size 0 removes it."""
    left = tmp_path / RESERVE_NAME
    left.write_bytes(b"x" * (2 * SIZE))
    left.chmod(0o644)
    reserve = SpaceReserve.at_start(tmp_path, SIZE)
    assert not reserve.short
    assert left.stat().st_size == SIZE
    assert _allocated(left) >= SIZE
    assert left.stat().st_mode & 0o777 == 0o600
    off = SpaceReserve.at_start(tmp_path, 0)
    assert not off.short
    assert not left.exists()


def test_a_release_unlinks_logs_a_critical_alert_and_counts_once(tmp_path: Path) -> None:
    """The first release gives the file up, logs ``storage.reserve_released`` (critical,
    alert) and counts it; a second one does nothing."""
    metrics = Metrics.create()
    reserve = SpaceReserve.at_start(tmp_path, SIZE, metrics=metrics)
    with capture_logs() as logs:
        assert reserve.release("remove") is True
        assert reserve.release("upload") is False
    assert reserve.short
    assert not reserve.path.exists()
    events = [e for e in logs if e["event"] == "storage.reserve_released"]
    assert [(e["log_level"], e["alert"], e["cause"], e["bytes"]) for e in events] == [
        ("critical", True, "remove", SIZE)
    ]
    assert _released(metrics, "remove") == 1
    assert _released(metrics, "upload") == 0


def test_it_is_taken_back_only_with_its_size_free_beyond_the_floor(tmp_path: Path) -> None:
    """Released, the reserve comes back when the filesystem has, besides it, the larger of the
    floor and its size free; not sooner (no release and take-back in turn on a full disk)."""
    reserve = SpaceReserve.at_start(tmp_path, SIZE)
    reserve.release("upload")
    total = 10**9
    assert reserve.take_back(FreeSpace(free=2 * SIZE - 1, total=total), floor=0) is False
    assert (
        reserve.take_back(FreeSpace(free=SIZE + 3 * SIZE - 1, total=total), floor=3 * SIZE) is False
    )
    assert not reserve.path.exists()
    with capture_logs() as logs:
        assert reserve.take_back(FreeSpace(free=4 * SIZE, total=total), floor=3 * SIZE) is True
    assert [e["event"] for e in logs] == ["storage.reserve_restored"]
    assert not reserve.short
    assert _allocated(reserve.path) >= SIZE
    assert reserve.take_back(FreeSpace(free=0, total=total), floor=0) is True  # held: as is


def _enospc(fd: int, buffers: Sequence[memoryview]) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _eio(fd: int, buffers: Sequence[memoryview]) -> int:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_a_write_that_meets_a_full_disk_releases_it_other_faults_do_not(tmp_path: Path) -> None:
    """Through :meth:`SpaceReserve.guarding`, ENOSPC releases the reserve (cause ``upload``)
    and is raised as before; an I/O error leaves the reserve held."""
    reserve = SpaceReserve.at_start(tmp_path, SIZE)
    views = [memoryview(b"data")]
    with pytest.raises(OSError, match="Input/output"):
        reserve.guarding(Disk(write=_eio)).write(1, views)
    assert not reserve.short
    with pytest.raises(OSError, match="No space"):
        reserve.guarding(Disk(write=_enospc)).write(1, views)
    assert reserve.short


class _Probe:
    def __init__(self, free: int) -> None:
        self.free = free

    def __call__(self, path: Path) -> FreeSpace:
        return FreeSpace(free=self.free, total=10**12)


@pytest.fixture
async def url(tmp_path: Path) -> str:
    """A migrated SQLite database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
    await migrate(url)
    return url


async def test_under_a_spool_new_uploads_get_929_until_the_reserve_is_back(
    url: str, tmp_path: Path
) -> None:
    """An upload that meets ENOSPC gets 929 and releases the reserve; while it is released a
    new upload is refused at once (929) and readiness says short of space, although the probe
    shows the reserve's bytes free; with room again the reserve is taken back first, then the
    upload goes on."""
    engine = create_engine(url)
    state = tmp_path / "state"
    state.mkdir()
    reserve = SpaceReserve.at_start(state, SIZE)
    probe = _Probe(free=10**9)
    limits = SpoolLimits(max_file_bytes=10**6, sender_pending_quota_bytes=10**7)
    disk = Disk(write=_enospc, free_space=probe)
    spool = Spool(state_dir=state, engine=engine, limits=limits, disk=disk, reserve=reserve)
    try:
        writer = await begin(spool)
        refused: Rejection | StoredUpload | None = await writer.write(0, b"x" * 1000)
        if refused is None:  # written at the close
            refused = await spool.store(writer)
        assert isinstance(refused, Rejection)
        assert refused.code is Code.SHORT_OF_SPACE
        assert reserve.short
        probe.free = SIZE + 100  # the reserve's bytes came back, and a few more
        again = await spool.begin(target())
        assert isinstance(again, Rejection)
        assert again.code is Code.SHORT_OF_SPACE
        assert spool.readiness() == "spool short of space"
        assert reserve.short
        probe.free = 10**9
        assert spool.readiness() is None
        assert not reserve.short
        assert (state / RESERVE_NAME).exists()
    finally:
        spool.close()
        await engine.dispose()
