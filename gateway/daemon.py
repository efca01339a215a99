"""The daemon: ``gateway serve`` from settings to listeners, and back down on SIGTERM.

:func:`serve` reads top to bottom (STYLE.md habit 5): open the registry (migrating it), load the
gateway's identity and trust store, start the pipeline, open the SFTP, FTP(S) and HTTPS
listeners, report ready, wait for a stop signal, stop accepting, drain within the deadline,
close. Every task is owned by one ``TaskGroup``; nothing outlives :func:`serve`. SIGHUP reloads
the secondary networks file (``[ftp] networks_file``) and the web listener's trusted client
certificates (the trust folder and the certificates registered since), without touching a
session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy.exc import SQLAlchemyError

from gateway.admin.config import AdminConfig
from gateway.admin.routes import ROUTES as ADMIN_ROUTES
from gateway.admin.server import AdminGateway, AdminPlane
from gateway.channels.ftp import FtpGateway
from gateway.channels.ftp_config import FtpConfig
from gateway.channels.hostkeys import load_host_keys
from gateway.channels.penalties import PenaltyPolicy, SourceGuard
from gateway.channels.revocation import StillAllowed
from gateway.channels.sftp import SftpConfig, SftpGateway
from gateway.channels.web import WebGateway
from gateway.channels.web_config import WebConfig
from gateway.demo import (
    DEMO_PLAIN_LISTENER,
    demo_service_client,
    demo_settings,
    ensure_demo,
    instructions,
    next_free_sequence,
    save_facts,
    with_demo_network,
)
from gateway.doctor import warn_at_start
from gateway.ops.heap import settle as settle_heap
from gateway.ops.integrity import Installation, inspect_installation
from gateway.ops.lifecycle import install_reload_signal, install_stop_signals, running_ops
from gateway.ops.logging import configure_logging
from gateway.ops.loop import running_kind
from gateway.ops.priority import ThreadBoost
from gateway.ops.private import private_dirs
from gateway.ops.settings import GatewaySettings
from gateway.ops.tls import TlsIdentityError
from gateway.pipeline.desk import ServiceDesk
from gateway.pipeline.identity import dev_identity_paths, ensure_gateway_identity
from gateway.pipeline.routing import DestinationError, DirectoryDestination, parse_destination
from gateway.pipeline.trace import SetTrace, trace
from gateway.pipeline.trust_files import TrustFiles
from gateway.pipeline.worker import Pipeline
from gateway.registry.anchors import append_anchor, sign_anchor
from gateway.registry.catalogue import (
    CatalogueError,
    ServiceCatalogue,
    load_service_catalogue,
    load_service_clients,
)
from gateway.registry.db import sqlite_writer
from gateway.registry.expiry import watch_certificate_expiry
from gateway.registry.instant import utc_now
from gateway.registry.migrate import migrate
from gateway.registry.networks import PUBLIC, NetworksError
from gateway.registry.notify import build_notifier
from gateway.registry.service import Registry, build_registry
from gateway.registry.trust import TrustFolders
from gateway.registry.types import ServiceClient
from gateway.spool.durable import StateSync, choose_state_sync
from gateway.spool.folders import Folders, NamePolicy
from gateway.spool.limits import SpoolLimits
from gateway.spool.reserve import SpaceReserve
from gateway.spool.store import Spool

log = structlog.get_logger(__name__)
T = TypeVar("T")


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What the command line adds to the settings."""

    demo: bool = False


def _service_clients(path: Path, extra: tuple[ServiceClient, ...]) -> tuple[ServiceClient, ...]:
    """The online services declared in the catalogue at ``path``, plus ``extra`` (the demo's)."""
    return (*load_service_clients(load_service_catalogue(path)), *extra)


