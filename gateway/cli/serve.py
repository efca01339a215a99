"""``gateway serve [--demo]``: run the daemon (see :mod:`gateway.daemon`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli.main import settings_from

EXIT_STARTUP = 1


def _serve(args: argparse.Namespace) -> int:
    # Imported here so that offline commands do not load the network stack.
    from gateway.daemon import ServeOptions, StartupError, serve
    from gateway.demo import DemoError
    from gateway.ops.loop import EventLoop, EventLoopUnavailable, run
    from gateway.pipeline.identity import IdentityError
    from gateway.registry.catalogue import CatalogueError
    from gateway.registry.networks import NetworksError

    settings = settings_from(args)
    try:
        run(lambda: serve(settings, ServeOptions(demo=args.demo)), EventLoop(settings.event_loop))
    except (
        StartupError,
        DemoError,
        IdentityError,
        CatalogueError,
        NetworksError,
        EventLoopUnavailable,
        OSError,
    ) as exc:
        print(f"gateway serve: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return 0


def register(sub: Any) -> None:
    """Add ``serve`` to the ``gateway`` parser."""
    p = sub.add_parser("serve", help="run the gateway daemon")
    p.add_argument(
        "--demo",
        action="store_true",
        help="also provision a demo sender and print the commands that send a first set",
    )
    p.set_defaults(handler=_serve)
