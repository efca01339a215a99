"""The storage boundary's gathered write: every byte in order, whatever each call takes."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.spool import disk as disk_module
from gateway.spool.disk import IOV_MAX, Disk, start_writeback


class Stingy:
    """``os.writev`` that takes at most ``limit`` bytes per call and records each call's buffers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: list[int] = []

    def __call__(self, fd: int, buffers: Sequence[memoryview]) -> int:
        self.calls.append(len(buffers))
        return os.write(fd, b"".join(bytes(buffer) for buffer in buffers)[: self.limit])


def _written(tmp_path: Path, disk: Disk, chunks: list[bytes]) -> bytes:
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        disk.write_all(fd, chunks)
    finally:
        os.close(fd)
    return path.read_bytes()


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=12),
    limit=st.integers(min_value=1, max_value=64),
)
def test_short_writes_go_on_where_the_kernel_stopped(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[bytes], limit: int
) -> None:
    """A write that takes only part of the buffers (even part of one) is followed by one for
    the rest: the file holds the chunks' bytes exactly, in order."""
    tmp_path = tmp_path_factory.mktemp("disk")
    stingy = Stingy(limit)
    assert _written(tmp_path, Disk(write=stingy), chunks) == b"".join(chunks)
    total = sum(map(len, chunks))
    assert len(stingy.calls) == -(-total // limit)  # no call wasted, none with nothing to do


def test_more_chunks_than_one_call_takes_are_written_in_several(tmp_path: Path) -> None:
    """The real ``writev`` takes at most IOV_MAX buffers: more chunks than that (a client sending
    tiny writes) go in calls of at most IOV_MAX, and all of them arrive."""
    chunks = [bytes([i % 251]) * 3 for i in range(2 * IOV_MAX + 5)]
    stingy = Stingy(limit=1 << 30)
    assert _written(tmp_path, Disk(write=stingy), chunks) == b"".join(chunks)
    assert stingy.calls == [IOV_MAX, IOV_MAX, 5]


def test_the_real_disk_writes_a_chunk_as_it_came(tmp_path: Path) -> None:
    """Through ``os.writev`` itself, with empty chunks among the others."""
    chunks = [b"", os.urandom(32768), b"", os.urandom(5), bytearray(b"tail")]
    assert _written(tmp_path, Disk(), chunks) == b"".join(chunks)  # type: ignore[arg-type]


def test_starting_a_writeback_is_advisory(tmp_path: Path) -> None:
    """On Linux the call exists (libc's sync_file_range), and it raises nothing: not on a file
    with dirty pages, not on a descriptor it refuses (a pipe: ESPIPE)."""
    if sys.platform == "linux":
        assert disk_module._SYNC_FILE_RANGE is not None
    fd = os.open(tmp_path / "dirty", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, os.urandom(1 << 20))
        start_writeback(fd)
    finally:
        os.close(fd)
    read, write = os.pipe()
    try:
        start_writeback(write)
    finally:
        os.close(read)
        os.close(write)
    assert (tmp_path / "dirty").stat().st_size == 1 << 20
