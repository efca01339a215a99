"""The event loop the long-running commands run on: uvloop by default, asyncio's own on request.

Why uvloop: every request of every session passes through the loop, and at a moderate load
(150 sets/s offered to 20 SFTP senders, ``bench/e2e.py --rate 150 --pin``) the loop is woken for
nearly every packet. Measured in five pairs of paced runs taken in turn, uvloop gave a p99
from GO to ACRF of 244-409 ms against 294-768 ms, at the same or less CPU per set (6.2-6.3
against 6.2-6.8 ms); unpaced, 195.9 sets/s at 4.7 ms against 185.3 at 5.1; a new SFTP session
(connect, key login, one put) 6.5-7.5 ms of server CPU against 8.5-9.5.

``event_loop = "asyncio"`` (top level of the settings) runs asyncio's own loop: for debugging
with asyncio's debug mode, or where uvloop is not installed. The loop in force is logged at
start (``runtime.event_loop``).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoop(enum.StrEnum):
    """The event loop implementations the gateway runs on."""

    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class EventLoopUnavailable(Exception):
    """The event loop the settings name cannot be made here (the message says what to do)."""


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """The function that makes a new loop of ``kind``; raises :class:`EventLoopUnavailable`
    when uvloop is asked for and cannot be imported."""
    if kind is EventLoop.ASYNCIO:
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError as exc:
        raise EventLoopUnavailable(
            'event_loop = "uvloop" but uvloop is not installed: install it '
            '(pip install uvloop) or set event_loop = "asyncio"'
        ) from exc
    return uvloop.new_event_loop


def run(main: Callable[[], Coroutine[Any, Any, T]], kind: EventLoop) -> T:
    """Run the coroutine ``main()`` to completion on a new loop of ``kind``, as
    :func:`asyncio.run` does (the loop's async generators and default executor are shut down,
    then the loop is closed). ``main`` is called only once the loop is made, so a loop that
    cannot be made leaves no coroutine never awaited."""
    factory = loop_factory(kind)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def running_kind() -> str:
    """The running loop's implementation, read from the loop itself: "uvloop", "asyncio", or
    the module of another loop class."""
    module = type(asyncio.get_running_loop()).__module__
    if module.startswith("uvloop"):
        return str(EventLoop.UVLOOP)
    if module.startswith("asyncio"):
        return str(EventLoop.ASYNCIO)
    return module
