"""The account lockout every password login shares, and the bounded password pool (issue 15
item 4, issue 16), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.registry.credentials import Argon2Parameters, PasswordHashing, Verdict
from gateway.registry.lockout import LockoutPolicy, LockState, after_failure
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    IssuedPassword,
    PasswordCredential,
    Principal,
    PublicKeyCredential,
)
from tests.registry.configured import TECH, configured
from tests.registry.conftest import CHEAP, Clock, KeyPair
from tests.registry.world import EMPLOYER_A, ok

FTP_PASSWORD = "ftp-secret-42"
WRONG = PasswordCredential("wrong-guess-1")
GOOD = PasswordCredential(FTP_PASSWORD)
PEER = "192.0.2.7"


async def _with_ftp(registry: Registry, key: KeyPair) -> None:
    await configured(registry, key.public_line)
    ok(
        await registry.add_channel(
            actor="htb-a", quality=EMPLOYER_A, kind=ChannelKind.ftp, ftp_password=FTP_PASSWORD
        )
    )


async def _ftp(registry: Registry, credential: PasswordCredential) -> Principal | AuthFailure:
    return await registry.authenticate(TECH, credential, channel=ChannelKind.ftp, peer=PEER)


def test_the_rule_counts_in_a_window_and_ignores_failures_while_locked() -> None:
    """Five failures in the window lock for the duration; an old window starts again; a
    failure while locked changes nothing."""
    policy = LockoutPolicy(failures=3, window=timedelta(minutes=10), duration=timedelta(hours=1))
    clock = Clock()
    t0 = clock()
    state, locked = after_failure(None, t0, policy)
    assert (state, locked) == (LockState(1, t0), False)
    state, _ = after_failure(state, t0 + timedelta(minutes=11), policy)
    assert state.failures == 1  # the first one fell out of the window
    state, _ = after_failure(state, t0 + timedelta(minutes=12), policy)
    state, locked = after_failure(state, t0 + timedelta(minutes=13), policy)
    assert locked
    assert state.locked_until == t0 + timedelta(minutes=73)
    again, locked = after_failure(state, t0 + timedelta(minutes=20), policy)
    assert (again, locked) == (state, False)


async def test_sftp_and_ftp_failures_share_one_lock(
    registry: Registry, ssh_keys: list[KeyPair], clock: Clock
) -> None:
    """Two SFTP password guesses and three FTP ones (by login or sender number) lock the
    technical user: the right FTP password is then refused as ``locked``, its SSH key still logs
    in, and the lock ends after its duration."""
    await _with_ftp(registry, ssh_keys[0])
    sender = await configured_sender(registry)
    for login in (TECH, sender):
        refused = await registry.authenticate(login, WRONG, channel=ChannelKind.sftp)
        assert refused == AuthFailure("bad_credential")
    for _ in range(3):
        assert await _ftp(registry, WRONG) == AuthFailure("bad_credential")
    assert await _ftp(registry, GOOD) == AuthFailure("locked")
    assert await registry.login_locked(TECH)
    key = PublicKeyCredential(ssh_keys[0].public_line)
    assert isinstance(await registry.authenticate(TECH, key, channel=ChannelKind.sftp), Principal)
    clock.offset += timedelta(minutes=14)
    assert await _ftp(registry, WRONG) == AuthFailure("locked")  # does not stretch the lock
    clock.offset += timedelta(minutes=2)
    assert isinstance(await _ftp(registry, GOOD), Principal)
    for _ in range(4):
        assert await _ftp(registry, WRONG) == AuthFailure("bad_credential")
    assert isinstance(await _ftp(registry, GOOD), Principal)  # four, then a good one: cleared
    for _ in range(4):
        await _ftp(registry, WRONG)
    assert isinstance(await _ftp(registry, GOOD), Principal)


async def configured_sender(registry: Registry) -> str:
    """The sender number of ``TECH``'s quality."""
    principal = await registry.authenticate(TECH, GOOD, channel=ChannelKind.ftp, peer=PEER)
    assert isinstance(principal, Principal)
    assert principal.sender is not None
    return principal.sender


