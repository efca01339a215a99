"""Helpers for tests that drive real peers (openssl, sftp, lftp, curl, postgres), and one that
watches the OS boundary (which files get synced).

Outside CI a missing tool skips the test, so a developer without it can still run the rest; under
``CI=true`` a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import ast
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where nothing may be skipped for lack of a tool."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str) -> str:
    """Return the path of executable ``name``; skip (or fail under CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"required tool {name!r} is not installed"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_env(name: str) -> str:
    """Return environment variable ``name``; skip (or fail under CI) when it is unset."""
    value = os.environ.get(name)
    if not value:
        message = f"environment variable {name} is not set (see .ci/start-postgres)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return value


@contextlib.contextmanager
def mounted_tmpfs(point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. ``"5m"``) mounted on ``point`` (made here), unmounted at the
    end. Mounting needs root: a failure fails the test under CI, skips it elsewhere."""
    mount = require_tool("mount")
    umount = require_tool("umount")
    point.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        message = f"cannot mount a {size} tmpfs (root needed): {result.stderr.strip()}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield point
    finally:
        # What used it is stopped by then; a lazy unmount still frees the test's folder if a
        # stray process holds it, and the test says so.
        done = subprocess.run([umount, str(point)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run([umount, "-l", str(point)], check=False)
            pytest.fail(f"umount {point}: {done.stderr.strip()}")


def record_syncs(monkeypatch: pytest.MonkeyPatch, call: str) -> list[Path]:
    """Wrap ``os.<call>`` (``fsync``, ``fdatasync``) for the test: each call's file path is
    appended to the returned list, then the real call is made."""
    real = getattr(os, call)
    synced: list[Path] = []

    def recorded(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, call, recorded)
    return synced


def gateway_cli(site: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m gateway ...`` with ``site`` first on the import path (a package, or a module
    standing in for one), run in ``site``'s parent, no ``GATEWAY_*`` setting but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        cwd=site.parent,  # not the repository: its source tree would be imported first
        env={**clean, "PYTHONPATH": str(site), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute modules an import statement names (none for a relative import)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""] if node.level == 0 else []
