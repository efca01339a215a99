"""Worst-case chain-building time for hostile FS certificates (issue 15, item 1).

For k = 8, 10, 12, 16 CA certificates carried by one FS, the time ``TrustStore.chain_for``
takes to answer (905) on a fresh store, best and worst of ``--rounds``:

- ``self-issued``: k self-issued CAs with one subject and one key (the issue's attack; before
  the bound: 14.7 s at k = 8, about 11 minutes at k = 10, about 2 hours at k = 12);
- ``ladder-KIND``: k CAs with one subject and k keys of type KIND, each step's issuer found
  last, so only the check limit stops the search (the most signature checks an FS can cause);
- ``flood-1000``: 1,000 carried certificates (only the first 16 are read).

Also, for comparison, ``cryptography.x509.verification`` (its client verifier, same store and
certificates) on the self-issued flood, and the cost of one issuer-signature check per key
type (what ``_check_cost`` in gateway/core/trust.py weighs). Target: every worst case under
20 ms. Usage: ``python bench/chains.py [--rounds R] [--kinds p256,p384,...]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509
from cryptography.x509 import verification

from gateway.core.codes import Rejection
from gateway.core.trust import TrustStore, load_certificate
from tests.chain_flood import KEY_KINDS, Flood, key_ladder, real_chain, self_issued_flood

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
TARGET_MS = 20.0


def _times(
    rounds: int, run: Callable[[], object], setup: Callable[[], object] = lambda: None
) -> tuple[float, float, float]:
    """(median wall, worst wall, worst CPU) time of ``run`` in ms over ``rounds``, ``setup``
    untimed before each. CPU time leaves out the moments a shared machine gave the core to
    someone else."""
    wall, cpu = [], []
    for _ in range(rounds):
        setup()
        start, start_cpu = time.perf_counter(), time.thread_time()
        run()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1000)
    return statistics.median(wall), max(wall), max(cpu)


def _gateway(flood: Flood, anchor: bytes) -> Callable[[], object]:
    def run() -> object:
        store = TrustStore.from_blobs([anchor])
        signer = load_certificate(flood.signer_der)
        assert signer is not None
        answer = store.chain_for(signer, flood.carried, NOW)
        assert isinstance(answer, Rejection), "the flood must not chain"
        run.checks = store.statistics().signature_checks  # type: ignore[attr-defined]
        return answer

    return run


def _library(flood: Flood, anchor: bytes) -> Callable[[], object]:
    def run() -> object:
        store = verification.Store([x509.load_der_x509_certificate(anchor)])
        # Its default (web PKI) profile refuses these certificates outright (no SAN), which
        # measures nothing: relax it to what the gateway checks, as a fair comparison.
        ca_policy = verification.ExtensionPolicy.permit_all().require_present(
            x509.BasicConstraints, verification.Criticality.AGNOSTIC, None
        )
        verifier = (
            verification.PolicyBuilder()
            .store(store)
            .time(NOW)
            .extension_policies(
                ca_policy=ca_policy, ee_policy=verification.ExtensionPolicy.permit_all()
            )
            .build_client_verifier()
        )
        leaf = x509.load_der_x509_certificate(flood.signer_der)
        carried = [x509.load_der_x509_certificate(d) for d in flood.carried]
        try:
            return verifier.verify(leaf, carried)
        except verification.VerificationError as exc:
            return exc

    return run


def _check_cost(kind: str, rounds: int) -> float:
    """ms of one issuer-signature check with a CA key of ``kind``."""
    flood = key_ladder(2, now=NOW, kind=kind)
    child = x509.load_der_x509_certificate(flood.carried[1])
    parent = x509.load_der_x509_certificate(flood.carried[0])
    start = time.perf_counter()
    for _ in range(rounds):
        child.verify_directly_issued_by(parent)
    return (time.perf_counter() - start) * 1000 / rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kinds", default="p256,p384,p521,ed25519,ed448,rsa2048")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    anchor = real_chain(now=NOW).root

    print("one issuer-signature check, by CA key type (ms):")
    for kind in KEY_KINDS:
        if kind in kinds or kind == "p256":
            print(f"  {kind:<8} {_check_cost(kind, 200):7.3f}")

    print(f"\nchain_for on a fresh store, {args.rounds} rounds (ms; target < {TARGET_MS:g}):")
    print(f"  {'case':<18} {'k':>4} {'checks':>6} {'median':>8} {'worst':>8} {'cpu max':>8}")
    worst_all = 0.0
    cases: list[tuple[str, int, Flood]] = []
    for k in (8, 10, 12, 16):
        cases.append(("self-issued", k, self_issued_flood(k, now=NOW)))
    for kind in kinds:
        for k in (8, 10, 12, 16):
            cases.append((f"ladder-{kind}", k, key_ladder(k, now=NOW, kind=kind)))
    cases.append(("flood-1000", 1000, self_issued_flood(1000, now=NOW)))
    for name, k, flood in cases:
        run = _gateway(flood, anchor)
        # Parse every time, as for a new FS (clearing the parse cache is not timed).
        median, worst, cpu = _times(args.rounds, run, load_certificate.cache_clear)
        worst_all = max(worst_all, cpu)
        checks = run.checks  # type: ignore[attr-defined]
        print(f"  {name:<18} {k:>4} {checks:>6} {median:8.2f} {worst:8.2f} {cpu:8.2f}")
    verdict = "under" if worst_all < TARGET_MS else "OVER"
    print(f"  worst CPU time of all: {worst_all:.2f} ms ({verdict} the {TARGET_MS:g} ms target)")

    print("\ncryptography.x509.verification client verifier, same floods (ms):")
    for name, factory in (("self-issued", self_issued_flood), ("ladder-p256", key_ladder)):
        for k in (8, 10, 12, 16):
            library = _library(factory(k, now=NOW), anchor)
            median, worst, cpu = _times(args.rounds, library)
            outcome = str(library())[:60]
            print(f"  {name:<18} {k:>4} {median:8.2f} {worst:8.2f} {cpu:8.2f}  {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
