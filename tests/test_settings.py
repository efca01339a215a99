"""Settings: defaults load, the example file matches the models, unknown keys are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.ops.settings import SettingsError, load_settings
from gateway.spool.folders import NamePolicy

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads() -> None:
    """config/gateway.example.toml documents valid keys only."""
    settings = load_settings(ROOT / "config" / "gateway.example.toml")
    assert settings.sftp.port == 8022


def test_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    """A typo in gateway.toml stops loading with a message naming the key."""
    bad = tmp_path / "gateway.toml"
    bad.write_text("[sftp]\nprot = 22\n")
    with pytest.raises(SettingsError, match=r"sftp\.prot"):
        load_settings(bad)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GATEWAY_SFTP__PORT wins over the file."""
    cfg = tmp_path / "gateway.toml"
    cfg.write_text("[sftp]\nport = 2222\n")
    monkeypatch.setenv("GATEWAY_SFTP__PORT", "3333")
    assert load_settings(cfg).sftp.port == 3333


def test_wrong_type_is_refused(tmp_path: Path) -> None:
    """A value of the wrong type names its key."""
    bad = tmp_path / "gateway.toml"
    bad.write_text('[limits]\nmax_file_bytes = "lots"\n')
    with pytest.raises(SettingsError, match=r"limits\.max_file_bytes"):
        load_settings(bad)


def test_admission_below_concurrency_is_refused(tmp_path: Path) -> None:
    """An admission backlog that could never fill the node's slots is refused with the fix."""
    bad = tmp_path / "gateway.toml"
    bad.write_text("[pipeline]\nconcurrency = 8\nadmission_backlog = 4\n")
    with pytest.raises(SettingsError, match=r"admission_backlog \(4\) is below concurrency \(8\)"):
        load_settings(bad)
    off = tmp_path / "off.toml"
    off.write_text("[pipeline]\nconcurrency = 8\nadmission_backlog = 0\n")
    assert load_settings(off).pipeline.admission_backlog == 0


def test_time_zone_is_checked_and_reaches_the_name_check(tmp_path: Path) -> None:
    """``pipeline.timezone`` must name a real zone; the channels' "today" is read in it."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[pipeline]\ntimezone = "Europe/Brusels"\n')
    with pytest.raises(SettingsError, match=r"pipeline\.timezone: .*Europe/Brusels"):
        load_settings(bad)
    assert str(load_settings().pipeline.timezone) == "Europe/Brussels"
    # UTC+14 and UTC-12 are 26 hours apart: their dates always differ, so each check below can
    # only pass when the channel reads today in the configured zone.
    for zone, hours in (("Etc/GMT-14", 14), ("Etc/GMT+12", -12)):
        cfg = tmp_path / f"{hours}.toml"
        cfg.write_text(f'[pipeline]\ntimezone = "{zone}"\n')
        policy = NamePolicy.from_settings(load_settings(cfg))
        before = (datetime.now(UTC) + timedelta(hours=hours)).date()
        today = policy.today()
        after = (datetime.now(UTC) + timedelta(hours=hours)).date()
        assert today in (before, after), (zone, today)
