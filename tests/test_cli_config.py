"""Where the command line finds its settings: ``--config``, ``config/gateway.toml`` in the working
directory, else the installed ``/etc/batch-gateway/gateway.toml`` with relative paths resolved
there (the systemd unit's working directory); ``GATEWAY_*`` over any file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.cli import main as cli_main
from gateway.ops.settings import SettingsError


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /etc/batch-gateway, and an empty working directory."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "gateway.toml").write_text(
        'state_dir = "/var/lib/bg"\n[ftp]\nnetworks_file = "n.toml"\n'
    )
    monkeypatch.setattr(cli_main, "SYSTEM_CONFIG_DIR", etc)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("GATEWAY_STATE_DIR", "GATEWAY_PIPELINE__SERVICES_FILE"):
        monkeypatch.delenv(name, raising=False)
    return etc


def _args(config: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=config)


def test_the_installed_file_is_found_and_anchors_relative_paths(system: Path) -> None:
    """Outside the repository the system file is read; its relative paths resolve under it."""
    settings = cli_main.settings_from(_args())
    assert settings.state_dir == Path("/var/lib/bg")
    assert settings.pipeline.services_file == system / "config" / "services.toml"
    assert settings.ftp.networks_file == system / "n.toml"


def test_the_working_directory_wins_and_the_environment_over_files(
    system: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config/gateway.toml here is taken before the system file; GATEWAY_* beats both."""
    local = Path("config")
    local.mkdir()
    (local / "gateway.toml").write_text('state_dir = "here"\n')
    assert cli_main.settings_from(_args()).state_dir == Path("here")
    assert cli_main.settings_from(_args()).pipeline.services_file == Path("config/services.toml")
    monkeypatch.setenv("GATEWAY_STATE_DIR", "/srv/state")
    assert cli_main.settings_from(_args()).state_dir == Path("/srv/state")
    given = cli_main.settings_from(_args(system / "gateway.toml"))
    assert given.ftp.networks_file == Path("n.toml")  # --config: relative to where one runs


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    """`state_dir =` is a SettingsError naming the file and the line (exit 2 at the edge)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("log_level = 'info'\nstate_dir =\n")
    with pytest.raises(SettingsError, match=r"bad\.toml: not valid TOML: .*line 2"):
        cli_main.settings_from(_args(bad))
