"""``[sftp] ciphers``: an operator who offers AES-GCM only gets it from OpenSSH's client, which
otherwise picks AES-CTR with an HMAC; a client that insists on CTR is refused at key exchange.
A cipher outside the hardened set is a configuration error naming the key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gateway.ops.settings import SSH_CIPHERS, GatewaySettings
from tests.e2e.conftest import Launch

pytestmark = pytest.mark.timeout(120)

GCM = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]


def _negotiated(argv: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One ``pwd`` over ``argv`` with OpenSSH's debug output (it names the cipher)."""
    verbose = [a if a != "LogLevel=ERROR" else "LogLevel=DEBUG1" for a in argv]
    return subprocess.run(
        verbose, input="pwd\n", cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_gcm_only_listener_is_used_with_gcm_and_refuses_ctr(launch: Launch) -> None:
    world = launch(env={"GATEWAY_SFTP__CIPHERS": json.dumps(GCM)})
    a = world.a
    argv = a.sftp.argv()
    done = _negotiated(argv, cwd=a.work)
    assert done.returncode == 0, done.stderr
    assert "cipher: aes128-gcm@openssh.com" in done.stderr
    assert "aes128-ctr" not in [
        line.split("cipher: ")[-1].split()[0]
        for line in done.stderr.splitlines()
        if "cipher: " in line
    ]
    ctr = [argv[0], "-c", "aes128-ctr", *argv[1:]]
    refused = _negotiated(ctr, cwd=a.work)
    assert refused.returncode != 0
    assert "no matching cipher" in refused.stderr


def test_the_default_offers_ctr_too(launch: Launch) -> None:
    """Compatibility by default: a client limited to AES-CTR connects."""
    world = launch()
    a = world.a
    argv = a.sftp.argv()
    done = _negotiated([argv[0], "-c", "aes128-ctr", *argv[1:]], cwd=a.work)
    assert done.returncode == 0, done.stderr
    assert "cipher: aes128-ctr" in done.stderr
    assert GatewaySettings().sftp.ciphers == SSH_CIPHERS


def test_a_cipher_outside_the_hardened_set_is_refused() -> None:
    with pytest.raises(ValueError, match="ciphers"):
        GatewaySettings.model_validate({"sftp": {"ciphers": ["3des-cbc"]}})
    with pytest.raises(ValueError, match="ciphers"):
        GatewaySettings.model_validate({"sftp": {"ciphers": []}})
