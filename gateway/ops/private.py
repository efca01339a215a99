"""The state directory is the daemon's alone: the folders it creates are 0700 and its files 0600,
whatever the umask.

Why here and not through ``os.umask``: the umask is process-wide (every thread, every library's
file), and an operator running ``gateway serve`` by hand usually has 022, which made
``registry.sqlite3`` (argon2 hashes), ``archive/``, ``out/`` and ``routed/`` readable by every
local user (issue 16). So each creation says its mode: :func:`private_dirs` for folders, and
:data:`PRIVATE_FILE` for ``os.open``. A mode given at creation can only lose bits to the umask,
never gain them. Under systemd the unit's ``UMask=0077`` says the same a second time.

``gateway doctor`` reports what is open to others all the same (a state directory made by an
older version, or by hand).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dirs(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``, but every folder it creates is 0700 (pathlib
    gives the parents it creates the umask's default mode, not ``mode``)."""
    if path.is_dir():  # the common case: one stat
        return
    missing: list[Path] = []
    folder = path
    while not folder.is_dir() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another thread or node, or a file (raise)
            if not folder.is_dir():
                raise


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists; True when it was created. For a file
    another library creates on first use with the umask's mode (SQLite's database: its
    ``-wal`` and ``-shm`` files then take the database file's mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return False
    os.close(fd)
    return True
