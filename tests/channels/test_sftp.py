"""The SFTP channel end to end: OpenSSH ``sftp`` and asyncssh's client against the gateway.

Every case checks what a sender's client sees (exit status, listing, the status text with its
code) and what the gateway kept (files under the spool, rows in ``uploads`` and
``upload_refusals``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import date
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gateway.channels.penalties import PenaltyPolicy
from gateway.channels.sftp_values import sftp_error
from gateway.core.codes import Code, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.registry.catalogue import parse_service_catalogue
from gateway.spool import place_return_file
from gateway.spool.folders import MAX_OPEN_FILES
from tests.channels.conftest import Env, StartGateway, run_sftp
from tests.channels.spooled import committed_files, refusal_rows, upload_rows

pytestmark = pytest.mark.timeout(120)

TODAY = date(2026, 1, 15)


def name(kind: str, sender: str, env: str = "R", seq: str = "00001", app: str = "DMFA") -> str:
    """An upload name dated TODAY; GO has no part number."""
    suffix = ".1" if kind == "GO" else ".1.1"
    return f"{kind}.{app}.{sender}.20260115.{seq}.{env}{suffix}"


@pytest.fixture
async def gw(start_gateway: StartGateway) -> Env:
    """A gateway whose name check runs on TODAY."""
    return await start_gateway(today=TODAY)


async def uploads(env: Env) -> list[tuple[str, str, str, int, str]]:
    """Rows of ``uploads``: (sender, folder, name, size, sha256)."""
    return await upload_rows(env.spool)


async def refusals(env: Env) -> list[tuple[str, str, int]]:
    """Rows of ``upload_refusals``: (folder, name, code)."""
    return await refusal_rows(env.spool)


def visible_files(state_dir: Path) -> list[str]:
    """Every committed file under the spool (relative paths), temp area excluded."""
    return committed_files(state_dir)


def temp_files(state_dir: Path) -> list[str]:
    """Files left in the spool's temp area."""
    return sorted(p.name for p in (state_dir / "spool" / ".tmp").iterdir())


def make_file(tmp_path: Path, size: int, label: str = "data") -> Path:
    """A local file of ``size`` random bytes."""
    path = tmp_path / f"{label}-{size}"
    path.write_bytes(os.urandom(size))
    return path


async def refused_reason(env: Env) -> str:
    """The reason asyncssh's client is given when the gateway disconnects it after login."""
    try:
        conn, client = await asyncssh.create_connection(
            Watcher, "127.0.0.1", env.port, username=env.a.login,
            client_keys=[str(env.key_a.private)], known_hosts=None, agent_path=None,
        )  # fmt: skip
    except asyncssh.DisconnectError as exc:  # the disconnect overtook the login's completion
        return exc.reason
    async with asyncio.timeout(10):
        await conn.wait_closed()
    assert isinstance(client, Watcher)
    assert isinstance(client.lost, asyncssh.DisconnectError)
    return client.lost.reason


class Watcher(asyncssh.SSHClient):
    """A client that keeps the reason its connection was closed with."""

    lost: Exception | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


# -- valid sets ---------------------------------------------------------------------------------


async def test_valid_sets_into_in_intest_intest_s(gw: Env, tmp_path: Path) -> None:
    """A set goes into IN, INTEST and INTEST-S with OpenSSH sftp; files and rows match."""
    me = gw.a.number
    local = make_file(tmp_path, 70_000)
    names = {
        "IN": [name("FI", me), name("FS", me), name("GO", me)],
        "INTEST": [name("FI", me, "T", "00002"), name("FS", me, "T", "00002"),
                   name("GO", me, "T", "00002")],
        "INTEST-S": [name("FI", me, "S", "00003"), name("GO", me, "S", "00003")],
    }  # fmt: skip
    batch = "".join(f"put {local} {folder}/{n}\n" for folder, ns in names.items() for n in ns)
    batch += "".join(f"ls -1 {folder}\n" for folder in names)
    result = await run_sftp(gw, batch)
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    expected = sorted(f"{me}/{folder}/{n}" for folder, ns in names.items() for n in ns)
    assert visible_files(gw.state_dir) == expected
    rows = await uploads(gw)
    assert sorted((r[1], r[2]) for r in rows) == sorted(
        (folder, n) for folder, ns in names.items() for n in ns
    )
    assert {(r[0], r[3], r[4]) for r in rows} == {(me, 70_000, digest)}
    for ns in names.values():
        for n in ns:
            assert n in result.stdout
    assert temp_files(gw.state_dir) == []


