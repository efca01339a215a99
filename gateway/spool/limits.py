"""Upload limits, decided as values: file size (184), the free-space floor (929), uploads open
per session.

Pure: the spool passes the numbers it knows and gets a :class:`Rejection` or None back. The
sender's pending-bytes quota (920) needs state shared by every session: :mod:`.quota`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.core.codes import Code, Rejection, reject
from gateway.ops.settings import LimitSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolLimits:
    """The limits one upload is held to. The floor's defaults (0) leave it off; the daemon's
    come from ``[limits]``."""

    max_file_bytes: int
    sender_pending_quota_bytes: int
    session_max_open_uploads: int = 32
    min_free_bytes: int = 0
    min_free_percent: float = 0.0

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> SpoolLimits:
        """The limits configured in ``[limits]``."""
        return cls(
            max_file_bytes=settings.max_file_bytes,
            sender_pending_quota_bytes=settings.sender_pending_quota_bytes,
            session_max_open_uploads=settings.session_max_open_uploads,
            min_free_bytes=settings.min_free_bytes,
            min_free_percent=settings.min_free_percent,
        )

    def floor(self, total: int) -> int:
        """Bytes that must stay free on a filesystem of ``total`` bytes."""
        return max(self.min_free_bytes, math.ceil(total * self.min_free_percent / 100))


def check_size(limits: SpoolLimits, *, size: int) -> Rejection | None:
    """Refuse an upload that has grown past the file-size limit."""
    if size > limits.max_file_bytes:
        return reject(
            Code.FILE_TOO_LARGE,
            f"file exceeds the limit of {limits.max_file_bytes} bytes",
        )
    return None


def check_space(limits: SpoolLimits, *, free: int, total: int) -> Rejection | None:
    """Refuse a new upload while the spool's filesystem is below its free-space floor."""
    if free < limits.floor(total):
        # The figures stay in the log (spool.short_of_space): a sender needs only "later".
        return reject(Code.SHORT_OF_SPACE)
    return None


def check_open_uploads(limits: SpoolLimits, *, open_uploads: int) -> Rejection | None:
    """Refuse one more upload in a session that has ``open_uploads`` in progress."""
    if open_uploads >= limits.session_max_open_uploads:
        return reject(
            Code.OPERATION_NOT_PERMITTED,
            f"at most {limits.session_max_open_uploads} uploads at once in one session; "
            "close one first",
        )
    return None
