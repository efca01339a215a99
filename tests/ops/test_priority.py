"""Thread priority: a pool's threads raise themselves, only themselves, and say once how it went."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from structlog.testing import capture_logs

from gateway.ops.priority import HIGHEST, ThreadBoost, raise_priority
from gateway.ops.settings import PipelineSettings


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def _may_raise(levels: int) -> bool:
    """Whether this process may raise a thread ``levels`` nice levels (root, or RLIMIT_NICE)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or 20 - soft <= _nice() - levels


def _nice_in_pool(boost: ThreadBoost, workers: int) -> list[int]:
    """The nice value each task of ``workers`` tasks saw, on a pool of ``workers`` threads."""
    with ThreadPoolExecutor(max_workers=workers, initializer=boost) as pool:
        return list(pool.map(lambda _: _nice(), range(workers)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_a_pool_thread_raises_itself_and_not_the_thread_that_started_it() -> None:
    if not _may_raise(5):
        pytest.skip("raising a thread's priority needs CAP_SYS_NICE or RLIMIT_NICE")
    before = _nice()
    boost = ThreadBoost(5, "test")
    with capture_logs() as logs:
        seen = _nice_in_pool(boost, 3)
    expected = max(HIGHEST, before - 5)
    assert seen == [expected] * 3
    assert _nice() == before  # the event loop's thread keeps its priority
    assert boost.outcome is not None
    assert (boost.outcome.before, boost.outcome.after, boost.outcome.refused) == (
        before,
        expected,
        False,
    )
    if expected != before:
        assert [e["event"] for e in logs] == ["threads.priority_raised"]
        assert logs[0]["role"] == "test"
        assert logs[0]["nice"] == expected


def test_no_boost_asks_nothing_and_says_nothing() -> None:
    boost = ThreadBoost(0, "test")
    with capture_logs() as logs:
        seen = _nice_in_pool(boost, 2)
    assert seen == [_nice()] * 2
    assert logs == []
    assert raise_priority(0).after == _nice()


_REFUSED_CHILD = """
import json, os
from concurrent.futures import ThreadPoolExecutor
from structlog.testing import capture_logs
from gateway.ops.priority import ThreadBoost
boost = ThreadBoost(5, "pipeline")
with capture_logs() as logs:
    with ThreadPoolExecutor(max_workers=3, initializer=boost) as pool:
        seen = list(pool.map(lambda _: os.getpriority(os.PRIO_PROCESS, 0), range(3)))
print(json.dumps({
    "seen": seen,
    "nice": os.getpriority(os.PRIO_PROCESS, 0),
    "refused": boost.outcome.refused,
    "events": [(e["event"], e["log_level"], e.get("hint", "")) for e in logs],
}))
"""


PR_CAPBSET_DROP = 24
CAP_SYS_NICE = 23


def _unprivileged() -> None:
    """In the child before it runs: no RLIMIT_NICE allowance, and no CAP_SYS_NICE (dropped from
    the bounding set, so root does not get it back at exec; <linux/prctl.h>, capability.h)."""
    resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_SYS_NICE)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_a_refused_raise_leaves_the_threads_as_they_were_and_warns_once() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _REFUSED_CHILD],
        preexec_fn=_unprivileged,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["refused"] is True
    assert report["seen"] == [report["nice"]] * 3  # every thread at the process's priority
    assert len(report["events"]) == 1  # once for the pool, not once per thread
    event, level, hint = report["events"][0]
    assert (event, level) == ("threads.priority_refused", "warning")
    assert "LimitNICE=-10" in hint
    assert "priority_boost = 0" in hint


def test_the_boost_is_a_setting_with_bounds() -> None:
    assert PipelineSettings().priority_boost == 0  # opt-in: it lowers the node's peak
    assert PipelineSettings(priority_boost=10).priority_boost == 10
    with pytest.raises(ValueError, match="priority_boost"):
        PipelineSettings(priority_boost=-1)
    with pytest.raises(ValueError, match="priority_boost"):
        PipelineSettings(priority_boost=40)
