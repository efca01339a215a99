"""FTP(S) end to end: real ``curl`` and ``lftp`` against ``gateway serve`` on loopback.

Each case drives the daemon as a local authority would: explicit FTPS on the public listener
(the development CA verifies the certificate), plain FTP only on the secondary network's
listener (127.0.0.2), and the acknowledgement fetched back over the same channel and checked
with ``openssl cms -verify``. Sender B's FTP channel is bound to a network this machine is not
in, so its logins are refused wherever they come from.
"""

from __future__ import annotations

import base64
import ftplib
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    FTP_PASSWORD,
    NETWORKS,
    PLAIN_HOST,
    Launch,
    Party,
    SetNames,
    World,
    set_names,
)
from tests.e2e.harness import SERVICES, acks_for, clean_environ, read_ack, wait_acks
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(180)


def ca_file(world: World) -> Path:
    """The development CA that verifies the FTPS listener's certificate."""
    return world.gateway.state_dir / "ftps" / "ca.pem"


def curl(
    world: World,
    party: Party,
    path: str,
    *args: str,
    tls: bool = True,
    host: str = "127.0.0.1",
    listener: str = "public",
    password: str = FTP_PASSWORD,
) -> subprocess.CompletedProcess[str]:
    """``curl`` on ``ftp://host:port/path`` as ``party`` (FTPS with ``--ssl-reqd`` unless
    ``tls`` is False), run in the party's folder, verbose (the server's replies on stderr)."""
    port = world.gateway.ftp_ports[listener]
    argv = [require_tool("curl"), "-sS", "-v", "--user", f"{party.login}:{password}"]
    if tls:
        argv += ["--ssl-reqd", "--cacert", str(ca_file(world))]
    argv += [*args, f"ftp://{host}:{port}{path}"]
    return subprocess.run(
        argv, cwd=party.work, capture_output=True, text=True, timeout=120, check=False
    )


def lftp(world: World, party: Party, script: str) -> subprocess.CompletedProcess[str]:
    """``lftp`` with explicit TLS forced on control and data, ``script`` run in the party's
    folder."""
    port = world.gateway.ftp_ports["public"]
    settings = (
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"set ssl:ca-file {ca_file(world)}; set net:max-retries 1; set cmd:fail-exit true; "
    )
    argv = [require_tool("lftp"), "-u", f"{party.login},{FTP_PASSWORD}", "-e",
            settings + script + "; bye", f"ftp://127.0.0.1:{port}"]  # fmt: skip
    return subprocess.run(
        argv, cwd=party.work, capture_output=True, text=True, timeout=120, check=False
    )


def verify_acrf(world: World, folder: Path, fo_name: str) -> None:
    """``openssl cms -verify`` accepts the FS.ACRF over its FO with the gateway's certificate."""
    fo = folder / fo_name
    der = folder / (fo_name + ".p7s")
    fs = folder / ("FS" + fo_name.removeprefix("FO"))
    der.write_bytes(base64.b64decode(b"".join(fs.read_bytes().split())))
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(der),
         "-content", str(fo), "-CAfile", str(world.gateway.state_dir / "keys" / "gateway.pem"),
         "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def fetch_acrf_with_curl(world: World, party: Party, names: SetNames) -> Path:
    """Wait for the set's ACRF, then download its FO, FS and GO over FTPS; return the FO."""
    (ack,) = [a for a in wait_acks(party.out_dir, acks_for(names.go)) if a.file_name == names.go]
    stem = ack.fo.removeprefix("FO")
    for kind in ("FO", "FS", "GO"):
        got = curl(world, party, f"/OUT/{kind}{stem}", "-o", f"{kind}{stem}")
        assert got.returncode == 0, got.stderr
    return party.work / ack.fo


def reply_lines(stderr: str) -> list[str]:
    """The server's replies in curl's verbose output (``< 553 108: ...``)."""
    return [line[2:] for line in stderr.splitlines() if line.startswith("< ")]


def test_curl_uploads_a_signed_two_part_set_and_fetches_its_verified_acrf(world: World) -> None:
    """curl --ssl-reqd puts FI 1/2, FI 2/2, their FS and the GO; the ACRF fetched back over
    FTPS says ResultCode 1 and its signature verifies."""
    names = world.write_set(world.a, seq=world.seq(), contents=[b"<part1/>", b"<part2/>"])
    upload = [*names.fis, *names.fss, names.go]
    put = curl(world, world.a, "/IN/", "-T", "{" + ",".join(upload) + "}")
    assert put.returncode == 0, put.stderr
    fo = fetch_acrf_with_curl(world, world.a, names)
    ack = read_ack(fo)
    assert (ack.result, ack.file_name) == (1, names.go)
    verify_acrf(world, world.a.work, fo.name)
    routed = {p.name for p in world.routed.rglob("FI.*")}
    assert set(names.fis) <= routed


def test_lftp_uploads_a_signed_two_part_set_and_fetches_its_verified_acrf(world: World) -> None:
    """lftp (ftp:ssl-force) mputs a 2-part set; its ACRF is fetched with lftp and verifies."""
    names = world.write_set(world.a, seq=world.seq(), contents=[b"<p1/>", b"<p2/>"])
    put = lftp(world, world.a, "mput -O IN " + " ".join([*names.fis, *names.fss, names.go]))
    assert put.returncode == 0, put.stderr
    (ack,) = [a for a in wait_acks(world.a.out_dir, acks_for(names.go)) if a.file_name == names.go]
    stem = ack.fo.removeprefix("FO")
    got = lftp(world, world.a, f"get OUT/FO{stem} OUT/FS{stem} OUT/GO{stem}")
    assert got.returncode == 0, got.stderr
    assert read_ack(world.a.work / ack.fo).result == 1
    verify_acrf(world, world.a.work, ack.fo)


