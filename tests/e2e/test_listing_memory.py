"""Listing an OUT folder of 100,000 files keeps the gateway's memory bounded (SECURITY.md 14).

One ``gateway serve`` (its own state directory) gets 100,000 empty return files in sender A's
``OUT`` folder, made directly on disk in the daemon's layout (``state/out/<number>/OUT``). Each
channel lists the folder with a real client, and every name must come back:

- SFTP: OpenSSH ``sftp -b`` ``ls -1 OUT`` (all of it, no cap: a sender must see its files);
- FTPS: ``curl`` ``LIST`` and ``NLST`` (``--list-only``) of ``/OUT/`` on the public listener,
  and Python's ``ftplib`` ``MLSD``;
- HTTPS: ``curl`` pages of ``GET /v1/OUT/?limit=10000`` following ``next`` to the end (the pages
  are sorted by name: the names must come back in order, each once).

Memory is the daemon's peak resident set (``VmHWM``), reset (``clear_refs`` 5) before each
listing and compared with its resident set (``VmRSS``) at that moment: the growth must stay
under :data:`LIMIT`. No timings are asserted; the figures are printed (``pytest -s``).
"""

from __future__ import annotations

import ftplib
import json
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import FTP_PASSWORD, Launch, World
from tests.e2e.test_ftp import ca_file
from tests.e2e.test_ftp import curl as ftp_curl
from tests.e2e.test_web import curl as web_curl
from tests.e2e.test_web import status_and_body

pytestmark = pytest.mark.timeout(300)

FILES = 100_000
MIB = 1024 * 1024
LIMIT = 32 * MIB
PAGE = 10_000  # [web] list_limit's upper bound: ten curl requests, not a hundred


def return_name(sender: str, index: int) -> str:
    """A return-file-like name (the folder service lists any acceptable name)."""
    return f"FO.ACRF.DMFA.{sender}.20260115.{index:06d}.R.1.1"


def make_files(folder: Path, names: list[str]) -> None:
    """Create ``names`` as empty files in ``folder`` (open and close only: fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for name in names:
        os.close(os.open(folder / name, flags, 0o600))


def status_kib(pid: int, field: str) -> int:
    """``field`` (``VmRSS``, ``VmHWM``) of ``/proc/<pid>/status``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class Growth:
    """The growth of a process's peak resident set over its resident set at the start."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0
        self.peak = 0

    def __enter__(self) -> Growth:
        # "5" resets the peak resident set (VmHWM) to the current one (proc(5), Linux >= 4.0).
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.before = status_kib(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = status_kib(self.pid, "VmHWM")

    @property
    def bytes(self) -> int:
        """Peak minus the resident set at the start."""
        return self.peak - self.before

    def report(self, what: str, seconds: float) -> str:
        """One line for the test's output."""
        return (
            f"{what}: {seconds:.1f} s; RSS {self.before / MIB:.1f} MiB, peak "
            f"{self.peak / MIB:.1f} MiB, growth {self.bytes / MIB:.1f} MiB"
        )


@pytest.fixture(scope="module")
def crowded(launch: Launch) -> tuple[World, list[str]]:
    """A gateway of its own whose sender A has 100,000 files in OUT (and the names)."""
    world = launch(env={"GATEWAY_WEB__LIST_LIMIT": str(PAGE)})
    names = [return_name(world.a.number, i) for i in range(FILES)]
    make_files(world.a.out_dir, names)
    return world, names


def measured(world: World, what: str, listing: Callable[[], list[str]]) -> list[str]:
    """Run ``listing`` with the daemon's memory growth measured; assert the bound."""
    started = time.monotonic()
    with Growth(world.gateway.process.pid) as growth:
        names = listing()
    print(growth.report(what, time.monotonic() - started))
    assert growth.bytes < LIMIT, f"{what}: RSS grew by {growth.bytes / MIB:.1f} MiB"
    return names


def test_sftp_ls_shows_all_100k_files_in_bounded_memory(
    crowded: tuple[World, list[str]],
) -> None:
    """OpenSSH sftp ``ls -1 OUT`` shows every one of the 100,000 names."""
    world, names = crowded
    a = world.a
    a.sftp.ok(["ls -1 IN"], cwd=a.work)  # warms the login path: not counted

    def listing() -> list[str]:
        out = a.sftp.ok(["ls -1 OUT"], cwd=a.work)
        return [
            line.strip().rsplit("/", 1)[-1]
            for line in out.splitlines()
            if line.strip() and not line.startswith("sftp>")
        ]

    listed = measured(world, "sftp ls -1", listing)
    assert len(listed) == FILES
    assert sorted(listed) == names


