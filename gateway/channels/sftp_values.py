"""Values of one SFTP session: its state and the code -> SFTP status translation (every code's
text starts with the code, since SFTPv3 clients see newer statuses only as a generic failure).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import asyncssh

from gateway.core.codes import Code, Rejection
from gateway.core.types import SenderNumber
from gateway.registry.types import Principal
from gateway.spool.folders import FolderSession

CHANNEL = "sftp"

# Codes about the transfer rather than the name: SFTP "failure", not "permission denied".
_FAILURE_CODES = frozenset(
    {Code.FILE_TOO_LARGE, Code.QUOTA_EXCEEDED, Code.INTERNAL_ERROR, Code.GATEWAY_STOPPING}
)
_EXISTS_CODES = frozenset({Code.FILE_EXISTS})
_MISSING_CODES = frozenset({Code.NO_SUCH_FILE})
# v5+ "no space on filesystem"; asyncssh sends it to a v3 client (OpenSSH) as a failure.
_SPACE_CODES = frozenset({Code.SHORT_OF_SPACE})

_DIR_MODE = stat.S_IFDIR | 0o750
_FILE_MODE = stat.S_IFREG | 0o640


@dataclass(slots=True, kw_only=True)
class Session:
    """Per-session state, kept small: 500 idle sessions must fit in well under 150 MiB. The
    files' state (open, parked, counters) is the folder service's."""

    principal: Principal
    sender: SenderNumber
    peer: str
    files: FolderSession
    last_activity: float = field(default_factory=time.monotonic)
    on_end: Callable[[], None] | None = None

    @property
    def id(self) -> str:
        """The session id bound to every event."""
        return self.files.id

    @property
    def log(self) -> Any:
        """The session's bound logger."""
        return self.files.log

    def touch(self) -> None:
        """Note activity (the idle timeout counts from the last request)."""
        self.last_activity = time.monotonic()


def sftp_error(rejection: Rejection) -> asyncssh.SFTPError:
    """The SFTP error carrying ``rejection``; its text starts with the code."""
    text = str(rejection)
    if rejection.code in _MISSING_CODES:
        return asyncssh.SFTPNoSuchFile(text)
    if rejection.code in _SPACE_CODES:
        return asyncssh.SFTPNoSpaceOnFilesystem(text)
    if rejection.code in _FAILURE_CODES:
        return asyncssh.SFTPFailure(text)
    if rejection.code in _EXISTS_CODES:
        return asyncssh.SFTPFileAlreadyExists(text)
    return asyncssh.SFTPPermissionDenied(text)


def raise_refusal(rejection: Rejection) -> NoReturn:
    raise sftp_error(rejection)


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
