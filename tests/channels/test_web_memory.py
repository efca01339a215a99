"""A 1 GiB PUT streams through the web channel with flat memory (issue 12, "Done when").

The gateway runs in this test's process and event loop; curl sends the body from a subprocess,
so the client's buffers are not counted. The test process's resident memory (VmRSS) is sampled
by a thread every 10 ms during the upload and compared with the reading just before it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from tests.channels.ftp_env import name
from tests.channels.web_env import StartWeb, curl

pytestmark = pytest.mark.timeout(120)

MIB = 1024 * 1024
GIB = 1024 * MIB
LIMIT = 64 * MIB


def rss() -> int:
    """This process's resident set size in bytes (VmRSS in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Peak:
    """The highest RSS seen by a thread sampling every ``interval`` seconds."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.highest = rss()
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.highest = max(self.highest, rss())
            self.samples += 1

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.highest = max(self.highest, rss())


def sparse_body(path: Path, size: int) -> str:
    """A ``size``-byte file that is mostly a hole, with random 1 MiB blocks at a few offsets (so
    that a lost or shifted block changes the digest); its SHA-256 in hex."""
    with open(path, "wb") as out:
        os.truncate(out.fileno(), size)
        for offset in (0, size // 3, size // 2, size - MIB):
            out.seek(offset)
            out.write(os.urandom(MIB))
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path`` in hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(MIB):
            digest.update(block)
    return digest.hexdigest()


async def test_a_1_gib_put_streams_with_flat_memory(start_web: StartWeb, tmp_path: Path) -> None:
    """curl PUTs 1 GiB; the test process (the gateway) grows by less than 64 MiB of RSS, and the
    stored file has the size and SHA-256 that were sent."""
    web = await start_web(max_file_bytes=2 * GIB, quota=4 * GIB)
    body = tmp_path / "body"
    sha = sparse_body(body, GIB)
    fi = name("FI", web.a.number)
    # A first small PUT warms the TLS, session and database paths, so their one-time
    # allocations are not counted as growth.
    warm = tmp_path / "warm"
    warm.write_bytes(os.urandom(4096))
    first = await curl(web, f"/IN/{name('FI', web.a.number, '00002')}", "--upload-file",
                       str(warm), folder=tmp_path)  # fmt: skip
    assert first.status == 201, (first.body, first.stderr)
    before = rss()
    started = time.monotonic()
    with Peak() as peak:
        put = await curl(web, f"/IN/{fi}", "--upload-file", str(body), folder=tmp_path)
    seconds = time.monotonic() - started
    growth = peak.highest - before
    print(
        f"1 GiB PUT in {seconds:.1f} s; RSS before {before / MIB:.1f} MiB, peak "
        f"{peak.highest / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB ({peak.samples} samples)"
    )
    assert put.status == 201, (put.body, put.stderr)
    assert put.json() == {"name": fi, "size": GIB, "sha256": sha}
    assert growth < LIMIT, f"RSS grew by {growth / MIB:.1f} MiB during a 1 GiB PUT"
    assert peak.samples > 10  # the sampler ran during the upload
    stored = web.state_dir / "spool" / web.a.number / "IN" / fi
    assert stored.stat().st_size == GIB
    assert file_sha256(stored) == sha
    assert (web.a.number, "IN", fi, GIB, sha) in await web.uploads()
