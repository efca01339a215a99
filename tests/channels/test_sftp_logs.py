"""What an SFTP session logs per upload (issue 14, cheaper logs): one line per stored upload.

OpenSSH ``sftp`` puts two files in one session. Each stored upload is one ``upload.stored``
line with what an operator needs to answer "where is my file?"; who and where from is said
once, in ``session.opened``, and not repeated on the session's later lines.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from structlog.testing import capture_logs

from tests.channels.conftest import StartGateway, run_sftp
from tests.channels.test_proxy_protocol import events, until
from tests.channels.test_sftp import TODAY, name


async def test_each_stored_upload_is_one_line_and_the_session_names_its_peer_once(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Two puts give two upload.stored lines (sender, session, channel, folder, name, bytes, a
    16-digit SHA-256 prefix, duration); peer and login are on session.opened only."""
    env = await start_gateway(today=TODAY)
    sender = env.a.number
    bodies = {name("FI", sender): os.urandom(5000), name("FS", sender): os.urandom(700)}
    for index, body in enumerate(bodies.values()):
        (tmp_path / f"f{index}").write_bytes(body)
    batch = "".join(f"put {tmp_path / f'f{i}'} /IN/{n}\n" for i, n in enumerate(bodies))
    with capture_logs() as logs:
        result = await run_sftp(env, batch)
        await until(lambda: not env.gateway.connections)
    assert result.returncode == 0, result.stderr
    [opened] = events(logs, "session.opened")
    assert (opened["sender"], opened["login"]) == (sender, env.a.login)
    assert str(opened["peer"]).startswith("127.0.0.1:")
    stored = events(logs, "upload.stored")
    assert [
        {k: v for k, v in line.items() if k not in {"duration", "log_level"}} for line in stored
    ] == [
        {
            "event": "upload.stored",
            "session_id": opened["session_id"],
            "sender": sender,
            "channel": "sftp",
            "folder": "IN",
            "name": n,
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest()[:16],
        }
        for n, body in bodies.items()
    ]
    assert all(isinstance(line["duration"], float) for line in stored)
    session_lines = [line for line in logs if line.get("session_id") == opened["session_id"]]
    assert [line for line in session_lines if "peer" in line] == [opened]
