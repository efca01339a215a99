"""``gateway sign`` and ``gateway verify``: make and check FS files offline, as a sender would.

The thin edge around ``gateway.core.signature``: it reads files and the clock, hands bytes to the
core and prints the core's verdict. ``verify`` exits 0 only for a valid signature, 1 for a refused
one (the code and reason are printed), 2 for a usage error (missing file, unreadable trust
folder). ``sign`` exits 2, writing nothing, when the key is unusable or is not the key of the
certificate (the gateway would refuse such a set with 125). Large FI files are hashed in chunks
while read, never held in memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.core.codes import Code, Rejection, reject
from gateway.core.signature import (
    SignaturePolicy,
    TrustStore,
    TrustStoreError,
    VerifiedSignature,
    decode_fs,
    encode_fs,
    parse_signature,
    sign_detached,
    sort_blobs,
    verify_signature,
)

EXIT_VALID = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
_CHUNK = 1 << 20


class _UsageError(Exception):
    """A problem with the command line or local files (exit 2), not with the signature."""


def fs_path_for(fi: Path) -> Path:
    """Where the FS of ``fi`` lives: ``FI.x`` -> ``FS.x``, anything else -> ``NAME.fs``."""
    if fi.name.startswith("FI."):
        return fi.with_name("FS." + fi.name[3:])
    return fi.with_name(fi.name + ".fs")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _folder_blobs(folder: Path, what: str) -> Iterable[bytes]:
    if not folder.is_dir():
        raise _UsageError(f"{what} {folder} is not a folder")
    return [_read(p, what + " file") for p in sorted(folder.iterdir()) if p.is_file()]


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _UsageError(f"--at {text!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _hash_file(path: Path, algorithm: str) -> bytes:
    digest = hashlib.new(algorithm)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise _UsageError(f"cannot read FI {path}: {exc.strerror}") from exc
    return digest.digest()


def _verify(args: argparse.Namespace) -> int:
    try:
        outcome = _verify_outcome(args)
    except _UsageError as exc:
        print(f"gateway verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print_verdict(outcome, as_json=args.json)
    return EXIT_VALID if isinstance(outcome, VerifiedSignature) else EXIT_REFUSED


def _verify_outcome(args: argparse.Namespace) -> VerifiedSignature | Rejection:
    fi: Path = args.fi
    if not fi.is_file():
        raise _UsageError(f"FI {fi} does not exist")
    fs: Path = args.fs if args.fs is not None else fs_path_for(fi)
    registered: list[bytes] = []
    for cert in args.cert:
        found, _ = sort_blobs([_read(cert, "certificate")])
        if not found:
            raise _UsageError(f"{cert} holds no certificate")
        registered += found
    trust_certs, trust_crls = sort_blobs(_folder_blobs(args.trust, "trust folder"))
    if not trust_certs:
        raise _UsageError(f"trust folder {args.trust} holds no certificate")
    if args.crl is not None:
        trust_crls += sort_blobs(_folder_blobs(args.crl, "CRL folder"))[1]
    try:
        trust = TrustStore.from_blobs(trust_certs, trust_crls)
    except TrustStoreError as exc:  # pragma: no cover - sort_blobs keeps only loadable blobs
        raise _UsageError(str(exc)) from exc
    now = _parse_time(args.at) if args.at is not None else datetime.now(UTC)
    if not fs.is_file():
        return reject(Code.SIGNATURE_MISSING, f"the signature file {fs.name} is missing")
    der = decode_fs(_read(fs, "FS"))
    if isinstance(der, Rejection):
        return der
    parsed = parse_signature(der)
    if isinstance(parsed, Rejection):
        return parsed
    return verify_signature(
        parsed,
        content_digest=_hash_file(fi, parsed.digest_algorithm),
        registered=registered,
        trust=trust,
        policy=SignaturePolicy(allow_sha1=args.allow_sha1, require_crl=args.require_crl),
        now=now,
    )


def _print_verdict(outcome: VerifiedSignature | Rejection, *, as_json: bool) -> None:
    if isinstance(outcome, Rejection):
        record: dict[str, Any] = {
            "verdict": "refused",
            "code": int(outcome.code),
            "name": outcome.code.name.lower(),
            "reason": outcome.reason,
        }
        text = f"refused: {outcome}"
    else:
        signing_time = outcome.signing_time.isoformat() if outcome.signing_time else None
        record = {
            "verdict": "valid",
            "code": 0,
            "signer": outcome.signer_subject,
            "certificate_sha256": outcome.signer_fingerprint,
            "digest": outcome.digest_algorithm,
            "signing_time": signing_time,
        }
        text = (
            f"valid: 0: signed by {outcome.signer_subject} "
            f"(certificate SHA-256 {outcome.signer_fingerprint}, digest {outcome.digest_algorithm}"
            + (f", signed at {signing_time}" if signing_time else "")
            + ")"
        )
        if outcome.digest_algorithm == "sha1":
            text += "\nwarning: SHA-1 is deprecated; sign with SHA-256"
    print(json.dumps(record) if as_json else text)


def _key_matches(key_pem: bytes, cert_pem: bytes) -> None:
    """Refuse a key that is not the private key of the (first) certificate.

    ``ValueError`` from cryptography for an unreadable key or certificate is left to the caller.
    """
    key = serialization.load_pem_private_key(key_pem, password=None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise _UsageError(
            "the key does not belong to the certificate (their public keys differ): "
            "the gateway would refuse the set with 125"
        )


def _sign(args: argparse.Namespace) -> int:
    fi: Path = args.fi
    out = fs_path_for(fi)
    try:
        if out.exists() and not args.force:
            raise _UsageError(f"{out} already exists (use --force to overwrite)")
        content = _read(fi, "FI")
        key_pem, cert_pem = _read(args.key, "key"), _read(args.cert, "certificate")
        _key_matches(key_pem, cert_pem)
        der = sign_detached(
            content,
            key_pem=key_pem,
            cert_pem=cert_pem,
            digest=args.digest,
            signed_attributes=not args.no_attributes,
            signing_time=datetime.now(UTC),
        )
    except _UsageError as exc:
        print(f"gateway sign: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError) as exc:
        # cryptography reports an unreadable, encrypted or unsupported key or certificate so.
        print(f"gateway sign: cannot sign with this key and certificate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out.write_bytes(encode_fs(der, args.style))
    print(f"wrote {out}")
    return 0


def register(sub: Any) -> None:
    """Add ``sign`` and ``verify`` to the ``gateway`` parser."""
    p = sub.add_parser("sign", help="write the detached signature (FS) of an FI file")
    p.add_argument("fi", type=Path, metavar="FI")
    p.add_argument("--key", type=Path, required=True, help="private key, PEM, unencrypted")
    p.add_argument("--cert", type=Path, required=True, help="signing certificate, PEM")
    p.add_argument(
        "--style",
        choices=("76-cr", "one-line", "64-crlf"),
        default="76-cr",
        help="base64 layout of the FS (default 76-cr: 76 columns, CR line ends)",
    )
    p.add_argument("--digest", choices=("sha256", "sha384", "sha512"), default="sha256")
    p.add_argument("--no-attributes", action="store_true", help="sign without signed attributes")
    p.add_argument("--force", action="store_true", help="overwrite an existing FS")
    p.set_defaults(handler=_sign)

    p = sub.add_parser("verify", help="check the detached signature (FS) of an FI file")
    p.add_argument("fi", type=Path, metavar="FI")
    p.add_argument("fs", type=Path, metavar="FS", nargs="?", help="default: FI name with FS.")
    p.add_argument(
        "--cert",
        type=Path,
        action="append",
        required=True,
        help="a certificate registered for the sender (PEM or DER); repeat for several",
    )
    p.add_argument("--trust", type=Path, required=True, help="folder of trusted CA certs and CRLs")
    p.add_argument("--crl", type=Path, help="extra folder of CRLs")
    p.add_argument("--allow-sha1", action="store_true", help="accept SHA-1 (deprecated)")
    p.add_argument("--require-crl", action="store_true", help="refuse without a current CRL")
    p.add_argument("--at", help="verify at this ISO 8601 time instead of now")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(handler=_verify)
