"""``POST /v1/sets`` and ``GET /v1/sets/{id}`` with the real client: curl ``-F`` parts named by
their declaration names, against a WebGateway on loopback; the spool's rows show what stayed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from gateway.channels.web_problems import PROBLEM_TYPE
from gateway.pipeline.tables import ReturnFileRow, SetRow
from gateway.pipeline.trace import SetTrace, trace
from tests.channels.ftp_env import TODAY
from tests.channels.web_env import Answer, WebEnv, curl

pytestmark = pytest.mark.timeout(120)

DAY = "20260115"  # tests.channels.ftp_env.TODAY


def _problem(answer: Answer, status: int, code: int | None) -> None:
    assert answer.status == status, (answer.status, answer.body, answer.stderr)
    assert answer.headers["content-type"].startswith(PROBLEM_TYPE)
    body = answer.json()
    assert isinstance(body, dict)
    assert (body["status"], body.get("code")) == (status, code)


def _stem(sender: str, seq: str = "00001", appl: str = "DMFA", env: str = "R") -> str:
    return f"{appl}.{sender}.{DAY}.{seq}.{env}"


def _parts(folder: Path, names: Sequence[str]) -> list[str]:
    """curl ``-F`` arguments, one file part per name, each with its own content."""
    args = []
    for index, name in enumerate(names):
        path = folder / f"part-{index}"
        path.write_bytes(f"<part {name}>".encode() + b"x" * 70_000)
        args += ["-F", f"file=@{path};filename={name}"]
    return args


async def _post(web: WebEnv, folder: Path, names: Sequence[str]) -> Answer:
    return await curl(web, "/sets", *_parts(folder, names), folder=folder)


def _two_part_set(sender: str, seq: str = "00001") -> list[str]:
    stem = _stem(sender, seq)
    return [f"FI.{stem}.2.1", f"FI.{stem}.2.2", f"FS.{stem}.2.1", f"FS.{stem}.2.2"]


async def test_a_two_part_set_in_one_request(web: WebEnv, tmp_path: Path) -> None:
    """FI 1/2, FI 2/2 and both FS are stored, then the GO the gateway named, empty and last."""
    names = _two_part_set(web.a.number)
    answer = await _post(web, tmp_path, names)
    assert answer.status == 202, (answer.body, answer.stderr)
    go = f"GO.{_stem(web.a.number)}.2"
    body = answer.json()
    assert isinstance(body, dict)
    assert (body["go"], body["ticket"]) == (go, None)
    assert [f["name"] for f in body["files"]] == names
    assert answer.headers["location"] == f"/v1/sets/{go}"
    rows = await web.uploads()
    assert [(r[1], r[2]) for r in rows] == [("IN", n) for n in [*names, go]]
    assert rows[-1][3] == 0
    assert [(r[2], r[3], r[4]) for r in rows[:4]] == [
        (f["name"], f["size"], f["sha256"]) for f in body["files"]
    ]
    state = await curl(web, f"/sets/{go}", folder=tmp_path)  # no pipeline yet: received
    assert state.status == 200
    assert state.json() == {
        "go": go, "ticket": None, "state": "received", "finished": False, "code": None,
        "reason": None, "acrf": [],
    }  # fmt: skip


async def test_a_drs_set_gets_a_go_without_parts(web: WebEnv, tmp_path: Path) -> None:
    """WECH names carry no parts suffix: nor does the GO; a T set goes to INTEST."""
    stem = _stem(web.a.number, appl="WECH", env="T")
    answer = await _post(web, tmp_path, [f"FI.{stem}", f"FS.{stem}"])
    assert answer.status == 202, (answer.body, answer.stderr)
    rows = await web.uploads()
    assert [(r[1], r[2]) for r in rows] == [
        ("INTEST", f"FI.{stem}"), ("INTEST", f"FS.{stem}"), ("INTEST", f"GO.{stem}"),
    ]  # fmt: skip


async def test_go_and_td_parts_are_refused(web: WebEnv, tmp_path: Path) -> None:
    """A GO part (107) or a TD part (923) is refused, and the parts before it are removed."""
    stem = _stem(web.a.number)
    go = await _post(web, tmp_path, [f"FI.{stem}.1.1", f"FS.{stem}.1.1", f"GO.{stem}.1"])
    _problem(go, 422, 107)
    td = await _post(web, tmp_path, [f"TD.{stem}.1", f"FI.{stem}.1.1"])
    _problem(td, 403, 923)
    assert await web.uploads() == []
    assert (await curl(web, "/IN/", folder=tmp_path)).json() == {"entries": [], "next": None}


async def test_parts_that_do_not_agree_leave_nothing(web: WebEnv, tmp_path: Path) -> None:
    """Another set's part (123, 124), a missing part (123), no FS (912), no FI (142): refused,
    whatever was stored by the request removed, no GO written."""
    a = web.a.number
    one, other = _stem(a), _stem(a, "00002")
    cases = [
        ([f"FI.{one}.2.1", f"FI.{other}.2.2"], 123),
        ([f"FI.{one}.2.1", f"FS.{one}.1.1"], 124),  # another number of parts
        ([f"FI.{one}.2.1", f"FS.{one}.2.1"], 123),  # FI 2/2 missing
        ([f"FI.{one}.2.1", f"FI.{one}.2.2"], 912),
        ([f"FS.{one}.1.1"], 142),
    ]
    for names, code in cases:
        _problem(await _post(web, tmp_path, names), 422, code)
        assert await web.uploads() == [], names
    (tmp_path / "empty").write_bytes(b"--x--\r\n")
    empty = await curl(web, "/sets", "-H", "Content-Type: multipart/form-data; boundary=x",
                       "--data-binary", f"@{tmp_path / 'empty'}", folder=tmp_path)  # fmt: skip
    _problem(empty, 422, 142)
    field = await curl(web, "/sets", "-F", "note=hello", folder=tmp_path)  # not a file part
    _problem(field, 400, None)
    assert await web.uploads() == []


async def test_a_part_the_folder_service_refuses(web: WebEnv, tmp_path: Path) -> None:
    """A part in another sender's name: 422 108 as for a PUT, recorded for a negative ACRF,
    and the part stored before it removed."""
    stem, foreign = _stem(web.a.number), _stem(web.b.number)
    answer = await _post(web, tmp_path, [f"FI.{stem}.1.1", f"FS.{foreign}.1.1"])
    _problem(answer, 422, 108)
    assert await web.refusals() == [("IN", f"FS.{foreign}.1.1", 108)]
    assert await web.uploads() == []


async def test_a_pending_file_of_the_set_is_refused(web: WebEnv, tmp_path: Path) -> None:
    """A file of the same set already pending (PUT before) would join the set unseen: 924."""
    stem = _stem(web.a.number)
    (tmp_path / "fi").write_bytes(b"<d/>")
    put = await curl(
        web, f"/IN/FI.{stem}.2.2", "--upload-file", str(tmp_path / "fi"), folder=tmp_path
    )
    assert put.status == 201
    _problem(await _post(web, tmp_path, [f"FI.{stem}.2.1", f"FS.{stem}.2.1"]), 409, 924)
    assert [r[2] for r in await web.uploads()] == [f"FI.{stem}.2.2"]


async def test_only_multipart_is_accepted(web: WebEnv, tmp_path: Path) -> None:
    """A body that is not multipart/form-data: 415; GET /sets and PUT /sets/x: 405."""
    plain = await curl(web, "/sets", "--data-binary", "x", folder=tmp_path)
    _problem(plain, 415, None)
    _problem(await curl(web, "/sets", folder=tmp_path), 405, None)
    put = await curl(web, "/sets/x", "--request", "PUT", "--data-binary", "x", folder=tmp_path)
    _problem(put, 405, None)


@dataclass(frozen=True)
class _Set:
    """A set as the pipeline's trace shows it (the fields :class:`SetRecord` reads)."""

    ticket: str
    sender: str
    trigger_name: str
    trigger: str = "GO"
    state: str = "done"
    finished: bool = True
    code: int | None = None
    reason: str | None = None
    acknowledgement: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Sets:
    """A fake pipeline: every set, of every sender, matching the query as trace does."""

    sets: list[_Set]

    async def __call__(self, query: str) -> list[_Set]:
        return [s for s in self.sets if query in (s.ticket, s.trigger_name)]


