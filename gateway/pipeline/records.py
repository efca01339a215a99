"""A set, its files and its key's holder as typed values, mapped once from their rows.

Why: the steps of a set read and pass its row around; with SQLAlchemy ``Row`` objects that was
``Any`` everywhere, and every step that changed the row read it again. A record is frozen: a
committed step returns the record as committed (``dataclasses.replace`` with the values it
wrote), so nothing is read after a write. Instants come aware in UTC from their column type
(:class:`gateway.registry.instant.UtcDateTime`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from operator import itemgetter
from typing import Any, Self, TypedDict

from sqlalchemy.engine import Result

_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _names(cls: type[Any]) -> tuple[str, ...]:
    # A record's field names, looked up once per class.
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


_Getter = Callable[[Any], tuple[Any, ...]]
_GETTERS: dict[tuple[type[Any], tuple[str, ...]], _Getter] = {}


def _getter(cls: type[Any], keys: tuple[str, ...]) -> _Getter:
    # The record's fields by position in rows of these columns, worked out once per class and
    # statement shape (a row's columns by name cost a mapping per row).
    getter = _GETTERS.get((cls, keys))
    if getter is None:
        names = _names(cls)
        positions = [keys.index(name) for name in names]
        if len(positions) == 1:
            only = positions[0]
            getter = lambda row: (row[only],)  # noqa: E731
        else:
            getter = itemgetter(*positions)
        getter = _GETTERS[(cls, keys)] = getter
    return getter


class _Record:
    """A record mapped from a database row: :meth:`of` takes the row's columns of the same
    names (``row._mapping``), :meth:`all_of` every row of a result."""

    __slots__ = ()

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> Self:
        """The record of ``row``."""
        names = _names(cls)
        return cls(**{name: row[name] for name in names})

    @classmethod
    def all_of(cls, result: Result[Any]) -> list[Self]:
        """The records of every row of ``result`` (its columns include the record's fields)."""
        names = _names(cls)
        getter = _getter(cls, tuple(result.keys()))
        return [cls(**dict(zip(names, getter(row), strict=True))) for row in result]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRecord(_Record):
    """One row of ``sets``."""

    id: int
    ticket: str
    trigger: str
    trigger_upload_id: int | None
    trigger_name: str
    sender: str
    folder: str
    application: str
    created_date: date
    sequence: str
    environment: str
    state: str
    finished: bool
    code: int | None
    reason: str | None
    received_at: datetime
    updated_at: datetime
    claim_token: str | None
    claim_until: datetime | None
    not_before: datetime | None
    files: int
    bytes: int
    verified: bool
    signer_fingerprint: str | None
    signer_subject: str | None
    service: str | None
    destination: str | None
    route_deadline: datetime | None
    routed_at: datetime | None
    duplicate_of: str | None
    ack_of: str | None
    ack_sequence: str | None
    ack_created: datetime | None
    ack_written_at: datetime | None
    files_released: bool
    archive_path: str | None
    archived_at: datetime | None
    archive_purged_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetFileRecord(_Record):
    """One row of ``set_files``."""

    id: int
    set_id: int
    upload_id: int
    name: str
    kind: str
    size: int
    sha256: str
    arrived_at: datetime
    signer_fingerprint: str | None
    signer_subject: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyHolder(_Record):
    """One row of ``accepted_keys``: the accepted set holding a set key."""

    sender: str
    application: str
    created_date: date
    sequence: str
    environment: str
    set_id: int
    ticket: str
    digests: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadRecord(_Record):
    """One row of the spool's ``uploads``, as the pipeline reads it."""

    id: int
    sender: str
    folder: str
    name: str
    size: int
    sha256: str
    arrived_at: datetime
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationRecord(_Record):
    """One row of ``notifications``."""

    id: int
    application: str
    idempotency_key: str
    request_sha256: str
    client: str
    sender: str
    environment: str
    kind: str
    folder: str
    main_name: str
    signature_name: str
    go_name: str
    compressed: bool
    size: int
    content_sha256: str
    created_at: datetime
    placed_at: datetime | None


class SetChanges(TypedDict, total=False):
    """The columns of ``sets`` a step may write (each step names its own)."""

    state: str
    finished: bool
    code: int | None
    reason: str | None
    verified: bool
    signer_fingerprint: str | None
    signer_subject: str | None
    service: str | None
    destination: str | None
    route_deadline: datetime | None
    routed_at: datetime | None
    duplicate_of: str | None
    ack_of: str | None
    ack_created: datetime | None
    ack_written_at: datetime | None
    files_released: bool
    archive_path: str | None
    archived_at: datetime | None


class AttemptValues(TypedDict):
    """One row of ``route_attempts`` to insert."""

    set_id: int
    ticket: str
    service: str
    destination: str
    attempt: int
    at: datetime
    outcome: str
    status: int | None
    detail: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusalRecord(_Record):
    """One row of the spool's ``upload_refusals``."""

    id: int
    sender: str
    folder: str
    name: str
    code: int
    reason: str
    at: datetime
    answered_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnFileRecord(_Record):
    """One row of ``return_files``."""

    id: int
    sender: str
    folder: str
    name: str
    kind: str
    ticket: str | None
    subject: str | None
    code: int | None
    written_at: datetime
    purged_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveRecord(_Record):
    """An archived set, as the retention reads it."""

    id: int
    ticket: str
    sender: str
    archive_path: str | None
    archived_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingUpload(_Record):
    """A pending upload, as ``gateway trace`` shows it."""

    sender: str
    folder: str
    name: str
    size: int
    arrived_at: datetime
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord(_Record):
    """One row of ``route_attempts``, as ``gateway trace`` shows it."""

    attempt: int
    at: datetime
    outcome: str
    status: int | None
    detail: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetStory:
    """A set's row, files by name, delivery attempts in order and its ACRF's files."""

    row: SetRecord
    files: list[SetFileRecord]
    attempts: list[AttemptRecord]
    acknowledgement: list[ReturnFileRecord]


class ReturnFileValues(TypedDict):
    """One row of ``return_files`` to insert."""

    sender: str
    folder: str
    name: str
    kind: str
    ticket: str | None
    subject: str | None
    code: int | None
    written_at: datetime
    purged_at: datetime | None


class NotificationValues(TypedDict):
    """A ``notifications`` row to reserve (every column but ``id``)."""

    application: str
    idempotency_key: str
    request_sha256: str
    client: str
    sender: str
    environment: str
    kind: str
    folder: str
    main_name: str
    signature_name: str
    go_name: str
    compressed: bool
    size: int
    content_sha256: str
    created_at: datetime
    placed_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    """What processing a set starts from: its record, its files by name, its key's holder."""

    row: SetRecord
    files: tuple[SetFileRecord, ...]
    holder: KeyHolder | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A set this node holds: its id, its claim token and, when the claim read them, its rows."""

    set_id: int
    token: str
    loaded: Loaded | None = None
