"""The web channel with a real client: curl with a client certificate against a WebGateway on
loopback, port 0; a raw TLS socket where curl would send the body before the answer."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import sys
from pathlib import Path

import pytest

from gateway.channels.penalties import PenaltyPolicy
from gateway.channels.web_problems import CHALLENGE, PROBLEM_TYPE, STATUSES
from gateway.core.codes import Code
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.spool import place_return_file
from tests.channels.ftp_env import name, run
from tests.channels.web_env import Answer, StartWeb, WebEnv, curl
from tests.pki import Identity

pytestmark = pytest.mark.timeout(120)

ACK = "FO.ACRF.999999.20260115.00001.R"


def _problem(answer: Answer, status: int, code: int | None) -> dict[str, object]:
    assert answer.status == status, (answer.status, answer.body, answer.stderr)
    assert answer.headers["content-type"].startswith(PROBLEM_TYPE)
    body = answer.json()
    assert isinstance(body, dict)
    assert body["status"] == status
    assert body.get("code") == code
    if status == 401:  # RFC 9110 §11.6.1: a 401 carries a challenge
        assert answer.headers["www-authenticate"] == CHALLENGE
    else:
        assert "www-authenticate" not in answer.headers
    return body


def test_every_code_has_a_status() -> None:
    """The code -> HTTP status table holds every gateway code."""
    assert set(STATUSES) == set(Code)
    assert STATUSES[Code.PATH_REFUSED] == 422
    assert STATUSES[Code.NO_SUCH_FILE] == 404
    assert STATUSES[Code.INTERNAL_ERROR] == 500


async def test_put_list_get_delete(web: WebEnv, tmp_path: Path) -> None:
    """A sender PUTs an FI (201 with name, size, SHA-256), lists IN, reads and removes OUT."""
    fi = name("FI", web.a.number)
    data = b"<declaration>" + b"x" * 300_000 + b"</declaration>"
    (tmp_path / "fi").write_bytes(data)
    put = await curl(web, f"/IN/{fi}", "--upload-file", str(tmp_path / "fi"), folder=tmp_path)
    assert put.status == 201, (put.body, put.stderr)
    sha = hashlib.sha256(data).hexdigest()
    assert put.json() == {"name": fi, "size": len(data), "sha256": sha}
    assert await web.uploads() == [(web.a.number, "IN", fi, len(data), sha)]
    listed = await curl(web, "/IN/", folder=tmp_path)
    entries = listed.json()["entries"]  # type: ignore[index]
    assert [(e["name"], e["size"]) for e in entries] == [(fi, len(data))]
    place_return_file(web.spool.layout, SenderNumber(web.a.number), Folder.OUT, ACK, b"<ack/>")
    got = await curl(web, f"/OUT/{ACK}", folder=tmp_path)
    assert (got.status, got.body) == (200, b"<ack/>")
    gone = await curl(web, f"/OUT/{ACK}", "--request", "DELETE", folder=tmp_path)
    assert gone.status == 204
    _problem(await curl(web, f"/OUT/{ACK}", folder=tmp_path), 404, 927)
    removed = await curl(web, f"/IN/{fi}", "--request", "DELETE", folder=tmp_path)
    assert removed.status == 204
    assert server_banner_ok(got)


def server_banner_ok(answer: Answer) -> bool:
    """The Server header names no version."""
    return answer.headers.get("server") == "batch-gateway"


async def test_authentication(start_web: StartWeb, tmp_path: Path) -> None:
    """No certificate, an unregistered, revoked or expired one: 401 with a code; a self-signed
    registered one works; a blocked technical user: 403."""
    web = await start_web(penalties=PenaltyPolicy(min_seconds=60.0))  # six failures allowed
    _problem(await curl(web, "/IN/", cert=False, folder=tmp_path), 401, 153)
    stranger = await curl(web, "/IN/", identity=web.pki.stranger, folder=tmp_path)
    _problem(stranger, 401, 153)
    _problem(await curl(web, "/IN/", identity=web.pki.c, folder=tmp_path), 401, 904)
    _problem(await curl(web, "/IN/", identity=web.pki.d, folder=tmp_path), 401, 902)
    own = await curl(web, "/OUT/", identity=web.pki.b, folder=tmp_path)
    assert (own.status, own.json()) == (200, {"entries": [], "next": None})
    assert await web.registry.block_user(actor=None, login=web.b.login) is None
    _problem(await curl(web, "/OUT/", identity=web.pki.b, folder=tmp_path), 403, 923)
    failures = web.metrics.auth_failures_total
    assert failures.labels(channel="web", reason="no_certificate")._value.get() == 1
    assert failures.labels(channel="web", reason="revoked")._value.get() == 1
    assert failures.labels(channel="web", reason="expired")._value.get() == 1
    assert failures.labels(channel="web", reason="blocked")._value.get() == 1


async def test_unknown_ca_fails_the_handshake(web: WebEnv, tmp_path: Path) -> None:
    """A self-signed certificate registered nowhere chains to no anchor: no HTTP answer."""
    own = await curl(web, "/IN/", identity=web.pki.b, folder=tmp_path)
    assert own.status == 200
    other = tmp_path / "forged"
    other.mkdir()
    pki_run = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", str(other / "key.pem"), "-out", str(other / "cert.pem"),
               "-subj", "/CN=sender-b", "-days", "30"]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*pki_run, stderr=asyncio.subprocess.DEVNULL)
    assert await process.wait() == 0
    forged = Identity(name="forged", key=other / "key.pem", cert=other / "cert.pem")
    answer = await curl(web, "/IN/", identity=forged, folder=tmp_path)
    assert answer.returncode != 0
    assert answer.status == 0


async def test_refused_name_is_recorded(web: WebEnv, tmp_path: Path) -> None:
    """Another sender's number in the name: 422 with 108, recorded for a negative ACRF."""
    fi = name("FI", web.b.number)
    (tmp_path / "fi").write_bytes(b"<d/>")
    put = await curl(web, f"/IN/{fi}", "--upload-file", str(tmp_path / "fi"), folder=tmp_path)
    _problem(put, 422, 108)
    assert await web.refusals() == [("IN", fi, 108)]
    assert await web.uploads() == []


