"""asyncssh sends each packet alone, without an empty SSH_MSG_IGNORE ahead (channels/ssh_ignore.py).

A real asyncssh server and client on loopback, with the gateway's ciphers: the server
connection's socket writes are counted while it sends channel data. asyncssh writes each
encrypted packet with one ``_send``; with its ignore packets that was two per data packet.
And the gateway's SFTP listener end to end: OpenSSH's client, at its most verbose, logs the
type of every packet it receives, and none is an ignore packet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncssh
import pytest
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

from gateway.channels.sftp import MAC_ALGS
from gateway.channels.ssh_ignore import skip_ignore_packets
from gateway.ops.settings import SSH_CIPHERS
from tests.channels.conftest import StartGateway
from tests.tools import require_tool

pytestmark = pytest.mark.asyncio


class _NoAuth(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False


@dataclass
class Pair:
    server: asyncssh.SSHServerProcess[bytes]
    client: asyncssh.SSHClientProcess[bytes]
    sends: list[bytes]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    skip_ignore_packets()
    ready: asyncio.Future[asyncssh.SSHServerProcess[bytes]] = (
        asyncio.get_running_loop().create_future()
    )
    done = asyncio.Event()

    async def serve(process: asyncssh.SSHServerProcess[bytes]) -> None:
        ready.set_result(process)
        await done.wait()
        process.exit(0)

    algs = {"encryption_algs": list(SSH_CIPHERS), "mac_algs": list(MAC_ALGS)}
    listener = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        server_factory=_NoAuth,
        process_factory=serve,
        encoding=None,
        line_editor=False,
        **algs,
    )
    port = listener.sockets[0].getsockname()[1]
    async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="u", **algs) as conn:
        client = await conn.create_process("x", encoding=None)
        server = await ready
        server_conn = server.channel.get_connection()
        sends: list[bytes] = []
        send: Callable[[bytes], None] = server_conn._send

        def counted(data: bytes) -> None:
            sends.append(data)
            send(data)

        server_conn._send = counted  # type: ignore[method-assign]
        yield Pair(server=server, client=client, sends=sends)
        done.set()
    listener.close()


async def test_each_data_packet_is_one_write_and_arrives(pair: Pair) -> None:
    for index in range(5):
        pair.server.stdout.write(b"%d" % index)
    assert len(pair.sends) == 5  # 10 with an ignore packet ahead of each
    assert await pair.client.stdout.readexactly(5) == b"01234"


async def test_other_ignore_packets_are_still_sent(pair: Pair) -> None:
    pair.server.channel.get_connection().send_packet(MSG_IGNORE, String(b"keep"))
    assert len(pair.sends) == 1
    pair.server.stdout.write(b"after")
    assert await pair.client.stdout.readexactly(5) == b"after"  # the stream is still in step


async def test_installing_twice_wraps_once(pair: Pair) -> None:
    skip_ignore_packets()
    pair.server.stdout.write(b"x")
    assert len(pair.sends) == 1
    assert await pair.client.stdout.readexactly(1) == b"x"


async def test_the_sftp_listener_sends_openssh_no_ignore_packet(
    start_gateway: StartGateway,
) -> None:
    env = await start_gateway()
    process = await asyncio.create_subprocess_exec(
        require_tool("sftp"), "-vvv", "-b", "-", "-i", str(env.key_a.private),
        "-P", str(env.port), "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        f"{env.a.login}@127.0.0.1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate(b"pwd\nls /\npwd\n")
    assert b"Remote working directory" in out
    assert process.returncode == 0, err.decode()
    log = err.decode()
    # OpenSSH logs the type of the packets it does not route to a channel (those of the key
    # exchange, the login, the channel's opening and closing), and each ignore packet.
    received = [
        line.split("type ")[1].strip() for line in log.splitlines() if "packet: type" in line
    ]
    assert "91" in received  # SSH_MSG_CHANNEL_OPEN_CONFIRMATION, sent encrypted
    assert "Received SSH2_MSG_IGNORE" not in log
