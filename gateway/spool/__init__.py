"""Durable, crash-safe storage of uploads: the contract between the channels and the pipeline.

On disk, under ``state_dir`` (:class:`SpoolLayout`):

- ``spool/<sender>/<IN folder>/<name>``: committed uploads, complete and fsync'ed;
- ``spool/.tmp/``: uploads in progress (same filesystem, so the commit link is atomic);
- ``out/<sender>/<OUT folder>/<name>``: return files, listed (a chunk at a time with
  :class:`ReturnScan`, or a page by name with :func:`page_return_files`: never the whole folder
  in memory), read and deleted through OUT* (written with :func:`place_return_file`).

In the registry database (``gateway.spool.tables``, migration ``0002_spool``):

- ``uploads`` (id, sender, folder, name, size, sha256 hex, arrived_at, session_id, channel,
  state): one row per committed file, ``state = "pending"`` until the pipeline takes it (the
  pipeline adds states). A sender's pending bytes (the 920 quota) are the sum of its pending rows.
- ``upload_refusals`` (id, sender, folder, name, code, reason, at, session_id, answered_at):
  one row per refused upload; the pipeline answers it with a negative ACRF and sets answered_at.

A file is visible (listed in IN*, present in ``spool/``) only once its row is committed; after a
crash it is either fully there and recorded, or absent (:meth:`Spool.recover` at start-up).
:class:`Spool` takes ``on_stored: Callable[[StoredUpload], Awaitable[None]] | None``, awaited
after each commit, so the pipeline reacts to a GO or TD without polling.

Use: ``writer = await spool.begin(UploadTarget(...))`` (a Rejection for 920/924), then
``await writer.write(offset, data)`` (sequential; a Rejection for 184/920/923), then
``await spool.store(writer)`` or ``writer.abort()``; ``await spool.recover()`` once at start-up;
``spool.close()`` at shut-down (it owns a writer thread, and its SQLite connection when the
registry is SQLite).
"""

from gateway.spool.layout import SpoolLayout
from gateway.spool.limits import SpoolLimits
from gateway.spool.out import ReturnFile, ReturnScan, page_return_files, place_return_file
from gateway.spool.store import OnStored, PendingFile, Recovery, Spool, StoredUpload
from gateway.spool.writer import FinishedUpload, UploadTarget, UploadWriter

__all__ = [
    "FinishedUpload",
    "OnStored",
    "PendingFile",
    "Recovery",
    "ReturnFile",
    "ReturnScan",
    "Spool",
    "SpoolLayout",
    "SpoolLimits",
    "StoredUpload",
    "UploadTarget",
    "UploadWriter",
    "page_return_files",
    "place_return_file",
]
