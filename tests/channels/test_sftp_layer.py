"""The SFTP protocol layer: framing, malformed and pipelined requests, and the session's end.

The framer is checked on its own (any split of a stream gives the same packets); the layer is
driven over a real SSH session channel (asyncssh's client as the transport) with hand-built SFTP
packets, so each case says exactly which bytes the gateway received and what it answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import date
from pathlib import Path

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.channels import sftp_wire as wire
from gateway.channels.sftp_layer import EXTENSIONS, SftpSession
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.spool import place_return_file
from gateway.spool.folders import MAX_OPEN_LISTINGS
from tests.channels.conftest import Env, StartGateway
from tests.channels.spooled import committed_files, upload_rows
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(120)

TODAY = date(2026, 1, 15)
FX_FAILURE = 4
FX_PERMISSION_DENIED = 3


@pytest.fixture
async def gw(start_gateway: StartGateway) -> Env:
    return await start_gateway(today=TODAY)


def upload_name(kind: str, sender: str) -> str:
    return f"{kind}.DMFA.{sender}.20260115.00001.R.1.1"


# -- framing ---------------------------------------------------------------------------------------


@given(
    bodies=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=10),
)
def test_any_split_of_a_stream_gives_the_same_packets(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(wire.u32(len(body)) + body for body in bodies)
    framer = wire.Framer()
    packets: list[bytes] = []
    at = 0
    for cut in [*sorted({min(c, len(stream)) for c in cuts}), len(stream)]:
        packets += [bytes(packet) for packet in framer.feed(stream[at:cut])]
        at = cut
    assert packets == bodies
    assert framer.pending == 0


@pytest.mark.parametrize("length", [0, wire.MAX_PACKET + 1, 0xFFFFFFFF])
def test_a_length_out_of_bounds_is_refused_before_buffering(length: int) -> None:
    framer = wire.Framer()
    assert [bytes(p) for p in framer.feed(wire.u32(5) + b"\x10abcd")] == [b"\x10abcd"]
    with pytest.raises(wire.FrameTooLong):
        framer.feed(wire.u32(length) + b"\x03")
    split = wire.Framer()  # the length itself cut in two
    assert split.feed(wire.u32(length)[:2]) == []
    with pytest.raises(wire.FrameTooLong):
        split.feed(wire.u32(length)[2:])


def test_fields_refuse_truncated_and_trailing_data() -> None:
    request = bytes((wire.FXP_OPEN,)) + wire.u32(7) + wire.string(b"/IN/x")
    fields = wire.Fields(request)
    assert fields.string() == b"/IN/x"
    with pytest.raises(wire.BadMessage):
        fields.u32()
    fields = wire.Fields(request + b"!")
    fields.string()
    with pytest.raises(wire.BadMessage):
        fields.end()
    huge = bytes((wire.FXP_STAT,)) + wire.u32(1) + wire.u32(1000) + b"short"
    with pytest.raises(wire.BadMessage):
        wire.Fields(huge).string()


def test_every_cut_of_a_request_is_a_bad_message() -> None:
    """A WRITE cut anywhere in its handle, offset or data (its length fields included) is
    refused as a bad message by the field that runs short, never as a Python error."""
    request = bytes((wire.FXP_WRITE,)) + wire.u32(9) + wire.string(b"\0\0\0\1") + wire.u64(1 << 40)
    request += wire.string(b"data")
    whole = wire.Fields(request)
    assert (whole.string(), whole.u64(), bytes(whole.view())) == (b"\0\0\0\1", 1 << 40, b"data")
    whole.end()
    for cut in range(5, len(request)):
        with pytest.raises(wire.BadMessage):
            _read_write(wire.Fields(request[:cut]))


def _read_write(fields: wire.Fields) -> None:
    """A WRITE's fields after its id: handle, offset, data."""
    fields.string()
    fields.u64()
    fields.view()


# -- over a real channel ---------------------------------------------------------------------------


class _Collector(asyncssh.SSHClientSession[bytes]):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.changed = asyncio.Event()
        self.closed = False

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.buffer += data
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.changed.set()