async def test_root_shows_exactly_the_six_folders(gw: Env) -> None:
    """`ls /` lists IN INTEST INTEST-S OUT OUTTEST OUTTEST-S and nothing else."""
    result = await run_sftp(gw, "ls -1a /\n")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if not line.startswith("sftp>")]
    listed = [line.removeprefix("/") for line in lines]
    assert [x for x in listed if x not in {".", ".."}] == [f.value for f in Folder]


# -- refused names (item 3) ---------------------------------------------------------------------

REFUSED_NAMES = [
    pytest.param("IN", "FI.DMFA.{other}.20260115.00001.R.1.1", Code.SENDER_NOT_OWNER, id="108"),
    pytest.param("IN", "FI.DIMN.{me}.20260115.00001.R.1.1", Code.APPLICATION_NOT_ALLOWED,
                 id="154"),
    pytest.param("INTEST", "FI.DMFA.{me}.20260115.00001.R.1.1", Code.R_FILE_OUTSIDE_IN, id="118"),
    pytest.param("IN", "FI.DMFA.{me}.20260115.00001.T.1.1", Code.T_FILE_OUTSIDE_INTEST, id="119"),
    pytest.param("IN", "FI.DMFA.{me}.20260115.00001.S.1.1", Code.S_FILE_OUTSIDE_INTEST_S,
                 id="257"),
    pytest.param("IN", "XX.DMFA.{me}.20260115.00001.R.1.1", Code.NAME_PREFIX_INVALID, id="129"),
    pytest.param("IN", "FI.DMFA.{me}.20270115.00001.R.1.1", Code.DATE_IN_FUTURE, id="111"),
    pytest.param("IN", "FI.DMFA.{me}.20260115.00000.R.1.1", Code.SEQUENCE_ZERO, id="127"),
]  # fmt: skip


@pytest.mark.parametrize(("folder", "pattern", "code"), REFUSED_NAMES)
async def test_refused_names_openssh(
    gw: Env, tmp_path: Path, folder: str, pattern: str, code: Code
) -> None:
    """OpenSSH sftp's put is refused before a byte is written; the refusal is recorded."""
    bad = pattern.format(me=gw.a.number, other=gw.b.number)
    local = make_file(tmp_path, 1000)
    result = await run_sftp(gw, f"put {local} {folder}/{bad}\n")
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    assert visible_files(gw.state_dir) == []
    assert temp_files(gw.state_dir) == []
    assert await refusals(gw) == [(folder, bad, int(code))]


@pytest.mark.parametrize(("folder", "pattern", "code"), REFUSED_NAMES)
async def test_refused_names_asyncssh(gw: Env, folder: str, pattern: str, code: Code) -> None:
    """asyncssh's client receives the reason text starting with the code."""
    bad = pattern.format(me=gw.a.number, other=gw.b.number)
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPError) as caught:
            await sftp.open(f"/{folder}/{bad}", "wb")
    assert caught.value.reason.startswith(f"{int(code)}: ")
    assert visible_files(gw.state_dir) == []


# -- limits (item 5) ------------------------------------------------------------------------------


