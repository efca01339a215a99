"""The web channel's request grammar, sans I/O: the target path, the listing cursor, and ranges.

- **Paths** (SECURITY.md 4): ``/v1/{folder}/{name}`` is read from the raw request target, never
  from a router's decoded copy, and percent-decoded exactly once (RFC 3986 §2.4). The bytes go
  to the folder service, which canonicalises them as it does SFTP's and FTP's paths (``..``,
  ``//``, a backslash, NUL, controls, bidi, NFD, device names: 922). A ``%`` left after the one
  decode is a second level of encoding and is refused here with 922 (the folder service refuses
  ``%`` too; this says why). A target ending in ``/`` names a folder (a listing).
- **Cursors** are opaque to clients: base64url of the last name of the page (listings are
  sorted by name, so the next page is the names after it). Not an offset: a file that leaves
  the folder between two pages does not make the next page skip one.
- **Ranges** (RFC 9110 §14.1.2): one ``bytes=first-last``, ``bytes=first-`` or ``bytes=-suffix``;
  anything else (several ranges, another unit) is ignored and the whole file is sent, as the
  RFC allows.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway.core.codes import Code, Rejection, reject

PREFIX = "/v1"
_CURSOR = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class Target:
    """A request's path below ``/v1``, decoded once, and whether it names a folder."""

    path: bytes
    folder: bool


def parse_target(raw_path: str) -> Target | Rejection | None:
    """The ``/v1/...`` target of ``raw_path`` (query dropped), a 922 for a second level of
    encoding, or None when the path is not under ``/v1/`` (404)."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith(PREFIX + "/"):
        return None
    decoded = unquote_to_bytes(path[len(PREFIX) :])
    if b"%" in decoded:
        return reject(Code.PATH_REFUSED, "path refused: '%' left after percent-decoding")
    return Target(decoded, decoded.endswith(b"/"))


def encode_cursor(name: str) -> str:
    """The cursor of the page that ends with ``name``."""
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The name a cursor stands for, or None when it is not one of ours."""
    if len(cursor) > 1024 or _CURSOR.fullmatch(cursor) is None:
        return None  # base64 decoding would skip foreign characters: refuse them first
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return raw.decode()
    except (binascii.Error, ValueError):
        return None


def parse_limit(text: str | None, most: int) -> int | None:
    """A listing page size from ``?limit=`` (1 to ``most``; ``most`` when absent), or None."""
    if text is None:
        return most
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return None
    value = int(text)
    return value if 1 <= value <= most else None


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``first`` to ``last`` inclusive."""

    first: int
    last: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.last - self.first + 1


def parse_range(header: str | None, size: int) -> ByteRange | bool | None:
    """The range ``header`` asks of a file of ``size`` bytes: a :class:`ByteRange`, False when
    it cannot be satisfied (416), None for the whole file (no header, or one not understood)."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not (first_text.isdigit() or first_text == ""):
        return None
    if not (last_text.isdigit() or last_text == "") or (first_text == last_text == ""):
        return None
    if not (first_text + last_text).isascii() or len(first_text) > 20 or len(last_text) > 20:
        return None
    if first_text == "":  # a suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return False
        return ByteRange(max(0, size - suffix), size - 1)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:  # not a valid range: ignored (RFC 9110 §14.1.1)
        return None
    if first >= size:
        return False
    return ByteRange(first, min(last, size - 1))
