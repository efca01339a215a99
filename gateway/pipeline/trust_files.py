"""The trust store's files: read them, and notice when an operator changes them.

CRLs expire (their nextUpdate passes) and CAs are added or retired while the gateway runs. The
operator replaces the files in ``[signature] trust_dir``; the pipeline's sweep sees the change
(names, sizes and modification times of the folder's files) and, once the folder has stayed the
same for one more sweep (a file being copied is not read half-way), loads the new store: no
restart needed. Sets already being checked finish with the store they started with.

A file that holds no certificate or CRL is left out and logged (``trust.file_ignored``). A
folder that cannot be read keeps the store in use and logs ``trust.reload_failed`` once per
change; the next change is tried again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import structlog

from gateway.core.signature import TrustStore
from gateway.core.trust import TrustStoreError
from gateway.registry.trust import read_trust_files, trust_file_paths

log = structlog.get_logger("gateway.pipeline")

Snapshot = tuple[tuple[str, int, int], ...]


class TrustFiles:
    """The trust folders (missing ones are skipped) and the state they were last read in."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = list(folders)
        self._seen: Snapshot | None = None
        self._settling: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        """(path, size, mtime in ns) of every file, sorted (blocking)."""
        entries = []
        for path in trust_file_paths(self.folders):
            stat = path.stat()
            entries.append((str(path), stat.st_size, stat.st_mtime_ns))
        return tuple(entries)

    def load(self) -> TrustStore:
        """Read every certificate and CRL file (blocking); remembers what it read."""
        seen = self.snapshot()
        certs, crls, ignored = read_trust_files(Path(name) for name, _, _ in seen)
        for path in ignored:
            log.warning("trust.file_ignored", file=str(path), reason="no certificate or CRL")
        store = TrustStore.from_blobs(certs, crls)
        self._seen = seen
        return store

    async def reload_if_changed(self) -> TrustStore | None:
        """The new store when the files changed since they were last read, else None."""
        seen = await asyncio.to_thread(self.snapshot)
        if seen == self._seen:
            self._settling = None
            return None
        if seen != self._settling:  # changed since the last look: wait until it stays put
            self._settling = seen
            return None
        try:
            store = await asyncio.to_thread(self.load)
        except (OSError, TrustStoreError, ValueError) as exc:
            self._seen = seen  # logged once; the next change is tried again
            log.error("trust.reload_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            return None
        log.info("trust.reloaded", files=len(seen))
        return store
