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

from gateway import __version__
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


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command family registered."""
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Batch Gateway: transfer point for social-security batch declarations.",
    )
    parser.add_argument("--version", action="version", version=f"batch-gateway {__version__}")
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
