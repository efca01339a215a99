"""Upload limits, decided as values: file size (184) and a sender's pending-bytes quota (920).

Pure: the store passes the numbers it knows (bytes written so far, the sender's pending bytes
read once when the upload opened) and gets a :class:`Rejection` or None back.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.codes import Code, Rejection, reject
from gateway.ops.settings import LimitSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolLimits:
    """The limits one upload is held to."""

    max_file_bytes: int
    sender_pending_quota_bytes: int

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> SpoolLimits:
        """The limits configured in ``[limits]``."""
        return cls(
            max_file_bytes=settings.max_file_bytes,
            sender_pending_quota_bytes=settings.sender_pending_quota_bytes,
        )


def check_open(limits: SpoolLimits, *, pending_bytes: int) -> Rejection | None:
    """Refuse a new upload at once when the sender's quota is already used up."""
    if pending_bytes >= limits.sender_pending_quota_bytes:
        return reject(
            Code.QUOTA_EXCEEDED,
            f"pending files already hold {pending_bytes} bytes, the quota is "
            f"{limits.sender_pending_quota_bytes}; wait until they are processed",
        )
    return None


def check_size(limits: SpoolLimits, *, size: int, pending_bytes: int) -> Rejection | None:
    """Refuse an upload that has grown past the file-size limit or the sender's quota."""
    if size > limits.max_file_bytes:
        return reject(
            Code.FILE_TOO_LARGE,
            f"file exceeds the limit of {limits.max_file_bytes} bytes",
        )
    if pending_bytes + size > limits.sender_pending_quota_bytes:
        return reject(
            Code.QUOTA_EXCEEDED,
            f"pending files would exceed the quota of {limits.sender_pending_quota_bytes} bytes",
        )
    return None
