"""Crash points for the crash-safety tests: kill the process at a named step of set processing.

``GATEWAY_TEST_CRASH_AT=after_claim|after_verify|after_route|after_fo|before_commit`` makes the
pipeline call
``os._exit(137)`` (the exit status of a SIGKILL'ed process) the first time processing reaches that
step. Nothing is flushed, no ``finally`` runs: exactly what a power cut or an OOM kill leaves. The
variable is read once, when the pipeline is built; unset (the default) every point is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

ENV_VAR = "GATEWAY_TEST_CRASH_AT"


class CrashPoint(StrEnum):
    """The steps at which a test may kill the pipeline."""

    AFTER_CLAIM = "after_claim"
    AFTER_VERIFY = "after_verify"
    AFTER_ROUTE = "after_route"
    AFTER_FO = "after_fo"
    BEFORE_COMMIT = "before_commit"
    """Inside a batch that finishes sets: their ACRFs are on disk, their files archived, every
    statement of the batch sent, and the commit not yet made."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Which crash point (if any) is armed for this process."""

    crash_at: CrashPoint | None = None

    @classmethod
    def from_env(cls) -> Faults:
        """Read ``GATEWAY_TEST_CRASH_AT``; an unknown value is ignored (never crash by accident)."""
        value = os.environ.get(ENV_VAR, "")
        try:
            return cls(crash_at=CrashPoint(value))
        except ValueError:
            return cls()

    def reached(self, point: CrashPoint) -> None:
        """Die here if this point is armed."""
        if self.crash_at is point:
            os._exit(137)
