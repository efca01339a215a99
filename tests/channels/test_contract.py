"""One contract for every channel: the same (action, path) table over SFTP, FTPS and HTTPS.

Each row is run against a fresh gateway of each channel, with the same starting spool: sender A
(``me``) has a return file in OUT; sender B (``other``) has a pending upload in IN and a return
file of its own in OUT. The row's client action must end with the gateway code the row names
(read from the reply text: asyncssh's status reason over SFTP, the FTP reply over FTPS; None is
success), and the spool must hold exactly what the row says afterwards: A's committed uploads, A's
return file (kept or removed), B's files untouched, and the refusals recorded for negative ACRFs.
The path attacks of the SFTP suite (SECURITY.md 4, 5) are rows like any other, so a path is
refused with the same code on every protocol.

Clients: asyncssh's SFTP client, the standard library's ``ftplib.FTP_TLS`` (explicit FTPS,
``PROT P``) in a worker thread, and aiohttp's client with sender A's client certificate over the
web API (:class:`WebDriver`: every path percent-encoded once, since HTTP cannot carry NUL, ``?``
or ``#`` raw; mkdir is a PUT to a folder path; the rename rows do not apply to the web, whose PUT
is atomic, and are skipped with that reason). All are real protocol clients; the tests of each
channel with OpenSSH ``sftp``, ``curl`` and ``lftp`` live beside this file.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import asyncssh
import pytest
import yarl

from gateway.core.codes import Rejection
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.registry.types import EnterpriseNumber, Principal, PrincipalKind, QualityId
from gateway.spool import Spool, place_return_file
from gateway.spool.folders import Folders, NamePolicy
from tests.channels.conftest import Env, StartGateway
from tests.channels.ftp_env import TODAY, FtpEnv, StartFtp, ftps_client
from tests.channels.spooled import committed_files, refusal_rows
from tests.channels.web_env import StartWeb, WebEnv

pytestmark = pytest.mark.timeout(120)

ACK = "FO.ACRF.999999.20260115.00001.R"  # in both senders' OUT
OTHERS_ACK = "FO.ACRF.999999.20260115.00002.R"  # only in B's OUT
_CODE = re.compile(r"\b([0-9]{3}): ")


def nm(kind: str, sender: str, *, env: str = "R", seq: str = "00001", app: str = "DMFA") -> str:
    """An upload name dated TODAY (GO has no part number)."""
    suffix = ".1" if kind == "GO" else ".1.1"
    return f"{kind}.{app}.{sender}.20260115.{seq}.{env}{suffix}"


def code_of(text: str) -> int:
    """The gateway code at the start of a refusal's text (after an FTP reply code, if any)."""
    found = _CODE.search(text)
    if found is None:
        raise AssertionError(f"no gateway code in {text!r}")
    return int(found.group(1))


# -- the drivers ---------------------------------------------------------------------------------


class Driver(Protocol):
    """A logged-in client of one channel; each call answers None/a value, or the gateway code."""

    async def put(self, path: str, data: bytes) -> int | None: ...
    async def get(self, path: str) -> bytes | int: ...
    async def remove(self, path: str) -> int | None: ...
    async def rename(self, source: str, target: str) -> int | None: ...
    async def mkdir(self, path: str) -> int | None: ...
    async def listdir(self, path: str) -> list[str] | int: ...


