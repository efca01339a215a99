"""The failure pacing (``gateway.ops.pacing``): how long it waits, on a fixed clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.ops.pacing import FailurePacing
from gateway.ops.settings import GatewaySettings, LimitSettings


class HeldSleep:
    """A pacing sleep the test holds: it records each wait and returns when released."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.release = asyncio.Event()
        self._changed = asyncio.Condition()

    async def __call__(self, seconds: float) -> None:
        async with self._changed:
            self.waits.append(seconds)
            self._changed.notify_all()
        await self.release.wait()

    async def until(self, waiting: int) -> None:
        """Return once ``waiting`` failures are held."""
        async with asyncio.timeout(60), self._changed:
            await self._changed.wait_for(lambda: len(self.waits) >= waiting)


class _Sleeps:
    """A sleep that only records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_a_failure_waits_out_what_is_left_of_the_delay_since_its_arrival() -> None:
    """Arrived at 10.0 with a 1 s delay: answered at 10.25 it waits 0.75 s; at 11.5, not at all."""
    now = [10.0]
    sleeps = _Sleeps()
    pacing = FailurePacing(seconds=1.0, clock=lambda: now[0], sleep=sleeps)
    arrived = pacing.arrived()
    now[0] = 10.25
    await pacing.answer_failure(arrived)
    now[0] = 11.5
    await pacing.answer_failure(arrived)
    assert sleeps.waits == [0.75]


async def test_zero_answers_at_once() -> None:
    """``password_failure_seconds = 0`` never sleeps."""
    sleeps = _Sleeps()
    pacing = FailurePacing(seconds=0.0, clock=lambda: 5.0, sleep=sleeps)
    await pacing.answer_failure(pacing.arrived())
    assert sleeps.waits == []


def test_the_delay_comes_from_limits(tmp_path: Path) -> None:
    """``[limits] password_failure_seconds`` is the pacing's delay (default 1 s)."""
    default = GatewaySettings(state_dir=tmp_path)
    assert FailurePacing.from_settings(default).seconds == 1.0
    halved = GatewaySettings(state_dir=tmp_path, limits=LimitSettings(password_failure_seconds=0.5))
    assert FailurePacing.from_settings(halved).seconds == 0.5