class RawSftp:
    """An SFTP session spoken byte by byte."""

    def __init__(self, chan: asyncssh.SSHClientChannel[bytes], session: _Collector) -> None:
        self.chan = chan
        self.session = session

    def send(self, kind: int, body: bytes) -> None:
        self.chan.write(wire.u32(len(body) + 1) + bytes((kind,)) + body)

    def request(self, kind: int, ident: int, body: bytes = b"") -> None:
        self.send(kind, wire.u32(ident) + body)

    async def reply(self) -> tuple[int, bytes]:
        """The next packet: (type, body after the type)."""
        session = self.session
        while True:
            buffer = session.buffer
            if len(buffer) >= 4:
                length = int.from_bytes(buffer[:4], "big")
                if len(buffer) >= 4 + length:
                    packet = bytes(buffer[4 : 4 + length])
                    del buffer[: 4 + length]
                    return packet[0], packet[1:]
            if session.closed:
                raise EOFError("channel closed")
            session.changed.clear()
            await asyncio.wait_for(session.changed.wait(), 20)

    async def status(self, ident: int) -> tuple[int, str]:
        kind, body = await self.reply()
        assert kind == wire.FXP_STATUS, (kind, body)
        fields = wire.Fields(body, 0)
        assert fields.u32() == ident
        return fields.u32(), fields.string().decode()

    async def open_upload(self, path: str) -> bytes:
        """OPEN (id 1) for writing; its handle."""
        self.request(wire.FXP_OPEN, 1, open_request(path))
        return await self.handle(1)

    async def handle(self, ident: int) -> bytes:
        kind, body = await self.reply()
        assert kind == wire.FXP_HANDLE, (kind, body)
        fields = wire.Fields(body, 0)
        assert fields.u32() == ident
        return fields.string()


async def raw_session(env: Env) -> tuple[asyncssh.SSHClientConnection, RawSftp, bytes]:
    """A connection, an sftp subsystem past INIT, and the VERSION reply's body."""
    conn = await env.connect()
    chan, session = await conn.create_session(_Collector, subsystem="sftp", encoding=None)
    raw = RawSftp(chan, session)
    raw.send(wire.FXP_INIT, wire.u32(6))  # asks for 6: answered 3
    kind, body = await raw.reply()
    assert kind == wire.FXP_VERSION
    return conn, raw, body


def open_request(path: str) -> bytes:
    flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
    return wire.string(path.encode()) + wire.u32(flags) + wire.u32(0)


async def test_version_3_with_the_extensions_answered(gw: Env) -> None:
    conn, _, body = await raw_session(gw)
    async with conn:
        fields = wire.Fields(body, 0)
        assert fields.u32() == 3
        announced = []
        while True:
            try:
                announced.append((fields.string(), fields.string()))
            except wire.BadMessage:
                break
        assert announced == list(EXTENSIONS)


async def test_malformed_and_unknown_requests_are_answered_and_the_session_goes_on(
    gw: Env,
) -> None:
    conn, raw, _ = await raw_session(gw)
    async with conn:
        raw.request(wire.FXP_OPEN, 1, wire.string(b"/IN/x"))  # no pflags, no attrs
        assert (await raw.status(1))[0] == wire.FX_BAD_MESSAGE
        raw.request(wire.FXP_STAT, 2, wire.string(b"/IN") + b"junk")
        assert (await raw.status(2))[0] == wire.FX_BAD_MESSAGE
        raw.request(99, 3)
        code, text = await raw.status(3)
        assert (code, text[:4]) == (wire.FX_OP_UNSUPPORTED, "923:")
        raw.request(wire.FXP_EXTENDED, 4, wire.string(b"copy-data"))
        assert (await raw.status(4))[0] == wire.FX_OP_UNSUPPORTED
        raw.request(wire.FXP_WRITE, 5, wire.string(b"nope") + wire.u64(0) + wire.string(b"x"))
        assert await raw.status(5) == (FX_FAILURE, "invalid handle")  # v3 has no INVALID_HANDLE
        raw.request(wire.FXP_EXTENDED, 6, wire.string(b"statvfs@openssh.com") + wire.string(b"/"))
        code, text = await raw.status(6)
        assert (code, text) == (wire.FX_OP_UNSUPPORTED, "923: statvfs is not offered")
        raw.request(wire.FXP_REALPATH, 7, wire.string(b"."))
        kind, body = await raw.reply()
        fields = wire.Fields(body, 0)
        assert (kind, fields.u32(), fields.u32(), fields.string()) == (wire.FXP_NAME, 7, 1, b"/")