@pytest.mark.parametrize("verb", ["LIST", "NLST"])
def test_ftps_listing_shows_all_100k_files_in_bounded_memory(
    crowded: tuple[World, list[str]], verb: str
) -> None:
    """curl over FTPS lists ``/OUT/`` (``LIST``, ``NLST``): every one of the 100,000 names."""
    world, names = crowded
    a = world.a
    options = ["--list-only"] if verb == "NLST" else []
    warm = ftp_curl(world, a, "/IN/", *options)  # the login and TLS paths: not counted
    assert warm.returncode == 0, warm.stderr

    def listing() -> list[str]:
        got = ftp_curl(world, a, "/OUT/", *options)
        assert got.returncode == 0, got.stderr[-2000:]
        return [line.split(" ")[-1] for line in got.stdout.splitlines() if line]

    listed = measured(world, f"ftps {verb}", listing)
    assert len(listed) == FILES
    assert sorted(listed) == names


def test_ftplib_mlsd_shows_all_100k_files_in_bounded_memory(
    crowded: tuple[World, list[str]],
) -> None:
    """Python's ftplib over FTPS (PROT P) reads ``MLSD /OUT``: 100,000 file facts."""
    world, names = crowded
    a = world.a
    context = ssl.create_default_context(cafile=str(ca_file(world)))
    client = ftplib.FTP_TLS(context=context, timeout=60)  # noqa: S321 (FTP is under test)
    client.connect("127.0.0.1", world.gateway.ftp_ports["public"])
    try:
        client.login(a.login, FTP_PASSWORD)
        client.prot_p()
        client.nlst("/IN")  # the data connection's TLS path: not counted

        def listing() -> list[str]:
            lines: list[str] = []
            client.retrlines("MLSD /OUT", lines.append)
            assert all(line.startswith("type=file;size=0;modify=") for line in lines)
            return [line.split(" ", 1)[1] for line in lines]

        listed = measured(world, "ftplib MLSD", listing)
    finally:
        client.close()
    assert len(listed) == FILES
    assert sorted(listed) == names


def test_https_pages_show_all_100k_files_in_order_in_bounded_memory(
    crowded: tuple[World, list[str]],
) -> None:
    """curl follows ``next`` through pages of at most 10,000 entries: the 100,000 names come
    back sorted, each once; a page over the cap is refused."""
    world, names = crowded
    a = world.a
    status, body = status_and_body(web_curl(world, a, f"/OUT/?limit={PAGE + 1}"))
    assert status == 400, body

    def listing() -> list[str]:
        listed: list[str] = []
        query = f"?limit={PAGE}"
        while True:
            status, body = status_and_body(web_curl(world, a, f"/OUT/{query}"))
            assert status == 200, body
            page = json.loads(body)
            assert len(page["entries"]) <= PAGE
            listed += [e["name"] for e in page["entries"]]
            if page["next"] is None:
                return listed
            query = f"?limit={PAGE}&cursor={page['next']}"

    listed = measured(world, "https pages", listing)
    assert len(listed) == FILES
    assert listed == names


def test_a_file_removed_between_pages_does_not_shift_the_next(
    crowded: tuple[World, list[str]],
) -> None:
    """The cursor is the last name of a page (keyset, not an offset): removing a listed file
    between two pages loses no other name."""
    world, names = crowded
    a = world.a
    status, body = status_and_body(web_curl(world, a, "/OUT/?limit=10"))
    assert status == 200, body
    first = json.loads(body)
    assert [e["name"] for e in first["entries"]] == names[:10]
    (a.out_dir / names[3]).unlink()
    status, body = status_and_body(web_curl(world, a, f"/OUT/?limit=10&cursor={first['next']}"))
    assert status == 200, body
    assert [e["name"] for e in json.loads(body)["entries"]] == names[10:20]
    make_files(a.out_dir, [names[3]])  # back, for the other listings of this gateway
