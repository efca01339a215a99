"""asyncssh's debug lines are built only when they will be written (channels/ssh_logging.py).

The arguments here blow up when turned into text, so a line that is formatted shows as an error:
with the guard, nothing is formatted at the gateway's levels, and at asyncssh's debug level 3
with its logger at DEBUG, asyncssh's own formatting runs as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import asyncssh
import pytest
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger

from gateway.channels.ssh_logging import check_level_first


class Unprintable:
    """A log argument that cannot be turned into text or measured."""

    def __str__(self) -> str:
        raise RuntimeError("formatted")

    def __len__(self) -> int:
        raise RuntimeError("formatted")


class PacketLog(SSHPacketLogger):
    """A packet logger on asyncssh's own logger."""

    @property
    def logger(self) -> SSHLogger:
        return SSHLogger()


@pytest.fixture
def asyncssh_level() -> Iterator[None]:
    logger = logging.getLogger("asyncssh")
    level, debug = logger.level, SSHLogger._debug_level
    check_level_first()
    yield
    logger.setLevel(level)
    asyncssh.set_debug_level(debug)


def test_nothing_is_formatted_below_the_level(asyncssh_level: None) -> None:
    logging.getLogger("asyncssh").setLevel(logging.INFO)
    SSHLogger().debug1("%s", [Unprintable()])
    PacketLog()._log_packet("Sent", 94, None, Unprintable(), "")  # type: ignore[arg-type]


def test_asyncssh_formats_as_before_when_the_line_is_wanted(asyncssh_level: None) -> None:
    logging.getLogger("asyncssh").setLevel(logging.DEBUG)
    asyncssh.set_debug_level(3)
    with pytest.raises(RuntimeError, match="formatted"):
        SSHLogger().debug1("%s", [Unprintable()])
    with pytest.raises(RuntimeError, match="formatted"):
        PacketLog()._log_packet("Sent", 94, None, Unprintable(), "")  # type: ignore[arg-type]


def test_debug_messages_are_still_written_at_debug(
    asyncssh_level: None, caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("asyncssh").setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="asyncssh"):
        SSHLogger().debug1("opened %s", [b"sftp", "session"])
    assert "opened sftp,session" in caplog.text