async def test_a_set_by_go_name_or_ticket_for_its_sender_only(web: WebEnv, tmp_path: Path) -> None:
    """A's set by GO name and by ticket, with its ACRF links; B's set is 404 (927) to A,
    as is an unknown ticket or a name that is not a GO."""
    a_go, b_go = f"GO.{_stem(web.a.number)}.1", f"GO.{_stem(web.b.number)}.1"
    ack = {"folder": "OUT", "name": "FO.ACRF.999999.20260115.00007.R", "purged_at": None}
    gone = {"folder": "OUT", "name": "FS.ACRF.999999.20260115.00007.R", "purged_at": "x"}
    web.gateway.sets = _Sets(
        [
            _Set("TICKETAAAAAA1", web.a.number, a_go, acknowledgement=[ack, gone]),
            _Set("TICKETBBBBBB1", web.b.number, b_go),
        ]
    )
    expected = {
        "go": a_go, "ticket": "TICKETAAAAAA1", "state": "done", "finished": True, "code": None,
        "reason": None,
        "acrf": [{"name": ack["name"], "href": f"/v1/OUT/{ack['name']}"}],
    }  # fmt: skip
    for key in (a_go, "TICKETAAAAAA1"):
        answer = await curl(web, f"/sets/{key}", folder=tmp_path)
        assert (answer.status, answer.json()) == (200, expected)
    for key in (b_go, "TICKETBBBBBB1", "TICKETCCCCCC1", f"FI.{_stem(web.a.number)}.1.1", "x"):
        _problem(await curl(web, f"/sets/{key}", folder=tmp_path), 404, 927)
    other = await curl(web, f"/sets/{b_go}", identity=web.pki.b, folder=tmp_path)
    assert other.status == 200


