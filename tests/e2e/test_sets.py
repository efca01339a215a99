"""Whole sets through ``gateway serve``, as a sender sees them with OpenSSH ``sftp``.

A 3-part DmfA set is acknowledged positively (and the acknowledgement's signature verifies with
``openssl cms``), the directory destination holds it with its envelope, a TD cancels a set, a
resend with other bytes is a duplicate (133) while an exact resend brings the original ACRF back,
and names refused at upload are answered in OUT as well.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Party, SetNames, World, set_names, today
from tests.e2e.harness import Ack, acks_for, read_ack, wait_acks
from tests.pipeline.provision import kbo

TICKET = re.compile(r"[0-9A-Z]{13}")


def body(part: int, seq: str, size: int = 2000) -> bytes:
    """A declaration part's bytes (distinct per part and set)."""
    head = f"<?xml version='1.0'?><DmfA part='{part}' seq='{seq}'>".encode()
    return head + b"x" * size + b"</DmfA>\r\n"


def send(world: World, party: Party, names: SetNames, *, close: str = "GO") -> None:
    """Upload a set's FI/FS files (and its GO or TD) in one sftp session."""
    files = [n for pair in zip(names.fis, names.fss, strict=True) for n in pair]
    if close == "GO":
        files.append(names.go)
    elif close == "TD":
        files.append(party.write(names.td, b""))
    party.sftp.ok(party.put(files), cwd=party.work)


def fetch(party: Party, ack: Ack, into: Path) -> Path:
    """Download an ACRF's three files from OUT over sftp; return the local FO."""
    into.mkdir(exist_ok=True)
    suffix = ack.fo.removeprefix("FO")
    party.sftp.ok([f"get OUT/{kind}{suffix} {into}/" for kind in ("FO", "FS", "GO")], cwd=into)
    return into / ack.fo


def pending(party: Party) -> list[str]:
    """What ``ls IN`` shows the sender."""
    return party.sftp.listing("IN", cwd=party.work)


@dataclass(frozen=True)
class Accepted:
    """The 3-part set every positive test looks at."""

    names: SetNames
    contents: tuple[bytes, ...]
    ack: Ack
    fo: Path


@pytest.fixture(scope="module")
def accepted(world: World, tmp_path_factory: pytest.TempPathFactory) -> Accepted:
    """Send one 3-part DmfA set; wait for its ACRF; fetch the ACRF over sftp."""
    seq = world.seq()
    contents = tuple(body(n, seq) for n in (1, 2, 3))
    names = world.write_set(world.a, seq=seq, contents=contents)
    send(world, world.a, names)
    acks = wait_acks(world.a.out_dir, acks_for(names.go))
    (ack,) = [a for a in acks if a.file_name == names.go]
    fo = fetch(world.a, ack, tmp_path_factory.mktemp("fetched"))
    return Accepted(names=names, contents=contents, ack=ack, fo=fo)


def test_three_part_set_gets_a_positive_acrf_in_out(accepted: Accepted, world: World) -> None:
    """The FO fetched over sftp says ResultCode 1 for the GO, with a 13-character ticket."""
    ack = read_ack(accepted.fo)
    assert ack.result == 1
    assert ack.file_name == accepted.names.go
    assert TICKET.fullmatch(ack.ticket), ack.ticket
    assert ack.error_id is None
    assert ack.fo.startswith(f"FO.ACRF.999999.{today()}.")
    assert ack.fo.endswith(".R")
    assert not set(pending(world.a)) & {*accepted.names.fis, *accepted.names.fss}


def test_acrf_signature_verifies_with_openssl_against_the_gateway_certificate(
    accepted: Accepted, world: World
) -> None:
    """openssl cms -verify -binary accepts the FS.ACRF over the FO with gateway.pem as CA."""
    fs = accepted.fo.with_name("FS" + accepted.fo.name.removeprefix("FO"))
    der = accepted.fo.with_name("acrf.p7s")
    der.write_bytes(base64.b64decode(b"".join(fs.read_bytes().split())))
    gateway_pem = world.gateway.state_dir / "keys" / "gateway.pem"
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(der),
         "-content", str(accepted.fo), "-CAfile", str(gateway_pem), "-purpose", "any",
         "-out", "/dev/null"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    tampered = accepted.fo.with_name("tampered")
    tampered.write_bytes(accepted.fo.read_bytes().replace(b"<ResultCode>1", b"<ResultCode>0"))
    refused = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(der),
         "-content", str(tampered), "-CAfile", str(gateway_pem), "-purpose", "any",
         "-out", "/dev/null"],
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0


