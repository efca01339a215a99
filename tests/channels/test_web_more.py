"""The web channel's edges: penalties, faults, stopping, reloading anchors, TLS versions, the
settings, and aiohttp's own answers."""

from __future__ import annotations

import asyncio
import gc
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.channels.penalties import PenaltyPolicy
from gateway.channels.web import WebConfig
from gateway.core.types import SenderNumber
from gateway.ops.settings import GatewaySettings
from gateway.ops.tls import listener_identity
from gateway.spool.folders import FolderSession
from tests.channels.ftp_env import name, run
from tests.channels.web_env import StartWeb, WebEnv, curl
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(120)


def _client(web: WebEnv, *, cert: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(web.server_ca))
    if cert:
        context.load_cert_chain(web.pki.a.cert, web.pki.a.key)
    return context


async def _exchange(web: WebEnv, request: bytes, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", web.gateway.port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(30):
            return await reader.read(65536)
    finally:
        writer.close()


async def test_malformed_request_reveals_no_version(web: WebEnv) -> None:
    """A request aiohttp cannot parse is answered without a Server version."""
    head = await _exchange(web, b"GARBAGE\x01 / HTTP/9\r\n\r\n", _client(web))
    assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), head
    assert b"application/problem+json" in head
    assert b"GARBAGE" not in head
    assert b"aiohttp" not in head
    assert b"Python" not in head


async def test_old_tls_is_refused(web: WebEnv) -> None:
    """TLS 1.1 and below: no handshake (the listener's floor is TLS 1.2)."""
    assert web.gateway.tls.listening.minimum_version == ssl.TLSVersion.TLSv1_2
    context = _client(web)
    with warnings.catch_warnings():  # the versions under test are deprecated, on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _exchange(web, b"GET /v1/OUT/ HTTP/1.1\r\nHost: x\r\n\r\n", context)


async def test_failed_authentications_penalise_the_source(
    start_web: StartWeb, tmp_path: Path
) -> None:
    """After failed authentications the source gets 429 before the registry is asked, even
    with a good certificate; loopback is exempt unless the policy says otherwise."""
    policy = PenaltyPolicy(exempt=(), authfail_seconds=30.0, min_seconds=10.0)
    web = await start_web(penalties=policy)
    first = await curl(web, "/OUT/", cert=False, folder=tmp_path)
    assert first.status == 401
    penalised = await curl(web, "/OUT/", folder=tmp_path)
    assert penalised.status == 429, penalised.body
    # A problem without a gateway code: 921 is a sender's session limit, not a source penalty.
    body = penalised.json()
    assert isinstance(body, dict)
    assert (body["type"], body["status"], "code" in body) == ("about:blank", 429, False)
    assert penalised.headers["content-type"].startswith("application/problem+json")
    assert penalised.headers["connection"] == "close"