async def _raw(web: WebEnv, request: bytes) -> bytes:
    """Send ``request`` over TLS with A's certificate and read the answer's head."""
    context = ssl.create_default_context(cafile=str(web.server_ca))
    context.load_cert_chain(web.pki.a.cert, web.pki.a.key)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", web.gateway.port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(30):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_content_length_over_the_limit_is_refused_before_the_body(
    start_web: object,
) -> None:
    """Content-Length over max_file_bytes: 413 with 184 while no byte of the body was sent."""
    web = await start_web(max_file_bytes=1000)  # type: ignore[operator]
    fi = name("FI", web.a.number)
    head = await _raw(
        web,
        f"PUT /v1/IN/{fi} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode(),
    )
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"\r\nServer: batch-gateway\r\n" in head
    assert await web.uploads() == []
    assert await web.refusals() == [("IN", fi, 184)]  # answered by a negative ACRF too


async def test_refusals_before_the_body_are_recorded(start_web: StartWeb) -> None:
    """A temporary name (923) and a Content-Length over the limit (184), refused before the body
    is read, are recorded for a negative ACRF under the name the sender means, as SFTP and FTP
    record every refused upload; a name the checks refuse gets its own code; a path refusal
    (922) is answered only."""
    web = await start_web(max_file_bytes=1000)
    fi, fi2 = name("FI", web.a.number), name("FI", web.a.number, seq="00002")
    b_fi = name("FI", web.b.number)

    async def put(path: str, length: int) -> bytes:
        head = f"PUT /v1/{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
        return await _raw(web, head.encode())

    assert (await put(f"IN/{fi}.filepart", 4)).startswith(b"HTTP/1.1 403 ")
    assert (await put(f"IN/{fi2}", 5000)).startswith(b"HTTP/1.1 413 ")
    assert (await put(f"IN/{b_fi}.part", 4)).startswith(b"HTTP/1.1 422 ")  # 108 first
    assert (await put(f"IN/{b_fi}", 5000)).startswith(b"HTTP/1.1 422 ")
    assert (await put(f"IN/%252e%252e/{fi}", 5000)).startswith(b"HTTP/1.1 422 ")  # 922
    assert (await put(f"OUT/{fi}.filepart", 4)).startswith(b"HTTP/1.1 403 ")  # OUT: a path
    assert await web.refusals() == [
        ("IN", fi, 923),
        ("IN", fi2, 184),
        ("IN", b_fi, 108),
        ("IN", b_fi, 108),
    ]
    assert await web.uploads() == []


