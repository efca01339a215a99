"""``gateway doctor`` (issue 16): a safe setup gives no finding; each unsafe setup of the issue,
prepared on disk, gives its finding id; the command prints one line per finding and exits 1
(0 and "ok" when there is none), ``--json`` too. The demo's state, from a real
``gateway serve --demo``, gives only the development certificates (the gateway's and the
listeners'), both at start (``doctor.warning`` events) and from ``gateway doctor --demo``."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.cli import main as cli_main
from gateway.doctor import FINDINGS, NAMED_PATHS, Finding, examine
from gateway.ops.settings import (
    GatewaySettings,
    PipelineSettings,
    SftpSettings,
    SignatureSettings,
    WebSettings,
)
from gateway.ops.tls import issue_certificate, private_pem
from tests.e2e.harness import ROOT, clean_environ, start_gateway

EVERY_ADDRESS = "0.0.0.0"  # noqa: S104  (a setting under judgement: nothing binds it)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def _certificate(folder: Path, name: str, *, not_after: datetime) -> tuple[Path, Path]:
    """A self-signed CA certificate and its key, as PEM files named NAME.pem and NAME.key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = issue_certificate(
        subject=subject,
        issuer=subject,
        public_key=key.public_key(),
        signing_key=key,
        not_before=NOW - YEAR,
        not_after=not_after,
        ca=True,
        usages=frozenset({"digital_signature", "key_cert_sign"}),
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private_pem(key))
    return cert_path, key_path


@dataclass
class Setup:
    """A prepared installation: its folders and the settings that name them."""

    root: Path
    settings: GatewaySettings

    def with_(self, **changes: object) -> GatewaySettings:
        """The settings with some top-level fields (or sections) replaced."""
        return self.settings.model_copy(update=changes)

    def ids(self, settings: GatewaySettings | None = None, now: datetime = NOW) -> list[str]:
        """The finding ids of ``examine``, in order."""
        return [f.id for f in examine(settings or self.settings, now=now)]


@pytest.fixture
def safe(tmp_path: Path) -> Setup:
    """A setup with nothing to report: a trusted CA valid for a year, the gateway's own
    certificate, a private state directory, a services file, SFTP keys only."""
    trust = tmp_path / "trust"
    _certificate(trust, "Senders CA", not_after=NOW + YEAR)
    cert, key = _certificate(tmp_path / "identity", "gateway", not_after=NOW + YEAR)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    database = state / "registry.sqlite3"
    database.touch(mode=0o600)
    (state / "archive").mkdir(mode=0o755)  # hidden by the 0700 state directory
    services = tmp_path / "services.toml"
    services.write_text("")
    # The defaults, not this process's GATEWAY_* variables.
    settings = GatewaySettings.model_construct().model_copy(
        update={
            "state_dir": state,
            "signature": SignatureSettings(trust_dir=trust),
            "pipeline": PipelineSettings(
                gateway_cert=cert, gateway_key=key, services_file=services
            ),
        }
    )
    return Setup(tmp_path, settings)


def test_a_safe_setup_has_no_finding(safe: Setup) -> None:
    """Nothing to report, and the walk stops at the 0700 state directory."""
    assert examine(safe.settings, now=NOW) == []


def test_trust_store_empty_missing_or_unreadable(safe: Setup) -> None:
    """No CA (an empty folder, a missing one, a file that is no certificate) is 905 for every
    signature; a trust folder that is not a folder cannot be read."""
    empty = safe.root / "empty"
    empty.mkdir()
    (empty / "README").write_text("not a certificate")
    in_place = safe.root / "a-file"
    in_place.write_text("")
    cases = {
        "empty": SignatureSettings(trust_dir=empty),
        "missing": SignatureSettings(trust_dir=safe.root / "nowhere"),
        "a file": SignatureSettings(trust_dir=in_place),
    }
    found = {name: safe.ids(safe.with_(signature=s)) for name, s in cases.items()}
    assert found == {
        "empty": ["trust-store-empty"],
        "missing": ["trust-store-empty"],
        "a file": ["trust-store-unreadable", "trust-store-empty"],
    }


def test_a_second_trust_folder_counts(safe: Setup) -> None:
    """The daemon's trust folders (the demo's CA folder included) are judged together."""
    folders = [safe.root / "nowhere", safe.root / "trust"]
    assert examine(safe.settings, now=NOW, trust_dirs=folders) == []