async def test_an_overlong_packet_ends_the_session_and_nothing_else(gw: Env) -> None:
    conn, raw, _ = await raw_session(gw)
    async with conn:
        raw.chan.write(wire.u32(wire.MAX_PACKET + 1) + bytes((wire.FXP_WRITE,)))
        with pytest.raises(EOFError):
            await raw.reply()
        async with conn.start_sftp_client() as sftp:  # the connection still serves
            assert await sftp.realpath(".") == "/"


async def test_pipelined_requests_are_answered_in_order(gw: Env) -> None:
    conn, raw, _ = await raw_session(gw)
    async with conn:
        raw.chan.write(
            b"".join(
                wire.u32(len(body) + 1) + bytes((wire.FXP_REALPATH,)) + body
                for body in (wire.u32(i) + wire.string(b"/OUT/") for i in range(200))
            )
        )
        for i in range(200):
            kind, body = await raw.reply()
            fields = wire.Fields(body, 0)
            assert (kind, fields.u32(), fields.u32(), fields.string()) == (
                wire.FXP_NAME,
                i,
                1,
                b"/OUT",
            )


async def test_a_request_that_waits_holds_the_ones_behind_it(gw: Env) -> None:
    """Requests are begun as they arrive while the session's task is idle; one that has to wait
    (a close committed by the writer thread, since another session is open) is finished by the
    task, and the requests that came after it are answered after it, in order: the STAT behind
    the CLOSE sees the committed file."""
    me = gw.a.number
    name = upload_name("FI", me)
    data = os.urandom(4096)
    other = await gw.connect()  # a second session: closes are no longer committed inline
    async with other, other.start_sftp_client():
        conn, raw, _ = await raw_session(gw)
        async with conn:
            handle = await raw.open_upload(f"/IN/{name}")
            # One SSH message each: the channel's callback runs once per request, the later
            # ones while the CLOSE waits.
            raw.request(wire.FXP_WRITE, 2, wire.string(handle) + wire.u64(0) + wire.string(data))
            raw.request(wire.FXP_CLOSE, 3, wire.string(handle))
            raw.request(wire.FXP_STAT, 4, wire.string(f"/IN/{name}".encode()))
            raw.request(wire.FXP_REALPATH, 5, wire.string(b"/IN/"))
            assert await raw.status(2) == (wire.FX_OK, "")
            assert await raw.status(3) == (wire.FX_OK, "")
            kind, body = await raw.reply()
            fields = wire.Fields(body, 0)
            assert (kind, fields.u32()) == (wire.FXP_ATTRS, 4)
            flags = fields.u32()
            assert flags & asyncssh.FILEXFER_ATTR_SIZE
            assert fields.u64() == len(data)
            kind, body = await raw.reply()
            assert (kind, wire.Fields(body, 0).u32()) == (wire.FXP_NAME, 5)
    rows = await upload_rows(gw.spool)
    assert [(row[2], row[4]) for row in rows] == [(name, hashlib.sha256(data).hexdigest())]


async def test_writes_beyond_the_window_are_all_taken(gw: Env) -> None:
    """Pipelined writes of more than the channel's receive window (2 MiB) in one go: every one
    is answered and every byte stored (the pause itself: the test at the end of this file)."""
    me = gw.a.number
    name = upload_name("FI", me)
    conn, raw, _ = await raw_session(gw)
    async with conn:
        handle = await raw.open_upload(f"/IN/{name}")
        chunk = 256 * 1024
        data = os.urandom(24 * chunk)  # 6 MiB in one go
        for i in range(24):
            part = data[i * chunk : (i + 1) * chunk]
            raw.request(
                wire.FXP_WRITE,
                10 + i,
                wire.string(handle) + wire.u64(i * chunk) + wire.string(part),
            )
        for i in range(24):
            assert await raw.status(10 + i) == (wire.FX_OK, "")
        raw.request(wire.FXP_CLOSE, 99, wire.string(handle))
        assert await raw.status(99) == (wire.FX_OK, "")
    rows = await upload_rows(gw.spool)
    assert [(row[2], row[3], row[4]) for row in rows] == [
        (name, len(data), hashlib.sha256(data).hexdigest())
    ]


