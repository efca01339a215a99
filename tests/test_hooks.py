"""Hooks are not a shell (SECURITY.md 16): the only things the gateway does with an accepted set
are the routing destinations the deployed catalogue declares — a folder or an https:// URL —
never a command, and nothing an admin UI or API sends can add one.

- Every other destination kind (a command, a script, a shell, plain http, a file URL) is refused
  when the catalogue is read, and ``gateway serve`` does not start with one (its message names
  the entry).
- ``gateway/`` starts no process: no ``subprocess``, ``os.system``, ``os.popen``, ``os.exec*``,
  ``os.spawn*``, ``pty`` (an AST check with planted-violation self-tests).
- No operation of the admin API takes a destination, a command or a URL: the access managers
  choose among the catalogue's application codes only.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.pipeline.routing import DestinationError, parse_destination
from tests.tools import imported_modules

ROOT = Path(__file__).resolve().parent.parent
PROCESS_CALLS = frozenset(
    {"system", "popen", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
     "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "posix_spawn",
     "posix_spawnp", "fork", "forkpty"}
)  # fmt: skip
PROCESS_MODULES = frozenset({"subprocess", "pty", "multiprocessing"})


def process_starts(source: str, filename: str = "<source>") -> list[str]:
    """Every way ``source`` could start a process, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = imported_modules(node)
            if isinstance(node, ast.ImportFrom) and modules == ["os"]:
                modules += [f"os.{a.name}" for a in node.names if a.name in PROCESS_CALLS]
            for module in modules:
                top = module.split(".")[0]
                if top in PROCESS_MODULES or module.removeprefix("os.") in PROCESS_CALLS:
                    found.append(f"{filename}:{node.lineno}: imports {module}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
            and node.func.attr in PROCESS_CALLS
        ):
            found.append(f"{filename}:{node.lineno}: calls os.{node.func.attr}()")
    return found


def test_the_gateway_starts_no_process() -> None:
    """No module of gateway/ can start a process."""
    problems = [
        problem
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        for problem in process_starts(path.read_text(encoding="utf-8"), str(path))
    ]
    assert problems == []


@pytest.mark.parametrize(
    "planted",
    ["import subprocess", "from subprocess import run", "os.system(cmd)", "os.popen(cmd)",
     "from os import execv", "os.posix_spawn(p, a, e)", "import pty"],
)  # fmt: skip
def test_the_process_check_reports_each_kind(planted: str) -> None:
    """A planted process start is reported (the check can fail)."""
    assert process_starts(planted) != []


@pytest.mark.parametrize(
    "destination",
    [
        {"kind": "command", "command": "/bin/sh -c 'curl evil'"},
        {"kind": "exec", "path": "/usr/bin/env"},
        {"kind": "script", "path": "hooks/route.sh"},
        {"kind": "shell", "command": "true"},
        {"kind": "https", "url": "http://plain.example/"},
        {"kind": "https", "url": "file:///etc/passwd"},
        {"kind": "directory"},
        {},
    ],
)
def test_only_folders_and_https_urls_are_destinations(
    destination: dict[str, str], tmp_path: Path
) -> None:
    """Any other destination is refused when it is read."""
    with pytest.raises(DestinationError):
        parse_destination(destination, state_dir=tmp_path)


def test_the_daemon_does_not_start_with_a_command_destination(tmp_path: Path) -> None:
    """``gateway serve`` with a catalogue routing DMFA to a command exits 1 naming the entry,
    before it listens."""
    services = tmp_path / "services.toml"
    services.write_text(
        '[services.DMFA]\ntitle = "DmfA"\nparts = true\n'
        'destination = { kind = "command", command = "/bin/sh -c id" }\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_STATE_DIR": str(tmp_path / "state"),
        "GATEWAY_PIPELINE__SERVICES_FILE": str(services),
        "GATEWAY_SFTP__PORT": "0",
        "GATEWAY_METRICS__ENABLED": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout[-2000:], done.stderr[-2000:])
    assert "services.DMFA.destination" in done.stderr
    assert "unknown destination kind 'command'" in done.stderr


def test_no_admin_operation_takes_a_destination() -> None:
    """The admin API's request bodies name no destination, command, script or URL."""
    document = json.loads((ROOT / "docs" / "admin-api.openapi.json").read_text())
    text = json.dumps(document.get("components", {}).get("schemas", {})).lower()
    for word in ('"destination"', '"command"', '"script"', '"hook"', '"url"'):
        assert word not in text, word
