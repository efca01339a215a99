"""Start a coroutine at once, as a step of a given task, and let that task finish it if it waits.

Python 3.12's eager tasks do this for a new task; the gateway runs on Debian's 3.11. The SFTP
layer (:mod:`gateway.channels.sftp_layer`) uses it to answer a request from the channel's
``data_received`` callback when its session's task is idle: most requests (a STAT, an OPEN, a
WRITE, a lone small upload's CLOSE) never wait, and a task wake-up per request (a future, a loop
turn, a task step) cost about 7 % of the gateway's CPU per small file (issue 14).

:func:`start` runs the coroutine's first step with ``task`` as the current task, so that
whatever the step asks of its task (``asyncio.timeout``, ``asyncio.current_task``, SQLAlchemy's
pool waits) finds the task that will finish it. It returns the result if the coroutine ended,
or a :class:`Started` the task awaits to run the rest: every later step and cancellation then
reach the coroutine through that task, as if it had been awaited there from the start.

Caller's contract: ``task`` is suspended (waiting for a future this caller controls), no task is
running (a loop callback), and the step runs in ``task``'s context (``Context.run``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# asyncio's own record of the running task (the C implementation's, when built), used by
# Task.__step itself; there is no public way to make a task current on 3.11.
_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task


class Started(Generic[T]):
    """A coroutine begun by :func:`start` that waits: awaiting this runs it to its end."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, T], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, T]:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                sent = yield waiting  # the future the coroutine waits for, to the task
            except BaseException as exc:  # cancelled (or closed): the coroutine decides
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                continue
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


def start(
    coro: Coroutine[Any, Any, T], task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop
) -> tuple[T, None] | tuple[None, Started[T]]:
    """Run ``coro``'s first step as ``task``: ``(result, None)`` if it ended there, else
    ``(None, started)`` for ``task`` to await. An exception it raises propagates."""
    _enter_task(loop, task)
    try:
        waiting = coro.send(None)
    except StopIteration as done:
        return done.value, None
    finally:
        _leave_task(loop, task)
    return None, Started(coro, waiting)
