"""The refused-connection log's windows (issue 15 item 8): pure, with ``now`` passed in."""

from __future__ import annotations

from gateway.channels.refusals import RefusalLogPolicy, RefusalWindows, Summary


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
