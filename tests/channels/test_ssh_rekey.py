"""Bulk transfers move to AES-GCM by one key re-exchange (gateway/channels/ssh_rekey.py).

Driven with OpenSSH's ``sftp -vv``, whose debug lines name the cipher each key exchange picks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from datetime import date
from pathlib import Path

import asyncssh
import pytest

from gateway.channels.ssh_rekey import UPGRADE_AFTER, client_ciphers, is_gcm
from tests.channels.conftest import Env, StartGateway
from tests.channels.spooled import upload_rows
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(120)

TODAY = date(2026, 1, 15)
KEX_LINE = re.compile(r"kex: client->server cipher: (\S+)")


@pytest.fixture
async def gw(start_gateway: StartGateway) -> Env:
    return await start_gateway(today=TODAY)


def kexinit(ciphers: list[bytes]) -> bytes:
    def names(values: list[bytes]) -> bytes:
        text = b",".join(values)
        return len(text).to_bytes(4, "big") + text

    lists = [[b"curve25519-sha256"], [b"ssh-ed25519"], ciphers, ciphers, *[[b"none"]] * 6]
    return bytes((20,)) + bytes(16) + b"".join(names(v) for v in lists) + bytes(5)


def test_the_client_ciphers_are_read_from_its_kexinit() -> None:
    offered = [b"aes128-ctr", b"aes128-gcm@openssh.com"]
    assert client_ciphers(kexinit(offered)) == offered
    assert client_ciphers(b"") == []
    assert client_ciphers(bytes((21,)) + bytes(40)) == []  # not a KEXINIT
    assert client_ciphers(kexinit(offered)[:30]) == []  # cut short


def test_only_aes_gcm_counts_as_gcm() -> None:
    assert is_gcm("aes128-gcm@openssh.com")
    assert is_gcm(b"aes256-gcm@openssh.com")
    assert not is_gcm("aes128-ctr")
    assert not is_gcm("chacha20-poly1305@openssh.com")


async def upload(env: Env, tmp_path: Path, size: int, *options: str) -> tuple[list[str], bytes]:
    """Put a file of ``size`` random bytes with ``sftp -vv``: the client-to-server cipher of
    each key exchange, in order, and the file's bytes."""
    data = os.urandom(size)
    name = f"FI.DMFA.{env.a.number}.20260115.00001.R.1.1"
    (tmp_path / name).write_bytes(data)
    process = await asyncio.create_subprocess_exec(
        require_tool("sftp"), "-vv", "-b", "-", "-i", str(env.key_a.private), "-P", str(env.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", *options,
        f"{env.a.login}@127.0.0.1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    async with asyncio.timeout(90):
        _, err = await process.communicate(f"put {name} IN/{name}\n".encode())
    assert process.returncode == 0, err.decode()[-2000:]
    return KEX_LINE.findall(err.decode()), data


async def test_a_large_upload_moves_the_connection_to_aes_gcm(gw: Env, tmp_path: Path) -> None:
    ciphers, data = await upload(gw, tmp_path, UPGRADE_AFTER + 2 * 1024 * 1024)
    assert ciphers == ["aes128-ctr", "aes128-gcm@openssh.com"]
    rows = await upload_rows(gw.spool)
    assert [(row[3], row[4]) for row in rows] == [(len(data), hashlib.sha256(data).hexdigest())]


async def test_a_client_without_aes_gcm_keeps_its_cipher(gw: Env, tmp_path: Path) -> None:
    ciphers, data = await upload(
        gw, tmp_path, UPGRADE_AFTER + 2 * 1024 * 1024, "-c", "aes256-ctr,aes128-ctr"
    )
    assert ciphers == ["aes256-ctr"]
    rows = await upload_rows(gw.spool)
    assert [row[4] for row in rows] == [hashlib.sha256(data).hexdigest()]


async def test_a_small_upload_pays_no_second_key_exchange(gw: Env, tmp_path: Path) -> None:
    ciphers, _ = await upload(gw, tmp_path, 200 * 1024)
    assert ciphers == ["aes128-ctr"]


async def test_asyncssh_as_the_client_follows_the_move(gw: Env) -> None:
    """Another implementation on the client side: asyncssh, told to prefer AES-CTR, ends on
    AES-GCM after a large upload, and its next request is answered on the new keys."""
    data = os.urandom(UPGRADE_AFTER + 1024 * 1024)
    name = f"FI.DMFA.{gw.a.number}.20260115.00001.R.1.1"
    async with asyncssh.connect(
        "127.0.0.1", gw.port, username=gw.a.login, client_keys=[str(gw.key_a.private)],
        known_hosts=None, agent_path=None,
        encryption_algs=["aes128-ctr", "aes128-gcm@openssh.com"],
    ) as conn:  # fmt: skip
        assert conn.get_extra_info("send_cipher") == "aes128-ctr"
        async with conn.start_sftp_client() as sftp:
            async with sftp.open(f"/IN/{name}", "wb") as file:
                for start in range(0, len(data), 32 * 1024):
                    await file.write(data[start : start + 32 * 1024], start)
            assert (await sftp.stat(f"/IN/{name}")).size == len(data)
        assert conn.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
    rows = await upload_rows(gw.spool)
    assert [row[4] for row in rows] == [hashlib.sha256(data).hexdigest()]
