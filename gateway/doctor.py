"""``gateway doctor``: what in a setup is unsafe or will fail, found before a sender finds it.

One job: judge the settings and the files they name, and return findings. Each finding has a
stable id (API, like the result codes: documented in docs/operations.md, never renamed), the
path or setting it is about, and one line for an operator. :func:`examine` only reads; the
command line (``gateway doctor``) prints the findings and exits 1 when there is one, and
:func:`warn_at_start` logs each as a ``doctor.warning`` event at every ``gateway serve`` start,
which goes on: a warning, not a refusal.

Rules:
- ``now`` and the trust folders are given, never found: the daemon passes the folders its
  pipeline reads (the demo's included), the command line ``[signature] trust_dir``.
- Trust files are read by the registry's one reader (:func:`read_trust_files`); a missing trust
  folder holds nothing, as for the pipeline.
- "Open to others" is what another local user can actually reach: a folder that others cannot
  enter hides everything under it, so a 0700 (or systemd's 0750) state directory is one check
  however large the archive, and a 0755 one is walked (bounded) to name what is exposed.
- Group permissions are not findings: the unit's ``StateDirectoryMode=0750`` gives the state
  directory to the daemon's own group.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from cryptography import x509

from gateway.ops.settings import GatewaySettings, SftpSettings
from gateway.pipeline.identity import dev_identity_paths
from gateway.registry.trust import read_trust_files

__all__ = ["EXPIRY_WARNING", "FINDINGS", "Finding", "examine", "warn_at_start"]

log = structlog.get_logger(__name__)

EXPIRY_WARNING = timedelta(days=30)
# Past this many exposed paths the rest are counted, not named; past this many entries visited
# the walk stops (a 0755 archive of a busy year holds millions of files).
NAMED_PATHS = 10
WALK_BUDGET = 100_000

# Every finding id, with what it means (docs/operations.md, "gateway doctor", shows this table).
FINDINGS: dict[str, str] = {
    "trust-store-empty": "no CA certificate in the trust folders: every signature fails (905)",
    "trust-store-unreadable": "a trust folder or file cannot be read",
    "trust-ca-expired": "a trusted CA certificate has expired",
    "trust-ca-expiring": "a trusted CA certificate expires within 30 days",
    "dev-gateway-certificate": "return files are signed with the development certificate",
    "gateway-certificate-unreadable": "the gateway certificate cannot be read",
    "gateway-certificate-expired": "the gateway certificate has expired",
    "gateway-certificate-expiring": "the gateway certificate expires within 30 days",
    "dev-tls-certificate": "an FTPS, HTTPS or admin listener uses a development certificate",
    "tls-certificate-unreadable": "a listener's certificate cannot be read",
    "tls-certificate-expired": "a listener's certificate has expired",
    "tls-certificate-expiring": "a listener's certificate expires within 30 days",
    "state-open-to-others": "a state file or folder can be read or entered by other users",
    "state-unreadable": "the state directory cannot be examined by this user",
    "sftp-password-public": "SFTP password login is offered on a non-loopback address",
    "services-file-missing": "the services file does not exist",
    "services-file-unreadable": "the services file cannot be read",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to fix: its stable id, what it is about, and a sentence for an operator."""

    id: str
    subject: str
    message: str

    def line(self) -> str:
        """The finding as ``gateway doctor`` prints it."""
        return f"{self.id}: {self.message}"


def examine(
    settings: GatewaySettings, *, now: datetime, trust_dirs: Sequence[Path] | None = None
) -> list[Finding]:
    """Every finding for ``settings`` and the files they name (blocking: reads files)."""
    folders = tuple(trust_dirs) if trust_dirs is not None else (settings.signature.trust_dir,)
    return [
        *_trust_store(folders, now),
        *_gateway_certificate(settings, now),
        *_listener_certificates(settings, now),
        *_state(settings.state_dir),
        *_sftp_password(settings.sftp),
        *_services_file(settings.pipeline.services_file),
    ]


