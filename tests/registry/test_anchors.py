"""Anchors of the audit chain (issue 15 item 5): the two attacks the hash chain alone misses.

A registry changed through ``gateway admin``, its head anchored by the daemon's own anchoring step
(``gateway.daemon._anchor_once``: signed with the gateway key, appended to the anchors file), then
attacked in the database as someone with write access would: the tail deleted and the head
rewound, or a record edited and the whole chain rehashed. ``audit verify`` alone passes both;
``audit verify --anchors`` reports them and exits 3.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.daemon import _anchor_once
from gateway.ops.settings import PipelineSettings
from gateway.pipeline.identity import ensure_gateway_identity
from gateway.registry.anchors import sign_anchor
from gateway.registry.audit import GENESIS, record_hash
from gateway.registry.db import create_engine
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from tests.registry import test_admin_e2e as e2e
from tests.registry.test_admin_e2e import Admin

# The command-line fixtures of the admin end-to-end tests.
admin_env = e2e.admin_env
admin = e2e.admin

KBO = "0417497106"


def _changes(admin: Admin) -> None:
    admin.ok("db", "migrate")
    admin.ok(
        "enterprise", "provision", KBO, "--name", "ACME Payroll",
        "--htb-name", "Anne Martin", "--htb-email", "anne@acme.example",
        "--htb-phone", "+32470112233",
    )  # fmt: skip
    admin.ok("enterprise", "password-login", KBO, "off")
    admin.ok("enterprise", "password-login", KBO, "on")


def _anchor(state: Path) -> Path:
    """Anchor the chain's head as the daemon does; the anchors file."""
    key_pem, _ = ensure_gateway_identity(state, PipelineSettings())
    key = load_pem_private_key(key_pem, password=None)
    path = state / "audit-anchors.jsonl"

    async def run() -> None:
        registry = Registry(
            create_engine(f"sqlite+aiosqlite:///{state / 'registry.sqlite3'}"),
            clock=lambda: datetime.now(UTC),
            notifier=OutboxNotifier(state / "outbox"),
        )
        try:
            last: list[int] = []
            await _anchor_once(registry, key, path, last)
            await _anchor_once(registry, key, path, last)  # nothing new: no second line
        finally:
            await registry.engine.dispose()

    asyncio.run(run())
    return path


def _rows(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return list(
        conn.execute(
            "SELECT seq, at, actor, action, target, before, after FROM audit_log ORDER BY seq"
        )
    )


def _rehash(conn: sqlite3.Connection) -> None:
    """Recompute every record's hash and the head, as an attacker who edited the chain would."""
    previous = GENESIS
    for seq, at, actor, action, target, before, after in _rows(conn):
        digest = record_hash(
            previous, seq=int(str(seq)), at=str(at), actor=str(actor), action=str(action),
            target=str(target), before=str(before), after=str(after),
        )  # fmt: skip
        conn.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, digest, seq)
        )
        previous = digest
    last = conn.execute("SELECT max(seq) FROM audit_log").fetchone()[0]
    conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (last, previous))


def test_anchors_catch_a_truncated_chain(admin: Admin, admin_env: Path) -> None:
    """The tail deleted and the head rewound: the chain verifies, the anchors do not (exit 3)."""
    _changes(admin)
    anchors = _anchor(admin_env)
    assert len(anchors.read_text().splitlines()) == 1
    anchored = json.loads(anchors.read_text())
    good = admin.ok("audit", "verify", "--anchors", str(anchors))
    assert (good["problems"], good["anchors"]) == ([], 1)
    with sqlite3.connect(admin_env / "registry.sqlite3") as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = ?", (anchored["seq"],))
        _rehash(conn)
    assert admin.ok("audit", "verify")["problems"] == []  # the chain alone is fooled
    code, report = admin("audit", "verify", "--anchors", str(anchors))
    assert code == 3
    assert [p["seq"] for p in report["problems"]] == [anchored["seq"]]
    assert "truncated" in report["problems"][0]["problem"]


def test_anchors_catch_a_rewritten_chain(admin: Admin, admin_env: Path) -> None:
    """A record edited and every hash recomputed: the chain verifies, the anchors do not."""
    _changes(admin)
    anchors = _anchor(admin_env)
    with sqlite3.connect(admin_env / "registry.sqlite3") as conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
        _rehash(conn)
    assert admin.ok("audit", "verify")["problems"] == []
    code, report = admin("audit", "verify", "--anchors", str(anchors))
    assert code == 3
    assert "rewritten" in report["problems"][0]["problem"]


