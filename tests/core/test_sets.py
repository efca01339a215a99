"""Set assembly: complete sets, every consistency code, TD, timeout, the transition table."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.codes import Code, Rejection
from gateway.core.names import Environment, FileName, Kind
from gateway.core.sets import (
    TRANSITIONS,
    Cancelled,
    CompleteSet,
    Event,
    Expired,
    PendingSet,
    Phase,
    RejectedSet,
    UploadedFile,
    add_file,
    expire,
    expiry_reason,
    on_go,
    on_td,
)
from gateway.core.types import Application, SenderNumber

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def name(
    kind: Kind,
    parts: int | None = None,
    part: int | None = None,
    *,
    env: Environment = Environment.R,
    app: str = "DMFA",
) -> FileName:
    return FileName(
        kind=kind,
        application=Application(app),
        sender=SenderNumber("006400"),
        date=date(2026, 1, 15),
        sequence="00001",
        environment=env,
        parts=parts,
        part=part,
    )


def upload(
    kind: Kind,
    parts: int | None,
    part: int | None,
    *,
    env: Environment = Environment.R,
    app: str = "DMFA",
) -> UploadedFile:
    n = name(kind, parts, part, env=env, app=app)
    return UploadedFile(name=n, size=100 if kind is Kind.FI else 10, sha256=bytes(32))


def collect(files: list[UploadedFile]) -> PendingSet | None:
    state: PendingSet | None = None
    for i, f in enumerate(files):
        result = add_file(state, f, now=T0 + timedelta(minutes=i))
        assert isinstance(result, PendingSet), result
        state = result
    return state


def close(files: list[UploadedFile], go: FileName) -> CompleteSet | RejectedSet:
    return on_go(collect(files), go, now=T0)


def full(n: int, env: Environment = Environment.R) -> list[UploadedFile]:
    files = [upload(Kind.FI, n, i, env=env) for i in range(1, n + 1)]
    if env is not Environment.S:
        files += [upload(Kind.FS, n, i, env=env) for i in range(1, n + 1)]
    return files


def code(result: object) -> Code | None:
    return result.rejection.code if isinstance(result, RejectedSet) else None


def test_four_part_set_completes_in_part_order() -> None:
    """FI 1..4 and FS 1..4 in any order plus GO.4 give four ordered (FI, FS) pairs."""
    files = full(4)
    files.reverse()
    result = close(files, name(Kind.GO, 4))
    assert isinstance(result, CompleteSet)
    assert [(fi.name.part, fs.name.part if fs else None) for fi, fs in result.pairs] == [
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
    ]
    assert result.total_bytes == 4 * 110
    assert result.key == name(Kind.GO, 4).set_key


def test_simulation_set_has_no_fs() -> None:
    """In S the set is the FI parts and the GO; pairs carry None for FS."""
    result = close(full(2, Environment.S), name(Kind.GO, 2, env=Environment.S))
    assert isinstance(result, CompleteSet)
    assert [fs for _, fs in result.pairs] == [None, None]


def test_drs_single_file_set() -> None:
    """Names without the parts suffix (WECH) form a one-FI set."""
    files = [upload(Kind.FI, None, None, app="WECH"), upload(Kind.FS, None, None, app="WECH")]
    result = close(files, name(Kind.GO, app="WECH"))
    assert isinstance(result, CompleteSet)
    assert len(result.pairs) == 1


R = Environment.R
S = Environment.S


@pytest.mark.parametrize(
    ("files", "go", "expected"),
    [
        ([], name(Kind.GO, 1), Code.NO_DECLARATION_FILE),
        ([upload(Kind.FS, 1, 1)], name(Kind.GO, 1), Code.NO_DECLARATION_FILE),
        (full(3), name(Kind.GO, 4), Code.FI_NUMBERING_WRONG),
        ([upload(Kind.FI, None, None)], name(Kind.GO, 1), Code.FI_NUMBERING_WRONG),
        (
            [upload(Kind.FI, 1, 1, env=S), upload(Kind.FS, 1, 1, env=S)],
            name(Kind.GO, 1, env=S),
            Code.SIGNATURE_NOT_ALLOWED,
        ),
        (
            [upload(Kind.FI, 2, 1), upload(Kind.FI, 2, 2), upload(Kind.FS, 3, 1)],
            name(Kind.GO, 2),
            Code.FS_NUMBERING_WRONG,
        ),
        (
            [upload(Kind.FI, 2, 1), upload(Kind.FS, 2, 1), upload(Kind.FS, 2, 2)],
            name(Kind.GO, 2),
            Code.FI_FS_NUMBER_MISMATCH,
        ),
        ([upload(Kind.FI, 2, 1), upload(Kind.FS, 2, 1)], name(Kind.GO, 2), Code.FI_NUMBERING_WRONG),
        (full(2)[:2], name(Kind.GO, 2), Code.SIGNATURE_MISSING),
        (
            [upload(Kind.FI, 1, 1, env=Environment.T)],
            name(Kind.GO, 1, env=Environment.T),
            Code.SIGNATURE_MISSING,
        ),
        (full(2)[:3], name(Kind.GO, 2), Code.FI_FS_COUNT_MISMATCH),
        (
            [replace(upload(Kind.FI, 1, 1), size=0), upload(Kind.FS, 1, 1)],
            name(Kind.GO, 1),
            Code.NO_DATA,
        ),
    ],
)
def test_set_level_faults(files: list[UploadedFile], go: FileName, expected: Code) -> None:
    """Each inconsistency is refused at GO with its code, keeping the files for removal."""
    result = close(files, go)
    assert isinstance(result, RejectedSet)
    assert result.rejection.code == expected, result.rejection
    assert result.files == tuple(files)
    assert result.go == go


def test_duplicate_name_is_refused_and_state_kept() -> None:
    """A second FI or FS with the same name is 123 / 124 and does not change the set."""
    state = collect(full(1))
    assert state is not None
    again_fi = add_file(state, upload(Kind.FI, 1, 1), now=T0)
    again_fs = add_file(state, upload(Kind.FS, 1, 1), now=T0)
    assert isinstance(again_fi, Rejection)
    assert isinstance(again_fs, Rejection)
    assert (again_fi.code, again_fs.code) == (Code.FI_NUMBERING_WRONG, Code.FS_NUMBERING_WRONG)
    assert "already received" in again_fi.reason


def test_pending_set_tracks_activity_and_bytes() -> None:
    """Each accepted file moves last_activity to its own instant."""
    state = collect(full(2))
    assert state is not None
    assert state.last_activity == T0 + timedelta(minutes=3)
    assert state.total_bytes == 220
    assert state.phase is Phase.COLLECTING


def test_td_cancels_pending_and_empty_sets() -> None:
    """TD returns the files to remove and a 930 record, also when nothing was pending."""
    state = collect(full(2))
    cancelled = on_td(state, name(Kind.TD, 2))
    assert isinstance(cancelled, Cancelled)
    assert cancelled.files == tuple(full(2))
    assert cancelled.rejection.code == Code.SET_CANCELLED
    empty = on_td(None, name(Kind.TD, 2))
    assert empty.files == ()


def test_timeout_boundaries() -> None:
    """A set idle for less than the timeout stays; at the timeout it expires with 130."""
    state = collect(full(1))
    assert state is not None
    last = state.last_activity
    day = timedelta(hours=24)
    assert expire(state, now=last + day - timedelta(microseconds=1), timeout=day) is None
    expired = expire(state, now=last + day, timeout=day)
    assert isinstance(expired, Expired)
    assert expired.rejection.code == Code.GO_NOT_RECEIVED
    assert "24 h" in expired.rejection.reason
    assert expired.files == state.files
    assert expired.key == state.key


def test_wrong_event_for_the_set_is_a_caller_bug() -> None:
    """A GO passed to add_file, or a file of another set, raises ValueError (not peer input)."""
    state = collect(full(1))
    with pytest.raises(ValueError, match="is not one of"):
        add_file(state, UploadedFile(name=name(Kind.GO, 1), size=0, sha256=b""), now=T0)
    other = UploadedFile(name=replace(name(Kind.FI, 1, 1), sequence="00002"), size=1, sha256=b"")
    with pytest.raises(ValueError, match="does not belong"):
        add_file(state, other, now=T0)
    with pytest.raises(ValueError, match="is not one of"):
        on_td(state, name(Kind.GO, 1))


def test_outcomes_follow_the_transition_table() -> None:
    """Every function's result is a phase the table allows for its (phase, event)."""
    state = collect(full(1))
    assert state is not None
    started = add_file(None, upload(Kind.FI, 1, 1), now=T0)
    added = add_file(state, upload(Kind.FI, 2, 2), now=T0)
    expired = expire(state, now=T0 + timedelta(days=2), timeout=timedelta(days=1))
    assert isinstance(started, PendingSet)
    assert isinstance(added, PendingSet)
    assert isinstance(expired, Expired)
    observed = {
        (None, Event.FILE): started.phase,
        (Phase.COLLECTING, Event.FILE): added.phase,
        (None, Event.GO): on_go(None, name(Kind.GO, 1), now=T0).phase,
        (Phase.COLLECTING, Event.GO): on_go(state, name(Kind.GO, 1), now=T0).phase,
        (None, Event.TD): on_td(None, name(Kind.TD, 1)).phase,
        (Phase.COLLECTING, Event.TD): on_td(state, name(Kind.TD, 1)).phase,
        (Phase.COLLECTING, Event.TICK): expired.phase,
    }
    assert set(observed) == set(TRANSITIONS)
    for key, phase in observed.items():
        assert phase in TRANSITIONS[key], key


