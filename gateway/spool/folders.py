"""The folder service: every file operation a channel offers, decided once for all protocols.

SFTP, FTP and HTTPS only translate their protocol into these calls and the answers into their
replies (STYLE.md: "a second and third channel must add no file system call"). A channel opens
one :class:`FolderSession` per login (:meth:`Folders.open_session`) and passes it the client's
raw path; the session:

- canonicalises the path and checks the operation on the canonical path
  (:mod:`gateway.core.folders`: 922, 923), so the same input gives the same answer everywhere;
- checks an upload's name when it is opened (:func:`gateway.core.names.check_upload_name`,
  against the sender's number, applications and folder) and records every refused upload for a
  negative ACRF (the pipeline answers ``upload_refusals``), at most ``MAX_RECORDED_REFUSALS``
  per session;
- keeps uploads under a client temporary name (``NAME.filepart``...) parked, complete and
  fsync'ed but invisible, until :meth:`FolderSession.rename_temp` commits them;
- runs every blocking file system call in the spool's threads, never on the event loop;
- answers with a value: an :class:`Entry`, a :class:`Listing`, a :class:`Page`, an
  :class:`Upload`, a :class:`Download`, None, or a :class:`~gateway.core.codes.Rejection` whose
  code the channel maps to its own reply (927 when a file does not exist or is not the
  sender's).

Listings are never whole in memory (SECURITY.md 14: 100,000 files in a folder must list in
bounded memory). A :class:`Listing` is read ``LIST_CHUNK`` entries at a time (OUT*: one thread
hop per chunk of ``os.scandir``; IN*: one keyset query by name per chunk) in no promised order,
and SFTP and FTP send each chunk before reading the next; there is no cap on its length (a
sender must see all its files). :meth:`FolderSession.page` answers the web channel's pages:
sorted by name, after a cursor name, at most ``limit`` entries, in memory bounded by ``limit``.

Bounds per session (SECURITY.md 14, 21): ``MAX_OPEN_FILES`` open files, ``[limits]
session_max_open_uploads`` uploads in progress, ``MAX_PARKED`` parked uploads; the sender's
quota is reserved as bytes are written, across sessions (:mod:`gateway.spool.quota`). Counters
(``stored``, ``refused``, ``bytes_stored``) feed the channel's ``session.closed`` event; stored
uploads and bytes are also counted in the metrics, per channel.

Local faults are answered here, once for every channel (SECURITY.md 22): the spool short of
space (its floor at open, or ENOSPC while writing) is 929, logged as ``spool.short_of_space``
and counted (``gateway_uploads_short_of_space_total``); any other fault of an upload's write,
close or rename is 999 "internal error, ticket T", logged once with T and the traceback
(``upload.failed``). Neither is the sender's doing, so neither is recorded for a negative ACRF.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from gateway.core.codes import LOCAL_CODES, Code, Rejection, internal_error, reject
from gateway.core.folders import (
    ROOT_FOLDERS,
    Folder,
    Operation,
    VPath,
    canonicalise,
    check_rename,
    final_name,
    permit,
)
from gateway.core.names import check_upload_name, default_parted
from gateway.core.types import SenderNumber
from gateway.ops.faults import log_fault
from gateway.ops.metrics import Metrics
from gateway.ops.settings import DEFAULT_TIMEZONE, GatewaySettings
from gateway.registry.types import Principal
from gateway.spool.limits import check_open_uploads
from gateway.spool.out import ReturnFile, ReturnScan, page_return_files
from gateway.spool.store import PendingFile, Spool, StoredUpload
from gateway.spool.writer import FinishedUpload, UploadTarget, UploadWriter

# Per-session bounds (SECURITY.md 14): open files hold descriptors, parked temporary uploads
# hold disk space outside the pending-bytes quota until they are renamed.
MAX_OPEN_FILES = 32
MAX_PARKED = 32
# Listings (SECURITY.md 14): a listing is read LIST_CHUNK entries at a time (one thread hop or
# one keyset query per chunk), so a folder of any size is listed in bounded memory; a session
# holds at most MAX_OPEN_LISTINGS (an SFTP client may open directory handles without end, and
# each holds a directory open and a chunk).
LIST_CHUNK = 1000
MAX_OPEN_LISTINGS = 8
# Hex digits of an upload's SHA-256 in its upload.stored line.
SHA256_LOGGED = 16
# Refusals recorded per session (each becomes a negative ACRF); beyond, they are only logged.
MAX_RECORDED_REFUSALS = 100


def today_in(zone: tzinfo) -> Callable[[], date]:
    """A clock of today's date on ``zone``'s calendar, read at each call."""
    return lambda: datetime.now(zone).date()


@dataclass(frozen=True, slots=True, kw_only=True)
class NamePolicy:
    """What the name check needs besides the name: limits, the applications whose names carry
    parts (the service catalogue's flags; the pipeline reads names with the same rule), and
    today's date on the gateway's calendar (``pipeline.timezone``, as the pipeline checks it)."""

    max_age_days: int = 30
    max_parts: int = 9
    parted: Callable[[str], bool] = default_parted
    today: Callable[[], date] = field(default_factory=lambda: today_in(DEFAULT_TIMEZONE))

    @classmethod
    def from_settings(
        cls, settings: GatewaySettings, *, parted: Callable[[str], bool] = default_parted
    ) -> NamePolicy:
        """The policy of ``[pipeline]`` and ``[limits]``; ``parted`` is the service catalogue's
        parts rule (the pipeline's)."""
        return cls(
            max_age_days=settings.pipeline.max_file_age.days,
            max_parts=settings.limits.max_parts,
            parted=parted,
            today=today_in(settings.pipeline.timezone),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """What a listing or a stat shows of the root, a folder or a file."""

    name: str
    is_folder: bool
    size: int = 0
    mtime: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """A page of a listing, sorted by name, and the name the next page starts after (None on
    the last page)."""

    entries: list[Entry]
    next_after: str | None


def _page(entries: list[Entry], limit: int) -> Page:
    """The first ``limit`` of ``entries`` by name (more than ``limit`` means a next page)."""
    entries.sort(key=lambda e: e.name)
    page = entries[:limit]
    more = len(entries) > limit and bool(page)
    return Page(entries=page, next_after=page[-1].name if more else None)


def _pending_entry(pending: PendingFile) -> Entry:
    return Entry(
        name=pending.name,
        is_folder=False,
        size=pending.size,
        mtime=pending.arrived_at.timestamp(),
    )


def _return_entry(file: ReturnFile) -> Entry:
    return Entry(name=file.name, is_folder=False, size=file.size, mtime=file.mtime)


def _no_such_file(path: VPath) -> Rejection:
    return reject(Code.NO_SUCH_FILE, f"no such file: {path}")


def _folder_entry(name: str) -> Entry:
    return Entry(name=name, is_folder=True)


def _stat_regular(path: str | Path) -> os.stat_result | None:
    """``lstat`` of a regular file, or None (missing, or anything else: never followed)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _open_regular(path: Path) -> tuple[int, os.stat_result] | None:
    """A read-only descriptor of a regular file (links never followed) and its stat, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info


def _remove_regular(path: Path) -> bool:
    """Remove a regular file; False when there is none."""
    if _stat_regular(path) is None:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class Folders:
    """The folder service of one spool: made once, it opens a :class:`FolderSession` per login."""

    def __init__(
        self, *, spool: Spool, names: NamePolicy | None = None, metrics: Metrics | None = None
    ) -> None:
        self.spool = spool
        self.names = names or NamePolicy()
        self.metrics = metrics
        self.sessions_open = 0
        """Sessions opened and not ended yet, over every channel: with one, its small uploads
        commit without a thread hop (:meth:`gateway.spool.Spool.store`)."""

    def open_session(
        self,
        *,
        principal: Principal,
        sender: SenderNumber,
        session_id: str,
        channel: str,
        log: Any,
    ) -> FolderSession:
        """The folders of ``sender`` as seen by one login over ``channel``, until
        :meth:`FolderSession.end`."""
        self.sessions_open += 1
        return FolderSession(
            folders=self,
            principal=principal,
            sender=sender,
            session_id=session_id,
            channel=channel,
            log=log,
        )


class FolderSession:
    """One login's folders: every operation takes a raw client path and answers with a value."""

    def __init__(
        self,
        *,
        folders: Folders,
        principal: Principal,
        sender: SenderNumber,
        session_id: str,
        channel: str,
        log: Any,
    ) -> None:
        self._folders = folders
        self._spool = folders.spool
        self.principal = principal
        self.sender = sender
        self.id = session_id
        self.channel = channel
        self.log = log
        self.parked: dict[tuple[Folder, str], FinishedUpload] = {}
        self._last: tuple[str | bytes, VPath] | None = None
        """The last raw path canonicalised and its result: a client stats each target, then
        opens it (canonicalise is pure, so the second parse is skipped)."""
        self.uploads: set[Upload] = set()
        self.open_files = 0
        self.open_listings = 0
        self.working = 0
        """Requests that commit or remove something, not answered yet (a drain waits)."""
        self.draining = False
        """The gateway is stopping: transfers in progress finish, no new file is opened."""
        self.stored = 0
        self.refused = 0
        self.bytes_stored = 0
        self._ended = False
        self._stored_counters: dict[str, tuple[Counter, Counter]] = {}
        """The session's stored-upload metric children per environment (labels looked up once:
        a prometheus ``labels()`` call takes a lock and validates per call)."""

    @property
    def busy(self) -> bool:
        """A transfer is in progress: a file is open, a commit or removal is not answered yet,
        or an upload waits for the rename from its client temporary name, which clients send
        right after the close."""
        return self.open_files > 0 or self.working > 0 or bool(self.parked)

    # -- paths -----------------------------------------------------------------------------------

    def resolve(
        self, raw: str | bytes | VPath, operation: Operation | None = None
    ) -> VPath | Rejection:
        """The canonical path of ``raw``, checked for ``operation`` when one is given. A
        :class:`VPath` (a channel that resolved the path already) is not parsed again."""
        last = self._last
        if isinstance(raw, VPath):
            result: VPath | Rejection = raw
        elif last is not None and type(raw) is type(last[0]) and raw == last[0]:
            result = last[1]
        else:
            result = canonicalise(raw)
            if isinstance(result, VPath):
                self._last = (raw, result)
        if isinstance(result, Rejection):
            self.log.info("path.refused", code=int(result.code), reason=result.reason)
            return result
        if operation is not None:
            problem = permit(operation, result)
            if problem is not None:
                return problem
        return result

    def _answering(self) -> _Answering:
        return _Answering(self)

    # -- reading ---------------------------------------------------------------------------------

    async def stat(self, raw: str | bytes) -> Entry | Rejection:
        """The root, a folder, an own pending or parked upload, or a return file."""
        vpath = self.resolve(raw, Operation.STAT)
        if isinstance(vpath, Rejection):
            return vpath
        folder, name = vpath.folder, vpath.name
        if folder is None:
            return _folder_entry("/")
        if name is None:
            return _folder_entry(folder.value)
        if folder.inbound:
            parked = self.parked.get((folder, name))
            if parked is not None:
                return Entry(name=name, is_folder=False, size=parked.size, mtime=time.time())
            # From the committed file, not the database: clients stat every target before a
            # put, and the listing (from ``uploads``) stays the authority on what is pending.
            real: str | Path = self._spool.committed_path(self.sender, folder, name)
        else:
            real = self._spool.layout.out_file(self.sender, folder, name)
        # One lstat inline, as Spool.begin's check of the name: a thread hop costs more (two
        # wake-ups and a GIL hand-off) than the call, which the dentry cache answers.
        info = _stat_regular(real)
        if info is None:
            return _no_such_file(vpath)
        return Entry(name=name, is_folder=False, size=info.st_size, mtime=info.st_mtime)

    def listing(self, raw: str | bytes) -> Listing | Rejection:
        """Open a listing of the root (the six folders), an IN* folder (own parked, then
        pending uploads) or an OUT* folder (return files), read a chunk at a time; the channel
        closes it. At most ``MAX_OPEN_LISTINGS`` are open at once in a session."""
        vpath = self.resolve(raw, Operation.LIST)
        if isinstance(vpath, Rejection):
            return vpath
        if self.open_listings >= MAX_OPEN_LISTINGS:
            return reject(
                Code.OPERATION_NOT_PERMITTED, f"at most {MAX_OPEN_LISTINGS} listings open at once"
            )
        self.open_listings += 1
        return Listing(self, vpath.folder)  # permit() allows LIST on the root and folders only

    async def page(self, raw: str | bytes, *, after: str | None, limit: int) -> Page | Rejection:
        """The first ``limit`` entries by name (code point order) after the name ``after``, and
        the cursor name of the next page: a keyset page in memory bounded by ``limit``."""
        vpath = self.resolve(raw, Operation.LIST)
        if isinstance(vpath, Rejection):
            return vpath
        folder = vpath.folder  # permit() allows LIST on the root and folders only

        def later(name: str) -> bool:
            return after is None or name > after

        if folder is None:
            folders = [_folder_entry(f.value) for f in ROOT_FOLDERS if later(f.value)]
            return _page(folders, limit)
        if folder.inbound:
            pending = await self._spool.pending_files(
                self.sender, folder, after=after, limit=limit + 1
            )
            entries = [e for e in self._parked_entries(folder) if later(e.name)]
            entries += [_pending_entry(p) for p in pending]
            return _page(entries, limit)
        layout, sender = self._spool.layout, self.sender
        files, next_after = await self._spool.run(
            functools.partial(page_return_files, layout, sender, folder, after=after, limit=limit)
        )
        return Page(entries=[_return_entry(f) for f in files], next_after=next_after)

    def _parked_entries(self, folder: Folder) -> list[Entry]:
        now = time.time()
        return [
            Entry(name=name, is_folder=False, size=done.size, mtime=now)
            for (where, name), done in self.parked.items()
            if where is folder
        ]

    async def open_return(self, raw: str | bytes) -> Download | Rejection:
        """Open a return file of an OUT* folder for reading."""
        problem = self._can_open()
        if problem is not None:
            return problem
        vpath = self.resolve(raw, Operation.READ)
        if isinstance(vpath, Rejection):
            return vpath
        if vpath.folder is None or vpath.name is None:  # permit() allows READ on files only
            return reject(Code.OPERATION_NOT_PERMITTED)
        path = self._spool.layout.out_file(self.sender, vpath.folder, vpath.name)
        opened = await self._spool.run(_open_regular, path)
        if opened is None:
            return _no_such_file(vpath)
        fd, info = opened
        self.open_files += 1
        return Download(self, fd=fd, name=vpath.name, size=info.st_size, mtime=info.st_mtime)

    # -- uploads ---------------------------------------------------------------------------------

    def _can_open(self) -> Rejection | None:
        if self.draining:
            # Not the sender's doing: refused with its code, but not recorded for an ACRF.
            return reject(Code.GATEWAY_STOPPING, "the gateway is stopping")
        if self.open_files >= MAX_OPEN_FILES:
            return reject(Code.OPERATION_NOT_PERMITTED, f"at most {MAX_OPEN_FILES} open files")
        return None

    def fault(self, event: str, **context: Any) -> Rejection:
        """999 for the exception being handled, logged once with its ticket and traceback."""
        return internal_error(log_fault(self.log, event, **context))

    async def refuse_upload(
        self, folder: Folder, name: str, rejection: Rejection, *, cause: str = "disk_full"
    ) -> Rejection:
        """Log and record a refused upload (for its negative ACRF); returns ``rejection``.
        The gateway's own conditions (926, 929, 999) are logged and counted, never recorded;
        ``cause`` says what made a 929: ``floor`` (at open) or ``disk_full`` (ENOSPC)."""
        self.refused += 1
        code = rejection.code
        metrics = self._folders.metrics
        if metrics is not None:
            metrics.uploads_refused_total.labels(channel=self.channel, code=str(int(code))).inc()
        if code is Code.SHORT_OF_SPACE:
            space = self._spool.free_space()
            self.log.warning(
                "spool.short_of_space",
                folder=folder.value,
                name=name,
                cause=cause,
                free_bytes=space.free,
                floor_bytes=self._spool.limits.floor(space.total),
            )
            if metrics is not None:
                metrics.uploads_short_of_space_total.labels(channel=self.channel, cause=cause).inc()
            return rejection
        self.log.info("upload.refused", folder=folder.value, name=name, code=int(code))
        if code in LOCAL_CODES:
            return rejection
        if self.refused <= MAX_RECORDED_REFUSALS:
            await self._spool.record_refusal(
                sender=self.sender,
                folder=folder,
                name=name,
                rejection=rejection,
                session_id=self.id,
            )
        return rejection

    async def open_upload(self, raw: str | bytes | VPath) -> Upload | Rejection:
        """Open a new upload in an IN* folder: its name (a temporary suffix stripped) is
        checked now, and a refusal is recorded for a negative ACRF. ``raw`` may be the
        :class:`VPath` the channel resolved already (parsed once per operation)."""
        problem = self._can_open()
        if problem is not None:
            return problem
        vpath = self.resolve(raw, Operation.CREATE)
        if isinstance(vpath, Rejection):
            return vpath
        folder, name = vpath.folder, vpath.name
        if folder is None or name is None:  # permit() allows CREATE on files only
            return reject(Code.OPERATION_NOT_PERMITTED)
        problem = check_open_uploads(self._spool.limits, open_uploads=len(self.uploads))
        if problem is not None:
            return problem
        target_name = final_name(name)
        names = self._folders.names
        checked = check_upload_name(
            target_name,
            folder=folder.value,
            sender=self.sender,
            applications=self.principal.applications,
            today=names.today(),
            max_age_days=names.max_age_days,
            max_parts=names.max_parts,
            parted=names.parted,
        )
        if isinstance(checked, Rejection):
            return await self.refuse_upload(folder, target_name, checked)
        temp_name = name if target_name != name else None
        if temp_name is not None:
            if len(self.parked) >= MAX_PARKED:
                return reject(
                    Code.OPERATION_NOT_PERMITTED,
                    f"at most {MAX_PARKED} temporary uploads; rename them to their names first",
                )
            if (folder, temp_name) in self.parked:
                exists = reject(Code.FILE_EXISTS, f"{temp_name} is already there")
                return await self.refuse_upload(folder, target_name, exists)
        target = UploadTarget(
            sender=self.sender,
            folder=folder,
            name=target_name,
            session_id=self.id,
            channel=self.channel,
        )
        writer = await self._spool.begin(target)
        if isinstance(writer, Rejection):
            return await self.refuse_upload(folder, target_name, writer, cause="floor")
        upload = Upload(self, writer=writer, folder=folder, temp_name=temp_name)
        self.uploads.add(upload)
        self.open_files += 1
        return upload

    def stored_upload(self, stored: StoredUpload) -> None:
        """Count and log a committed upload."""
        self.stored += 1
        self.bytes_stored += stored.size
        metrics = self._folders.metrics
        if metrics is not None:
            env = stored.folder.environment.value
            counters = self._stored_counters.get(env)
            if counters is None:
                counters = self._stored_counters[env] = (
                    metrics.uploads_stored_total.labels(channel=self.channel, env=env),
                    metrics.upload_bytes_total.labels(channel=self.channel),
                )
            counters[0].inc()
            counters[1].inc(stored.size)
        # The one line per stored upload (issue 14: cheaper logs): what an operator asked
        # "where is my file?" needs, with the session's bound context (its id, the sender).
        # The digest is cut to 64 bits, enough to tell files apart; the full one is recorded
        # in the uploads table and the set's envelope. Written once the current task step has
        # ended, so after the channel has sent its answer: rendering and writing the line took
        # ~80 us when this was written and 17 us since the one-pass redaction (2026-12-07, to
        # /dev/null), which a client sending files one by one would otherwise wait for.
        asyncio.get_running_loop().call_soon(
            functools.partial(
                self.log.info,
                "upload.stored",
                channel=self.channel,
                folder=stored.folder.value,
                name=stored.name,
                bytes=stored.size,
                sha256=stored.sha256[:SHA256_LOGGED],
                duration=round(stored.duration_seconds, 4),
            )
        )

    async def rename_temp(
        self, raw_source: str | bytes, raw_target: str | bytes
    ) -> Rejection | None:
        """Commit a parked upload: only ``NAME.<temp suffix>`` to ``NAME`` in one IN* folder."""
        with self._answering():
            source = self.resolve(raw_source)
            if isinstance(source, Rejection):
                return source
            target = self.resolve(raw_target)
            if isinstance(target, Rejection):
                return target
            problem = check_rename(source, target)
            if problem is not None:
                return problem
            if source.folder is None or source.name is None or target.name is None:
                return reject(Code.OPERATION_NOT_PERMITTED)  # check_rename allows files only
            done = self.parked.pop((source.folder, source.name), None)
            if done is None:
                return _no_such_file(source)
            try:
                stored = await self._spool.commit(done, name=target.name)
            except Exception:
                return self.fault("upload.failed", folder=source.folder.value, name=target.name)
            if isinstance(stored, Rejection):
                return await self.refuse_upload(source.folder, target.name, stored)
            self.stored_upload(stored)
            return None

    async def remove(self, raw: str | bytes) -> Rejection | None:
        """Remove an own pending or parked upload (IN*) or a return file (OUT*)."""
        with self._answering():
            vpath = self.resolve(raw, Operation.REMOVE)
            if isinstance(vpath, Rejection):
                return vpath
            folder, name = vpath.folder, vpath.name
            if folder is None or name is None:  # permit() allows REMOVE on files only
                return reject(Code.OPERATION_NOT_PERMITTED)
            spool = self._spool
            if folder.inbound:
                parked = self.parked.pop((folder, name), None)
                if parked is not None:
                    spool.discard(parked)  # one unlink, and its quota reservation back
                elif not await spool.remove_pending(self.sender, folder, name):
                    return _no_such_file(vpath)
            else:
                path = spool.layout.out_file(self.sender, folder, name)
                if not await spool.run(_remove_regular, path):
                    return _no_such_file(vpath)
            self.log.info("file.removed", folder=folder.value, name=name)
            return None

    def end(self) -> tuple[str, ...]:
        """The connection is gone: drop whatever was not committed (nothing becomes visible).
        Returns the temporary names abandoned. Blocking removals are few and small (parked
        uploads are bounded by ``MAX_PARKED``), so this runs inline at the end of a session.
        A second call finds nothing left to drop."""
        if not self._ended:
            self._ended = True
            self._folders.sessions_open -= 1
        for upload in list(self.uploads):
            upload.abort()
        self.uploads.clear()
        abandoned = tuple(name for _, name in self.parked)
        for done in self.parked.values():
            self._spool.discard(done)
        if abandoned:
            self.log.info("upload.abandoned", names=list(abandoned))
        self.parked.clear()
        return abandoned


class Listing:
    """An open listing of the root, an IN* or an OUT* folder, read with :meth:`read` a chunk
    of at most ``LIST_CHUNK`` entries at a time, and closed by the channel with :meth:`close`.

    Order: the six folders in their fixed order; an IN* folder's parked uploads, then its
    pending uploads by name (keyset queries); an OUT* folder's return files in the directory's
    order (:class:`~gateway.spool.out.ReturnScan`), which is no order at all. SFTP and FTP
    clients sort what they show; the web channel's sorted pages are :meth:`FolderSession.page`.
    """

    __slots__ = ("_after", "_closed", "_done", "_folder", "_parked", "_scan", "_session")

    def __init__(self, session: FolderSession, folder: Folder | None) -> None:
        self._session = session
        self._folder = folder
        self._scan: ReturnScan | None = None
        if folder is not None and not folder.inbound:
            layout = session._spool.layout
            self._scan = ReturnScan(layout.out_folder(session.sender, folder))
        self._parked = folder is not None and folder.inbound
        """The parked uploads are still to be read (an IN* folder's first chunk)."""
        self._after: str | None = None
        self._done = False
        self._closed = False

    async def read(self) -> list[Entry]:
        """The next chunk of entries; an empty list at the end."""
        folder = self._folder
        if self._done:
            return []
        if folder is None:
            self._done = True
            return [_folder_entry(f.value) for f in ROOT_FOLDERS]
        session = self._session
        spool = session._spool
        if self._scan is not None:
            files = await spool.run(self._scan.read, LIST_CHUNK)
            self._done = not files
            return [_return_entry(f) for f in files]
        if self._parked:
            self._parked = False
            parked = session._parked_entries(folder)
            if parked:
                return parked
        pending = await spool.pending_files(
            session.sender, folder, after=self._after, limit=LIST_CHUNK
        )
        self._done = len(pending) < LIST_CHUNK
        if pending:
            self._after = pending[-1].name
        return [_pending_entry(p) for p in pending]

    def close(self) -> None:
        """Let the folder go (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._done = True
        self._session.open_listings -= 1
        if self._scan is not None:
            self._scan.close()


class _Answering:
    """A request that commits or removes something, counted in ``working`` while it runs (a
    drain waits for it). A plain context manager: an upload's close enters one, and a
    generator-based one cost a generator and three calls per close."""

    __slots__ = ("_session",)

    def __init__(self, session: FolderSession) -> None:
        self._session = session

    def __enter__(self) -> None:
        self._session.working += 1

    def __exit__(self, *exc: object) -> None:
        self._session.working -= 1


class Upload:
    """One upload in progress: sequential writes, then :meth:`close` (commit) or :meth:`abort`."""

    __slots__ = (
        "_done",
        "_refusal_recorded",
        "_session",
        "folder",
        "stored",
        "temp_name",
        "writer",
    )

    def __init__(
        self,
        session: FolderSession,
        *,
        writer: UploadWriter,
        folder: Folder,
        temp_name: str | None,
    ) -> None:
        self._session = session
        self.writer = writer
        self.folder = folder
        self.temp_name = temp_name
        self._refusal_recorded = False
        self._done = False
        self.stored: StoredUpload | None = None
        """What :meth:`close` committed (name, size, SHA-256), for a channel that answers with
        it (the web channel's 201)."""

    @property
    def name(self) -> str:
        """The name the upload will count under (a temporary suffix stripped)."""
        return self.writer.target.name

    @property
    def size(self) -> int:
        """Bytes received so far."""
        return self.writer.size

    async def write(self, data: bytes | memoryview, offset: int | None = None) -> Rejection | None:
        """Append ``data`` (at ``offset``, which must be the current size, when given)."""
        writer = self.writer
        try:
            problem = await writer.write(writer.size if offset is None else offset, data)
        except Exception:
            problem = writer.fail(self._session.fault("upload.failed", name=self.name))
            self._refusal_recorded = True  # logged with its ticket; 999 is never recorded
        if problem is not None and not self._refusal_recorded:
            self._refusal_recorded = True
            await self._session.refuse_upload(self.folder, self.name, problem)
        return problem

    def _release(self) -> bool:
        if self._done:
            return False
        self._done = True
        self._session.uploads.discard(self)
        self._session.open_files -= 1
        return True

    def abort(self) -> None:
        """Drop the upload (the client vanished or the transfer failed): nothing is visible."""
        if self._release():
            self.writer.abort()
            self._session.log.info("upload.aborted", name=self.name, bytes=self.size)

    async def close(self) -> Rejection | None:
        """Commit the upload, or park it until the rename from its temporary name."""
        if not self._release():
            return None
        session = self._session
        with session._answering():
            writer = self.writer
            if writer.failed is not None:
                writer.abort()
                return writer.failed
            try:
                if self.temp_name is not None:
                    done = await writer.finish()
                    if isinstance(done, Rejection):
                        return await self._refused_at_close(done)
                    session.parked[(self.folder, self.temp_name)] = done
                    return None
                lone = session._folders.sessions_open == 1
                stored = await session._spool.store(writer, lone=lone)
            except Exception:
                writer.abort()
                return session.fault("upload.failed", folder=self.folder.value, name=self.name)
            if isinstance(stored, Rejection):
                return await session.refuse_upload(self.folder, self.name, stored)
            session.stored_upload(stored)
            self.stored = stored
            return None

    async def _refused_at_close(self, problem: Rejection) -> Rejection:
        if problem.code is Code.SHORT_OF_SPACE:
            return await self._session.refuse_upload(self.folder, self.name, problem)
        return problem


class Download:
    """A return file open for reading; reads run in the spool's threads."""

    __slots__ = ("_closed", "_fd", "_session", "mtime", "name", "size")

    def __init__(
        self, session: FolderSession, *, fd: int, name: str, size: int, mtime: float
    ) -> None:
        self._session = session
        self._fd = fd
        self._closed = False
        self.name = name
        self.size = size
        self.mtime = mtime

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (empty at the end)."""
        if offset < 0 or size < 0 or offset >= self.size:
            return b""
        return await self._session._spool.run(os.pread, self._fd, min(size, 1 << 24), offset)

    def close(self) -> None:
        """Release the descriptor (once)."""
        if not self._closed:
            self._closed = True
            self._session.open_files -= 1
            os.close(self._fd)
