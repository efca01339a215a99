"""The event loop of the long-running commands (gateway/ops/loop.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from gateway.ops.loop import EventLoop, EventLoopUnavailable, loop_factory, run, running_kind
from gateway.ops.settings import SettingsError, load_settings
from tests.tools import gateway_cli

ROOT = Path(__file__).resolve().parents[2]


async def _kind_and_answer() -> tuple[str, int]:
    await asyncio.sleep(0)
    return running_kind(), 42


@pytest.mark.parametrize("kind", list(EventLoop))
def test_run_runs_on_the_loop_asked_for(kind: EventLoop) -> None:
    """The coroutine runs on a new loop of the kind asked for, and its result comes back."""
    assert run(_kind_and_answer, kind) == (str(kind), 42)


def test_the_loop_is_closed_after_the_run() -> None:
    """As asyncio.run: the loop is closed once the coroutine is done."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def keep() -> None:
        loops.append(asyncio.get_running_loop())

    run(keep, EventLoop.UVLOOP)
    assert loops[0].is_closed()


def test_missing_uvloop_is_a_clear_error_and_no_coroutine_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop asked for but not importable: an error naming both ways out, raised before the
    coroutine is made (nothing left never awaited)."""
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    made: list[str] = []

    def main() -> Coroutine[Any, Any, None]:
        made.append("coroutine")
        raise AssertionError("not to be called")

    with pytest.raises(EventLoopUnavailable) as caught:
        run(main, EventLoop.UVLOOP)
    assert "pip install uvloop" in str(caught.value)
    assert 'event_loop = "asyncio"' in str(caught.value)
    assert made == []
    # asyncio's own loop needs nothing more.
    assert loop_factory(EventLoop.ASYNCIO) is asyncio.new_event_loop


def test_the_setting_defaults_to_uvloop_and_refuses_other_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``event_loop``: uvloop unless set; "asyncio" is taken; anything else is a settings
    error naming the key."""
    monkeypatch.delenv("GATEWAY_EVENT_LOOP", raising=False)
    assert load_settings().event_loop == "uvloop"
    assert load_settings(event_loop="asyncio").event_loop == "asyncio"
    with pytest.raises(SettingsError, match="event_loop"):
        load_settings(event_loop="trio")


async def test_the_test_suite_runs_on_the_default_loop() -> None:
    """tests/conftest.py: async tests run on the loop ``gateway serve`` runs by default."""
    assert running_kind() == "uvloop"


def test_serve_without_uvloop_says_what_to_do_and_exits_1(tmp_path: Path) -> None:
    """``gateway serve`` where uvloop cannot be imported (a module of that name that raises
    ImportError comes first on the path): one line on stderr naming both ways out, exit 1,
    nothing started (no state directory made)."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "uvloop.py").write_text('raise ImportError("uvloop is not here")\n')
    done = gateway_cli(shadow, "serve", GATEWAY_STATE_DIR=str(tmp_path / "state"))
    assert done.returncode == 1, done
    assert done.stderr.startswith('gateway serve: event_loop = "uvloop" but uvloop is not'), done
    assert 'set event_loop = "asyncio"' in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()