def test_plain_ftp_is_refused_on_the_public_listener(world: World) -> None:
    """Without TLS, the public listener refuses the login; nothing is listed."""
    result = curl(world, world.a, "/OUT/", "--list-only", tls=False)
    assert result.returncode != 0
    assert any(line.startswith("530 ") for line in reply_lines(result.stderr)), result.stderr


def test_plain_ftp_is_accepted_on_the_secondary_networks_listener(world: World) -> None:
    """On 127.0.0.2 (the Loopback network's listener) plain FTP logs in and uploads."""
    name = set_names(world.a.number, world.seq()).fis[0]
    world.a.write(name, b"<plain/>")
    put = curl(world, world.a, "/IN/", "-T", name, tls=False, host=PLAIN_HOST,
               listener="secondary")  # fmt: skip
    assert put.returncode == 0, put.stderr
    listed = curl(world, world.a, "/IN/", "--list-only", tls=False, host=PLAIN_HOST,
                  listener="secondary")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout.split()


def test_a_login_from_outside_the_senders_network_is_refused(world: World) -> None:
    """B's channel admits only 192.0.2.0/24: the right password from 127.0.0.1 gets 530, and
    the refusal is logged with the network."""
    result = curl(world, world.b, "/OUT/", "--list-only")
    assert result.returncode != 0
    assert any(line.startswith("530 ") for line in reply_lines(result.stderr)), result.stderr
    # The daemon's log reaches the test through a reader thread: wait for the line, not assume it.
    failed = world.gateway.wait_event("auth.failed", where={"login": world.b.login}, timeout=30.0)
    assert failed["reason"] == "network_not_allowed", failed
    assert "Elsewhere" in str(failed), failed


def test_a_refused_name_gets_553_with_its_code_and_a_negative_acrf(world: World) -> None:
    """An FI naming sender B's number: 553 starting with 108, nothing stored, and a negative
    ACRF naming the file appears in A's OUT."""
    bad = set_names(world.b.number, world.seq()).fis[0]
    world.a.write(bad, b"<not-mine/>")
    result = curl(world, world.a, "/IN/", "-T", bad)
    assert result.returncode == 25, result.stderr  # curl's "Failed FTP upload", not a bad EPSV
    assert any(line.startswith("553 108: ") for line in reply_lines(result.stderr)), result.stderr
    acks = wait_acks(world.a.out_dir, acks_for(bad))
    assert [(a.result, a.code) for a in acks if a.file_name == bad] == [(0, 108)]
    listed = curl(world, world.a, "/IN/", "--list-only")
    assert bad not in listed.stdout.split()


def test_sighup_reloads_the_networks_file_without_dropping_sessions(launch: Launch) -> None:
    """An FTPS session stays up across SIGHUP; logins after it follow the new ranges; a broken
    file is logged and leaves the last good one in force."""
    world = launch(expected_errors=frozenset({"networks.reload_failed"}))
    networks = world.gateway.state_dir.parent / "networks.toml"
    context = ssl.create_default_context(cafile=str(ca_file(world)))
    client = ftplib.FTP_TLS(context=context, timeout=30)  # noqa: S321 (FTP is under test)
    client.connect("127.0.0.1", world.gateway.ftp_ports["public"])
    client.login(world.a.login, FTP_PASSWORD)
    client.prot_p()
    try:
        # Loopback now stands for a range this machine is not in: new logins are refused ...
        networks.write_text(NETWORKS.replace('"127.0.0.0/8"', '"198.51.100.0/24"'))
        world.gateway.process.send_signal(signal.SIGHUP)
        world.gateway.wait_event("networks.reloaded", timeout=30)
        refused = curl(world, world.a, "/OUT/", "--list-only")
        assert any(line.startswith("530 ") for line in reply_lines(refused.stderr))
        # ... while the session opened before the reload goes on.
        assert client.nlst("/OUT") is not None
        # A broken file keeps the book in force and says why.
        networks.write_text("[Loopback\n")
        world.gateway.process.send_signal(signal.SIGHUP)
        failed = world.gateway.wait_event("networks.reload_failed", timeout=30)
        assert "networks.toml" in failed["error"], failed
        assert curl(world, world.a, "/OUT/", "--list-only").returncode != 0
        # Back to the first ranges: logins work again, the session still does.
        networks.write_text(NETWORKS)
        world.gateway.process.send_signal(signal.SIGHUP)
        world.gateway.wait_count("networks.reloaded", 2)
        # Each SIGHUP also rebuilds the web listener's client-certificate anchors.
        world.gateway.wait_count("web.reloaded", 3)
        assert curl(world, world.a, "/OUT/", "--list-only").returncode == 0
        assert client.nlst("/OUT") is not None
    finally:
        client.close()


def test_an_unusable_ftps_certificate_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """[ftp] tls_cert/tls_key that cannot be loaded: exit 1, one line naming the files."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[sftp]\nport = 0\n[metrics]\nport = 0\n'
        f'[pipeline]\nservices_file = "{SERVICES}"\n'
        f'[ftp]\nenabled = true\nport = 0\ntls_cert = "{tmp_path / "missing.pem"}"\n'
        f'tls_key = "{tmp_path / "missing.key"}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "serve"],
        cwd=tmp_path, env=clean_environ(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "[ftp]: cannot load the TLS certificate" in lines[0]
    assert "missing.pem" in lines[0]
