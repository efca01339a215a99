"""The signature suite arriving over SFTP: every bad FS gets a negative ACRF with its own code.

The FI/FS pairs are the core's cases (tests/pki.py ``signature_cases``, signed by the real
openssl). All of them travel to one gateway as one-part sets in a single ``sftp`` session, so the
suite costs one upload batch and one wait; each case is then its own test. Two good signatures go
in the same batch as controls: a negative answer must come from the signature, not the transport.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import World, set_names
from tests.e2e.harness import Ack, acks_for, wait_acks
from tests.pki import SignatureCase, signature_cases

EXPECTED: dict[str, int | None] = {
    "flipped-byte-in-FI": 125,
    "flipped-byte-in-FI-noattr": 125,
    "signature-of-another-file": 125,
    "another-senders-certificate": 153,
    "unregistered-certificate": 153,
    "expired": 902,
    "not-yet-valid": 903,
    "revoked": 904,
    "untrusted-ca": 905,
    "md5": 906,
    "sha1-not-allowed": 906,
    "rsa1024": 907,
    "attached-other-content": 908,
    "attached-same-content": 908,
    "two-signers-one-unregistered": 909,
    "two-signers-both-registered": 909,
    "wrong-econtent-type": 911,
    "empty-fs": 901,
    "whitespace-only-fs": 901,
    "garbage-base64": 901,
    "truncated-der": 901,
    # controls, in the same session
    "ecdsa-p256/one-line": None,
    "rsa-pss/64-crlf": None,
}


@pytest.fixture(scope="module")
def outcomes(world: World) -> dict[str, Ack]:
    """Upload every case as its own set in one sftp session; wait for all the ACRFs."""
    cases: dict[str, SignatureCase] = {c.name: c for c in signature_cases(world.cast)}
    party = world.a
    go_of: dict[str, str] = {}
    files: list[str] = []
    for name in EXPECTED:
        case = cases[name]
        assert case.code == EXPECTED[name], f"tests/pki.py changed its verdict on {name}"
        names = set_names(party.number, world.seq())
        files += [
            party.write(names.fis[0], case.fi.read_bytes()),
            party.write(names.fss[0], case.fs),
            party.write(names.go, b""),
        ]
        go_of[name] = names.go
    party.sftp.ok(party.put(files), cwd=party.work)
    acks = wait_acks(party.out_dir, acks_for(*go_of.values()), timeout=120)
    return {name: next(a for a in acks if a.file_name == go) for name, go in go_of.items()}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_signature_case_over_sftp_gets_its_acrf_code(
    case: str, outcomes: dict[str, Ack], world: World
) -> None:
    """The set's ACRF in OUT: ResultCode 0 with ACRF-<code> (1 for the controls)."""
    ack = outcomes[case]
    expected = EXPECTED[case]
    if expected is None:
        assert (ack.result, ack.error_id) == (1, None), ack
        assert (world.routed / ack.ticket).is_dir()
    else:
        assert (ack.result, ack.error_id) == (0, f"ACRF-{expected}"), ack
        assert ack.description
        assert not (world.routed / ack.ticket).exists()
