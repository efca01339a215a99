"""Local faults: tell them apart, log them once with a ticket, answer them without their text.

A local fault is the gateway's own trouble (a full disk, an I/O error, a database that fails),
never the sender's. SECURITY.md 22: the peer gets a stable code and, for anything but a full
disk, a ticket; the log gets the traceback, once, under that ticket. No exception text (library
names, SQL, Python messages) ever reaches a peer.

- :func:`short_of_space` recognises ENOSPC and EDQUOT, and a database whose disk is full
  (SQLite's ``SQLITE_FULL``, PostgreSQL's SQLSTATE 53100, raw or wrapped by SQLAlchemy), which are
  answered 929 (the gateway is short of space; the sender sends the same file again later) with
  no ticket: the operator's signal is the ``spool.short_of_space`` event and its metric, not one
  traceback per write.
- :func:`log_fault` logs the exception being handled under a new ticket and returns the
  ticket; the caller answers 999 "internal error, ticket T"
  (:func:`gateway.core.codes.internal_error`).
- :func:`local_failure` names the kind of a fault for the pipeline's retry and its logs:
  ``disk_full``, ``io``, ``database``, or None (a bug). A :class:`DamagedDatabase` (rows the
  gateway needs are gone, such as the audit chain's head) is ``database``: the work waits for
  the operator's restore instead of being refused.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = 13
"""SQLite's result code for "database or disk is full" (sqlite3.h)."""
POSTGRES_DISK_FULL = "53100"
"""PostgreSQL's SQLSTATE disk_full."""


class DamagedDatabase(Exception):
    """The database lacks rows the gateway itself keeps (an operator restores it from a
    backup): a local fault, not the sender's and not a bug."""


def short_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` says the filesystem (or its quota) is full, under a file or under the
    database (SQLAlchemy's error carries the driver's as ``orig``)."""
    if isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS:
        return True
    driver = getattr(exc, "orig", None) or exc
    if isinstance(driver, sqlite3.Error):
        return getattr(driver, "sqlite_errorcode", None) == SQLITE_FULL
    state = getattr(driver, "sqlstate", None) or getattr(driver, "pgcode", None)
    return state == POSTGRES_DISK_FULL


def new_fault_ticket() -> str:
    """A short random id an operator greps the log for (12 hex digits)."""
    return os.urandom(6).hex()


def log_fault(log: Any, event: str, **context: Any) -> str:
    """Log the exception being handled once, with its traceback, under a new ticket; the
    ticket."""
    ticket = new_fault_ticket()
    log.exception(event, ticket=ticket, **context)
    return ticket


def local_failure(exc: BaseException) -> str | None:
    """The kind of a local fault (``disk_full``, ``io``, ``database``), or None for a bug."""
    if short_of_space(exc):
        return "disk_full"
    if isinstance(exc, OSError):
        return "io"
    if isinstance(exc, SQLAlchemyError | DamagedDatabase):
        return "database"
    return None
