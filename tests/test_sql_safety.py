"""SQL is only ever built with bound parameters (SECURITY.md 1).

Two guards:
- a static scan of the product (``gateway/``) and the benchmarks (``bench/``): ``text()``,
  ``literal_column()`` and ``DDL()`` take string literals only; no ``exec_driver_sql``; no
  ``execute``/``executemany``/``executescript``/``fetch*`` call is given an f-string, a ``%`` or
  ``+`` expression or a ``.format()`` call. The scanner is itself tested on bad snippets.
- SQL-injection payloads sent through the registry (logins, passwords, names, quality kinds,
  KBO numbers) come back as refusals or as verbatim data, and every table survives.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    EnterpriseNumber,
    PasswordCredential,
    Person,
    QualityRef,
    Refusal,
)
from gateway.registry.validate import kbo_with_check_digits

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("gateway", "bench")
LITERAL_ONLY = {"text", "literal_column", "DDL"}
NO_BUILT_SQL = {"execute", "executemany", "executescript", "fetch", "fetchrow", "fetchval"}
FORBIDDEN_CALLS = {"exec_driver_sql"}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _built_string(node: ast.expr) -> bool:
    """True for an expression that builds a string at run time."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"format", "join", "replace"}
    )


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Every place in ``source`` where SQL may be built from strings."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        where = f"{filename}:{node.lineno}"
        if name in FORBIDDEN_CALLS:
            found.append(f"{where}: {name}() sends raw SQL")
        elif name in LITERAL_ONLY and node.args:
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                found.append(f"{where}: {name}() must be given a string literal")
        elif name in NO_BUILT_SQL and node.args and _built_string(node.args[0]):
            found.append(f"{where}: {name}() is given SQL built from strings")
    return found


def test_no_sql_is_built_from_strings() -> None:
    """The product and the benchmarks only run literal SQL or SQLAlchemy expressions."""
    problems = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            problems += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert problems == []


@pytest.mark.parametrize(
    "snippet",
    [
        "session.execute(text(f'SELECT * FROM users WHERE login = {login}'))",
        "session.execute(text('SELECT * FROM users WHERE login = ' + login))",
        "session.execute(text('SELECT * FROM users WHERE login = %s' % login))",
        "session.execute(text(query))",
        "conn.exec_driver_sql('DELETE FROM users')",
        "cursor.execute(f'DELETE FROM users WHERE id = {i}')",
        "cursor.execute('DELETE FROM users WHERE id = {}'.format(i))",
        "await conn.fetch('SELECT ' + column + ' FROM t')",
        "select(literal_column(name))",
    ],
)
def test_scanner_catches_string_built_sql(snippet: str) -> None:
    """The scanner flags each way of building SQL from strings."""
    assert violations(snippet) != []


@pytest.mark.parametrize(
    "snippet",
    [
        "session.execute(text('SELECT 1 WHERE x = :x'), {'x': value})",
        "session.execute(select(User).where(User.login == login))",
        "cursor.execute('PRAGMA foreign_keys=ON')",
        "cursor.execute('SELECT * FROM t WHERE a = ?', (a,))",
    ],
)
def test_scanner_accepts_bound_parameters(snippet: str) -> None:
    """Literal SQL with bound parameters, and SQLAlchemy expressions, pass."""
    assert violations(snippet) == []


PAYLOADS = [
    "' OR '1'='1",
    "admin'--",
    "x'; DROP TABLE users; --",
    "1) OR (1=1",
    '"; DELETE FROM enterprises; --',
    "' UNION SELECT password_hash FROM users --",
    "%' OR login LIKE '%",
]


async def test_injection_payloads_through_the_registry(tmp_path: Path) -> None:
    """Payloads in logins, passwords, names, kinds and KBO numbers never reach SQL as code."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.sqlite3'}"
    await migrate(url)
    engine = create_engine(url)
    registry = Registry(
        engine,
        clock=lambda: datetime.now(UTC),
        notifier=OutboxNotifier(tmp_path / "outbox"),
        hashing=PasswordHashing(Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)),
        catalogue=load_service_catalogue(ROOT / "config" / "services.toml"),
    )
    try:
        kbo = kbo_with_check_digits(4000001)
        done = await registry.provision_enterprise(
            actor=None,
            kbo=kbo,
            name=PAYLOADS[2],
            htb=Person(
                name=PAYLOADS[0], email="a@example.be", national_register_number="85010112387"
            ),
            htb_login="htb-x",
        )
        assert not isinstance(done, Refusal)
        assert await registry.activate_quality(actor=None, kbo=kbo, kind="employer") is not None
        quality = QualityRef(kbo, "employer")
        for payload in PAYLOADS:
            made = await registry.create_user(
                actor=None, quality=quality, person=Person(name=payload, email="u@example.be")
            )
            assert not isinstance(made, Refusal)
            for call in (
                registry.authenticate(
                    payload, PasswordCredential(payload), channel=ChannelKind.ftp
                ),
                registry.console_login(payload, PasswordCredential(payload)),
            ):
                result = await call
                assert isinstance(result, AuthFailure)
                assert result.reason in {"invalid_login", "unknown_login"}
            as_actor = await registry.users(actor=payload, quality=quality)
            assert isinstance(as_actor, Refusal)
            as_kind = await registry.users(actor=None, quality=QualityRef(kbo, payload))
            assert isinstance(as_kind, Refusal)
            as_kbo = await registry.enterprise(actor=None, kbo=EnterpriseNumber(payload))
            assert isinstance(as_kbo, Refusal)
        users = await registry.users(actor=None, quality=quality)
        assert not isinstance(users, Refusal)
        assert {u.name for u in users} == set(PAYLOADS)
        view = await registry.enterprise(actor=None, kbo=kbo)
        assert not isinstance(view, Refusal)
        assert view.name == PAYLOADS[2]
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"users", "enterprises", "audit_log"} <= tables
        assert (await registry.audit_verify()).ok
    finally:
        await engine.dispose()
