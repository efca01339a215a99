"""What is running: the installed package's version and build, and a check of its files against
the hashes its wheel recorded (SECURITY.md 20).

An installer writes, next to the package, a ``RECORD`` with the SHA-256 of every file of the
wheel. At start-up the daemon hashes each recorded file again and refuses to run when one was
changed or removed: a file-transfer server whose code was edited in place (a planted backdoor, a
half-applied update) must not come up as if nothing happened. The version is read from the
package's metadata and the build is a digest of the recorded hashes, so neither comes from a
file the daemon could write, and two nodes report the same build only when they run the same
files.

A source checkout (``pip install -e .``, the developer's and the test suite's way) records no
file hashes: it reports ``source`` and nothing can be checked. ``.pyc`` files carry no hash in
``RECORD`` (installers compile them after the fact) and are not checked; Python re-reads a
changed ``.py`` anyway, and the daemon's user cannot write the installation (the systemd unit's
``ProtectSystem=strict``).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path
from typing import Literal

import gateway

DISTRIBUTION = "batch-gateway"
_CHUNK = 1024 * 1024

Mode = Literal["wheel", "source", "missing"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Installation:
    """The package as installed: ``changed`` and ``missing`` name files that differ from RECORD."""

    version: str
    build: str
    """16 hex digits of a SHA-256 over the recorded hashes; ``source`` or ``unknown`` otherwise."""
    mode: Mode
    files: int
    """Files whose hash was checked."""
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    stray: str | None = None
    """Where the running ``gateway`` package was imported from, when that is not the recorded
    installation (a copy earlier on the import path shadows it)."""

    @property
    def intact(self) -> bool:
        """No recorded file was changed or removed, and the running code is the recorded one."""
        return not self.changed and not self.missing and self.stray is None

    def describe(self) -> str:
        """One line for ``gateway --version`` and start-up messages."""
        if self.mode == "wheel":
            return f"{DISTRIBUTION} {self.version} (build {self.build}, {self.files} files)"
        if self.mode == "source":
            return f"{DISTRIBUTION} {self.version} (source checkout: no recorded hashes)"
        return f"{DISTRIBUTION} (not installed: no package metadata)"

    def problem(self) -> str | None:
        """What is wrong and what to do, or None when the installation is intact."""
        if self.intact:
            return None
        if self.stray is not None:
            return (
                f"the running gateway package is imported from {self.stray}, not from the "
                f"installed {DISTRIBUTION} {self.version}; remove that copy from the import path"
            )
        listed = [f"changed {name}" for name in self.changed] + [
            f"missing {name}" for name in self.missing
        ]
        shown = ", ".join(listed[:10]) + (
            f" and {len(listed) - 10} more" if len(listed) > 10 else ""
        )
        return (
            f"{len(listed)} installed file(s) differ from the package's RECORD ({shown}); "
            f"reinstall {DISTRIBUTION} {self.version} "
            f"(pip install --force-reinstall --no-deps {DISTRIBUTION}=={self.version}) "
            "and find out who changed them"
        )


def record_hash(digest: bytes) -> str:
    """A RECORD hash value of a SHA-256 digest: urlsafe base64 without padding (PEP 376/427)."""
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _file_hash(path: object) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(str(path), "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return record_hash(digest.digest())


def inspect_installation(
    dist: Distribution | None = None, *, package_dir: Path | None = None
) -> Installation:
    """Hash every file the package's RECORD lists with a SHA-256 and compare (blocking).

    ``package_dir`` is the ``gateway`` package that runs (default: the one imported); it must be
    the recorded one.
    """
    if dist is None:
        try:
            dist = distribution(DISTRIBUTION)
        except PackageNotFoundError:
            return Installation(version="unknown", build="unknown", mode="missing", files=0)
    version = dist.version
    recorded = [
        (entry, entry.hash.value)
        for entry in dist.files or []
        if entry.hash is not None and entry.hash.mode == "sha256"
    ]
    # A source checkout's RECORD lists only the import hook (a .pth), never the package itself.
    if not any(entry.parts and entry.parts[0] == "gateway" for entry, _ in recorded):
        return Installation(version=version, build="source", mode="source", files=0)
    changed, missing = [], []
    for entry, expected in recorded:
        actual = _file_hash(entry.locate())
        if actual is None:
            missing.append(str(entry))
        elif actual != expected:
            changed.append(str(entry))
    recorded_dir = Path(str(dist.locate_file("gateway"))).resolve()
    running = (package_dir or Path(gateway.__file__).parent).resolve()
    lines = sorted(f"{entry} {expected}" for entry, expected in recorded)
    build = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return Installation(
        version=version,
        build=build,
        mode="wheel",
        files=len(recorded),
        changed=tuple(sorted(changed)),
        missing=tuple(sorted(missing)),
        stray=None if running == recorded_dir else str(running),
    )
