"""The statement budget of a set: what the pipeline sends to its database from intake to finish.

Counted with :mod:`tests.pipeline.sqlcount` (every cursor execution, an ``executemany`` being
one, plus BEGIN, COMMIT and ROLLBACK) while ``run_once`` takes a burst of GOs in, claims,
checks, routes, acknowledges and finishes them; divided by the number of sets. The sender's
profile is looked up before (it is cached and is the registry's query, not a set's). The sets
in hand commit together (``gateway/pipeline/turns.py``), so this is the figure of a batch of
eight: the intake's reads and transaction (with the claim), one transaction for the accepted
steps and one for the finished ones (no read or claim after them: nothing arrived meanwhile).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.types import SenderNumber
from tests.pipeline.conftest import Harness, harness_on
from tests.pipeline.sqlcount import counting, pipeline_engine
from tests.pki import StandardPki

SETS = 8
BUDGET = 6
"""Statements per set on the pipeline side (issue 14)."""


async def statements_per_set(h: Harness) -> tuple[float, dict[str, int]]:
    """Send ``SETS`` sets, run the pipeline over them; statements per set and by kind."""
    for n in range(1, SETS + 1):
        await h.send_set(seq=f"{n:05d}", parts=1)
    await h.pipeline.ctx.profile(SenderNumber(h.number))
    store = h.pipeline.ctx.store
    before = store.db.statements
    with counting(pipeline_engine(store)) as seen:
        assert await h.pipeline.run_once() == SETS
    # The pipeline's own count (logged at stop, printed by bench/e2e.py) is the same figure.
    assert store.db.statements - before == sum(seen.values()), seen
    assert len(h.acrfs()) == SETS
    assert all(a.accepted for _, a in h.acrfs())
    return sum(seen.values()) / SETS, dict(seen)


async def test_sqlite_budget(harness: Harness) -> None:
    """On SQLite, a set costs at most BUDGET statements from intake to finish."""
    per_set, seen = await statements_per_set(harness)
    print(f"statements per set (SQLite): {per_set:.2f} {seen}")
    assert per_set <= BUDGET, seen


@pytest.mark.postgres
async def test_postgresql_budget(
    tmp_path: Path, pg_url: str, cast: StandardPki, ssh_public_key: str
) -> None:
    """On PostgreSQL, the same budget."""
    h = await harness_on(tmp_path, pg_url, cast, ssh_public_key)
    try:
        per_set, seen = await statements_per_set(h)
    finally:
        await h.engine.dispose()
    print(f"statements per set (PostgreSQL): {per_set:.2f} {seen}")
    assert per_set <= BUDGET, seen
