"""Intake: turn a committed GO or TD (or a set whose GO never came) into a set row.

The set's files are hard-linked from the spool into ``work/<ticket>/`` *before* the row is
committed and unlinked from the spool after, so at every instant each file is reachable from a
committed record: the spool's start-up recovery (which removes spool files that no pending row
names) can never take a file the pipeline owns. A crash between link and commit leaves only a
work directory no set names, removed by the sweep; a power cut after the commit, before the
unlinks reach the disk (one node does not sync them), leaves spool names that recovery removes
too. On SQLite the linked files' data is synced with the work directories: an upload placed
inline (:mod:`gateway.spool.store`) was not, and the commit that takes it drops its recorded
bytes.

Which uploads belong to the set is decided by the name grammar (same set key), and the database
decides who wins a race: the trigger upload is unique per set, an upload belongs to one set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from gateway.core.codes import Code
from gateway.core.folders import Folder
from gateway.core.names import FileName, Kind
from gateway.core.receipts import new_ticket
from gateway.core.sets import expiry_reason
from gateway.core.types import SenderNumber
from gateway.ops.private import private_dirs
from gateway.pipeline.checks import parse_key_name
from gateway.pipeline.context import Context
from gateway.pipeline.files import remove_tree
from gateway.pipeline.records import Claim
from gateway.pipeline.store import SetState
from gateway.pipeline.tables import NewSet, NewSetFile
from gateway.spool.store import INLINE_MAX_BYTES
from gateway.spool.writer import fsync_dir

log = structlog.get_logger("gateway.pipeline")


def _stem(name: FileName) -> str:
    d = name.date
    return (
        f"{name.application}.{name.sender}.{d.year:04d}{d.month:02d}{d.day:02d}."
        f"{name.sequence}.{name.environment}"
    )


Sync = Callable[[list[str], list[str]], None]
"""Makes files (their data) and directories durable: ``GroupFlush.sync_now``."""


Pair = tuple[str, str, int]
"""An upload's spool path, its path in the set's work directory, and its size."""


def _link_all(sources: list[Pair], sync: Sync | None = None) -> list[str]:
    """Hard-link each upload into its work path, then make the work directories durable (and,
    with ``sync``, the data of the linked files small enough to have been placed inline: a
    larger one was synced at its close); returns the spool paths that were present."""
    linked: list[str] = []
    targets: list[str] = []
    made: set[str] = set()
    directories: dict[str, None] = {}
    for source, target, size in sources:
        parent = os.path.dirname(target)
        if parent not in made:  # a set's files share their work directory: made once
            private_dirs(Path(parent))
            made.add(parent)
        try:
            os.link(source, target)
        except FileExistsError:
            pass
        except FileNotFoundError:
            continue
        linked.append(source)
        if size <= INLINE_MAX_BYTES:
            targets.append(target)
        directories[parent] = None
    if sync is not None:
        sync(targets, list(directories))
        return linked
    for directory in directories:
        fsync_dir(directory)
    return linked


def _link_and_sync(ctx: Context, pairs: list[Pair]) -> list[str]:
    """:func:`_link_all` with the files' data synced where uploads may be placed inline."""
    return _link_all(pairs, ctx.flush.sync_now if ctx.store.inline_uploads else None)


def _unlink_all(paths: list[str], *, sync: bool) -> None:
    """Drop the spool names of uploads a committed set took; with ``sync``, make each folder's
    change durable. One node (SQLite) needs no sync: a name a power cut brings back has no
    pending row, and the spool's start-up recovery removes it before anything is served (the
    syncs cost a journal commit per sender's folder on the batch's path, about one per set at
    150 sets/s). Several nodes (PostgreSQL) keep it: the next recovery may be far off."""
    directories: dict[str, None] = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            directories[os.path.dirname(path)] = None
    if sync:
        for directory in directories:
            fsync_dir(directory)