async def test_a_fault_is_999_without_its_text(
    web: WebEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in a request: 500 with 999 and the catalogue's text, nothing of the error."""

    async def broken(self: FolderSession, raw: object, **page: object) -> object:
        raise RuntimeError("sqlite3.OperationalError secret-table")

    monkeypatch.setattr(FolderSession, "page", broken)
    answer = await curl(web, "/OUT/", folder=tmp_path)
    assert answer.status == 500
    assert answer.json()["code"] == 999  # type: ignore[index]
    assert b"secret" not in answer.body
    assert b"sqlite" not in answer.body
    after = await curl(web, f"/OUT/x{name('FI', web.a.number)}", folder=tmp_path)
    assert after.status in {404, 422}  # the listener answers on


async def test_stopping_answers_926_and_drains(web: WebEnv, tmp_path: Path) -> None:
    """Once closed, a request gets 503 with 926; drain() with nothing running cuts nothing."""
    web.gateway.close()
    answer = await curl(web, "/OUT/", folder=tmp_path)
    assert answer.status == 503
    assert answer.json()["code"] == 926  # type: ignore[index]
    assert await web.gateway.drain(1.0) == 0


async def test_reload_swaps_the_anchors(web: WebEnv, tmp_path: Path) -> None:
    """reload() rebuilds the anchors for new handshakes: with the CA gone from the trust
    folder, its unregistered certificate no longer even completes the handshake."""
    before = await curl(web, "/OUT/", identity=web.pki.stranger, folder=tmp_path)
    assert before.status == 401
    (web.gateway.config.trust_dirs[0] / "ca.pem").unlink()
    assert await web.gateway.reload() == 4  # the four registered certificates
    after = await curl(web, "/OUT/", identity=web.pki.stranger, folder=tmp_path)
    assert after.status == 0
    assert after.returncode != 0
    own = await curl(web, "/OUT/", folder=tmp_path)  # A's registered certificate: its own anchor
    assert own.status == 200


def test_config_from_settings(tmp_path: Path) -> None:
    """[web] and [limits] make the config; without a certificate the development identity is
    made under state_dir/web."""
    settings = GatewaySettings.model_validate(
        {
            "state_dir": str(tmp_path),
            "web": {"port": 9443, "keepalive_seconds": 5, "list_limit": 10},
            "limits": {"max_file_bytes": 1234},
        }
    )
    config = WebConfig.from_settings(settings)
    assert (config.port, config.max_body, config.list_limit) == (9443, 1234, 10)
    assert config.keepalive_seconds == 5
    assert config.tls_cert.parent == tmp_path / "web"
    assert config.trust_dirs == (settings.signature.trust_dir,)
    half = GatewaySettings.model_validate(
        {"state_dir": str(tmp_path), "web": {"tls_cert": str(tmp_path / "x.pem")}}
    )
    with pytest.raises(ValueError, match="go together"):
        WebConfig.from_settings(half)


def _ca_name(path: Path) -> str:
    ca = x509.load_pem_x509_certificate(path.read_bytes())
    return str(ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_development_cas_name_their_listener(tmp_path: Path) -> None:
    """The development CA made for the web listener says HTTPS, the FTP one FTPS; the chain
    each listener serves is issued by its own CA."""
    for section, folder, purpose in (("web", "web", "HTTPS"), ("ftp", "ftps", "FTPS")):
        cert, _ = listener_identity(section, None, None, tmp_path / folder)
        ca = tmp_path / folder / "ca.pem"
        assert _ca_name(ca) == f"Batch Gateway {purpose} development CA"
        chain = x509.load_pem_x509_certificates(cert.read_bytes())
        assert chain[0].issuer == x509.load_pem_x509_certificate(ca.read_bytes()).subject


async def _until(check: Callable[[], bool]) -> None:
    """Wait (bounded) until ``check()`` holds: the gateway works in this same event loop."""
    async with asyncio.timeout(30):
        while not check():  # noqa: ASYNC110 (state of the gateway, which offers no event)
            await asyncio.sleep(0.01)


async def _open_put(web: WebEnv, length: int) -> asyncio.StreamWriter:
    """A PUT of A's FI announcing ``length`` bytes, of which 10 are sent."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", web.gateway.port, ssl=_client(web), server_hostname="127.0.0.1"
    )
    fi = name("FI", web.a.number)
    head = f"PUT /v1/IN/{fi} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    writer.write(head.encode() + b"0123456789")
    await writer.drain()
    return writer


async def test_an_interrupted_body_leaves_nothing(web: WebEnv) -> None:
    """The client goes away in the middle of its body: nothing stored, nothing recorded."""
    writer = await _open_put(web, 1000)
    await _until(lambda: bool(web.gateway.in_flight))
    writer.close()
    await _until(lambda: not web.gateway.in_flight)
    assert await web.uploads() == []
    assert await web.refusals() == []
    assert list((web.state_dir / "spool").rglob("FI.*")) == []


async def test_drain_cuts_an_upload_at_the_deadline(web: WebEnv) -> None:
    """A PUT still receiving at the deadline is cut: drain() counts it, nothing is visible."""
    writer = await _open_put(web, 1000)
    await _until(lambda: bool(web.gateway.in_flight))
    assert await web.gateway.drain(0.2) == 1
    writer.close()
    assert await web.uploads() == []
    assert list((web.state_dir / "spool").rglob("FI.*")) == []


async def test_sessions_are_counted_per_connection(web: WebEnv, tmp_path: Path) -> None:
    """Two requests on one keep-alive connection are one session; uploads count as web's."""
    fi = name("FI", web.a.number)
    (tmp_path / "fi").write_bytes(b"<d/>")
    cert = ["--cacert", str(web.server_ca), "--cert", str(web.pki.a.cert),
            "--key", str(web.pki.a.key), "--silent", "--output", "/dev/null",
            "--write-out", "%{http_code} %{num_connects}\n"]  # fmt: skip
    done = await run(
        [
            require_tool("curl"),
            *cert,
            "--upload-file",
            str(tmp_path / "fi"),
            f"{web.url}/IN/{fi}",
            "--next",
            *cert,
            f"{web.url}/IN/",
        ]
    )
    assert done.stdout.split() == ["201", "1", "200", "0"], done  # the second reused it
    metrics = web.metrics
    assert metrics.sessions_total.labels(channel="web")._value.get() == 1
    assert metrics.uploads_stored_total.labels(channel="web", env="R")._value.get() == 1
    active = metrics.sessions_active.labels(channel="web")
    await _until(lambda: active._value.get() == 0)  # the connection ended with curl


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        (["-tls1_3"], True),
        (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], True),
        (["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"], True),
        (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"], False),
        (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0"], False),
        (["-tls1_2", "-cipher", "AES128-GCM-SHA256:@SECLEVEL=0"], False),
        (["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"], False),
        (["-tls1_2", "-cipher", "DES-CBC3-SHA:@SECLEVEL=0"], False),
        (["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"], False),
    ],
)
async def test_tls_scan(web: WebEnv, options: list[str], accepted: bool) -> None:
    """openssl s_client, suite by suite: only TLS 1.3 and ECDHE with AEAD on TLS 1.2 connect."""
    done = await run(
        [
            require_tool("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{web.gateway.port}",
            "-CAfile",
            str(web.server_ca),
            *options,
        ],
        seconds=30,
    )
    connected = "Server certificate" in done.stdout and "Cipher is (NONE)" not in done.stdout
    assert connected is accepted, (done.stdout, done.stderr)


async def test_head_and_options(web: WebEnv, tmp_path: Path) -> None:
    """HEAD answers a GET's headers without a body; OPTIONS answers 204 with Allow per kind of
    resource; the OpenAPI document needs no client certificate (it is the public contract)."""
    out = web.state_dir / "out" / web.a.number / "OUT"
    out.mkdir(parents=True, exist_ok=True)
    name = "FO.ACRF.999999.20260115.00001.R"
    (out / name).write_bytes(b"<ack/>" * 100)
    head = await curl(web, f"/OUT/{name}", "--head", folder=tmp_path)
    got = await curl(web, f"/OUT/{name}", folder=tmp_path)
    assert (head.status, got.status) == (200, 200), (head.body, got.body)
    assert b"<ack/>" not in head.body  # curl --head writes the headers only
    assert got.body == b"<ack/>" * 100
    assert head.headers["content-length"] == got.headers["content-length"] == "600"
    assert head.headers["etag"] == got.headers["etag"]
    listing = await curl(web, "/OUT/", "--head", folder=tmp_path)
    assert listing.status == 200
    assert b"entries" not in listing.body
    allowed = {
        f"/OUT/{name}": "GET, HEAD, PUT, DELETE, OPTIONS",
        "/sets": "POST, OPTIONS",
        "/sets/ABCDEFGHIJKLM": "GET, HEAD, OPTIONS",
        "/openapi.json": "GET, HEAD, OPTIONS",
    }
    for path, allow in allowed.items():
        answer = await curl(web, path, "--request", "OPTIONS", folder=tmp_path)
        assert (answer.status, answer.headers.get("allow")) == (204, allow), (path, answer)
    document = await curl(web, "/openapi.json", cert=False, folder=tmp_path)
    assert document.status == 200, document.body
    assert document.headers["content-type"].startswith("application/json")
    assert document.json()["openapi"].startswith("3.1")  # type: ignore[index]
    cached = await curl(web, "/openapi.json", "-H", f"If-None-Match: {document.headers['etag']}",
                        cert=False, folder=tmp_path)  # fmt: skip
    assert cached.status == 304
    refused = await curl(web, "/openapi.json", "--request", "DELETE", folder=tmp_path)
    assert refused.status == 405


async def test_sessions_per_sender_are_bounded(start_web: StartWeb, tmp_path: Path) -> None:
    """With sender_max_sessions = 2, a third open connection of the same sender is answered
    429 with 921 and closed; once one closes, a new connection is a session again."""
    web = await start_web(sender_max_sessions=2)
    request = b"GET /v1/OUT/ HTTP/1.1\r\nHost: gateway\r\n\r\n"
    held = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", web.gateway.port, ssl=_client(web), server_hostname="127.0.0.1"
        )
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(30):
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        held.append(writer)
    third = await _exchange(web, request, _client(web))
    assert third.startswith(b"HTTP/1.1 429"), third
    assert b'"code": 921' in third
    held.pop().close()
    await _until(lambda: web.gateway.sessions.limits.sessions(SenderNumber(web.a.number)) < 2)
    fourth = await _exchange(web, request, _client(web))
    assert fourth.startswith(b"HTTP/1.1 200"), fourth
    for writer in held:
        writer.close()


async def test_a_closed_connection_ends_its_session_without_the_collector(
    start_web: StartWeb,
) -> None:
    """A sender's connection that closes stops counting against its session limit at once,
    not when the garbage collector frees its TLS object (uvloop keeps that object in a
    reference cycle): with the collector off, ten connections one after another, with a limit
    of 2, are all answered 200, and the sessions gauge is back at 0."""
    web = await start_web(sender_max_sessions=2)
    request = b"GET /v1/OUT/ HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n"
    sender = SenderNumber(web.a.number)
    gc.disable()
    try:
        for _ in range(10):
            answer = await _exchange(web, request, _client(web))
            assert answer.startswith(b"HTTP/1.1 200"), answer
            await _until(lambda: web.gateway.sessions.limits.sessions(sender) == 0)
        active = web.metrics.sessions_active.labels(channel="web")
        assert active._value.get() == 0
    finally:
        gc.enable()


async def test_unauthenticated_connections_per_source_are_bounded(
    start_web: StartWeb,
) -> None:
    """With max_startups_per_source = 2, two TLS connections that sent nothing hold the
    source's slots: a third is closed at once; once one of them authenticates (a request with
    its certificate), a new connection is admitted again."""
    web = await start_web(penalties=PenaltyPolicy(max_startups_per_source=2))

    async def open_one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", web.gateway.port, ssl=_client(web), server_hostname="127.0.0.1"
        )

    held = [await open_one(), await open_one()]
    reader, writer = await open_one()
    async with asyncio.timeout(30):
        assert await reader.read(1024) == b""  # closed by the gateway before any request
    writer.close()
    first_reader, first_writer = held[0]
    first_writer.write(b"GET /v1/OUT/ HTTP/1.1\r\nHost: gateway\r\n\r\n")
    await first_writer.drain()
    async with asyncio.timeout(30):
        assert (await first_reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    fourth = await _exchange(web, b"GET /v1/OUT/ HTTP/1.1\r\nHost: gateway\r\n\r\n", _client(web))
    assert fourth.startswith(b"HTTP/1.1 200"), fourth
    for _, w in held:
        w.close()
