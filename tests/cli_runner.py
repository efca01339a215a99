"""Run many ``python -m gateway`` command lines as separate processes, without paying the
interpreter's start-up (about a second of imports) for each.

``python -m tests.cli_runner WORKERS`` reads a JSON list of cases from standard input, imports the
command line once, then forks one child per case, at most WORKERS at a time. Each child is a
process of its own: its working directory, environment, standard input, output and error files,
then ``runpy`` runs ``gateway/__main__.py`` exactly as ``python -m gateway`` does. The child then
ends as the interpreter would, minus the teardown of every module (which made a child cost a
third of a second): an uncaught exception goes to ``sys.excepthook`` (the traceback), the last
flush of standard output is reported as the interpreter reports it ("Exception ignored", exit
120), and ``os._exit`` ends the process. Writes a JSON list of results to standard output.

A case: ``{"argv": [...], "cwd": DIR, "env": {...}, "stdin": TEXT, "broken_pipe": BOOL,
"out": PATH}``; the child writes ``PATH.out`` (unless ``broken_pipe``: standard output is then a
pipe whose reader is already closed) and ``PATH.err``. A result: ``{"code": N, "out": TEXT,
"err": TEXT}``, ``code`` negative when a signal ended the child.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

import aiosqlite  # noqa: F401  (loaded by the first connection; once here, not per child)
import sqlalchemy.dialects.sqlite.aiosqlite  # noqa: F401

from gateway.cli.main import build_parser
from gateway.registry.migrate import head_revision

# Everything a command imports, imported once before the forks rather than once per child.
build_parser()
head_revision()
gc.freeze()  # the children then leave these objects' pages shared


def _spawn(cases: list[dict[str, Any]], workers: int) -> dict[str, Any] | None:
    """Fork the children; in a child, return its case; in the parent, reap them and return None."""
    running: dict[int, int] = {}
    codes: dict[int, int] = {}
    for index, case in enumerate(cases):
        while len(running) >= workers:
            pid, status = os.wait()
            codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
        pid = os.fork()
        if pid == 0:
            return case
        running[pid] = index
    while running:
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    results = []
    for index, case in enumerate(cases):
        out = Path(case["out"] + ".out")
        results.append(
            {
                "code": codes[index],
                "out": out.read_text(errors="replace") if out.exists() else "",
                "err": Path(case["out"] + ".err").read_text(errors="replace"),
            }
        )
    json.dump(results, sys.stdout)
    return None


def _become(case: dict[str, Any]) -> None:
    """In a child: take the case's directory, environment and files, then be ``gateway``."""
    os.chdir(case["cwd"])
    os.environ.clear()
    os.environ.update(case["env"])
    stdin_path = case["out"] + ".in"
    Path(stdin_path).write_bytes(case.get("stdin", "").encode("utf-8", "surrogateescape"))
    files = [os.open(stdin_path, os.O_RDONLY)]
    if case.get("broken_pipe"):
        reader, writer = os.pipe()
        os.close(reader)
        files.append(writer)
    else:
        files.append(os.open(case["out"] + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    files.append(os.open(case["out"] + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    for fd, target in zip(files, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    # Fresh text streams on the new descriptors, as the interpreter makes them at start-up.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115  (the process's own)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["gateway", *case["argv"]]
    code: int | str | None = 0
    try:
        runpy.run_module("gateway", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # what the interpreter does with an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    # What the interpreter does at exit, without tearing down every module (the slow part of a
    # child's life): flush the streams, and report a failed flush of stdout as it would (120).
    try:
        sys.stdout.flush()
    except Exception:  # any failure to flush is what the interpreter would report
        sys.stderr.write("Exception ignored on flushing sys.stdout:\n")
        traceback.print_exc()
        code = 120
    if isinstance(code, str):  # sys.exit("message"): printed, exit 1
        sys.stderr.write(code + "\n")
        code = 1
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    child_case = _spawn(json.load(sys.stdin), int(sys.argv[1]))
    if child_case is not None:
        _become(child_case)
