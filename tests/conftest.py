"""Every async test runs on the event loop ``gateway serve`` runs on by default (uvloop), so
the in-process tests exercise the loop production uses (gateway/ops/loop.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from gateway.ops.loop import EventLoop, loop_factory


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's hook: one loop factory, the default loop's."""
    return {str(EventLoop.UVLOOP): loop_factory(EventLoop.UVLOOP)}
