"""The FTP(S) channel end to end: curl, lftp and ftplib against the gateway on loopback.

Every case checks what a sender's client sees (exit status, the reply with its code) and what
the gateway kept (files under the spool, rows in ``uploads`` and ``upload_refusals``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ftplib
import hashlib
import io
import os
import socket
import ssl
from functools import partial
from pathlib import Path

import pytest

from gateway.channels.ftp_data import same_peer
from gateway.channels.ftp_replies import REPLIES, refusal
from gateway.core.codes import Code, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.pacing import FailurePacing
from gateway.spool import place_return_file
from tests.channels.ftp_env import (
    PASSWORD,
    PLAIN_HOST,
    FtpEnv,
    StartFtp,
    curl_base,
    ftps_client,
    lftp_script,
    name,
    plain_client,
    reply_of,
    run,
)

pytestmark = pytest.mark.timeout(120)


def local_file(tmp_path: Path, size: int, label: str = "data") -> tuple[Path, bytes]:
    """A local file of ``size`` random bytes, and the bytes."""
    body = os.urandom(size)
    path = tmp_path / f"{label}-{size}"
    path.write_bytes(body)
    return path, body


def digest(body: bytes) -> str:
    """The SHA-256 the spool records."""
    return hashlib.sha256(body).hexdigest()


def metric(gw: FtpEnv, metric_name: str, **labels: str) -> float:
    """One sample of the gateway's metrics (0 when absent)."""
    value = gw.metrics.registry.get_sample_value(metric_name, labels)
    return value or 0.0


# -- explicit FTPS with real clients ------------------------------------------------------------


async def test_curl_uploads_and_downloads_over_auth_tls(ftp: FtpEnv, tmp_path: Path) -> None:
    """curl --ssl-reqd uploads an FI into IN and downloads a return file from OUT."""
    local, body = local_file(tmp_path, 70_000)
    fi = name("FI", ftp.a.number)
    up = await run([*curl_base(ftp), "-T", str(local), f"ftp://127.0.0.1:{ftp.port}/IN/{fi}"])
    assert up.returncode == 0, up.stderr
    assert [(r[1], r[2], r[3], r[4]) for r in await ftp.uploads()] == [
        ("IN", fi, len(body), digest(body))
    ]
    ack = "FO.ACRF.999999.20260115.00001.R"
    back = os.urandom(300_000)
    place_return_file(ftp.spool.layout, SenderNumber(ftp.a.number), Folder.OUT, ack, back)
    target = tmp_path / "ack"
    down = await run([*curl_base(ftp), "-o", str(target), f"ftp://127.0.0.1:{ftp.port}/OUT/{ack}"])
    assert down.returncode == 0, down.stderr
    assert target.read_bytes() == back
    assert metric(ftp, "gateway_sessions_total", channel="ftp") == 2.0
    assert metric(ftp, "gateway_uploads_stored_total", channel="ftp", env="R") == 1.0


async def test_lftp_puts_lists_gets_and_removes(ftp: FtpEnv, tmp_path: Path) -> None:
    """lftp (ssl-force, protected data) puts, lists, gets and removes over FTPS."""
    local, body = local_file(tmp_path, 20_000)
    fi = name("FI", ftp.a.number)
    ack = "FO.ACRF.999999.20260115.00001.R"
    place_return_file(ftp.spool.layout, SenderNumber(ftp.a.number), Folder.OUT, ack, b"<ack/>")
    script = (
        f"put {local} -o /IN/{fi}; cls -1 /IN; cls -1 /OUT; "
        f"get /OUT/{ack} -o {tmp_path}/ack; rm /OUT/{ack}; cls -1 /"
    )
    result = await run(lftp_script(ftp, script))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[:2] == [f"/IN/{fi}", f"/OUT/{ack}"]
    assert lines[2:] == ["/IN/", "/INTEST/", "/INTEST-S/", "/OUT/", "/OUTTEST/", "/OUTTEST-S/"]
    assert (tmp_path / "ack").read_bytes() == b"<ack/>"
    assert not ftp.spool.layout.out_file(SenderNumber(ftp.a.number), Folder.OUT, ack).exists()
    assert [(r[2], r[4]) for r in await ftp.uploads()] == [(fi, digest(body))]


