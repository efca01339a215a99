"""Cancellation, timeouts, duplicates and exact resends, refusals answered in OUT."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from gateway.core.codes import Code, reject
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.pipeline.tables import SetRow
from tests.pipeline.conftest import Harness, set_names


async def test_td_cancels_the_pending_set(harness: Harness) -> None:
    """A TD instead of the GO removes the set's files, routes nothing, and answers 930."""
    td = await harness.send_set(parts=2, close="TD")
    assert await harness.pipeline.run_once() == 1
    [(_, acrf)] = harness.acrfs()
    assert not acrf.accepted
    assert acrf.code == Code.SET_CANCELLED
    assert acrf.file_name == td
    assert harness.routed() == {}
    assert await harness.spool.pending_files(SenderNumber(harness.number), Folder.IN) == []
    async with harness.engine.connect() as conn:
        row = (await conn.execute(select(SetRow))).one()
    assert (row.state, row.files) == ("cancelled", 4)


async def test_set_without_go_expires_with_130(harness: Harness) -> None:
    """FI+FS without a GO past set_timeout: files removed, negative ACRF 130 naming the FI."""
    await harness.send_set(close=None)
    await harness.pipeline.sweep()
    assert await harness.pipeline.run_once() == 0  # not yet expired
    assert harness.out_names() == []
    harness.clock.offset = timedelta(hours=24, minutes=1)
    await harness.pipeline.sweep()
    assert await harness.pipeline.run_once() == 1
    [(_, acrf)] = harness.acrfs()
    assert acrf.code == Code.GO_NOT_RECEIVED
    assert acrf.file_name.startswith("FI.DMFA.")
    assert await harness.spool.pending_files(SenderNumber(harness.number), Folder.IN) == []
    assert not [p for p in (harness.state_dir / "spool").rglob("FI.*")]


async def test_duplicate_gets_133_naming_the_earlier_ticket(harness: Harness) -> None:
    """Same set name with new content: 133, and the ACRF's description names the first ticket."""
    await harness.send_set(contents=[b"<first/>\r\n"])
    await harness.pipeline.run_once()
    [(_, first)] = harness.acrfs()
    assert first.accepted
    await harness.send_set(contents=[b"<second, different/>\r\n"])
    assert await harness.pipeline.run_once() == 1
    second = [a for _, a in harness.acrfs() if a.ticket != first.ticket]
    assert len(second) == 1
    assert second[0].code == Code.ALREADY_SENT
    assert first.ticket in (second[0].description or "")
    assert len(harness.routed()) == 1


async def test_exact_resend_gets_the_original_ack_again(harness: Harness) -> None:
    """Same FI/FS bytes under the same name: the original ACRF is written again, not a new one."""
    body = b"<declaration>same bytes</declaration>\r\n"
    fis, fss, go, _ = set_names(sender=harness.number)
    signature = harness.sign(body)

    async def send() -> None:
        await harness.upload(fis[0], body)
        await harness.upload(fss[0], signature)
        await harness.upload(go, b"")

    await send()
    await harness.pipeline.run_once()
    original = {n: (harness.out_dir() / n).read_bytes() for n in harness.out_names()}
    for name in original:  # the sender fetched and deleted its ACRF
        (harness.out_dir() / name).unlink()
    await send()
    assert await harness.pipeline.run_once() == 1
    again = {n: (harness.out_dir() / n).read_bytes() for n in harness.out_names()}
    assert sorted(again) == sorted(original)
    fo = next(n for n in again if n.startswith("FO."))
    assert again[fo] == original[fo]
    assert len(harness.routed()) == 1
    async with harness.engine.connect() as conn:
        rows = (await conn.execute(select(SetRow).order_by(SetRow.id))).all()
    assert [r.state for r in rows] == ["acknowledged", "rejected"]
    assert rows[1].code == Code.ALREADY_SENT
    assert rows[1].ack_of == rows[0].ticket


async def test_refused_upload_is_answered_once_per_window(harness: Harness) -> None:
    """A refusal recorded at upload gets one negative ACRF with its code; repeats are not."""
    name = f"FI.DMFA.006401.{harness.clock():%Y%m%d}.00001.T.1.1"
    for _ in range(3):
        await harness.spool.record_refusal(
            sender=SenderNumber(harness.number),
            folder=Folder.INTEST,
            name=name,
            rejection=reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours"),
            session_id="s1",
        )
    await harness.pipeline.sweep()
    [(_, acrf)] = harness.acrfs("OUTTEST")
    assert acrf.file_name == name
    assert acrf.code == Code.SENDER_NOT_OWNER
    assert "006401" in (acrf.description or "")
    assert harness.out_names("OUT") == []
    harness.clock.offset = timedelta(minutes=6)
    await harness.spool.record_refusal(
        sender=SenderNumber(harness.number),
        folder=Folder.INTEST,
        name=name,
        rejection=reject(Code.SENDER_NOT_OWNER, "sender number 006401 is not yours"),
        session_id="s2",
    )
    await harness.pipeline.sweep()
    assert len(harness.acrfs("OUTTEST")) == 2


async def test_refusal_of_unreadable_name_goes_to_out(harness: Harness) -> None:
    """A name whose environment cannot be told is answered in OUT, control bytes made visible."""
    await harness.spool.record_refusal(
        sender=SenderNumber(harness.number),
        folder=Folder.IN,
        name="report\x1b[31m.xlsx",
        rejection=reject(Code.NAME_PREFIX_INVALID, "file kind prefix is not FI, FS, GO or TD"),
        session_id="s1",
    )
    await harness.pipeline.sweep()
    [(_, acrf)] = harness.acrfs("OUT")
    assert acrf.code == Code.NAME_PREFIX_INVALID
    assert "\x1b" not in acrf.file_name
