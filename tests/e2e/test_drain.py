"""Stopping ``gateway serve`` with SFTP sessions open (SIGTERM, as systemd does)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import Launch


def _idle_session(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    client = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert client.stdin is not None
    assert client.stdout is not None
    client.stdin.write("pwd\n")
    client.stdin.flush()
    while "Remote working directory" not in client.stdout.readline():
        assert client.poll() is None, "the session ended before it was authenticated"
    return client


def test_an_idle_session_is_ended_at_once_and_the_daemon_exits_cleanly(launch: Launch) -> None:
    """An authenticated OpenSSH session doing nothing does not hold the stop: it is ended
    (session.closed), no drain deadline is reached, the daemon exits 0."""
    world = launch()
    party = world.a
    with _idle_session(party.sftp.argv(), party.work) as client:
        status = world.gateway.stop()
        assert client.stdin is not None
        client.stdin.close()  # sftp notices the closed connection at its next command
        client.wait(timeout=30)
    assert status == 0, world.gateway.tail()
    assert world.gateway.events("session.closed")
    assert not world.gateway.events("sftp.drain_timeout")
    assert world.gateway.events("daemon.stopped")
    # state_sync "auto" (the default) on a state directory that is no mount point of its own:
    # an fsync per file, and the reason said once at start.
    [sync] = world.gateway.events("storage.state_sync")
    assert sync["mode"] == "files"
    assert sync["reason"]
    # The default event loop, read from the running loop.
    [loop] = world.gateway.events("runtime.event_loop")
    assert (loop["kind"], loop["configured"]) == ("uvloop", "uvloop")


def test_an_upload_that_outlasts_drain_seconds_is_cut_and_leaves_nothing(launch: Launch) -> None:
    """``drain_seconds`` (1 s from GATEWAY_DRAIN_SECONDS): an upload throttled to 1 MB/s is
    still running at the deadline; its session is cut, the daemon says so and exits 0, and the
    file is neither visible nor recorded. On asyncio's own loop (``event_loop``), so that the
    daemon's stop is also run on the loop an operator may choose instead of uvloop."""
    world = launch(env={"GATEWAY_DRAIN_SECONDS": "1", "GATEWAY_EVENT_LOOP": "asyncio"})
    party = world.a
    names = world.write_set(party, seq=world.seq(), contents=[os.urandom(6 * 1024 * 1024)])
    argv = party.sftp.argv()
    argv[1:1] = ["-l", "8000"]  # Kbit/s
    temp = world.gateway.state_dir / "spool" / ".tmp"
    with subprocess.Popen(
        argv,
        cwd=party.work,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as client:
        assert client.stdin is not None
        client.stdin.write(f"put {names.fis[0]} IN/{names.fis[0]}\n")
        client.stdin.close()
        waited = time.monotonic() + 30
        while not any(temp.iterdir()):  # the first MiB is on disk: the upload is under way
            assert time.monotonic() < waited, "the upload did not start"
            time.sleep(0.05)
        status = world.gateway.stop()
        assert client.wait(timeout=30) != 0  # its put failed: the sender sends it again
    assert status == 0, world.gateway.tail()
    (cut,) = world.gateway.events("sftp.drain_timeout")
    assert (cut["seconds"], cut["sessions"]) == (1.0, 1)
    assert not world.gateway.events("upload.stored")
    spool = world.gateway.state_dir / "spool" / party.number / "IN"
    assert not (spool / names.fis[0]).exists()
    [loop] = world.gateway.events("runtime.event_loop")
    assert (loop["kind"], loop["configured"]) == ("asyncio", "asyncio")