async def test_names_follow_the_catalogues_parts_flags(start_gateway: StartGateway) -> None:
    """The channel reads names with the service catalogue's parts flags (the pipeline's rule):
    with DMFA catalogued without parts, a DMFA name without the suffix is taken and one with it
    is refused, the reverse of the default."""
    catalogue = parse_service_catalogue(
        {
            "services": {
                "DMFA": {
                    "title": "DmfA",
                    "parts": False,
                    "destination": {"kind": "directory", "path": "routed/DMFA"},
                }
            }
        }
    )
    env = await start_gateway(today=TODAY, parted=catalogue.parts_rule())
    bare = f"FI.DMFA.{env.a.number}.20260115.00001.R"
    async with await env.connect() as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(f"/IN/{bare}", "wb") as file:
            await file.write(b"<declaration/>")
        with pytest.raises(asyncssh.SFTPError) as caught:
            await sftp.open(f"/IN/{bare}.1.1", "wb")
    assert caught.value.reason.startswith("131: ")  # a parts suffix where none belongs
    assert visible_files(env.state_dir) == [f"{env.a.number}/IN/{bare}"]


async def test_file_too_large_is_refused(start_gateway: StartGateway, tmp_path: Path) -> None:
    """Past max_file_bytes the upload fails (184) and nothing stays, for both clients."""
    gw = await start_gateway(today=TODAY, max_file_bytes=100_000)
    me = gw.a.number
    local = make_file(tmp_path, 300_000)
    result = await run_sftp(gw, f"put {local} IN/{name('FI', me)}\n")
    assert result.returncode != 0
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPError) as caught:
            async with sftp.open(f"/IN/{name('FI', me, seq='00002')}", "wb") as file:
                await file.write(os.urandom(300_000))
    assert caught.value.reason.startswith("184: ")
    await gw.gateway.wait_sftp_ended(2)
    assert visible_files(gw.state_dir) == []
    assert temp_files(gw.state_dir) == []
    codes = [code for _, _, code in await refusals(gw)]
    assert codes == [184, 184]


async def test_quota_is_refused(start_gateway: StartGateway, tmp_path: Path) -> None:
    """Pending bytes beyond the sender's quota are refused with 920."""
    gw = await start_gateway(today=TODAY, quota=150_000)
    me = gw.a.number
    local = make_file(tmp_path, 100_000)
    first = await run_sftp(gw, f"put {local} IN/{name('FI', me)}\n")
    assert first.returncode == 0, first.stderr
    second = await run_sftp(gw, f"put {local} IN/{name('FS', me)}\n")
    assert second.returncode != 0
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPError) as caught:
            async with sftp.open(f"/IN/{name('GO', me)}", "wb") as file:
                await file.write(os.urandom(100_000))
    assert caught.value.reason.startswith("920: ")
    assert visible_files(gw.state_dir) == [f"{me}/IN/{name('FI', me)}"]


async def test_sessions_per_sender_are_limited(start_gateway: StartGateway) -> None:
    """A sender's session beyond the limit is disconnected with 921, for both clients."""
    gw = await start_gateway(today=TODAY, max_sessions=1)
    async with await gw.connect():
        result = await run_sftp(gw, "ls\n")
        assert result.returncode != 0
        assert "921" in result.stderr
        assert (await refused_reason(gw)).startswith("921: ")
        other = await run_sftp(gw, "ls\n", key=gw.key_b, login=gw.b.login)
        assert other.returncode == 0, other.stderr


async def test_idle_session_is_closed(start_gateway: StartGateway) -> None:
    """An authenticated session idle past the timeout is disconnected."""
    gw = await start_gateway(today=TODAY, idle=0.3)
    conn = await gw.connect()
    async with asyncio.timeout(10):
        await conn.wait_closed()


async def test_login_grace_closes_silent_connections(start_gateway: StartGateway) -> None:
    """A connection that does not authenticate within the grace time is closed."""
    gw = await start_gateway(today=TODAY, grace=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    banner = await reader.readline()
    assert banner == b"SSH-2.0-BatchGateway\r\n"
    async with asyncio.timeout(10):
        while await reader.read(4096):
            pass
    writer.close()


async def test_unauthenticated_connections_are_capped(start_gateway: StartGateway) -> None:
    """Beyond max_startups unauthenticated connections, a new one is closed at once."""
    gw = await start_gateway(today=TODAY, max_startups=2)
    held = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(2)]
    for reader, _ in held:
        assert (await reader.readline()).startswith(b"SSH-2.0-")
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    async with asyncio.timeout(10):
        while await reader.read(4096):
            pass
    writer.close()
    for _, held_writer in held:
        held_writer.close()
        await held_writer.wait_closed()
    result = await run_sftp(gw, "pwd\n")
    assert result.returncode == 0, result.stderr


