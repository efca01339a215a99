"""Where the registry learns which CAs are trusted, to judge a signing certificate at upload.

One job: hand the registry the trust store the pipeline verifies with, when a signing
certificate is registered. Registration is rare, so :class:`TrustFolders` reads the folders
again on every call: an operator's new CA or CRL counts at once, with no reload to wait for.

Rules:
- The source is injected (``Registry(trust=...)``, ``build_registry(trust=...)``), never found
  through settings or globals: the daemon passes the folders its pipeline reads (the demo's
  included), the command line the configured ``[signature] trust_dir``.
- No source (``None``) means the registry knows no trust store: the chain is then not judged at
  registration (verification still judges it); key and validity always are.
- A folder that is missing holds nothing (as for the pipeline); a file in it that holds no
  certificate or CRL is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from gateway.core.trust import SignaturePolicy, TrustStore, sort_blobs
from gateway.ops.settings import SignatureSettings

__all__ = [
    "FixedTrust",
    "TrustFolders",
    "TrustSource",
    "read_trust_files",
    "signature_policy",
    "trust_file_paths",
]


def signature_policy(section: SignatureSettings) -> SignaturePolicy:
    """The signature policy of ``[signature]``: the pipeline verifies with it and the registry
    judges registered certificates with it."""
    return SignaturePolicy(
        allow_sha1=section.allow_sha1,
        min_rsa_bits=section.min_rsa_bits,
        require_crl=section.require_crl,
    )


def trust_file_paths(folders: Iterable[Path]) -> list[Path]:
    """The files of the trust folders, each folder sorted by name; missing folders skipped."""
    return [
        path
        for folder in folders
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.is_file()
    ]


def read_trust_files(paths: Iterable[Path]) -> tuple[list[bytes], list[bytes], list[Path]]:
    """(certificate DERs, CRL DERs, files holding neither) of ``paths`` (blocking). The one
    reader of trust files: the pipeline's :class:`~gateway.pipeline.trust_files.TrustFiles`
    uses it too."""
    certs: list[bytes] = []
    crls: list[bytes] = []
    ignored: list[Path] = []
    for path in paths:
        found_certs, found_crls = sort_blobs([path.read_bytes()])
        if not found_certs and not found_crls:
            ignored.append(path)
        certs += found_certs
        crls += found_crls
    return certs, crls, ignored


class TrustSource(Protocol):
    """Gives the trust store in force now."""

    async def current(self) -> TrustStore:
        """The trust store to judge a certificate with."""


class FixedTrust:
    """A trust store built once (tests, or a caller that already holds the pipeline's store)."""

    def __init__(self, store: TrustStore) -> None:
        self.store = store

    async def current(self) -> TrustStore:
        """The store given at construction."""
        return self.store


class TrustFolders:
    """The certificates and CRLs of trust folders, read at each call (off the event loop)."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = tuple(folders)

    def load(self) -> TrustStore:
        """Read every file of the folders (blocking)."""
        certs, crls, _ = read_trust_files(trust_file_paths(self.folders))
        return TrustStore.from_blobs(certs, crls)

    async def current(self) -> TrustStore:
        """The folders' store as they are now."""
        return await asyncio.to_thread(self.load)
