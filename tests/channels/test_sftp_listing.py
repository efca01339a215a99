"""SFTP directory handles over the streamed listing (SECURITY.md 14).

asyncssh reads a directory handle's names from the server's iterator as READDIR requests come,
so a handle the client leaves half-read holds an open listing (a folder open and a chunk). A
session holds at most ``MAX_OPEN_LISTINGS``; a handle the client closes gives its listing back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncssh
import pytest

from gateway.core.folders import Folder
from gateway.spool import place_return_file
from gateway.spool.folders import MAX_OPEN_LISTINGS
from tests.channels.conftest import Env

pytestmark = pytest.mark.timeout(60)

# More than one READDIR reply (asyncssh sends 128 names a reply): a handle read once stays open.
FILES = 300


async def test_half_read_handles_are_capped_and_closing_one_frees_it(env: Env) -> None:
    """Eight half-read handles of OUT are open at once; a ninth is refused with 923; once the
    client closes one, a whole listing of the 300 files works again."""
    names = [f"FO.ACRF.DMFA.{env.a.number}.20260115.{i:05d}.R" for i in range(FILES)]
    for name in names:
        place_return_file(env.spool.layout, env.sender_a(), Folder.OUT, name, b"", sync_dir=False)
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        held: list[AsyncIterator[asyncssh.SFTPName]] = []
        for _ in range(MAX_OPEN_LISTINGS):
            handle = sftp.scandir("/OUT")
            await anext(handle)
            held.append(handle)
        ninth = sftp.scandir("/OUT")
        with pytest.raises(asyncssh.SFTPError) as refused:
            await anext(ninth)
        assert refused.value.reason.startswith("923: at most 8 listings open"), refused.value
        await held.pop().aclose()  # type: ignore[attr-defined]  # an async generator
        listed = await sftp.listdir("/OUT")
        assert sorted(n for n in listed if not n.startswith(".")) == names
        for handle in held:
            await handle.aclose()  # type: ignore[attr-defined]
