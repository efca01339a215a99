"""How a command fails: an expected failure is one message and its exit code; anything else is one
line naming a file that holds the traceback. No traceback reaches the terminal.

Exit codes (docs/admin.md, "Exit codes"):

- 1: refused (a rule, an invalid value, a failed login);
- 2: usage or configuration (bad arguments, settings, files, a database that cannot be opened
  or has no schema yet);
- 3: integrity (the audit chain is broken);
- 70: an unexpected error, that is a bug (``EX_SOFTWARE`` of sysexits.h);
- 130: interrupted (Ctrl-C);
- 141: the reader of standard output went away (``gateway … | head``; 128 + SIGPIPE, what a
  shell reports for a command stopped by a closed pipe).

A command raises :class:`CommandError` for what it recognises itself. :data:`EXPECTED` is the one
table for exceptions of the layers underneath that reach the command line without being bugs;
:func:`gateway.cli.main.main` reads it, and only it turns exceptions into exit codes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from alembic.util.exc import CommandError as MigrationError
from sqlalchemy.exc import InterfaceError, OperationalError

from gateway.ops.settings import SettingsError
from gateway.registry.audit import AuditHeadMissing
from gateway.registry.catalogue import CatalogueError
from gateway.registry.networks import NetworksError

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class CommandError(Exception):
    """An expected failure of a command: its message (one or more lines) and exit code."""

    def __init__(self, message: str, *, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s text (a driver's error can run to a dozen lines)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename is not None else ""
    return f"{exc.strerror or first_line(exc)}{where}"


# exception type -> (exit code, its message). The first entry that matches wins; a CommandError
# carries its own code.
EXPECTED: Sequence[tuple[type[BaseException], int, Callable[[Any], str]]] = (
    (SettingsError, EXIT_USAGE, str),
    (CatalogueError, EXIT_USAGE, str),
    (NetworksError, EXIT_USAGE, str),
    (AuditHeadMissing, EXIT_INTEGRITY, str),
    (MigrationError, EXIT_USAGE, lambda e: f"database migration: {first_line(e)}"),
    (OperationalError, EXIT_USAGE, lambda e: f"database: {first_line(e)}"),
    (InterfaceError, EXIT_USAGE, lambda e: f"database: {first_line(e)}"),
    (OSError, EXIT_USAGE, _os_error),
)


def expected(exc: BaseException) -> CommandError | None:
    """``exc`` as an expected failure, or ``None`` when it is a bug."""
    if isinstance(exc, CommandError):
        return exc
    for kind, code, message in EXPECTED:
        if isinstance(exc, kind):
            return CommandError(message(exc), code=code)
    return None


def report_unexpected(prog: str, exc: BaseException) -> int:
    """Write ``exc``'s traceback to a private file, print one line naming it; the exit code."""
    summary = f"{type(exc).__name__}: {first_line(exc)}"[:200]
    try:
        fd, path = tempfile.mkstemp(prefix="gateway-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as log:
            log.write(f"argv: {sys.argv!r}\n")
            log.writelines(traceback.format_exception(exc))
        where = f"the details are in {path}"
    except OSError as write_error:
        where = f"the details could not be written ({write_error.strerror})"
    print(f"{prog}: unexpected error ({summary}); this is a bug, {where}", file=sys.stderr)
    return EXIT_BUG


def stdout_gone() -> int:
    """After a broken pipe on standard output: point it at /dev/null, so that the interpreter's
    last flush does not fail again, and return the exit code."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file descriptor (a test's capture)
        pass
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def not_utf8(arguments: Sequence[str]) -> str | None:
    """A message for the first argument that is not valid UTF-8, or ``None``.

    Python hands such bytes over as lone surrogates, which fail later wherever the text is
    encoded (a database, a log line); refuse them before anything runs.
    """
    for position, argument in enumerate(arguments, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            shown = argument.encode("ascii", "backslashreplace").decode("ascii")
            return f"argument {position} is not valid UTF-8: {shown}"
    return None