def test_directory_destination_holds_the_three_parts_and_the_envelope(
    accepted: Accepted, world: World
) -> None:
    """routed/DMFA/<ticket>/ holds the FI parts byte for byte and an envelope describing them."""
    folder = world.routed / accepted.ack.ticket
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*accepted.names.fis, "envelope.json"]
    )
    for name, content in zip(accepted.names.fis, accepted.contents, strict=True):
        assert (folder / name).read_bytes() == content
    envelope = json.loads((folder / "envelope.json").read_text())
    assert envelope["ticket"] == accepted.ack.ticket
    assert envelope["sender"] == world.a.number
    assert envelope["enterprise"] == kbo(1)
    assert envelope["quality"]["kind"] == "employer"
    assert envelope["application"] == "DMFA"
    assert envelope["environment"] == "R"
    assert envelope["set"]["go"] == accepted.names.go
    signer_der = world.cast.rsa.cert_der
    fingerprint = hashlib.sha256(signer_der).hexdigest()
    assert fingerprint in envelope["signer"]["fingerprint"].replace(":", "").lower()
    assert "sender 006400 rsa" in envelope["signer"]["subject"]
    assert [f["name"] for f in envelope["files"]] == list(accepted.names.fis)
    for entry, content in zip(envelope["files"], accepted.contents, strict=True):
        assert entry["size"] == len(content)
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    received = datetime.fromisoformat(envelope["received"])
    assert abs(datetime.now(UTC) - received) < timedelta(hours=1)


def test_td_cancels_a_set_nothing_routed_files_gone(world: World) -> None:
    """FI+FS then TD: a negative ACRF (930), no positive one, IN emptied, nothing routed."""
    seq = world.seq()
    names = world.write_set(world.a, seq=seq, contents=[body(1, seq)])
    send(world, world.a, names, close="TD")
    acks = wait_acks(
        world.a.out_dir, lambda acks: any(a.file_name in {names.td, names.go} for a in acks)
    )
    mine = [a for a in acks if a.file_name in {names.td, names.go}]
    assert [(a.result, a.code) for a in mine] == [(0, 930)]
    assert not set(pending(world.a)) & {*names.fis, *names.fss, names.td}
    routed = {p.name for p in world.routed.glob("*/*")}
    assert not routed & set(names.fis)


def test_resend_with_other_content_is_a_duplicate_naming_the_first_ticket(world: World) -> None:
    """The same set name sent again with other bytes: 133, and the reason names ticket one."""
    seq = world.seq()
    first = world.write_set(world.a, seq=seq, contents=[body(1, seq)])
    send(world, world.a, first)
    (ack,) = [a for a in wait_acks(world.a.out_dir, acks_for(first.go)) if a.file_name == first.go]
    assert ack.result == 1
    again = world.write_set(world.a, seq=seq, contents=[body(1, seq, size=3000)])
    send(world, world.a, again)
    acks = [a for a in wait_acks(world.a.out_dir, acks_for(first.go, count=2))]
    second = [a for a in acks if a.file_name == first.go and a.fo != ack.fo]
    assert len(second) == 1
    assert (second[0].result, second[0].code) == (0, 133)
    assert ack.ticket in (second[0].description or "")
    assert second[0].ticket != ack.ticket
    assert len([p for p in world.routed.glob(f"*/{first.fis[0]}")]) == 1


REFUSED = {
    "another-senders-number": 108,
    "impossible-date": 110,
}


def refused_name(world: World, case: str, seq: str) -> str:
    """The FI name sender A tries to upload in ``case``."""
    if case == "another-senders-number":
        return set_names(world.b.number, seq).fis[0]
    return f"FI.DMFA.{world.a.number}.20260230.{seq}.R.1.1"


@pytest.fixture(scope="module")
def refusals(world: World) -> dict[str, tuple[subprocess.CompletedProcess[str], Ack]]:
    """Try each refused name (one sftp session each); wait for every negative ACRF."""
    tried = {}
    for case in REFUSED:
        name = world.a.write(refused_name(world, case, world.seq()), b"<DmfA/>\r\n")
        tried[case] = (name, world.a.sftp.run(world.a.put([name]), cwd=world.a.work))
    acks = wait_acks(world.a.out_dir, acks_for(*(name for name, _ in tried.values())))
    return {
        case: (result, next(a for a in acks if a.file_name == name))
        for case, (name, result) in tried.items()
    }


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_name_refused_at_upload_fails_in_sftp_and_is_answered_in_out(
    case: str, refusals: dict[str, tuple[subprocess.CompletedProcess[str], Ack]], world: World
) -> None:
    """sftp's put fails, the file is not in IN, and OUT holds a negative ACRF with the code."""
    result, ack = refusals[case]
    assert result.returncode != 0
    assert "Permission denied" in result.stderr or f"{REFUSED[case]}" in result.stderr
    assert (ack.result, ack.code) == (0, REFUSED[case])
    assert ack.file_name not in pending(world.a)


def test_exact_resend_gets_the_original_acrf_again_and_is_routed_once(
    world: World, tmp_path: Path
) -> None:
    """Fetch and delete the ACRF, resend the same bytes: the same ACRF reappears; one routing."""
    seq = world.seq()
    names = world.write_set(world.a, seq=seq, contents=[body(1, seq)])
    send(world, world.a, names)
    (first,) = [
        a for a in wait_acks(world.a.out_dir, acks_for(names.go)) if a.file_name == names.go
    ]
    fetch(world.a, first, tmp_path)
    suffix = first.fo.removeprefix("FO")
    world.a.sftp.ok([f"rm OUT/{kind}{suffix}" for kind in ("FO", "FS", "GO")], cwd=tmp_path)
    assert first.fo not in world.a.sftp.listing("OUT", cwd=tmp_path)

    send(world, world.a, names)
    acks = wait_acks(world.a.out_dir, acks_for(names.go))
    again = [a for a in acks if a.file_name == names.go]
    assert again == [first]
    assert len(list(world.routed.glob(f"*/{names.fis[0]}"))) == 1