def warn_at_start(
    settings: GatewaySettings, *, now: datetime, trust_dirs: Sequence[Path]
) -> list[Finding]:
    """:func:`examine`, each finding logged as a ``doctor.warning`` event (``gateway serve``)."""
    findings = examine(settings, now=now, trust_dirs=trust_dirs)
    for finding in findings:
        log.warning(
            "doctor.warning", finding=finding.id, subject=finding.subject, detail=finding.message
        )
    return findings


# -- certificates -------------------------------------------------------------------------------


def _expiry(
    prefix: str, what: str, subject: str, cert: x509.Certificate, now: datetime
) -> Iterator[Finding]:
    end = cert.not_valid_after_utc
    if end <= now:
        yield Finding(f"{prefix}-expired", subject, f"{what} expired on {end:%Y-%m-%d}")
    elif end - now <= EXPIRY_WARNING:
        days = (end - now).days
        yield Finding(
            f"{prefix}-expiring", subject, f"{what} expires on {end:%Y-%m-%d}, in {days} days"
        )


def _folder_files(folder: Path) -> tuple[list[Path], Finding | None]:
    """The files of a trust folder (a missing one holds none), or why it cannot be listed."""
    if not folder.exists():
        return [], None
    try:
        return sorted(p for p in folder.iterdir() if p.is_file()), None
    except OSError as exc:
        return [], Finding(
            "trust-store-unreadable",
            str(folder),
            f"cannot read the trust folder {folder}: {exc.strerror or exc}",
        )


def _trust_store(folders: Sequence[Path], now: datetime) -> Iterator[Finding]:
    count = 0
    for folder in folders:
        files, problem = _folder_files(folder)
        if problem is not None:
            yield problem
        for path in files:
            try:
                ders, _crls, _ignored = read_trust_files([path])
            except OSError as exc:
                yield Finding(
                    "trust-store-unreadable",
                    str(path),
                    f"cannot read the trust file {path}: {exc.strerror or exc}",
                )
                continue
            for der in ders:
                count += 1
                try:
                    cert = x509.load_der_x509_certificate(der)
                except ValueError:
                    continue  # the trust store skips it too
                name = cert.subject.rfc4514_string() or "(no subject)"
                yield from _expiry("trust-ca", f"trusted CA {name} ({path})", str(path), cert, now)
    if count == 0:
        shown = ", ".join(str(f) for f in folders)
        yield Finding(
            "trust-store-empty",
            shown,
            f"no CA certificate in the trust store ({shown}): every signature will be "
            "refused with 905; put the senders' CA certificates in [signature] trust_dir",
        )


