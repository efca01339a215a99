"""Every bad set gets one negative ACRF with its code, and nothing of it is routed."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from gateway.core.codes import Code
from tests.pipeline.conftest import Harness, set_names, today

BODY = b"<declaration>" + b"x" * 500 + b"</declaration>\r\n"


async def _flipped(h: Harness) -> None:
    fis, fss, go, _ = set_names(sender=h.number)
    await h.upload(fis[0], BODY)
    await h.upload(fss[0], h.sign(BODY[:-3] + b"y\r\n"))
    await h.upload(go, b"")


async def _unregistered(h: Harness) -> None:
    await h.send_set(signer=h.cast.unregistered)


async def _other_sender(h: Harness) -> None:
    await h.send_set(signer=h.cast.other_sender)


async def _untrusted(h: Harness) -> None:
    fis, fss, go, _ = set_names(sender=h.number)
    await h.upload(fis[0], BODY)
    der = h.cast.pki.sign(BODY, h.cast.untrusted)
    await h.upload(fss[0], base64.b64encode(der))
    await h.upload(go, b"")


async def _revoked(h: Harness) -> None:
    await h.send_set(signer=h.cast.revoked)


async def _no_fs(h: Harness) -> None:
    await h.send_set(with_fs=False)


async def _fs_in_s(h: Harness) -> None:
    await h.send_set(env="S")


async def _missing_part(h: Harness) -> None:
    fis, fss, go, _ = set_names(sender=h.number, parts=2)
    await h.upload(fis[0], BODY)
    await h.upload(fss[0], h.sign(BODY))
    await h.upload(go, b"")


async def _missing_one_fs(h: Harness) -> None:
    fis, fss, go, _ = set_names(sender=h.number, parts=2)
    for fi in fis:
        await h.upload(fi, BODY)
    await h.upload(fss[0], h.sign(BODY))
    await h.upload(go, b"")


async def _empty_fi(h: Harness) -> None:
    await h.send_set(contents=[b""])


async def _garbage_fs(h: Harness) -> None:
    fis, fss, go, _ = set_names(sender=h.number)
    await h.upload(fis[0], BODY)
    await h.upload(fss[0], b"this is not base64 !!!")
    await h.upload(go, b"")


async def _only_go(h: Harness) -> None:
    _, _, go, _ = set_names(sender=h.number)
    await h.upload(go, b"")


async def _not_subscribed(h: Harness) -> None:
    await h.send_set(app="DIMN")


async def _too_old(h: Harness) -> None:
    old = today() - timedelta(days=45)
    stem = f"DMFA.{h.number}.{old:%Y%m%d}.00001.R.1"
    await h.upload(f"FI.{stem}.1", BODY)
    await h.upload(f"FS.{stem}.1", h.sign(BODY))
    await h.upload(f"GO.{stem}", b"")


CASES: list[tuple[str, Callable[[Harness], Awaitable[None]], Code, str]] = [
    ("flipped byte in FI", _flipped, Code.SIGNATURE_INVALID, "OUT"),
    ("unregistered certificate", _unregistered, Code.CERTIFICATE_NOT_REGISTERED, "OUT"),
    ("another sender's certificate", _other_sender, Code.CERTIFICATE_NOT_REGISTERED, "OUT"),
    ("registered certificate of an untrusted CA", _untrusted, Code.CERTIFICATE_UNTRUSTED, "OUT"),
    ("revoked certificate", _revoked, Code.CERTIFICATE_REVOKED, "OUT"),
    ("no FS in R", _no_fs, Code.SIGNATURE_MISSING, "OUT"),
    ("FS in S", _fs_in_s, Code.SIGNATURE_NOT_ALLOWED, "OUTTEST-S"),
    ("FI part missing", _missing_part, Code.FI_NUMBERING_WRONG, "OUT"),
    ("one FS missing", _missing_one_fs, Code.FI_FS_COUNT_MISMATCH, "OUT"),
    ("empty FI", _empty_fi, Code.NO_DATA, "OUT"),
    ("garbage FS", _garbage_fs, Code.SIGNATURE_UNDECODABLE, "OUT"),
    ("GO alone", _only_go, Code.NO_DECLARATION_FILE, "OUT"),
    ("application not subscribed", _not_subscribed, Code.APPLICATION_NOT_ALLOWED, "OUT"),
    ("creation date too old", _too_old, Code.DATE_TOO_OLD, "OUT"),
]


@pytest.mark.parametrize(
    ("make", "code", "folder"),
    [pytest.param(make, code, folder, id=label) for label, make, code, folder in CASES],
)
async def test_bad_set_gets_negative_acrf(
    harness: Harness, make: Callable[[Harness], Awaitable[None]], code: Code, folder: str
) -> None:
    """The set is answered by exactly one negative ACRF carrying its code; nothing is routed."""
    await make(harness)
    assert await harness.pipeline.run_once() == 1
    acrfs = harness.acrfs(folder)
    assert len(acrfs) == 1, harness.out_names(folder)
    _, acrf = acrfs[0]
    assert not acrf.accepted
    assert acrf.code == code, acrf.description
    assert acrf.error_id == f"ACRF-{int(code)}"
    assert acrf.description
    assert harness.routed() == {}
    assert not any((harness.state_dir / "work").iterdir())
    assert not (harness.state_dir / "archive").exists()
    spool = harness.state_dir / "spool" / harness.number
    assert not [p for p in spool.rglob("*") if p.is_file()]


async def test_simulation_set_without_fs_is_accepted(harness: Harness) -> None:
    """An S set needs no FS: positive ACRF in OUTTEST-S, routed without a signer."""
    go = await harness.send_set(env="S", with_fs=False)
    assert await harness.pipeline.run_once() == 1
    [(_, acrf)] = harness.acrfs("OUTTEST-S")
    assert acrf.accepted
    assert acrf.file_name == go
    assert harness.envelope(acrf.ticket)["signer"] is None
