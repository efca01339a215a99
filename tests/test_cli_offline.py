"""Command-line smoke tests of the offline commands: `gateway codes` and `gateway check-name`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.core.codes import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "config" / "gateway.example.toml")


@pytest.fixture(autouse=True)
def _in_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example settings name config/services.toml relative to the project root."""
    monkeypatch.chdir(ROOT)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--config", CONFIG, *argv])
    return code, capsys.readouterr().out


def test_codes_table_json_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway codes` prints every code as a table, as JSON, and as the docs page."""
    code, out = run(capsys, "codes")
    assert code == 0
    assert out.splitlines()[0].split() == ["CODE", "NAME", "MESSAGE", "CHECK"]
    code, out = run(capsys, "codes", "--json")
    assert [row["code"] for row in json.loads(out)] == [int(c) for c in CATALOGUE]
    code, out = run(capsys, "codes", "--markdown")
    assert out == (ROOT / "docs" / "codes.md").read_text(encoding="utf-8")


def test_check_name_accepts_a_valid_name(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid name in its folder, by its sender, exits 0 and says accepted."""
    code, out = run(
        capsys,
        "check-name",
        "FI.DMFA.006400.20260115.00001.R.1.1",
        "--sender",
        "006400",
        "--folder",
        "IN",
        "--today",
        "2026-01-20",
    )
    assert code == 0
    assert out.splitlines()[-1] == "accepted (2026-01-20, folder IN)"
    assert "application  DMFA      ok" in out


def test_check_name_reads_today_in_the_configured_time_zone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --today the date is today in ``pipeline.timezone``: a name dated today in UTC+14
    is accepted there and in the future (111) in UTC-12, 26 hours behind."""
    ahead = (datetime.now(UTC) + timedelta(hours=14)).date()
    name = f"FI.DMFA.006400.{ahead:%Y%m%d}.00001.R.1.1"
    monkeypatch.setenv("GATEWAY_PIPELINE__TIMEZONE", "Etc/GMT-14")
    code, out = run(capsys, "check-name", name)
    assert code == 0, out
    assert out.splitlines()[-1] == f"accepted ({ahead:%Y-%m-%d})"
    monkeypatch.setenv("GATEWAY_PIPELINE__TIMEZONE", "Etc/GMT+12")
    code, out = run(capsys, "check-name", name)
    assert code == 1
    assert out.splitlines()[-1].startswith(f"refused: 111: creation date {ahead:%Y%m%d} is after")


def test_check_name_explains_a_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    """A refused name exits 1, marks each bad element and prints the code and reason."""
    code, out = run(
        capsys,
        "check-name",
        "FI.DMFA.006401.20260115.00001.T.1.1",
        "--sender",
        "006400",
        "--folder",
        "IN",
        "--today",
        "2026-01-20",
    )
    assert code == 1
    assert out.splitlines()[-1] == "refused: 108: sender number 006401 is not yours"
    assert "119" in out


def test_check_name_json_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives a machine-readable verdict; terminal escapes in the name come out escaped."""
    code, out = run(capsys, "check-name", "FI.DMFA\x1b[31m", "--today", "2026-01-20", "--json")
    result = json.loads(out)
    assert code == 1
    assert (result["accepted"], result["code"]) == (False, 131)
    assert result["name"] == "FI.DMFA\\x1b[31m"
    assert "\x1b" not in out
    assert [e["element"] for e in result["elements"]][:2] == ["name", "kind"]


def test_check_name_uses_the_service_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    """config/services.toml says WECH names carry no parts suffix."""
    code, _ = run(capsys, "check-name", "FI.WECH.006400.20260115.00001.R", "--today", "2026-01-20")
    assert code == 0
    code, out = run(
        capsys, "check-name", "GO.WECH.006400.20260115.00001.R.1", "--today", "2026-01-20"
    )
    assert code == 1
    assert "no parts suffix" in out


def test_check_name_refuses_a_bad_date_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--today must be YYYY-MM-DD (usage error, exit 2)."""
    assert main(["check-name", "X", "--today", "15/01/2026"]) == 2
    assert "not a date" in capsys.readouterr().err


def test_check_name_broken_service_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid services file is reported and exits 2."""
    services = tmp_path / "services.toml"
    services.write_text("[services.DMFA]\nparts = 'maybe'\n")
    config = tmp_path / "gateway.toml"
    config.write_text(f"[pipeline]\nservices_file = '{services}'\n")
    code = main(["--config", str(config), "check-name", "FI.DMFA.006400.20260115.00001.R.1.1"])
    assert code == 2
    assert "gateway:" in capsys.readouterr().out


def test_check_name_without_a_service_catalogue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without config/services.toml the built-in parts rule applies (DMFA has parts)."""
    config = tmp_path / "gateway.toml"
    config.write_text(f"[pipeline]\nservices_file = '{tmp_path / 'none.toml'}'\n")
    name = "FI.DMFA.006400.20260115.00001.R.1.1"
    assert main(["--config", str(config), "check-name", name, "--today", "2026-01-20"]) == 0
    capsys.readouterr()


def test_console_script_runs() -> None:
    """The installed `gateway` entry point runs check-name in a fresh process."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "check-name",
            "TD.DIMN.006400.20260115.00001.R.1",
            "--today",
            "2026-01-20",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "accepted (2026-01-20)"
