"""The service API with the real client: an online service's certificate posts notifications
with curl; the files land, signed, in the sender's OUT folder, once per idempotency key.

The gateway is a WebGateway on loopback over a real pipeline context (the files are signed by
the gateway key and placed as ``gateway publish`` places them); the sender fetches them over the
same listener with its own certificate, and ``openssl cms -verify`` checks the signature.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.core.names import Environment
from gateway.pipeline.desk import ServiceDesk
from gateway.pipeline.identity import dev_identity_paths
from gateway.pipeline.publish import request_digest
from gateway.pipeline.store import SetStore
from gateway.registry.catalogue import (
    CatalogueError,
    load_service_catalogue,
    load_service_clients,
    parse_service_catalogue,
)
from tests.channels.services_env import catalogue_with_clients, service_desk
from tests.channels.services_env import service_pki as service_pki
from tests.channels.web_env import Answer, StartWeb, WebEnv, curl
from tests.pki import Identity
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(120)

NOTI = b'<?xml version="1.0"?><Notification><ResultCode>1</ResultCode></Notification>\r\n'


@pytest.fixture
async def services(
    start_web: StartWeb, service_pki: tuple[Identity, Identity], tmp_path: Path
) -> WebEnv:
    """A web gateway whose catalogue declares the two services' certificates."""
    dmfa, dimn = service_pki
    path = catalogue_with_clients(tmp_path / "config", dmfa, dimn)
    clients = load_service_clients(load_service_catalogue(path))
    return await start_web(services=service_desk(clients))


async def _post(
    web: WebEnv,
    folder: Path,
    identity: Identity,
    *,
    application: str = "DMFA",
    key: str | None = "noti-1",
    query: str | None = None,
    content: bytes = NOTI,
    extra: tuple[str, ...] = (),
) -> Answer:
    body = folder / "notification.xml"
    body.write_bytes(content)
    headers = ["-H", f"Idempotency-Key: {key}"] if key is not None else []
    query = query if query is not None else f"sender={web.a.number}"
    return await curl(
        web,
        f"/services/{application}/notifications?{query}",
        "--data-binary", f"@{body}", "-H", "Content-Type: application/xml", *headers, *extra,
        identity=identity,
        folder=folder,
    )  # fmt: skip


def _code(answer: Answer, status: int, code: int | None) -> None:
    assert answer.status == status, (answer.status, answer.body, answer.stderr)
    body = answer.json()
    assert isinstance(body, dict)
    assert body.get("code") == code, body


async def _out_names(web: WebEnv, folder: Path, folder_name: str = "OUT") -> list[str]:
    listing = await curl(web, f"/{folder_name}/", folder=folder)
    assert listing.status == 200, listing.body
    body = listing.json()
    assert isinstance(body, dict)
    return sorted(str(entry["name"]) for entry in body["entries"])


