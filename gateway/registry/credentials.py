"""Credential material: argon2id password hashing, SSH public keys, X.509 certificates.

- Passwords are stored as argon2id hashes only; the parameters come from settings
  (``[security]``) so tests can run with cheap ones. A dummy hash lets an unknown login cost the
  same as a known one.
- Login checks run in a pool of their own, bounded (SECURITY.md 21, issue 15 item 4): at most
  ``workers`` argon2 verifications at once and ``queue`` more waiting. A check past that is
  refused at once (:attr:`Verdict.busy`, answered as a failed login after the pacing delay of
  :mod:`gateway.ops.pacing`, which holds no slot), so a flood of password
  guesses costs at most the pool's threads and never holds the default executor, where the
  registry reads of key and certificate logins run. :meth:`PasswordHashing.statistics` counts.
- An SSH key is compared on algorithm + key blob; the comment is never stored or compared.
- A signing certificate must parse (PEM or DER) and pass what verification will ask of it
  (``gateway.core.signature.signing_certificate_rejection``: validity 902/903, key 907/910,
  chain to the trust store 905, with the CA certificates that follow it in a PEM file as the
  intermediates an FS would carry; revocation 904/913), and, when it has a keyUsage extension,
  allow digitalSignature or nonRepudiation. A web-service client certificate is its own anchor:
  validity and key only (``client_certificate_rejection``). A refusal for one of the core's
  reasons starts with its code (``907: RSA key of 1024 bits...``), as a protocol reply does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_ssh_public_key

from gateway.core.codes import Code, Rejection
from gateway.core.signature import (
    SignaturePolicy,
    TrustStore,
    client_certificate_rejection,
    signing_certificate_rejection,
)
from gateway.core.trust import pem_blocks
from gateway.registry.types import Refusal
from gateway.registry.validate import has_forbidden_characters

SSH_ALGORITHMS = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    }
)
MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class Argon2Parameters:
    """argon2id cost parameters (RFC 9106); defaults are the library's recommended ones."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


