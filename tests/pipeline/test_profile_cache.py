"""The pipeline's sender-profile cache: sets of one sender that miss together share one lookup."""

from __future__ import annotations

import asyncio

from gateway.core.types import SenderNumber
from gateway.pipeline.context import ProfileCache
from gateway.registry.types import SenderProfile


class SlowDirectory:
    """A registry side that answers when told to, counting lookups."""

    def __init__(self) -> None:
        self.lookups = 0
        self.answer = asyncio.Event()

    async def sender_profile(self, sender: SenderNumber) -> SenderProfile | None:
        """None (unknown sender) once released; counts the call."""
        self.lookups += 1
        await self.answer.wait()
        return None


async def test_concurrent_misses_share_one_lookup() -> None:
    """Five sets of one sender miss the cache at once: one registry lookup, five answers."""
    directory = SlowDirectory()
    cache = ProfileCache(directory)
    gets = [asyncio.create_task(cache.get(SenderNumber("006400"))) for _ in range(5)]
    await asyncio.sleep(0)  # one loop turn: every get has started (no timing)
    directory.answer.set()
    assert await asyncio.gather(*gets) == [None] * 5
    assert directory.lookups == 1


async def test_a_cancelled_lookup_does_not_fail_the_waiters() -> None:
    """The first get is cancelled mid-lookup: the others look up again and get their answer."""
    directory = SlowDirectory()
    cache = ProfileCache(directory)
    first = asyncio.create_task(cache.get(SenderNumber("006400")))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get(SenderNumber("006400")))
    await asyncio.sleep(0)
    first.cancel()
    directory.answer.set()
    assert await second is None
    assert first.cancelled()
    assert directory.lookups == 2
