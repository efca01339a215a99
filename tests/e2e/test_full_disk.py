"""A really full disk, as a sender's OpenSSH ``sftp`` meets it (issue 15 item 3; SECURITY.md 22).

The daemon's state directory is a 5 MiB tmpfs: the spool (and its ``.tmp``), OUT and the
directory destination all live on it, so uploads fill it for real: no injected fault. The
registry database lives on the ordinary disk (``GATEWAY_DATABASE_URL``), as on its own volume
or in PostgreSQL, so only uploads take the 5 MiB and the arithmetic below holds; a failing
database is tested with injected faults in tests/channels/test_space_quota.py. The floor is
``[limits] min_free_bytes`` = 256 KiB (no percentage), so a 1 MiB upload that opens above it
runs into ENOSPC (929, ``disk_full``) and small ones are refused at open once the floor is
passed (929, ``floor``).

Mounting needs root: under ``CI=true`` a failing mount fails the test, elsewhere it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.e2e.conftest import Key, Party, Template, World, set_names
from tests.e2e.harness import (
    GatewayProcess,
    Sftp,
    acks_for,
    clean_environ,
    gateway_config,
    start_gateway,
    wait_acks,
)
from tests.pki import StandardPki
from tests.tools import mounted_tmpfs

pytestmark = pytest.mark.timeout(120)

KIB = 1024
MIB = 1024 * KIB
DISK = "5m"
FLOOR = 256 * KIB


def declaration(seq: str, size: int) -> bytes:
    """A well-formed declaration part of about ``size`` bytes."""
    return f"<?xml version='1.0'?><DmfA seq='{seq}'>".encode() + b"x" * size + b"</DmfA>\r\n"


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET on the metrics listener (an error status is an answer too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def short_of_space_counts(port: int) -> dict[str, float]:
    """``gateway_uploads_short_of_space_total`` of the SFTP channel, by cause."""
    _, text = http_get(port, "/metrics")
    counts = {}
    for line in text.splitlines():
        if line.startswith("gateway_uploads_short_of_space_total{") and 'channel="sftp"' in line:
            cause = re.search(r'cause="([^"]+)"', line)
            assert cause is not None, line
            counts[cause.group(1)] = float(line.rsplit(" ", 1)[1])
    return counts


def free_bytes(path: Path) -> int:
    """What the filesystem of ``path`` has free (for failure messages)."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def refusal_text(party: Party, key: Key, name: str) -> str:
    """Upload ``name`` with asyncssh (which, unlike OpenSSH, shows the server's reason text)
    and return the refusal's text; fails if the upload is stored."""

    async def put() -> str:
        async with (
            asyncssh.connect(
                party.sftp.host,
                party.sftp.port,
                username=party.login,
                client_keys=[str(key.private)],
                known_hosts=None,
                agent_path=None,
            ) as connection,
            connection.start_sftp_client() as client,
        ):
            try:
                await client.put(str(party.work / name), f"IN/{name}")
            except asyncssh.SFTPError as error:
                return str(error.reason)
        raise AssertionError(f"{name} was stored")

    return asyncio.run(asyncio.wait_for(put(), timeout=60))