def test_a_forged_anchor_is_reported(admin: Admin, admin_env: Path) -> None:
    """An anchor whose signature does not verify (edited seq) is a problem, not trusted."""
    _changes(admin)
    anchors = _anchor(admin_env)
    line = json.loads(anchors.read_text())
    line["seq"] = 1
    anchors.write_text(json.dumps(line) + "\nnot json\n")
    code, report = admin("audit", "verify", "--anchors", str(anchors))
    assert code == 3
    problems = [p["problem"] for p in report["problems"]]
    assert any("signature does not verify" in p for p in problems)
    assert any("is not an anchor" in p for p in problems)


# -- SECURITY.md 19: variants of the two attacks, and of a forged anchor ---------------------------


def _delete_middle_and_renumber(conn: sqlite3.Connection) -> None:
    """A record out of the middle, the later ones renumbered and the chain rehashed: no gap."""
    conn.execute("DELETE FROM audit_log WHERE seq = 2")
    conn.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
    _rehash(conn)


def _delete_middle(conn: sqlite3.Connection) -> None:
    """A record out of the middle, nothing else: the chain alone sees the gap."""
    conn.execute("DELETE FROM audit_log WHERE seq = 2")


def _swap_two(conn: sqlite3.Connection) -> None:
    """Records 2 and 3 trade places (their content), the chain rehashed."""
    second, third = (
        conn.execute(
            "SELECT at, actor, action, target, before, after FROM audit_log WHERE seq = ?", (seq,)
        ).fetchone()
        for seq in (2, 3)
    )
    for seq, values in ((2, third), (3, second)):
        conn.execute(
            "UPDATE audit_log SET at = ?, actor = ?, action = ?, target = ?, before = ?, after = ?"
            " WHERE seq = ?",
            (*values, seq),
        )
    _rehash(conn)


def _rewrite_and_forge(conn: sqlite3.Connection, anchors: Path) -> None:
    """The chain rewritten, and the anchor's hash edited to match (no key: old signature)."""
    conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    _rehash(conn)
    line = json.loads(anchors.read_text())
    line["hash"] = conn.execute("SELECT hash FROM audit_head").fetchone()[0]
    anchors.write_text(json.dumps(line) + "\n")


def _rewrite_and_resign(conn: sqlite3.Connection, anchors: Path) -> None:
    """The chain rewritten, and the anchors file replaced by one signed with another key."""
    conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    _rehash(conn)
    seq, digest = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
    old = json.loads(anchors.read_text())
    forged = sign_anchor(ec.generate_private_key(ec.SECP256R1()), seq, digest, old["at"])
    anchors.write_text(forged.line() + "\n")


ANCHOR_ATTACKS: dict[str, tuple[Callable[[sqlite3.Connection, Path], None], str, bool]] = {
    # name: (attack on the database and the anchors file, what verify --anchors says,
    #        whether the chain alone is fooled)
    "middle-deleted-renumbered": (lambda c, _: _delete_middle_and_renumber(c), "truncated", True),
    "middle-deleted": (lambda c, _: _delete_middle(c), "missing", False),
    "two-swapped": (lambda c, _: _swap_two(c), "rewritten", True),
    "forged-hash": (_rewrite_and_forge, "signature does not verify", True),
    "resigned-other-key": (_rewrite_and_resign, "signature does not verify", True),
}


def test_anchor_attack_variants(admin: Admin, admin_env: Path, subtests: pytest.Subtests) -> None:
    """Each attack on one anchored registry (restored between them): a middle record deleted
    and the rest renumbered (truncated), deleted with its gap left, two records swapped
    (rewritten), the anchor's hash edited to match a rewrite, the anchors file re-signed with
    another key: ``audit verify --anchors`` exits 3 naming it every time."""
    _changes(admin)
    anchors = _anchor(admin_env)
    database = admin_env / "registry.sqlite3"
    pristine = {path: path.read_bytes() for path in (database, anchors)}
    for name, (attack, problem, fooled) in ANCHOR_ATTACKS.items():
        with subtests.test(attack=name):
            for path, data in pristine.items():
                path.write_bytes(data)
            with sqlite3.connect(database) as conn:
                attack(conn, anchors)
            conn.close()
            chain = admin("audit", "verify")[1]["problems"]
            assert (chain == []) == fooled, chain
            code, report = admin("audit", "verify", "--anchors", str(anchors))
            assert code == 3
            assert any(problem in p["problem"] for p in report["problems"]), report