# -- path attacks and permissions (item 2) ------------------------------------------------------


async def test_path_attacks_openssh(gw: Env, tmp_path: Path) -> None:
    """Traversal, absolute paths outside the root and mkdir/symlink are refused for sftp."""
    me = gw.a.number
    local = make_file(tmp_path, 100)
    good = name("FI", me)
    for command in [
        f"put {local} ../{good}",
        f"put {local} /etc/{good}",
        f"put {local} IN/../OUT/{good}",
        f"put {local} /IN/../../{good}",
        f"put {local} OUT/{good}",
        f"put {local} /{good}",
        "get /etc/passwd",
        "get IN/../../../etc/passwd",
        "ls /etc",
        "mkdir IN/sub",
        "mkdir /NEW",
        f"symlink /IN/{good} /IN/link",
        "rmdir IN",
        f"rename IN/{good} OUT/{good}",
    ]:
        result = await run_sftp(gw, command + "\n", cwd=tmp_path)
        assert result.returncode != 0, command
    assert visible_files(gw.state_dir) == []
    assert not (tmp_path / "passwd").exists()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (b"/IN/x\x00y", 922),
        (b"../IN/x", 922),
        (b"/IN/../OUT/x", 922),
        (b"/IN//x", 922),
        (b"/IN/a\\b", 922),
        (b"/IN/e\xcc\x81", 922),
        (b"/IN/" + b"A" * 256, 922),
        (b"/etc/passwd", 922),
        (b"/OUT/FI.DMFA.000001.20260115.00001.R.1.1", 923),
    ],
)
async def test_path_attacks_asyncssh(gw: Env, path: bytes, code: int) -> None:
    """Raw paths (NUL, traversal, backslash, NFD, 256 bytes) are refused with their code."""
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPError) as caught:
            await sftp.open(path, "wb")
    assert caught.value.reason.startswith(f"{code}: ")


async def test_other_senders_files_are_out_of_reach(gw: Env, tmp_path: Path) -> None:
    """Sender A neither lists, reads, removes nor overwrites sender B's pending or OUT files."""
    b_name = name("FI", gw.b.number)
    local = make_file(tmp_path, 500)
    put = await run_sftp(gw, f"put {local} IN/{b_name}\n", key=gw.key_b, login=gw.b.login)
    assert put.returncode == 0, put.stderr
    out_name = "FO.ACRF.999999.20260115.00001.R"
    place_return_file(gw.spool.layout, SenderNumber(gw.b.number), Folder.OUT, out_name, b"<x/>")
    listing = await run_sftp(gw, "ls -1 IN\nls -1 OUT\n")
    assert listing.returncode == 0, listing.stderr
    assert b_name not in listing.stdout
    assert out_name not in listing.stdout
    for command in [f"get OUT/{out_name}", f"rm OUT/{out_name}", f"rm IN/{b_name}",
                    f"get IN/{b_name}"]:  # fmt: skip
        result = await run_sftp(gw, command + "\n", cwd=tmp_path)
        assert result.returncode != 0, command
    assert (gw.spool.layout.out_file(SenderNumber(gw.b.number), Folder.OUT, out_name)).exists()
    assert visible_files(gw.state_dir) == [f"{gw.b.number}/IN/{b_name}"]