def configure(
    state: Path,
    tmp_path: Path,
    template: Template,
    trust_dir: Path,
    *,
    database: Path | None = None,
    floor: int = FLOOR,
    reserve: int = 0,
) -> tuple[Path, dict[str, str]]:
    """The config file and environment of a ``gateway serve`` on ``state``, its registry a copy
    of the template (on the ordinary disk unless ``database`` says where), with the ``floor``
    (256 KiB) and a space reserve of ``reserve`` bytes (none by default: the arithmetic below
    counts uploads only)."""
    database = database or tmp_path / "registry.sqlite3"
    shutil.copyfile(template.database, database)
    config = tmp_path / "gateway.toml"
    limits = (
        f"[limits]\nmin_free_bytes = {floor}\nmin_free_percent = 0\nreserve_bytes = {reserve}\n"
    )
    config.write_text(gateway_config(state_dir=state, trust_dir=trust_dir, extra=limits))
    return config, clean_environ(GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{database}")


def fresh_state(base: Path, host_keys: Path) -> Path:
    """``base/state`` made, with the session's SSH host keys (no key generation per test)."""
    state = base / "state"
    state.mkdir()
    shutil.copytree(host_keys, state / "hostkeys")
    return state


def sender_a(
    gateway: GatewayProcess, tmp_path: Path, template: Template, cast: StandardPki, key: Key
) -> tuple[Party, World]:
    """Sender A with its sftp client and local folder, and a World that is only its signer
    here (B and the web client are never used)."""
    work = tmp_path / "sender-a"
    work.mkdir()
    sftp = Sftp(port=gateway.sftp_port, login=template.a.login, key=key.private)
    a = Party(
        number=template.a.number,
        login=template.a.login,
        sftp=sftp,
        work=work,
        out_dir=gateway.state_dir / "out" / template.a.number / "OUT",
    )
    return a, World(gateway=gateway, a=a, b=a, cast=cast, web_client=template.web_client)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 5 MiB tmpfs mounted under ``tmp_path``, unmounted at the end."""
    with mounted_tmpfs(tmp_path / "disk", DISK) as point:
        yield point


def test_a_full_spool_refuses_with_929_stays_up_and_acknowledges_the_set_once_freed(
    small_disk: Path,
    tmp_path: Path,
    template: Template,
    cast: StandardPki,
    trust_dir: Path,
    ssh_keys: tuple[Key, Key],
    host_keys: Path,
) -> None:
    """Fillers fill the tmpfs (ENOSPC, then the floor): the set's big part gets 929 both ways,
    /readyz says 503 and the daemon answers on; once the fillers are removed over sftp, the
    same part, its FS and the GO are sent again and the set gets its positive ACRF."""
    state = fresh_state(small_disk, host_keys)
    config, env = configure(state, tmp_path, template, trust_dir)
    gateway = start_gateway(config, state_dir=state, cwd=tmp_path, env=env)
    try:
        a, world = sender_a(gateway, tmp_path, template, cast, ssh_keys[0])
        contents = [declaration("00001", 2 * KIB), declaration("00001", 3 * MIB // 2)]
        names = world.write_set(a, seq="00001", contents=contents)
        fi_big, fs_big = names.fis[1], names.fss[1]
        second_part = a.put([fi_big, fs_big, names.go])

        # Part 1 arrives while there is room.
        a.sftp.ok(a.put([names.fis[0], names.fss[0]]), cwd=a.work)

        # 1 MiB fillers (first parts of sets never closed; "-put": the batch goes on after a
        # refusal): four fit, the others run into ENOSPC. OpenSSH shows only "Failure".
        big = [
            a.write(set_names(a.number, f"{100 + n:05d}").fis[0], os.urandom(MIB)) for n in range(6)
        ]
        filled = a.sftp.run([f"-{command}" for command in a.put(big)], cwd=a.work)
        assert "close remote: Failure" in filled.stderr, filled.stderr

        # The set's 1.5 MiB part opens above the floor and meets the full disk; the batch stops
        # there (FS and GO unsent). asyncssh shows the code the reason text starts with.
        refused = a.sftp.run(second_part, cwd=a.work)
        assert refused.returncode != 0
        assert "Failure" in refused.stderr, refused.stderr
        reason = refusal_text(a, ssh_keys[0], fi_big)
        assert reason.startswith("929: the gateway is short of space"), reason
        assert "No space left" not in reason

        # Small fillers until the floor is passed; then the same part is refused at open.
        small = [
            a.write(set_names(a.number, f"{200 + n:05d}").fis[0], os.urandom(128 * KIB))
            for n in range(12)
        ]
        a.sftp.run([f"-{command}" for command in a.put(small)], cwd=a.work)
        assert free_bytes(small_disk) < FLOOR
        again = a.sftp.run(second_part, cwd=a.work)
        assert again.returncode != 0
        assert f'dest open "/IN/{fi_big}": Failure' in again.stderr, again.stderr
        assert refusal_text(a, ssh_keys[0], fi_big).startswith("929")

        # Short of space, the daemon is up: it answers, says why it is not ready, lists IN.
        assert gateway.process.poll() is None, gateway.tail()
        assert http_get(gateway.metrics_port, "/healthz")[0] == 200
        readyz = http_get(gateway.metrics_port, "/readyz")
        assert readyz == (503, "not ready: spool short of space\n")
        gateway.wait_count("spool.short_of_space", 4, where={"name": fi_big}, timeout=10)
        events = gateway.events("spool.short_of_space")
        causes = [e["cause"] for e in events if e["name"] == fi_big]
        assert causes == ["disk_full", "disk_full", "floor", "floor"], gateway.tail()
        assert {e["name"] for e in events if e["cause"] == "floor"} & set(small)
        counts = short_of_space_counts(gateway.metrics_port)
        assert counts["disk_full"] >= 3
        assert counts["floor"] >= 3
        pending = a.sftp.listing("IN", cwd=a.work)
        assert {names.fis[0], names.fss[0]} <= set(pending)
        assert not {fi_big, fs_big, names.go} & set(pending)
        stored = [name for name in pending if name in {*big, *small}]
        assert len(stored) >= 4
        assert list((state / "spool" / ".tmp").iterdir()) == []  # no partial file left

        # The sender removes its fillers; the node is ready again and the set goes through.
        a.sftp.ok([f"rm IN/{name}" for name in stored], cwd=a.work)
        assert http_get(gateway.metrics_port, "/readyz")[0] == 200, free_bytes(small_disk)
        a.sftp.ok(second_part, cwd=a.work)
        acks = wait_acks(a.out_dir, acks_for(names.go))
        assert [(k.result, k.code) for k in acks if k.file_name == names.go] == [(1, None)]
        assert not gateway.problems(), gateway.problems()
    finally:
        status = gateway.stop()
    assert status == 0, gateway.tail()


RESERVE = 512 * KIB


def test_with_the_registry_on_the_full_disk_the_reserve_lets_the_sender_remove_its_uploads(
    small_disk: Path,
    tmp_path: Path,
    template: Template,
    cast: StandardPki,
    trust_dir: Path,
    ssh_keys: tuple[Key, Key],
    host_keys: Path,
) -> None:
    """State directory and SQLite registry share the 5 MiB tmpfs, with no floor and a 512 KiB
    reserve. Fillers fill it to the last bytes: the first one that meets ENOSPC gives up the
    reserve (one critical ``storage.reserve_released``, alert, counted), and from then on every
    new upload, the set's too, is refused 929 at open. The sender removes its fillers over
    OpenSSH ``sftp`` (database writes on the full disk), the reserve is taken back, and the
    set, sent again, gets its positive ACRF."""
    state = fresh_state(small_disk, host_keys)
    database = small_disk / "registry.sqlite3"
    config, env = configure(
        state, tmp_path, template, trust_dir, database=database, floor=0, reserve=RESERVE
    )
    gateway = start_gateway(config, state_dir=state, cwd=tmp_path, env=env)
    try:
        reserve = state / "space-reserve"
        assert reserve.stat().st_size == RESERVE
        assert reserve.stat().st_blocks * 512 >= RESERVE  # allocated, not sparse
        assert reserve.stat().st_mode & 0o777 == 0o600
        a, world = sender_a(gateway, tmp_path, template, cast, ssh_keys[0])
        names = world.write_set(a, seq="00001", contents=[declaration("00001", 64 * KIB)])
        the_set = a.put([names.fis[0], names.fss[0], names.go])

        # Fillers of shrinking sizes ("-put": the batch goes on after a refusal) until the
        # disk is full to its last bytes, or the reserve refuses them at open.
        fillers = [
            a.write(set_names(a.number, f"{100 + n:05d}").fis[0], os.urandom(size))
            for n, size in enumerate([MIB] * 6 + [64 * KIB] * 16 + [4 * KIB] * 16)
        ]
        filled = a.sftp.run([f"-{command}" for command in a.put(fillers)], cwd=a.work)
        assert "Failure" in filled.stderr, filled.stderr
        # The daemon logs before it answers, but the test reads its log on another thread: wait.
        released = gateway.wait_count("storage.reserve_released", 1, timeout=10)
        assert [(e["level"], e["alert"], e["bytes"]) for e in released] == [
            ("critical", True, RESERVE)
        ], gateway.tail()
        assert not reserve.exists()
        assert free_bytes(small_disk) < 2 * RESERVE  # the reserve's bytes, and a few more

        # Short of space: the set is refused at open, with the code, and the node says so.
        refused = a.sftp.run(the_set, cwd=a.work)
        assert refused.returncode != 0
        assert refusal_text(a, ssh_keys[0], names.fis[0]).startswith("929")
        assert http_get(gateway.metrics_port, "/readyz")[0] == 503
        _, metrics = http_get(gateway.metrics_port, "/metrics")
        assert re.search(r"gateway_storage_reserve_released_total\{[^}]*\} 1\.0", metrics)

        # The sender removes what it stored: each removal is a database write on the full disk.
        stored = [name for name in a.sftp.listing("IN", cwd=a.work) if name in fillers]
        assert len(stored) >= 4
        a.sftp.ok([f"rm IN/{name}" for name in stored], cwd=a.work)
        assert not set(stored) & set(a.sftp.listing("IN", cwd=a.work))

        # Room again: the next check takes the reserve back, and the set goes through.
        assert http_get(gateway.metrics_port, "/readyz")[0] == 200, free_bytes(small_disk)
        assert reserve.stat().st_blocks * 512 >= RESERVE
        assert len(gateway.wait_count("storage.reserve_restored", 1, timeout=10)) == 1
        a.sftp.ok(the_set, cwd=a.work)
        acks = wait_acks(a.out_dir, acks_for(names.go))
        assert [(k.result, k.code) for k in acks if k.file_name == names.go] == [(1, None)]
        problems = [e for e in gateway.problems() if e["event"] != "storage.reserve_released"]
        assert not problems, problems
    finally:
        status = gateway.stop()
    assert status == 0, gateway.tail()
