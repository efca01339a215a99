"""The HTTPS web channel: senders upload and fetch over ``/v1/`` with a client certificate.

Why aiohttp: it is the maintained Python server that hands the TLS connection to the
application (``request.get_extra_info("ssl_object")``), so the application can read the client
certificate the handshake proved; Hypercorn 0.18 and uvicorn 0.55 do not (shared/notes/
mtls-http.md). It also streams request bodies (``request.content``) and runs in the daemon's
own event loop.

Rules (issue 12 §1-3, 6; SECURITY.md 4, 5, 7, 9, 14, 15, 22):

- TLS 1.2+ with the FTPS listener's suites; the client certificate is verified and
  authenticated as :mod:`gateway.channels.web_config` and :mod:`gateway.channels.web_auth`
  say (401/403, penalties per source shared with SFTP and FTP).
- The sender API is the folder service's, translated (:mod:`gateway.channels.web_files`): the
  same folders, names, checks and codes as SFTP and FTP; paths come from the raw request target
  decoded once (:mod:`gateway.channels.web_paths`). ``POST /v1/sets`` stores a whole set in one
  multipart request and names its GO; ``GET /v1/sets/{GO name or ticket}`` reads its state
  through the injected ``sets`` lookup (:mod:`gateway.channels.web_sets`).
- Every error is ``application/problem+json`` with the gateway code
  (:mod:`gateway.channels.web_problems`): unknown paths 404, other methods 405, an encoded body
  415, a fault 500 with code 999 and no exception text (the traceback goes to the log).
- The ``Server`` header is fixed (``batch-gateway``): no version (SECURITY.md 9). Nothing but
  ``/v1/`` is served on this listener: no admin path, no metrics.
- Sessions: one per authenticated TLS connection (:mod:`gateway.channels.web_auth`); a folder
  session per request, ended with the request, so an interrupted body leaves nothing.
- Stopping (:meth:`WebGateway.drain`): new requests get 503 (926) and ``Connection: close``;
  requests in progress may finish until the deadline; what still runs then is cancelled (its
  upload aborted: nothing visible, nothing recorded).

Events: ``web.listening``, ``connection.refused``, ``auth.failed``, ``session.opened``,
``session.closed``, ``request.failed``; the folder service logs ``upload.stored``/
``upload.refused``/``file.removed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.channels.penalties import SourceGuard
from gateway.channels.revocation import StillAllowed
from gateway.channels.web_auth import CHANNEL, ServiceLookup, Session, Sessions, log
from gateway.channels.web_config import CertificateAuthenticator, WebConfig, WebTls
from gateway.channels.web_files import download, listing, put, remove
from gateway.channels.web_openapi import PATH as OPENAPI
from gateway.channels.web_openapi import openapi_response
from gateway.channels.web_paths import Target, parse_target
from gateway.channels.web_problems import SERVER, problem, refusal
from gateway.channels.web_services import NotificationDesk, is_services, services_api
from gateway.channels.web_sets import SetLookup, is_sets, sets_api
from gateway.core.codes import Code, Rejection, internal_error, reject
from gateway.ops.faults import log_fault
from gateway.ops.metrics import Metrics
from gateway.registry.types import ServiceClient
from gateway.spool.folders import Folders, FolderSession

__all__ = [
    "CertificateAuthenticator",
    "NotificationDesk",
    "ServiceLookup",
    "SetLookup",
    "WebConfig",
    "WebGateway",
]

METHODS = ("GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS")
FILE_METHODS = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
READ_METHODS = ("GET", "HEAD", "OPTIONS")


class WebGateway:
    """The HTTPS listener: ``await start()``; to stop, ``await drain(seconds)``."""

    def __init__(
        self,
        *,
        config: WebConfig,
        authenticator: CertificateAuthenticator,
        folders: Folders,
        sources: SourceGuard,
        metrics: Metrics | None = None,
        sets: SetLookup | None = None,
        services: ServiceLookup | None = None,
        desk: NotificationDesk | None = None,
    ) -> None:
        self.config = config
        self.sets = sets
        """The pipeline's sets by ticket or GO name, for ``GET /v1/sets/{id}``; without it,
        only a GO not yet taken by the pipeline is found (:mod:`gateway.channels.web_sets`)."""
        self.desk = desk
        """Where online services' notifications go (:mod:`gateway.channels.web_services`);
        without it (or without ``services``) the service API answers 404."""
        self.folders = folders
        self.metrics = metrics
        self.sources = sources
        self.tls = WebTls(
            config, authenticator, services.certificates if services is not None else None
        )
        self.sessions = Sessions(
            authenticator=authenticator,
            tls=self.tls,
            sources=sources,
            metrics=metrics,
            max_per_sender=config.sender_max_sessions,
            services=services,
        )
        self.stopping = False
        self.in_flight: set[FolderSession] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: web.ServerRunner | None = None

    # -- the application -------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The per-request boundary: a fault is logged with its traceback and answered 999."""
        try:
            response = await self._dispatch(request)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            ticket = log_fault(log, "request.failed", method=request.method, peer=request.remote)
            response = refusal(internal_error(ticket))
        if not response.prepared:
            response.headers["Server"] = SERVER
        return response

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        target = parse_target(request.raw_path)
        if target is None:
            return problem(404, "no such resource")
        if request.method not in METHODS:
            return _not_allowed(request, METHODS)
        if isinstance(target, Target) and target.path == OPENAPI:
            if request.method == "OPTIONS":
                return _options(READ_METHODS)
            if request.method not in READ_METHODS:
                return _not_allowed(request, READ_METHODS)
            return openapi_response(request)  # the public contract: no certificate needed
        if self.stopping:
            answer = refusal(reject(Code.GATEWAY_STOPPING))
            answer.force_close()
            return answer
        who = await self.sessions.session(request)
        if isinstance(who, web.Response):
            return who
        protocol = request.protocol
        if isinstance(protocol, _Connection):
            protocol.authenticated()
        if isinstance(target, Rejection):
            who.log.info("path.refused", code=int(target.code), reason=target.reason)
            return refusal(target)
        principal = who.principal
        if is_services(target.path) or isinstance(principal, ServiceClient):
            if not isinstance(principal, ServiceClient):
                return _forbidden("the service API takes an online service's certificate")
            if not is_services(target.path):
                return _forbidden("a service certificate has no folders: use /v1/services/")
            return await services_api(
                request, principal, target.path, config=self.config, desk=self.desk, log=who.log
            )
        folder_session = self._folder_session(who)
        self.in_flight.add(folder_session)
        self._idle.clear()
        try:
            return await self._operate(request, folder_session, target)
        finally:
            folder_session.end()
            self.in_flight.discard(folder_session)
            if not self.in_flight:
                self._idle.set()

    async def _operate(
        self, request: web.BaseRequest, session: FolderSession, target: Target
    ) -> web.StreamResponse:
        config = self.config
        if is_sets(target.path):
            return await sets_api(
                request, session, target.path, config=config, names=self.folders.names,
                sets=self.sets,
            )  # fmt: skip
        if request.method not in FILE_METHODS:
            return _not_allowed(request, FILE_METHODS)
        if request.method == "OPTIONS":
            return _options(FILE_METHODS)
        if request.method == "PUT":
            return await put(request, session, target, config)
        if request.method == "DELETE":
            return await remove(session, target)
        if target.folder:
            return await listing(request, session, target, config)
        return await download(request, session, target, config)

    def _folder_session(self, who: Session) -> FolderSession:
        principal = who.principal
        if isinstance(principal, ServiceClient) or principal.sender is None:  # pragma: no cover
            raise RuntimeError("an authenticated web principal without a sender number")
        session = self.folders.open_session(
            principal=principal,
            sender=principal.sender,
            session_id=f"{who.id}-{uuid.uuid4().hex[:8]}",
            channel=CHANNEL,
            log=who.log,
        )
        session.draining = self.stopping
        return session

    # -- the listener ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the TLS anchors and listen."""
        anchors = await self.tls.reload()
        server = _Server(
            self._handle,
            keepalive_timeout=self.config.keepalive_seconds,
            access_log=None,
            # Never decompress a request body (SECURITY.md 14): an encoded PUT is refused.
            auto_decompress=False,
        )
        server.sources = self.sources
        server.metrics = self.metrics
        server.sessions = self.sessions
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(
                runner, self.config.host, self.config.port, ssl_context=self.tls.listening
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._runner = None
            raise
        log.info("web.listening", host=self.config.host, port=self.port, anchors=anchors)

    async def revalidate(self, check: StillAllowed) -> int:
        """Close the connections whose certificate the registry no longer admits."""
        return await self.sessions.revalidate(check)

    async def reload(self) -> int:
        """Read the trust folders and the registered client certificates again (SIGHUP)."""
        return await self.tls.reload()

    @property
    def port(self) -> int:
        """The listener's port (useful with port 0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the web listener is not started")
        return int(self._runner.addresses[0][1])

    def close(self) -> None:
        """Refuse new requests (503, 926); :meth:`drain` ends the listener."""
        self.stopping = True
        for session in self.in_flight:
            session.draining = True

    async def drain(self, seconds: float) -> int:
        """Let the requests in progress finish within ``seconds``, then stop listening and
        cancel the rest; returns how many were cut (their uploads aborted)."""
        self.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=seconds)
        cut = len(self.in_flight)
        await self.wait_closed()
        return cut

    async def wait_closed(self) -> None:
        """Stop listening and end every connection (requests in progress are cancelled)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _forbidden(reason: str) -> web.Response:
    return refusal(reject(Code.OPERATION_NOT_PERMITTED, reason))


def _not_allowed(request: web.BaseRequest, allowed: tuple[str, ...]) -> web.Response:
    return problem(
        405, f"{request.method} is not allowed here", headers={"Allow": ", ".join(allowed)}
    )


def _options(allowed: tuple[str, ...]) -> web.Response:
    """``OPTIONS``: what the resource allows (RFC 9110 §9.3.7), no body."""
    return web.Response(status=204, headers={"Allow": ", ".join(allowed)})


class _Connection(RequestHandler):
    """aiohttp's connection handler, whose own answers (a request it cannot parse) are problems
    without its version or an echo of the request (SECURITY.md 5, 9), and which counts the
    connection against its source until a request on it authenticates (SECURITY.md 13: at most
    ``max_startups_per_source`` unauthenticated connections per network, shared with SFTP and
    FTP; one more is closed at once, while a penalised source's request gets its 429)."""

    _source: str | None = None
    _counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sources: SourceGuard | None = getattr(self._manager, "sources", None)
        if sources is None:
            return
        peer = transport.get_extra_info("peername")
        self._source = sources.source(str(peer[0])) if isinstance(peer, tuple) and peer else None
        refused = sources.admit(self._source, time.monotonic())
        if refused == "penalty":
            return  # answered 429 with a problem at its first request (web_auth), not counted
        if refused is not None:
            sources.refusals.refused(
                channel=CHANNEL,
                source=self._source,
                peer=str(peer[0]) if peer else None,
                reason=refused,
                metrics=getattr(self._manager, "metrics", None),
            )
            transport.close()
            return
        self._counted = self._source is not None

    def authenticated(self) -> None:
        """A request on this connection authenticated: it no longer counts as a startup."""
        if self._counted:
            self._counted = False
            sources: SourceGuard | None = getattr(self._manager, "sources", None)
            if sources is not None:
                sources.left_unauthenticated(self._source)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.authenticated()  # gone: no longer counted either
        sessions: Sessions | None = getattr(self._manager, "sessions", None)
        tls = None if self.transport is None else self.transport.get_extra_info("ssl_object")
        if sessions is not None and tls is not None:
            sessions.end(tls)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # aiohttp's own rule: the answer is under way
            raise ConnectionError("response already sent")
        log.info("request.malformed", status=status, peer=request.remote)
        if status >= 500:
            response = refusal(reject(Code.INTERNAL_ERROR))
        else:
            response = problem(status, "the request is not valid HTTP/1.1")
        response.headers["Server"] = SERVER
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's low-level server with :class:`_Connection` as its connection handler (no
    router: :meth:`WebGateway._dispatch` reads the raw path itself)."""

    sources: SourceGuard | None = None
    metrics: Metrics | None = None
    sessions: Sessions | None = None

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)