def _pairs(ctx: Context, sets: list[tuple[NewSet, list[Any]]]) -> list[Pair]:
    """(spool path, work path, size) of each upload of ``sets``, paths as strings: each
    folder's and work directory's path is made once, not once per file (names are plain file
    names)."""
    folders: dict[tuple[str, str], str] = {}
    pairs = []
    for new, uploads in sets:
        work = os.fspath(ctx.work_dir(new.ticket))
        for u in uploads:
            folder = folders.get((u.sender, u.folder))
            if folder is None:
                spool = ctx.layout.committed(SenderNumber(u.sender), Folder(u.folder), u.name)
                folder = folders[(u.sender, u.folder)] = os.fspath(spool.parent)
            pairs.append((f"{folder}/{u.name}", f"{work}/{u.name}", int(u.size)))
    return pairs


def _member(row: Any) -> NewSetFile:
    return NewSetFile(
        upload_id=int(row.id),
        name=row.name,
        kind=row.name[:2],
        size=int(row.size),
        sha256=row.sha256,
        arrived_at=row.arrived_at,
    )


async def _take(ctx: Context, new: NewSet, uploads: list[Any]) -> int | None:
    """Link the uploads into the work directory, commit the set, unlink from the spool."""
    work = ctx.work_dir(new.ticket)
    present = await ctx.blocking(_link_and_sync, ctx, _pairs(ctx, [(new, uploads)]))
    set_id = await ctx.store.intake(new)
    if set_id is None:
        await ctx.blocking(remove_tree, work)
        return None
    await ctx.blocking(_unlink_all, present, sync=not ctx.single_node)
    _received(new)
    return set_id


def _received(new: NewSet) -> None:
    log.debug(  # the set's summary event (info) says all of it at its end
        "set.received",
        ticket=new.ticket,
        sender=new.sender,
        set=new.trigger_name,
        trigger=new.trigger,
        files=len(new.files),
    )


def _ticket(now: datetime) -> str:
    return new_ticket(os.urandom(10), created=now)


def _trigger_key(ctx: Context, trigger: Any, *, quiet: bool = False) -> FileName | None:
    """The parsed name of a pending GO/TD, or None (logged unless ``quiet``) when it cannot be
    read as one."""
    parsed = parse_key_name(trigger.name, ctx.parted, ctx.limits.max_parts)
    if parsed is None or parsed.kind not in (Kind.GO, Kind.TD):
        # The channel checked the name at upload, so this is a changed catalogue (parts flag):
        # the GO cannot be read as a set key. It stays listed in IN for the sender to remove.
        if not quiet:
            log.warning("set.unreadable_trigger", sender=trigger.sender, name=trigger.name)
        return None
    return parsed


async def _prepare(ctx: Context, trigger: Any) -> tuple[NewSet, list[Any]] | None:
    """The set a pending GO/TD would make, with its uploads (nothing written yet)."""
    parsed = _trigger_key(ctx, trigger)
    if parsed is None:
        return None
    candidates = await ctx.store.pending_with_stem(trigger.sender, trigger.folder, _stem(parsed))
    return _prepared(ctx, trigger, parsed, candidates)


def _prepared(
    ctx: Context, trigger: Any, parsed: FileName, candidates: list[Any]
) -> tuple[NewSet, list[Any]]:
    """The set of ``trigger`` from the pending uploads that share its stem."""
    members = []
    for upload in candidates:
        if upload.id == trigger.id:
            continue
        name = parse_key_name(upload.name, ctx.parted, ctx.limits.max_parts)
        if name is not None and name.kind in (Kind.FI, Kind.FS) and name.set_key == parsed.set_key:
            members.append(upload)
    now = ctx.now()
    new = NewSet(
        ticket=_ticket(now),
        trigger=str(parsed.kind),
        trigger_upload_id=int(trigger.id),
        trigger_name=trigger.name,
        sender=trigger.sender,
        folder=trigger.folder,
        application=str(parsed.application),
        created_date=parsed.date,
        sequence=parsed.sequence,
        environment=str(parsed.environment),
        state=SetState.RECEIVED,
        received_at=trigger.arrived_at,
        files=[_member(u) for u in [*members, trigger]],
    )
    return new, [*members, trigger]


