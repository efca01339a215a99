"""``gateway config show`` (every setting, its value and its source, secrets redacted) and
``gateway config check FILE`` (exit 2 naming the line or the key; 0 and "ok")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.cli import main as cli_main
from gateway.cli.config import hide_url_secrets, line_of
from gateway.ops.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
SECRETS = ("db-secret", "smtp-secret", "sms-secret", "query-secret")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no GATEWAY_* variables."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _config(folder: Path) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        'state_dir = "/srv/state"\n'
        'database_url = "postgresql+asyncpg://gateway:db-secret@db.internal/gateway"\n'
        "[sftp]\nport = 2222\nhost = '0.0.0.0'\n"
        "[notify]\n"
        'smtp_password = "smtp-secret"\n'
        'sms_token = "sms-secret"\n'
        'sms_url = "https://sms.example.be/send?to=x&token=query-secret"\n'
    )
    return path


def test_show_names_the_source_of_each_value_and_redacts_secrets(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """File values say the file, GATEWAY_* the variable (it wins), the rest default; no secret
    reaches the output, in text or JSON."""
    config = _config(workdir)
    monkeypatch.setenv("GATEWAY_SFTP__PORT", "2200")
    monkeypatch.setenv("gateway_log_level", "debug")  # matched regardless of case
    assert cli_main.main(["--config", str(config), "config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    rows = {r["key"]: (r["value"], r["source"]) for r in json.loads(out)["settings"]}
    assert {key: rows[key] for key in _SHOWN} == {
        "state_dir": ("/srv/state", f"file {config}"),
        "database_url": (
            "postgresql+asyncpg://gateway:***@db.internal/gateway",
            f"file {config}",
        ),
        "log_level": ("debug", "environment gateway_log_level"),
        "log_format": ("json", "default"),
        "sftp.port": (2200, "environment GATEWAY_SFTP__PORT"),
        "sftp.host": ("0.0.0.0", f"file {config}"),  # noqa: S104  (a value shown, not bound)
        "notify.smtp_password": ("<redacted>", f"file {config}"),
        "notify.sms_token": ("<redacted>", f"file {config}"),
        "notify.sms_url": ("https://sms.example.be/send?to=x&token=***", f"file {config}"),
        "pipeline.set_timeout": ("P1D", "default"),
    }
    assert set(rows) >= {"ftp.plain_listeners", "security.verify_installation"}
    assert cli_main.main(["--config", str(config), "config", "show"]) == 0
    text = capsys.readouterr().out
    assert "sftp.port = 2200" in text
    assert "# environment GATEWAY_SFTP__PORT" in text
    assert [s for s in SECRETS if s in out + text] == []


_SHOWN = (
    "state_dir",
    "database_url",
    "log_level",
    "log_format",
    "sftp.port",
    "sftp.host",
    "notify.smtp_password",
    "notify.sms_token",
    "notify.sms_url",
    "pipeline.set_timeout",
)


def test_show_without_a_file_lists_defaults(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No settings file: every value is a default and the header says so."""
    assert cli_main.main(["config", "show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# settings file: (none; defaults and environment)"
    assert all(line.endswith("# default") for line in lines[1:])
    assert len(lines) - 1 == len(_every_key())


def _every_key() -> list[str]:
    from gateway.cli.config import leaves

    return [".".join(k) for k, _ in leaves(GatewaySettings.model_construct())]


def test_url_secrets_are_hidden() -> None:
    """The password of a URL and credential-like parameters; nothing else changes."""
    cases = {
        "postgresql+asyncpg://u:p@h:5432/d": "postgresql+asyncpg://u:***@h:5432/d",
        "postgresql+asyncpg://u@h/d": "postgresql+asyncpg://u@h/d",
        "https://h/x?api_key=k&to=1": "https://h/x?api_key=***&to=1",
        "config/services.toml": "config/services.toml",
    }
    assert {url: hide_url_secrets(url) for url in cases} == cases


def test_check_accepts_the_example_file(capsys: pytest.CaptureFixture[str]) -> None:
    """config/gateway.example.toml (every key, its default) is ok."""
    example = ROOT / "config" / "gateway.example.toml"
    assert cli_main.main(["config", "check", str(example)]) == 0
    assert capsys.readouterr().out == f"{example}: ok\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("state_dir =\n", "bad.toml: not valid TOML: Invalid value (at line 1, column 12)"),
        ('log_level = "info"\n[sftp]\nprot = 8022\n', "bad.toml:3: sftp.prot: Extra inputs"),
        ("[sftp]\nport = 'x'\n", "bad.toml:2: sftp.port: Input should be a valid integer"),
        ("[sftpp]\nport = 1\n", "bad.toml:1: sftpp: Extra inputs are not permitted"),
        ("sftp.port = 70000\n", "bad.toml:1: sftp.port: Input should be less than or equal"),
        ("[pipeline]\nconcurrency = 8\nadmission_backlog = 2\n", "bad.toml:1: pipeline: Value"),
        ("sftp = { port = -1 }\n", "bad.toml: sftp.port: Input should be greater than"),
    ],
)
def test_check_names_the_line_or_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    """A syntax error by its line, a bad key by its dotted name and (when found) its line;
    exit 2."""
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert cli_main.main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gateway config: {tmp_path}/"), err
    assert message in err, err


def test_check_ignores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file is judged on its own: a bad GATEWAY_* variable is not the file's fault."""
    monkeypatch.setenv("GATEWAY_SFTP__PORT", "not a port")
    good = tmp_path / "good.toml"
    good.write_text("[sftp]\nport = 2222\n")
    assert cli_main.main(["config", "check", str(good)]) == 0
    assert capsys.readouterr().out.endswith(": ok\n")


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "no such file"), (b"state_dir = '\xff'\n", "not UTF-8"), ("dir", "cannot read")],
)
def test_check_of_a_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | str | None, words: str
) -> None:
    """Missing, not UTF-8, a folder: exit 2, one message, no traceback."""
    path = tmp_path / "gateway.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "dir":
        path.mkdir()
    assert cli_main.main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "Traceback" not in err


def test_line_of_follows_tables_and_dotted_keys() -> None:
    """The line of a key set under its table, as a dotted key, or of the table itself."""
    text = "a = 1\n[sftp]\n# port = 1\nport = 2\n[ftp.plain_listeners.x]\nhost = 'h'\n"
    found = {
        key: line_of(text, key)
        for key in [("a",), ("sftp", "port"), ("ftp", "plain_listeners", "x", "host"), ("b",)]
    }
    assert found == {
        ("a",): 1,
        ("sftp", "port"): 4,
        ("ftp", "plain_listeners", "x", "host"): 6,
        ("b",): None,
    }