@given(st.integers(1, 9), st.sampled_from(list(Environment)), st.randoms(use_true_random=False))
def test_any_arrival_order_completes(n: int, env: Environment, rnd: random.Random) -> None:
    """A full set completes whatever the order its files arrive in."""
    files = full(n, env)
    rnd.shuffle(files)
    result = close(files, name(Kind.GO, n, env=env))
    assert isinstance(result, CompleteSet)
    assert [fi.name.part for fi, _ in result.pairs] == list(range(1, n + 1))


@given(st.integers(1, 9), st.data())
def test_dropping_any_file_is_refused(n: int, data: st.DataObject) -> None:
    """Removing any one FI or FS from a full R set gives a set-level refusal, never a set."""
    files = full(n)
    del files[data.draw(st.integers(0, len(files) - 1))]
    result = close(files, name(Kind.GO, n))
    assert code(result) in {
        Code.FI_NUMBERING_WRONG,
        Code.FI_FS_NUMBER_MISMATCH,
        Code.FI_FS_COUNT_MISMATCH,
        Code.SIGNATURE_MISSING,
        Code.NO_DECLARATION_FILE,
    }


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (timedelta(hours=24), "within 24 h "),
        (timedelta(minutes=90), "within 90 min "),
        (timedelta(seconds=2), "within 2 s "),
        (timedelta(milliseconds=1500), "within 1.5 s "),
    ],
)
def test_expiry_reason_names_the_timeout_in_a_readable_unit(
    timeout: timedelta, expected: str
) -> None:
    """The 130 reason shows the timeout as a sender would write it, not as a fraction of hours."""
    assert expected in expiry_reason(timeout)
