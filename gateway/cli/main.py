"""Entry point of the ``gateway`` command: builds the parser and maps failures to exit codes.

Each command family lives in its own module under ``gateway.cli`` and exposes
``register(subparsers)``, which adds its sub-commands and sets ``handler`` on each: a function
taking the parsed arguments and returning the process exit code. Only this module turns
exceptions into exit codes (2 for usage and configuration errors).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.ops.settings import GatewaySettings, SettingsError, load_settings

# Command families, in the order `gateway --help` lists them. Each module registers its own.
COMMAND_MODULES: tuple[str, ...] = (
    "gateway.cli.offline",
    "gateway.cli.crypto",
    "gateway.cli.admin",
    "gateway.cli.serve",
    "gateway.cli.pipeline",
)

Handler = Callable[[argparse.Namespace], int]

EXIT_USAGE = 2


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    """Load the settings named by ``--config`` (default ``config/gateway.toml`` if present)."""
    config: Path | None = args.config
    if config is None and Path("config/gateway.toml").is_file():
        config = Path("config/gateway.toml")
    return load_settings(config)


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
        help="settings file (default: config/gateway.toml when it exists)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except SettingsError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