async def test_temp_name_upload_commits_on_rename(ftp: FtpEnv, tmp_path: Path) -> None:
    """STOR NAME.filepart then RNFR/RNTO (curl -Q after the transfer) commits NAME."""
    local, body = local_file(tmp_path, 5_000)
    fi = name("FI", ftp.a.number)
    result = await run(
        [*curl_base(ftp), "-T", str(local), "-Q", f"-RNFR {fi}.filepart", "-Q", f"-RNTO {fi}",
         f"ftp://127.0.0.1:{ftp.port}/IN/{fi}.filepart"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [(r[2], r[4]) for r in await ftp.uploads()] == [(fi, digest(body))]


# -- plain FTP: refused on the public listener, accepted on a secondary network's ---------------


async def test_plain_ftp_refused_on_the_public_listener(ftp: FtpEnv, tmp_path: Path) -> None:
    """A client in clear gets 530 "TLS required" at USER; curl without TLS fails."""
    client = await asyncio.to_thread(plain_client, "127.0.0.1", ftp.port)
    try:
        assert client.welcome is not None
        assert "AUTH TLS" in client.welcome
        reply = await asyncio.to_thread(reply_of, lambda: client.login(ftp.a.login, PASSWORD))
        assert reply.startswith("530 TLS required"), reply
    finally:
        client.close()
    local, _ = local_file(tmp_path, 100)
    fi = name("FI", ftp.a.number)
    result = await run(
        [require_curl(), "-sS", "--user", f"{ftp.a.login}:{PASSWORD}", "-T", str(local),
         f"ftp://127.0.0.1:{ftp.port}/IN/{fi}"]
    )  # fmt: skip
    assert result.returncode != 0
    assert "530" in result.stderr
    assert await ftp.uploads() == []


def require_curl() -> str:
    """curl's path (the plain case builds its own command line)."""
    return curl_base.__globals__["require_tool"]("curl")  # type: ignore[no-any-return]


async def test_plain_ftp_on_a_secondary_network_listener(
    start_ftp: StartFtp, tmp_path: Path
) -> None:
    """On the plain listener, plain FTP logs in from an address of a secondary network (curl
    uploads in clear); from any other address it is 530 TLS required, and FTPS still works."""
    env = await start_ftp(plain_allowed={"127.0.0.1"})
    local, body = local_file(tmp_path, 3_000)
    fi = name("FI", env.a.number)
    result = await run(
        [require_curl(), "-sS", "--ftp-pasv", "--user", f"{env.a.login}:{PASSWORD}",
         "-T", str(local), f"ftp://{PLAIN_HOST}:{env.plain_port}/IN/{fi}"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [(r[2], r[4]) for r in await env.uploads()] == [(fi, digest(body))]
    env.plain_allowed.clear()
    client = await asyncio.to_thread(plain_client, PLAIN_HOST, env.plain_port)
    try:
        reply = await asyncio.to_thread(reply_of, lambda: client.login(env.a.login, PASSWORD))
        assert reply.startswith("530 TLS required"), reply
    finally:
        client.close()
    ftps = [*curl_base(env), "-T", str(local), f"ftp://{PLAIN_HOST}:{env.plain_port}/IN/"]
    again = await run([*ftps[:-1], ftps[-1] + name("FI", env.a.number, "00002")])
    assert again.returncode == 0, again.stderr
    assert len(await env.uploads()) == 2


# -- refused commands ---------------------------------------------------------------------------


async def test_active_mode_and_partial_uploads_are_refused(ftp: FtpEnv) -> None:
    """PORT and EPRT (no FTP bounce), REST, APPE, STOU and SITE get 502; MKD/RMD 550 923."""
    client = await asyncio.to_thread(ftps_client, ftp)

    def replies() -> list[str]:
        commands = ["PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|", "REST 100", "APPE x",
                    "STOU", "SITE CHMOD 777 x", "MKD IN/x", "RMD IN"]  # fmt: skip
        return [reply_of(partial(client.sendcmd, c)) for c in commands]

    try:
        got = await asyncio.to_thread(replies)
    finally:
        client.close()
    assert [r[:3] for r in got] == ["502"] * 6 + ["550", "550"]
    assert got[-1].startswith("550 923: ")


async def test_banner_and_syst_reveal_no_version(ftp: FtpEnv) -> None:
    """The greeting and SYST name no product version."""
    client = await asyncio.to_thread(ftps_client, ftp)
    try:
        syst = await asyncio.to_thread(client.sendcmd, "SYST")
    finally:
        client.close()
    assert client.welcome is not None
    assert client.welcome.startswith("220 Batch Gateway ready")
    assert syst == "215 UNIX Type: L8"
    assert not any(ch.isdigit() for ch in client.welcome[4:])


async def test_transfer_without_prot_p_is_refused(ftp: FtpEnv) -> None:
    """After AUTH TLS, PASV before PROT P is 521, and PROT C is 534."""
    client = await asyncio.to_thread(ftps_client, ftp, prot_p=False)
    try:
        got = await asyncio.to_thread(
            lambda: [reply_of(lambda: client.sendcmd("PASV")),
                     reply_of(lambda: client.sendcmd("PBSZ 0")),
                     reply_of(lambda: client.sendcmd("PROT C"))]
        )  # fmt: skip
    finally:
        client.close()
    assert [r[:3] for r in got] == ["521", "200", "534"]


# -- logins ---------------------------------------------------------------------------------


async def test_login_failures_are_530_and_capped(start_ftp: StartFtp) -> None:
    """Wrong passwords get the same 530 as an unknown login; the third failure closes the
    connection with 421; failures are counted by reason and charge the source."""
    env = await start_ftp(max_attempts=3)
    client = await asyncio.to_thread(ftps_client, env, login=False)

    def attempts() -> list[str]:
        client.auth()
        out = []
        for login, password in [(env.a.login, "wrong-password-1"), ("nobody", PASSWORD),
                                (env.a.login, "wrong-password-2")]:  # fmt: skip
            client.sendcmd(f"USER {login}")
            out.append(reply_of(partial(client.sendcmd, f"PASS {password}")))
        out.append(reply_of(client.getline))
        return out

    try:
        got = await asyncio.to_thread(attempts)
    finally:
        client.close()
    assert got[:3] == ["530 Login incorrect."] * 3
    assert got[3].startswith("421 Too many login attempts")
    assert metric(env, "gateway_auth_failures_total", channel="ftp", reason="bad_credential") == 2
    assert metric(env, "gateway_auth_failures_total", channel="ftp", reason="unknown_login") == 1
    await connections_gone(env)
    source = env.sources.source("127.0.0.1")
    assert env.sources.charge(source, tried=False, now=0.0) > 0


@pytest.mark.parametrize(
    "logins",
    [
        pytest.param(["{login}"] * 6, id="one-user-six-passes"),
        pytest.param(["{login}", "{sender}", "{upper}", "{login}", "{sender}", "{upper}"],
                     id="login-sender-number-upper-case"),
    ],
)  # fmt: skip
async def test_pipelined_guesses_stop_at_the_third(start_ftp: StartFtp, logins: list[str]) -> None:
    """SECURITY.md 19 (issue 15 item 4): six USER/PASS pairs sent in one write, for one login
    or spelled three ways: three 530s, then 421 and the connection closed; the three commands
    after it are never read, so only three failures are counted (answered at once: no
    pacing)."""
    env = await start_ftp(max_attempts=3)
    channel = env.gateway.channel
    channel.config = dataclasses.replace(channel.config, pacing=FailurePacing(seconds=0.0))
    spellings = {"login": env.a.login, "sender": env.a.number, "upper": env.a.login.upper()}
    burst = b"".join(
        f"USER {login.format(**spellings)}\r\nPASS wrong-{n}\r\n".encode()
        for n, login in enumerate(logins)
    )

    def guess() -> list[str]:
        client = ftps_client(env, login=False)
        try:
            client.auth()
            assert client.sock is not None
            client.sock.sendall(burst)
            lines = []
            while True:
                try:
                    lines.append(client.getline())
                except (EOFError, OSError):
                    return lines
        finally:
            client.close()

    lines = await asyncio.to_thread(guess)
    assert [line[:3] for line in lines] == ["331", "530", "331", "530", "331", "530", "421"]
    assert metric(env, "gateway_auth_failures_total", channel="ftp", reason="bad_credential") == 3
    await connections_gone(env)


_ODD_COMMANDS = {
    # command: the start of its reply (a gateway code where the folder service judged it)
    "REST 99999999999999999999999": "502 ",
    "REST -1": "502 ",
    "SIZE /IN/" + "A" * 5000: "550 922: path too long",
    "SIZE /OUT/x\x01": "550 922: control or format character U+0001",
    "CWD /../..": "550 922: '..' is not allowed in a path",
    "CWD /IN/" + "x/" * 3000: "550 922: path too long",
    "PORT 999,999,999,999,999,999": "502 Active mode is not supported",
    "EPRT |2|::1|99999999999|": "502 Active mode is not supported",
    "EPSV 99": "522 ",
    "ALLO 99999999999999999999999": "202 ",
    "DELE /": "550 923: remove is not permitted in the root",
    "MKD /IN/x": "550 923: mkdir is not permitted in IN",
    "RMD /IN": "550 923: rmdir is not permitted in IN",
    "XRMD /OUT": "550 923: rmdir is not permitted in OUT",
    "RNTO /OUT/a": "503 ",
    "APPE /IN/x": "502 ",
}


async def test_odd_commands_get_their_reply_never_python_text(ftp: FtpEnv) -> None:
    """SECURITY.md 19 (issue 15 item 3, "internal error text reaches clients elsewhere"): huge
    and negative numbers, long, deep and '..' paths, active mode to impossible addresses,
    folders made or removed, a rename without its RNFR: each gets its reply (with the gateway
    code where the folder service judged it), never a Python or OS message."""

    def replies() -> dict[str, str]:
        client = ftps_client(ftp)
        try:
            return {cmd: reply_of(partial(client.sendcmd, cmd)) for cmd in _ODD_COMMANDS}
        finally:
            client.close()

    answers = await asyncio.to_thread(replies)
    for command, expected in _ODD_COMMANDS.items():
        assert answers[command].startswith(expected), (command[:40], answers[command])
        for text in ("Error", "errno", "Traceback", "int ", "object", "None"):
            assert text not in answers[command], (command[:40], answers[command])


async def test_login_from_outside_the_senders_network_is_refused(ftp: FtpEnv) -> None:
    """Sender B's FTP channel admits only its network: from loopback its login is 530."""
    client = await asyncio.to_thread(ftps_client, ftp, login=False)
    try:
        reply = await asyncio.to_thread(reply_of, lambda: client.login(ftp.b.login, PASSWORD))
    finally:
        client.close()
    assert reply == "530 Login incorrect."
    assert (
        metric(ftp, "gateway_auth_failures_total", channel="ftp", reason="network_not_allowed") == 1
    )


# -- refusals as replies with the gateway code ----------------------------------------------------


async def test_refused_name_is_553_with_its_code(ftp: FtpEnv, tmp_path: Path) -> None:
    """Another sender's number in the name gets 553 108 and is recorded for a negative ACRF;
    a traversal is 550 922; nothing is stored."""
    local, _ = local_file(tmp_path, 100)
    theirs = name("FI", ftp.b.number)
    result = await run(
        [*curl_base(ftp), "-T", str(local), f"ftp://127.0.0.1:{ftp.port}/IN/{theirs}"]
    )
    assert result.returncode != 0
    assert f"553 108: sender number {ftp.b.number}" in result.stderr or "553" in result.stderr
    client = await asyncio.to_thread(ftps_client, ftp)

    def store(path: str) -> str:
        return reply_of(lambda: client.storbinary(f"STOR {path}", io.BytesIO(b"x" * 100)))

    try:
        got = await asyncio.to_thread(store, f"IN/{theirs}")
        traversal = await asyncio.to_thread(store, "../IN/" + name("FI", ftp.a.number))
    finally:
        client.close()
    assert got.startswith("553 108: "), got
    assert traversal.startswith("550 922: "), traversal
    assert await ftp.uploads() == []
    assert await ftp.refusals() == [("IN", theirs, 108), ("IN", theirs, 108)]


def test_reply_table_holds_every_code() -> None:
    """Every gateway code has exactly one FTP reply; refusals keep their code in the text."""
    assert set(REPLIES) == set(Code)
    assert refusal(reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours")) == (
        "553",
        "108: sender number 006401 is not yours",
    )
    assert refusal(reject(Code.QUOTA_EXCEEDED))[0] == "552"
    forged = refusal(reject(Code.INTERNAL_ERROR, "disk full\r\n226 ok"))
    assert forged == ("451", "999: disk full??226 ok")


# -- data connections ---------------------------------------------------------------------------


def test_same_peer_rule() -> None:
    """A data connection is the control peer's only from the same address (mapped or not)."""
    assert same_peer("127.0.0.1", "127.0.0.1")
    assert same_peer("::ffff:192.0.2.7", "192.0.2.7")
    assert not same_peer("127.0.0.1", "127.0.0.2")
    assert not same_peer("192.0.2.7", "192.0.2.8")
    assert not same_peer("not-an-address", "not-an-address")


async def test_data_connection_from_another_address_is_dropped(
    start_ftp: StartFtp, tmp_path: Path
) -> None:
    """Whoever races to the passive port from another address is dropped; the client's own
    data connection then carries the upload."""
    env = await start_ftp(plain_allowed={"127.0.0.1"})
    body = os.urandom(10_000)
    fi = name("FI", env.a.number)

    def steal_then_store() -> tuple[bytes, str]:
        client = plain_client(PLAIN_HOST, env.plain_port)
        try:
            client.login(env.a.login, PASSWORD)
            host, port = client.makepasv()
            with socket.socket() as thief:
                thief.bind(("127.0.0.2", 0))
                thief.settimeout(10)
                thief.connect((host, port))  # first in the queue, before the client's own
                with socket.create_connection((host, port), timeout=10) as data:
                    client.putcmd(f"STOR IN/{fi}")
                    assert client.getresp().startswith("150")
                    got = thief.recv(1)  # closed by the gateway: b""
                    data.sendall(body)
            return got, client.voidresp()
        finally:
            client.close()

    stolen, final = await asyncio.to_thread(steal_then_store)
    assert stolen == b""
    assert final.startswith("226")
    assert [(r[2], r[4]) for r in await env.uploads()] == [(fi, digest(body))]


async def test_data_connection_failure_fails_only_that_transfer(ftp: FtpEnv) -> None:
    """A data connection that breaks its TLS handshake fails the transfer with 425; the control
    connection goes on and nothing is stored."""
    fi = name("FI", ftp.a.number)

    def broken_then_noop() -> tuple[str, str]:
        client = ftps_client(ftp)
        try:
            host, port = client.makepasv()
            with socket.create_connection((host, port), timeout=10) as data:
                client.putcmd(f"STOR IN/{fi}")
                assert client.getresp().startswith("150")
                data.sendall(b"this is not a TLS client hello\r\n" * 4)
            failed = reply_of(client.voidresp)
            return failed, client.voidcmd("NOOP")
        finally:
            client.close()

    failed, noop = await asyncio.to_thread(broken_then_noop)
    assert failed.startswith("425"), failed
    assert noop.startswith("200")
    assert await ftp.uploads() == []


async def test_input_behind_auth_is_refused(ftp: FtpEnv) -> None:
    """Commands sent in clear behind AUTH TLS (STARTTLS injection) close the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ftp.port)
    try:
        await reader.readline()  # 220
        writer.write(b"AUTH TLS\r\nUSER injected\r\n")
        async with asyncio.timeout(10):
            reply = await reader.readline()
            rest = await reader.read()
    finally:
        writer.close()
    assert reply.startswith(b"421 "), reply
    assert rest == b""


async def test_login_grace_closes_a_silent_connection(start_ftp: StartFtp) -> None:
    """A connection that does not log in within the grace time gets 421 and is closed."""
    env = await start_ftp(grace=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    try:
        async with asyncio.timeout(10):
            lines = (await reader.read()).split(b"\r\n")
    finally:
        writer.close()
    assert lines[0].startswith(b"220 ")
    assert lines[1].startswith(b"421 Login timeout")


async def connections_gone(env: FtpEnv) -> None:
    """Wait until every control connection has been cleaned up (its end is an event)."""
    channel = env.gateway.channel
    async with asyncio.timeout(10):
        while True:
            channel.lost.clear()
            if not channel.controls:
                return
            await channel.lost.wait()


def test_tls_context_refuses_old_protocols(ftps_identity: object) -> None:
    """The FTPS context speaks TLS 1.2+ only and sends no TLS 1.3 session tickets."""
    from gateway.ops.tls import server_context

    context = server_context(ftps_identity.cert, ftps_identity.key)  # type: ignore[attr-defined]
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.num_tickets == 0
    assert all("GCM" in c["name"] or "CHACHA" in c["name"] for c in context.get_ciphers())
    assert ftplib.FTP_TLS is not None  # ftplib is the client of the cases above


async def test_size_limit_and_missing_file_replies(start_ftp: StartFtp, tmp_path: Path) -> None:
    """An upload over max_file_bytes fails with 552 184 and leaves nothing; a missing return
    file is 550 927; the control connection answers on."""
    env = await start_ftp(max_file_bytes=4096)
    fi = name("FI", env.a.number)
    missing_ack = "FO.ACRF.999999.20260115.00009.R"

    def too_big_then_missing() -> tuple[str, str, str]:
        client = ftps_client(env)
        try:
            big = reply_of(lambda: client.storbinary(f"STOR IN/{fi}", io.BytesIO(b"x" * 50_000)))
            missing = reply_of(lambda: client.retrbinary(f"RETR OUT/{missing_ack}", lambda _: None))
            return big, missing, client.voidcmd("NOOP")
        finally:
            client.close()

    big, missing, noop = await asyncio.to_thread(too_big_then_missing)
    assert big.startswith("552 184: "), big
    assert missing.startswith("550 927: "), missing
    assert noop.startswith("200")
    assert await env.uploads() == []
    assert env.visible_files() == []