def _verify(web: WebEnv, folder: Path, main: str, signature: str) -> None:
    """``openssl cms -verify`` accepts the FS over its FO with the gateway certificate."""
    der = folder / "signature.p7s"
    der.write_bytes(base64.b64decode(b"".join((folder / signature).read_bytes().split())))
    result = subprocess.run(
        [require_tool("openssl"), "cms", "-verify", "-binary", "-inform", "DER", "-in", str(der),
         "-content", str(folder / main), "-CAfile", str(dev_identity_paths(web.state_dir)[1]),
         "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


async def test_a_service_posts_a_notification_the_sender_fetches_signed(
    services: WebEnv, tmp_path: Path, service_pki: tuple[Identity, Identity]
) -> None:
    """201 with the three names; the sender lists them in OUT, fetches FO and FS with its own
    certificate, the FO is the content posted and the FS verifies with the gateway certificate
    (over SFTP: tests/e2e/test_quickstart.py)."""
    web = services
    answer = await _post(web, tmp_path, service_pki[0])
    assert answer.status == 201, (answer.body, answer.stderr)
    body = answer.json()
    assert isinstance(body, dict)
    main, signature, go = body["files"]
    assert main.startswith("FO.NOTI.999999.")
    assert main.endswith(".R")
    assert (signature, go) == ("FS" + main[2:], "GO" + main[2:])
    assert body["sender"] == web.a.number
    assert body["folder"] == "OUT"
    assert (body["replayed"], body["compressed"], body["size"]) == (False, False, len(NOTI))
    assert await _out_names(web, tmp_path) == sorted([main, signature, go])
    for name in (main, signature):
        got = await curl(web, f"/OUT/{name}", folder=tmp_path)
        assert got.status == 200
        (tmp_path / name).write_bytes(got.body)
    assert (tmp_path / main).read_bytes() == NOTI
    _verify(web, tmp_path, main, signature)


async def test_the_same_key_twice_places_one_set_and_answers_the_same_names(
    services: WebEnv, tmp_path: Path, service_pki: tuple[Identity, Identity]
) -> None:
    """A retry with the same key and request: 200, ``replayed``, the same names, no new file;
    the same key with other content: 409 (928), nothing placed."""
    web = services
    first = await _post(web, tmp_path, service_pki[0])
    again = await _post(web, tmp_path, service_pki[0])
    assert (first.status, again.status) == (201, 200)
    one, two = first.json(), again.json()
    assert isinstance(one, dict)
    assert isinstance(two, dict)
    assert two["files"] == one["files"]
    assert two["replayed"] is True
    assert len(await _out_names(web, tmp_path)) == 3
    other = await _post(web, tmp_path, service_pki[0], content=b"<other/>")
    _code(other, 409, 928)
    assert len(await _out_names(web, tmp_path)) == 3
    fresh = await _post(web, tmp_path, service_pki[0], key="noti-2")
    assert fresh.status == 201
    assert len(await _out_names(web, tmp_path)) == 6


async def test_a_retry_after_a_crash_between_reserving_and_placing_places_the_reserved_names(
    services: WebEnv, tmp_path: Path, service_pki: tuple[Identity, Identity]
) -> None:
    """A row reserved by a request that died before placing its files (simulated by reserving
    the key directly): the retry places exactly the reserved names, once, and answers 201."""
    web = services
    desk = web.gateway.desk
    assert isinstance(desk, ServiceDesk)
    store: SetStore = desk.ctx.store
    content_sha = hashlib.sha256(NOTI).hexdigest()
    name = "FO.NOTI.999999.20260115.00042.R"
    await store.reserve_notification(
        {
            "application": "DMFA",
            "idempotency_key": "crashed",
            "request_sha256": request_digest(web.a.number, Environment("R"), "NOTI", content_sha),
            "client": "x" * 64,
            "sender": web.a.number,
            "environment": "R",
            "kind": "NOTI",
            "folder": "OUT",
            "main_name": name,
            "signature_name": "FS" + name[2:],
            "go_name": "GO" + name[2:],
            "compressed": False,
            "size": len(NOTI),
            "content_sha256": content_sha,
            "created_at": datetime.now(UTC),
            "placed_at": None,
        }
    )
    assert await _out_names(web, tmp_path) == []
    retry = await _post(web, tmp_path, service_pki[0], key="crashed")
    assert retry.status == 201, retry.body
    body = retry.json()
    assert isinstance(body, dict)
    assert body["files"][0] == name
    assert await _out_names(web, tmp_path) == sorted([name, "FS" + name[2:], "GO" + name[2:]])
    replay = await _post(web, tmp_path, service_pki[0], key="crashed")
    assert replay.status == 200
    assert len(await _out_names(web, tmp_path)) == 3


async def test_a_service_may_post_only_for_its_own_applications(
    services: WebEnv, tmp_path: Path, service_pki: tuple[Identity, Identity]
) -> None:
    """DMFA's service posting for WECH: 403 (923); DIMN's service for DIMN, to a sender not
    subscribed to DIMN: 422 (154); nothing placed."""
    web = services
    dmfa, dimn = service_pki
    _code(await _post(web, tmp_path, dmfa, application="WECH"), 403, 923)
    _code(await _post(web, tmp_path, dimn, application="DIMN"), 422, 154)
    assert await _out_names(web, tmp_path) == []
    allowed = await _post(web, tmp_path, dimn, application="WECH", key="w-1")
    assert allowed.status == 201, allowed.body


async def test_certificates_stay_on_their_side(
    services: WebEnv, tmp_path: Path, service_pki: tuple[Identity, Identity]
) -> None:
    """A sender's certificate on the service API, and a service's on the sender API: 403
    (923); a certificate neither registered nor declared: 401."""
    web = services
    _code(await _post(web, tmp_path, web.pki.a), 403, 923)
    _code(await curl(web, "/OUT/", identity=service_pki[0], folder=tmp_path), 403, 923)
    _code(await _post(web, tmp_path, web.pki.stranger), 401, 153)


@pytest.mark.parametrize(
    ("query", "key", "extra", "status", "code"),
    [
        ("sender=12345", "k", (), 400, None),
        ("environment=R", "k", (), 400, None),
        ("sender={a}&environment=X", "k", (), 400, None),
        ("sender={a}&kind=noti", "k", (), 400, None),
        ("sender={a}", None, (), 400, None),
        ("sender={a}", "k" * 129, (), 400, None),
        ("sender={a}", "k", ("-H", "Content-Encoding: gzip"), 415, None),
        ("sender=000000", "k", (), 422, 108),
    ],
    ids=["short-sender", "no-sender", "environment", "kind", "no-key", "long-key", "gzip",
         "unknown-sender"],
)  # fmt: skip
async def test_malformed_requests_are_refused_with_nothing_placed(
    services: WebEnv,
    tmp_path: Path,
    service_pki: tuple[Identity, Identity],
    query: str,
    key: str | None,
    extra: tuple[str, ...],
    status: int,
    code: int | None,
) -> None:
    """Each malformed query or header: its status (400 without a code), nothing in OUT."""
    web = services
    answer = await _post(
        web, tmp_path, service_pki[0], key=key, query=query.format(a=web.a.number), extra=extra
    )
    _code(answer, status, code)
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert await _out_names(web, tmp_path) == []


async def test_a_large_notification_goes_compressed_and_one_over_the_limit_is_413(
    services: WebEnv, tmp_path: Path, service_pki: tuple[Identity, Identity]
) -> None:
    """Above compress_above (1 MiB) the set is CO + FS + GO; above max_notification_bytes
    (16 MiB) it is refused 413 (184) from its Content-Length."""
    web = services
    big = b"<Notification>" + b"x" * (1024 * 1024 + 1) + b"</Notification>"
    answer = await _post(web, tmp_path, service_pki[0], content=big, key="big")
    assert answer.status == 201, answer.body
    body = answer.json()
    assert isinstance(body, dict)
    assert body["compressed"] is True
    assert body["files"][0].startswith("CO.NOTI.")
    huge = b"x" * (16 * 1024 * 1024 + 1)
    _code(await _post(web, tmp_path, service_pki[0], content=huge, key="huge"), 413, 184)
    assert len(await _out_names(web, tmp_path)) == 3


def test_catalogue_clients_must_be_readable_certificates(tmp_path: Path) -> None:
    """A ``clients`` entry that is missing or not a certificate is a CatalogueError naming the
    entry; a non-list is refused when the catalogue is parsed."""
    entry = {"title": "t", "parts": True, "destination": {"kind": "directory", "path": "x"}}
    with pytest.raises(CatalogueError, match=r"services\.DMFA\.clients"):
        parse_service_catalogue({"services": {"DMFA": {**entry, "clients": "a.pem"}}})
    missing = parse_service_catalogue(
        {"services": {"DMFA": {**entry, "clients": ["missing.pem"]}}}, base=tmp_path
    )
    with pytest.raises(CatalogueError, match=r"services\.DMFA\.clients: cannot read"):
        load_service_clients(missing)
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = parse_service_catalogue(
        {"services": {"DMFA": {**entry, "clients": ["junk.pem"]}}}, base=tmp_path
    )
    with pytest.raises(CatalogueError, match="must hold one PEM certificate"):
        load_service_clients(junk)
