"""Listings a chunk or a page at a time (SECURITY.md 14): the folder service never holds a whole
folder. IN* comes from keyset queries (both databases), OUT* from ``os.scandir`` in chunks or a
heap of one page; the memory bound itself is measured end to end (tests/e2e/test_listing_memory).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from gateway.channels.web_openapi import LIST_LIMIT_MOST
from gateway.core.codes import Code, Rejection
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.ops.settings import WebSettings
from gateway.registry.db import create_engine
from gateway.registry.types import EnterpriseNumber, Principal, PrincipalKind, QualityId
from gateway.spool import ReturnFile, ReturnScan, Spool, SpoolLimits, place_return_file
from gateway.spool import folders as folder_service
from gateway.spool.folders import MAX_OPEN_LISTINGS, Folders, FolderSession, Listing, NamePolicy
from tests.spool.test_store import database_url  # noqa: F401  (a fixture: both databases)

SENDER = SenderNumber("006400")
TODAY = date(2026, 1, 15)


def fi(seq: int) -> str:
    """An FI name of SENDER dated TODAY."""
    return f"FI.DMFA.{SENDER}.20260115.{seq:05d}.R.1.1"


@pytest.fixture
async def spool(database_url: str, tmp_path: Path) -> AsyncIterator[Spool]:  # noqa: F811
    """A spool on each database."""
    engine = create_engine(database_url)
    limits = SpoolLimits(max_file_bytes=1000, sender_pending_quota_bytes=100_000)
    spool = Spool(state_dir=tmp_path / "state", engine=engine, limits=limits)
    yield spool
    spool.close()
    await engine.dispose()


class Quiet:
    """A log that keeps nothing."""

    def info(self, *args: object, **kwargs: object) -> None:
        """Nothing."""


def session_of(spool: Spool) -> FolderSession:
    """SENDER's folders, as one login sees them."""
    principal = Principal(
        login="tu-listing",
        kind=PrincipalKind.technical,
        enterprise=EnterpriseNumber("0403170701"),
        quality=QualityId(1),
        sender=SENDER,
        applications=frozenset({"DMFA"}),
        must_change_password=False,
    )
    folders = Folders(spool=spool, names=NamePolicy(today=lambda: TODAY))
    return folders.open_session(
        principal=principal, sender=SENDER, session_id="listing", channel="test", log=Quiet()
    )


async def upload(session: FolderSession, path: str) -> None:
    """Store (or park, for a temporary name) a one-byte file at ``path``."""
    opened = await session.open_upload(path)
    assert not isinstance(opened, Rejection), opened
    assert await opened.write(b"x") is None
    assert await opened.close() is None


async def read_all(listing: Listing | Rejection) -> list[list[str]]:
    """The names of every chunk of ``listing``, which is closed."""
    assert isinstance(listing, Listing), listing
    chunks = []
    try:
        while entries := await listing.read():
            chunks.append([e.name for e in entries])
    finally:
        listing.close()
    return chunks