async def test_a_body_that_is_not_multipart(web: WebEnv, tmp_path: Path) -> None:
    """No boundary, or a body that does not follow it: 400, nothing stored."""
    (tmp_path / "junk").write_bytes(b"no boundary here\r\n")
    for kind in ("multipart/form-data", "multipart/form-data; boundary=zz"):
        answer = await curl(web, "/sets", "-H", f"Content-Type: {kind}",
                            "--data-binary", f"@{tmp_path / 'junk'}", folder=tmp_path)  # fmt: skip
        _problem(answer, 400, None)
    assert await web.uploads() == []


async def test_large_parts_stream_with_expect_continue(web: WebEnv, tmp_path: Path) -> None:
    """Parts of 3 MiB (curl asks 100-continue above 1 MiB) are stored whole."""
    names = _two_part_set(web.a.number)
    args = []
    for index, name in enumerate(names):
        path = tmp_path / f"big-{index}"
        path.write_bytes(bytes([index + 65]) * (3 * 1024 * 1024))
        args += ["-F", f"file=@{path};filename={name}"]
    answer = await curl(web, "/sets", *args, "-v", folder=tmp_path)
    assert answer.status == 202, (answer.body, answer.stderr[-2000:])
    assert "100 Continue" in answer.stderr
    assert [r[3] for r in await web.uploads()] == [3 * 1024 * 1024] * 4 + [0]


async def test_a_part_header_too_long(web: WebEnv, tmp_path: Path) -> None:
    """A part whose header line is over aiohttp's bound: 400, not a fault."""
    long = "x" * 20_000
    head = f'Content-Disposition: form-data; name="f"; filename="{long}"'
    body = f"--zz\r\n{head}\r\n\r\nab\r\n--zz--\r\n"
    (tmp_path / "long").write_bytes(body.encode())
    answer = await curl(web, "/sets", "-H", "Content-Type: multipart/form-data; boundary=zz",
                        "--data-binary", f"@{tmp_path / 'long'}", folder=tmp_path)  # fmt: skip
    _problem(answer, 400, None)
    assert await web.uploads() == []


async def test_the_pipeline_trace_is_a_set_lookup(web: WebEnv, tmp_path: Path) -> None:
    """The daemon's lookup, ``trace(engine, query).sets``, over real rows: A's set by ticket
    and GO name with its ACRF link; B's set stays 404 to A."""
    now = datetime.now(UTC)
    a_go, b_go = f"GO.{_stem(web.a.number)}.1", f"GO.{_stem(web.b.number)}.1"
    ack = "FO.ACRF.999999.20260115.00007.R"
    common = {
        "trigger": "GO",
        "folder": "IN",
        "application": "DMFA",
        "created_date": TODAY,
        "sequence": "00001",
        "environment": "R",
        "received_at": now,
        "updated_at": now,
    }
    async with web.spool._engine.begin() as conn:
        await conn.execute(
            insert(SetRow).values(
                ticket="TICKETAAAAAA1",
                trigger_name=a_go,
                sender=web.a.number,
                state="done",
                finished=True,
                **common,
            )
        )
        await conn.execute(
            insert(SetRow).values(
                ticket="TICKETBBBBBB1",
                trigger_name=b_go,
                sender=web.b.number,
                state="done",
                finished=True,
                **common,
            )
        )
        await conn.execute(insert(ReturnFileRow).values(
            sender=web.a.number, folder="OUT", name=ack, kind="acrf", ticket="TICKETAAAAAA1",
            subject=a_go, written_at=now))  # fmt: skip
    engine = web.spool._engine

    async def sets(query: str) -> list[SetTrace]:
        return (await trace(engine, query)).sets

    web.gateway.sets = sets
    for key in (a_go, "TICKETAAAAAA1"):
        answer = await curl(web, f"/sets/{key}", folder=tmp_path)
        assert answer.status == 200, answer.body
        body = answer.json()
        assert isinstance(body, dict)
        assert (body["ticket"], body["state"]) == ("TICKETAAAAAA1", "done")
        assert body["acrf"] == [{"name": ack, "href": f"/v1/OUT/{ack}"}]
    for key in (b_go, "TICKETBBBBBB1"):
        _problem(await curl(web, f"/sets/{key}", folder=tmp_path), 404, 927)


async def test_part_names_that_are_paths_or_temporary(web: WebEnv, tmp_path: Path) -> None:
    """A filename with a path (922) or a temporary suffix (923), as for a PUT: refused,
    the part before it removed."""
    stem = _stem(web.a.number)
    for bad, status, code in (
        (f"../INTEST/FS.{stem}.1.1", 422, 922),
        (f"FS.{stem}.1.1.filepart", 403, 923),
    ):
        args = _parts(tmp_path, [f"FI.{stem}.1.1"])
        (tmp_path / "bad").write_bytes(b"x")
        args += ["-F", f'file=@{tmp_path / "bad"};filename="{bad}"']
        _problem(await curl(web, "/sets", *args, folder=tmp_path), status, code)
        assert await web.uploads() == []
