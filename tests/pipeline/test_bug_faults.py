"""A set that keeps failing with a bug is ended with a negative ACRF, 999 and a ticket, instead
of being retried for ever (issue 15 follow-up); a resend of the same set is then accepted.

The bug is real and comes from a boundary we do not own, patched with ``monkeypatch`` for as
long as the first set is in hand: expat's ``ParserCreate`` (the XML parser under the formal
checks of every FI) raising, before the set's key is reserved; or ``os.mkdir`` raising for the
directory destination (``routed/``), after the checks reserved it, so the resend's acceptance
shows the key was released. Nothing of the pipeline is replaced. The backoff is set to zero, so
the test waits for events (sets finished), never for a timer. Written against what is seen from
outside: the sender's OUT folder, the ``sets`` rows, the log events and the metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.parsers import expat

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.ops.metrics import Metrics
from gateway.pipeline.tables import SetRow
from gateway.pipeline.worker import BUG_ATTEMPTS
from tests.pipeline.conftest import Harness


def _broken_parser(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("expat is broken")


_mkdir = os.mkdir


def _broken_mkdir_under_routed(path: Any, *args: Any, **kwargs: Any) -> None:
    if "routed" in Path(path).parts:
        raise RuntimeError("mkdir is broken")
    _mkdir(path, *args, **kwargs)


BUGS = {
    "checks": (expat, "ParserCreate", _broken_parser),
    "routing": (os, "mkdir", _broken_mkdir_under_routed),
}


async def _set_rows(harness: Harness) -> list[Any]:
    async with harness.engine.connect() as conn:
        return list((await conn.execute(select(SetRow).order_by(SetRow.id))).all())


@pytest.mark.parametrize("where", sorted(BUGS))
async def test_a_set_that_keeps_failing_with_a_bug_is_refused_with_999_then_accepted_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """BUG_ATTEMPTS set.failed (bug, each with a ticket), then one set.abandoned (critical,
    alert) and one negative ACRF 999 naming the last ticket; the row rejected and finished; the
    same set sent again (same names) is accepted."""
    pipeline = harness.pipeline
    metrics = Metrics.create()
    pipeline.ctx = dataclasses.replace(pipeline.ctx, metrics=metrics)
    pipeline.retry_first = timedelta(0)
    with capture_logs() as logs:
        async with asyncio.timeout(60):
            task = asyncio.create_task(pipeline.run())
            with monkeypatch.context() as patched:
                patched.setattr(*BUGS[where])
                await harness.send_set(seq="00001")
                await pipeline.wait_finished(1)
            [(_, refusal)] = harness.acrfs()
            await harness.send_set(seq="00001")
            await pipeline.wait_finished(2)
            await pipeline.aclose(deadline=10)
            await task

    failed = [e for e in logs if e["event"] == "set.failed"]
    assert [e["reason"] for e in failed] == ["bug"] * BUG_ATTEMPTS
    assert all(len(e["ticket"]) == 12 and e.get("exc_info") for e in failed)
    [abandoned] = [e for e in logs if e["event"] == "set.abandoned"]
    assert abandoned["log_level"] == "critical"
    assert abandoned["alert"] is True
    assert abandoned["tickets"] == [e["ticket"] for e in failed]
    assert abandoned["ticket"] == failed[-1]["ticket"]

    assert not refusal.accepted
    assert refusal.code == 999
    assert refusal.description is not None
    assert f"internal error, ticket {failed[-1]['ticket']}" in refusal.description
    assert "send the set again later" in refusal.description

    first, second = await _set_rows(harness)
    assert (first.ticket, first.state, first.code, first.finished) == (
        refusal.ticket,
        "rejected",
        999,
        True,
    )
    assert (second.state, second.finished) == ("acknowledged", True)
    acrfs = dict((acrf.ticket, acrf) for _, acrf in harness.acrfs())
    assert acrfs[second.ticket].accepted
    assert list(harness.routed()) == [second.ticket]

    assert metrics.sets_total.labels(outcome="failed")._value.get() == BUG_ATTEMPTS
    assert metrics.sets_total.labels(outcome="rejected")._value.get() == 1
    assert metrics.sets_total.labels(outcome="accepted")._value.get() == 1


class Failures:
    """A structlog processor a test awaits: set once ``count`` set.failed were logged."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.reached = asyncio.Event()

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event_dict.get("event") == "set.failed":
            self.seen += 1
            if self.seen >= self.count:
                self.reached.set()
        return event_dict


_replace = os.replace


def _broken_replace_into_out(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
    if "out" in Path(target).parts:
        raise RuntimeError("rename is broken")
    _replace(source, target, *args, **kwargs)


async def test_a_set_whose_refusal_fails_too_stays_in_the_retry_loop(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks fail with a bug, and so does every rename into OUT: at the BUG_ATTEMPTS-th
    failure the 999 refusal is decided but its ACRF cannot be written (set.abandon_failed,
    critical, alert, once); the set stays in the retry loop, no crash, and once the renames
    work again its ACRF 999 (the ticket of the failure that ended it) is written, once."""
    pipeline = harness.pipeline
    pipeline.retry_first = timedelta(0)
    failures = Failures(BUG_ATTEMPTS + 2)
    with capture_logs(processors=[failures]) as logs:
        async with asyncio.timeout(60):
            task = asyncio.create_task(pipeline.run())
            with monkeypatch.context() as patched:
                patched.setattr(expat, "ParserCreate", _broken_parser)
                patched.setattr(os, "replace", _broken_replace_into_out)
                await harness.send_set(seq="00001")
                await failures.reached.wait()
            await pipeline.wait_finished(1)
            await pipeline.aclose(deadline=10)
            await task

    failed = [e for e in logs if e["event"] == "set.failed"]
    assert len(failed) >= BUG_ATTEMPTS + 2
    assert {e["reason"] for e in failed} == {"bug"}
    abandon_failed = [e for e in logs if e["event"] == "set.abandon_failed"]
    assert [(e["log_level"], e.get("alert")) for e in abandon_failed] == [("critical", True)]
    assert not [e for e in logs if e["event"] == "set.abandoned"]
    [(_, refusal)] = harness.acrfs()
    assert refusal.code == 999
    assert refusal.description is not None
    assert f"internal error, ticket {failed[BUG_ATTEMPTS - 1]['ticket']}" in refusal.description
    [row] = await _set_rows(harness)
    assert (row.state, row.code, row.finished) == ("rejected", 999, True)
