"""Password guessing, refused-connection floods and channels per connection (issue 15 items 4,
8, 9; issue 16's shared lockout), with real clients: OpenSSH (passwords through SSH_ASKPASS),
asyncssh, curl over FTPS."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import structlog

from gateway.channels.penalties import PenaltyPolicy, SourceGuard
from gateway.channels.refusals import RefusalLogPolicy
from gateway.channels.sftp import SftpConfig, SftpGateway
from gateway.ops.metrics import Metrics
from gateway.ops.pacing import FailurePacing
from gateway.registry.credentials import Verdict
from gateway.spool.folders import Folders, NamePolicy
from tests.channels.conftest import Env, StartGateway, run_sftp
from tests.channels.ftp_env import (
    TODAY,
    FtpEnv,
    StartFtp,
    curl_base,
    ftps_client,
    reply_of,
    run,
)
from tests.ops.test_pacing import HeldSleep
from tests.registry.test_lockout import GatedHashing
from tests.tools import require_tool

AT_ONCE = FailurePacing(seconds=0.0)
"""Failed passwords answered at once: for the tests whose charges must not drain meanwhile."""


def _count(metric: Any, **labels: str) -> float:
    """The sum of a counter's samples whose labels include ``labels``."""
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def _password_gateway(
    start_gateway: StartGateway, **config: Any
) -> tuple[Env, SftpGateway, Metrics]:
    penalties = config.pop("penalties", None)
    gw = await start_gateway(penalties=penalties)
    gateway = gw.gateway
    gateway.config = replace(gateway.config, allow_password=True, **config)
    gateway.metrics = Metrics.create()
    return gw, gateway, gateway.metrics


