"""Entry point of the ``gateway`` command: builds the parser and maps failures to exit codes.

Each command family lives in its own module under ``gateway.cli`` and exposes
``register(subparsers)``, which adds its sub-commands and sets ``handler`` on each: a function
taking the parsed arguments and returning the process exit code. Only this module turns
exceptions into exit codes, through the table of :mod:`gateway.cli.failures`: an expected failure
prints one message and exits 1 (refused), 2 (usage or configuration) or 3 (integrity); anything
else prints one line naming the file that holds its traceback.

Settings are found as the daemon finds them: ``--config FILE``, else ``config/gateway.toml`` in
the working directory, else ``/etc/batch-gateway/gateway.toml``; ``GATEWAY_*`` variables override
the file. With the last, relative paths resolve under ``/etc/batch-gateway``, the systemd unit's
working directory, so that ``gateway admin`` run from anywhere sees the files the daemon sees.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from gateway.cli.failures import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    expected,
    not_utf8,
    report_unexpected,
    stdout_gone,
)
from gateway.ops.settings import GatewaySettings, SettingsError, load_settings

# Command families, in the order `gateway --help` lists them. Each module registers its own.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.cli.offline",
    "gateway.cli.crypto",
    "gateway.cli.admin",
    "gateway.cli.serve",
    "gateway.cli.pipeline",
    "gateway.cli.config",
    "gateway.cli.doctor",
)

Handler = Callable[[argparse.Namespace], int]

LOCAL_CONFIG = Path("config/gateway.toml")
# The installed layout (docs/operations.md, systemd/batch-gateway.service).
SYSTEM_CONFIG_DIR = Path("/etc/batch-gateway")

M = TypeVar("M", bound=BaseModel)


def config_file(args: argparse.Namespace) -> Path | None:
    """The settings file in force: ``--config``, the working directory's, or the system's."""
    given: Path | None = args.config
    if given is not None:
        return given
    for candidate in (LOCAL_CONFIG, SYSTEM_CONFIG_DIR / "gateway.toml"):
        if candidate.is_file():
            return candidate
    return None


def anchored(model: M, base: Path) -> M:
    """``model`` with every relative path (nested sections included) made relative to ``base``."""
    update: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            update[name] = base / value
        elif isinstance(value, BaseModel):
            inner = anchored(value, base)
            if inner is not value:
                update[name] = inner
    return model.model_copy(update=update) if update else model


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    """Load the settings of :func:`config_file` and the environment (module docstring)."""
    path = config_file(args)
    try:
        settings = load_settings(path)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    if args.config is None and path is not None and path.parent == SYSTEM_CONFIG_DIR:
        return anchored(settings, SYSTEM_CONFIG_DIR)
    return settings


class _VersionAction(argparse.Action):
    """``--version``: the version from the package metadata and the build from its RECORD,
    after checking the installed files (exit 1 when one was changed; SECURITY.md 20)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        from gateway.ops.integrity import inspect_installation

        installation = inspect_installation()
        print(installation.describe())
        problem = installation.problem()
        if problem is None:
            parser.exit(0)
        parser.exit(1, f"gateway: {problem}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command family registered."""
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Batch Gateway: transfer point for social-security batch declarations.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        help="the version and build of the installed package, its files checked, and exit",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="settings file (default: config/gateway.toml when it exists, else "
        "/etc/batch-gateway/gateway.toml when it exists)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _run(arguments)
        sys.stdout.flush()  # here, so that a closed pipe is seen now and not at exit
    except BrokenPipeError:
        return stdout_gone()
    return code


def _run(arguments: list[str]) -> int:
    problem = not_utf8(arguments)
    if problem is not None:
        print(f"gateway: {problem}", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        return EXIT_USAGE
    prog = f"gateway {args.command}"
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as exc:  # the command line's edge: every failure ends here, mapped or not
        failure = expected(exc)
        if failure is None:
            return report_unexpected(prog, exc)
        print(f"{prog}: {failure}", file=sys.stderr)
        return failure.code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