async def test_a_close_sent_just_before_the_end_of_the_channel_commits(gw: Env) -> None:
    """The requests received before the client's EOF are answered first: the close commits."""
    me = gw.a.number
    name = upload_name("FI", me)
    conn, raw, _ = await raw_session(gw)
    async with conn:
        handle = await raw.open_upload(f"/IN/{name}")
        raw.request(wire.FXP_WRITE, 2, wire.string(handle) + wire.u64(0) + wire.string(b"abc"))
        raw.request(wire.FXP_CLOSE, 3, wire.string(handle))
        raw.chan.write_eof()
        assert await raw.status(2) == (wire.FX_OK, "")
        assert await raw.status(3) == (wire.FX_OK, "")
        with pytest.raises(EOFError):
            await raw.reply()
    assert committed_files(gw.state_dir) == [f"{me}/IN/{name}"]


async def test_an_upload_open_at_the_end_of_the_channel_is_aborted(gw: Env) -> None:
    me = gw.a.number
    conn, raw, _ = await raw_session(gw)
    async with conn:
        handle = await raw.open_upload(f"/IN/{upload_name('FI', me)}")
        raw.request(wire.FXP_WRITE, 2, wire.string(handle) + wire.u64(0) + wire.string(b"abc"))
        assert await raw.status(2) == (wire.FX_OK, "")
        raw.chan.write_eof()
        with pytest.raises(EOFError):
            await raw.reply()
    await gw.gateway.wait_sftp_ended(1)
    assert committed_files(gw.state_dir) == []
    assert await upload_rows(gw.spool) == []


async def test_a_listing_is_refused_at_opendir_and_read_in_batches(gw: Env) -> None:
    conn, raw, _ = await raw_session(gw)
    async with conn:
        raw.request(wire.FXP_OPENDIR, 1, wire.string(b"/NOPE"))
        code, text = await raw.status(1)
        assert code in (2, FX_PERMISSION_DENIED)
        assert text[:3].isdigit()
        raw.request(wire.FXP_OPENDIR, 2, wire.string(b"/"))
        handle = await raw.handle(2)
        raw.request(wire.FXP_READDIR, 3, wire.string(handle))
        kind, body = await raw.reply()
        fields = wire.Fields(body, 0)
        assert (kind, fields.u32()) == (wire.FXP_NAME, 3)
        count = fields.u32()
        names = []
        for _ in range(count):
            names.append(fields.string())
            longname = fields.string()
            assert longname.endswith(names[-1])
            fields.attrs()
        assert names[:2] == [b".", b".."]
        assert b"IN" in names
        raw.request(wire.FXP_READDIR, 4, wire.string(handle))
        assert (await raw.status(4))[0] == wire.FX_EOF
        raw.request(wire.FXP_CLOSE, 5, wire.string(handle))
        assert await raw.status(5) == (wire.FX_OK, "")


# -- flow control (asyncssh's channel is the boundary: a stand-in records what it is told) ------