def _askpass(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An SSH_ASKPASS program that answers a wrong password and counts how often it was asked."""
    asked = tmp_path / "asked"
    program = tmp_path / "askpass.sh"
    program.write_text(f"#!/bin/sh\necho asked >> {asked}\necho wrong-guess-1\n")
    program.chmod(0o700)
    env = {**os.environ, "SSH_ASKPASS": str(program), "SSH_ASKPASS_REQUIRE": "force"}
    env.setdefault("DISPLAY", ":0")
    return env, asked


async def test_openssh_gets_three_passwords_per_connection_each_charged_at_once(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """OpenSSH ``sftp`` allowed ten prompts is disconnected after the third wrong password; the
    three are charged to the source one by one (3 x 5 s passes a 12 s threshold, which one
    charge per connection would not)."""
    # Answered at once (no pacing): the charges do not drain between the attempts.
    gw, gateway, metrics = await _password_gateway(
        start_gateway, penalties=PenaltyPolicy(min_seconds=12.0), pacing=AT_ONCE
    )
    env, asked = _askpass(tmp_path)
    process = await asyncio.create_subprocess_exec(
        require_tool("sftp"), "-P", str(gw.port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
        "-o", "NumberOfPasswordPrompts=10", "-o", "LogLevel=ERROR",
        f"{gw.a.login}@127.0.0.1",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        await process.communicate()
    assert process.returncode != 0
    assert asked.read_text().splitlines() == ["asked"] * 3
    assert _count(metrics.auth_failures_total, channel="sftp") == 3
    source = gateway.sources.source("127.0.0.1")
    assert gateway.sources.penalized(source, time.monotonic())


class _Guesser(asyncssh.SSHClient):
    """Offers passwords one after another; notes whether its source was already penalised when
    it is asked for the third (two failures earlier, on the same connection)."""

    def __init__(self, gw: SftpGateway) -> None:
        self.gw = gw
        self.asked = 0
        self.penalized_before_third: bool | None = None

    def password_auth_requested(self) -> str | None:
        self.asked += 1
        if self.asked == 3:
            source = self.gw.sources.source("127.0.0.1")
            self.penalized_before_third = self.gw.sources.penalized(source, time.monotonic())
        return f"wrong-guess-{self.asked}" if self.asked <= 5 else None


async def test_failed_passwords_are_charged_while_the_connection_is_open(
    start_gateway: StartGateway,
) -> None:
    """With a 9 s threshold, two wrong passwords (10 s) have penalised the source before the
    client is asked for its third, on the same connection."""
    gw, gateway, _ = await _password_gateway(
        start_gateway, penalties=PenaltyPolicy(min_seconds=9.0), pacing=AT_ONCE
    )
    guesser = _Guesser(gateway)
    with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError)):
        await asyncssh.connect(
            "127.0.0.1", gw.port, username=gw.a.login, client_factory=lambda: guesser,
            client_keys=None, known_hosts=None, agent_path=None,
        )  # fmt: skip
    assert guesser.penalized_before_third is True
    assert guesser.asked == 3


async def test_a_busy_refusal_is_answered_only_after_the_delay_holding_no_pool_slot(
    start_gateway: StartGateway,
) -> None:
    """With the pool full (one check running, one waiting), a third password login is refused
    ``busy`` but not answered until its delay has passed: held there, it takes no pool slot, and
    OpenSSH ``sftp`` logs in with its key meanwhile. The two checked guesses, once refused, wait
    for their delay too, with the pool empty; all three are answered only when it ends."""
    held = HeldSleep()
    pacing = FailurePacing(seconds=1.0, clock=lambda: 0.0, sleep=held)
    gw, _, metrics = await _password_gateway(start_gateway, pacing=pacing)
    gated = GatedHashing()
    gw.registry.hashing = gated

    async def guess() -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(
                "127.0.0.1", gw.port, username=gw.a.login, password="wrong-guess-1",
                client_keys=None, known_hosts=None, agent_path=None,
            )  # fmt: skip

    guesses = [asyncio.create_task(guess()) for _ in range(2)]
    try:
        async with asyncio.timeout(60):
            await gated.two_in.wait()
        busy = asyncio.create_task(guess())
        guesses.append(busy)
        await held.until(1)
        assert held.waits == [1.0]  # the whole delay: the refusal took no time on this clock
        assert _count(metrics.auth_failures_total, channel="sftp", reason="busy") == 1
        assert gated.statistics().in_flight == 2  # the refused one holds no slot
        listed = await run_sftp(gw, "ls /\n")
        assert listed.returncode == 0, listed.stderr
        assert not busy.done()  # a key login came and went; the refusal is not answered yet
        gated.gate.set()
        await held.until(3)
        assert gated.statistics().in_flight == 0
        assert not any(task.done() for task in guesses)
    finally:
        gated.gate.set()
        held.release.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*guesses)
    assert held.waits == [1.0, 1.0, 1.0]
    stats = gated.statistics()
    assert (stats.checked, stats.refused, stats.in_flight) == (2, 1, 0)


class _FirstIn(GatedHashing):
    """Gated checks, and an event set when the first one reaches the pool."""

    def __init__(self) -> None:
        super().__init__()
        self.first_in = asyncio.Event()

    async def check(self, stored: str | None, password: str) -> Verdict:
        self.first_in.set()
        return await super().check(stored, password)


class _WatchedSources(SourceGuard):
    """The listener's source guard, with an event set at each per-attempt charge."""

    def __init__(self, policy: PenaltyPolicy) -> None:
        super().__init__(policy)
        self.charged = asyncio.Event()

    def charge_attempt(self, source: str | None, now: float) -> float:
        self.charged.set()
        return super().charge_attempt(source, now)


async def test_a_client_that_leaves_during_its_password_check_is_charged(
    start_gateway: StartGateway,
) -> None:
    """A client that drops the connection while its password is being checked (asyncssh then
    cancels the check, as it does when the next request comes first) is charged for that
    attempt: with a 4 s threshold its one charge (5 s) penalises the source. The end of a
    connection that tried passwords charges nothing, so before this the guess was free."""
    gw, gateway, _ = await _password_gateway(start_gateway)
    policy = PenaltyPolicy(min_seconds=4.0)
    sources = gateway.sources = _WatchedSources(policy)
    gated = _FirstIn()
    gw.registry.hashing = gated

    class _Leaver(asyncssh.SSHClient):
        def password_auth_requested(self) -> str:
            return "wrong-guess-1"

    async def guess() -> None:
        await asyncssh.connect(
            "127.0.0.1", gw.port, username=gw.a.login, client_factory=_Leaver,
            client_keys=None, known_hosts=None, agent_path=None,
        )  # fmt: skip

    task = asyncio.create_task(guess())
    source = sources.source("127.0.0.1")
    try:
        async with asyncio.timeout(30):
            await gated.first_in.wait()
        assert not sources.charged.is_set()
        task.cancel()  # the client closes its connection while the check is held
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(30):
            await sources.charged.wait()
    finally:
        gated.gate.set()
    assert sources.penalized(source, time.monotonic())


async def test_a_wrong_ftp_password_is_answered_after_the_delay_while_others_log_in(
    start_ftp: StartFtp,
) -> None:
    """A wrong FTP password is counted at once but answered 530 only when its delay ends;
    meanwhile curl logs in with the right password on another connection."""
    held = HeldSleep()
    env = await start_ftp()
    channel = env.gateway.channel
    pacing = FailurePacing(seconds=1.0, clock=lambda: 0.0, sleep=held)
    channel.config = replace(channel.config, pacing=pacing)
    client = await asyncio.to_thread(ftps_client, env, login=False)

    def wrong() -> str:
        client.auth()
        client.sendcmd(f"USER {env.a.login}")
        return reply_of(lambda: client.sendcmd("PASS wrong-guess-1"))

    answer = asyncio.create_task(asyncio.to_thread(wrong))
    try:
        await held.until(1)
        assert held.waits == [1.0]
        assert _count(env.metrics.auth_failures_total, channel="ftp", reason="bad_credential") == 1
        listed = await run([*curl_base(env), f"ftp://127.0.0.1:{env.port}/"])
        assert listed.returncode == 0, listed.stderr
        assert "OUT" in listed.stdout
        assert not answer.done()
    finally:
        held.release.set()
        async with asyncio.timeout(60):
            got = await answer
        client.close()
    assert got == "530 Login incorrect."


async def test_session_channels_per_connection_are_capped(start_gateway: StartGateway) -> None:
    """With a cap of three, a fourth SFTP session on one connection is refused at its open; once
    one closes, another opens; other connections are not affected."""
    gw, gateway, _ = await _password_gateway(start_gateway, max_sessions_per_connection=3)
    async with await gw.connect() as conn:
        clients = [await conn.start_sftp_client() for _ in range(3)]
        with pytest.raises(asyncssh.ChannelOpenError, match="at most 3 sessions"):
            await conn.start_sftp_client()
        assert gateway.channels_refused == 1
        clients[0].exit()
        await clients[0].wait_closed()
        again = await conn.start_sftp_client()
        assert "IN" in await again.listdir("/")
        async with await gw.connect() as other, other.start_sftp_client() as sftp:
            assert "OUT" in await sftp.listdir("/")
        for client in [*clients[1:], again]:
            client.exit()
    assert gateway.channels_refused == 1


async def test_a_refused_flood_writes_a_few_lines_and_a_summary_while_metrics_count_all(
    start_gateway: StartGateway,
) -> None:
    """Twenty connections from a penalised network: three ``connection.refused`` lines, then
    one ``connection.refused_summary`` with the other seventeen at the listener's stop; the
    metric counts all twenty."""
    policy = PenaltyPolicy(refused_log=RefusalLogPolicy(per_source=3, window_seconds=3600.0))
    gw, gateway, metrics = await _password_gateway(start_gateway, penalties=policy)
    source = gateway.sources.source("127.0.0.1")
    for _ in range(4):
        gateway.sources.charge(source, tried=True, now=time.monotonic())
    with structlog.testing.capture_logs() as logs:
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            async with asyncio.timeout(10):
                assert await reader.read(4096) == b""
            writer.close()
        lines = [e for e in logs if e["event"] == "connection.refused"]
        assert len(lines) == 3
        assert {(e["channel"], e["reason"], e["source"]) for e in lines} == {
            ("sftp", "penalty", source)
        }
        assert not [e for e in logs if e["event"] == "connection.refused_summary"]
        gateway.close()
        summaries = [e for e in logs if e["event"] == "connection.refused_summary"]
    assert [(s["source"], s["suppressed"], s["by_reason"]) for s in summaries] == [
        (source, 17, {"sftp:penalty": 17})
    ]
    assert _count(metrics.connections_refused_total, channel="sftp", reason="penalty") == 20


async def test_sftp_and_ftp_guesses_lock_one_account_until_the_operator_unblocks_it(
    start_ftp: StartFtp, host_keys: Path, tmp_path: Path
) -> None:
    """Two wrong passwords over SFTP and three over FTPS (curl) lock the technical user: the
    right FTP password is then refused like a wrong one; after the operator's unblock curl
    lists the folders."""
    ftp: FtpEnv = await start_ftp(penalties=PenaltyPolicy(min_seconds=600.0))
    registry = ftp.registry
    assert registry is not None
    names = NamePolicy(today=lambda: TODAY)
    sftp = SftpGateway(
        config=SftpConfig(port=0, host_key_dir=host_keys, allow_password=True),
        authenticator=registry,
        folders=Folders(spool=ftp.spool, names=names),
        sources=ftp.sources,
    )
    await sftp.start()
    try:
        for guess in ("wrong-guess-1", "wrong-guess-2"):
            with pytest.raises(asyncssh.PermissionDenied):
                await asyncssh.connect(
                    "127.0.0.1", sftp.port, username=ftp.a.login, password=guess,
                    client_keys=None, known_hosts=None, agent_path=None,
                )  # fmt: skip
    finally:
        sftp.close()
        await sftp.wait_closed()
    url = f"ftp://127.0.0.1:{ftp.port}/"
    wrong = [*curl_base(ftp)[:-1], f"{ftp.a.login}:wrong-guess-3"]
    for _ in range(3):
        assert (await run([*wrong, url])).returncode != 0
    locked = await run([*curl_base(ftp), url])
    assert locked.returncode == 67  # curl: the login was denied
    assert _count(ftp.metrics.auth_failures_total, channel="ftp", reason="locked") == 1
    assert await registry.unblock_user(actor=None, login=ftp.a.login) is None
    listed = await run([*curl_base(ftp), url])
    assert listed.returncode == 0, listed.stderr
    assert "OUT" in listed.stdout