async def test_encoded_body_is_refused(web: WebEnv, tmp_path: Path) -> None:
    """Content-Encoding gzip: 415, nothing decompressed or stored."""
    fi = name("FI", web.a.number)
    (tmp_path / "fi").write_bytes(b"\x1f\x8b" + b"\0" * 100)
    put = await curl(web, f"/IN/{fi}", "--upload-file", str(tmp_path / "fi"),
                     "--header", "Content-Encoding: gzip", folder=tmp_path)  # fmt: skip
    _problem(put, 415, None)
    assert await web.uploads() == []


async def test_range_and_etag(web: WebEnv, tmp_path: Path) -> None:
    """A return file by range (206, Content-Range), beyond it (416), and If-None-Match (304)."""
    data = bytes(range(256)) * 4
    place_return_file(web.spool.layout, SenderNumber(web.a.number), Folder.OUT, ACK, data)
    whole = await curl(web, f"/OUT/{ACK}", folder=tmp_path)
    etag = whole.headers["etag"]
    part = await curl(web, f"/OUT/{ACK}", "--range", "10-19", folder=tmp_path)
    assert (part.status, part.body) == (206, data[10:20])
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = await curl(web, f"/OUT/{ACK}", "--header", "Range: bytes=-5", folder=tmp_path)
    assert (tail.status, tail.body) == (206, data[-5:])
    beyond = await curl(web, f"/OUT/{ACK}", "--range", "5000-", folder=tmp_path)
    assert beyond.status == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    same = await curl(web, f"/OUT/{ACK}", "--header", f"If-None-Match: {etag}", folder=tmp_path)
    assert (same.status, same.body) == (304, b"")
    assert same.headers["etag"] == etag


@pytest.mark.parametrize(
    ("field", "matches"),
    [
        ("{etag}", True),
        ('"other", {etag}', True),  # a list: any one of them
        ('"x,y" ,, W/{etag} ,', True),  # a comma inside a tag, empty elements, a weak tag
        ("*", True),  # any current representation
        ('"other"', False),
        ('W/"other", "{etag_inner}-"', False),
        ("{etag_inner}", False),  # not a quoted entity tag: the field is ignored
        ('*, "other"', False),  # * alone or not at all: ignored
    ],
)
async def test_if_none_match_is_rfc_9110(
    web: WebEnv, tmp_path: Path, field: str, matches: bool
) -> None:
    """If-None-Match on a GET (RFC 9110 §13.1.2): a list of entity tags compared weakly, or *,
    answers 304 with the ETag; no match, or a field that is not valid syntax, sends the file."""
    data = b"<ack/>"
    place_return_file(web.spool.layout, SenderNumber(web.a.number), Folder.OUT, ACK, data)
    etag = (await curl(web, f"/OUT/{ACK}", folder=tmp_path)).headers["etag"]
    value = field.format(etag=etag, etag_inner=etag.strip('"'))
    answer = await curl(web, f"/OUT/{ACK}", "--header", f"If-None-Match: {value}", folder=tmp_path)
    expected = (304, b"") if matches else (200, data)
    assert (answer.status, answer.body) == expected, value
    assert answer.headers["etag"] == etag


