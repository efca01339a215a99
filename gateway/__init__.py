"""Batch Gateway: transfer point for social-security batch declarations.

Layers (see README and ../shared/DESIGN.md): ``core`` decides without I/O, ``registry`` holds the
configuration and access management, ``spool`` and ``pipeline`` store and process sets,
``channels`` adapt SFTP/FTP/HTTPS to one virtual-folder model, ``admin`` and ``cli`` serve
operators and access managers, ``ops`` holds settings, logging and metrics.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batch-gateway")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

import warnings

# asyncssh still names DSA types at import (the gateway never offers DSA keys); cryptography 51
# warns about each of them on every start, burying the daemon's first lines (the demo's
# instructions among them). Only that warning, only from asyncssh, is silenced.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
