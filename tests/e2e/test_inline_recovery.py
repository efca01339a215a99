"""A crash that loses small uploads' unsynced files (issue 14: uploads committed inline).

On SQLite a small upload's close waits for one commit of its row and bytes; its file is written
but synced only when the pipeline takes the set. A power cut before that can lose the file or
cut it short. The test kills ``gateway serve`` (SIGKILL) after an FI and an FS were stored
without their GO, then does to their spool files what such a power cut can (the FI cut to
nothing, the FS gone). The restarted daemon writes both again from the recorded bytes before it
listens, and the set, once its GO comes, is accepted: the signature verifies over the bytes the
sender sent.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.e2e.conftest import Key, Template
from tests.e2e.harness import acks_for, start_gateway, wait_acks
from tests.e2e.test_full_disk import configure, declaration, fresh_state, sender_a
from tests.pki import StandardPki

pytestmark = pytest.mark.timeout(180)


def test_files_lost_after_a_crash_are_written_again_and_the_set_is_accepted(
    tmp_path: Path,
    template: Template,
    cast: StandardPki,
    trust_dir: Path,
    ssh_keys: tuple[Key, Key],
    host_keys: Path,
) -> None:
    """FI and FS stored, the daemon killed, FI truncated and FS removed on disk: the restart
    logs ``spool.recovered`` with ``restored=2``, the files hold the sent bytes again, and the
    GO gets a positive ACRF."""
    state = fresh_state(tmp_path, host_keys)
    config, env = configure(state, tmp_path, template, trust_dir)  # started twice below
    gateway = start_gateway(config, state_dir=state, cwd=tmp_path, env=env)
    a, world = sender_a(gateway, tmp_path, template, cast, ssh_keys[0])
    names = world.write_set(a, seq="00001", contents=[declaration("00001", 2000)])
    fi, fs = names.fis[0], names.fss[0]
    a.sftp.ok(a.put([fi, fs]), cwd=a.work)
    gateway.wait_count("upload.stored", 2)
    gateway.process.kill()
    assert gateway.stop() == -9

    spool = state / "spool" / a.number / "IN"
    (spool / fi).write_bytes(b"")
    (spool / fs).unlink()

    gateway = start_gateway(config, state_dir=state, cwd=tmp_path, env=env)
    try:
        recovered = gateway.wait_event("spool.recovered", timeout=5)
        assert recovered["restored"] == 2, recovered
        assert (spool / fi).read_bytes() == (a.work / fi).read_bytes()
        assert (spool / fs).read_bytes() == (a.work / fs).read_bytes()

        a.sftp = replace(a.sftp, port=gateway.sftp_port)  # the restarted daemon's port
        a.sftp.ok(a.put([names.go]), cwd=a.work)
        acks = wait_acks(a.out_dir, acks_for(names.go))
        (ack,) = [ack for ack in acks if ack.file_name == names.go]
        assert (ack.result, ack.code) == (1, None), ack
    finally:
        status = gateway.stop()
    assert status == 0, gateway.tail()
    assert gateway.problems() == []
