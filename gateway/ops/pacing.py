"""When a failed password login is answered: no sooner than ``seconds`` after it arrived.

Why (issue 15 item 4, measured with ``bench/login_flood.py``): the password pool refuses a
check at once when it is full (``busy``). Answered at once, a guesser reconnects at once: with
30 guessing clients the pool refused 3,390 checks in 15 s, their 1,184 SSH handshakes cost the
gateway more than argon2 did, and a good key login's p95 rose from 78 to 138 ms. A failed
attempt answered only after a delay cannot spin: a guessing connection gets one answer per
delay, whatever the pool did with its password.

Rules:

- The delay runs from the attempt's arrival, so a wrong password (argon2 took part of it), an
  unknown login and an attempt refused without a check (``busy``, ``locked``) are all answered
  after the same time: the wait does not tell the reasons apart either (SECURITY.md 6).
- It is a sleep on the event loop: no thread, no CPU and no slot of the password pool are held
  while it runs, so key, certificate and other password logins go on meanwhile. A caller holding
  a shared limit (the FTP channel's logins in flight) releases it before it waits.
- The caller charges the attempt (the per-source penalty, the account's failure count) before it
  waits, so a connection that goes away during the wait has paid all the same.
- Clock and sleep are injected: tests pass a fixed clock and a sleep they hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.ops.settings import GatewaySettings

DEFAULT_SECONDS = 1.0
"""About one production argon2 check under load (``[limits] password_failure_seconds``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailurePacing:
    """The least time between a password attempt's arrival and its failure's answer."""

    seconds: float = DEFAULT_SECONDS
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> FailurePacing:
        """The pacing of ``[limits] password_failure_seconds``."""
        return cls(seconds=settings.limits.password_failure_seconds)

    def arrived(self) -> float:
        """The instant an attempt arrived, to pass to :meth:`answer_failure`."""
        return self.clock()

    async def answer_failure(self, arrived: float) -> None:
        """Return once ``seconds`` have passed since ``arrived`` (at once if they have)."""
        left = arrived + self.seconds - self.clock()
        if left > 0:
            await self.sleep(left)
