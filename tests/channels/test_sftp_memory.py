"""A 512 MiB SFTP upload streams through the gateway with flat memory (issue 14, big files).

The writer lets up to ``MAX_IN_FLIGHT`` chunks of an upload wait for the disk; this shows the
bound holds end to end with OpenSSH's ``sftp``, which keeps 64 write requests in flight. The
gateway runs in this test's process; the client is a subprocess, so its buffers are not
counted. RSS is sampled as in the web channel's memory test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.channels.conftest import StartGateway, run_sftp
from tests.channels.test_sftp import TODAY, name, uploads
from tests.channels.test_web_memory import Peak, rss, sparse_body

pytestmark = pytest.mark.timeout(180)

MIB = 1024 * 1024
SIZE = 512 * MIB
LIMIT = 64 * MIB


async def test_a_512_mib_put_streams_with_flat_memory(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """OpenSSH sftp puts 512 MiB; the gateway's process grows by less than 64 MiB of RSS, and
    the upload is recorded with the size and SHA-256 that were sent."""
    env = await start_gateway(today=TODAY, max_file_bytes=2 * SIZE, quota=4 * SIZE)
    body = tmp_path / "body"
    sha = sparse_body(body, SIZE)
    warm = tmp_path / "warm"
    warm.write_bytes(b"x" * 4096)
    fi = name("FI", env.a.number)
    # A first small put warms the session and database paths (one-time allocations).
    first = await run_sftp(env, f"put {warm} /IN/{name('FI', env.a.number, seq='00002')}\n")
    assert first.returncode == 0, first.stderr
    before = rss()
    started = time.monotonic()
    with Peak() as peak:
        put = await run_sftp(env, f"put {body} /IN/{fi}\n")
    seconds = time.monotonic() - started
    growth = peak.highest - before
    print(
        f"512 MiB put in {seconds:.1f} s; RSS before {before / MIB:.1f} MiB, peak "
        f"{peak.highest / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB ({peak.samples} samples)"
    )
    assert put.returncode == 0, put.stderr
    assert (env.a.number, "IN", fi, SIZE, sha) in await uploads(env)
    assert growth < LIMIT, f"RSS grew by {growth / MIB:.1f} MiB during a 512 MiB put"
    assert peak.samples > 10  # the sampler ran during the upload