def _first_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (a chain starts with its leaf); OSError or
    ValueError when there is none."""
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    return certs[0]


def _gateway_certificate(settings: GatewaySettings, now: datetime) -> Iterator[Finding]:
    configured = settings.pipeline.gateway_cert
    path = configured if configured is not None else dev_identity_paths(settings.state_dir)[1]
    if configured is None:
        yield Finding(
            "dev-gateway-certificate",
            str(path),
            f"return files are signed with the self-made development certificate {path}, "
            "which senders cannot check against a CA; set [pipeline] gateway_key and "
            "gateway_cert",
        )
        if not path.is_file():
            return  # made at the first start
    try:
        cert = _first_certificate(path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "no PEM certificate"
        yield Finding(
            "gateway-certificate-unreadable", str(path), f"cannot read {path}: {reason or exc}"
        )
        return
    what = f"the gateway certificate {path}"
    yield from _expiry("gateway-certificate", what, str(path), cert, now)


def _listener_certificates(settings: GatewaySettings, now: datetime) -> Iterator[Finding]:
    sections = (
        ("ftp", settings.ftp.enabled, settings.ftp.tls_cert, "ftps"),
        ("web", settings.web.enabled, settings.web.tls_cert, "web"),
        ("admin", settings.admin.enabled, settings.admin.tls_cert, "admin"),
    )
    for section, enabled, configured, folder in sections:
        if not enabled:
            continue
        if configured is None:
            made = settings.state_dir / folder / "server.pem"
            yield Finding(
                "dev-tls-certificate",
                f"{section}.tls_cert",
                f"[{section}] listens with the self-made development certificate {made}; "
                f"set [{section}] tls_cert and tls_key",
            )
            continue
        try:
            cert = _first_certificate(configured)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "no PEM certificate"
            yield Finding(
                "tls-certificate-unreadable",
                str(configured),
                f"[{section}] tls_cert {configured}: {reason or exc}",
            )
            continue
        what = f"the [{section}] listener's certificate {configured}"
        yield from _expiry("tls-certificate", what, str(configured), cert, now)


# -- the state directory ------------------------------------------------------------------------


def _open_to_others(mode: int) -> bool:
    if stat.S_ISDIR(mode):
        return bool(mode & stat.S_IRWXO)
    return bool(mode & (stat.S_IROTH | stat.S_IWOTH))


def _exposed(state_dir: Path) -> Iterator[tuple[Path, int] | None]:
    """Each path under ``state_dir`` (itself included) that other users can reach and read,
    enter or write, with its mode; ``None`` once the walk budget is spent."""
    visited = 0
    folders = [state_dir]
    top = os.stat(state_dir)  # followed: a state directory may be a symbolic link to one
    if _open_to_others(top.st_mode):
        yield state_dir, top.st_mode
    if not top.st_mode & stat.S_IXOTH:
        return  # others cannot enter it: nothing below is theirs to reach
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:  # removed meanwhile (a set archived, a return file purged)
            continue
        for entry in entries:
            visited += 1
            if visited > WALK_BUDGET:
                yield None
                return
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(mode):
                continue
            path = Path(entry.path)
            if _open_to_others(mode):
                yield path, mode
            if stat.S_ISDIR(mode) and mode & stat.S_IXOTH:
                folders.append(path)


def _state(state_dir: Path) -> Iterator[Finding]:
    if not state_dir.exists():
        return  # made 0700 at the first start
    named = 0
    more = 0
    cut = False
    try:
        for item in _exposed(state_dir):
            if item is None:
                cut = True
                break
            path, mode = item
            if named < NAMED_PATHS:
                named += 1
                kind = "folder" if stat.S_ISDIR(mode) else "file"
                yield Finding(
                    "state-open-to-others",
                    str(path),
                    f"the {kind} {path} is open to other users (mode "
                    f"{stat.S_IMODE(mode):04o}); chmod -R o-rwx {state_dir}",
                )
            else:
                more += 1
    except OSError as exc:
        yield Finding(
            "state-unreadable",
            str(state_dir),
            f"cannot examine the state directory {state_dir}: {exc.strerror or exc} "
            "(run as the daemon's user)",
        )
        return
    if more or cut:
        count = f"{more}{' or more' if cut else ''}"
        yield Finding(
            "state-open-to-others",
            str(state_dir),
            f"and {count} more paths under {state_dir} are open to other users; "
            f"chmod -R o-rwx {state_dir}",
        )


# -- listeners and files ------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (or "" for every address): assume it is reachable from outside


def _sftp_password(sftp: SftpSettings) -> Iterator[Finding]:
    if sftp.enabled and sftp.password_login and not _loopback(sftp.host):
        yield Finding(
            "sftp-password-public",
            "sftp.password_login",
            f"SFTP offers password login on {sftp.host or '*'}:{sftp.port}, a non-loopback "
            "address: passwords can be guessed from the network; set [sftp] password_login = "
            "false (senders use SSH keys)",
        )


def _services_file(path: Path) -> Iterator[Finding]:
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        yield Finding(
            "services-file-missing",
            str(path),
            f"the services file {path}{where} does not exist: the daemon will not start; set "
            "[pipeline] services_file",
        )
        return
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        yield Finding(
            "services-file-unreadable",
            str(path),
            f"cannot read the services file {path}: {exc.strerror or exc}",
        )