async def test_no_overwrite_and_own_pending_files_can_be_removed(gw: Env, tmp_path: Path) -> None:
    """A second put of one name is refused (924); `rm` removes an own pending file."""
    me = gw.a.number
    fi = name("FI", me)
    local = make_file(tmp_path, 2000)
    assert (await run_sftp(gw, f"put {local} IN/{fi}\n")).returncode == 0
    again = await run_sftp(gw, f"put {local} IN/{fi}\n")
    assert again.returncode != 0
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPError) as caught:
            await sftp.open(f"/IN/{fi}", "wb")
        assert caught.value.reason.startswith("924: ")
        with pytest.raises(asyncssh.SFTPError):
            await sftp.open(f"/IN/{fi}", "rb")
    removed = await run_sftp(gw, f"rm IN/{fi}\nls -1 IN\n")
    assert removed.returncode == 0, removed.stderr
    assert visible_files(gw.state_dir) == []
    assert await uploads(gw) == []


async def test_out_folders_list_download_delete(gw: Env, tmp_path: Path) -> None:
    """Return files in OUT* are listed, downloaded intact and deleted; OUT is read-only."""
    me = SenderNumber(gw.a.number)
    body = os.urandom(50_000)
    ack = "FO.ACRF.999999.20260115.00001.T"
    place_return_file(gw.spool.layout, me, Folder.OUTTEST, ack, body)
    result = await run_sftp(gw, f"ls -l OUTTEST\nget OUTTEST/{ack}\nrm OUTTEST/{ack}\nls OUTTEST\n",
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ack).read_bytes() == body
    assert not gw.spool.layout.out_file(me, Folder.OUTTEST, ack).exists()


async def test_asyncssh_sees_same_results(gw: Env) -> None:
    """asyncssh: put, list, stat, refused mkdir/symlink/setstat-elsewhere, rename rules."""
    me = gw.a.number
    fi = name("FI", me)
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        assert sorted(await sftp.listdir("/")) == sorted([".", ".."] + [f.value for f in Folder])
        async with sftp.open(f"/IN/{fi}", "wb") as file:
            await file.write(b"declaration")
        assert await sftp.listdir("/IN") == [".", "..", fi]
        assert (await sftp.stat(f"/IN/{fi}")).size == len(b"declaration")
        for call in (
            sftp.mkdir("/IN/sub"),
            sftp.symlink(f"/IN/{fi}", "/IN/link"),
            sftp.rename(f"/IN/{fi}", f"/IN/{fi}.X"),
            sftp.rename(f"/IN/{fi}", f"/INTEST/{fi}"),
            sftp.chmod("/OUT", 0o777),
            sftp.remove("/OUT"),
        ):
            with pytest.raises(asyncssh.SFTPError) as caught:
                await call
            assert caught.value.reason[:4] in {"922:", "923:"}, caught.value.reason


# -- temporary names and aborted uploads --------------------------------------------------------


async def test_winscp_style_filepart_then_rename(gw: Env, tmp_path: Path) -> None:
    """NAME.filepart then rename to NAME commits once; before the rename nothing is visible."""
    me = gw.a.number
    fi = name("FI", me)
    body = os.urandom(200_000)
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(f"/IN/{fi}.filepart", "wb") as file:
            await file.write(body)
        assert await sftp.listdir("/IN") == [".", "..", f"{fi}.filepart"]
        await sftp.setstat(f"/IN/{fi}.filepart", asyncssh.SFTPAttrs(mtime=0, atime=0))
        assert visible_files(gw.state_dir) == []
        await sftp.rename(f"/IN/{fi}.filepart", f"/IN/{fi}")
        assert await sftp.listdir("/IN") == [".", "..", fi]
    assert visible_files(gw.state_dir) == [f"{me}/IN/{fi}"]
    rows = await uploads(gw)
    assert rows == [(me, "IN", fi, len(body), hashlib.sha256(body).hexdigest())]
    local = make_file(tmp_path, 3000)
    fs = name("FS", me)
    result = await run_sftp(gw, f"put {local} IN/{fs}.part\nrename IN/{fs}.part IN/{fs}\n")
    assert result.returncode == 0, result.stderr
    assert f"{me}/IN/{fs}" in visible_files(gw.state_dir)


