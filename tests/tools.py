"""Helpers for tests that drive real peers (openssl, sftp, lftp, curl, postgres).

Outside CI a missing tool skips the test, so a developer without it can still run the rest; under
``CI=true`` a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil

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
