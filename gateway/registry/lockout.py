"""Account lockout: one rule for every password login (SFTP, FTP, the console's password and
code sign-ins).

Rules (issue 15 item 4, issue 16 "the lockout is shared by every password login"):

- An account is locked after ``failures`` failed checks of its password (or console code)
  within ``window``, for ``duration``. While it is locked every password login of the account is
  refused with the channel's usual generic answer, the right password included; its SSH keys
  and certificates still log in (guessing a password must not cut a sender off).
- A failure while locked does not count, so guessing on does not stretch the lock; a good login
  clears the count; a manager's unblock or a password reset lifts the lock at once.
- Only existing accounts are counted, keyed by user id (a login and its sender number share one
  count). An unknown login writes nothing, so guesses cannot fill the table; it is answered the
  same way, after the same one argon2 verification (SECURITY.md 6).

Why the state is the registry database's (table ``login_lockouts``) and not each node's memory:
behind a balancer every node would grant its own allowance (N nodes: N times the guesses), a
restart would forget the count, and an operator or a manager could not see or lift a lock held
in another process. The cost is one small write per failed check, which is already bounded by
the attempts per connection, the per-source penalties and the password pool.

The writes take no registry write lock (the audit head): they change no audited state. They lock
their own row first (a no-op update) so that failures counted by two nodes at once are never
lost. Times are instants in UTC (:class:`~gateway.registry.instant.UtcDateTime`), like every
registry time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, ForeignKey, Integer, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.registry.db import Base
from gateway.registry.instant import UtcDateTime, as_utc


class LoginLockoutRow(Base):
    """Failed password checks of one account in the current window, and its lock."""

    __tablename__ = "login_lockouts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockoutPolicy:
    """The rule (``[limits] login_lockout_*``)."""

    failures: int = 5
    window: timedelta = timedelta(minutes=15)
    duration: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class LockState:
    """An account's count and lock, as stored."""

    failures: int
    window_start: datetime
    locked_until: datetime | None = None


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    """Whether a lock ending at ``locked_until`` holds at ``now``."""
    return locked_until is not None and locked_until > now


def after_failure(
    state: LockState | None, now: datetime, policy: LockoutPolicy
) -> tuple[LockState, bool]:
    """The state after one failed check at ``now``, and whether this failure locked it."""
    if state is not None and is_locked(state.locked_until, now):
        return state, False  # failures while locked do not count
    now = as_utc(now)
    if state is None or now - state.window_start >= policy.window:
        failures, start = 1, now
    else:
        failures, start = state.failures + 1, state.window_start
    if failures >= policy.failures:
        return LockState(0, now, now + policy.duration), True
    return LockState(failures, start), False


async def record_failure(
    session: AsyncSession, user_id: int, now: datetime, policy: LockoutPolicy
) -> datetime | None:
    """Count one failed check of ``user_id``; the end of the lock when this failure locked it.
    In the caller's transaction, which a concurrent first insert can make fail with
    ``IntegrityError`` (the caller runs it again)."""
    # Lock the row before reading it: two nodes counting at once wait for each other.
    found = cast(
        CursorResult[Any],
        await session.execute(
            update(LoginLockoutRow)
            .where(LoginLockoutRow.user_id == user_id)
            .values(failures=LoginLockoutRow.failures)
        ),
    )
    row = await session.get(LoginLockoutRow, user_id) if found.rowcount else None
    before = None if row is None else LockState(row.failures, row.window_start, row.locked_until)
    state, locked = after_failure(before, now, policy)
    if row is None:
        session.add(
            LoginLockoutRow(
                user_id=user_id,
                failures=state.failures,
                window_start=state.window_start,
                locked_until=state.locked_until,
            )
        )
        await session.flush()
    else:
        row.failures = state.failures
        row.window_start = state.window_start
        row.locked_until = state.locked_until
    return state.locked_until if locked else None


async def lock_of(session: AsyncSession, user_id: int) -> LockState | None:
    """The stored count and lock of ``user_id``, if any."""
    row = await session.scalar(select(LoginLockoutRow).where(LoginLockoutRow.user_id == user_id))
    return None if row is None else LockState(row.failures, row.window_start, row.locked_until)


async def lift(session: AsyncSession, user_id: int) -> LockState | None:
    """Forget the count and lift the lock of ``user_id``; returns what was stored."""
    before = await lock_of(session, user_id)
    if before is not None:
        await session.execute(delete(LoginLockoutRow).where(LoginLockoutRow.user_id == user_id))
    return before
