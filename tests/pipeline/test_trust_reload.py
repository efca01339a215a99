"""The trust store follows its files: a CRL an operator drops into the trust folder applies once
the folder stayed the same for a sweep, without a restart; a file with nothing in it is logged
and left out."""

from __future__ import annotations

from pathlib import Path

import structlog

from gateway.core.codes import Code
from gateway.pipeline.trust_files import TrustFiles
from tests.pipeline.conftest import harness_on, set_names
from tests.pki import StandardPki


async def test_a_new_crl_applies_from_the_next_sweep(
    tmp_path: Path, sqlite_url: str, cast: StandardPki, ssh_public_key: str
) -> None:
    """Without the CRL the revoked signer's set is accepted; once the CRL is in the folder and
    two sweeps saw it, the next set is refused with 904. A truncated PEM is logged and left out;
    a certificate block that does not parse stops the reload (logged once) and the store with
    the CRL stays in force."""
    folder = tmp_path / "trust"
    folder.mkdir()
    (folder / "root.pem").write_bytes(cast.root.cert_pem)
    files = TrustFiles([folder])
    h = await harness_on(
        tmp_path, sqlite_url, cast, ssh_public_key, trust=files.load(), trust_files=files
    )
    try:
        await h.send_set(seq="00001", signer=cast.revoked)
        assert await h.pipeline.run_once() == 1
        await h.pipeline.sweep()  # nothing changed: the same store
        (folder / "signing-ca.crl").write_bytes(cast.crl.read_bytes())
        await h.send_set(seq="00002", signer=cast.revoked)
        await h.pipeline.sweep()  # the change is seen...
        await h.pipeline.sweep()  # ...and loaded once the folder stayed the same
        assert await h.pipeline.run_once() == 1
        (folder / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                await h.pipeline.sweep()
        events = [(e["event"], e.get("file", "")) for e in logs]
        assert events == [
            ("trust.file_ignored", str(folder / "broken.pem")),
            ("trust.reloaded", ""),
        ], logs
        await h.send_set(seq="00003", signer=cast.revoked)
        assert await h.pipeline.run_once() == 1
        # A whole PEM block that is no certificate: the folder does not load; the store in use
        # (with the CRL) stays, and the failure is logged once, not at every sweep.
        (folder / "bad.pem").write_bytes(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        with structlog.testing.capture_logs() as logs:
            for _ in range(4):
                await h.pipeline.sweep()
        assert [e["event"] for e in logs if e["event"].startswith("trust.")] == [
            "trust.file_ignored",
            "trust.reload_failed",
        ], logs
        await h.send_set(seq="00004", signer=cast.revoked)
        assert await h.pipeline.run_once() == 1
        verdicts = {}
        for _, acrf in h.acrfs():
            verdicts[acrf.file_name] = None if acrf.accepted else acrf.code
        _, _, go1, _ = set_names(sender=h.number, seq="00001")
        _, _, go2, _ = set_names(sender=h.number, seq="00002")
        _, _, go3, _ = set_names(sender=h.number, seq="00003")
        _, _, go4, _ = set_names(sender=h.number, seq="00004")
        assert verdicts == {
            go1: None,
            go2: Code.CERTIFICATE_REVOKED,
            go3: Code.CERTIFICATE_REVOKED,
            go4: Code.CERTIFICATE_REVOKED,
        }
    finally:
        await h.engine.dispose()
