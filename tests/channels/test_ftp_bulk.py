"""1,000 files of 4 KiB over one FTPS control connection, with curl and with lftp.

The failure measured on bare aioftp (shared/notes/aioftp-ftps.md): with TLS 1.3 session tickets
every second small transfer on one control connection broke it, so curl lost about half of the
files and lftp could not upload at all. Here every file must be stored, intact.

Measured on the 2-core development machine: lftp 1,000 files in about 5-7 s, curl 7.88 in about
10 s. curl alone used to take 180-240 s: it stalls a second before a data connection whenever the
reply to its ``EPSV`` is already there at its first zero-timeout poll; the channel now answers
``EPSV`` after a millisecond (gateway/channels/ftp_files.py); a regression shows here as minutes.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from tests.channels.ftp_env import FtpEnv, curl_base, lftp_script, name, run

pytestmark = pytest.mark.timeout(300)

FILES = 1000
SIZE = 4096


def make_files(folder: Path, sender: str) -> dict[str, str]:
    """FILES local files named as FI uploads, each SIZE random bytes; name -> SHA-256."""
    folder.mkdir()
    digests = {}
    for seq in range(1, FILES + 1):
        fi = name("FI", sender, f"{seq:05d}")
        body = os.urandom(SIZE)
        (folder / fi).write_bytes(body)
        digests[fi] = hashlib.sha256(body).hexdigest()
    return digests


async def stored(env: FtpEnv) -> dict[str, tuple[int, str]]:
    """What the spool recorded: name -> (size, SHA-256)."""
    return {row[2]: (row[3], row[4]) for row in await env.uploads()}


async def test_curl_uploads_1000_files_over_one_connection(ftp: FtpEnv, tmp_path: Path) -> None:
    """One curl command with a glob of 1,000 -T uploads: one login, 1,000 stored intact."""
    local = tmp_path / "files"
    digests = make_files(local, ftp.a.number)
    started = time.monotonic()
    result = await run(
        [*curl_base(ftp), "-T", "{" + ",".join(sorted(digests)) + "}",
         f"ftp://127.0.0.1:{ftp.port}/IN/"],
        cwd=local, seconds=240,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert await stored(ftp) == {n: (SIZE, d) for n, d in digests.items()}
    assert ftp.metrics.registry.get_sample_value("gateway_sessions_total", {"channel": "ftp"}) == 1
    print(f"curl: {FILES} files in {took:.1f} s")


async def test_lftp_mputs_1000_files_over_one_connection(ftp: FtpEnv, tmp_path: Path) -> None:
    """lftp mput of 1,000 files over one FTPS connection: 1,000 stored intact."""
    local = tmp_path / "files"
    digests = make_files(local, ftp.a.number)
    started = time.monotonic()
    result = await run(lftp_script(ftp, f"lcd {local}; cd /IN; mput FI.*"), seconds=240)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert await stored(ftp) == {n: (SIZE, d) for n, d in digests.items()}
    assert ftp.metrics.registry.get_sample_value("gateway_sessions_total", {"channel": "ftp"}) == 1
    print(f"lftp: {FILES} files in {took:.1f} s")
