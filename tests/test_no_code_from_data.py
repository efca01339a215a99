"""Nothing that crosses a trust boundary is deserialised or executed (SECURITY.md 3, 8).

- 8: no module of ``gateway/`` imports ``pickle``, ``marshal``, ``shelve``, ``dill`` or
  ``jsonpickle``, calls ``yaml.load`` or ``yaml.unsafe_load``, or calls ``eval``/``exec``/
  ``compile``/``__import__``. The check walks the source with ``ast`` (nothing is imported), and
  the self-test plants each kind of violation to prove the checker reports it.
- 3: an upload is stored as data (tests/channels/test_inert_uploads.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.tools import imported_modules

ROOT = Path(__file__).resolve().parent.parent
BANNED_MODULES = frozenset({"pickle", "marshal", "shelve", "dill", "jsonpickle", "cloudpickle"})
BANNED_CALLS = frozenset({"eval", "exec", "compile", "__import__"})
BANNED_ATTRIBUTES = frozenset({("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load")})


def unsafe(source: str, filename: str = "<source>") -> list[str]:
    """Every unsafe deserialisation or dynamic code in ``source``, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for module in imported_modules(node):
                if module.split(".")[0] in BANNED_MODULES:
                    found.append(f"{filename}:{node.lineno}: imports {module}")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in BANNED_CALLS:
                found.append(f"{filename}:{node.lineno}: calls {func.id}()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in BANNED_ATTRIBUTES
            ):
                found.append(f"{filename}:{node.lineno}: calls {func.value.id}.{func.attr}()")
    return found


def test_gateway_deserialises_and_executes_nothing() -> None:
    """No banned import or call anywhere under gateway/."""
    problems = [
        problem
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        for problem in unsafe(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert problems == []


@pytest.mark.parametrize(
    "planted",
    [
        "import pickle",
        "from marshal import loads",
        "import shelve as s",
        "eval(text)",
        "exec(code)",
        "compile(src, 'x', 'exec')",
        "__import__(name)",
        "yaml.load(stream)",
        "yaml.unsafe_load(stream)",
    ],
)
def test_the_checker_reports_each_kind_of_violation(planted: str) -> None:
    """A planted violation is reported (the check can fail)."""
    assert unsafe(planted) != []
