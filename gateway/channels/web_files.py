"""The sender API's file operations: each one a folder-service call and its HTTP answer.

``PUT /v1/{folder}/{name}`` streams the body in blocks into the upload (never the whole body in
memory; the folder service hashes and bounds it as it is written), ``GET /v1/{folder}/`` lists,
``GET /v1/{folder}/{name}`` downloads a return file (``ETag``, one ``Range``), ``DELETE`` removes
what SFTP may remove. Every refusal is the folder service's :class:`Rejection`, answered through
:mod:`gateway.channels.web_problems`. A PUT is atomic: the upload is committed when the body is
complete, so the client temporary names of SFTP and FTP (``NAME.filepart``) have no use here and
are refused (923); an interrupted body leaves nothing.

Every refused upload is recorded for a negative ACRF, as over SFTP and FTP, including the two a
PUT refuses before its body is read: a ``Content-Length`` over the limit (413, 184) and a
temporary name (403, 923). The upload is opened for them as for any other, so its name gets the
checks every channel makes (a name they refuse is answered and recorded with its own code, and
a temporary name is recorded under the name it stands for), then dropped unwritten and the
refusal recorded. Path refusals (922, and 923 for a folder the operation is not allowed in) are
answered only, as over SFTP and FTP: no file name the sender could mean is known.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.http import HttpVersion11

from gateway.channels.web_paths import (
    Target,
    decode_cursor,
    encode_cursor,
    parse_limit,
    parse_range,
)
from gateway.channels.web_problems import SERVER, problem, refusal
from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Operation, VPath, final_name
from gateway.spool.folders import Entry, FolderSession

if TYPE_CHECKING:
    from gateway.channels.web_config import WebConfig

JSON = "application/json"

IDENTITY = frozenset({"", "identity"})

# One element of an If-None-Match list (RFC 9110 §5.6.1, §8.8.3): optional whitespace, an
# entity tag (weak or not; etagc may hold a comma, so the list is scanned, not split), or
# nothing (empty elements are allowed), then a comma or the end.
_TAG_ELEMENT = re.compile(r'[ \t]*(?:(?:W/)?("[\x21\x23-\x7e\x80-\U0010ffff]*")[ \t]*)?(?:,|\Z)')


def none_match(fields: list[str], etag: str) -> bool:
    """Whether ``If-None-Match`` (every field line of it, ``fields``) matches ``etag``, so that a
    GET is answered 304 (RFC 9110 §13.1.2): ``*``, or a list of entity tags one of which equals
    ``etag`` by weak comparison (``W/`` ignored on both sides, §8.8.3.2). A field that is not
    valid syntax is ignored, as if absent: the file is sent rather than a 304 the client may
    not have meant."""
    field = ", ".join(fields).strip()
    if not field:
        return False
    if field == "*":
        return True
    opaque = etag.removeprefix("W/")
    found, pos = False, 0
    while pos < len(field):
        element = _TAG_ELEMENT.match(field, pos)
        if element is None:
            return False
        found = found or element.group(1) == opaque
        pos = element.end()
    return found


def encoding_refusal(request: web.BaseRequest) -> web.Response | None:
    """An encoding the gateway does not decode: 415 (never decompressed: SECURITY.md 14)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in IDENTITY:
        return problem(415, "Content-Encoding is not supported: send the file as it is")
    return None


def length_rejection(request: web.BaseRequest, config: WebConfig) -> Rejection | None:
    """A ``Content-Length`` over ``max_body``: 184, before a byte of the body is read."""
    length = request.content_length
    if length is not None and length > config.max_body:
        return reject(Code.FILE_TOO_LARGE, f"{length} bytes is over the limit of {config.max_body}")
    return None


async def _refuse_unread(
    session: FolderSession, vpath: VPath, rejection: Rejection
) -> web.Response:
    """Refuse a PUT before its body is read, recorded for a negative ACRF (see the module): the
    upload is opened, so its name is checked as on every channel, and dropped unwritten."""
    upload = await session.open_upload(vpath)
    if isinstance(upload, Rejection):  # its name, its folder's quota, a stop: answered as such
        response = refusal(upload)
    else:
        upload.abort()
        response = refusal(await session.refuse_upload(upload.folder, upload.name, rejection))
    response.force_close()  # the body stays unread
    return response


