"""The README's quick start: ``gateway serve --demo``, then paste the commands it prints.

The daemon runs in a fresh folder laid out like a fresh checkout (only ``config/services.toml``,
the default ``./var`` state directory, no settings file); only the ports are moved to free ones
(port 0) so the test can run next to others. The commands are taken from its stderr exactly as a
person would copy them (the indented lines, comments left out) and fed to ``bash`` one after the
other, with the venv's ``bin`` first on PATH, as in an activated venv. They send one set over SFTP
one over FTPS (curl) and one over the HTTPS web service (curl with a client certificate); each
must fetch an FO.ACRF with ResultCode 1 and print "signature OK". Then the demo online service
posts a notification with its own certificate (the service API), and the sender fetches it over
SFTP: its signature is checked too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import ROOT, clean_environ, read_ack, start_gateway
from tests.tools import require_tool

ACRF = re.compile(r"FO\.ACRF\.999999\.[0-9]{8}\.[0-9A-Z]{5}\.R")


def pasted_commands(stderr: str) -> list[str]:
    """The lines a person pastes: indented by two spaces, comments excluded."""
    return [
        line[2:]
        for line in stderr.splitlines()
        if line.startswith("  ") and not line.lstrip().startswith("#")
    ]


def test_demo_commands_pasted_into_bash_fetch_a_positive_signed_acrf(tmp_path: Path) -> None:
    """Fresh folder, `gateway serve --demo`, the printed commands in bash: ACRF 1, signature OK."""
    for tool in ("sftp", "curl", "openssl", "base64", "bash"):
        require_tool(tool)
    checkout = tmp_path / "checkout"
    (checkout / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "services.toml", checkout / "config" / "services.toml")
    venv_bin = str(Path(sys.executable).parent)
    env = clean_environ(
        GATEWAY_SFTP__PORT="0",
        GATEWAY_METRICS__PORT="0",
        GATEWAY_FTP__PORT="0",
        GATEWAY_WEB__PORT="0",
        GATEWAY_ADMIN__PORT="0",
    )
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    gateway = start_gateway(None, state_dir=checkout / "var", cwd=checkout, demo=True, env=env)
    try:
        printed = gateway.wait_stderr("Facts for scripts:")
        commands = pasted_commands(printed)
        facts = json.loads((checkout / "var" / "demo" / "demo.json").read_text())
        assert facts["port"] == gateway.sftp_port
        assert facts["ftp_port"] == gateway.ftp_ports["public"]
        assert facts["ftp_plain_port"] == gateway.ftp_ports["demo"]
        assert facts["ftp_plain_host"] == "127.0.0.2"
        assert Path(facts["ftp_ca"]).is_file()
        assert facts["ftp_login"] == facts["login"]
        assert facts["web_url"] == f"https://127.0.0.1:{gateway.web_port}"
        assert all(Path(facts[k]).is_file() for k in ("web_ca", "web_cert", "web_key"))
        assert any(line.startswith("curl ") and "--ssl-reqd" in line for line in commands)
        assert any(line.startswith("sftp ") or "| sftp " in line for line in commands), printed
        # Host keys are checked, against a known_hosts the demo wrote, with the fingerprints it
        # printed being those ssh-keygen shows for the gateway's host keys.
        assert "StrictHostKeyChecking=no" not in printed
        assert "UserKnownHostsFile=/dev/null" not in printed
        keygen = require_tool("ssh-keygen")
        shown = subprocess.run(
            [keygen, "-lf", facts["known_hosts"]], capture_output=True, text=True, check=True
        ).stdout
        for fingerprint in facts["host_fingerprints"]:
            assert fingerprint.split()[0] in shown
            assert f"# {fingerprint}" in printed

        person = subprocess.run(
            ["bash"],
            input="\n".join(commands) + "\n",
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        shown = person.stdout + person.stderr
        assert person.stdout.count("signature OK") == 4, shown
        assert re.search(r"FO\.NOTI\.999999\.[0-9]{8}\.[0-9A-Z]{5}\.R: signature OK", shown)
        assert facts["service_application"] == "DMFA"
        _check_admin(facts, env)
        assert all(Path(facts[k]).is_file() for k in ("service_cert", "service_key"))
        work = Path(facts["work_dir"])
        acks = [read_ack(p) for p in sorted(work.iterdir()) if ACRF.fullmatch(p.name)]
        assert [(a.result, a.file_name.split(".")[2]) for a in acks] == [(1, facts["sender"])] * 3
        # One set came over each channel: the three acknowledged GO names differ in sequence.
        assert len({a.file_name for a in acks}) == 3
        assert "<ResultCode>1</ResultCode>" in person.stdout
    finally:
        status = gateway.stop()
    assert status == 0, gateway.tail()
    assert not gateway.problems(), gateway.problems()


def _check_admin(facts: dict[str, str], env: dict[str, str]) -> None:
    """The demo's console facts work: the API token reads /me as the demo HTB, and the HTB's
    password signs in (201)."""
    base = ["curl", "-sS", "--cacert", facts["admin_ca"], "--write-out", "\n%{http_code}"]
    me = subprocess.run(
        [*base, "-H", f"Authorization: Bearer {facts['api_token']}",
         f"{facts['admin_url']}/admin/api/v1/me"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    body, _, status = me.stdout.rpartition("\n")
    assert status == "200", me
    assert json.loads(body)["login"] == facts["htb_login"]
    assert json.loads(body)["enterprise"] == facts["enterprise"]
    credentials = json.dumps({"login": facts["htb_login"], "password": facts["htb_password"]})
    signed = subprocess.run(
        [*base, "-H", "Content-Type: application/json", "--data", credentials,
         f"{facts['admin_url']}/admin/api/v1/session"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert signed.stdout.endswith("\n201"), signed
