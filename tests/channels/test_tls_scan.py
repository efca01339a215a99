"""A TLS scanner against the HTTPS and FTPS listeners: nothing weak is offered.

``sslscan`` (the Debian package, a real scanner) probes every protocol version and every suite
it knows, one handshake each (for FTPS after ``AUTH TLS``: ``--starttls-ftp``), plus
renegotiation, Heartbleed, compression and the fallback SCSV; its XML report is checked here
(issue 12 §2: "an sslyze or testssl-style scan finds nothing weak"). Loopback is exempt from the
per-source penalties in these tests: a scanner's hundred handshakes without a login would
otherwise be penalised, as they are in production.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from xml.etree import ElementTree

import pytest

from gateway.channels.penalties import PenaltyPolicy
from tests.channels.ftp_env import StartFtp, run
from tests.channels.web_env import StartWeb
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(120)

LOOPBACK = PenaltyPolicy(exempt=(ipaddress.ip_network("127.0.0.0/8"),))
GOOD_STRENGTHS = frozenset({"strong", "acceptable"})


async def _scan(port: int, folder: Path, *options: str) -> ElementTree.Element:
    report = folder / "sslscan.xml"
    done = await run(
        [require_tool("sslscan"), "--no-colour", f"--xml={report}", *options, f"127.0.0.1:{port}"]
    )
    assert done.returncode == 0, done
    test = ElementTree.parse(report).getroot().find("ssltest")  # noqa: S314 (sslscan wrote it)
    assert test is not None, report.read_text()
    return test


def _judge(test: ElementTree.Element) -> None:
    """TLS 1.2 and 1.3 only; every suite sslscan rates strong or acceptable, with forward
    secrecy and at least 128 bits; no renegotiation, Heartbleed or compression; the fallback
    SCSV honoured; key-exchange groups of at least 112 bits."""
    enabled = {
        f"{p.get('type')}{p.get('version')}"
        for p in test.iter("protocol")
        if p.get("enabled") == "1"
    }
    assert enabled == {"tls1.2", "tls1.3"}
    ciphers = list(test.iter("cipher"))
    assert {c.get("sslversion") for c in ciphers} == {"TLSv1.2", "TLSv1.3"}
    for cipher in ciphers:
        name = cipher.get("cipher", "")
        assert cipher.get("strength") in GOOD_STRENGTHS, name
        assert int(cipher.get("bits", "0")) >= 128, name
        if cipher.get("sslversion") == "TLSv1.2":
            assert name.startswith("ECDHE-"), name  # forward secrecy
            assert "GCM" in name or "CHACHA20" in name, name  # AEAD only
    renegotiation = test.find("renegotiation")
    assert renegotiation is not None
    assert renegotiation.get("supported") == "0"
    assert all(h.get("vulnerable") == "0" for h in test.iter("heartbleed"))
    compression = test.find("compression")
    assert compression is None or compression.get("supported") == "0"
    fallback = test.find("fallback")
    assert fallback is None or fallback.get("supported") == "1"
    assert all(int(g.get("bits", "0")) >= 112 for g in test.iter("group"))


async def test_https_listener_offers_nothing_weak(start_web: StartWeb, tmp_path: Path) -> None:
    """sslscan against the web service's listener."""
    web = await start_web(penalties=LOOPBACK)
    _judge(await _scan(web.gateway.port, tmp_path))


async def test_ftps_listener_offers_nothing_weak(start_ftp: StartFtp, tmp_path: Path) -> None:
    """sslscan after AUTH TLS against the FTP listener."""
    ftp = await start_ftp(penalties=LOOPBACK, max_startups=1000)
    _judge(await _scan(ftp.port, tmp_path, "--starttls-ftp"))