class Verdict(StrEnum):
    """The outcome of a bounded password check."""

    match = "match"
    mismatch = "mismatch"
    busy = "busy"
    """Not checked: the pool and its queue were full."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordPoolStatistics:
    """What the password pool did since start (trio's ``statistics()`` habit)."""

    workers: int
    queue: int
    in_flight: int
    """Checks running or waiting now."""
    checked: int
    refused: int
    """Checks refused because the pool and its queue were full."""
    peak: int
    """The most checks running or waiting at once."""


class PasswordHashing:
    """argon2id hashing and verification with fixed parameters, off the event loop; login checks
    in a bounded pool of their own (see the module docstring)."""

    def __init__(self, params: Argon2Parameters, *, workers: int = 2, queue: int = 16) -> None:
        self.params = params
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        # Verified against when the login is unknown, so both paths do one argon2 computation.
        self._dummy = self._hasher.hash("dummy password for unknown logins")
        self.workers = workers
        self.queue = queue
        self._pool: ThreadPoolExecutor | None = None
        # Touched on the event loop only (admission and release), never from the pool's threads.
        self._in_flight = 0
        self._checked = 0
        self._refused = 0
        self._peak = 0

    def hash_sync(self, password: str) -> str:
        """The argon2id hash of ``password`` (blocking)."""
        return self._hasher.hash(password)

    def verify_sync(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; ``None`` is checked against the dummy."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password``, computed in a worker thread (an access manager's
        action, never a peer's: not bounded by the login pool)."""
        return await asyncio.to_thread(self.hash_sync, password)

    async def check(self, stored: str | None, password: str) -> Verdict:
        """One argon2 verification in the bounded pool, or :attr:`Verdict.busy` at once when
        ``workers`` checks run and ``queue`` more wait."""
        if self._in_flight >= self.workers + self.queue:
            self._refused += 1
            return Verdict.busy
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="argon2")
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._pool, self.verify_sync, stored, password)
        finally:
            self._in_flight -= 1
        self._checked += 1
        return Verdict.match if ok else Verdict.mismatch

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored`` (a busy pool is a mismatch)."""
        return await self.check(stored, password) is Verdict.match

    def statistics(self) -> PasswordPoolStatistics:
        """The pool's counters now."""
        return PasswordPoolStatistics(
            workers=self.workers,
            queue=self.queue,
            in_flight=self._in_flight,
            checked=self._checked,
            refused=self._refused,
            peak=self._peak,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SshKey:
    """An SSH public key reduced to what is compared: algorithm and blob."""

    algorithm: str
    blob: str  # base64 of the key blob
    sha256: str  # hex SHA-256 of the blob


def parse_ssh_key(text: str) -> SshKey | Refusal:
    """Parse ``type base64 [comment]``; refuse unknown algorithms, garbage and weak RSA."""
    if has_forbidden_characters(text.strip()):
        return Refusal("bad_key", "SSH key contains control characters")
    fields = text.strip().split()
    if len(fields) < 2:
        return Refusal("bad_key", "SSH key must be 'type base64 [comment]'")
    algorithm, encoded = fields[0], fields[1]
    if algorithm not in SSH_ALGORITHMS:
        return Refusal("bad_key", f"SSH key algorithm {algorithm[:40]!r} is not accepted")
    try:
        blob = base64.b64decode(encoded, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        inner = blob[4 : 4 + length].decode("ascii")
        key = load_ssh_public_key(f"{algorithm} {encoded}".encode())
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return Refusal("bad_key", "SSH key blob is not a valid public key")
    if inner != algorithm:
        return Refusal("bad_key", "SSH key type does not match the key blob")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return Refusal("bad_key", f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS}")
    return SshKey(
        algorithm=algorithm,
        blob=base64.b64encode(blob).decode(),
        sha256=hashlib.sha256(blob).hexdigest(),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedCertificate:
    """A certificate accepted for registration."""

    der: bytes
    sha256: str
    subject: str
    not_after: datetime


def _load_certificate(data: bytes) -> x509.Certificate | Refusal:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        return Refusal("bad_certificate", f"certificate is malformed (not PEM or DER X.509): {exc}")


def _refusal(rejection: Rejection | None) -> Refusal | None:
    """The core's verdict as the registry's refusal, its code first."""
    return None if rejection is None else Refusal("bad_certificate", str(rejection))


def _accepted(cert: x509.Certificate) -> ParsedCertificate:
    der = cert.public_bytes(Encoding.DER)
    return ParsedCertificate(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
    )


def parse_signing_certificate(
    data: bytes,
    *,
    now: datetime,
    trust: TrustStore | None = None,
    policy: SignaturePolicy | None = None,
) -> ParsedCertificate | Refusal:
    """Accept a signing certificate (PEM or DER) that verification at ``now`` would accept with
    ``trust`` and ``policy`` (no chain judged when ``trust`` is None), whose key may sign.
    Further certificates in a PEM file are intermediates for the chain, not registered."""
    cert = _load_certificate(data)
    if isinstance(cert, Refusal):
        return cert
    # A PEM file may carry the issuing CAs after the certificate, as an FS does: they help the
    # chain (never as anchors) and are not registered.
    blocks = [der for label, der in pem_blocks(data) if label == "CERTIFICATE"]
    refusal = _refusal(
        signing_certificate_rejection(
            cert.public_bytes(Encoding.DER),
            carried=blocks[1:],
            trust=trust,
            policy=policy or SignaturePolicy(),
            now=now,
        )
    )
    if refusal is not None and refusal.message.startswith(f"{int(Code.CERTIFICATE_UNTRUSTED)}:"):
        return Refusal(
            refusal.reason,
            f"{refusal.message}; put the issuing CA certificates after it in the PEM file, or "
            "ask the gateway operator to trust its CA",
        )
    if refusal is not None:
        return refusal
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        return Refusal(
            "bad_certificate",
            "certificate is not for signing: its keyUsage has neither digitalSignature nor "
            "nonRepudiation",
        )
    return _accepted(cert)


def parse_client_certificate(
    data: bytes, *, now: datetime, policy: SignaturePolicy | None = None
) -> ParsedCertificate | Refusal:
    """Accept a web-service client certificate (PEM or DER) valid at ``now`` with a key strong
    enough for ``policy`` (self-signed is fine: it is its own anchor)."""
    cert = _load_certificate(data)
    if isinstance(cert, Refusal):
        return cert
    refusal = _refusal(
        client_certificate_rejection(
            cert.public_bytes(Encoding.DER), policy=policy or SignaturePolicy(), now=now
        )
    )
    return refusal if refusal is not None else _accepted(cert)


def certificate_sha256(der: bytes) -> str:
    """Hex SHA-256 of DER bytes, the registry's certificate fingerprint."""
    return hashlib.sha256(der).hexdigest()


def password_credential(stored_hash: str | None) -> str:
    """The credential id of an FTP password: a digest of its stored hash (it changes with it)."""
    return hashlib.sha256((stored_hash or "").encode()).hexdigest()
