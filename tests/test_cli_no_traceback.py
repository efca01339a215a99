"""No traceback reaches a user: every ``gateway admin`` sub-command, as a process of its own, with
no database, an unmigrated database, bad arguments and a broken pipe; then the failures of issue
16 through the installed ``gateway`` script itself.

Every expected failure is one message and its documented exit code (1 refused, 2 usage or
configuration, 3 integrity); the matrix runs through ``tests/cli_runner.py`` (one interpreter,
one fork per command line) so that about a hundred processes take seconds, not minutes.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.cli import main as cli_main
from gateway.cli.admin import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
SERVICES = str(ROOT / "config" / "services.toml")
KBO = "0417497106"
Q = f"{KBO}/employer"
GATEWAY = str(Path(sys.executable).with_name("gateway"))

# Sub-command -> arguments that make sense on the populated database of `populated` below.
GOOD: dict[str, list[str]] = {
    "db migrate": [],
    "enterprise provision": [
        *("0203201340", "--name", "Other", "--htb-name", "Eve", "--htb-email", "e@example.be"),
        *("--htb-nrn", "85073003328", "--htb-login", "eve"),
    ],
    "enterprise list": [],
    "enterprise show": [KBO],
    "enterprise password-login": [KBO, "on"],
    "quality activate": [KBO, "social_secretariat"],
    "role appoint": ["co-HTB", "bob"],
    "role dismiss": ["co-HTB", "bob"],
    "user create": [Q, "--name", "Carl", "--email", "carl@example.be", "--login", "carl"],
    "user list": [Q],
    "user block": ["bob"],
    "user unblock": ["bob"],
    "user delete": ["dave"],
    "user reset-password": ["bob"],
    "login check": ["anna"],
    "password change": ["anna"],
    "structured save": [Q],
    "structured technical-user": [Q, "--name", "Tech", "--email", "t@example.be", "--login", "t1"],
    "structured channel": [Q, "sftp", "--ssh-key", "{key}"],
    "structured ssh-key": [Q, "{key}"],
    "structured remove-key": [Q, "SHA256:" + "A" * 43],
    "structured remove-certificate": [Q, "0" * 64],
    "structured remove-channel": [Q, "ftp"],
    "structured replace-technical-user": [Q, "--name", "New", "--email", "n@example.be"],
    "structured certificate": [Q, "{junk}"],
    "structured services": [Q, "DMFA"],
    "structured overview": [Q],
    "sender show": ["123456"],
    "services list": [],
    "audit verify": [],
    "audit list": [],
}

# Sub-command -> (bad arguments, exit code); run on the migrated database, so each fails at its
# argument and nowhere else. "{...}" are files made by the test.
BAD: dict[str, tuple[list[str], int]] = {
    "db migrate": (["--database", "sqlite:////nowhere/x.sqlite3"], 2),
    "enterprise provision": (
        ["12345", "--name", "X", "--htb-name", "A", "--htb-email", "a@b.be"],
        2,
    ),
    "enterprise list": (["--as", "nobody"], 1),
    "enterprise show": (["0417497107"], 2),
    "enterprise password-login": ([KBO, "maybe"], 2),
    "quality activate": ([KBO, "Bad Kind!"], 1),
    "role appoint": (["HTB", "anna"], 2),
    "role dismiss": (["TB", "anna"], 1),
    "user create": (["nope", "--name", "X", "--email", "x@example.be"], 2),
    "user list": ([f"{KBO}/"], 2),
    "user block": (["x' OR '1'='1"], 1),
    "user unblock": (["\u202eevil"], 1),
    "user delete": (["nobody-here"], 1),
    "user reset-password": ([], 2),
    "login check": (["anna", "--database", "sqlite+aiosqlite:////nowhere/x.sqlite3"], 2),
    "password change": (["anna"], 1),
    "structured save": ([f"{KBO}/nope"], 1),
    "structured technical-user": ([Q], 2),
    "structured channel": ([Q, "sftp", "--ssh-key", "/nonexistent.pub"], 2),
    "structured ssh-key": ([Q, "{binary}"], 2),
    "structured remove-key": ([Q, "not-a-fingerprint"], 1),
    "structured remove-certificate": ([Q], 2),
    "structured remove-channel": ([Q, "carrier-pigeon"], 2),
    "structured replace-technical-user": ([Q], 2),
    "structured certificate": ([Q, "/nonexistent.pem"], 2),
    "structured services": ([Q, "DMFA", "--database", "postgresql://x@127.0.0.1:1/x"], 2),
    "structured overview": ([Q, "--as", "x" * 70], 1),
    "sender show": (["9" * 1000], 1),
    "services list": (["--json"], 2),  # run with a services file that does not exist
    "audit verify": (["--as", "anna"], 1),
    "audit list": (["--limit", "99999999999999999999"], 2),
}

# Lines an interpreter prints for an exception nobody handled.
LEAKS = ("Traceback", "Exception ignored", "Error:")


def _leaves() -> set[str]:
    """Every sub-command the parser knows, as "group verb"."""
    return {f"{group} {verb}" for group, verbs in COMMANDS.items() for verb, *_ in verbs}


def test_the_tables_name_every_sub_command() -> None:
    """GOOD and BAD cover exactly the parser's sub-commands: a new one must be added here."""
    assert (set(GOOD), set(BAD)) == (_leaves(), _leaves())


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GATEWAY_STATE_DIR": str(state),
        "GATEWAY_LOG_FORMAT": "console",
        "GATEWAY_SECURITY__ARGON2_TIME_COST": "1",
        "GATEWAY_SECURITY__ARGON2_MEMORY_KIB": "8",
        "GATEWAY_SECURITY__ARGON2_PARALLELISM": "1",
    }
    env.update(extra)
    return env


