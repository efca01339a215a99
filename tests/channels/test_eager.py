"""Starting a coroutine as a step of a waiting task (:mod:`gateway.channels.eager`).

Each case has a "session task" waiting for work, as the SFTP layer's does, and begins a
coroutine from a loop callback (no task running), as the channel's data callback does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gateway.channels import eager


async def _begin_in_callback(
    make: Callable[[asyncio.Task[Any]], Coroutine[Any, Any, str]],
) -> tuple[tuple[str | None, eager.Started[str] | None], asyncio.Task[str]]:
    """Run ``make(task)``'s first step from a loop callback as the step of a waiting task;
    what :func:`eager.start` returned, and the task's result (it awaits what was handed on)."""
    loop = asyncio.get_running_loop()
    handed: asyncio.Future[eager.Started[str] | None] = loop.create_future()

    async def session() -> str:
        started = await handed
        return "ended inline" if started is None else await started

    task = loop.create_task(session())
    await asyncio.sleep(0)  # the task now waits for ``handed``
    outcome: asyncio.Future[tuple[str | None, eager.Started[str] | None]] = loop.create_future()

    def callback() -> None:
        assert asyncio.current_task() is None
        try:
            begun = eager.start(make(task), task, loop)
        except Exception as exc:  # reported by the test, not lost in the loop's handler
            outcome.set_exception(exc)
            task.cancel()
            return
        outcome.set_result(begun)
        handed.set_result(begun[1])

    loop.call_soon(callback)
    return await outcome, task


async def test_a_coroutine_that_does_not_wait_ends_in_the_callback_as_the_task() -> None:
    seen: list[asyncio.Task[Any] | None] = []

    async def answer(task: asyncio.Task[Any]) -> str:
        seen.append(asyncio.current_task())
        # Never waits (ASYNC100): entering it is the point, it needs a current task.
        async with asyncio.timeout(5):  # noqa: ASYNC100
            seen.append(asyncio.current_task())
        return "answer"

    (result, started), task = await _begin_in_callback(answer)
    assert (result, started) == ("answer", None)
    assert await task == "ended inline"
    assert seen == [task, task]  # the step ran as the waiting task, current no longer
    assert asyncio.current_task() is not task


async def test_a_coroutine_that_waits_is_finished_by_the_task() -> None:
    steps: list[str] = []

    async def answer(task: asyncio.Task[Any]) -> str:
        steps.append("first step")
        await asyncio.sleep(0)  # a bare yield
        assert asyncio.current_task() is task
        steps.append("after a loop turn")
        await asyncio.sleep(0.01)  # a future
        return "answer"

    (result, started), task = await _begin_in_callback(answer)
    assert result is None
    assert started is not None
    assert steps == ["first step"]
    assert await task == "answer"
    assert steps == ["first step", "after a loop turn"]


async def test_a_timeout_begun_inline_cancels_through_the_task() -> None:
    """asyncio.timeout entered in the first step cancels the task when it expires; the
    cancellation reaches the coroutine, whose timeout turns it into TimeoutError, and the task
    goes on (it is not left cancelled)."""

    async def answer(task: asyncio.Task[Any]) -> str:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.get_running_loop().create_future()  # never done
        except TimeoutError:
            return "timed out"
        return "not reached"

    (_, started), task = await _begin_in_callback(answer)
    assert started is not None
    assert await task == "timed out"
    assert not task.cancelled()


async def test_cancelling_the_task_reaches_the_coroutine() -> None:
    cleaned: list[str] = []

    async def answer(task: asyncio.Task[Any]) -> str:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            cleaned.append("finally ran")
        return "not reached"

    (_, started), task = await _begin_in_callback(answer)
    assert started is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally ran"]


async def test_an_exception_in_the_first_step_propagates_and_leaves_no_task_current() -> None:
    loop = asyncio.get_running_loop()
    waiting = loop.create_future()
    task = loop.create_task(asyncio.wait_for(waiting, 5))
    await asyncio.sleep(0)

    async def broken() -> str:
        raise ValueError("boom")

    raised: asyncio.Future[tuple[BaseException, asyncio.Task[Any] | None]] = loop.create_future()

    def callback() -> None:
        try:
            eager.start(broken(), task, loop)
        except ValueError as exc:
            raised.set_result((exc, asyncio.current_task()))

    loop.call_soon(callback)
    exc, current = await raised
    assert str(exc) == "boom"
    assert current is None
    waiting.set_result(None)
    await task
