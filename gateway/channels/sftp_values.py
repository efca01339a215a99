"""Values of one SFTP session: its state, the name policy, bounds, and the code -> SFTP status
translation (every code's text starts with the code, since SFTPv3 clients see newer statuses
only as a generic failure).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, NoReturn

import asyncssh

from gateway.channels.vfs import Folder, VPath
from gateway.core.codes import Code, Rejection
from gateway.core.names import default_parted
from gateway.core.types import SenderNumber
from gateway.ops.settings import DEFAULT_TIMEZONE
from gateway.registry.types import Principal
from gateway.spool import FinishedUpload, UploadWriter

CHANNEL = "sftp"

# Codes about the transfer rather than the name: SFTP "failure", not "permission denied".
_FAILURE_CODES = frozenset(
    {Code.FILE_TOO_LARGE, Code.QUOTA_EXCEEDED, Code.INTERNAL_ERROR, Code.GATEWAY_STOPPING}
)
_EXISTS_CODES = frozenset({Code.FILE_EXISTS})

# Per-session bounds (SECURITY.md 14): open files hold descriptors, parked temporary uploads
# hold disk space outside the pending-bytes quota until they are renamed.
MAX_OPEN_FILES = 32
MAX_PARKED = 32
# Refusals recorded per session (each becomes a negative ACRF); beyond, they are only logged.
MAX_RECORDED_REFUSALS = 100

_DIR_MODE = stat.S_IFDIR | 0o750
_FILE_MODE = stat.S_IFREG | 0o640


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


@dataclass(slots=True, kw_only=True)
class Session:
    """Per-session state, kept small: 500 idle sessions must fit in well under 150 MiB."""

    id: str
    principal: Principal
    sender: SenderNumber
    peer: str
    log: Any
    last_activity: float = field(default_factory=time.monotonic)
    parked: dict[tuple[Folder, str], FinishedUpload] = field(default_factory=dict)
    writers: set[UploadWriter] = field(default_factory=set)
    open_files: int = 0
    draining: bool = False
    """The gateway is stopping: transfers in progress finish, no new file is opened."""
    working: int = 0
    """Requests that commit or remove something, not answered yet (a drain waits for them)."""
    stored: int = 0
    refused: int = 0
    bytes_stored: int = 0
    on_end: Callable[[], None] | None = None

    def touch(self) -> None:
        """Note activity (the idle timeout counts from the last request)."""
        self.last_activity = time.monotonic()


def sftp_error(rejection: Rejection) -> asyncssh.SFTPError:
    """The SFTP error carrying ``rejection``; its text starts with the code."""
    text = str(rejection)
    if rejection.code in _FAILURE_CODES:
        return asyncssh.SFTPFailure(text)
    if rejection.code in _EXISTS_CODES:
        return asyncssh.SFTPFileAlreadyExists(text)
    return asyncssh.SFTPPermissionDenied(text)


def raise_refusal(rejection: Rejection) -> NoReturn:
    raise sftp_error(rejection)


def no_such_file(path: VPath) -> asyncssh.SFTPNoSuchFile:
    return asyncssh.SFTPNoSuchFile(f"no such file: {path}")


def dir_attrs() -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_DIRECTORY, permissions=_DIR_MODE)


def file_attrs(size: int, mtime: float) -> asyncssh.SFTPAttrs:
    seconds = int(mtime)
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_REGULAR,
        size=size,
        permissions=_FILE_MODE,
        atime=seconds,
        mtime=seconds,
    )
