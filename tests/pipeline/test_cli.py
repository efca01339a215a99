"""`gateway trace` and `gateway publish` as an operator runs them (subprocess, real settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.pipeline.conftest import ROOT, Harness, set_names


def gateway(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m gateway --config <test config> ARGS`."""
    config = harness.state_dir.parent / "gateway.toml"
    config.write_text(
        f'state_dir = "{harness.state_dir}"\n'
        f'database_url = "{harness.url}"\n'
        "[pipeline]\n"
        f'services_file = "{ROOT / "config" / "services.toml"}"\n'
    )
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_trace_by_ticket_and_by_name(harness: Harness) -> None:
    """A ticket and the GO name both lead to the set, its files, delivery and ACRF."""
    go = await harness.send_set(parts=2)
    await harness.pipeline.run_once()
    [(ack, acrf)] = harness.acrfs()
    by_ticket = gateway(harness, "trace", acrf.ticket)
    assert by_ticket.returncode == 0, by_ticket.stderr
    assert f"set {acrf.ticket}" in by_ticket.stdout
    assert "acknowledged" in by_ticket.stdout
    assert f"OUT/{ack}" in by_ticket.stdout
    assert "delivered" in by_ticket.stdout
    by_name = gateway(harness, "trace", "--json", go)
    assert by_name.returncode == 0, by_name.stderr
    report = json.loads(by_name.stdout)
    [found] = report["sets"]
    assert found["ticket"] == acrf.ticket
    assert len(found["files"]) == 5  # 2 FI, 2 FS, the GO
    assert found["state"] == "acknowledged"
    by_ack = gateway(harness, "trace", ack)
    assert by_ack.returncode == 0, by_ack.stderr
    assert f"set {acrf.ticket}" in by_ack.stdout


async def test_trace_pending_refused_and_unknown(harness: Harness) -> None:
    """A waiting upload says so; an unknown name exits 1."""
    await harness.send_set(close=None)
    [fi], _, _, _ = set_names(sender=harness.number)
    pending = gateway(harness, "trace", fi)
    assert pending.returncode == 0, pending.stderr
    assert "waiting for its GO" in pending.stdout
    unknown = gateway(harness, "trace", "FI.NOPE")
    assert unknown.returncode == 1
    assert "nothing is known" in unknown.stdout


async def test_publish_command(harness: Harness, tmp_path: Path) -> None:
    """`gateway publish` places FO.NOTI + FS + GO in the sender's OUT folder."""
    content = tmp_path / "notification.xml"
    content.write_bytes(b"<NOTIFICATION/>")
    result = gateway(
        harness, "publish", "--sender", harness.number, "--env", "T", "--application", "NOTI",
        str(content),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    assert [p.split("/")[0] for p in printed] == ["OUTTEST"] * 3
    assert harness.out_names("OUTTEST") == sorted(p.split("/")[1] for p in printed)
    refused = gateway(harness, "publish", "--sender", "999998", str(content))
    assert refused.returncode == 1
    assert "not registered" in refused.stderr
