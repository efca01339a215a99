"""Sets in hand step together: a barrier in front of each set's commits.

Why: a set's steps are short (a verification, a hard link, an ACRF) between commits, and each
commit is a transaction of a handful of statements whatever the number of sets in it (the
store's stepped writes, :meth:`gateway.pipeline.db.Database.step`). When the sets in hand reach
their next commit one by one, each pays its own transaction; when they wait for each other,
one transaction carries all their transitions. So every set in flight is a member of
:class:`Turns`, and a member that wants to commit waits in :meth:`Turns.turn` until every other
member waits there too (or has left); then all of them commit at once, into one batch.

A member leaves when its set is done, and steps away during work that may take long (an HTTPS
delivery with its timeouts), so nobody waits for a slow destination. Everything in the pipeline
between two commits is bounded work on the pipeline's threads, so the barrier never waits long;
with one set in hand it does not wait at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator


class Turns:
    """The barrier of the sets in flight of one pipeline (see the module docstring)."""

    def __init__(self) -> None:
        self._members = 0
        self._waiting: list[asyncio.Future[None]] = []

    @property
    def members(self) -> int:
        """Sets in flight that have not stepped away."""
        return self._members

    def join(self) -> None:
        """A set comes in hand (call it before its task first runs)."""
        self._members += 1

    def leave(self) -> None:
        """A set is done (or stepped away): the others no longer wait for it."""
        self._members -= 1
        self._release_if_all()

    @contextlib.contextmanager
    def away(self) -> Iterator[None]:
        """Step away for the block (long work): the others commit without this set."""
        self.leave()
        try:
            yield
        finally:
            self.join()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait until every member wants to commit, then commit (the block) with them."""
        if self._members > 1:
            mine = asyncio.get_running_loop().create_future()
            self._waiting.append(mine)
            self._release_if_all()
            try:
                await mine
            finally:
                if mine in self._waiting:  # cancelled: the others no longer wait for this set
                    self._waiting.remove(mine)
                    self._release_if_all()
        yield

    def _release_if_all(self) -> None:
        if self._waiting and len(self._waiting) >= self._members:
            waiting, self._waiting = self._waiting, []
            for future in waiting:
                if not future.done():
                    future.set_result(None)
