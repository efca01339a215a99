"""The cost of one ACRF signature: ``sign_detached`` with a loaded identity, per key type.

For an EC P-256 and an RSA-2048 identity (keys and self-signed certificates made in memory with
``cryptography``; nothing is written), the microseconds per ``sign_detached(content,
identity=..., signing_time=...)`` call as the acknowledgement writer makes it (signed attributes,
SHA-256, a signing time with microseconds), and the share of it spent in the private-key sign
call itself (``key.sign`` over signed attributes of the same size, timed alone). What is left
is the Python around it: hashing the content, encoding the signed attributes, assembling DER.

Each figure is the median of ``--rounds`` rounds of ``--count`` calls (best round in brackets).
Usage: ``python bench/acrf_sign.py [--count N] [--rounds R] [--size BYTES]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from gateway.core.cms_sign import SigningIdentity, sign_detached
from tests.pki import self_signed_identity

WHEN = datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=UTC)
ATTRIBUTES_SIZE = 107
"""DER size of contentType + messageDigest (SHA-256) + signingTime (UTCTime) as signed."""


def _identity(key: CertificateIssuerPrivateKeyTypes) -> SigningIdentity:
    """A self-signed certificate for ``key``, both loaded as the gateway loads its own."""
    return self_signed_identity(key, "Batch Gateway bench", valid_at=WHEN, days=365)


def _raw_sign(key: CertificateIssuerPrivateKeyTypes) -> Callable[[bytes], bytes]:
    """The private-key operation alone, as sign_detached calls it with signed attributes."""
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_key = key
        return lambda data: rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ec_key = key
    return lambda data: ec_key.sign(data, ec.ECDSA(hashes.SHA256()))


def _per_call_us(call: Callable[[], object], count: int, rounds: int) -> tuple[float, float]:
    """Median and best µs per call over ``rounds`` rounds of ``count`` calls."""
    call()  # warm up
    figures = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(count):
            call()
        figures.append((time.perf_counter_ns() - start) / count / 1000)
    return statistics.median(figures), min(figures)


def _measure(label: str, key: CertificateIssuerPrivateKeyTypes, args: argparse.Namespace) -> None:
    identity = _identity(key)
    content = b"<ACRF>" + b"x" * max(0, args.size - 13) + b"</ACRF>"
    whole, whole_best = _per_call_us(
        lambda: sign_detached(content, identity=identity, signing_time=WHEN),
        args.count,
        args.rounds,
    )
    raw = _raw_sign(key)
    attributes = bytes(ATTRIBUTES_SIZE)
    alone, alone_best = _per_call_us(lambda: raw(attributes), args.count, args.rounds)
    print(
        f"{label:<10} sign_detached {whole:8.1f} µs ({whole_best:.1f})   "
        f"key.sign {alone:8.1f} µs ({alone_best:.1f})   "
        f"share {alone / whole:5.1%}   rest {whole - alone:7.1f} µs"
    )


def main() -> None:
    """Measure both key types and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the median is printed")
    parser.add_argument("--size", type=int, default=1024, help="ACRF content bytes")
    args = parser.parse_args()
    print(
        f"bench/acrf_sign.py: {args.rounds} x {args.count} calls, content {args.size} B, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    _measure("EC P-256", ec.generate_private_key(ec.SECP256R1()), args)
    _measure("RSA-2048", rsa.generate_private_key(public_exponent=65537, key_size=2048), args)


if __name__ == "__main__":
    main()
