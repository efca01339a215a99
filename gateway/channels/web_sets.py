"""The sender API's sets: ``POST /v1/sets`` sends a whole set in one request, ``GET
/v1/sets/{id}`` tells where it stands.

``POST /v1/sets`` takes one ``multipart/form-data`` body whose parts are files named by their
declaration names (``filename="FI.DMFA.<sender>.<date>.<seq>.<env>.<N>.<n>"``, ``FS...``):

- Each part is streamed, block by block, into the folder service's upload of that name in the
  IN folder of its environment (:meth:`FolderSession.open_upload`): the same name checks, limits,
  quota and codes as a PUT, and a name the folder service refuses is recorded for a negative
  ACRF exactly as a PUT's would be. A part is never held in memory whole. A filename is a bare
  name (a ``/`` or ``\\`` in it: 922) and never a temporary one (``NAME.filepart``: 923).
- Once the folder service has accepted a part's name, and before a byte of it is written, the
  name is judged against the set (the upload is dropped if refused): only FI and FS (a GO is refused
  with 107, the gateway writes it; a TD with 923, a cancellation is a PUT), all of one set (the
  first part's stem and number of parts: 123 for an FI, 124 for an FS of another set), and no
  pending file of that set already in the folder (924: it would join the set unseen).
- When the body ends, the stored parts are judged as the pipeline will judge them when the GO
  comes (:func:`gateway.core.sets.on_go`: 142, 123, 121, 124, 122, 912, 120, 134), then the
  gateway names the GO (``GO.<stem>.<N>``, or ``GO.<stem>`` for applications whose names carry
  no parts, :attr:`NamePolicy.parted`) and stores it, empty and last: that starts processing.
- **What a refusal leaves.** Multipart puts each part's name in the part's own headers, after
  the previous part's body: the names cannot all be read before the first part is stored. So a
  refusal (a later part's name, its content, the set judgement, the GO, the client vanishing,
  the gateway stopping) removes the parts this request stored, before the answer, and the GO is
  never written: nothing is processed, nothing stays pending. Between a part's storing and that
  removal, a concurrent listing of the folder may show it. If the removal itself is cut (the
  request cancelled twice at the deadline), the parts stay pending without a GO and expire as
  any set without GO does (130).
- The answer is 202 with ``{"go": name, "ticket": null, "files": [...]}`` and ``Location:
  /v1/sets/{GO name}``. The ticket is assigned by the pipeline after the GO is stored, so the
  set's id for the client is its GO name, unique per sender: ``GET /v1/sets/{GO name}`` works at
  once, and ``GET /v1/sets/{ticket}`` once the client has read the ticket there.

``GET /v1/sets/{GO name or ticket}`` answers the set's state from the pipeline, through the
injected :class:`SetLookup` (a channel does not import the pipeline), only for the requesting
sender: another sender's set, like an unknown one, is 404 with 927 (SECURITY.md 2). Once the
ACRF exists, ``acrf`` links to its files (``/v1/OUT/FO.ACRF...``). A GO stored but not yet taken
by the pipeline answers ``"state": "received"`` with no ticket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import BodyPartReader, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError

from gateway.channels.web_files import IDENTITY, JSON
from gateway.channels.web_problems import problem, refusal
from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Folder, final_name
from gateway.core.names import FileName, Kind, parse_upload_name, printable
from gateway.core.sets import CompleteSet, PendingSet, UploadedFile, add_file, on_go
from gateway.spool.folders import FolderSession, NamePolicy

if TYPE_CHECKING:
    from gateway.channels.web_config import WebConfig

SETS = b"/sets"
_TICKET = re.compile(r"[0-9A-Z]{13}")


class SetRecord(Protocol):
    """What the channel reads of one set the pipeline holds (``gateway.pipeline.trace.SetTrace``
    has this shape)."""

    @property
    def ticket(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def trigger(self) -> str: ...
    @property
    def trigger_name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def finished(self) -> bool: ...
    @property
    def code(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def acknowledgement(self) -> Sequence[Mapping[str, Any]]: ...


SetLookup = Callable[[str], Awaitable[Sequence[SetRecord]]]
"""The sets a ticket or a GO name finds, of any sender (the channel keeps the requester's):
the daemon passes ``(await gateway.pipeline.trace.trace(engine, query)).sets``."""


def is_sets(path: bytes) -> bool:
    """Whether a ``/v1`` target belongs to the sets API (``/sets`` or ``/sets/...``)."""
    return path == SETS or path.startswith(SETS + b"/")


@dataclass(frozen=True, slots=True)
class _Stored:
    folder: Folder
    name: FileName
    size: int
    sha256: str

    def as_json(self) -> dict[str, object]:
        return {"name": str(self.name), "size": self.size, "sha256": self.sha256}


class _Refused(Exception):
    """A set refused mid-request: its answer (internal control flow of :func:`post_set`)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _malformed() -> _Refused:
    """aiohttp's multipart reader raises ValueError on a body it cannot read."""
    return _Refused(problem(400, "the body is not valid multipart/form-data"))


def _parse(name: str, names: NamePolicy) -> FileName | Rejection:
    return parse_upload_name(
        name,
        today=names.today(),
        max_age_days=names.max_age_days,
        max_parts=names.max_parts,
        parted=names.parted,
    )


def _judge_part(parsed: FileName, first: FileName | None) -> Rejection | None:
    """Refusals of a part's name within a posted set (see the module docstring)."""
    shown = printable(str(parsed), 64)
    if parsed.kind is Kind.GO:
        return reject(
            Code.GO_NAME_INVALID,
            f"{shown}: the gateway names and writes the GO of a posted set; send FI and FS only",
        )
    if parsed.kind is Kind.TD:
        return reject(
            Code.OPERATION_NOT_PERMITTED,
            f"{shown}: a TD cancels a pending set; PUT it, do not post it as a set",
        )
    if first is not None and (first.set_key != parsed.set_key or first.parts != parsed.parts):
        code = Code.FI_NUMBERING_WRONG if parsed.kind is Kind.FI else Code.FS_NUMBERING_WRONG
        return reject(
            code, f"{shown} is not of the set of {printable(str(first), 64)}: one set a request"
        )
    return None


class SetPost:
    """One ``POST /v1/sets``: the parts stored so far, withdrawn unless the GO is written."""

    def __init__(
        self, request: web.BaseRequest, session: FolderSession, config: WebConfig, names: NamePolicy
    ) -> None:
        self.request = request
        self.session = session
        self.config = config
        self.names = names
        self.stored: list[_Stored] = []
        self.first: FileName | None = None

    async def run(self) -> web.StreamResponse:
        """Store the parts, judge the set, write the GO; 202, or a refusal with nothing left."""
        request = self.request
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in IDENTITY:
            return problem(415, "Content-Encoding is not supported: send the set as it is")
        if request.content_type != "multipart/form-data":
            return problem(415, "a set is posted as multipart/form-data, one file part a file")
        expect = request.headers.get("Expect", "")
        if request.version == HttpVersion11 and expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        done = False
        try:
            go = await self._store_all()
            done = True
        except _Refused as refused:
            refused.response.force_close()  # the rest of the body stays unread
            return refused.response
        finally:
            if not done:
                await self._withdraw()
        self.session.log.info("set.posted", go=go, files=len(self.stored))
        body = {"go": go, "ticket": None, "files": [s.as_json() for s in self.stored]}
        return web.Response(
            status=202,
            body=json.dumps(body).encode(),
            content_type=JSON,
            headers={"Location": f"/v1/sets/{go}"},
        )

    async def _store_all(self) -> str:
        most = 2 * self.names.max_parts
        try:
            reader = await self.request.multipart()
        except ValueError as error:  # no boundary, or one too long
            raise _malformed() from error
        while True:
            try:
                part = await reader.next()
            except (ValueError, HttpProcessingError) as error:  # not the boundary; a bad header
                raise _malformed() from error
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or not part.filename:
                raise _Refused(problem(400, "every part of a set is a file named by its name"))
            if len(self.stored) >= most:
                rejection = reject(
                    Code.PARTS_COUNT_TOO_HIGH, f"a set holds at most {most} FI and FS files"
                )
                raise _Refused(refusal(rejection))
            await self._store_part(part, part.filename)
        return await self._close_set()

    async def _store_part(self, part: BodyPartReader, name: str) -> None:
        if "/" in name or "\\" in name:  # a name, never a path into another folder
            raise _Refused(refusal(reject(Code.PATH_REFUSED, "a part's filename is a bare name")))
        if final_name(name) != name:  # as for a PUT: nothing to rename after
            rejection = reject(
                Code.OPERATION_NOT_PERMITTED,
                f"{printable(name, 64)}: temporary names are for SFTP and FTP; "
                "name each part by its own name",
            )
            raise _Refused(refusal(rejection))
        parsed = _parse(name, self.names)
        # The name as a PUT's first (its codes, recorded for a negative ACRF), then in the set.
        folder = (
            Folder.inbound_for(parsed.environment) if isinstance(parsed, FileName) else Folder.IN
        )
        upload = await self.session.open_upload(f"/{folder.value}/{name}")
        if isinstance(upload, Rejection):
            raise _Refused(refusal(upload))
        if not isinstance(parsed, FileName):  # pragma: no cover  (open_upload checks more)
            upload.abort()
            raise _Refused(refusal(reject(Code.INTERNAL_ERROR)))
        try:
            judged = _judge_part(parsed, self.first)
            if judged is not None:
                raise _Refused(refusal(judged))
            if self.first is None:
                self.first = parsed
                await self._check_nothing_pending(folder, parsed)
            while True:
                try:
                    block = await part.read_chunk(self.config.block_size)
                except ValueError as error:
                    raise _malformed() from error
                if not block:
                    break
                failed = await upload.write(block)
                if failed is not None:
                    raise _Refused(refusal(failed))
            closed = await upload.close()
        finally:
            upload.abort()  # a no-op once closed
        if closed is not None:
            raise _Refused(refusal(closed))
        stored = upload.stored
        if stored is None:  # pragma: no cover  (no temporary name: close() stores or refuses)
            raise _Refused(refusal(reject(Code.INTERNAL_ERROR)))
        self.stored.append(_Stored(folder, parsed, stored.size, stored.sha256))

    async def _check_nothing_pending(self, folder: Folder, first: FileName) -> None:
        listing = self.session.listing(f"/{folder.value}")
        if isinstance(listing, Rejection):
            raise _Refused(refusal(listing))
        try:
            while entries := await listing.read():  # a chunk at a time (SECURITY.md 14)
                for entry in entries:
                    other = _parse(entry.name, self.names)
                    if isinstance(other, FileName) and other.set_key == first.set_key:
                        rejection = reject(
                            Code.FILE_EXISTS,
                            f"{entry.name} of this set is already pending in {folder.value}: "
                            "remove it, or send the set with another sequence number",
                        )
                        raise _Refused(refusal(rejection))
        finally:
            listing.close()

    async def _close_set(self) -> str:
        now = datetime.now(UTC)
        state: PendingSet | None = None
        for stored in self.stored:
            added = add_file(
                state,
                UploadedFile(
                    name=stored.name, size=stored.size, sha256=bytes.fromhex(stored.sha256)
                ),
                now=now,
            )
            if isinstance(added, Rejection):  # pragma: no cover  (the folder service says 924)
                raise _Refused(refusal(added))
            state = added
        first = self.first
        if first is None:
            raise _Refused(
                refusal(reject(Code.NO_DECLARATION_FILE, "the request holds no FI part"))
            )
        go = FileName(
            kind=Kind.GO,
            application=first.application,
            sender=first.sender,
            date=first.date,
            sequence=first.sequence,
            environment=first.environment,
            parts=first.parts,
        )
        judged = on_go(state, go, now=now)
        if not isinstance(judged, CompleteSet):
            raise _Refused(refusal(judged.rejection))
        folder = Folder.inbound_for(go.environment)
        upload = await self.session.open_upload(f"/{folder.value}/{go}")
        if isinstance(upload, Rejection):
            raise _Refused(refusal(upload))
        try:
            closed = await upload.close()
        finally:
            upload.abort()
        if closed is not None:
            raise _Refused(refusal(closed))
        return str(go)

    async def _withdraw(self) -> None:
        """Remove the parts this request stored (its refusal, or its end without a GO)."""
        removed = []
        while self.stored:
            stored = self.stored.pop()
            await self.session.remove(f"/{stored.folder.value}/{stored.name}")
            removed.append(str(stored.name))
        if removed:
            self.session.log.info("set.withdrawn", names=removed)


async def post_set(
    request: web.BaseRequest, session: FolderSession, config: WebConfig, names: NamePolicy
) -> web.StreamResponse:
    """``POST /v1/sets`` (see the module docstring)."""
    return await SetPost(request, session, config, names).run()


def _unknown(key: str) -> web.Response:
    return refusal(reject(Code.NO_SUCH_FILE, f"no such set: {printable(key, 64)}"))


async def get_set(
    session: FolderSession, key: str, names: NamePolicy, sets: SetLookup | None
) -> web.StreamResponse:
    """``GET /v1/sets/{GO name or ticket}``: this sender's set, or 404 (927)."""
    parsed = _parse(key, names)
    is_go = isinstance(parsed, FileName) and parsed.kind is Kind.GO
    if not is_go and _TICKET.fullmatch(key) is None:
        return _unknown(key)
    found: SetRecord | None = None
    if sets is not None:
        for record in await sets(key):
            if record.sender != session.sender:
                continue  # tenant isolation: the same 404 as an unknown set
            if record.ticket == key or (record.trigger == "GO" and record.trigger_name == key):
                found = record  # the last (a resent GO name: the newest set)
    if found is not None:
        acrf = [
            {"name": ack["name"], "href": f"/v1/{ack['folder']}/{ack['name']}"}
            for ack in found.acknowledgement
            if ack.get("purged_at") is None
        ]
        body: dict[str, object] = {
            "go": found.trigger_name,
            "ticket": found.ticket,
            "state": found.state,
            "finished": found.finished,
            "code": found.code,
            "reason": found.reason,
            "acrf": acrf,
        }
        return web.Response(body=json.dumps(body).encode(), content_type=JSON)
    if isinstance(parsed, FileName) and is_go and parsed.sender == session.sender:
        folder = Folder.inbound_for(parsed.environment)
        entry = await session.stat(f"/{folder.value}/{key}")
        if not isinstance(entry, Rejection):
            body = {
                "go": key,
                "ticket": None,
                "state": "received",
                "finished": False,
                "code": None,
                "reason": None,
                "acrf": [],
            }
            return web.Response(body=json.dumps(body).encode(), content_type=JSON)
    return _unknown(key)


async def sets_api(
    request: web.BaseRequest,
    session: FolderSession,
    path: bytes,
    *,
    config: WebConfig,
    names: NamePolicy,
    sets: SetLookup | None,
) -> web.StreamResponse:
    """Route ``/sets`` and ``/sets/{id}``: POST the first, GET (or HEAD) the second, OPTIONS
    both; else 405."""
    allowed = ("POST", "OPTIONS") if path == SETS else ("GET", "HEAD", "OPTIONS")
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={"Allow": ", ".join(allowed)})
    if request.method not in allowed:
        return problem(405, f"{request.method} is not allowed here",
                       headers={"Allow": ", ".join(allowed)})  # fmt: skip
    if path == SETS:
        return await post_set(request, session, config, names)
    key = path[len(SETS) + 1 :].decode("utf-8", "replace")
    return await get_set(session, key, names, sets)
