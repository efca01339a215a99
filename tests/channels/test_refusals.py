"""The refused-connection log's windows (issue 15 item 8): pure, with ``now`` passed in."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from gateway.channels.penalties import PenaltyPolicy, SourceGuard
from gateway.channels.refusals import RefusalLog, RefusalLogPolicy, RefusalWindows, Summary
from gateway.ops.metrics import Metrics


def test_a_few_lines_per_source_and_window_then_a_summary() -> None:
    """Three lines per source per window; the rest counted per channel:reason and summarised
    when the window ends (at the next refusal or when asked); sources are apart."""
    windows = RefusalWindows(RefusalLogPolicy(per_source=3, window_seconds=10.0))
    written = [windows.note("192.0.2.0/24", "sftp:penalty", 0.0)[0] for _ in range(5)]
    assert written == [True, True, True, False, False]
    assert windows.note("198.51.100.0/24", "ftp:penalty", 1.0) == (True, None)
    windows.note("192.0.2.0/24", "web:penalty", 2.0)
    assert windows.due(9.9) == []
    assert windows.pending()
    expected = Summary(
        source="192.0.2.0/24",
        suppressed={"sftp:penalty": 2, "web:penalty": 1},
        window_seconds=10.0,
    )
    assert windows.note("192.0.2.0/24", "sftp:penalty", 10.0) == (True, expected)
    assert windows.due(11.0) == []  # the other source's window had nothing left out
    assert (windows.logged, windows.suppressed) == (5, 3)


def test_the_table_of_sources_is_bounded() -> None:
    """Past ``max_sources`` the oldest window goes, its count summarised, not lost."""
    windows = RefusalWindows(RefusalLogPolicy(per_source=1, window_seconds=60.0, max_sources=2))
    for _ in range(3):
        windows.note("a", "sftp:penalty", 0.0)
    windows.note("b", "sftp:penalty", 0.0)
    windows.note("c", "sftp:penalty", 0.0)
    assert len(windows) == 2
    assert windows.overflow() == [
        Summary(source="a", suppressed={"sftp:penalty": 2}, window_seconds=60.0)
    ]
    assert windows.drain() == []


# -- SECURITY.md 19: variants of a flood of refused connections ----------------------------------

_ROTATING = {
    # name: the peers of one flood (each connection from the next address)
    "ipv4-one-address": ["192.0.2.7"] * 200,
    "ipv4-rotating-in-its-24": [f"192.0.2.{n % 256}" for n in range(200)],
    "ipv4-mapped-and-plain": [
        f"::ffff:192.0.2.{n}" if n % 2 else f"192.0.2.{n}" for n in range(200)
    ],
    "ipv6-rotating-in-its-64": [f"2001:db8::{n:x}:1" for n in range(200)],
}


@pytest.mark.parametrize("flood", list(_ROTATING))
def test_a_flood_from_one_network_writes_a_few_lines_whatever_its_addresses(
    flood: str,
) -> None:
    """200 refusals from one network, from one address or rotating through the network (IPv4
    /24, IPv4 as IPv4-mapped IPv6, IPv6 /64), over two channels and two reasons: three
    ``connection.refused`` lines and, at the window's end, one summary counting the other 197
    per channel:reason; the metric counts all 200."""
    guard = SourceGuard(PenaltyPolicy())
    now = [0.0]
    refusals = RefusalLog(RefusalLogPolicy(per_source=3, window_seconds=60.0), clock=lambda: now[0])
    metrics = Metrics.create()
    kinds = [("sftp", "penalty"), ("ftp", "penalty"), ("sftp", "max_startups_per_source")]
    with capture_logs() as logs:
        for n, peer in enumerate(_ROTATING[flood]):
            channel, reason = kinds[n % len(kinds)]
            refusals.refused(
                channel=channel, source=guard.source(peer), peer=peer, reason=reason,
                metrics=metrics,
            )  # fmt: skip
        now[0] = 60.0
        refusals.flush()
    lines = [e for e in logs if e["event"] == "connection.refused"]
    [summary] = [e for e in logs if e["event"] == "connection.refused_summary"]
    assert len(lines) == 3
    assert len({e["source"] for e in lines}) == 1
    assert summary["suppressed"] == 197
    assert set(summary["by_reason"]) == {f"{c}:{r}" for c, r in kinds}
    counted = metrics.connections_refused_total
    assert sum(counted.labels(channel=c, reason=r)._value.get() for c, r in set(kinds)) == 200


def test_a_flood_across_windows_writes_a_few_lines_per_window() -> None:
    """A flood that goes on for five windows: three lines and one summary per window, never
    more, and nothing lost in the counts."""
    now = [0.0]
    refusals = RefusalLog(RefusalLogPolicy(per_source=3, window_seconds=10.0), clock=lambda: now[0])
    with capture_logs() as logs:
        for tick in range(500):  # 100 refusals per 10 s window
            now[0] = tick / 10
            refusals.refused(channel="sftp", source="192.0.2.0/24", peer="192.0.2.7",
                             reason="penalty")  # fmt: skip
        refusals.close()
    lines = [e for e in logs if e["event"] == "connection.refused"]
    summaries = [e for e in logs if e["event"] == "connection.refused_summary"]
    assert len(lines) == 15
    assert [s["by_reason"] for s in summaries] == [{"sftp:penalty": 97}] * 5
