"""How the FTP channel shows the folder service's entries: ``LIST``, ``NLST``, ``MLSD``/``MLST``,
``MDTM``.

Pure formatting (values in, text out; ``now`` is passed in). ``LIST`` has no standard format:
clients parse the ``ls -l`` shape (``drwxr-x--- 1 gateway gateway 0 Jan 15 12:00 IN``), so that is
what is sent, with no real owner or mode. ``MLSD``/``MLST`` facts follow RFC 3659 §7 (``type``,
``size``, ``modify`` in UTC). Names were checked by the folder service (no controls, no CR/LF),
so they are written as they are.
"""

from __future__ import annotations

import time

from gateway.spool.folders import Entry

# ls shows the time of day for entries from the last six months, else the year.
_HALF_YEAR_SECONDS = 182 * 24 * 3600
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def mdtm(mtime: float) -> str:
    """An RFC 3659 time value (``YYYYMMDDHHMMSS``, UTC)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(mtime))


def list_line(entry: Entry, now: float) -> str:
    """One ``LIST`` line in the ``ls -l`` shape."""
    mode = "drwxr-x---" if entry.is_folder else "-rw-r-----"
    when = time.gmtime(entry.mtime if entry.mtime > 0 else now)
    month = _MONTHS[when.tm_mon - 1]
    if 0 <= now - entry.mtime < _HALF_YEAR_SECONDS:
        stamp = f"{month} {when.tm_mday:2d} {when.tm_hour:02d}:{when.tm_min:02d}"
    else:
        stamp = f"{month} {when.tm_mday:2d}  {when.tm_year}"
    return f"{mode} 1 gateway gateway {entry.size:>10d} {stamp} {entry.name}"


def facts(entry: Entry) -> str:
    """The RFC 3659 facts of ``entry`` (``type=file;size=4096;modify=20260115120000;``)."""
    if entry.is_folder:
        return "type=dir;"
    return f"type=file;size={entry.size};modify={mdtm(entry.mtime)};"


def mlsd_line(entry: Entry) -> str:
    """One ``MLSD`` line: facts, a space, the name."""
    return f"{facts(entry)} {entry.name}"


def formatted(entries: list[Entry], verb: str, now: float) -> bytes:
    """The data sent for ``LIST``, ``NLST`` or ``MLSD`` of ``entries`` (CRLF lines): a whole
    listing, or one chunk of a folder's (each line stands alone, so chunks simply follow)."""
    if verb == "nlst":
        lines = [e.name for e in entries]
    elif verb == "mlsd":
        lines = [mlsd_line(e) for e in entries]
    else:
        lines = [list_line(e, now) for e in entries]
    return "".join(line + "\r\n" for line in lines).encode("utf-8")
