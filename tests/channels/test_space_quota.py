"""A real quota and answered local faults (issue 15 items 2 and 3; SECURITY.md 21, 22), as a
sender's client sees them: OpenSSH ``sftp`` and asyncssh over SFTP, ``curl`` over HTTPS,
``ftplib`` over FTPS.

Faults are injected where the spool owns them, never by filling a disk: the spool's storage
boundary (:class:`gateway.spool.disk.Disk`: every upload byte is written through it, and its
free-space probe feeds the floor) is swapped for a small fake, and a database failure is made
by renaming the ``uploads`` table under the running gateway. Over FTPS the floor is the real
one (``[limits] min_free_bytes`` above what the disk holds, judged by ``statvfs``) and the
database fails only at the commit (a SQLite trigger refuses new ``uploads`` rows: FTP has no
per-write answer to wait for before breaking it). No test waits on a timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import io
import os
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from structlog.testing import capture_logs

from gateway.core.codes import Code
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.metrics import Metrics
from gateway.ops.settings import LimitSettings
from gateway.spool import SpoolLimits, place_return_file
from gateway.spool.disk import Disk, FreeSpace
from tests.channels.conftest import Env, StartGateway, run_sftp
from tests.channels.ftp_env import FtpEnv, StartFtp, ftps_client, reply_of
from tests.channels.spooled import committed_files, refusal_rows, upload_rows
from tests.channels.test_sftp import TODAY, name
from tests.channels.web_env import StartWeb, WebEnv, curl

MIB = 1024 * 1024
GIB = 1024 * MIB
TICKETED = re.compile(r"999: internal error, ticket [0-9a-f]{12}")


class FullAfter:
    """A write that takes ``room`` bytes, then fails with ENOSPC (a filesystem filling up), or
    with the ``error`` given."""

    def __init__(self, room: int, error: int = errno.ENOSPC) -> None:
        self.room = room
        self.error = error

    def __call__(self, fd: int, buffers: Sequence[memoryview]) -> int:
        size = sum(len(buffer) for buffer in buffers)
        if size > self.room:
            raise OSError(self.error, os.strerror(self.error))
        self.room -= size
        return os.writev(fd, buffers)


@dataclasses.dataclass
class Probe:
    """A free-space probe a test sets."""

    free: int = 100 * GIB
    total: int = 200 * GIB

    def __call__(self, path: Path) -> FreeSpace:
        return FreeSpace(free=self.free, total=self.total)


def floor_of(env: Env | WebEnv, min_free_bytes: int, probe: Probe) -> None:
    """Give the running spool a floor and the probe to judge it by."""
    spool = env.spool
    spool.limits = dataclasses.replace(spool.limits, min_free_bytes=min_free_bytes)
    spool.disk = dataclasses.replace(spool.disk, free_space=probe)


@pytest.fixture
def uploads_table_gone(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A function that renames ``uploads`` away in the gateway's SQLite file (the database
    failing under a commit), and puts it back at the end of the test."""
    renamed: list[Path] = []

    def break_it(database_url: str) -> None:
        path = Path(database_url.removeprefix("sqlite+aiosqlite:///"))
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE uploads RENAME TO uploads_gone")
        renamed.append(path)

    yield break_it
    for path in renamed:
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE uploads_gone RENAME TO uploads")


async def _put(sftp: Any, path: str, size: int, block: int = 64 * 1024) -> str | None:
    """Upload ``size`` random bytes with asyncssh; the refusal's text, or None."""
    try:
        async with sftp.open(path, "wb") as file:
            for offset in range(0, size, block):
                await file.write(os.urandom(min(block, size - offset)))
    except asyncssh.SFTPError as exc:
        return str(exc.reason)
    return None


# -- the quota -----------------------------------------------------------------------------------


