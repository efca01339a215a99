"""Signatures are checked on the digest computed while the FI streamed in (never a second read
for SHA-256); other digest algorithms are computed by one read of the stored file."""

from __future__ import annotations

from gateway.pipeline.intake import take_trigger
from tests.pipeline.conftest import Harness, set_names

BODY = b"<declaration>" + b"q" * 4000 + b"</declaration>\r\n"


async def _take(harness: Harness, digest: str) -> str:
    """Upload a 1-part set and take it in (no processing yet); the ticket's work folder."""
    fis, fss, go, _ = set_names(sender=harness.number)
    await harness.upload(fis[0], BODY)
    await harness.upload(fss[0], harness.sign(BODY, digest=digest))
    await harness.upload(go, b"")
    [trigger] = await harness.pipeline.ctx.store.pending_triggers()
    set_id = await take_trigger(harness.pipeline.ctx, trigger)
    assert set_id is not None
    return str((await harness.pipeline.ctx.store.load(set_id)).ticket)


async def test_sha256_signature_uses_the_upload_digest(harness: Harness) -> None:
    """The signature check does not read the FI again: bytes changed on disk after upload do not
    change its verdict (still well-formed XML, so the formal checks' one read passes too)."""
    ticket = await _take(harness, "sha256")
    fi = next((harness.state_dir / "work" / ticket).glob("FI.*"))
    fi.write_bytes(b"<changed>after the digest was taken</changed>")
    assert await harness.pipeline.run_once() == 1
    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted


async def test_sha512_signature_hashes_the_stored_file(harness: Harness) -> None:
    """A SHA-512 FS is verified against the stored FI's bytes (read once, off the loop)."""
    ticket = await _take(harness, "sha512")
    assert await harness.pipeline.run_once() == 1
    [(_, acrf)] = harness.acrfs()
    assert acrf.accepted, acrf.description
    assert ticket == acrf.ticket
