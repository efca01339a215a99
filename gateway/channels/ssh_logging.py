"""asyncssh's debug lines cost nothing unless they are written.

Why: asyncssh formats a line for every SSH and SFTP packet it sends or receives (the packet
type's name, its size in words, a note) before its logger looks at asyncssh's debug level, and
``SSHLogger.log`` turns every debug message's arguments into text before the standard
``logging`` level check. With the gateway's loggers at info, all of it is thrown away: about
5 % of the event loop's time with 20 senders (bench/e2e.py ``--profile``: ``SSHLogger.debug1``,
``SSHLogger.log``, ``log_sent_packet``).

:func:`check_level_first` makes both look first: a packet line is built only at asyncssh debug
level 3 with its logger at DEBUG (what asyncssh writes then is unchanged), any other message
only when its logger would emit it. Installed once, by the SFTP listener.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger

_GUARDED = "_gateway_checks_level_first"


def check_level_first() -> None:
    """Guard asyncssh's formatting by the level checks (see the module; idempotent)."""
    if getattr(SSHLogger, _GUARDED, False):
        return
    log = SSHLogger.log
    log_packet = SSHPacketLogger._log_packet

    def guarded_log(self: SSHLogger, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            log(self, level, msg, *args, **kwargs)

    def guarded_packet(self: SSHPacketLogger, *args: Any) -> None:
        if SSHLogger._debug_level >= 3 and self.logger.isEnabledFor(logging.DEBUG):
            log_packet(self, *args)

    SSHLogger.log = guarded_log  # type: ignore[method-assign]
    SSHPacketLogger._log_packet = guarded_packet  # type: ignore[method-assign,assignment]
    setattr(SSHLogger, _GUARDED, True)
