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


# -- the package graph (DESIGN.md "Architecture": imports run one way) -------------------------

GATEWAY = ROOT / "gateway"
# What each layer may import besides itself. ``ops`` (settings, logging, metrics) is the utility
# layer every other one may use. Nothing outside the composition roots (the command line, the
# daemon, the demo) imports the channels, the command line, the admin plane or the daemon.
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": (),
    "ops": (),
    "registry": ("core", "ops"),
    "spool": ("core", "ops", "registry"),
    "pipeline": ("core", "ops", "registry", "spool"),
    "channels": ("core", "ops", "spool", "registry.types"),
    "admin": ("core", "ops", "registry", "spool", "pipeline"),
    "cli": ("*",),
    "daemon": ("*",),
    "demo": ("core", "ops", "registry", "spool", "pipeline"),
    # gateway doctor: reads the trust folders as the registry does, the identity's paths
    "doctor": ("core", "ops", "registry", "pipeline"),
    "__main__": ("cli",),
    "__init__": (),
}
# Modules that must see every layer's tables by their nature: Alembic's metadata aggregate and
# the migrations that create the spool's and the pipeline's tables.
SCHEMA_MODULES = ("gateway/registry/all_models.py", "gateway/registry/migrations/")


def _layer(path: Path) -> str:
    parts = path.relative_to(GATEWAY).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imported(source: str, filename: str) -> list[tuple[int, str]]:
    """Every ``gateway.*`` module imported by ``source`` (absolute or relative), with its line."""
    package = ".".join(Path(filename).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return [(line, m) for line, m in found if m == "gateway" or m.startswith("gateway.")]


def graph_violations(source: str, filename: str) -> list[str]:
    """Imports of ``source`` (a file under gateway/, named relative to the repository) that
    break the package graph, as ``file:line: what``."""
    if filename.startswith(SCHEMA_MODULES):
        return []
    layer = _layer(ROOT / filename)
    allowed = ALLOWED[layer]
    found = []
    for line, module in _imported(source, filename):
        parts = module.split(".")
        if len(parts) < 2:
            continue
        target = parts[1]
        if target == layer or "*" in allowed:
            continue
        dotted = ".".join(parts[1:])
        if any(dotted == a or dotted.startswith(a + ".") for a in allowed):
            continue
        found.append(f"{filename}:{line}: {layer} imports {module}")
    return found


def test_every_module_has_a_layer() -> None:
    """Each top-level module or package of gateway/ is placed in the graph."""
    tops = {p.stem for p in GATEWAY.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert tops <= set(ALLOWED), tops - set(ALLOWED)


def test_imports_follow_the_package_graph() -> None:
    """core <- registry <- spool <- pipeline; channels import core, spool, registry.types only;
    nothing imports channels, cli or the daemon."""
    found = [
        v
        for path in sorted(GATEWAY.rglob("*.py"))
        for v in graph_violations(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


@pytest.mark.parametrize(
    ("filename", "source", "what"),
    [
        ("gateway/spool/store.py", "from gateway.channels.sftp import X", "spool imports"),
        ("gateway/spool/store.py", "import gateway.channels", "spool imports gateway.channels"),
        ("gateway/spool/store.py", "from gateway.pipeline import worker", "spool imports"),
        ("gateway/registry/auth.py", "from gateway.spool.store import Spool", "registry imports"),
        ("gateway/pipeline/process.py", "from gateway.daemon import serve", "pipeline imports"),
        ("gateway/channels/ftp.py", "from gateway.registry.auth import R", "channels imports"),
        ("gateway/channels/ftp.py", "from gateway.cli import main", "channels imports"),
        ("gateway/channels/ftp.py", "from ..pipeline import worker", "gateway.pipeline"),
        ("gateway/core/names.py", "from gateway.spool import Spool", "core imports"),
    ],
)
def test_graph_checker_catches_planted_imports(filename: str, source: str, what: str) -> None:
    """A planted import against the graph is reported, so the graph test can fail."""
    found = graph_violations(source, filename)
    assert any(what in v for v in found), found


def test_graph_checker_allows_the_permitted_edges() -> None:
    """A channel may import core, spool, registry.types and ops; the pipeline the spool."""
    channel = (
        "from gateway.core.folders import Folder\nfrom gateway.spool.folders import Folders\n"
        "from gateway.registry.types import Principal\nfrom gateway.ops.metrics import Metrics\n"
        "from . import sftp_values\n"
    )
    assert graph_violations(channel, "gateway/channels/ftp.py") == []
    assert graph_violations("from gateway.spool import Spool", "gateway/pipeline/x.py") == []