async def test_temp_name_is_checked_and_dropped_without_rename(gw: Env) -> None:
    """A temp name is checked as its final name; without a rename nothing is kept."""
    me = gw.a.number
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPError) as caught:
            await sftp.open(f"/IN/{name('FI', gw.b.number)}.tmp", "wb")
        assert caught.value.reason.startswith("108: ")
        async with sftp.open(f"/IN/{name('FI', me)}.tmp", "wb") as file:
            await file.write(b"x" * 1000)
    await gw.gateway.wait_sftp_ended(1)
    assert visible_files(gw.state_dir) == []
    assert temp_files(gw.state_dir) == []
    assert await uploads(gw) == []


async def test_aborted_upload_leaves_nothing(gw: Env) -> None:
    """A connection dropped mid-upload leaves no file, no row and no temp file."""
    me = gw.a.number
    conn = await gw.connect()
    sftp = await conn.start_sftp_client()
    file = await sftp.open(f"/IN/{name('FI', me)}", "wb")
    for _ in range(8):
        await file.write(os.urandom(64 * 1024))
    conn.abort()
    await gw.gateway.wait_sftp_ended(1)
    assert visible_files(gw.state_dir) == []
    assert temp_files(gw.state_dir) == []
    assert await uploads(gw) == []


async def test_open_files_per_session_are_bounded(gw: Env) -> None:
    """A session cannot hold more than MAX_OPEN_FILES handles (descriptor exhaustion)."""
    me = gw.a.number
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        handles = [
            await sftp.open(f"/IN/{name('FI', me, seq=f'{i + 1:05d}')}", "wb")
            for i in range(MAX_OPEN_FILES)
        ]
        with pytest.raises(asyncssh.SFTPError) as caught:
            await sftp.open(f"/IN/{name('FS', me)}", "wb")
        assert caught.value.reason.startswith("923: ")
        for handle in handles:
            await handle.close()
    assert len(visible_files(gw.state_dir)) == MAX_OPEN_FILES


async def test_authentication_failures(gw: Env) -> None:
    """Another sender's key, an unknown login and password auth are refused."""
    with pytest.raises(asyncssh.PermissionDenied):
        await gw.connect(key=gw.key_b)
    with pytest.raises(asyncssh.PermissionDenied):
        await gw.connect(login="nobody")
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            "127.0.0.1", gw.port, username=gw.a.login, password="secret-guess-1",
            client_keys=None, known_hosts=None, agent_path=None,
        )  # fmt: skip


async def _login_from(gw: Env, local: str, key: Any = None) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1", gw.port, local_addr=(local, 0), username=gw.a.login,
        client_keys=[str((key or gw.key_a).private)], known_hosts=None, agent_path=None,
    )  # fmt: skip


async def test_a_source_that_keeps_failing_is_refused_while_others_log_in(gw: Env) -> None:
    """Four failed logins from 127.0.0.0/24 (4 x 5 s > 15 s) close that network's next
    connection at once, even with the right key, while a sender on 127.0.1.0/24 logs in."""
    for _ in range(4):
        with pytest.raises(asyncssh.PermissionDenied):
            await _login_from(gw, "127.0.0.1", gw.key_b)
    with pytest.raises((asyncssh.Error, OSError)):
        async with asyncio.timeout(10):
            await _login_from(gw, "127.0.0.2")
    async with await _login_from(gw, "127.0.1.1") as conn, conn.start_sftp_client() as sftp:
        assert "IN" in await sftp.listdir("/")