async def test_in_is_listed_in_keyset_chunks_and_paged_by_name(
    spool: Spool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With chunks of 3, seven pending uploads come as the parked one, then 3, 3 and 1 by name
    (the keyset boundary loses and repeats none), and six as 3 and 3; pages of 4 by name hold
    the parked upload in its place."""
    monkeypatch.setattr(folder_service, "LIST_CHUNK", 3)
    session = session_of(spool)
    for seq in (7, 3, 1, 5, 2, 6, 4):
        await upload(session, f"/IN/{fi(seq)}")
    parked = fi(8) + ".filepart"
    await upload(session, f"/IN/{parked}")
    names = [fi(seq) for seq in range(1, 8)]

    chunks = await read_all(session.listing("/IN"))
    assert chunks == [[parked], names[0:3], names[3:6], names[6:7]]
    assert session.open_listings == 0

    assert await session.remove(f"/IN/{fi(7)}") is None
    assert await read_all(session.listing("/IN")) == [[parked], names[0:3], names[3:6]]

    first = await session.page("/IN", after=None, limit=4)
    assert not isinstance(first, Rejection)
    assert ([e.name for e in first.entries], first.next_after) == (names[0:4], names[3])
    second = await session.page("/IN", after=first.next_after, limit=4)
    assert not isinstance(second, Rejection)
    assert ([e.name for e in second.entries], second.next_after) == ([*names[4:6], parked], None)
    session.end()


async def test_out_pages_by_name_and_streams_what_a_listing_shows(
    spool: Spool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OUT pages follow the names in order past what is never listed (a name the folder service
    refuses that sorts first, a dot-file, a link, a folder); the stream shows the same files."""
    monkeypatch.setattr(folder_service, "LIST_CHUNK", 2)
    layout = spool.layout
    names = [f"FO.ACRF.DMFA.{SENDER}.20260115.{i:05d}.R" for i in range(5)]
    for name in reversed(names):
        place_return_file(layout, SENDER, Folder.OUT, name, b"<ack/>")
    folder = layout.out_folder(SENDER, Folder.OUT)
    (folder / "CON.ACRF").write_bytes(b"")  # a reserved device name: refused, sorts first
    (folder / ".FO.partial.tmp").write_bytes(b"")
    os.symlink("/etc/passwd", folder / "AAA.LINK")
    (folder / "A.FOLDER").mkdir()
    session = session_of(spool)

    listed: list[str] = []
    after = None
    while True:
        page = await session.page("/OUT", after=after, limit=2)
        assert not isinstance(page, Rejection)
        assert len(page.entries) <= 2
        assert all(e.size == len(b"<ack/>") for e in page.entries)
        listed += [e.name for e in page.entries]
        if page.next_after is None:
            break
        after = page.next_after
    assert listed == names

    chunks = await read_all(session.listing("/OUT"))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert sorted(n for c in chunks for n in c) == names


async def test_a_missing_out_folder_lists_empty(spool: Spool) -> None:
    """No return file was ever placed: an empty stream and an empty last page."""
    session = session_of(spool)
    assert await read_all(session.listing("/OUTTEST")) == []
    page = await session.page("/OUTTEST", after=None, limit=10)
    assert not isinstance(page, Rejection)
    assert (page.entries, page.next_after) == ([], None)


async def test_open_listings_per_session_are_capped(spool: Spool) -> None:
    """A session holds at most MAX_OPEN_LISTINGS open listings (each may hold a folder open
    and a chunk); one more is refused 923 until one is closed. Paths are checked first."""
    session = session_of(spool)
    held = [session.listing("/OUT") for _ in range(MAX_OPEN_LISTINGS)]
    assert all(isinstance(listing, Listing) for listing in held)
    refused = session.listing("/IN")
    assert isinstance(refused, Rejection)
    assert refused.code is Code.OPERATION_NOT_PERMITTED
    path = session.listing("/IN/../etc")
    assert isinstance(path, Rejection)
    assert path.code is Code.PATH_REFUSED
    first = held[0]
    assert isinstance(first, Listing)
    first.close()
    first.close()  # once only
    assert session.open_listings == MAX_OPEN_LISTINGS - 1
    assert await read_all(session.listing("/")) == [
        ["IN", "INTEST", "INTEST-S", "OUT", "OUTTEST", "OUTTEST-S"]
    ]


def test_a_scan_closed_before_or_during_use_reads_nothing(tmp_path: Path) -> None:
    """A closed scan answers an empty chunk and has let the folder go."""
    for i in range(3):
        (tmp_path / f"FO.{i}").write_bytes(b"")
    scan = ReturnScan(tmp_path)
    assert len(scan.read(2)) == 2
    scan.close()
    assert scan.read(2) == []
    scan.close()
    never = ReturnScan(tmp_path / "missing")
    assert never.read(5) == []


def open_descriptors() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


class PausedScan(ReturnScan):
    """A scan whose read waits, holding the scan's lock, until the test lets it go on."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.pause = False
        self.inside = threading.Event()
        self.go_on = threading.Event()

    def _read(self, count: int) -> list[ReturnFile]:
        if self.pause:
            self.inside.set()
            self.go_on.wait(30)
        return super()._read(count)


def test_a_close_from_another_thread_during_a_read_lets_the_folder_go(tmp_path: Path) -> None:
    """A listing cancelled while its chunk is read in a spool thread is closed from the loop:
    not under the running read (closedir under readdir), and not left open either: the reader
    closes it when its read is over, and the process holds no more descriptors than before."""
    for i in range(50):
        (tmp_path / f"FO.{i:05d}").write_bytes(b"")
    before = open_descriptors()
    scan = PausedScan(tmp_path)
    assert len(scan.read(10)) == 10  # the folder is open now
    assert open_descriptors() == before + 1
    scan.pause = True
    reader = threading.Thread(target=scan.read, args=(10,))
    reader.start()
    assert scan.inside.wait(30)
    scan.close()  # the read holds the lock: the close is left to it
    scan.go_on.set()
    reader.join()
    assert open_descriptors() == before
    assert scan.read(10) == []


def test_the_documented_page_cap_is_the_settings() -> None:
    """The OpenAPI document's ``limit`` maximum is ``[web] list_limit``'s upper bound."""
    bounds = [m.le for m in WebSettings.model_fields["list_limit"].metadata if hasattr(m, "le")]
    assert bounds == [LIST_LIMIT_MOST]