@dataclass
class SftpDriver:
    """asyncssh's SFTP client."""

    sftp: Any

    async def _call(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except asyncssh.SFTPError as exc:
            return code_of(exc.reason)

    async def put(self, path: str, data: bytes) -> int | None:
        async def put() -> None:
            async with self.sftp.open(path.encode(), "wb") as file:
                await file.write(data)

        result: int | None = await self._call(put())
        return result

    async def get(self, path: str) -> bytes | int:
        async def get() -> bytes:
            async with self.sftp.open(path.encode(), "rb") as file:
                return bytes(await file.read())

        result: bytes | int = await self._call(get())
        return result

    async def remove(self, path: str) -> int | None:
        result: int | None = await self._call(self.sftp.remove(path.encode()))
        return result

    async def rename(self, source: str, target: str) -> int | None:
        result: int | None = await self._call(self.sftp.rename(source.encode(), target.encode()))
        return result

    async def mkdir(self, path: str) -> int | None:
        result: int | None = await self._call(self.sftp.mkdir(path.encode()))
        return result

    async def listdir(self, path: str) -> list[str] | int:
        names = await self._call(self.sftp.listdir(path.encode()))
        if isinstance(names, int):
            return names
        return sorted(
            n.decode() if isinstance(n, bytes) else n
            for n in names
            if n not in {".", "..", b".", b".."}
        )


@dataclass
class FtpsDriver:
    """ftplib's explicit-FTPS client (blocking: every call runs in a worker thread)."""

    client: ftplib.FTP_TLS

    async def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(call)
        except ftplib.Error as exc:
            return code_of(str(exc))

    async def put(self, path: str, data: bytes) -> int | None:
        def put() -> None:
            self.client.storbinary(f"STOR {path}", io.BytesIO(data))

        result: int | None = await self._call(put)
        return result

    async def get(self, path: str) -> bytes | int:
        def get() -> bytes:
            chunks: list[bytes] = []
            self.client.retrbinary(f"RETR {path}", chunks.append)
            return b"".join(chunks)

        result: bytes | int = await self._call(get)
        return result

    async def remove(self, path: str) -> int | None:
        result = await self._call(lambda: self.client.delete(path))
        return result if isinstance(result, int) else None

    async def rename(self, source: str, target: str) -> int | None:
        result = await self._call(lambda: self.client.rename(source, target))
        return result if isinstance(result, int) else None

    async def mkdir(self, path: str) -> int | None:
        result = await self._call(lambda: self.client.mkd(path))
        return result if isinstance(result, int) else None

    async def listdir(self, path: str) -> list[str] | int:
        names = await self._call(lambda: self.client.nlst(path))
        if isinstance(names, int):
            return names
        return sorted(n.rsplit("/", 1)[-1] for n in names)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~/")


def url_path(path: str) -> str:
    """``path`` as the web driver sends it below ``/v1``: a relative path is taken from the root
    (HTTP has no working directory), and every byte but letters, digits, ``-_~`` and ``/`` is
    percent-encoded once, so that what HTTP cannot carry raw (NUL, controls, space, ``?``,
    ``#``, ``%``, non-ASCII) and dot segments (which clients would resolve) reach the server,
    which decodes once and hands the folder service the row's own path."""
    raw = path if path.startswith("/") else "/" + path
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in raw.encode())


@dataclass
class WebDriver:
    """aiohttp's client with sender A's client certificate, over the ``/v1/`` API."""

    NO_RENAME = "the web API has no rename: a PUT is atomic, so no temporary name needs one"

    http: aiohttp.ClientSession
    base: str

    def _url(self, path: str, *, folder: bool = False) -> yarl.URL:
        encoded = url_path(path)
        if folder and not encoded.endswith("/"):
            encoded += "/"
        return yarl.URL(self.base + encoded, encoded=True)

    async def _code(self, response: aiohttp.ClientResponse) -> int:
        body = await response.json(content_type=None)
        if not isinstance(body, dict) or not isinstance(body.get("code"), int):
            raise AssertionError(f"no gateway code in {response.status} {body!r}")
        return int(body["code"])

    async def put(self, path: str, data: bytes) -> int | None:
        async with self.http.put(self._url(path), data=data) as response:
            return None if response.status == 201 else await self._code(response)

    async def get(self, path: str) -> bytes | int:
        async with self.http.get(self._url(path)) as response:
            return await response.read() if response.status == 200 else await self._code(response)

    async def remove(self, path: str) -> int | None:
        async with self.http.delete(self._url(path)) as response:
            return None if response.status == 204 else await self._code(response)

    async def rename(self, source: str, target: str) -> int | None:
        pytest.skip(self.NO_RENAME)

    async def mkdir(self, path: str) -> int | None:
        """What the API does with a folder path: a PUT to it (refused like SFTP's mkdir)."""
        async with self.http.put(self._url(path, folder=True), data=b"") as response:
            return None if response.status == 201 else await self._code(response)

    async def listdir(self, path: str) -> list[str] | int:
        async with self.http.get(self._url(path, folder=True)) as response:
            if response.status != 200:
                return await self._code(response)
            body = await response.json()
        return sorted(entry["name"] for entry in body["entries"])


# -- one channel's world: a gateway, a driver logged in as A, and the spool it writes ----------


