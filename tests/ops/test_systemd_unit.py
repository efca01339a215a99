"""The shipped systemd unit keeps the properties the daemon and the security rules rely on."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest

from gateway.ops.settings import PipelineSettings

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "batch-gateway.service"
EXAMPLE = UNIT.parents[1] / "config" / "gateway.example.toml"


def service_section() -> dict[str, list[str]]:
    """Every key of [Service] with all its values, in order (keys may repeat)."""
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def test_notify_type_with_watchdog() -> None:
    """Type=notify, the main process may notify, and a watchdog is armed."""
    service = service_section()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0


def test_execstart_passes_the_config_before_the_command() -> None:
    """--config is a global option, so it comes before 'serve'."""
    argv = shlex.split(service_section()["ExecStart"][0])
    assert argv[1:] == ["--config", "/etc/batch-gateway/gateway.toml", "serve"]


def test_working_directory_is_not_writable_state() -> None:
    """Relative config paths must not resolve inside the daemon-writable state directory."""
    service = service_section()
    assert service["WorkingDirectory"] == ["/etc/batch-gateway"]
    assert "GATEWAY_STATE_DIR=/var/lib/batch-gateway" in service["Environment"]
    assert service["StateDirectory"] == ["batch-gateway"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "true"),
        ("PrivateTmp", "true"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
        ("User", "batch-gateway"),
        ("IPAddressDeny", "any"),
        ("IPAddressAllow", "localhost"),
    ],
)
def test_hardening(key: str, value: str) -> None:
    """The hardening DESIGN.md names is present."""
    assert service_section()[key] == [value]


def test_the_unit_lets_the_daemon_raise_its_pipeline_threads_as_far_as_the_example_asks() -> None:
    """LimitNICE=-10 is what the example's pipeline.priority_boost (10 levels above nice 0)
    needs, and all it grants (gateway.ops.priority)."""
    example = tomllib.loads(EXAMPLE.read_text().replace("# priority_boost", "priority_boost"))
    boost = PipelineSettings(**example["pipeline"]).priority_boost
    assert boost > 0
    assert service_section()["LimitNICE"] == [f"-{boost}"]