async def test_unauthenticated_connections_per_source_are_capped(
    start_gateway: StartGateway,
) -> None:
    """With two unauthenticated connections held from 127.0.0.0/24, a third from there is
    closed without a banner, while 127.0.1.0/24 still gets one."""
    gw = await start_gateway(today=TODAY, penalties=PenaltyPolicy(max_startups_per_source=2))
    held = [
        await asyncio.open_connection("127.0.0.1", gw.port, local_addr=("127.0.0.1", 0))
        for _ in range(2)
    ]
    for reader, _ in held:
        assert (await reader.readline()).startswith(b"SSH-2.0-")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.port, local_addr=("127.0.0.3", 0)
    )
    async with asyncio.timeout(10):
        assert await reader.read(4096) == b""
    writer.close()
    other_reader, other = await asyncio.open_connection(
        "127.0.0.1", gw.port, local_addr=("127.0.1.1", 0)
    )
    assert (await other_reader.readline()).startswith(b"SSH-2.0-")
    for _, held_writer in [*held, (other_reader, other)]:
        held_writer.close()
        await held_writer.wait_closed()


async def test_a_connection_flood_is_cut_off_before_the_key_exchange(gw: Env) -> None:
    """Connections from 127.0.0.0/24 that take the banner and leave (a DHEat-style flood, 1 s
    each) are served until their charge passes 15 s; from then on that network's connections
    close without a banner, while a sender on 127.0.1.0/24 still logs in."""
    served = 0
    async with asyncio.timeout(30):
        for attempt in range(40):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", gw.port, local_addr=(f"127.0.0.{5 + attempt % 2}", 0)
            )
            first = await reader.readline()
            writer.close()
            await writer.wait_closed()
            if not first:
                break
            assert first.startswith(b"SSH-2.0-")
            served += 1
            await asyncio.sleep(0.02)  # the server charges a connection as it sees it go
    assert 15 <= served <= 25, served  # 16 in theory; a charge can lag a loaded server
    async with await _login_from(gw, "127.0.1.1") as conn, conn.start_sftp_client() as sftp:
        assert "OUT" in await sftp.listdir("/")


async def test_no_shell_exec_or_forwarding(gw: Env) -> None:
    """Only the sftp subsystem exists: exec, shell and port forwarding are refused."""
    async with await gw.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run("id", check=True)
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process()
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_connection(asyncio.Protocol, "127.0.0.1", gw.port)


async def test_a_terminal_is_refused_even_for_the_sftp_subsystem(gw: Env) -> None:
    """No PTY: a session asking for a terminal before the sftp subsystem is refused, and a
    plain SFTP session on the same connection still works."""
    async with await gw.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError, match="PTY"):
            await conn.create_session(
                asyncssh.SSHClientSession, subsystem="sftp", term_type="xterm"
            )
        async with conn.start_sftp_client() as sftp:
            assert "IN" in await sftp.listdir("/")


def test_every_code_has_an_sftp_status_with_the_code_first() -> None:
    """The SFTP translation covers every code and puts the code at the start of the text."""
    for code in Code:
        error = sftp_error(reject(code))
        assert error.reason.startswith(f"{int(code)}: ")


# -- the sessions a lone close counts (issue 14) ------------------------------------------------


async def _until(check: Any, what: str) -> None:
    """Wait (at most 10 s) until ``check()`` holds: the server ends a session when it has seen
    its connection go, which the client does not wait for."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_open_sessions_are_counted_until_each_ends(gw: Env) -> None:
    """The folder service counts a login as a session until it ends, whether it ran the sftp
    subsystem or not; uploads of the one session left are stored and listed."""
    folders = gw.gateway.folders
    assert folders.sessions_open == 0
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        assert folders.sessions_open == 1
        async with await gw.connect():  # a login that never starts the sftp subsystem
            await _until(lambda: folders.sessions_open == 2, "two sessions")
        await _until(lambda: folders.sessions_open == 1, "the second one ended")
        names = [name("FI", gw.a.number, seq=f"0000{i}") for i in range(1, 4)]
        for upload in names:
            async with sftp.open(f"/IN/{upload}", "wb") as file:
                await file.write(b"<declaration/>")
        assert sorted(await sftp.listdir("/IN")) == [".", "..", *names]
    await _until(lambda: folders.sessions_open == 0, "no session left")
    assert [row[2] for row in sorted(await uploads(gw))] == names
