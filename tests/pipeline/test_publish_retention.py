"""Notifications back (FO/CO.NOTI + FS + GO), and retention of OUT files and archives."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from pathlib import Path

from gateway.core.codes import Rejection
from gateway.core.names import Environment
from gateway.ops.settings import PipelineSettings
from gateway.pipeline import Published
from tests.pipeline.conftest import Harness, harness_on
from tests.pki import StandardPki


async def test_publish_places_signed_notification(harness: Harness) -> None:
    """FO.NOTI + FS + GO in the sender's OUT; the FS verifies with openssl against gateway.pem."""
    content = b"<NOTIFICATION><ResultCode>1</ResultCode></NOTIFICATION>\r\n"
    published = await harness.pipeline.publish(
        sender=harness.number, environment=Environment.R, application="NOTI", content=content
    )
    assert isinstance(published, Published)
    assert not published.compressed
    fo, fs, go = published.names
    assert fo.startswith("FO.NOTI.999999.")
    assert fo.endswith(".R")
    assert harness.out_names() == sorted(published.names)
    assert (harness.out_dir() / fo).read_bytes() == content
    assert (harness.out_dir() / go).read_bytes() == b""
    result = harness.openssl_verify_ack(harness.out_dir() / fo, harness.out_dir() / fs)
    assert result.returncode == 0, result.stderr


async def test_publish_compresses_above_threshold(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str
) -> None:
    """Above compress_above the notification is a CO.NOTI ZIP holding exactly one entry."""
    h = await harness_on(
        tmp_path, sqlite_url, cast, ssh_public_key, settings=PipelineSettings(compress_above=100)
    )
    try:
        content = b"<NOTIFICATION>" + b"a" * 5000 + b"</NOTIFICATION>"
        published = await h.pipeline.publish(
            sender=h.number, environment=Environment.T, application="NOTI", content=content
        )
        assert isinstance(published, Published)
        assert published.compressed
        co, fs, _ = published.names
        assert co.startswith("CO.NOTI.999999.")
        assert co.endswith(".T")
        data = (h.out_dir("OUTTEST") / co).read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            [entry] = archive.namelist()
            assert entry == "FO" + co[2:]
            assert archive.read(entry) == content
        result = h.openssl_verify_ack(h.out_dir("OUTTEST") / co, h.out_dir("OUTTEST") / fs)
        assert result.returncode == 0, result.stderr
    finally:
        await h.engine.dispose()


async def test_publish_refuses_unknown_sender(harness: Harness) -> None:
    """Publishing to a sender number nobody holds is refused, nothing written."""
    refused = await harness.pipeline.publish(
        sender="999998", environment=Environment.R, application="NOTI", content=b"x"
    )
    assert isinstance(refused, Rejection)
    assert not (harness.state_dir / "out" / "999998").exists()


async def test_sequences_are_unique_per_recipient_date_environment(harness: Harness) -> None:
    """ACRFs and notifications of one sender, date and environment never share a number."""
    for seq in ("00001", "00002", "00003"):
        await harness.send_set(seq=seq)
    await harness.pipeline.run_once()
    await harness.pipeline.publish(
        sender=harness.number, environment=Environment.R, application="NOTI", content=b"n"
    )
    sequences = [n.split(".")[4] for n in harness.out_names() if n.startswith(("FO.", "CO."))]
    assert sorted(sequences) == ["00001", "00002", "00003", "00004"]


async def test_retention_purges_out_files_and_archives(harness: Harness) -> None:
    """OUT files go after out_retention, archived sets after archive_retention; both logged."""
    await harness.send_set()
    await harness.pipeline.run_once()
    [(_, acrf)] = harness.acrfs()
    archive = harness.state_dir / "archive" / harness.number / acrf.ticket
    assert archive.is_dir()
    harness.clock.offset = timedelta(days=59)
    await harness.pipeline.sweep()
    assert len(harness.out_names()) == 3
    harness.clock.offset = timedelta(days=61)
    await harness.pipeline.sweep()
    assert harness.out_names() == []
    assert archive.is_dir()
    harness.clock.offset = timedelta(days=91)
    await harness.pipeline.sweep()
    assert not archive.exists()
    assert harness.routed()  # the destination's copy is the online service's, never purged
