"""The admin listener: the console and the admin API on their own HTTPS port.

Rules (issue 13 §3; SECURITY.md 5, 9, 22):

- Its own listener (``[admin] host``/``port``, default 127.0.0.1:8444), TLS 1.2+ with the
  gateway's suites; nothing of it is served on a sender-facing listener, and nothing of the
  senders' API here. With ``[admin] eid_trust_dir`` the handshake asks for (does not require) a
  client certificate, verified against those CAs: an eID sign-in.
- Every answer carries the security headers (:data:`SECURITY_HEADERS`): a Content-Security-Policy
  with no inline script or style, no framing, no referrer, no caching, no MIME sniffing, HSTS.
- The per-request boundary logs an unexpected error with its traceback and answers 500 without
  its text.
- Who asks is resolved once per request (:func:`gateway.admin.auth.resolve`) and kept in
  ``request[GRANT]``; a session-authenticated request that changes something must carry the
  session's CSRF token (403 otherwise). The refusal speaks the asker's language: the API's is the
  JSON problem ``csrf``; under :data:`CONSOLE_PREFIX` it is the console's HTML page
  (:data:`CSRF_PAGE`, which the console registers: this module does not know its templates).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gateway.admin.auth import (
    GRANT,
    SAFE_METHODS,
    SECRET,
    Handler,
    csrf_presented,
    resolve,
)
from gateway.admin.config import AdminConfig
from gateway.admin.problems import problem
from gateway.ops.tls import server_context
from gateway.registry.service import Registry

log = structlog.get_logger("gateway.admin")

SERVER = "batch-gateway"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Server": SERVER,
}

Trace = Callable[[str], Any]


@dataclass
class AdminPlane:
    """What the API and the console handlers share: the registry, the settings, and the
    pipeline's trace (``Where is my file?``) when the daemon has one."""

    registry: Registry
    config: AdminConfig
    trace: Trace | None = None
    """``async (query) -> TraceReport`` (``gateway.pipeline.trace.trace`` on the engine)."""


PLANE: web.AppKey[AdminPlane] = web.AppKey("plane", AdminPlane)

CONSOLE_PREFIX = "/admin/console/"
CsrfPage = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_PAGE: web.AppKey[CsrfPage] = web.AppKey("csrf_page")
"""The console's 403 page for a form posted without its CSRF token (``request[GRANT]`` is set)."""

RouteAdder = Callable[[web.Application], None]


def tls_context(config: AdminConfig) -> ssl.SSLContext:
    """The listener's context; with an eID trust folder, a client certificate is asked for."""
    context = server_context(config.tls_cert, config.tls_key)
    folder = config.eid_trust_dir
    if folder is not None and folder.is_dir():
        anchors = [p for p in sorted(folder.iterdir()) if p.is_file() and _is_pem(p)]
        if anchors:
            context.verify_mode = ssl.CERT_OPTIONAL
            for path in anchors:
                context.load_verify_locations(cafile=str(path))
    return context


def _is_pem(path: Path) -> bool:
    try:
        return b"-----BEGIN CERTIFICATE-----" in path.read_bytes()[:4096]
    except OSError:
        return False


@web.middleware
async def _boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/problem+json":
            response = problem(exc.status, exc.reason or "refused", headers=_allowed(exc))
        else:
            raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("admin.request_failed", method=request.method, path=request.path[:200])
        response = problem(500, "internal error: the details are in the gateway's log")
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


def _allowed(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    plane = request.app[PLANE]
    grant = await resolve(request, plane.registry, plane.config)
    if grant is not None:
        request[GRANT] = grant
        needs_csrf = request.method not in SAFE_METHODS and SECRET in request
        if needs_csrf and not plane.registry.csrf_ok(grant, await csrf_presented(request)):
            log.info("admin.csrf_refused", login=grant.login, path=request.path[:200])
            page = request.app.get(CSRF_PAGE)
            if page is not None and request.path.startswith(CONSOLE_PREFIX):
                return await page(request)
            return problem(
                403, "the form's CSRF token is missing or wrong: reload the page", code="csrf"
            )
    return await handler(request)


class AdminGateway:
    """The admin listener: ``await start()``; ``await stop()``."""

    def __init__(self, plane: AdminPlane, routes: Sequence[RouteAdder]) -> None:
        self.plane = plane
        self.app = web.Application(
            middlewares=[_boundary, _authenticate], client_max_size=4 * 1024 * 1024
        )
        self.app[PLANE] = plane
        for add in routes:
            add(self.app)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on ``[admin] host``/``port``."""
        config = self.plane.config
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port, ssl_context=tls_context(config))
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("admin.listening", host=config.host, port=self.port)

    @property
    def port(self) -> int:
        """The listener's port (useful with port 0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the admin listener is not started")
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and end every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