async def take_trigger(ctx: Context, trigger: Any) -> int | None:
    """Make a set of a pending GO/TD upload and the pending files with its set key."""
    prepared = await _prepare(ctx, trigger)
    if prepared is None:
        return None
    return await _take(ctx, *prepared)


def count_readable(ctx: Context, triggers: list[Any]) -> int:
    """How many of ``triggers`` can be read as a set key (the others wait in IN for their
    sender to remove them, and are no work for the pipeline)."""
    return sum(1 for t in triggers if _trigger_key(ctx, t, quiet=True) is not None)


@dataclass(frozen=True, slots=True)
class Taken:
    """What :func:`take_triggers` did: sets made, and the sets it claimed in the same commit
    (None: it claimed nothing, the caller claims)."""

    count: int
    claims: list[Claim] | None = None


async def take_triggers(ctx: Context, triggers: list[Any], limit: int) -> Taken:
    """Take up to ``limit`` of the pending GO/TD uploads in with one commit (one by one if any
    conflicts), and claim up to ``limit`` sets in that commit. Unreadable triggers are
    skipped, so they never hold the others back."""
    readable: list[tuple[Any, FileName]] = []
    for trigger in triggers:
        if len(readable) >= limit:
            break
        parsed = _trigger_key(ctx, trigger)
        if parsed is not None:
            readable.append((trigger, parsed))
    if not readable:
        return Taken(0)
    # Every set's candidate files in one read (one hop for the burst, not one per GO).
    candidates = await ctx.store.pending_with_stems(
        [(t.sender, t.folder, _stem(parsed)) for t, parsed in readable]
    )
    prepared = [
        _prepared(ctx, trigger, parsed, found)
        for (trigger, parsed), found in zip(readable, candidates, strict=True)
    ]
    present = await ctx.blocking(_link_and_sync, ctx, _pairs(ctx, prepared))
    made = await ctx.store.intake_many([new for new, _ in prepared], claim=limit)
    if made is None:
        # Another worker took some of them (or two GOs share files): one by one, each on its own.
        for new, _ in prepared:
            await ctx.blocking(remove_tree, ctx.work_dir(new.ticket))
        taken = 0
        for new, uploads in prepared:
            taken += int(await _take(ctx, new, uploads) is not None)
        return Taken(taken)
    ids, claims = made
    await ctx.blocking(_unlink_all, present, sync=not ctx.single_node)
    for new, _ in prepared:
        _received(new)
    return Taken(len(ids), claims)


async def take_expired(ctx: Context, set_timeout: timedelta) -> int:
    """Make expired sets (130) of pending files whose set saw no new file for ``set_timeout``."""
    timeout = set_timeout
    now = ctx.now()
    old = await ctx.store.pending_uploads_before(now - timeout)
    groups: dict[tuple[str, str, str], FileName] = {}
    for upload in old:
        name = parse_key_name(upload.name, ctx.parted, ctx.limits.max_parts)
        if name is None or name.kind not in (Kind.FI, Kind.FS):
            continue
        groups.setdefault((upload.sender, upload.folder, _stem(name)), name)
    made = 0
    for (sender, folder, stem), key_name in groups.items():
        uploads = [
            u
            for u in await ctx.store.pending_with_stem(sender, folder, stem)
            if (n := parse_key_name(u.name, ctx.parted, ctx.limits.max_parts)) is not None
            and n.kind in (Kind.FI, Kind.FS)
            and n.set_key == key_name.set_key
        ]
        if not uploads or max(u.arrived_at for u in uploads) > now - timeout:
            continue  # a file came recently: the set is still being sent
        first = min(uploads, key=lambda u: u.name)
        new = NewSet(
            ticket=_ticket(now),
            trigger="TO",
            trigger_upload_id=None,
            trigger_name=first.name,
            sender=sender,
            folder=folder,
            application=str(key_name.application),
            created_date=key_name.date,
            sequence=key_name.sequence,
            environment=str(key_name.environment),
            state=SetState.EXPIRED,
            received_at=now,
            files=[_member(u) for u in uploads],
            code=int(Code.GO_NOT_RECEIVED),
            reason=expiry_reason(timeout),
        )
        if await _take(ctx, new, uploads) is not None:
            made += 1
    return made
