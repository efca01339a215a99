"""Bounded chain building (issue 15, item 1): hostile FS certificates cost a capped number of
signature checks and answer 905 with a reason naming the cap. Checks are counted through
``TrustStore.statistics()``; timings are measured by bench/chains.py, never asserted here."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.core.codes import Code, Rejection
from gateway.core.signature import SignaturePolicy, TrustStore, verify_fs
from gateway.core.trust import MAX_CARRIED, MAX_CHECKS, CertInfo, load_certificate
from tests.chain_flood import impostors, key_ladder, real_chain, self_issued_flood
from tests.pki import Identity, Pki, fs_text
from tests.tools import require_tool

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def _info(der: bytes) -> CertInfo:
    info = load_certificate(der)
    assert info is not None
    return info


def _unrelated_store() -> TrustStore:
    """A trust store whose only anchor has nothing to do with the flood."""
    return TrustStore.from_blobs([real_chain(now=NOW).root])


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def test_twelve_self_issued_cas_in_an_fs_answer_905_within_the_cap(tmp_path: Path) -> None:
    """An openssl FS carrying 12 self-issued CAs with one subject and key: 905, few checks."""
    require_tool("openssl")
    flood = self_issued_flood(12, now=NOW)
    (tmp_path / "signer.pem").write_bytes(flood.signer_pem)
    (tmp_path / "signer.key").write_bytes(flood.signer_key_pem)
    bundle = tmp_path / "flood.pem"
    bundle.write_bytes(b"".join(_pem(der) for der in flood.carried))
    signer = Identity(name="flood", key=tmp_path / "signer.key", cert=tmp_path / "signer.pem")
    content = b"<declaration/>"
    fs = Pki(tmp_path / "pki").sign(content, signer, extra=["-certfile", str(bundle)])
    trust = _unrelated_store()
    result = verify_fs(
        fs_text(fs, "76-cr"),
        content=content,
        registered=[flood.signer_der],
        trust=trust,
        policy=SignaturePolicy(),
        now=NOW,
    )
    assert isinstance(result, Rejection)
    assert result.code is Code.CERTIFICATE_UNTRUSTED
    stats = trust.statistics()
    assert stats.searches == 1
    assert 1 <= stats.signature_checks <= MAX_CHECKS
    assert stats.budget_exhausted == 0  # one (subject, key) group: one check settles it


@pytest.mark.parametrize("k", [8, 12, 16])
def test_self_issued_copies_are_one_candidate(k: int) -> None:
    """k copies of one CA (same subject and key) cost one signature check, not k!/(k-8)!."""
    flood = self_issued_flood(k, now=NOW)
    trust = _unrelated_store()
    answer = trust.chain_for(_info(flood.signer_der), flood.carried, NOW)
    assert isinstance(answer, Rejection)
    assert answer.code is Code.CERTIFICATE_UNTRUSTED
    assert trust.statistics().signature_checks == 1


@pytest.mark.parametrize("k", [12, 16])
def test_a_key_ladder_stops_at_the_check_limit(k: int) -> None:
    """k keys under one subject, each issuer found last: the search stops at the limit with a
    905 that names it, and never makes more than MAX_CHECKS checks."""
    flood = key_ladder(k, now=NOW)
    trust = _unrelated_store()
    answer = trust.chain_for(_info(flood.signer_der), flood.carried, NOW)
    assert isinstance(answer, Rejection)
    assert answer.code is Code.CERTIFICATE_UNTRUSTED
    assert f"limit of {MAX_CHECKS} signature checks" in answer.reason
    stats = trust.statistics()
    assert stats.signature_checks <= MAX_CHECKS
    assert stats.check_units <= MAX_CHECKS
    assert stats.budget_exhausted == 1


def test_certificates_beyond_the_carried_cap_are_not_read() -> None:
    """Only the first MAX_CARRIED certificates of an FS are read; the 905 says so."""
    flood = self_issued_flood(MAX_CARRIED + 4, now=NOW)
    trust = _unrelated_store()
    answer = trust.chain_for(_info(flood.signer_der), flood.carried, NOW)
    assert isinstance(answer, Rejection)
    assert answer.code is Code.CERTIFICATE_UNTRUSTED
    assert f"only the first {MAX_CARRIED} are read" in answer.reason
    assert trust.statistics().carried_ignored == 4


def test_a_real_chain_is_found_behind_impostors() -> None:
    """CAs carrying the signing CA's subject with other keys do not hide the real one, and a
    second verification of the same signer is a cache hit."""
    chain = real_chain(now=NOW)
    trust = TrustStore.from_blobs([chain.root])
    carried = [*impostors(chain.sub, 10, now=NOW), chain.sub]
    found = trust.chain_for(_info(chain.signer), carried, NOW)
    assert not isinstance(found, Rejection), found
    assert [c.der for c in found] == [chain.sub, chain.root]
    assert trust.statistics().signature_checks == 12  # 10 impostors, the signing CA, the root
    again = trust.chain_for(_info(chain.signer), carried, NOW)
    assert again == found
    assert trust.statistics().cache_hits == 1


# -- SECURITY.md 19: variants of the flood ---------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_shuffled_key_ladder_stays_within_the_check_limit(seed: int) -> None:
    """The ladder's certificates in a random order (not the worst case the ladder is built as):
    still 905, still no more than MAX_CHECKS check units."""
    flood = key_ladder(16, now=NOW)
    carried = list(flood.carried)
    random.Random(seed).shuffle(carried)
    trust = _unrelated_store()
    answer = trust.chain_for(_info(flood.signer_der), carried, NOW)
    assert isinstance(answer, Rejection)
    assert answer.code is Code.CERTIFICATE_UNTRUSTED
    assert trust.statistics().check_units <= MAX_CHECKS


def test_a_flood_of_mixed_key_types_stays_within_the_check_limit() -> None:
    """Ed25519, P-384 and RSA-2048 "Flood CA" ladders in one FS (P-384 and RSA checks cost more
    units): 905 within the limit, whatever the key types."""
    ladders = [key_ladder(5, now=NOW, kind=kind) for kind in ("ed25519", "p384", "rsa2048")]
    carried = [der for ladder in ladders for der in ladder.carried]
    trust = _unrelated_store()
    answer = trust.chain_for(_info(ladders[0].signer_der), carried, NOW)
    assert isinstance(answer, Rejection)
    assert answer.code is Code.CERTIFICATE_UNTRUSTED
    stats = trust.statistics()
    assert stats.check_units <= MAX_CHECKS
    assert stats.signature_checks <= MAX_CHECKS


def test_twenty_self_issued_cas_with_different_serials_are_one_candidate() -> None:
    """Issue 15's Done-when case: 20 self-issued copies (one subject and key, 20 serials): 905
    after one signature check, the four past the carried cap unread."""
    flood = self_issued_flood(20, now=NOW)
    trust = _unrelated_store()
    answer = trust.chain_for(_info(flood.signer_der), flood.carried, NOW)
    assert isinstance(answer, Rejection)
    assert answer.code is Code.CERTIFICATE_UNTRUSTED
    stats = trust.statistics()
    assert (stats.signature_checks, stats.carried_ignored) == (1, 4)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_real_chain_is_found_hidden_in_a_flood(where: str) -> None:
    """The real signing CA among self-issued copies of a CA with its own subject and key, and
    impostors carrying the real CA's subject: found wherever it sits within the carried cap."""
    chain = real_chain(now=NOW)
    noise = [*impostors(chain.sub, 7, now=NOW), *self_issued_flood(8, now=NOW).carried]
    at = {"first": 0, "middle": len(noise) // 2, "last": len(noise)}[where]
    carried = [*noise[:at], chain.sub, *noise[at:]]
    assert len(carried) <= MAX_CARRIED
    trust = TrustStore.from_blobs([chain.root])
    found = trust.chain_for(_info(chain.signer), carried, NOW)
    assert not isinstance(found, Rejection), found
    assert [c.der for c in found] == [chain.sub, chain.root]
    assert trust.statistics().check_units <= MAX_CHECKS
