"""The channel metrics move: sessions, failed logins, stored and refused uploads, per channel.

A fresh ``gateway serve`` (nothing else talks to it) gets, on each of SFTP and FTPS, one session
that stores a file and has one upload refused, and one failed login; ``/metrics`` must then show
exactly those counts, each with its ``channel`` label (the password-spraying alert of
docs/operations.md reads ``gateway_auth_failures_total``).
"""

from __future__ import annotations

import dataclasses
import urllib.request

import pytest

from tests.e2e.conftest import Launch, set_names
from tests.e2e.test_ftp import curl

pytestmark = pytest.mark.timeout(180)


def scrape(port: int) -> dict[str, float]:
    """The samples of ``/metrics``: ``name{labels}`` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def test_every_channel_counts_sessions_failures_and_uploads(launch: Launch) -> None:
    """After real SFTP and FTPS sessions, failed logins and uploads, each series has its count."""
    world = launch()
    a = world.a
    sftp_file = a.write(set_names(a.number, world.seq()).fis[0], b"x" * 1000)
    ftp_file = a.write(set_names(a.number, world.seq()).fis[0], b"y" * 300)
    not_mine = a.write(set_names(world.b.number, world.seq()).fis[0], b"z")

    # SFTP: one session storing one file and refused one (108); one login with a wrong key.
    result = a.sftp.run([f"put {sftp_file} IN/{sftp_file}", f"put {not_mine} IN/{not_mine}"],
                        cwd=a.work)  # fmt: skip
    assert "Permission denied" in result.stderr, result.stderr
    wrong_key = dataclasses.replace(a.sftp, key=world.b.sftp.key)
    assert wrong_key.run(["ls"], cwd=a.work).returncode != 0

    # FTPS: one session storing one file, one refused upload, one wrong password.
    assert curl(world, a, "/IN/", "-T", ftp_file).returncode == 0
    assert curl(world, a, "/IN/", "-T", not_mine).returncode != 0
    assert curl(world, a, "/OUT/", "--list-only", password="wrong-password-1").returncode != 0

    samples = scrape(world.gateway.metrics_port)
    expected = {
        'gateway_sessions_total{channel="sftp"}': 1.0,
        'gateway_sessions_total{channel="ftp"}': 2.0,
        'gateway_uploads_stored_total{channel="sftp",env="R"}': 1.0,
        'gateway_uploads_stored_total{channel="ftp",env="R"}': 1.0,
        'gateway_upload_bytes_total{channel="sftp"}': 1000.0,
        'gateway_upload_bytes_total{channel="ftp"}': 300.0,
        'gateway_uploads_refused_total{channel="sftp",code="108"}': 1.0,
        'gateway_uploads_refused_total{channel="ftp",code="108"}': 1.0,
        'gateway_auth_failures_total{channel="ftp",reason="bad_credential"}': 1.0,
        'gateway_sessions_active{channel="sftp"}': 0.0,
        'gateway_sessions_active{channel="ftp"}': 0.0,
    }
    assert {key: samples.get(key) for key in expected} == expected
    # OpenSSH offers the wrong key once per connection; the count is the registry's verdicts.
    assert (
        samples.get('gateway_auth_failures_total{channel="sftp",reason="bad_credential"}', 0) >= 1
    )
