"""Ending open sessions whose credential the registry no longer admits (issue 16).

Each channel lists its open sessions with the principal that opened them; the registry answers,
in one batch, which of them it would still admit (``Registry.still_allowed``); the channel ends
the others at once (an upload in progress is aborted: nothing visible, nothing recorded) and
logs ``session.revoked``. The daemon runs this after every revocation on its node and every few
seconds in any case.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from gateway.registry.types import ChannelKind, OpenSession, Principal

T = TypeVar("T")

StillAllowed = Callable[[Sequence[OpenSession]], Awaitable[list[bool]]]
"""``Registry.still_allowed``."""

REVOKED_TEXT = "your credential was revoked: closing the session"


async def revoked(
    sessions: Sequence[tuple[T, Principal]], channel: ChannelKind, check: StillAllowed
) -> list[T]:
    """The sessions (their handles) whose principal's credential is no longer admitted."""
    if not sessions:
        return []
    answers = await check(
        [OpenSession(principal.login, channel, principal.credential) for _, principal in sessions]
    )
    return [handle for (handle, _), ok in zip(sessions, answers, strict=True) if not ok]