@dataclass
class World:
    """What a row runs against and checks afterwards."""

    channel: str
    driver: Driver
    spool: Spool
    me: str
    other: str
    seeded: list[str] = field(default_factory=list)

    def committed(self) -> list[str]:
        """Committed uploads (``sender/FOLDER/name``), temp area excluded."""
        return committed_files(self.spool.layout.state_dir)

    def out_files(self) -> list[str]:
        """Return files (``sender/FOLDER/name``)."""
        root = self.spool.layout.out_dir
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    async def refusals(self) -> list[tuple[str, str, int]]:
        """Rows of ``upload_refusals`` (folder, name, code)."""
        return await refusal_rows(self.spool)


def _principal(sender: str) -> Principal:
    return Principal(
        login=f"seed-{sender}",
        kind=PrincipalKind.technical,
        enterprise=EnterpriseNumber("0403170701"),
        quality=QualityId(1),
        sender=SenderNumber(sender),
        applications=frozenset({"DMFA", "WECH"}),
        must_change_password=False,
    )


async def seed(spool: Spool, me: str, other: str) -> None:
    """The starting spool: ACK in both OUTs, OTHERS_ACK in B's, B's pending FI in IN."""
    for sender in (me, other):
        place_return_file(spool.layout, SenderNumber(sender), Folder.OUT, ACK, b"<ack/>")
    place_return_file(spool.layout, SenderNumber(other), Folder.OUT, OTHERS_ACK, b"<b/>")
    folders = Folders(spool=spool, names=NamePolicy(today=lambda: TODAY))
    session = folders.open_session(
        principal=_principal(other),
        sender=SenderNumber(other),
        session_id="seed",
        channel="seed",
        log=_Quiet(),
    )
    upload = await session.open_upload(f"/IN/{nm('FI', other)}")
    assert not isinstance(upload, Rejection), upload
    assert await upload.write(b"<other/>") is None
    assert await upload.close() is None


class _Quiet:
    def info(self, *args: object, **kwargs: object) -> None:
        """Seeding logs nothing."""


@pytest.fixture(params=["sftp", "ftps", "web"])
async def world(
    request: pytest.FixtureRequest,
    start_gateway: StartGateway,
    start_web: StartWeb,
    start_ftp: StartFtp,
) -> AsyncIterator[World]:
    """A fresh gateway of the channel under test, seeded, with a client logged in as A.

    ``start_ftp`` comes last so that its teardown (the FTP drain) follows the FTPS client's
    close with no other fixture's teardown between: with one between, the drain sometimes
    wrote its goodbye on a connection asyncio had just closed (AttributeError in sslproto)."""
    if request.param == "web":
        web: WebEnv = await start_web()
        await seed(web.spool, web.a.number, web.b.number)
        context = ssl.create_default_context(cafile=str(web.server_ca))
        context.load_cert_chain(web.pki.a.cert, web.pki.a.key)
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(connector=connector) as http:
            driver = WebDriver(http, web.url)
            yield World("web", driver, web.spool, web.a.number, web.b.number)
        return
    if request.param == "sftp":
        env: Env = await start_gateway(today=TODAY)
        await seed(env.spool, env.a.number, env.b.number)
        async with await env.connect() as conn, conn.start_sftp_client() as sftp:
            yield World("sftp", SftpDriver(sftp), env.spool, env.a.number, env.b.number)
        return
    ftp: FtpEnv = await start_ftp()
    await seed(ftp.spool, ftp.a.number, ftp.b.number)
    client = await asyncio.to_thread(ftps_client, ftp)
    try:
        yield World("ftps", FtpsDriver(client), ftp.spool, ftp.a.number, ftp.b.number)
    finally:
        await asyncio.to_thread(client.close)