class _Channel:
    """What the session asks of its channel while requests wait."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.calls: list[str] = []

    def get_recv_window(self) -> int:
        return self.window

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


async def test_requests_waiting_beyond_the_window_pause_the_channel_until_taken() -> None:
    session = SftpSession(owner=None)  # type: ignore[arg-type]  # no server is made here
    chan = _Channel(window=1000)
    session.connection_made(chan)  # type: ignore[arg-type]
    request = wire.u32(300) + bytes((wire.FXP_WRITE,)) + bytes(299)
    session.data_received(request * 3, None)
    assert chan.calls == []  # 900 bytes wait: under the window
    session.data_received(request + request[:100], None)  # 1,200 whole, 100 of the next
    assert chan.calls == ["pause"]
    session.data_received(request[100:], None)
    assert chan.calls == ["pause"]  # paused once
    taken = await session._next()
    assert isinstance(taken, memoryview)
    assert bytes(taken) == request[4:]
    assert chan.calls == ["pause"]  # 1,200 bytes still wait
    taken = await session._next()
    assert isinstance(taken, memoryview)
    assert bytes(taken) == request[4:]
    assert chan.calls == ["pause", "resume"]  # 900


# -- another client's SFTP implementation ------------------------------------------------------


async def test_lftp_speaks_to_the_layer(gw: Env, tmp_path: Path) -> None:
    """lftp has an SFTP client of its own (it asks for version 6 and is answered 3): a 300 KiB
    upload in pipelined writes, a listing with sizes, a refused mkdir with its code, a download
    of a return file and its removal."""
    lftp = require_tool("lftp")
    me = SenderNumber(gw.a.number)
    data = os.urandom(300 * 1024)
    name = upload_name("FI", gw.a.number)
    (tmp_path / name).write_bytes(data)
    ack = "FO.ACRF.999999.20260115.00001.R"
    place_return_file(gw.spool.layout, me, Folder.OUT, ack, b"<ack/>")
    ssh = (
        f"ssh -a -x -i {gw.key_a.private} -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
    )
    script = (
        f"set sftp:connect-program '{ssh}'; set net:max-retries 1; "
        f"open -u {gw.a.login}, -p {gw.port} sftp://127.0.0.1; "
        f"put {name} -o IN/{name}; cls -l IN; get OUT/{ack} -o {ack}; rm OUT/{ack}; mkdir IN/x"
    )
    process = await asyncio.create_subprocess_exec(
        lftp, "-c", script, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 1  # the mkdir, last, is refused
    listing = out.decode()
    assert f" {len(data)} " in listing
    assert name in listing
    assert "923: mkdir is not permitted in IN" in err.decode()
    assert (tmp_path / ack).read_bytes() == b"<ack/>"
    assert not gw.spool.layout.out_file(me, Folder.OUT, ack).exists()
    rows = await upload_rows(gw.spool)
    assert [(row[2], row[4]) for row in rows] == [(name, hashlib.sha256(data).hexdigest())]


async def test_a_listing_closed_unread_gives_its_slot_back(gw: Env) -> None:
    """OPENDIR takes one of the session's MAX_OPEN_LISTINGS; CLOSE gives it back even when no
    READDIR came between (a client that only probes a folder)."""
    conn, raw, _ = await raw_session(gw)
    async with conn:
        for ident in range(1, 2 * MAX_OPEN_LISTINGS + 2, 2):
            raw.request(wire.FXP_OPENDIR, ident, wire.string(b"/OUT"))
            handle = await raw.handle(ident)
            raw.request(wire.FXP_CLOSE, ident + 1, wire.string(handle))
            assert await raw.status(ident + 1) == (wire.FX_OK, "")


async def test_a_request_too_short_for_an_id_ends_the_session(gw: Env) -> None:
    conn, raw, _ = await raw_session(gw)
    async with conn:
        raw.chan.write(wire.u32(3) + bytes((wire.FXP_STAT, 0, 0)) + wire.u32(9))
        with pytest.raises(EOFError):
            await raw.reply()  # neither that nor anything after it is answered


async def test_lsetstat_is_setstat(gw: Env) -> None:
    """OpenSSH's lsetstat extension follows setstat's rule (there are no links): accepted and
    ignored on an own upload, refused with 923 elsewhere."""
    name = upload_name("FI", gw.a.number)
    conn, raw, _ = await raw_session(gw)
    async with conn:
        handle = await raw.open_upload(f"/IN/{name}")
        raw.request(wire.FXP_CLOSE, 2, wire.string(handle))
        assert await raw.status(2) == (wire.FX_OK, "")
        for ident, path, expected in ((3, f"/IN/{name}", wire.FX_OK), (4, "/OUT", None)):
            body = wire.string(b"lsetstat@openssh.com") + wire.string(path.encode())
            raw.request(wire.FXP_EXTENDED, ident, body + wire.u32(0))
            code, text = await raw.status(ident)
            if expected is None:
                assert (code, text[:4]) == (FX_PERMISSION_DENIED, "923:")
            else:
                assert code == expected
