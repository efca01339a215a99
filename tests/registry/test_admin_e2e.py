"""End to end through ``gateway admin``: the guide's tasks, in its order, as the issue lists them.

1. provision an enterprise with its HTB, and activate it (first login);
2. activate two qualities;
3. appoint a co-HTB, a TB per quality and a co-TB;
4. create, block, unblock, reset and delete users;
5. switch password login off, and see a password login refused;
6. configure structured messages for one quality, and read the sender number from the overview.

Then a forbidden action, and ``audit verify`` catching a record edited directly in the database.
The commands run in-process through ``gateway.cli.main.main`` with real files, a real SQLite
database, real keys (ssh-keygen) and a real certificate (openssl).
"""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
import sys
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.cli.main import main
from tests.registry.conftest import Certs, KeyPair

ROOT = Path(__file__).resolve().parents[2]
KBO = "0417497106"


@pytest.fixture
def admin_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings from the environment, a state directory, and logging restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GATEWAY_PIPELINE__SERVICES_FILE", str(ROOT / "config" / "services.toml"))
    monkeypatch.setenv("GATEWAY_SECURITY__ARGON2_TIME_COST", "1")
    monkeypatch.setenv("GATEWAY_SECURITY__ARGON2_MEMORY_KIB", "8")
    monkeypatch.setenv("GATEWAY_SECURITY__ARGON2_PARALLELISM", "1")
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield tmp_path / "state"
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