# -- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One action: what it does, the code it ends with, and what the spool holds after.

    Paths and names may use ``{me}``, ``{other}``, ``{fi}`` (A's FI name), ``{fi_t}``/``{fi_s}``
    (A's test and simulation FI), ``{b_fi}`` (B's pending FI)."""

    action: str
    args: tuple[str, ...]
    code: int | None
    stored: tuple[str, ...] = ()
    """A's committed uploads after (``FOLDER/name``)."""
    ack_kept: bool = True
    refused: tuple[tuple[str, str, int], ...] = ()
    listed: tuple[str, ...] | None = None
    read: bytes | None = None


def _rows() -> list[Any]:
    r = Row
    long_name = "A" * 256
    rows = {
        # uploads into the three IN folders
        "put-IN": r("put", ("/IN/{fi}",), None, stored=("IN/{fi}",)),
        "put-INTEST": r("put", ("/INTEST/{fi_t}",), None, stored=("INTEST/{fi_t}",)),
        "put-INTEST-S": r("put", ("/INTEST-S/{fi_s}",), None, stored=("INTEST-S/{fi_s}",)),
        "put-relative": r("put", ("IN/{fi}",), None, stored=("IN/{fi}",)),
        # refused names, each recorded for a negative ACRF
        "name-108": r("put", ("/IN/{b_fi}",), 108, refused=(("IN", "{b_fi}", 108),)),
        "name-154": r("put", ("/IN/{fi_dimn}",), 154, refused=(("IN", "{fi_dimn}", 154),)),
        "name-118": r("put", ("/INTEST/{fi}",), 118, refused=(("INTEST", "{fi}", 118),)),
        "name-119": r("put", ("/IN/{fi_t}",), 119, refused=(("IN", "{fi_t}", 119),)),
        "name-111": r("put", ("/IN/{fi_future}",), 111, refused=(("IN", "{fi_future}", 111),)),
        "name-129": r("put", ("/IN/{xx}",), 129, refused=(("IN", "{xx}", 129),)),
        "name-127": r("put", ("/IN/{fi_zero}",), 127, refused=(("IN", "{fi_zero}", 127),)),
        "exists-924": r("put-twice", ("/IN/{fi}",), 924, stored=("IN/{fi}",),
                        refused=(("IN", "{fi}", 924),)),
        # wrong folder, or no folder
        "put-OUT": r("put", ("/OUT/{fi}",), 923),
        "put-root": r("put", ("/{fi}",), 922),
        # path attacks (the SFTP suite's, and SECURITY.md 4 and 5)
        "dotdot-relative": r("put", ("../IN/{fi}",), 922),
        "dotdot-inside": r("put", ("/IN/../OUT/{fi}",), 922),
        "dotdot-twice": r("put", ("/IN/../../{fi}",), 922),
        "absolute-etc": r("put", ("/etc/{fi}",), 922),
        "double-slash": r("put", ("/IN//{fi}",), 922),
        "backslash": r("put", ("/IN\\..\\OUT\\{fi}",), 922),
        "percent-encoded": r("put", ("/IN/%2e%2e%2f{fi}",), 922),
        "double-encoded": r("put", ("/IN/%252e%252e%252f{fi}",), 922),
        "nfd": r("put", ("/IN/e\u0301",), 922),
        "nul": r("put", ("/IN/{fi}\x00.sh",), 922),
        "control": r("put", ("/IN/x\x1by",), 922),
        "bidi": r("put", ("/IN/{fi}\u202egp.sh",), 922),
        "zero-width": r("put", ("/IN/\u200b{fi}",), 922),
        "case-variant": r("put", ("/in/{fi}",), 922),
        "trailing-dot": r("put", ("/IN/{fi}.",), 922),
        "trailing-space": r("put", ("/IN/{fi} ",), 922),
        "device-name": r("put", ("/IN/CON",), 922),
        "device-name-ext": r("put", ("/IN/nul.txt",), 922),
        "too-long": r("put", (f"/IN/{long_name}",), 922),
        "subfolder": r("put", ("/IN/sub/{fi}",), 922),
        # downloads
        "get-own-out": r("get", ("/OUT/" + ACK,), None, read=b"<ack/>"),
        "get-others-out": r("get", ("/OUT/" + OTHERS_ACK,), 927),
        "get-in": r("get", ("/IN/{b_fi}",), 923),
        "get-etc-passwd": r("get", ("/etc/passwd",), 922),
        "get-traversal": r("get", ("/OUT/../../../etc/passwd",), 922),
        # removals
        "remove-own-out": r("remove", ("/OUT/" + ACK,), None, ack_kept=False),
        "remove-others-out": r("remove", ("/OUT/" + OTHERS_ACK,), 927),
        "remove-others-pending": r("remove", ("/IN/{b_fi}",), 927),
        "remove-missing": r("remove", ("/IN/{fi}",), 927),
        "remove-folder": r("remove", ("/OUT",), 923),
        "remove-own-pending": r("put-remove", ("/IN/{fi}",), None),
        # folders are fixed
        "mkdir-in-folder": r("mkdir", ("/IN/sub",), 923),
        "mkdir-root": r("mkdir", ("/NEW",), 922),
        # temporary names and renames
        "filepart-rename": r("put-rename", ("/IN/{fi}.filepart", "/IN/{fi}"), None,
                             stored=("IN/{fi}",)),
        "part-rename": r("put-rename", ("/IN/{fi}.part", "/IN/{fi}"), None,
                         stored=("IN/{fi}",)),
        "rename-across-folders": r("put-rename", ("/IN/{fi}.tmp", "/INTEST/{fi}"), 923),
        "rename-to-other-name": r("put-rename", ("/IN/{fi}.tmp", "/IN/{fi}.X"), 923),
        "rename-missing": r("rename", ("/IN/{fi}.filepart", "/IN/{fi}"), 927),
        "rename-into-out": r("rename", ("/OUT/" + ACK, "/IN/" + ACK), 923),
        # listings
        "list-root": r("list", ("/",), None, listed=tuple(sorted(f.value for f in Folder))),
        "list-in-hides-others": r("list", ("/IN",), None, listed=()),
        "list-out": r("list", ("/OUT",), None, listed=(ACK,)),
        "list-etc": r("list", ("/etc",), 922),
        "list-traversal": r("list", ("/IN/../..",), 922),
    }  # fmt: skip
    return [pytest.param(row, id=key) for key, row in rows.items()]


def _fill(text: str, world: World) -> str:
    me, other = world.me, world.other
    return text.format(
        me=me,
        other=other,
        fi=nm("FI", me),
        fi_t=nm("FI", me, env="T"),
        fi_s=nm("FI", me, env="S"),
        b_fi=nm("FI", other),
        fi_dimn=nm("FI", me, app="DIMN"),
        fi_future="FI.DMFA." + me + ".20270115.00001.R.1.1",
        fi_zero=nm("FI", me, seq="00000"),
        xx="XX.DMFA." + me + ".20260115.00001.R.1.1",
    )


async def _act(world: World, row: Row, args: list[str]) -> Any:
    driver = world.driver
    if "rename" in row.action and isinstance(driver, WebDriver):
        pytest.skip(WebDriver.NO_RENAME)
    body = b"<declaration/>"
    if row.action == "put":
        return await driver.put(args[0], body)
    if row.action == "put-twice":
        assert await driver.put(args[0], body) is None
        return await driver.put(args[0], body)
    if row.action == "put-remove":
        assert await driver.put(args[0], body) is None
        return await driver.remove(args[0])
    if row.action == "put-rename":
        assert await driver.put(args[0], body) is None
        return await driver.rename(args[0], args[1])
    if row.action == "get":
        return await driver.get(args[0])
    if row.action == "remove":
        return await driver.remove(args[0])
    if row.action == "rename":
        return await driver.rename(args[0], args[1])
    if row.action == "mkdir":
        return await driver.mkdir(args[0])
    if row.action == "list":
        return await driver.listdir(args[0])
    raise AssertionError(f"unknown action {row.action}")


@pytest.mark.parametrize("row", _rows())
async def test_contract(world: World, row: Row) -> None:
    """The row's action ends with its code on this channel, and the spool holds what it says."""
    args = [_fill(a, world) for a in row.args]
    result = await _act(world, row, args)

    if row.code is not None:
        assert result == row.code, (world.channel, result)
    elif row.listed is not None:
        assert result == list(row.listed), (world.channel, result)
    elif row.read is not None:
        assert result == row.read, (world.channel, result)
    else:
        assert result is None, (world.channel, result)

    me, other = world.me, world.other
    stored = sorted(f"{me}/{_fill(s, world)}" for s in row.stored)
    assert world.committed() == sorted([f"{other}/IN/{nm('FI', other)}", *stored])
    out = {f"{other}/OUT/{ACK}", f"{other}/OUT/{OTHERS_ACK}"}
    if row.ack_kept:
        out.add(f"{me}/OUT/{ACK}")
    assert world.out_files() == sorted(out)
    refused = [(f, _fill(n, world), c) for f, n, c in row.refused]
    assert await world.refusals() == refused
