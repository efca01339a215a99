"""SSH host keys: an Ed25519 and an RSA key, created once in the state directory, then reused.

A key is written to a temp file (mode 0600, fsync'ed) and hard-linked into place, so two nodes
starting together on one shared state directory end up with the same key, never a torn file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import asyncssh

RSA_BITS = 3072
HOST_KEYS: tuple[tuple[str, str], ...] = (
    ("ssh-ed25519", "ssh_host_ed25519_key"),
    ("ssh-rsa", "ssh_host_rsa_key"),
)


def _create(path: Path, algorithm: str) -> None:
    if algorithm == "ssh-rsa":
        key = asyncssh.generate_private_key(algorithm, key_size=RSA_BITS)
    else:
        key = asyncssh.generate_private_key(algorithm)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(key.export_private_key())
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_host_keys(directory: Path) -> list[asyncssh.SSHKey]:
    """Load the host keys from ``directory``, creating any that is missing."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = []
    for algorithm, filename in HOST_KEYS:
        path = directory / filename
        if not path.exists():
            _create(path, algorithm)
        keys.append(asyncssh.read_private_key(path))
    return keys