def test_certificates_expiring_within_30_days_or_expired(safe: Setup) -> None:
    """The gateway certificate and each trusted CA: 30 days ahead a warning, after the end an
    error; one day more than 30 days ahead, nothing."""
    end = NOW + YEAR
    assert safe.ids(now=end - timedelta(days=31)) == []
    assert safe.ids(now=end - timedelta(days=29)) == [
        "trust-ca-expiring",
        "gateway-certificate-expiring",
    ]
    assert safe.ids(now=end + timedelta(seconds=1)) == [
        "trust-ca-expired",
        "gateway-certificate-expired",
    ]
    message = examine(safe.settings, now=end - timedelta(days=10))[0].message
    assert "CN=Senders CA" in message
    assert "in 10 days" in message


def test_development_certificates(safe: Setup) -> None:
    """No [pipeline] gateway_cert: the self-made certificate signs the ACRFs; a TLS listener
    without tls_cert: a self-made certificate. An unreadable configured one is named."""
    dev = safe.with_(pipeline=PipelineSettings(services_file=safe.settings.pipeline.services_file))
    assert safe.ids(dev) == ["dev-gateway-certificate"]
    web = safe.with_(web=WebSettings(enabled=True))
    assert safe.ids(web) == ["dev-tls-certificate"]
    broken = safe.with_(web=WebSettings(enabled=True, tls_cert=safe.root / "services.toml"))
    assert safe.ids(broken) == ["tls-certificate-unreadable"]


def test_state_files_open_to_others(safe: Setup) -> None:
    """A 0755 state directory exposes what is not private below it: each path is named with
    its mode; a 0700 folder inside hides its contents."""
    state = safe.settings.state_dir
    state.chmod(0o755)
    (state / "registry.sqlite3").chmod(0o644)
    (state / "keys").mkdir(mode=0o700)
    (state / "keys" / "gateway.key").touch(mode=0o644)  # behind a 0700 folder
    found = examine(safe.settings, now=NOW)
    assert {(f.id, Path(f.subject).name) for f in found} == {
        ("state-open-to-others", "state"),
        ("state-open-to-others", "registry.sqlite3"),
        ("state-open-to-others", "archive"),
    }
    assert "(mode 0644)" in next(f.message for f in found if f.subject.endswith("sqlite3"))


def test_a_state_directory_behind_a_symbolic_link(safe: Setup) -> None:
    """The link's own mode (0777) is no finding: the folder it names is judged."""
    link = safe.root / "link"
    link.symlink_to(safe.settings.state_dir)
    assert safe.ids(safe.with_(state_dir=link)) == []
    safe.settings.state_dir.chmod(0o755)
    assert safe.ids(safe.with_(state_dir=link)) == ["state-open-to-others"] * 2


def test_many_open_files_are_counted_not_all_named(safe: Setup) -> None:
    """Past NAMED_PATHS paths, one more finding counts the rest."""
    state = safe.settings.state_dir
    state.chmod(0o755)
    (state / "archive").chmod(0o700)
    for number in range(NAMED_PATHS + 5):
        (state / f"f{number}").touch(mode=0o644)
    found = examine(safe.settings, now=NOW)
    assert len(found) == NAMED_PATHS + 1
    assert "and 6 more paths" in found[-1].message  # the state directory itself is one


def test_sftp_password_login_on_a_public_address(safe: Setup) -> None:
    """Password login on 0.0.0.0, ::, a public address or a name: a finding; on loopback or
    with password login off: none."""
    cases = {
        host: safe.ids(safe.with_(sftp=SftpSettings(host=host, password_login=True)))
        for host in (EVERY_ADDRESS, "::", "192.0.2.7", "sftp.example.be", "127.0.0.1", "::1")
    }
    off = safe.ids(safe.with_(sftp=SftpSettings(host=EVERY_ADDRESS, password_login=False)))
    public = ["sftp-password-public"]
    assert (cases, off) == (
        {
            EVERY_ADDRESS: public,
            "::": public,
            "192.0.2.7": public,
            "sftp.example.be": public,
            "127.0.0.1": [],
            "::1": [],
        },
        [],
    )