class Admin:
    """Runs ``gateway admin --json …`` in-process and returns (exit code, parsed output)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, actor: str | None = None, stdin: str = "") -> tuple[int, Any]:
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        argv = ["admin", "--json", *(["--as", actor] if actor else []), *args]
        code = main(argv)
        out = self.capsys.readouterr().out
        return code, json.loads(out) if out.strip() else None

    def ok(self, *args: str, actor: str | None = None, stdin: str = "") -> Any:
        """Run a command that must succeed."""
        code, data = self(*args, actor=actor, stdin=stdin)
        assert code == 0, (args, data)
        return data


@pytest.fixture
def admin(
    admin_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Admin:
    """The command runner."""
    return Admin(capsys, monkeypatch)


def _activation_messages(outbox: Path) -> tuple[str, str]:
    eml = next(outbox.glob("*.eml"))
    body = message_from_bytes(eml.read_bytes(), policy=default_policy).get_body()
    assert body is not None
    login = re.search(r"username is: (\S+)", body.get_content())
    sms = json.loads(next(outbox.glob("*.sms.json")).read_text())["text"]
    password = re.search(r": (\S+)$", sms)
    assert login is not None
    assert password is not None
    return login.group(1), password.group(1)


def test_the_guide_end_to_end(
    admin: Admin, admin_env: Path, ssh_keys: list[KeyPair], certs: Certs, tmp_path: Path
) -> None:
    """Every task of the guide, done from the command line, in order."""
    admin.ok("db", "migrate")

    # 1. Provision with an HTB without national register number, then activate by first login.
    made = admin.ok(
        "enterprise", "provision", KBO, "--name", "ACME Payroll",
        "--htb-name", "Anne Martin", "--htb-email", "anne@acme.example",
        "--htb-phone", "+32470112233",
    )  # fmt: skip
    assert made["status"] == "pending"
    htb, temporary = _activation_messages(admin_env / "outbox")
    assert htb == made["htb_login"]
    assert admin.ok("enterprise", "show", KBO)["status"] == "pending"
    first = admin.ok("login", "check", htb, stdin=temporary + "\n")
    assert first["must_change_password"] is True
    assert admin.ok("enterprise", "show", KBO)["status"] == "active"
    admin.ok("password", "change", htb, stdin=f"{temporary}\nAnne-new-pass-2026\n")

    # 2. Two qualities.
    employer, secretariat = f"{KBO}/employer", f"{KBO}/social_secretariat"
    admin.ok("quality", "activate", KBO, "employer", actor=htb)
    admin.ok("quality", "activate", KBO, "social_secretariat", actor=htb)

    # 3. Helpers: a co-HTB, a TB per quality, a co-TB (appointed by the TB).
    def user(quality: str, login: str, by: str) -> str:
        data = admin.ok(
            "user", "create", quality, "--name", login.title(), "--email", f"{login}@acme.example",
            "--login", login, actor=by,
        )  # fmt: skip
        return str(data["temporary_password"])

    user(employer, "carl", htb)
    user(employer, "tina", htb)
    user(secretariat, "sam", htb)
    user(employer, "cora", htb)
    admin.ok("role", "appoint", "co-HTB", "carl", actor=htb)
    admin.ok("role", "appoint", "TB", "tina", "--quality", employer, actor=htb)
    admin.ok("role", "appoint", "TB", "sam", "--quality", secretariat, actor=htb)
    admin.ok("role", "appoint", "co-TB", "cora", "--quality", employer, actor="tina")
    roles = {
        (r["login"], r["role"], r["quality"]) for r in admin.ok("enterprise", "show", KBO)["roles"]
    }
    assert roles == {
        (htb, "HTB", None),
        ("carl", "co-HTB", None),
        ("tina", "TB", "employer"),
        ("sam", "TB", "social_secretariat"),
        ("cora", "co-TB", "employer"),
    }

    # 4. User lifecycle, by the TB of the quality.
    password = user(employer, "uma", "tina")
    admin.ok("user", "block", "uma", actor="tina")
    code, refused = admin("login", "check", "uma", stdin=password + "\n")
    assert (code, refused["error"]) == (1, "blocked")
    admin.ok("user", "unblock", "uma", actor="cora")
    reset = admin.ok("user", "reset-password", "uma", actor="tina")["temporary_password"]
    assert admin.ok("login", "check", "uma", stdin=reset + "\n")["must_change_password"] is True
    code, weak = admin("password", "change", "uma", stdin=f"{reset}\nshort\n")
    assert code == 1
    assert "at least 10 characters" in weak["message"]
    admin.ok("user", "delete", "uma", actor="tina")
    statuses = {u["login"]: u["status"] for u in admin.ok("user", "list", employer, actor="tina")}
    assert statuses["uma"] == "deleted"

    # A TB may not act on the other quality: a clear refusal naming the role, nothing changed.
    code, forbidden = admin("user", "create", secretariat, "--name", "X", "--email", "x@a.example",
                            actor="tina")  # fmt: skip
    assert code == 1
    assert forbidden["error"] == "forbidden"
    assert (
        "needs role HTB or co-HTB or TB or co-TB for quality social_secretariat"
        in forbidden["message"]
    )
    assert [u["login"] for u in admin.ok("user", "list", secretariat, actor=htb)] == ["sam"]

    # 5. Password login off: a password login is refused.
    admin.ok("enterprise", "password-login", KBO, "off", actor=htb)
    code, off = admin("login", "check", htb, stdin="Anne-new-pass-2026\n")
    assert (code, off["error"]) == (1, "password_login_disabled")

    # 6. Structured messages for the employer quality, by its TB, in the guide's order.
    cert = tmp_path / "signer.der"
    cert.write_bytes(certs.make("ACME signer", der=True))
    key = tmp_path / "id.pub"
    key.write_text(ssh_keys[0].public_line + "\n")
    admin.ok("structured", "save", employer, actor="tina")
    admin.ok(
        "structured", "technical-user", employer, "--name", "Tom Tech",
        "--email", "tom@acme.example",
        "--phone", "+32470998877", "--language", "fr", "--login", "acme-batch", actor="tina",
    )  # fmt: skip
    channel = admin.ok(
        "structured", "channel", employer, "sftp", "--ssh-key", str(key), actor="tina"
    )
    # The signing certificate must chain to the trust folder ([signature] trust_dir, here the
    # default certs/trust under the working directory): refused (905) until it is there.
    code, untrusted = admin("structured", "certificate", employer, str(cert), actor="tina")
    assert code == 1
    assert untrusted["message"].startswith("905: ")
    (tmp_path / "certs" / "trust").mkdir(parents=True)
    (tmp_path / "certs" / "trust" / "acme-signer.der").write_bytes(cert.read_bytes())
    registered = admin.ok("structured", "certificate", employer, str(cert), actor="tina")
    assert "register its successor" in registered["warning"]  # it expires in 30 days
    admin.ok("structured", "services", employer, "DMFA", "DMWA", actor="tina")
    overview = admin.ok("structured", "overview", employer, actor="cora")
    assert re.fullmatch(r"[0-9]{6}", overview["sender"])
    assert overview["sender"] == channel["sender"]
    assert overview["technical_user"]["login"] == "acme-batch"
    assert overview["technical_user"]["language"] == "fr"
    assert overview["services"] == ["DMFA", "DMWA"]
    assert "CN=ACME signer" in overview["certificates"][0]["subject"]
    profile = admin.ok("sender", "show", overview["sender"])
    assert profile["channels"] == ["sftp"]

    # The audit trail verifies, then catches a record edited directly in the database.
    assert admin.ok("audit", "verify")["problems"] == []
    database = admin_env / "registry.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE audit_log SET actor = ? WHERE seq = ?", ("someone-else", 5))
    code, report = admin("audit", "verify")
    assert code == 3
    assert [p["seq"] for p in report["problems"]] == [5]


def test_table_output_and_errors(admin: Admin, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the output is a table; bad input gives a message and a non-zero exit."""
    admin.ok("db", "migrate")
    assert main(["admin", "services", "list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["CODE", "TITLE", "PARTS"]
    assert "DMFA" in table
    assert main(["admin", "enterprise", "show", "0417497107"]) == 2
    assert "mod-97" in capsys.readouterr().err
    assert main(["admin", "user", "list", "not-a-quality"]) == 2
    assert "KBO/KIND" in capsys.readouterr().err
    assert main(["admin", "--as", "someone", "audit", "verify"]) == 1
    assert "operator" in capsys.readouterr().err