async def _reload_on_sighup(
    requested: asyncio.Event,
    registry: Registry,
    web: WebGateway | None,
    *,
    demo: bool,
    desk: ServiceDesk | None = None,
    services_file: Path | None = None,
    extra_clients: tuple[ServiceClient, ...] = (),
) -> None:
    """What SIGHUP does, each time it comes: read the networks file again (a bad file keeps the
    old book), the online services' certificates of the services file (a bad file keeps the
    old ones), and rebuild the web listener's client-certificate anchors."""
    while True:
        await requested.wait()
        requested.clear()
        try:
            book = registry.reload_networks()
        except NetworksError as exc:
            log.error("networks.reload_failed", error=str(exc))
        else:
            if demo:
                registry.networks = with_demo_network(book)
        if desk is not None and services_file is not None:
            try:
                clients = await asyncio.to_thread(_service_clients, services_file, extra_clients)
            except CatalogueError as exc:
                log.error("services.reload_failed", error=str(exc))
            else:
                desk.replace(clients)
        if web is not None:
            try:
                anchors = await web.reload()
            except (OSError, ValueError, ssl.SSLError) as exc:
                log.error("web.reload_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            else:
                log.info("web.reloaded", anchors=anchors)


REVALIDATE_SECONDS = 10.0
"""How often open sessions are re-checked against the registry when no revocation on this node
woke the check first (sessions on other nodes end within this)."""


class _Revalidating(Protocol):
    async def revalidate(self, check: StillAllowed) -> int: ...


async def _end_revoked_sessions(registry: Registry, channels: list[_Revalidating]) -> None:
    """End the open sessions whose credential was revoked (issue 16): at once after a
    revocation on this node, and every ``REVALIDATE_SECONDS`` in any case."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(registry.revocations.wait(), timeout=REVALIDATE_SECONDS)
        registry.revocations.clear()
        for channel in channels:
            try:
                await channel.revalidate(registry.still_allowed)
            except (SQLAlchemyError, OSError) as exc:
                log.error("sessions.revalidate_failed", error=f"{type(exc).__name__}: {exc}"[:300])


async def _anchor_once(
    registry: Registry, key: PrivateKeyTypes, path: Path, last: list[int]
) -> None:
    """Sign the chain's head and append it to the anchors file, unless it was anchored."""
    try:
        head = await registry.audit_head()
        if head is None:
            log.error("audit.anchor_failed", reason="the chain head is missing")
            return
        seq, digest = head
        if last and last[0] == seq:
            return
        anchor = sign_anchor(key, seq, digest, datetime.now(UTC).isoformat())
        await asyncio.to_thread(append_anchor, path, anchor)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        log.error("audit.anchor_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return
    last[:] = [seq]
    log.info(
        "audit.anchored",
        seq=seq,
        hash=digest,
        at=anchor.at,
        signature=base64.b64encode(anchor.signature).decode(),
        file=str(path),
    )


async def _anchor_audit(
    registry: Registry, key: PrivateKeyTypes, path: Path, minutes: int, last: list[int]
) -> None:
    """Anchor the audit chain at start and every ``minutes`` (issue 15 item 5)."""
    while True:
        await _anchor_once(registry, key, path, last)
        await asyncio.sleep(minutes * 60)


def _listener_config(
    section: str, enabled: bool, build: Callable[[GatewaySettings], T], settings: GatewaySettings
) -> T | None:
    """A listener's configuration when ``[section]`` enables it; its error names the section."""
    if not enabled:
        return None
    try:
        return build(settings)
    except (ValueError, TlsIdentityError) as exc:
        raise StartupError(f"[{section}]: {exc}") from None


def _check_destinations(catalogue: ServiceCatalogue, state_dir: Path) -> list[Path]:
    """Every routing destination of the catalogue is one the gateway can deliver to (a folder,
    or an https:// URL): a bad one stops the start, naming its entry, instead of failing the
    first set routed to it. There is no other kind: no command, no script (SECURITY.md 16).
    Returns the folders it delivers to."""
    folders: list[Path] = []
    for entry in catalogue:
        try:
            destination = parse_destination(entry.destination, state_dir=state_dir)
        except DestinationError as exc:
            raise StartupError(f"services.{entry.code}.destination: {exc}") from None
        if isinstance(destination, DirectoryDestination):
            folders.append(destination.path)
    return folders


async def _listen(what: str, start: Callable[[], Awaitable[None]], host: str, port: int) -> None:
    try:
        await start()
    except OSError as exc:
        raise StartupError(
            f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}"
        ) from None


async def _checked_installation(settings: GatewaySettings) -> Installation:
    """The installed package, its files checked against its RECORD (SECURITY.md 20)."""
    installation = await asyncio.to_thread(inspect_installation)
    fields = {
        "version": installation.version,
        "build": installation.build,
        "mode": installation.mode,
        "files": installation.files,
    }
    problem = installation.problem()
    if problem is None:
        log.info("build.checked", **fields)
    elif settings.security.verify_installation:
        raise StartupError(f"installation check failed: {problem}")
    else:
        log.warning(
            "build.changed",
            **fields,
            changed=list(installation.changed),
            missing=list(installation.missing),
        )
    return installation


async def serve(
    settings: GatewaySettings,
    options: ServeOptions,
    *,
    clock: Callable[[], datetime] = utc_now,
    on_ready: Callable[[SftpGateway], None] | None = None,
) -> None:
    """Run the gateway until SIGTERM/SIGINT, then drain and return."""
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    installation = await _checked_installation(settings)
    log.info("runtime.event_loop", kind=running_kind(), configured=settings.event_loop)
    if options.demo:
        settings = demo_settings(settings)
    state_dir = settings.state_dir
    private_dirs(state_dir)  # 0700 whatever the umask (gateway.ops.private)

    await migrate(settings.database)
    catalogue = load_service_catalogue(settings.pipeline.services_file)
    destination_dirs = _check_destinations(catalogue, state_dir)
    try:
        sync = await asyncio.to_thread(
            choose_state_sync, StateSync(settings.state_sync), state_dir, destination_dirs
        )
    except ValueError as exc:  # "filesystem" set where syncfs cannot report write errors
        raise StartupError(f"state_sync: {exc}") from None
    log.info("storage.state_sync", mode=str(sync.mode), reason=sync.reason)
    service_clients = await asyncio.to_thread(load_service_clients, catalogue)
    registry = build_registry(
        settings, notifier=build_notifier(settings.notify, state_dir), catalogue=catalogue
    )
    engine = registry.engine
    gateway_key, gateway_cert = ensure_gateway_identity(state_dir, settings.pipeline)
    gateway_cert_path = (
        settings.pipeline.gateway_cert or dev_identity_paths(state_dir)[1]
    ).absolute()

    trust_folders = [settings.signature.trust_dir]
    ftp_config = _listener_config("ftp", settings.ftp.enabled, FtpConfig.from_settings, settings)
    web_config = _listener_config("web", settings.web.enabled, WebConfig.from_settings, settings)
    admin_config = _listener_config(
        "admin", settings.admin.enabled, AdminConfig.from_settings, settings
    )
    demo = None
    if options.demo:
        registry.networks = with_demo_network(registry.networks)
        demo = await ensure_demo(
            registry,
            state_dir=state_dir,
            host=settings.sftp.host,
            port=settings.sftp.port,
            gateway_cert=gateway_cert_path,
            ftp_ca=(state_dir / "ftps" / "ca.pem").absolute(),
            web_ca=(state_dir / "web" / "ca.pem").absolute(),
            admin_ca=(state_dir / "admin" / "ca.pem").absolute(),
            now=clock(),
        )
        trust_folders.append(demo.trust_dir)
    extra_clients = (demo_service_client(demo),) if demo is not None else ()
    trust_files = TrustFiles(trust_folders)
    # Certificates registered from now on (admin API, console) are judged against the same trust
    # folders as signatures, the demo's included (its own registration above came first).
    registry.trust = TrustFolders(trust_folders)
    trust = trust_files.load()
    await asyncio.to_thread(warn_at_start, settings, now=clock(), trust_dirs=trust_folders)

    stop = asyncio.Event()
    async with running_ops(settings.metrics) as ops:
        install_stop_signals(stop)
        reload_requested = asyncio.Event()
        install_reload_signal(reload_requested.set)
        ops.metrics.build_info.labels(version=installation.version, build=installation.build).set(1)
        reserve = await asyncio.to_thread(
            SpaceReserve.at_start, state_dir, settings.limits.reserve_bytes, metrics=ops.metrics
        )
        # SQLite: one writer thread and connection for the spool and the pipeline's store.
        # It finishes work in hand (set transitions, upload commits): it runs as far above
        # the listeners as the pipeline's threads (gateway.ops.priority).
        writer = sqlite_writer(
            engine, initializer=ThreadBoost(settings.pipeline.priority_boost, "db-writer")
        )
        pipeline = Pipeline(
            pipeline=settings.pipeline,
            limits=settings.limits,
            signature=settings.signature,
            engine=engine,
            registry=registry,
            state_dir=state_dir,
            clock=clock,
            gateway_key=gateway_key,
            gateway_cert=gateway_cert,
            trust=trust,
            trust_files=trust_files,
            catalogue=catalogue,
            metrics=ops.metrics,
            release_reserve=reserve.release,  # a full disk under a set gives it up too
            state_sync=sync.mode,
            writer=writer,
        )
        spool = Spool(
            state_dir=state_dir,
            engine=engine,
            limits=SpoolLimits.from_settings(settings.limits),
            on_stored=pipeline.on_stored,
            admit=pipeline.admit,
            reserve=reserve,  # given up on a full disk, so removals can still be written
            state_sync=sync.mode,
            writer=writer,
        )
        ops.add_readiness_check(spool.readiness)  # /readyz 503 while short of space
        folders = Folders(
            spool=spool,
            names=NamePolicy.from_settings(settings, parted=catalogue.parts_rule()),
            metrics=ops.metrics,
        )
        sources = SourceGuard(PenaltyPolicy.from_settings(settings))
        sftp = SftpGateway(
            config=SftpConfig.from_settings(settings),
            authenticator=registry,
            folders=folders,
            sources=sources,
            metrics=ops.metrics,
        )
        ftp = None
        if ftp_config is not None:
            ftp = FtpGateway(
                config=ftp_config,
                authenticator=registry,
                folders=folders,
                sources=sources,
                # Read at each login, so a SIGHUP's new book is used at once.
                plain_network=lambda listener, address: registry.networks.plain_network(
                    listener, address
                ),
                metrics=ops.metrics,
            )
        web = None
        desk = None
        if web_config is not None:

            async def sets_of(query: str) -> list[SetTrace]:
                """GET /v1/sets/{GO name or ticket}: the pipeline's record (``gateway trace``)."""
                return (await trace(engine, query)).sets

            desk = ServiceDesk((*service_clients, *extra_clients), pipeline.ctx)
            web = WebGateway(
                config=web_config,
                authenticator=registry,
                folders=folders,
                sources=sources,
                metrics=ops.metrics,
                sets=sets_of,
                services=desk,
                desk=desk,
            )
        admin = None
        if admin_config is not None:

            async def trace_of(query: str) -> object:
                """``Where is my file?`` for the console and the API (``gateway trace``)."""
                return await trace(engine, query)

            admin = AdminGateway(
                AdminPlane(registry=registry, config=admin_config, trace=trace_of), ADMIN_ROUTES
            )
        try:
            # A crash can leave temp files and unrecorded files behind; on one node nothing else
            # is uploading yet, so no grace is needed. Several nodes share the spool only on
            # PostgreSQL, where another node's upload in flight must survive.
            grace = 0.0 if engine.dialect.name == "sqlite" else settings.sftp.idle_timeout_seconds
            recovered = await spool.recover(grace_seconds=grace)
            log.info(
                "spool.recovered",
                temp_files=recovered.temp_files,
                orphans=recovered.orphans,
                restored=recovered.restored,
            )
            if settings.sftp.enabled:
                await _listen("SFTP", sftp.start, settings.sftp.host, settings.sftp.port)
                log.info("sftp.listening", host=settings.sftp.host, port=sftp.port)
            if ftp is not None:
                # ftp.listening is logged per listener (public, and each plain one).
                await _listen("FTP", ftp.start, settings.ftp.host, settings.ftp.port)
            if web is not None:
                # web.listening is logged by the listener, with its anchors.
                await _listen("HTTPS", web.start, settings.web.host, settings.web.port)
            if admin is not None:
                await _listen("admin", admin.start, settings.admin.host, settings.admin.port)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(pipeline.run(), name="pipeline")
                reloads = tasks.create_task(
                    _reload_on_sighup(
                        reload_requested,
                        registry,
                        web,
                        demo=demo is not None,
                        desk=desk,
                        services_file=settings.pipeline.services_file,
                        extra_clients=extra_clients,
                    ),
                    name="reload",
                )
                revalidating: list[_Revalidating] = [sftp]
                revalidating += [c for c in (ftp, web) if c is not None]
                revalidate = tasks.create_task(
                    _end_revoked_sessions(registry, revalidating), name="revalidate"
                )
                anchor_key = load_pem_private_key(gateway_key, password=None)
                anchor_file = settings.security.audit_anchor_file or (
                    state_dir / "audit-anchors.jsonl"
                )
                anchored: list[int] = []
                anchoring = tasks.create_task(
                    _anchor_audit(
                        registry,
                        anchor_key,
                        anchor_file,
                        settings.security.audit_anchor_minutes,
                        anchored,
                    ),
                    name="audit-anchor",
                )
                expiry = tasks.create_task(
                    watch_certificate_expiry(
                        registry,
                        ops.metrics,
                        gateway_not_after=x509.load_pem_x509_certificate(
                            gateway_cert
                        ).not_valid_after_utc,
                        clock=utc_now,
                    ),
                    name="certificate-expiry",
                )
                settle_heap()  # what start made lives as long as the daemon (gateway.ops.heap)
                ops.ready()
                if on_ready is not None:
                    on_ready(sftp)
                if demo is not None:
                    ftp_ports = ftp.ports if ftp is not None else {}  # demo_settings turns FTP on
                    demo = dataclasses.replace(
                        demo,
                        port=sftp.port,
                        ftp_port=ftp_ports.get(PUBLIC, 0),
                        ftp_plain_port=ftp_ports.get(DEMO_PLAIN_LISTENER, 0),
                        web_port=web.port if web is not None else 0,  # demo_settings turns it on
                        admin_port=admin.port if admin is not None else 0,
                    )
                    today = datetime.now(settings.pipeline.timezone).date()
                    free = await next_free_sequence(
                        registry, demo.sender, today, int(demo.sequence)
                    )
                    host_keys = await asyncio.to_thread(load_host_keys, sftp.config.host_key_dir)
                    demo = dataclasses.replace(
                        demo,
                        sequence=f"{free:05d}",
                        host_keys=tuple(
                            k.export_public_key("openssh").decode().strip() for k in host_keys
                        ),
                        host_fingerprints=tuple(
                            f"{k.get_fingerprint('sha256')} ({k.get_algorithm()})"
                            for k in host_keys
                        ),
                    )
                    save_facts(demo)
                    print(instructions(demo, today=today), file=sys.stderr, flush=True)
                await stop.wait()

                ops.draining()
                reloads.cancel()
                revalidate.cancel()
                anchoring.cancel()
                expiry.cancel()
                # One deadline for the whole drain (sessions first, then the sets in hand), so
                # the stop stays within systemd's TimeoutStopSec.
                loop = asyncio.get_running_loop()
                drain = settings.drain_seconds
                deadline = loop.time() + drain
                channels = {"sftp": sftp.drain(drain)}
                if ftp is not None:
                    channels["ftp"] = ftp.drain(drain)
                if web is not None:
                    channels["web"] = web.drain(drain)
                cuts = await asyncio.gather(*channels.values())
                for channel, cut in zip(channels, cuts, strict=True):
                    if cut:
                        # sftp.drain_timeout, ftp.drain_timeout, web.drain_timeout
                        log.warning(f"{channel}.drain_timeout", seconds=drain, sessions=cut)
                if admin is not None:
                    await admin.stop()
                await pipeline.aclose(deadline=max(1.0, deadline - loop.time()))
                await _anchor_once(registry, anchor_key, anchor_file, anchored)
        finally:
            await asyncio.to_thread(spool.close)
            await engine.dispose()
    log.info("daemon.stopped")
