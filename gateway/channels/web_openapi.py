"""The web service's OpenAPI 3.1 document, served at ``GET /v1/openapi.json`` without a client
certificate (it is the public contract) and committed as ``docs/web-service.openapi.json``.

One job: describe ``/v1/`` exactly as the channel answers it (docs/web-service.md is the prose
for the same contract). Rules:

- **Built in code, from the tables the channel answers with.** The folders are
  :class:`~gateway.core.folders.Folder`'s, the gateway codes each HTTP status may carry are
  :data:`~gateway.channels.web_problems.STATUSES`'s, so a code added to the catalogue changes
  the document, and the test that compares the served document with the committed one says so.
- **Every answer has a schema**, the refusals included: one ``application/problem+json`` per
  status (RFC 9457: ``type``, ``title``, ``status``, ``detail``, and the gateway's integer
  ``code`` when the refusal has one). ``schemathesis`` checks the running gateway against it
  (tests/channels/test_web_schemathesis.py): a response outside it is a bug of one or the other.
- **Authentication is the TLS handshake** (``mutualTLS``, OpenAPI 3.1 §4.8.27): no header
  carries identity. Only this document is served without a certificate.
- **Deterministic output**: :func:`text` (sorted keys, two-space indent, ASCII) is both what is
  served and what ``python -m gateway.channels.web_openapi`` writes, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import cache
from typing import Any

from aiohttp import web

from gateway.channels.web_files import none_match
from gateway.channels.web_problems import (
    CHALLENGE,
    CODE_TYPE,
    MAX_DETAIL,
    PROBLEM_TYPE,
    SERVER,
    STATUSES,
)
from gateway.core.codes import Code
from gateway.core.folders import Folder

PATH = b"/openapi.json"

Json = dict[str, Any]

VERSION = "1"
"""The document's ``info.version``: the API's major version, as in ``/v1/``."""

FOLDERS = [folder.value for folder in Folder]
OUT_FOLDERS = [folder.value for folder in Folder if not folder.inbound]
# The upper bound of ``[web] list_limit`` (gateway.ops.settings): the most entries a page holds
# whatever the gateway's setting (a test holds the two equal).
LIST_LIMIT_MOST = 10000

# The codes of each status that come from elsewhere than the folder service's table: the client
# certificate's (gateway.channels.web_auth), answered 401.
_AUTH_CODES = (
    Code.CERTIFICATE_NOT_REGISTERED,
    Code.CERTIFICATE_EXPIRED,
    Code.CERTIFICATE_NOT_YET_VALID,
    Code.CERTIFICATE_REVOKED,
)
# The service API's 422s are about the sender a notification is for (gateway.pipeline.publish).
_NOTIFICATION_422 = (Code.SENDER_NOT_OWNER, Code.NAME_PREFIX_INVALID, Code.APPLICATION_NOT_ALLOWED)

# A set's states as ``GET /v1/sets/{id}`` reports them (gateway.pipeline.store.SetState; a
# channel does not import the pipeline, tests/channels/test_web_openapi.py compares the two).
SET_STATES = [
    "received",
    "checking",
    "routing",
    "routed",
    "acknowledged",
    "rejected",
    "cancelled",
    "expired",
]

_WHY = {
    400: "The request cannot be read: a query parameter or header out of its grammar, a body "
    "that is not what the operation takes, or a request that is not valid HTTP/1.1.",
    401: "No client certificate, or one that cannot authenticate: registered on no web-service "
    "channel (153), expired (902), not yet valid (903), revoked by its CA (904). The connection "
    "is closed.",
    403: "Not permitted (923): in this folder (a temporary name, reading IN*, writing OUT*), or "
    "the certificate's technical user or enterprise is blocked.",
    404: "No such file or set, or it is not yours (927): the same answer for both.",
    405: "The method is not one of the path's (see ``Allow``).",
    409: "A file with this name is already there (924); an idempotency key used for another "
    "request (928).",
    413: "Over the size limit (184), told from ``Content-Length`` before the body is read, or "
    "as the body arrives. Nothing is kept; the connection is closed.",
    415: "A ``Content-Encoding`` other than identity (nothing is decompressed), or a body of "
    "another media type than the operation takes.",
    416: "The range starts past the end of the file; ``Content-Range`` holds its size.",
    422: "The request is valid HTTP, but the name or path it names is refused by the checks every "
    "channel makes (name grammar, sender, subscription, folder, environment, a path outside "
    "the folders: 922), or the set is.",
    429: "Your network is penalised for failed authentications (no code); too many sessions "
    "for this sender (921).",
    500: "Internal error (999); the cause stays in the gateway's log.",
    503: "The gateway is stopping (926): retry in a minute, nothing was written; or a "
    "destination is down (940). The connection is closed.",
    507: "Your files not yet processed would exceed your quota (920): retry once the gateway "
    "has processed them.",
}


# -- building blocks -----------------------------------------------------------------------------


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _codes(status: int) -> list[int]:
    """The gateway codes a problem of ``status`` may carry."""
    codes = {int(code) for code, mapped in STATUSES.items() if mapped == status}
    if status == 401:
        codes |= {int(code) for code in _AUTH_CODES}
    return sorted(codes)


def _problem_schema(status: int) -> Json:
    """The problem body of ``status``: the generic problem, its status fixed, its codes listed
    (or no ``code`` member at all when the status has none)."""
    codes = _codes(status)
    narrowed: Json = {"properties": {"status": {"const": status}}}
    if codes:
        narrowed["properties"]["code"] = {"enum": codes}
    else:
        narrowed["not"] = {"required": ["code"]}
        narrowed["properties"]["type"] = {"const": "about:blank"}
    return {"allOf": [_ref("schemas", "Problem"), narrowed]}


def _problem_response(status: int) -> Json:
    headers: Json = {}
    if status == 401:
        headers["WWW-Authenticate"] = _ref("headers", "WWW-Authenticate")
    if status == 405:
        headers["Allow"] = _ref("headers", "Allow")
    if status == 416:
        headers["Content-Range"] = {
            "description": "``bytes */SIZE``: the file's size.",
            "required": True,
            "schema": {"type": "string", "pattern": "^bytes \\*/[0-9]+$"},
        }
    answer: Json = {
        "description": _WHY[status],
        "content": {PROBLEM_TYPE: {"schema": _ref("schemas", f"Problem{status}")}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _json(description: str, schema: str, headers: Json | None = None) -> Json:
    answer: Json = {
        "description": description,
        "content": {"application/json": {"schema": _ref("schemas", schema)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


_FILE_METHODS = "GET, HEAD, PUT, DELETE, OPTIONS"
"""``Allow`` of the root, a folder and a file (``gateway.channels.web.FILE_METHODS``): PUT and
DELETE on a folder are refused with 403 (923), as SFTP refuses a mkdir, rather than 405."""

_AUTHENTICATED = (400, 401, 403, 429, 500, 503)
"""What any request with a client certificate may get, before the operation itself runs."""


def _responses(answers: Json, *statuses: int) -> Json:
    """``answers`` and the problems of ``statuses`` and of every authenticated request."""
    refusals = sorted(set(statuses) | set(_AUTHENTICATED))
    return {**answers, **{str(s): _ref("responses", f"Problem{s}") for s in refusals}}


def _allowed(allowed: str) -> Json:
    allow = {"description": "The path's methods.", "required": True, "schema": {"const": allowed}}
    return {"description": f"No body; ``Allow: {allowed}``.", "headers": {"Allow": allow}}


def _options(allowed: str, operation_id: str, parameters: list[Json] | None = None) -> Json:
    """``OPTIONS``: 204 with the path's methods in ``Allow`` (RFC 9110 §9.3.7), after the client
    certificate is authenticated like any other request."""
    operation: Json = {
        "summary": "What the path allows",
        "operationId": operation_id,
        # A parameter can hold a second level of percent-encoding: 422 (922), as every path.
        "responses": _responses({"204": _allowed(allowed)}, *([422] if parameters else [])),
    }
    if parameters:
        operation["parameters"] = parameters
    return operation


# -- the operations ------------------------------------------------------------------------------


def _root() -> Json:
    listing = {
        "summary": "The six folders",
        "description": "The folders, as a listing of ``{name, folder: true}`` entries.",
        "parameters": [_ref("parameters", "limit"), _ref("parameters", "cursor")],
        "responses": _responses(_ok_listing("FolderListing")),
    }
    return {
        "get": {**listing, "operationId": "listRoot"},
        "head": {**listing, "operationId": "headRoot", "summary": "The listing's headers"},
        "options": _options(_FILE_METHODS, "optionsRoot"),
    }


def _ok_listing(schema: str) -> Json:
    return {"200": _json("A page of the listing, sorted by name (code point order).", schema)}


def _folder() -> Json:
    listing = {
        "summary": "List a folder",
        "description": "Your files in the folder, a page at a time: ``IN*`` your uploads not "
        "yet processed, ``OUT*`` your acknowledgements and notifications. Pass ``next`` back as "
        "``cursor`` for the next page: every file is reached that way, whatever the folder "
        "holds (a page has a limit, a folder none).",
        "parameters": [
            _ref("parameters", "folder"),
            _ref("parameters", "limit"),
            _ref("parameters", "cursor"),
        ],
        "responses": _responses(_ok_listing("FileListing"), 422),
    }
    return {
        "get": {**listing, "operationId": "listFolder"},
        "head": {**listing, "operationId": "headFolder", "summary": "The listing's headers"},
        "options": _options(_FILE_METHODS, "optionsFolder", [_ref("parameters", "folder")]),
    }


def _download(method: str) -> Json:
    body = method == "get"
    file = {"type": "string", "contentMediaType": "application/octet-stream"}
    content = {"application/octet-stream": {"schema": file}}
    etag = _ref("headers", "ETag")
    ranges = _ref("headers", "Accept-Ranges")
    whole: Json = {
        "description": "The file." if body else "The file's headers, no body.",
        "headers": {"ETag": etag, "Accept-Ranges": ranges},
        "content": content,
    }
    part: Json = {
        "description": "One range of the file." if body else "The range's headers, no body.",
        "headers": {
            "ETag": etag,
            "Accept-Ranges": ranges,
            "Content-Range": {
                "description": "``bytes FIRST-LAST/SIZE``.",
                "required": True,
                "schema": {"type": "string", "pattern": "^bytes [0-9]+-[0-9]+/[0-9]+$"},
            },
        },
        "content": content,
    }
    return {
        "summary": "Download a return file" if body else "A return file's headers",
        "operationId": "download" if body else "headFile",
        "description": "Only from ``OUT``, ``OUTTEST``, ``OUTTEST-S`` (reading ``IN*`` is 403, "
        "923). Return files are written once and never change.",
        "parameters": [
            _ref("parameters", "folder"),
            _ref("parameters", "name"),
            {
                "name": "Range",
                "in": "header",
                "description": "One range: ``bytes=FIRST-LAST``, ``bytes=FIRST-`` or "
                "``bytes=-SUFFIX`` (RFC 9110 §14.1.2). Several ranges or another unit are "
                "ignored: the whole file is sent.",
                "schema": {"type": "string"},
            },
            {
                "name": "If-None-Match",
                "in": "header",
                "description": "``*``, or entity tags (weak comparison, RFC 9110 §13.1.2): a "
                "match is 304. A field that is not valid syntax is ignored.",
                "schema": {"type": "string"},
            },
        ],
        "responses": _responses(
            {
                "200": whole,
                "206": part,
                "304": {
                    "description": "Not modified: the ``ETag`` matched ``If-None-Match``.",
                    "headers": {"ETag": etag},
                },
            },
            404,
            416,
            422,
        ),
    }


def _file() -> Json:
    stored = _json(
        "Stored: the name, size in bytes and SHA-256 of what the gateway received.",
        "Stored",
        {"Location": _ref("headers", "Location")},
    )
    return {
        "put": {
            "summary": "Upload a file",
            "operationId": "upload",
            "description": "Into ``IN``, ``INTEST`` or ``INTEST-S``, under its declaration name "
            "(docs/names.md). The name is checked before the body is read (with ``Expect: "
            "100-continue``, ``100`` comes only once it is accepted). Atomic: the file exists "
            "once the whole body is stored. No temporary names (403, 923), no overwrite "
            "(409, 924), no ``Content-Encoding`` (415). Every refused upload also gets a "
            "negative acknowledgement in ``OUT*``.",
            "parameters": [
                _ref("parameters", "folder"),
                _ref("parameters", "name"),
                {
                    "name": "Content-Encoding",
                    "in": "header",
                    "description": "Only ``identity`` (or none): the body is the file as it is.",
                    "schema": {"type": "string", "enum": ["identity"]},
                },
            ],
            "requestBody": {
                "required": True,
                "description": "The file's bytes, at most the gateway's file-size limit "
                "(``[limits] max_file_bytes``, 200 MiB by default).",
                "content": {
                    "application/octet-stream": {
                        "schema": {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                        }
                    }
                },
            },
            "responses": _responses({"201": stored}, 409, 413, 415, 422, 507),
        },
        "get": _download("get"),
        "head": _download("head"),
        "delete": {
            "summary": "Delete a file",
            "operationId": "remove",
            "description": "A return file in ``OUT*`` once you have it, or one of your own "
            "uploads in ``IN*`` not processed yet.",
            "parameters": [_ref("parameters", "folder"), _ref("parameters", "name")],
            "responses": _responses({"204": {"description": "Deleted."}}, 404, 422),
        },
        "options": _options(
            _FILE_METHODS,
            "optionsFile",
            [_ref("parameters", "folder"), _ref("parameters", "name")],
        ),
    }


def _sets() -> Json:
    return {
        "post": {
            "summary": "Send a whole set in one request",
            "operationId": "postSet",
            "description": "The set's FI and FS parts, each a ``file`` part whose filename is "
            "its declaration name, streamed into the ``IN*`` folder of its environment with "
            "the checks and codes of a PUT. The gateway judges the set, then names and stores "
            "the GO itself. Do not send a GO (107) or a TD (403, 923). A refusal removes "
            "whatever the request stored and writes no GO.",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                    },
                                }
                            },
                        }
                    }
                },
            },
            "responses": _responses(
                {
                    "202": _json(
                        "Stored, GO written: the set is processed next; follow it at ``Location``.",
                        "SetPosted",
                        {"Location": _ref("headers", "Location")},
                    )
                },
                409,
                413,
                415,
                422,
                507,
            ),
        },
        "options": _options("POST, OPTIONS", "optionsSets"),
    }


def _set() -> Json:
    key = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The set's GO name (as ``POST /v1/sets`` answered) or its ticket.",
        "schema": {"type": "string", "minLength": 1},
        "examples": {"go": {"value": "GO.DMFA.006400.20260115.00001.R.2"}},
    }
    state = {
        "parameters": [key],
        "responses": _responses(
            {"200": _json("The set's state, and its acknowledgement once written.", "SetState")},
            404,
            422,
        ),
    }
    return {
        "get": {**state, "summary": "Follow a set", "operationId": "getSet"},
        "head": {**state, "summary": "A set's headers", "operationId": "headSet"},
        "options": _options("GET, HEAD, OPTIONS", "optionsSet", [key]),
    }


def _notifications() -> Json:
    application = {
        "name": "application",
        "in": "path",
        "required": True,
        "description": "One of the service's own application codes.",
        "schema": {"type": "string", "pattern": "^[A-Z]{4}$"},
    }
    unknown = {
        "description": "No such resource (no code): an application that is not four capital "
        "letters, or a gateway that serves no service API.",
        "content": {PROBLEM_TYPE: {"schema": _ref("schemas", "Problem404")}},
    }
    post = {
        "summary": "Post a notification for a sender",
        "operationId": "postNotification",
        "description": "For online services, with the service's own client certificate "
        "(``config/services.toml``). The gateway signs the content and places it in the "
        "sender's OUT folder of the environment as FO (or CO, compressed, when large), FS and "
        "GO. Idempotent on ``Idempotency-Key``: a retry with the same key and the same request "
        "places nothing new and answers 200 with the same names.",
        "parameters": [
            application,
            {
                "name": "sender",
                "in": "query",
                "required": True,
                "description": "The sender the notification is for.",
                "schema": {"type": "string", "pattern": "^[0-9]{6}$"},
            },
            {
                "name": "environment",
                "in": "query",
                "description": "R (production), T (test) or S (simulation).",
                "schema": {"type": "string", "enum": ["R", "T", "S"], "default": "R"},
            },
            {
                "name": "kind",
                "in": "query",
                "description": "The notification's kind, in its file name.",
                "schema": {"type": "string", "pattern": "^[A-Z]{4}$", "default": "NOTI"},
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "The service's key for this notification: a retry with the same "
                "key makes no second file.",
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7E]{1,128}$"},
            },
        ],
        "requestBody": {
            "required": True,
            "description": "The notification's content, as the sender will read it; at most "
            "``[web] max_notification_bytes``.",
            "content": {"*/*": {"schema": {}}},
        },
        "responses": _responses(
            {
                "201": _json("Placed.", "Notification"),
                "200": _json("Placed by an earlier request with this key.", "Notification"),
                "404": unknown,
            },
            409,
            413,
            415,
            422,
        ),
    }
    options = _options("POST, OPTIONS", "optionsNotifications", [application])
    options["responses"]["404"] = unknown
    return {"post": post, "options": options}


def _openapi() -> Json:
    document = {
        "summary": "This document",
        "description": "The public contract: served without a client certificate.",
        "security": [],
        "parameters": [
            {
                "name": "If-None-Match",
                "in": "header",
                "description": "The ``ETag`` of a copy you hold: 304 when it is current.",
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": {
                "description": "The OpenAPI document.",
                "headers": {"ETag": _ref("headers", "ETag")},
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "304": {
                "description": "Not modified.",
                "headers": {"ETag": _ref("headers", "ETag")},
            },
        },
    }
    return {
        "get": {**document, "operationId": "openapi"},
        "head": {**document, "operationId": "headOpenapi", "summary": "This document's headers"},
        "options": {
            "summary": "What the path allows",
            "operationId": "optionsOpenapi",
            "security": [],
            "responses": {"204": _allowed("GET, HEAD, OPTIONS")},
        },
    }


# -- the components ------------------------------------------------------------------------------


def _schemas() -> Json:
    name = {"type": "string", "minLength": 1, "maxLength": 255}
    sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    size = {"type": "integer", "minimum": 0}
    cursor = {"type": ["string", "null"], "description": "The next page's cursor; null at the end."}
    notification: Json = {
        "application": {"type": "string", "pattern": "^[A-Z]{4}$"},
        "kind": {"type": "string", "pattern": "^[A-Z]{4}$"},
        "sender": {"type": "string", "pattern": "^[0-9]{6}$"},
        "environment": {"enum": ["R", "T", "S"]},
        "folder": {"enum": OUT_FOLDERS},
        "files": {
            "type": "array",
            "description": "FO (or CO), FS and GO, as placed in ``folder``.",
            "items": name,
            "minItems": 3,
            "maxItems": 3,
        },
        "compressed": {"type": "boolean", "description": "CO (a ZIP) instead of FO."},
        "size": {**size, "description": "The content's size, as posted."},
        "sha256": {**sha256, "description": "The content's SHA-256, as posted."},
        "idempotency_key": {"type": "string"},
        "replayed": {"type": "boolean", "description": "True: an earlier request's."},
    }
    schemas: Json = {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details, with the gateway code (docs/codes.md).",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {
                    "anyOf": [
                        {"const": "about:blank"},
                        {"pattern": "^" + CODE_TYPE.format(code="[0-9]{3}") + "$"},
                    ],
                    "type": "string",
                    "description": "``urn:batch-gateway:code:CODE``, or ``about:blank`` when "
                    "the refusal has no gateway code.",
                },
                "title": {"type": "string", "description": "The code's text, or the reason."},
                "status": {"type": "integer", "minimum": 100, "maximum": 599},
                "detail": {
                    "type": "string",
                    "maxLength": MAX_DETAIL,
                    "description": "What was refused and why, for a person; may change.",
                },
                "code": {"type": "integer", "description": "The gateway code: branch on it."},
            },
        },
        "Stored": {
            "type": "object",
            "required": ["name", "size", "sha256"],
            "additionalProperties": False,
            "properties": {"name": name, "size": size, "sha256": sha256},
        },
        "FileEntry": {
            "type": "object",
            "required": ["name", "size", "mtime"],
            "additionalProperties": False,
            "properties": {
                "name": name,
                "size": size,
                "mtime": {"type": "number", "description": "Seconds since 1970-01-01 UTC."},
            },
        },
        "FolderEntry": {
            "type": "object",
            "required": ["name", "folder"],
            "additionalProperties": False,
            "properties": {"name": {"enum": FOLDERS}, "folder": {"const": True}},
        },
        "SetPosted": {
            "type": "object",
            "required": ["go", "ticket", "files"],
            "additionalProperties": False,
            "properties": {
                "go": {"type": "string", "description": "The GO the gateway named and wrote."},
                "ticket": {
                    "type": ["string", "null"],
                    "description": "Null: the pipeline assigns the ticket when it takes the "
                    "set; read it from ``GET /v1/sets/{go}``.",
                },
                "files": {"type": "array", "items": _ref("schemas", "Stored")},
            },
        },
        "SetState": {
            "type": "object",
            "required": ["go", "ticket", "state", "finished", "code", "reason", "acrf"],
            "additionalProperties": False,
            "properties": {
                "go": {"type": "string"},
                "ticket": {"type": ["string", "null"], "pattern": "^[0-9A-Z]{13}$"},
                "state": {"enum": SET_STATES},
                "finished": {"type": "boolean"},
                "code": {"type": ["integer", "null"], "description": "A refusal's code."},
                "reason": {"type": ["string", "null"]},
                "acrf": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "href"],
                        "additionalProperties": False,
                        "properties": {
                            "name": name,
                            "href": {"type": "string", "description": "``/v1/OUT*/NAME``"},
                        },
                    },
                },
            },
        },
        "Notification": {
            "type": "object",
            "required": list(notification),
            "additionalProperties": False,
            "properties": notification,
        },
    }
    listing = {"type": "object", "required": ["entries", "next"], "additionalProperties": False}
    schemas["FileListing"] = listing | {
        "properties": {
            "entries": {"type": "array", "items": _ref("schemas", "FileEntry")},
            "next": cursor,
        }
    }
    schemas["FolderListing"] = listing | {
        "properties": {
            "entries": {"type": "array", "items": _ref("schemas", "FolderEntry")},
            "next": cursor,
        }
    }
    for status in _WHY:
        schemas[f"Problem{status}"] = _problem_schema(status)
    return schemas


def _components() -> Json:
    return {
        "securitySchemes": {
            "clientCertificate": {
                "type": "mutualTLS",
                "description": "The client certificate registered on your web-service channel "
                "(an online service: its own, from ``config/services.toml``), presented in the "
                "TLS handshake. A certificate that chains to no trusted CA and is not "
                "registered fails the handshake: no HTTP answer.",
            }
        },
        "parameters": {
            "folder": {
                "name": "folder",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": FOLDERS},
            },
            "name": {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "The file's name (docs/names.md); percent-decoded once.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "examples": {"fi": {"value": "FI.DMFA.006400.20260115.00001.R.1.1"}},
            },
            "limit": {
                "name": "limit",
                "in": "query",
                "description": "Entries a page, from 1 to the gateway's ``[web] list_limit`` "
                f"(1000 by default, also the default; never more than {LIST_LIMIT_MOST}). More "
                "is refused with 400.",
                "schema": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MOST},
            },
            "cursor": {
                "name": "cursor",
                "in": "query",
                "description": "The ``next`` of the previous page: opaque. The page holds the "
                "names after the previous page's last one (not an offset: a file removed between "
                "two pages makes none skipped).",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "maxLength": 1024},
            },
        },
        "headers": {
            "ETag": {"required": True, "schema": {"type": "string", "pattern": '^"[^"]*"$'}},
            "Accept-Ranges": {"required": True, "schema": {"const": "bytes"}},
            "Allow": {
                "required": True,
                "description": "The methods of the path: ``GET``, ``PUT`` and ``DELETE`` on "
                "files and folders, ``POST`` on ``/v1/sets``, ``GET`` on ``/v1/sets/{id}``.",
                "schema": {"type": "string"},
            },
            "Location": {
                "required": True,
                "description": "Where the stored file or posted set is.",
                "schema": {"type": "string", "pattern": "^/v1/"},
            },
            "WWW-Authenticate": {
                "required": True,
                "description": "No registered HTTP scheme names a TLS client certificate: the "
                "gateway's own word for present a registered one in a new connection's "
                "handshake.",
                "schema": {"const": CHALLENGE},
            },
        },
        "responses": {f"Problem{status}": _problem_response(status) for status in _WHY},
        "schemas": _schemas(),
    }


def document() -> Json:
    """The OpenAPI 3.1 document of ``/v1/``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Batch Gateway web service",
            "version": VERSION,
            "description": "Senders upload and fetch the files of the social-security batch "
            "channel over HTTPS, authenticated by a client certificate; online services post "
            "notifications back. The folders, names, checks and codes are those of SFTP "
            "(docs/web-service.md, docs/codes.md). Every refusal is application/problem+json. "
            "A method a path does not list is 405 with ``Allow``; a path not under /v1/ is 404.",
        },
        "security": [{"clientCertificate": []}],
        "paths": {
            "/v1/": _root(),
            "/v1/{folder}/": _folder(),
            "/v1/{folder}/{name}": _file(),
            "/v1/sets": _sets(),
            "/v1/sets/{id}": _set(),
            "/v1/services/{application}/notifications": _notifications(),
            "/v1/openapi.json": _openapi(),
        },
        "components": _components(),
    }


def text() -> str:
    """The document as served and committed: sorted keys, two-space indent, ASCII."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


@cache
def _body() -> tuple[bytes, str]:
    body = text().encode()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def openapi_response(request: web.BaseRequest) -> web.Response:
    """The document (GET or HEAD), with an ``ETag``; 304 when the client has it."""
    body, etag = _body()
    headers = {"ETag": etag, "Server": SERVER, "Cache-Control": "no-cache"}
    if none_match(request.headers.getall("If-None-Match", []), etag):  # as a file's GET
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


if __name__ == "__main__":  # python -m gateway.channels.web_openapi > docs/web-service.openapi.json
    sys.stdout.write(text())