class Runner:
    """Builds cases for ``tests/cli_runner.py`` and runs them in one go."""

    def __init__(self, tmp: Path, files: dict[str, str]) -> None:
        self.tmp = tmp
        self.files = files
        self.cases: list[dict[str, Any]] = []

    def add(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        stdin: str = "",
        broken_pipe: bool = False,
        command: str = "admin",
    ) -> None:
        """Queue ``gateway COMMAND ARGV`` (no command: ``gateway ARGV``)."""
        self.cases.append(
            {
                "argv": [*command.split(), *(a.format(**self.files) for a in argv)],
                "cwd": str(cwd),
                "env": env,
                "stdin": stdin,
                "broken_pipe": broken_pipe,
                "out": str(self.tmp / f"case{len(self.cases)}"),
            }
        )

    def run(self, workers: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Run the queued cases; (case, result) pairs."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.cli_runner", str(workers)],
            input=json.dumps(self.cases),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=True,
        )
        pairs = list(zip(self.cases, json.loads(done.stdout), strict=True))
        self.cases = []
        return pairs


def _no_leak(case: dict[str, Any], result: dict[str, Any]) -> None:
    for leak in LEAKS:
        assert leak not in result["out"] + result["err"], (case["argv"], result)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An SSH public key, a file that is no certificate, one that is not UTF-8."""
    folder = tmp_path_factory.mktemp("files")
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    key = folder / "id.pub"
    key.write_bytes(
        public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    junk = folder / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    binary = folder / "binary.pub"
    binary.write_bytes(b"ssh-ed25519 \xff\xfe" + base64.b64encode(b"x" * 40))
    return {"key": str(key), "junk": str(junk), "binary": str(binary)}


@pytest.fixture(scope="module")
def populated(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, str]
) -> tuple[Path, dict[str, str], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """A migrated database with an enterprise, a quality and users (made by `gateway admin`),
    then every sub-command once more with standard output a closed pipe."""
    tmp = tmp_path_factory.mktemp("populated")
    env = _env(tmp / "state", GATEWAY_PIPELINE__SERVICES_FILE=SERVICES)
    runner = Runner(tmp, files)
    runner.add(["db", "migrate"], cwd=tmp, env=env)
    runner.add(["--json", "enterprise", "provision", *_htb()], cwd=tmp, env=env)
    runner.add(["quality", "activate", KBO, "employer"], cwd=tmp, env=env)
    for login in ("bob", "dave"):
        runner.add(
            [
                "user",
                "create",
                Q,
                "--name",
                login,
                "--email",
                f"{login}@example.be",
                "--login",
                login,
            ],
            cwd=tmp,
            env=env,
        )
    setup = runner.run(workers=1)
    assert [r["code"] for _, r in setup] == [0] * len(setup), setup
    password = json.loads(setup[1][1]["out"])["temporary_password"]
    for leaf, argv in GOOD.items():
        stdin = f"{password}\n" if leaf == "login check" else f"{password}\nNew-pass-2026!\n"
        runner.add(
            [*leaf.split(), *argv, "--json"], cwd=tmp, env=env, stdin=stdin, broken_pipe=True
        )
    return tmp, env, runner.run(workers=1)


def _htb() -> list[str]:
    return [
        *(KBO, "--name", "Acme", "--htb-name", "Anna", "--htb-email", "anna@example.be"),
        *("--htb-nrn", "85010112387", "--htb-login", "anna"),
    ]


def test_broken_pipe(populated: Any) -> None:
    """With standard output closed, every sub-command ends quietly (141 when it had output)."""
    _, _, pairs = populated
    for case, result in pairs:
        _no_leak(case, result)
        assert result["code"] in {1, 2, 141}, (case["argv"], result)
    assert {r["code"] for _, r in pairs} >= {141}


def test_no_database_unmigrated_database_and_bad_arguments(
    populated: Any, files: dict[str, str], tmp_path: Path
) -> None:
    """Every sub-command without a database, on an empty file, and with a bad argument: one
    message, the documented exit code, no traceback, and no database file left behind."""
    migrated, env, _ = populated
    runner = Runner(tmp_path, files)
    # No database, outside the repository (no config/ here, no services file set).
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    empty = tmp_path / "empty"
    (empty / "state").mkdir(parents=True)
    (empty / "state" / "registry.sqlite3").touch()
    kinds: list[str] = []
    for leaf, argv in GOOD.items():
        if leaf == "db migrate":
            continue
        runner.add([*leaf.split(), *argv], cwd=nowhere, env=_env(nowhere / "state"))
        runner.add(
            [*leaf.split(), *argv],
            cwd=empty,
            env=_env(empty / "state", GATEWAY_PIPELINE__SERVICES_FILE=SERVICES),
        )
        kinds += [f"no database: {leaf}", f"unmigrated: {leaf}"]
    for leaf, (argv, _code) in BAD.items():
        extra = {"GATEWAY_PIPELINE__SERVICES_FILE": "/nonexistent.toml"}
        runner.add(
            [*leaf.split(), *argv],
            cwd=migrated,
            env=env | extra if leaf == "services list" else env,
            stdin="not the password\nshort\n",
        )
        kinds.append(f"bad: {leaf}")
    pairs = runner.run(workers=2)
    failures = []
    for kind, (case, result) in zip(kinds, pairs, strict=True):
        _no_leak(case, result)
        code, words = _expectation(*kind.split(": "))
        if result["code"] != code or words not in result["err"]:
            failures.append((kind, result))
    assert failures == []
    assert not (nowhere / "state").exists()


def _expectation(kind: str, leaf: str) -> tuple[int, str]:
    """The exit code and words of the message for ``leaf`` in one of the scenarios."""
    if kind == "bad":
        return BAD[leaf][1], "gateway admin"
    # The services catalogue is missing outside the repository; only these two need it.
    if leaf == "services list":
        return (2, "services catalogue not found") if kind == "no database" else (0, "")
    if leaf == "structured services" and kind == "no database":
        return 2, "services catalogue not found"
    return 2, "gateway admin db migrate"


def _real(argv: list[str | bytes], *, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The installed script, output on a pipe that stays open."""
    done = subprocess.run(
        [GATEWAY, *argv], cwd=cwd, env=env, capture_output=True, timeout=60, check=False
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def _real_broken_pipe(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run(
            [GATEWAY, *argv],
            cwd=cwd,
            env=env,
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    return done.returncode, done.stderr.decode(errors="replace")


def test_the_issues_cases(populated: Any, files: dict[str, str], tmp_path: Path) -> None:
    """Issue 16's list, each a message and its exit code; the first three through the installed
    `gateway` script itself, the others as `python -m gateway` processes."""
    migrated, env, _ = populated
    broken = tmp_path / "broken"
    (broken / "state").mkdir(parents=True)
    database = broken / "state" / "registry.sqlite3"
    with sqlite3.connect(migrated / "state" / "registry.sqlite3") as source:
        source.execute(f"VACUUM INTO '{database}'")
    with sqlite3.connect(database) as copy:
        copy.execute("DELETE FROM audit_head")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("state_dir =\n")
    bare = _env(tmp_path / "none")
    postgres = "postgresql+asyncpg://u:secret@127.0.0.1:1/x"
    # name -> (argv, working directory, environment, exit code, words of the message)
    calls: dict[str, tuple[list[str], Path, dict[str, str], int, str]] = {
        "trace": (["trace", "T"], tmp_path, bare, 2, "no registry database"),
        "toml": (
            ["--config", str(bad_toml), "admin", "enterprise", "list"],
            tmp_path,
            bare,
            2,
            "line 1",
        ),
        "postgres": (
            ["admin", "--database", postgres, "enterprise", "list"],
            tmp_path,
            bare,
            2,
            "cannot open the database postgresql+asyncpg://u:***@",
        ),
        "sync driver": (
            ["admin", "--database", "sqlite:////x.sqlite3", "enterprise", "list"],
            tmp_path,
            bare,
            2,
            "not asynchronous",
        ),
        "head deleted": (
            ["admin", "audit", "verify"],
            broken,
            _env(broken / "state"),
            3,
            "chain head is missing",
        ),
        "limit": (["admin", "audit", "list", "--limit", "9" * 20], migrated, env, 2, "--limit"),
    }
    runner = Runner(tmp_path, files)
    for argv, cwd, environment, _, _ in calls.values():
        runner.add(argv, cwd=cwd, env=environment, command="")
    with ThreadPoolExecutor(max_workers=3) as pool:
        before = pool.submit(_real, ["admin", "audit", "verify"], cwd=tmp_path, env=bare)
        utf8 = pool.submit(
            _real, [b"admin", b"user", b"block", b"\xff\xfe"], cwd=tmp_path, env=bare
        )
        pipe = pool.submit(_real_broken_pipe, ["admin", "audit", "list"], cwd=migrated, env=env)
        pairs = runner.run(workers=2)
        real = [before.result(), utf8.result()]
        pipe_code, pipe_err = pipe.result()
    outcomes = {
        name: (result["code"], result["out"] + result["err"])
        for name, (_, result) in zip(calls, pairs, strict=True)
    }
    outcomes |= {"before migrate": real[0], "utf-8": real[1]}
    words = {name: (code, text) for name, (_, _, _, code, text) in calls.items()}
    words |= {"before migrate": (2, "db migrate"), "utf-8": (2, "not valid UTF-8")}
    expected = {name: (code, True, True) for name, (code, _) in words.items()}
    actual = {
        name: (code, words[name][1] in text, not any(leak in text for leak in LEAKS))
        for name, (code, text) in outcomes.items()
    }
    assert actual == expected, outcomes
    assert (pipe_code, pipe_err) == (141, "")
    assert "secret" not in outcomes["postgres"][1]
    assert not (tmp_path / "none").exists()


def test_an_unexpected_error_is_one_line_and_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A bug prints one line naming a private file that holds the traceback; exit 70."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    def broken(_args: argparse.Namespace) -> int:
        raise KeyError("boom")

    monkeypatch.setattr("gateway.cli.offline._codes", broken)
    code = cli_main.main(["codes"])
    err = capsys.readouterr().err
    assert code == 70
    assert err.count("\n") == 1
    assert "unexpected error (KeyError" in err
    log = next(tmp_path.glob("gateway-error-*.log"))
    assert "Traceback" in log.read_text()
    assert log.stat().st_mode & 0o077 == 0


def test_help_shows_no_restructured_text() -> None:
    """No ``double backticks`` or :role: markup in any --help of any (sub-)command."""

    def texts(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str]]:
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            parser.print_help()
        yield path, buffer.getvalue()
        for action in parser._actions:  # argparse offers no public walk of its sub-parsers
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from texts(child, f"{path} {name}")

    marked = [
        path
        for path, text in texts(cli_main.build_parser(), "gateway")
        if any(mark in text for mark in ("``", ":func:", ":class:", ":mod:", ":data:"))
    ]
    assert marked == []