async def test_listing_pages_by_cursor(web: WebEnv, tmp_path: Path) -> None:
    """?limit= pages a listing; the cursor continues after the last name; a forged one: 400."""
    names = [f"FO.ACRF.999999.20260115.0000{i}.R" for i in range(1, 6)]
    for each in names:
        place_return_file(web.spool.layout, SenderNumber(web.a.number), Folder.OUT, each, b"a")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await curl(web, f"/OUT/{query}", folder=tmp_path)).json()
        assert isinstance(page, dict)
        seen += [e["name"] for e in page["entries"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == names
    _problem(await curl(web, "/OUT/?limit=0", folder=tmp_path), 400, None)
    _problem(await curl(web, "/OUT/?cursor=%ff%ff", folder=tmp_path), 400, None)


async def test_unknown_paths_and_methods(web: WebEnv, tmp_path: Path) -> None:
    """Outside /v1/: 404; POST on a file: 405; all as problems, Server without a version."""
    for path in ("/metrics", "/admin", "/", "/v2/IN/", "/v1"):
        answer = await curl(web, path, folder=tmp_path, root=True)
        _problem(answer, 404, None)
        assert server_banner_ok(answer)
    _problem(await curl(web, "/OUT/x", "--request", "POST", folder=tmp_path), 405, None)
    _problem(await curl(web, "/IN/%252e%252e", folder=tmp_path), 422, 922)


async def test_the_certificate_checked_is_the_one_the_peer_holds(
    web: WebEnv, tmp_path: Path
) -> None:
    """A's registered certificate presented with another key fails the handshake; with its own
    key the same client gets an answer (issue 12 §2)."""
    pytest.importorskip("tlslite")
    script = str(Path(__file__).with_name("forged_client.py"))
    a, stranger = web.pki.a, web.pki.stranger
    port = str(web.gateway.port)
    own = await run([sys.executable, script, port, str(a.cert), str(a.key)])
    assert own.stdout.strip() == "HTTP 200", own
    forged = await run([sys.executable, script, port, str(a.cert), str(stranger.key)])
    assert forged.stdout.startswith("TLS "), forged  # the gateway cut the handshake
    assert await web.uploads() == []
    failures = web.metrics.sessions_total.labels(channel="web")._value.get()
    assert failures == 1  # only the honest client got a session


SQLI = ["' OR '1'='1", "1; DROP TABLE uploads;--", '" OR ""="', "%27%20OR%201=1--", "\\x00'--"]


async def test_injection_payloads_are_refused_without_a_fault(web: WebEnv, tmp_path: Path) -> None:
    """SQL-injection payloads in the path, the query and the headers the channel reads: each
    one a 4xx problem, never a 5xx, and nothing stored; a header the channel does not read
    (X-Forwarded-For) changes nothing (SECURITY.md 1, 7)."""
    (tmp_path / "fi").write_bytes(b"<d/>")
    for payload in SQLI:
        quoted = "".join(f"%{b:02X}" for b in payload.encode())
        for args in (
            [f"/IN/{quoted}", "--upload-file", str(tmp_path / "fi")],
            [f"/OUT/{quoted}"],
            [f"/IN/{quoted}", "--request", "DELETE"],
            [f"/OUT/?cursor={quoted}"],
            [f"/OUT/?limit={quoted}"],
            [f"/OUT/{ACK}", "--header", f"Range: bytes={payload}"],
            [f"/OUT/{ACK}", "--header", f"If-None-Match: {payload}"],
        ):
            answer = await curl(web, args[0], *args[1:], folder=tmp_path)
            assert 400 <= answer.status < 500, (args, answer)
        ignored = await curl(web, "/OUT/", "--header", f"X-Forwarded-For: {payload}",
                             folder=tmp_path)  # fmt: skip
        assert (ignored.status, ignored.json()) == (200, {"entries": [], "next": None})
    assert await web.uploads() == []
