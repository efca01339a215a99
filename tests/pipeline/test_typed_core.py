"""The set's processing and its store are typed for real: no ``Any`` in their signatures.

``mypy --strict`` only helps where the types are real (STYLE.md, "From our own code"): a set is a
:class:`gateway.pipeline.records.SetRecord`, a step names the columns it writes
(:class:`gateway.pipeline.records.SetChanges`), and neither module hands ``Any`` around.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["gateway/pipeline/process.py", "gateway/pipeline/store.py"]


def any_in_signatures(source: str) -> list[str]:
    """``function: annotation`` for each parameter or return annotation that mentions ``Any``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        annotations = [a.annotation for a in every if a is not None and a.annotation]
        if node.returns is not None:
            annotations.append(node.returns)
        for annotation in annotations:
            text = ast.unparse(annotation)  # a string annotation is searched as written
            if re.search(r"\bAny\b", text):
                found.append(f"{node.name}: {text}")
    return found


@pytest.mark.parametrize("module", MODULES)
def test_no_any_in_signatures(module: str) -> None:
    """Every parameter and return annotation in the module is a real type."""
    assert any_in_signatures((ROOT / module).read_text()) == []


def test_the_check_finds_any() -> None:
    """The check sees Any in a parameter, a return, ``**values`` and a string annotation."""
    planted = (
        "from typing import Any\n"
        "def a(x: Any) -> None: ...\n"
        "async def b() -> list[Any]: ...\n"
        "def c(**values: Any) -> None: ...\n"
        "def d(x: 'dict[str, Any]') -> None: ...\n"
        "def e(x: int) -> str: ...\n"
    )
    assert [f.split(":")[0] for f in any_in_signatures(planted)] == ["a", "b", "c", "d"]
