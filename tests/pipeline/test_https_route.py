"""The https destination: POST keyed by the ticket, retries with backoff, 940 past the deadline.

A real HTTPS server on 127.0.0.1 (``http.server`` in a thread, certificate made by openssl) plays
the online service; the pipeline trusts it through the SSL context it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.core.codes import Code
from gateway.pipeline.tables import RouteAttemptRow, SetRow
from gateway.registry.catalogue import ServiceCatalogue, parse_service_catalogue
from tests.pipeline.conftest import Clock, Harness, build_harness, pipeline_settings
from tests.pki import StandardPki
from tests.tools import require_tool


@dataclass
class Service:
    """What the fake online service received, and what it answers."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    hold: threading.Event | None = None
    """When set: each POST is recorded, then answered only once the event is set."""


@dataclass
class Tls:
    """A server certificate for 127.0.0.1 and the client context trusting it."""

    cert: Path
    key: Path
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate with subjectAltName IP:127.0.0.1, made by openssl."""
    openssl = require_tool("openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "server.pem", folder / "server.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=online service",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return Tls(cert=cert, key=key, client=ssl.create_default_context(cafile=str(cert)))


@pytest.fixture
def service(tls: Tls) -> Iterator[tuple[str, Service]]:
    """An HTTPS server recording every POST; yields (url, state)."""
    state = Service()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            body = self.rfile.read(length)
            state.requests.append({"headers": dict(self.headers), "body": body})
            if state.hold is not None:
                state.hold.wait(timeout=60)
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/declarations", state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def https_catalogue(url: str) -> ServiceCatalogue:
    """DMFA routed to ``url`` (deadline 10 s, backoff 1 s), WECH to a directory."""
    return parse_service_catalogue(
        {
            "services": {
                "DMFA": {
                    "title": "DmfA",
                    "parts": True,
                    "destination": {
                        "kind": "https",
                        "url": url,
                        "deadline": "PT10S",
                        "backoff": "PT1S",
                    },
                },
                "WECH": {
                    "title": "DRS",
                    "parts": False,
                    "destination": {"kind": "directory", "path": "routed/WECH"},
                },
            }
        }
    )


async def _harness(
    tmp_path: Path,
    url: str,
    sqlite_url: str,
    cast: StandardPki,
    key: str,
    tls: Tls,
    **settings: Any,
) -> Harness:
    return await build_harness(
        state_dir=tmp_path / "state",
        url=sqlite_url,
        cast=cast,
        ssh_public_key=key,
        clock=Clock(),
        catalogue=https_catalogue(url),
        ssl_context=tls.client,
        settings=pipeline_settings(**settings) if settings else None,
    )


async def _attempts(h: Harness) -> list[Any]:
    async with h.engine.connect() as conn:
        return list((await conn.execute(select(RouteAttemptRow))).all())


async def test_https_destination_confirms_then_ack(
    tmp_path: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
    tls: Tls,
    service: tuple[str, Service],
) -> None:
    """A refused POST is retried with backoff; the positive ACRF comes only after a 2xx."""
    url, state = service
    h = await _harness(tmp_path, url, sqlite_url, cast, ssh_public_key, tls)
    try:
        state.status = 503
        await h.send_set(parts=2)
        assert await h.pipeline.run_once() == 0
        assert h.out_names() == []  # no ACRF before the destination confirmed
        state.status = 201
        h.clock.offset = timedelta(seconds=1.5)  # the retry is due
        assert await h.pipeline.run_once() == 1
        [(_, acrf)] = h.acrfs()
        assert acrf.accepted
        assert [r["headers"]["Idempotency-Key"] for r in state.requests] == [acrf.ticket] * 2
        body = state.requests[-1]["body"]
        assert b'name="envelope"' in body
        assert body.count(b'name="file"') == 2
        envelope = json.loads(body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--gateway-", 1)[0])
        assert envelope["ticket"] == acrf.ticket
        attempts = await _attempts(h)
        assert [(a.attempt, a.outcome, a.status) for a in attempts] == [
            (1, "failed", 503),
            (2, "delivered", 201),
        ]
    finally:
        await h.engine.dispose()


async def test_https_destination_down_past_deadline_gives_940(
    tmp_path: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
    tls: Tls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens: every attempt is recorded, and past the deadline the ACRF says 940."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    h = await _harness(
        tmp_path, f"https://127.0.0.1:{port}/x", sqlite_url, cast, ssh_public_key, tls
    )
    try:
        await h.send_set()
        for second in range(1, 30):
            if await h.pipeline.run_once():
                break
            h.clock.offset = timedelta(seconds=second * 2)
        [(_, acrf)] = h.acrfs()
        assert acrf.code == Code.DESTINATION_UNAVAILABLE
        attempts = await _attempts(h)
        assert len(attempts) >= 3
        assert all(a.outcome == "failed" for a in attempts)
        # The key is free again: the sender may send the same set once the service is back.
        assert (
            await h.pipeline.ctx.store.key_holder(
                await h.pipeline.ctx.store.load(attempts[0].set_id)
            )
            is None
        )
    finally:
        await h.engine.dispose()


def test_undeclared_url_is_never_contacted() -> None:
    """Defence in depth: a destination whose URL is not in the catalogue is refused unsent."""
    from gateway.pipeline.routing import HttpsDestination, Outcome, deliver_https

    delivery = deliver_https(
        HttpsDestination(url="https://attacker.example/x"),
        ticket="0000000000000",
        envelope=b"{}",
        payload=[],
        allowed_urls=frozenset({"https://service.example/x"}),
    )
    assert delivery.outcome is Outcome.FAILED
    assert "not declared" in (delivery.detail or "")


def _committed(h: Harness, go: str) -> bool:
    from gateway.core.folders import Folder
    from gateway.core.types import SenderNumber

    return h.spool.layout.committed(SenderNumber(h.number), Folder.IN, go).exists()


async def _until(condition: Any, seconds: float = 30) -> None:
    # Polled: the service runs in a thread, and the counters have no event to await.
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _running_with_held_deliveries(
    tmp_path: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
    tls: Tls,
    service: tuple[str, Service],
    **settings: Any,
) -> AsyncIterator[tuple[Harness, Service]]:
    """A pipeline with its background worker running (concurrency 1, ``settings``) whose
    HTTPS service holds every delivery until ``state.hold`` is set; all stopped afterwards."""
    url, state = service
    state.hold = threading.Event()
    h = await _harness(
        tmp_path, url, sqlite_url, cast, ssh_public_key, tls, concurrency=1, **settings
    )
    worker = asyncio.create_task(h.pipeline.run())
    try:
        async with asyncio.timeout(90):
            yield h, state
    finally:
        state.hold.set()
        await h.pipeline.aclose(deadline=10)
        await worker
        await h.engine.dispose()


async def test_admission_holds_a_go_while_the_backlog_is_full(
    tmp_path: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
    tls: Tls,
    service: tuple[str, Service],
) -> None:
    """Concurrency 1, admission_backlog 2: set 1 is being delivered (the service holds its
    POST), set 2's GO is committed, set 3's GO waits uncommitted; when set 1 is confirmed it
    goes through, and all three sets are acknowledged."""
    async with _running_with_held_deliveries(
        tmp_path, sqlite_url, cast, ssh_public_key, tls, service,
        admission_backlog=2, admission_max_wait_seconds=60,
    ) as (h, state):  # fmt: skip
        assert state.hold is not None
        await h.send_set(seq="00001", parts=1)
        await _until(lambda: len(state.requests) == 1)
        second = await h.send_set(seq="00002", parts=1)
        assert _committed(h, second)
        third = asyncio.create_task(h.send_set(seq="00003", parts=1))
        await _until(lambda: h.pipeline.admissions_held == 1)
        await asyncio.sleep(0.5)
        assert not third.done()
        go3 = second.replace(".00002.", ".00003.")
        assert not _committed(h, go3)  # held before its commit: not in IN, no row
        state.hold.set()
        assert await third == go3
        await h.pipeline.wait_finished(3)
        assert len(h.acrfs()) == 3
        assert all(a.accepted for _, a in h.acrfs())
        assert h.pipeline.admissions_held == 1


async def test_admission_holds_a_go_at_most_the_max_wait(
    tmp_path: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
    tls: Tls,
    service: tuple[str, Service],
) -> None:
    """admission_backlog 1 and a 0.5 s maximum: while set 1's delivery hangs, set 2's GO is held
    about 0.5 s and then committed anyway (a slow pipeline never stalls senders for long)."""
    async with _running_with_held_deliveries(
        tmp_path, sqlite_url, cast, ssh_public_key, tls, service,
        admission_backlog=1, admission_max_wait_seconds=0.5,
    ) as (h, state):  # fmt: skip
        assert state.hold is not None
        await h.send_set(seq="00001", parts=1)
        await _until(lambda: len(state.requests) == 1)
        started = time.monotonic()
        second = await h.send_set(seq="00002", parts=1)
        held = time.monotonic() - started
        assert _committed(h, second)
        assert h.pipeline.admissions_held == 1
        assert len(state.requests) == 1  # set 1 still undelivered: the wait timed out
        assert held >= 0.5
        state.hold.set()
        await h.pipeline.wait_finished(2)
        assert len(h.acrfs()) == 2


async def test_sets_claimed_in_a_batch_wait_in_hand_and_are_handed_back_at_stop(
    tmp_path: Path,
    sqlite_url: str,
    cast: StandardPki,
    ssh_public_key: str,
    tls: Tls,
    service: tuple[str, Service],
) -> None:
    """Concurrency 2, four sets pending: DMFA 1 and 3 (their deliveries held), WECH 2 (a
    directory: the batch path, beside the per-set slots), DMFA 4. One intake claims the four:
    1 and 3 take the two per-set slots, 2 goes through a batch, 4 waits in hand (counted in the
    backlog). At stop, 4's claim is handed back unstarted while 1 and 3 finish."""
    url, state = service
    state.hold = threading.Event()
    h = await _harness(tmp_path, url, sqlite_url, cast, ssh_public_key, tls, concurrency=2)
    await h.send_set(seq="00001", parts=1)
    await h.send_set(app="WECH", seq="00002", parts=None)
    await h.send_set(seq="00003", parts=1)
    await h.send_set(seq="00004", parts=1)
    worker = asyncio.create_task(h.pipeline.run())
    try:
        async with asyncio.timeout(60):
            await _until(lambda: len(state.requests) == 2)  # sets 1 and 3 are being delivered
            await _until(lambda: len(h.acrfs()) == 1)  # set 2's, by the batch
            while (await _claims(h))["00002"]:  # noqa: ASYNC110 - its finish commits after its ACRF
                await asyncio.sleep(0.02)
            assert await _claims(h) == {"00001": True, "00002": False, "00003": True, "00004": True}
            assert h.pipeline.backlog() >= 3  # 1 and 3 in flight, 4 in hand
            stopping = asyncio.create_task(h.pipeline.aclose(deadline=30))
            await asyncio.sleep(0.2)
            state.hold.set()
            await stopping
            await worker
        assert len(state.requests) == 2  # set 4 was never started
        assert len(h.acrfs()) == 3
        assert await _claims(h) == dict.fromkeys(("00001", "00002", "00003", "00004"), False)
    finally:
        state.hold.set()
        await h.engine.dispose()


async def _claims(h: Harness) -> dict[str, bool]:
    """Each set's sequence number and whether it is claimed."""
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(SetRow.sequence, SetRow.claim_token))).all()
    return {sequence: token is not None for sequence, token in rows}
