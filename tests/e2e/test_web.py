"""The HTTPS web service end to end: real ``curl`` with a client certificate against
``gateway serve``.

Sender A's web-service channel holds a client certificate issued by the test root CA (the
daemon's trust folder). A signed 2-part set goes up with one ``PUT`` per file, its ACRF is found
in the ``OUT`` listing, fetched with ``GET`` and checked with ``openssl cms -verify``; a request
without a certificate gets 401 problem+json with a code.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Party, World
from tests.e2e.harness import acks_for, read_ack, wait_acks
from tests.e2e.test_ftp import verify_acrf
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(180)


def curl(
    world: World, party: Party, path: str, *args: str, cert: bool = True
) -> subprocess.CompletedProcess[str]:
    """``curl`` on ``https://127.0.0.1:port/v1`` + ``path`` with A's client certificate,
    verifying the gateway with its CA; the last line of stdout is the HTTP status."""
    ca = world.gateway.state_dir / "web" / "ca.pem"
    argv = [require_tool("curl"), "-sS", "--cacert", str(ca), "--write-out", "\n%{http_code}"]
    if cert:
        argv += ["--cert", str(world.web_client.cert), "--key", str(world.web_client.key)]
    argv += [*args, f"https://127.0.0.1:{world.gateway.web_port}/v1{path}"]
    return subprocess.run(
        argv, cwd=party.work, capture_output=True, text=True, timeout=120, check=False
    )


def status_and_body(result: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """The HTTP status curl wrote last, and the body before it."""
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def test_curl_puts_a_signed_two_part_set_and_gets_its_verified_acrf(world: World) -> None:
    """PUT FI 1/2, FI 2/2, their FS and the GO with curl --cert; the ACRF listed in OUT is
    fetched with GET, says ResultCode 1, and its signature verifies."""
    a = world.a
    names = world.write_set(a, seq=world.seq(), contents=[b"<web1/>", b"<web2/>"])
    for name in [*names.fis, *names.fss, names.go]:
        put = curl(world, a, f"/IN/{name}", "-T", name)
        status, body = status_and_body(put)
        assert status == 201, (put.stderr, body)
        stored = json.loads(body)
        assert stored["name"] == name
        assert stored["size"] == (a.work / name).stat().st_size
    (ack,) = [x for x in wait_acks(a.out_dir, acks_for(names.go)) if x.file_name == names.go]
    status, body = status_and_body(curl(world, a, "/OUT/"))
    assert status == 200, body
    assert ack.fo in json.dumps(json.loads(body))
    stem = ack.fo.removeprefix("FO")
    for kind in ("FO", "FS", "GO"):
        got = curl(world, a, f"/OUT/{kind}{stem}", "-o", f"{kind}{stem}")
        assert status_and_body(got)[0] == 200, got.stderr
    assert read_ack(a.work / ack.fo).result == 1
    verify_acrf(world, a.work, ack.fo)


def test_no_client_certificate_is_401_problem_json_with_a_code(world: World) -> None:
    """Without a certificate the listing is refused 401, as problem+json carrying a code."""
    result = curl(world, world.a, "/OUT/", cert=False)
    status, body = status_and_body(result)
    assert status == 401, body
    problem = json.loads(body)
    assert problem["status"] == 401
    assert isinstance(problem["code"], int)


def test_a_refused_name_is_422_with_its_code_and_a_negative_acrf(world: World) -> None:
    """An FI named with sender B's number: 422 with code 108, and a negative ACRF in A's OUT."""
    a = world.a
    bad = world.write_set(a, seq=world.seq(), contents=[b"<x/>"]).fis[0]
    other = bad.replace(f".{a.number}.", f".{world.b.number}.")
    Path(a.work / other).write_bytes(b"<not-mine/>")
    status, body = status_and_body(curl(world, a, f"/IN/{other}", "-T", other))
    assert status == 422, body
    assert json.loads(body)["code"] == 108
    acks = wait_acks(a.out_dir, acks_for(other))
    assert [(x.result, x.code) for x in acks if x.file_name == other] == [(0, 108)]


def test_post_sets_sends_a_whole_set_in_one_request_and_tracks_it(world: World) -> None:
    """One multipart POST /v1/sets carries FI 1/2, FI 2/2 and both FS; the gateway names the
    GO; GET /v1/sets/{go} follows the set to its ticket and ACRF link, whose FO verifies; the
    ticket finds the same set."""
    a = world.a
    names = world.write_set(a, seq=world.seq(), contents=[b"<s1/>", b"<s2/>"])
    parts = [
        arg for name in [*names.fis, *names.fss] for arg in ("-F", f"file=@{name};filename={name}")
    ]
    status, body = status_and_body(curl(world, a, "/sets", *parts))
    assert status == 202, body
    assert json.loads(body)["go"] == names.go
    wait_acks(a.out_dir, acks_for(names.go))
    status, body = status_and_body(curl(world, a, f"/sets/{names.go}"))
    assert status == 200, body
    state = json.loads(body)
    assert state["finished"], state
    assert state["ticket"], state
    fo = next(link for link in state["acrf"] if link["name"].startswith("FO."))
    got = curl(world, a, fo["href"].removeprefix("/v1"), "-o", fo["name"])
    assert status_and_body(got)[0] == 200, got.stderr
    fs_name = "FS" + fo["name"].removeprefix("FO")
    got = curl(world, a, f"/OUT/{fs_name}", "-o", fs_name)
    assert status_and_body(got)[0] == 200, got.stderr
    assert read_ack(a.work / fo["name"]).result == 1
    verify_acrf(world, a.work, fo["name"])
    by_ticket = json.loads(status_and_body(curl(world, a, f"/sets/{state['ticket']}"))[1])
    assert by_ticket == state