async def test_unblock_and_reset_lift_the_lock_and_an_unblock_is_audited(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """A manager's unblock lifts a lockout of an active account (audited ``user.unlock``); a
    password reset lifts a console lockout."""
    await _with_ftp(registry, ssh_keys[0])
    for _ in range(5):
        await _ftp(registry, WRONG)
    assert await _ftp(registry, GOOD) == AuthFailure("locked")
    assert await registry.unblock_user(actor="htb-a", login=TECH) is None
    assert isinstance(await _ftp(registry, GOOD), Principal)
    entries = await registry.audit_entries(limit=1)
    assert (entries[0].action, entries[0].target) == ("user.unlock", TECH)
    refused = await registry.unblock_user(actor="htb-a", login=TECH)  # nothing to lift
    assert refused is not None
    for _ in range(5):
        await registry.console_login("htb-a", WRONG)
    assert await registry.console_login("htb-a", WRONG) == AuthFailure("locked")
    issued = await registry.reset_password(actor=None, login="htb-a")
    assert isinstance(issued, IssuedPassword)
    signed = await registry.console_login("htb-a", PasswordCredential(issued.password))
    assert isinstance(signed, Principal)


async def test_the_console_lock_is_the_registrys_and_holds_across_a_restart(
    registry: Registry, ssh_keys: list[KeyPair], tmp_path: Path
) -> None:
    """Console password and code failures count together; the lock is in the database, so a
    second registry on it (another node, or after a restart) sees it."""
    await configured(registry, ssh_keys[0].public_line)
    issued = await registry.reset_password(actor=None, login="htb-a")
    assert isinstance(issued, IssuedPassword)
    right = PasswordCredential(issued.password)
    for _ in range(3):
        assert await registry.console_login("htb-a", WRONG) == AuthFailure("bad_credential")
    for _ in range(2):
        await registry.login_failed("htb-a")  # two wrong console codes
    assert await registry.console_login("htb-a", right) == AuthFailure("locked")
    other = Registry(registry.engine, clock=registry.clock, notifier=OutboxNotifier(tmp_path))
    assert await other.login_locked("htb-a")
    assert await other.console_login("htb-a", right) == AuthFailure("locked")
    await registry.login_failed("nobody-at-all")  # an unknown login writes nothing
    assert not await registry.login_locked("nobody-at-all")


class GatedHashing(PasswordHashing):
    """argon2 checks that wait for the test to open the gate (a saturated pool, no timing)."""

    def __init__(self) -> None:
        super().__init__(CHEAP_PARAMS, workers=1, queue=1)
        self.gate = threading.Event()
        self.calls = 0
        self.two_in = asyncio.Event()

    async def check(self, stored: str | None, password: str) -> Verdict:
        # The pool admits a check in the same step as this call, before its first await.
        self.calls += 1
        if self.calls == 2:
            self.two_in.set()
        return await super().check(stored, password)

    def verify_sync(self, stored: str | None, password: str) -> bool:
        self.gate.wait(timeout=30)
        return super().verify_sync(stored, password)


CHEAP_PARAMS: Argon2Parameters = CHEAP


async def test_a_full_password_pool_refuses_at_once_and_key_logins_go_on(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """With one check running and one waiting, a third password login is ``busy`` (counted,
    not checked, not counted towards the lock) while an SSH key logs in; once the gate opens the
    two held checks finish."""
    await _with_ftp(registry, ssh_keys[0])
    gated = GatedHashing()
    registry.hashing = gated
    held = [asyncio.create_task(_ftp(registry, WRONG)) for _ in range(2)]
    async with asyncio.timeout(30):
        await gated.two_in.wait()
    assert gated.statistics().in_flight == 2
    assert await _ftp(registry, GOOD) == AuthFailure("busy")
    key = PublicKeyCredential(ssh_keys[0].public_line)
    assert isinstance(await registry.authenticate(TECH, key, channel=ChannelKind.sftp), Principal)
    gated.gate.set()
    assert await asyncio.gather(*held) == [AuthFailure("bad_credential")] * 2
    stats = gated.statistics()
    assert (stats.checked, stats.refused, stats.peak, stats.in_flight) == (2, 1, 2, 0)
    assert await gated.check(None, "x") is Verdict.mismatch
    assert isinstance(await _ftp(registry, GOOD), Principal)


async def test_an_unknown_login_pays_the_write_a_known_one_does(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """SECURITY.md 6: a wrong password commits a write for a known login (its failure count);
    an unknown login's wrong password commits one too, with the same lock-and-read statements,
    so the refusal's time does not tell the two apart (bench/login_flood.py measures it)."""
    from sqlalchemy import event

    await _with_ftp(registry, ssh_keys[0])
    statements: list[str] = []
    commits: list[int] = []

    def executed(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split()[0].upper())

    def committed(conn: object) -> None:
        commits.append(1)

    engine = registry.engine.sync_engine
    event.listen(engine, "after_cursor_execute", executed)
    event.listen(engine, "commit", committed)
    try:
        shapes = []
        for login in (TECH, "nobody-at-all"):
            statements.clear()
            commits.clear()
            refused = await registry.authenticate(login, WRONG, channel=ChannelKind.ftp, peer=PEER)
            assert isinstance(refused, AuthFailure)
            shapes.append((statements.count("UPDATE") >= 1, len(commits) >= 1))
    finally:
        event.remove(engine, "after_cursor_execute", executed)
        event.remove(engine, "commit", committed)
    assert shapes == [(True, True), (True, True)]


# -- SECURITY.md 19: variants of spreading the guesses ---------------------------------------------

_SPREADS = {
    # name: the (channel, spelling) of each of five wrong passwords; "{sender}" is the number
    "upper-case": [(ChannelKind.ftp, TECH.upper())] * 5,
    "padded": [(ChannelKind.sftp, f"  {TECH} ")] * 5,
    "sender-number": [(ChannelKind.ftp, "{sender}")] * 5,
    "every-spelling-and-channel": [
        (ChannelKind.sftp, TECH),
        (ChannelKind.ftp, TECH.title()),
        (ChannelKind.sftp, "{sender}"),
        (ChannelKind.ftp, f" {TECH.upper()} "),
        (ChannelKind.sftp, TECH.swapcase()),
    ],
}


@pytest.mark.parametrize("spread", list(_SPREADS))
async def test_guesses_under_other_spellings_count_against_one_account(
    registry: Registry, ssh_keys: list[KeyPair], spread: str
) -> None:
    """Five wrong passwords, whatever the login's case or padding, by login or sender number,
    over SFTP or FTP: one count, one lock; the right password is then refused under every
    spelling, on both channels."""
    await _with_ftp(registry, ssh_keys[0])
    sender = await configured_sender(registry)
    for channel, spelling in _SPREADS[spread]:
        login = spelling.format(sender=sender)
        failed = await registry.authenticate(login, WRONG, channel=channel, peer=PEER)
        assert failed == AuthFailure("bad_credential"), login
    for login in (TECH, TECH.upper(), sender):
        for channel in (ChannelKind.ftp, ChannelKind.sftp):
            locked = await registry.authenticate(login, GOOD, channel=channel, peer=PEER)
            assert locked == AuthFailure("locked"), (login, channel)


@pytest.mark.parametrize("login", ["ｔｅｃｈ-ａ", "tech\u2010a", "tech-a\u200b", "tech-\u0430"])
async def test_lookalike_logins_are_never_the_account(
    registry: Registry, ssh_keys: list[KeyPair], login: str
) -> None:
    """Full-width letters, a Unicode hyphen, a zero-width space, a Cyrillic ``а``: never the
    account, neither with the right password nor as guesses counted against it."""
    await _with_ftp(registry, ssh_keys[0])
    assert isinstance(
        await registry.authenticate(login, GOOD, channel=ChannelKind.ftp), AuthFailure
    )
    for _ in range(5):
        await registry.authenticate(login, WRONG, channel=ChannelKind.ftp, peer=PEER)
    assert not await registry.login_locked(TECH)
    assert isinstance(await _ftp(registry, GOOD), Principal)


async def test_console_guesses_under_other_spellings_lock_the_one_person(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """Five wrong console passwords as ``HTB-A``, `` htb-a ``, ``Htb-A`` and ``htb-a``: one
    count; the right password is then refused (locked) under every spelling."""
    await configured(registry, ssh_keys[0].public_line)
    issued = await registry.reset_password(actor=None, login="htb-a")
    assert isinstance(issued, IssuedPassword)
    for login in ("HTB-A", " htb-a ", "Htb-A", "htb-a", "HTB-a"):
        assert await registry.console_login(login, WRONG) == AuthFailure("bad_credential")
    right = PasswordCredential(issued.password)
    for login in ("htb-a", "HTB-A", " htb-a "):
        assert await registry.console_login(login, right) == AuthFailure("locked"), login