async def test_concurrent_uploads_never_commit_past_the_quota(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """32 parallel 1 MiB uploads in one session, and OpenSSH sftp in four more sessions at the
    same time, against a 3 MiB quota: what is committed never passes the quota, every other
    upload gets 920, and no reservation is left over."""
    gw = await start_gateway(today=TODAY, quota=3 * MIB)
    me = gw.a.number
    local = tmp_path / "one-mib"
    local.write_bytes(os.urandom(MIB))

    async with asyncio.timeout(120):
        async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
            in_session = [
                _put(sftp, f"/IN/{name('FI', me, seq=f'{i + 1:05d}')}", MIB) for i in range(32)
            ]
            openssh = [
                run_sftp(gw, f"put {local} IN/{name('FI', me, seq=f'{i + 101:05d}')}\n")
                for i in range(4)
            ]
            answers = await asyncio.gather(*in_session)
            runs = await asyncio.gather(*openssh)

    committed = await upload_rows(gw.spool)
    assert sum(size for *_, size, _ in committed) <= 3 * MIB
    assert len(committed) == 3
    refused = [a for a in answers if a is not None]
    assert all(a.startswith("920: ") for a in refused), refused
    assert len(refused) + sum(r.returncode != 0 for r in runs) == 36 - 3
    assert {code for *_, code in await refusal_rows(gw.spool)} == {int(Code.QUOTA_EXCEEDED)}
    assert gw.spool.quota.statistics(SenderNumber(me)).reserved == 0
    assert sorted(committed_files(gw.state_dir)) == sorted(
        f"{me}/IN/{n}" for _, _, n, *_ in committed
    )


async def test_a_parked_upload_holds_its_quota_until_it_is_dropped(
    start_gateway: StartGateway,
) -> None:
    """An upload parked under its temporary name counts against the quota (it holds disk
    space); dropping it gives the bytes back."""
    gw = await start_gateway(today=TODAY, quota=MIB)
    me = gw.a.number
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        assert await _put(sftp, f"/IN/{name('FI', me)}.filepart", 800_000) is None
        refused = await _put(sftp, f"/IN/{name('FS', me)}", 300_000)
        assert refused is not None
        assert refused.startswith("920: ")
        await sftp.remove(f"/IN/{name('FI', me)}.filepart")
        assert await _put(sftp, f"/IN/{name('FS', me)}", 300_000) is None
    assert [n for _, _, n, *_ in await upload_rows(gw.spool)] == [name("FS", me)]


async def test_open_uploads_per_session_are_capped(gw_capped: Env) -> None:
    """A session holds at most session_max_open_uploads uploads in progress (923); closing
    one lets the next open."""
    me = gw_capped.a.number
    async with await gw_capped.connect() as conn, conn.start_sftp_client() as sftp:
        first = await sftp.open(f"/IN/{name('FI', me, seq='00001')}", "wb")
        second = await sftp.open(f"/IN/{name('FI', me, seq='00002')}", "wb")
        with pytest.raises(asyncssh.SFTPError) as caught:
            await sftp.open(f"/IN/{name('FI', me, seq='00003')}", "wb")
        assert (
            caught.value.reason == "923: at most 2 uploads at once in one session; close one first"
        )
        await first.write(b"x")
        await first.close()
        third = await sftp.open(f"/IN/{name('FI', me, seq='00003')}", "wb")
        await third.close()
        await second.close()
    assert len(await upload_rows(gw_capped.spool)) == 3
    assert await refusal_rows(gw_capped.spool) == []  # not a name problem: no negative ACRF


@pytest.fixture
async def gw_capped(start_gateway: StartGateway) -> Env:
    """A gateway allowing two uploads at once per session."""
    env = await start_gateway(today=TODAY)
    env.spool.limits = dataclasses.replace(env.spool.limits, session_max_open_uploads=2)
    return env


# -- short of space --------------------------------------------------------------------------------


async def test_below_the_free_space_floor_new_uploads_get_929(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Below the floor a new upload is refused with 929 (OpenSSH fails, asyncssh reads the code),
    nothing is recorded for a negative ACRF, the refusal is counted and logged, readiness says
    so; with space back the same upload goes through."""
    gw = await start_gateway(today=TODAY)
    metrics = gw.gateway.folders.metrics = Metrics.create()
    probe = Probe(free=500 * MIB)
    floor_of(gw, GIB, probe)
    me = gw.a.number
    local = tmp_path / "fi"
    local.write_bytes(b"<declaration/>")
    with capture_logs() as logs:
        refused = await run_sftp(gw, f"put {local} IN/{name('FI', me)}\n")
        async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
            reason = await _put(sftp, f"/IN/{name('FI', me)}", 10)
    assert refused.returncode != 0
    assert "No space" not in refused.stderr
    assert reason is not None
    assert reason.startswith("929: the gateway is short of space")
    assert await refusal_rows(gw.spool) == []
    assert gw.spool.readiness() == "spool short of space"
    events = [e for e in logs if e["event"] == "spool.short_of_space"]
    assert [(e["cause"], e["free_bytes"], e["floor_bytes"]) for e in events] == [
        ("floor", 500 * MIB, GIB)
    ] * 2
    counted = metrics.uploads_short_of_space_total.labels(channel="sftp", cause="floor")
    assert counted._value.get() == 2

    probe.free = 2 * GIB
    assert gw.spool.readiness() is None
    again = await run_sftp(gw, f"put {local} IN/{name('FI', me)}\n")
    assert again.returncode == 0, again.stderr
    assert [n for _, _, n, *_ in await upload_rows(gw.spool)] == [name("FI", me)]


@pytest.mark.parametrize("size", [200_000, 3 * MIB], ids=["written-at-close", "streamed"])
async def test_a_full_disk_while_writing_gets_929_not_its_error_text(
    start_gateway: StartGateway, tmp_path: Path, size: int
) -> None:
    """ENOSPC at the spool's writer (a small upload written at its close, a large one streamed
    in chunks) is answered 929, leaves no file, row, temp file or reservation, is not recorded
    for an ACRF, and is counted; once space is back the same file is stored."""
    gw = await start_gateway(today=TODAY)
    metrics = gw.gateway.folders.metrics = Metrics.create()
    gw.spool.disk = Disk(write=FullAfter(room=size // 2))
    me = gw.a.number
    local = tmp_path / "fi"
    local.write_bytes(os.urandom(size))
    with capture_logs() as logs:
        refused = await run_sftp(gw, f"put {local} IN/{name('FI', me)}\n")
    assert refused.returncode != 0
    assert "No space left" not in refused.stderr
    async with await gw.connect() as conn, conn.start_sftp_client() as sftp:
        gw.spool.disk = Disk(write=FullAfter(room=size // 2))
        reason = await _put(sftp, f"/IN/{name('FI', me)}", size)
    assert reason is not None
    assert reason.startswith("929: "), reason
    assert "No space" not in reason
    assert committed_files(gw.state_dir) == []
    assert list((gw.state_dir / "spool" / ".tmp").iterdir()) == []
    assert await upload_rows(gw.spool) == []
    assert await refusal_rows(gw.spool) == []
    assert gw.spool.quota.statistics(SenderNumber(me)).reserved == 0
    assert [e["cause"] for e in logs if e["event"] == "spool.short_of_space"] == ["disk_full"]
    counted = metrics.uploads_short_of_space_total.labels(channel="sftp", cause="disk_full")
    assert counted._value.get() == 2

    gw.spool.disk = Disk()
    again = await run_sftp(gw, f"put {local} IN/{name('FI', me)}\n")
    assert again.returncode == 0, again.stderr
    assert [size for *_, size, _ in await upload_rows(gw.spool)] == [size]


_WRITE_FAULTS = {
    # errno: what the client reads (929: short of space, no ticket; else 999 with a ticket)
    "ENOSPC": (errno.ENOSPC, "929: the gateway is short of space"),
    "EDQUOT": (errno.EDQUOT, "929: the gateway is short of space"),
    "EIO": (errno.EIO, "999: internal error, ticket "),
    "EROFS": (errno.EROFS, "999: internal error, ticket "),
    "EFBIG": (errno.EFBIG, "999: internal error, ticket "),
}


@pytest.mark.parametrize("fault", list(_WRITE_FAULTS))
@pytest.mark.parametrize("size", [200_000, 3 * MIB], ids=["written-at-close", "streamed"])
async def test_a_write_fault_is_answered_by_its_kind_never_by_its_text(
    gw_today: Env, fault: str, size: int
) -> None:
    """SECURITY.md 19 (issue 15 item 3): the disk failing under an upload in five ways, small
    and streamed: a full disk or quota (ENOSPC, EDQUOT) is 929 with no ticket, any other
    fault (EIO, a read-only remount, EFBIG) 999 with a ticket logged with its traceback; the
    OS's text never reaches the client and nothing is left behind."""
    number, expected = _WRITE_FAULTS[fault]
    me = gw_today.a.number
    gw_today.spool.disk = Disk(write=FullAfter(room=size // 2, error=number))
    with capture_logs() as logs:
        async with await gw_today.connect() as conn, conn.start_sftp_client() as sftp:
            reason = await _put(sftp, f"/IN/{name('FI', me)}", size)
    assert reason is not None
    assert reason.startswith(expected), reason
    assert os.strerror(number) not in reason
    if expected.startswith("999"):
        ticket = reason.rsplit(" ", 1)[1]
        assert [bool(e.get("exc_info")) for e in logs if e.get("ticket") == ticket] == [True]
    assert committed_files(gw_today.state_dir) == []
    assert list((gw_today.state_dir / "spool" / ".tmp").iterdir()) == []
    assert gw_today.spool.quota.statistics(SenderNumber(me)).reserved == 0


# -- a database failure --------------------------------------------------------------------------


async def test_a_database_failure_at_commit_is_999_with_a_logged_ticket(
    gw_today: Env, tmp_path: Path, uploads_table_gone: Any
) -> None:
    """The uploads table gone under an upload's commit: asyncssh reads "999: internal error,
    ticket T", the log holds T once with the traceback, no SQL or Python text reaches the
    client, and nothing is left behind; OpenSSH's put (failing at its open) gets no text either."""
    me = gw_today.a.number
    local = tmp_path / "fi"
    local.write_bytes(b"<declaration/>")
    with capture_logs() as logs:
        async with await gw_today.connect() as conn, conn.start_sftp_client() as sftp:
            file = await sftp.open(f"/IN/{name('FI', me)}", "wb")
            await file.write(b"<declaration/>")
            uploads_table_gone(gw_today.database_url)
            with pytest.raises(asyncssh.SFTPError) as caught:
                await file.close()
        openssh = await run_sftp(gw_today, f"put {local} IN/{name('FS', me)}\n")
    reason = str(caught.value.reason)
    assert TICKETED.fullmatch(reason), reason
    ticket = reason.rsplit(" ", 1)[1]
    logged = [e for e in logs if e.get("ticket") == ticket]
    assert [(e["event"], e["log_level"], bool(e.get("exc_info"))) for e in logged] == [
        ("upload.failed", "error", True)
    ]
    assert openssh.returncode != 0
    for text in (reason, openssh.stderr):
        assert "uploads" not in text
        assert "sqlite" not in text.lower()
        assert "Error" not in text
    assert committed_files(gw_today.state_dir) == []
    assert list((gw_today.state_dir / "spool" / ".tmp").iterdir()) == []


@pytest.fixture
async def gw_today(start_gateway: StartGateway) -> Env:
    """A gateway whose name check runs on TODAY."""
    return await start_gateway(today=TODAY)


# -- reads past any file ---------------------------------------------------------------------------


async def test_a_read_at_offset_2_63_is_a_clean_end_of_file(gw_today: Env) -> None:
    """Offsets an SFTP read can carry (up to 2^64-1) never reach the OS as they are: the answer
    is end of file, never "Python int too large to convert to C long"."""
    me = SenderNumber(gw_today.a.number)
    ack = "FO.ACRF.999999.20260115.00001.R"
    place_return_file(gw_today.spool.layout, me, Folder.OUT, ack, b"<ack/>")
    async with (
        await gw_today.connect() as conn,
        conn.start_sftp_client() as sftp,
        sftp.open(f"/OUT/{ack}", "rb") as file,
    ):
        for offset in (2**63 - 1, 2**63, 2**64 - 1):
            await file.seek(offset)
            assert await file.read(16) == b""
        await file.seek(0)
        assert await file.read() == b"<ack/>"


_ODD_REQUESTS: dict[str, Callable[[asyncssh.SFTPClient, str], Awaitable[object]]] = {
    # name: an SFTP request no client should send, as asyncssh sends it
    "stat-nul": lambda sftp, me: sftp.stat("/IN/a\x00b"),
    "stat-5000-bytes": lambda sftp, me: sftp.stat("/IN/" + "A" * 5000),
    "realpath-dotdot": lambda sftp, me: sftp.realpath("/IN/../../.."),
    "realpath-deep": lambda sftp, me: sftp.realpath("/" + "x/" * 3000),
    "open-append": lambda sftp, me: sftp.open(f"/IN/{name('FI', me)}", "ab"),
    "open-read-write": lambda sftp, me: sftp.open(f"/IN/{name('FI', me)}", "r+b"),
    "readlink": lambda sftp, me: sftp.readlink("/IN"),
    "symlink-out": lambda sftp, me: sftp.symlink("/etc/passwd", "/IN/x"),
    "rename-across-folders": lambda sftp, me: sftp.rename("/IN/a", "/OUT/a"),
    "statvfs": lambda sftp, me: sftp.statvfs("/IN"),
    "remove-root": lambda sftp, me: sftp.remove("/"),
}


async def test_odd_requests_are_answered_with_a_code_never_python_text(
    gw_today: Env, subtests: pytest.Subtests
) -> None:
    """SECURITY.md 19 (issue 15 item 3, "internal error text reaches clients elsewhere"):
    requests with a NUL, 5,000-byte or 3,000-deep paths, '..', append or read-write opens,
    links, a rename across folders, statvfs, removing the root, on one connection: each
    refused with a gateway code at the start of its reason, never a Python or OS message."""
    async with await gw_today.connect() as conn, conn.start_sftp_client() as sftp:
        for request_kind, request in _ODD_REQUESTS.items():
            with subtests.test(request=request_kind):
                with pytest.raises(asyncssh.SFTPError) as caught:
                    await request(sftp, gw_today.a.number)
                reason = str(caught.value.reason)
                assert re.fullmatch(r"9[0-9]{2}: [^\n]+", reason), reason
                for text in ("Error", "errno", "Traceback", "int ", "object", "None"):
                    assert text not in reason


async def test_writes_at_offsets_past_any_file_are_refused_with_a_code(gw_today: Env) -> None:
    """A first write at 2^63 or 2^64-1: 923 (writes are sequential), naming the offset, never
    "Python int too large to convert to C long"."""
    me = gw_today.a.number
    async with await gw_today.connect() as conn, conn.start_sftp_client() as sftp:
        for seq, offset in (("00001", 2**63), ("00002", 2**64 - 1)):
            file = await sftp.open(f"/IN/{name('FI', me, seq=seq)}", "wb")
            with pytest.raises(asyncssh.SFTPError) as caught:
                await file.write(b"x", offset)
            assert caught.value.reason == (
                f"923: writes must be sequential (expected offset 0, got {offset})"
            )
    assert committed_files(gw_today.state_dir) == []


# -- the same over HTTPS (curl) --------------------------------------------------------------------


async def test_web_answers_929_and_999_with_a_ticket(
    start_web: StartWeb, tmp_path: Path, uploads_table_gone: Any
) -> None:
    """Over HTTPS: below the floor and on ENOSPC a PUT is 507 with code 929 (counted, not
    recorded); with the database failing it is 500, code 999, "internal error, ticket T"."""
    web = await start_web()
    me = web.a.number
    body = tmp_path / "fi"
    body.write_bytes(os.urandom(300_000))
    probe = Probe(free=10 * MIB)
    floor_of(web, 64 * MIB, probe)
    short = await curl(web, f"/IN/{name('FI', me)}", "--upload-file", str(body), folder=tmp_path)
    assert (short.status, short.json()["code"]) == (507, 929)  # type: ignore[index]

    probe.free = 100 * GIB
    web.spool.disk = dataclasses.replace(web.spool.disk, write=FullAfter(room=1000))
    full = await curl(web, f"/IN/{name('FI', me)}", "--upload-file", str(body), folder=tmp_path)
    assert (full.status, full.json()["code"]) == (507, 929)  # type: ignore[index]
    assert b"No space" not in full.body
    causes = {
        cause: web.metrics.uploads_short_of_space_total.labels(channel="web", cause=cause)
        for cause in ("floor", "disk_full")
    }
    assert {c: m._value.get() for c, m in causes.items()} == {"floor": 1, "disk_full": 1}
    assert await web.refusals() == []

    web.spool.disk = Disk()
    uploads_table_gone(web.spool._engine.url.render_as_string())
    failed = await curl(web, f"/IN/{name('FI', me)}", "--upload-file", str(body), folder=tmp_path)
    problem = failed.json()
    assert isinstance(problem, dict)
    assert (failed.status, problem["code"]) == (500, 999)
    assert TICKETED.fullmatch(str(problem["detail"])), problem
    assert b"uploads" not in failed.body
    assert b"sqlite" not in failed.body.lower()


# -- the same over FTPS (ftplib) -------------------------------------------------------------------

# SQLite's own refusal of a statement, raised inside the database: the commit's INSERT fails the
# way a broken database fails it, and nothing else (listing and the quota's reads still work).
_REFUSE_UPLOADS = """CREATE TRIGGER uploads_refused BEFORE INSERT ON uploads
BEGIN SELECT RAISE(ABORT, 'sqlite: disk I/O error in uploads'); END"""


def _sqlite_file(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite+aiosqlite:///"))


@pytest.fixture
def uploads_insert_fails() -> Iterator[Callable[[str], None]]:
    """A function that makes the gateway's SQLite file refuse every new ``uploads`` row, and
    the trigger doing it dropped again at the end of the test."""
    broken: list[Path] = []

    def break_it(database_url: str) -> None:
        path = _sqlite_file(database_url)
        with sqlite3.connect(path) as db:
            db.execute(_REFUSE_UPLOADS)
        broken.append(path)

    yield break_it
    for path in broken:
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER IF EXISTS uploads_refused")


def _ftps_put(env: FtpEnv, path: str, data: bytes) -> str:
    """STOR ``data`` with ftplib over FTPS (PROT P); the server's last reply (blocking)."""
    client = ftps_client(env)
    try:
        return reply_of(lambda: client.storbinary(f"STOR {path}", io.BytesIO(data)))
    finally:
        client.close()


async def test_ftps_answers_452_929_below_the_floor(start_ftp: StartFtp) -> None:
    """With ``[limits] min_free_bytes`` above what the spool's filesystem has free (the real
    statvfs), STOR gets ``452 929: the gateway is short of space``: no file, nothing recorded
    for an ACRF, counted and logged; with the floor lowered the same STOR stores the file."""
    env = await start_ftp()
    me = env.a.number
    body = b"<declaration/>" * 100
    floor = LimitSettings(min_free_bytes=2**62, min_free_percent=0)  # more than any disk has
    env.spool.limits = SpoolLimits.from_settings(floor)
    with capture_logs() as logs:
        refused = await asyncio.to_thread(_ftps_put, env, f"IN/{name('FI', me)}", body)
    assert refused.startswith("452 929: the gateway is short of space"), refused
    assert "No space" not in refused
    assert committed_files(env.state_dir) == []
    assert await refusal_rows(env.spool) == []
    [short] = [e for e in logs if e["event"] == "spool.short_of_space"]
    assert (short["cause"], short["floor_bytes"]) == ("floor", 2**62)
    counted = env.metrics.uploads_short_of_space_total.labels(channel="ftp", cause="floor")
    assert counted._value.get() == 1

    env.spool.limits = SpoolLimits.from_settings(
        LimitSettings(min_free_bytes=0, min_free_percent=0)
    )
    stored = await asyncio.to_thread(_ftps_put, env, f"IN/{name('FI', me)}", body)
    assert stored.startswith("226 "), stored
    assert [(n, size) for _, _, n, size, _ in await upload_rows(env.spool)] == [
        (name("FI", me), len(body))
    ]


async def test_ftps_answers_451_999_with_a_logged_ticket_when_the_commit_fails(
    start_ftp: StartFtp, uploads_insert_fails: Callable[[str], None]
) -> None:
    """The database refusing the commit's row after the data arrived: STOR ends with ``451 999:
    internal error, ticket T``, T is logged once with its traceback, no SQL or Python text
    reaches the client, no file or temp file is left, the connection goes on; once the database
    is well again the same STOR stores the file."""
    env = await start_ftp()
    me = env.a.number
    body = os.urandom(300_000)
    uploads_insert_fails(env.spool._engine.url.render_as_string())

    def put_then_noop() -> tuple[str, str]:
        client = ftps_client(env)
        try:
            failed = reply_of(
                lambda: client.storbinary(f"STOR IN/{name('FI', me)}", io.BytesIO(body))
            )
            return failed, client.sendcmd("NOOP")
        finally:
            client.close()

    with capture_logs() as logs:
        failed, noop = await asyncio.to_thread(put_then_noop)
    assert re.fullmatch(r"451 999: internal error, ticket [0-9a-f]{12}", failed), failed
    assert noop == "200 OK"
    ticket = failed.rsplit(" ", 1)[1]
    logged = [e for e in logs if e.get("ticket") == ticket]
    assert [(e["event"], e["log_level"], bool(e.get("exc_info"))) for e in logged] == [
        ("upload.failed", "error", True)
    ]
    for text in ("uploads", "sqlite", "Error", "I/O"):
        assert text not in failed
    assert committed_files(env.state_dir) == []
    assert list((env.state_dir / "spool" / ".tmp").iterdir()) == []
    assert await upload_rows(env.spool) == []
    assert await refusal_rows(env.spool) == []
    assert env.spool.quota.statistics(SenderNumber(me)).reserved == 0

    with sqlite3.connect(_sqlite_file(env.spool._engine.url.render_as_string())) as db:
        db.execute("DROP TRIGGER uploads_refused")
    stored = await asyncio.to_thread(_ftps_put, env, f"IN/{name('FI', me)}", body)
    assert stored.startswith("226 "), stored
    assert [n for _, _, n, *_ in await upload_rows(env.spool)] == [name("FI", me)]
