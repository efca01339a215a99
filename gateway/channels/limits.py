"""Connection limits of a listener: unauthenticated connections at once, sessions per sender.

Plain counters owned by one listener on one event loop (no locks needed); each node counts its
own sessions. A refusal is a :class:`Rejection` (921) the channel turns into a disconnect text.
"""

from __future__ import annotations

from gateway.core.codes import Code, Rejection, reject
from gateway.core.types import SenderNumber


class SessionLimits:
    """Count sessions per sender and unauthenticated connections."""

    __slots__ = ("_sessions", "max_per_sender", "max_startups", "unauthenticated")

    def __init__(self, *, max_per_sender: int, max_startups: int) -> None:
        self.max_per_sender = max_per_sender
        self.max_startups = max_startups
        self.unauthenticated = 0
        self._sessions: dict[str, int] = {}

    def admit_connection(self) -> bool:
        """Count a new unauthenticated connection; False when over ``max_startups``."""
        if self.unauthenticated >= self.max_startups:
            return False
        self.unauthenticated += 1
        return True

    def connection_authenticated_or_gone(self) -> None:
        """An admitted connection left the unauthenticated state."""
        self.unauthenticated = max(0, self.unauthenticated - 1)

    def open_session(self, sender: SenderNumber) -> Rejection | None:
        """Count a session of ``sender``; a 921 refusal when it already has the maximum."""
        count = self._sessions.get(sender, 0)
        if count >= self.max_per_sender:
            return reject(
                Code.TOO_MANY_SESSIONS,
                f"sender {sender} already has {count} sessions open (limit {self.max_per_sender})",
            )
        self._sessions[sender] = count + 1
        return None

    def close_session(self, sender: SenderNumber) -> None:
        """A session of ``sender`` ended."""
        count = self._sessions.get(sender, 0) - 1
        if count <= 0:
            self._sessions.pop(sender, None)
        else:
            self._sessions[sender] = count

    def sessions(self, sender: SenderNumber) -> int:
        """Sessions of ``sender`` open now."""
        return self._sessions.get(sender, 0)
