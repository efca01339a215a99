"""The installed files are checked against their RECORD before the daemon starts (SECURITY.md 20).

The fixture installs the package the way a wheel installer does: the ``gateway`` tree copied into
a site directory, with a ``.dist-info`` holding METADATA and a RECORD of every file's SHA-256.
The real package metadata machinery (``importlib.metadata``) reads it, and the real command line
runs from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PathDistribution
from pathlib import Path

import pytest

from gateway.ops.integrity import inspect_installation, record_hash
from tests.tools import gateway_cli

ROOT = Path(__file__).resolve().parents[2]
DIST_INFO = "batch_gateway-0.1.0.dist-info"
PATCHED = "gateway/pipeline/acks.py"


def install(site: Path) -> PathDistribution:
    """Copy the package into ``site`` with the dist-info a wheel installer writes."""
    shutil.copytree(
        ROOT / "gateway", site / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    info = site / DIST_INFO
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: batch-gateway\nVersion: 0.1.0\n")
    lines = []
    for path in sorted((site / "gateway").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            digest = record_hash(hashlib.sha256(data).digest())
            lines.append(f"{path.relative_to(site).as_posix()},sha256={digest},{len(data)}")
    lines.append(f"{DIST_INFO}/RECORD,,")
    (info / "RECORD").write_text("\n".join(lines) + "\n")
    return PathDistribution(info)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A wheel-style installation of the package under ``tmp_path/site``."""
    install(tmp_path / "site")
    return tmp_path / "site"


def test_an_intact_installation_is_verified_and_has_a_stable_build(
    site: Path, tmp_path: Path
) -> None:
    """Every recorded file is hashed; the same files give the same build anywhere."""
    found = inspect_installation(PathDistribution(site / DIST_INFO), package_dir=site / "gateway")
    assert found.mode == "wheel"
    assert found.intact
    assert found.problem() is None
    assert found.files == sum(1 for p in (site / "gateway").rglob("*") if p.is_file())
    assert re.fullmatch(r"[0-9a-f]{16}", found.build)
    elsewhere = tmp_path / "elsewhere"
    again = inspect_installation(install(elsewhere), package_dir=elsewhere / "gateway")
    assert again.build == found.build
    assert found.describe() == f"batch-gateway 0.1.0 (build {found.build}, {found.files} files)"


def test_a_changed_or_removed_file_is_named(site: Path) -> None:
    """An edited module and a deleted one are reported by path, with what to do."""
    with open(site / PATCHED, "a") as module:
        module.write("\nimport os  # planted\n")
    (site / "gateway" / "demo.py").unlink()
    found = inspect_installation(PathDistribution(site / DIST_INFO), package_dir=site / "gateway")
    assert found.changed == (PATCHED,)
    assert found.missing == ("gateway/demo.py",)
    problem = found.problem()
    assert problem is not None
    assert f"changed {PATCHED}" in problem
    assert "missing gateway/demo.py" in problem
    assert "pip install --force-reinstall --no-deps batch-gateway==0.1.0" in problem


def test_a_shadowing_copy_of_the_package_is_refused(site: Path) -> None:
    """The installation is intact, but the code running is another copy (this test's own
    source tree, earlier on the import path): that is named, never called verified."""
    found = inspect_installation(PathDistribution(site / DIST_INFO))
    assert not found.changed
    assert not found.missing
    assert found.stray == str((ROOT / "gateway").resolve())
    assert not found.intact
    problem = found.problem()
    assert problem is not None
    assert f"imported from {(ROOT / 'gateway').resolve()}" in problem


def test_a_source_checkout_says_it_cannot_be_checked() -> None:
    """The test suite runs from a source checkout (pip install -e): nothing recorded to check."""
    found = inspect_installation()
    assert found.mode == "source"
    assert found.intact
    assert "source checkout" in found.describe()


def test_version_and_serve_refuse_a_changed_installation(site: Path, tmp_path: Path) -> None:
    """From the installed files: --version prints the build; once a file is edited, --version
    exits 1 naming it and ``gateway serve`` refuses to start before opening anything."""
    shown = gateway_cli(site, "--version")
    assert shown.returncode == 0, shown.stderr
    assert re.fullmatch(r"batch-gateway 0\.1\.0 \(build [0-9a-f]{16}, \d+ files\)\n", shown.stdout)
    with open(site / PATCHED, "a") as module:
        module.write("\n# planted\n")
    refused = gateway_cli(site, "--version")
    assert refused.returncode == 1
    assert f"changed {PATCHED}" in refused.stderr
    state = tmp_path / "state"
    served = gateway_cli(site, "serve", GATEWAY_STATE_DIR=str(state))
    assert served.returncode == 1
    assert "installation check failed" in served.stderr
    assert f"changed {PATCHED}" in served.stderr
    assert not state.exists()  # refused before the state directory or a listener


def test_serve_can_be_told_to_start_anyway_and_says_so(site: Path, tmp_path: Path) -> None:
    """``security.verify_installation = false``: the daemon starts, and its first log line is a
    build.changed warning naming the file."""
    with open(site / PATCHED, "a") as module:
        module.write("\n# hotfix\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=tmp_path,
        env={
            **clean,
            "PYTHONPATH": str(site),
            "GATEWAY_STATE_DIR": str(tmp_path / "state"),
            "GATEWAY_SECURITY__VERIFY_INSTALLATION": "false",
            "GATEWAY_SFTP__PORT": "0",
            "GATEWAY_METRICS__ENABLED": "false",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with process:
        try:
            assert process.stdout is not None
            first = json.loads(process.stdout.readline())
        finally:
            process.terminate()
            process.communicate(timeout=60)
    assert first["event"] == "build.changed"
    assert first["level"] == "warning"
    assert first["changed"] == [PATCHED]
    assert first["mode"] == "wheel"
