"""gateway/core is sans-IO: no I/O modules, no clock, no files, no other gateway layer.

The check walks every module of ``gateway/core`` with ``ast`` (nothing is imported or run), so a
violation fails the build however it is spelled: ``import os``, ``from os import path``,
``import os.path as p``, a call of ``datetime.now()`` through any alias, a bare ``open(``. The
self-tests plant each kind of violation in a scratch source and prove the checker reports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "gateway" / "core"

FORBIDDEN_MODULES = frozenset(
    {
        # the brief's list: I/O, clock, randomness, logging
        "asyncio",
        "socket",
        "os",
        "sqlite3",
        "logging",
        "subprocess",
        "pathlib",
        "time",
        "random",
        "secrets",
        "structlog",
        # other ways to reach files, the network, processes or dynamic code
        "io",
        "shutil",
        "tempfile",
        "glob",
        "ssl",
        "http",
        "urllib",
        "select",
        "selectors",
        "signal",
        "threading",
        "multiprocessing",
        "uuid",
        "importlib",
        "sqlalchemy",
        "asyncssh",
        "aioftp",
        "aiosqlite",
        "asyncpg",
    }
)
# Methods that read the clock, whatever object they are called on (datetime, date, an alias).
CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
# Built-ins that touch files or run code.
FORBIDDEN_BUILTINS = frozenset({"open", "eval", "exec", "compile", "__import__", "input"})


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every layering violation in ``source``, as ``file:line: what``."""
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] if node.level == 0 else []
        else:
            modules = []
        for module in modules:
            top = module.split(".")[0]
            if top in FORBIDDEN_MODULES:
                report(node, f"imports {module}")
            if top == "gateway" and not module.startswith("gateway.core"):
                report(node, f"imports {module} (core depends on no other layer)")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in CLOCK_METHODS:
                report(node, f"reads the clock with .{func.attr}()")
            if isinstance(func, ast.Attribute) and func.attr == "time":
                report(node, "calls .time()")
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                report(node, f"calls {func.id}()")
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules() -> None:
    """The walk sees the core package (a wrong path would make the check vacuous)."""
    names = {p.name for p in core_modules()}
    assert {"codes.py", "names.py", "sets.py", "receipts.py", "types.py"} <= names


def test_core_is_sans_io() -> None:
    """No module of gateway/core imports I/O or reads the clock."""
    found = [
        v
        for path in core_modules()
        for v in violations(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import os", "imports os"),
        ("import os.path as p", "imports os.path"),
        ("from os import path", "imports os"),
        ("from pathlib import Path", "imports pathlib"),
        ("import asyncio, re", "imports asyncio"),
        ("import structlog", "imports structlog"),
        ("from secrets import token_bytes", "imports secrets"),
        ("import time\nx = time.time()", "calls .time()"),
        ("from datetime import datetime\nx = datetime.now()", "reads the clock with .now()"),
        ("import datetime as d\nx = d.datetime.utcnow()", "reads the clock with .utcnow()"),
        ("from datetime import date as D\nx = D.today()", "reads the clock with .today()"),
        ("data = open('x').read()", "calls open()"),
        ("eval('1')", "calls eval()"),
        ("from gateway.ops.settings import load_settings", "core depends on no other layer"),
    ],
)
def test_checker_catches_planted_violations(source: str, what: str) -> None:
    """The checker fails on each kind of violation, so test_core_is_sans_io can fail."""
    found = violations(source)
    assert any(what in v for v in found), found


def test_checker_allows_pure_code() -> None:
    """Pure code (re, hashlib, datetime arithmetic, core imports) passes."""
    source = (
        "import re, hashlib\nfrom datetime import date, timedelta\n"
        "from gateway.core.codes import Code\nfrom . import names\n"
        "x = date(2026, 1, 1) + timedelta(days=1)\ny = re.compile('a')\n"
    )
    assert violations(source) == []