async def put(
    request: web.BaseRequest, session: FolderSession, target: Target, config: WebConfig
) -> web.StreamResponse:
    """Store the body under the target's name; 201 with the stored name, size and SHA-256."""
    encoded = encoding_refusal(request)
    if encoded is not None:
        return encoded
    if target.folder:  # a folder: what SFTP's mkdir gets
        vpath = session.resolve(target.path, Operation.MKDIR)
        return refusal(vpath if isinstance(vpath, Rejection) else reject(Code.PATH_REFUSED))
    vpath = session.resolve(target.path, Operation.CREATE)
    if isinstance(vpath, Rejection):  # a path refusal: answered, not recorded (module)
        return refusal(vpath)
    early = length_rejection(request, config)
    if early is None and vpath.name is not None and final_name(vpath.name) != vpath.name:
        early = reject(
            Code.OPERATION_NOT_PERMITTED,
            f"{vpath.name}: temporary names are for SFTP and FTP; a PUT is atomic, "
            "send the file under its own name",
        )
    if early is not None:
        return await _refuse_unread(session, vpath, early)
    upload = await session.open_upload(vpath)  # resolved above: not parsed twice
    if isinstance(upload, Rejection):
        return refusal(upload)
    expect = request.headers.get("Expect", "")
    if request.version == HttpVersion11 and expect.lower() == "100-continue":
        # Checked and opened: now the client may send the body (RFC 9110 §10.1.1).
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        while True:
            block = await request.content.read(config.block_size)
            if not block:
                break
            failed = await upload.write(block)
            if failed is not None:
                upload.abort()
                response = refusal(failed)
                response.force_close()  # the rest of the body stays unread
                return response
        expected = request.content_length
        if expected is not None and upload.size != expected:  # the body ended early
            upload.abort()
            raise ConnectionError("the request body ended before its Content-Length")
        closed = await upload.close()
    finally:
        upload.abort()  # a no-op once closed; the client vanished mid-body otherwise
    if closed is not None:
        return refusal(closed)
    stored = upload.stored
    if stored is None:  # pragma: no cover  (no temporary name: close() stores or refuses)
        return refusal(reject(Code.INTERNAL_ERROR))
    body = {"name": stored.name, "size": stored.size, "sha256": stored.sha256}
    return web.Response(
        status=201,
        body=json.dumps(body).encode(),
        content_type=JSON,
        headers={"Location": f"/v1/{stored.folder.value}/{stored.name}"},
    )


def _entry(entry: Entry) -> dict[str, object]:
    if entry.is_folder:
        return {"name": entry.name, "folder": True}
    return {"name": entry.name, "size": entry.size, "mtime": round(entry.mtime, 3)}


async def listing(
    request: web.BaseRequest, session: FolderSession, target: Target, config: WebConfig
) -> web.StreamResponse:
    """A page of a folder's entries (sorted by name) and the cursor of the next one: the
    folder service keeps only the page in memory, whatever the folder holds (SECURITY.md 14)."""
    limit = parse_limit(request.query.get("limit"), config.list_limit)
    if limit is None:
        return problem(400, f"limit must be a whole number from 1 to {config.list_limit}")
    after: str | None = None
    cursor = request.query.get("cursor")
    if cursor is not None:
        after = decode_cursor(cursor)
        if after is None:
            return problem(400, "cursor is not one the gateway gave")
    page = await session.page(target.path, after=after, limit=limit)
    if isinstance(page, Rejection):
        return refusal(page)
    body = {
        "entries": [_entry(e) for e in page.entries],
        "next": encode_cursor(page.next_after) if page.next_after is not None else None,
    }
    return web.Response(body=json.dumps(body).encode(), content_type=JSON)


async def download(
    request: web.BaseRequest, session: FolderSession, target: Target, config: WebConfig
) -> web.StreamResponse:
    """A return file, whole or one range, with its ``ETag``."""
    opened = await session.open_return(target.path)
    if isinstance(opened, Rejection):
        return refusal(opened)
    try:
        # Return files are written once under a unique name and never rewritten: size and
        # modification time tell a change apart without reading the file.
        etag = f'"{opened.size:x}-{int(opened.mtime * 1_000_000):x}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Server": SERVER}
        if none_match(request.headers.getall("If-None-Match", []), etag):
            return web.Response(status=304, headers=headers)
        wanted = parse_range(request.headers.get("Range"), opened.size)
        if wanted is False:
            headers["Content-Range"] = f"bytes */{opened.size}"
            return problem(416, "the range is outside the file", headers=headers)
        first, length, status = 0, opened.size, 200
        if wanted is not None and wanted is not True:
            first, length, status = wanted.first, wanted.length, 206
            headers["Content-Range"] = f"bytes {wanted.first}-{wanted.last}/{opened.size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_type = "application/octet-stream"
        response.content_length = length
        await response.prepare(request)
        if request.method == "HEAD":  # the headers of a GET, no body (RFC 9110 §9.3.2)
            await response.write_eof()
            return response
        offset, end = first, first + length
        while offset < end:
            block = await opened.read(offset, min(config.block_size, end - offset))
            if not block:  # pragma: no cover  (the file shrank: return files never do)
                break
            await response.write(block)
            offset += len(block)
        await response.write_eof()
        return response
    finally:
        opened.close()


async def remove(session: FolderSession, target: Target) -> web.StreamResponse:
    """Remove an own pending upload (IN*) or a return file (OUT*): 204."""
    removed = await session.remove(target.path)
    if removed is not None:
        return refusal(removed)
    return web.Response(status=204)