def test_a_missing_services_file(safe: Setup) -> None:
    """The daemon would not start: said before it is started."""
    gone = PipelineSettings(
        gateway_cert=safe.settings.pipeline.gateway_cert,
        gateway_key=safe.settings.pipeline.gateway_key,
        services_file=safe.root / "gone.toml",
    )
    assert safe.ids(safe.with_(pipeline=gone)) == ["services-file-missing"]


def test_every_finding_id_is_documented() -> None:
    """Each id the module can give is in its table and in docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    assert [i for i in FINDINGS if f"`{i}`" not in text] == []


# -- the command ------------------------------------------------------------------------------


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with config/gateway.toml and config/services.toml, no GATEWAY_*."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "services.toml", tmp_path / "config")
    cert, key = _certificate(tmp_path / "identity", "gateway", not_after=datetime.now(UTC) + YEAR)
    _certificate(tmp_path / "certs" / "trust", "CA", not_after=datetime.now(UTC) + YEAR)
    (tmp_path / "config" / "gateway.toml").write_text(
        f'[pipeline]\ngateway_cert = "{cert}"\ngateway_key = "{key}"\n'
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_command_says_ok_or_one_line_per_finding(
    installed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 and "ok"; then, with SFTP password login on every address, exit 1 and the
    finding's line; --json carries the same."""
    assert cli_main.main(["doctor"]) == 0
    assert capsys.readouterr().out == "ok\n"
    config = installed / "config" / "gateway.toml"
    config.write_text(config.read_text() + '[sftp]\nhost = "0.0.0.0"\npassword_login = true\n')
    assert cli_main.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("sftp-password-public: SFTP offers password login on 0.0.0.0:8022")
    assert out.count("\n") == 1
    assert cli_main.main(["doctor", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert [f["id"] for f in document["findings"]] == ["sftp-password-public"]
    assert document["ok"] is False


def test_the_command_with_a_broken_settings_file(
    installed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A settings file that does not load is exit 2 with the key, not a finding."""
    (installed / "config" / "gateway.toml").write_text("[sftp]\nprot = 1\n")
    assert cli_main.main(["doctor"]) == 2
    assert "sftp.prot" in capsys.readouterr().err


# -- the demo -----------------------------------------------------------------------------------

DEMO_FINDINGS = [
    "dev-gateway-certificate",
    "dev-tls-certificate",
    "dev-tls-certificate",
    "dev-tls-certificate",
]


def test_the_demo_has_only_its_development_certificates(tmp_path: Path) -> None:
    """`gateway serve --demo` from a fresh checkout under umask 022: the start logs a
    doctor.warning for the gateway's development certificate and the FTPS, HTTPS and admin
    listeners' ones and nothing else; `gateway doctor --demo` on the state says the same
    (exit 1); the state directory is 0700."""
    checkout = tmp_path / "checkout"
    (checkout / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "services.toml", checkout / "config" / "services.toml")
    ports = ("SFTP", "METRICS", "FTP", "WEB", "ADMIN")
    env = clean_environ(**{f"GATEWAY_{p}__PORT": "0" for p in ports})
    previous = os.umask(0o022)  # an operator's usual shell; the child inherits it
    try:
        gateway = start_gateway(None, state_dir=checkout / "var", cwd=checkout, demo=True, env=env)
    finally:
        os.umask(previous)
    try:
        gateway.wait_stderr("Facts for scripts:")
        # Read from the log's own reader thread, which may lag the stderr reader's.
        warnings = gateway.wait_count("doctor.warning", len(DEMO_FINDINGS))
        logged = [(e["finding"], e["subject"]) for e in warnings]
    finally:
        assert gateway.stop() == 0
    assert [finding for finding, _ in logged] == DEMO_FINDINGS
    assert [s for _, s in logged[1:]] == ["ftp.tls_cert", "web.tls_cert", "admin.tls_cert"]
    assert stat.S_IMODE((checkout / "var").stat().st_mode) == 0o700
    done = _gateway(["doctor", "--demo", "--json"], cwd=checkout, env=env)
    assert done.returncode == 1, done.stderr
    assert [f["id"] for f in json.loads(done.stdout)["findings"]] == DEMO_FINDINGS


def _gateway(
    argv: list[str], *, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_findings_print_as_id_and_message() -> None:
    """The line format is the id, a colon, the message."""
    assert Finding("x-y", "s", "what").line() == "x-y: what"
