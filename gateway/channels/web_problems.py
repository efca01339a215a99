"""The web channel's one translation table: gateway code -> HTTP status, and the problem body.

Every refusal the folder service answers is a :class:`Rejection`; HTTP sends it as an
``application/problem+json`` body (RFC 9457 §3: ``type``, ``title``, ``status``, ``detail``)
with the extension member ``code``, the gateway code a sender also reads over SFTP, FTP and in
the negative ACRF. The classes:

- ``422`` a refused name or path: the name grammar (1xx-3xx), a path outside the folders (922),
  a return name (925), and the set-level content refusals a transfer never produces (signature
  9xx, 930). The request is well-formed HTTP; what it names is refused. ``400`` stays for HTTP
  the gateway cannot read (a bad query parameter), so a client can tell the two apart.
- ``403`` not permitted in this folder (923); ``409`` already there (924), or an idempotency
  key reused for another notification (928); ``404`` no such file,
  or not the sender's (927): the same answer for both, as over SFTP (SECURITY.md 2).
- ``413`` a file over ``max_file_bytes`` (184); ``507`` the sender's pending quota (920): the
  request is not too large as such, the sender's pending bytes are, until the pipeline takes
  them (RFC 4918 §11.5 "Insufficient Storage"); also ``507`` the gateway short of space (929),
  which is the gateway's condition, not the sender's: the code tells the two apart.
- ``429`` too many sessions (921); ``503`` the gateway is stopping (926) or a destination is
  down (940); ``500`` an internal error (999), whose body never holds the exception's text
  (SECURITY.md 22), only "internal error, ticket T" (the log holds T's traceback).

A test checks that every :class:`~gateway.core.codes.Code` is in :data:`STATUSES`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from http import HTTPStatus

from aiohttp import web

from gateway.core.codes import INTERNAL_ERROR_PREFIX, SIGNATURE_CODES, Code, Rejection, info

_NAME_CODES = tuple(code for code in Code if code < 400)
_CONTENT_CODES = (*SIGNATURE_CODES, Code.SET_CANCELLED)
_GROUPS: dict[int, tuple[Code, ...]] = {
    422: (
        *(c for c in _NAME_CODES if c is not Code.FILE_TOO_LARGE),
        *_CONTENT_CODES,
        Code.PATH_REFUSED,
        Code.RETURN_NAME_INVALID,
    ),
    403: (Code.OPERATION_NOT_PERMITTED,),
    409: (Code.FILE_EXISTS, Code.IDEMPOTENCY_KEY_REUSED),
    404: (Code.NO_SUCH_FILE,),
    413: (Code.FILE_TOO_LARGE,),
    507: (Code.QUOTA_EXCEEDED, Code.SHORT_OF_SPACE),
    429: (Code.TOO_MANY_SESSIONS,),
    503: (Code.GATEWAY_STOPPING, Code.DESTINATION_UNAVAILABLE),
    500: (Code.INTERNAL_ERROR,),
}

STATUSES: dict[Code, int] = {code: status for status, codes in _GROUPS.items() for code in codes}
"""Gateway code -> HTTP status (every code, exactly once)."""

SERVER = "batch-gateway"
"""The ``Server`` header of every answer: no version (SECURITY.md 9)."""
CHALLENGE = 'ClientCertificate realm="batch-gateway"'
"""The ``WWW-Authenticate`` challenge of every 401 (RFC 9110 §11.6.1 requires one). No registered
HTTP authentication scheme names a TLS client certificate: RFC 8120's ``Mutual`` is a password
exchange (a PAKE over HTTP headers), so naming it would tell an RFC 8120 client to start an
exchange the gateway does not speak. The scheme token here (any token is valid syntax, RFC 9110
§11.1) says what the gateway wants and no client will mistake it for a header scheme it knows:
present a registered client certificate in the TLS handshake of a new connection."""
PROBLEM_TYPE = "application/problem+json"
CODE_TYPE = "urn:batch-gateway:code:{code}"
"""The problem ``type`` of a gateway code; other problems are ``about:blank`` (RFC 9457 §4.2.1)."""
MAX_DETAIL = 400
_TICKETED = re.compile(re.escape(INTERNAL_ERROR_PREFIX) + r"[0-9a-f]{1,32}")


def clean_detail(text: str) -> str:
    """``text`` with control and format characters (CR, LF, NUL, bidi overrides) as ``?`` and
    bounded: a name echoed in a reason cannot forge a log line or a header (SECURITY.md 5)."""
    cleaned = "".join(
        "?" if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp", "Cs"} else ch for ch in text
    )
    return cleaned if len(cleaned) <= MAX_DETAIL else cleaned[: MAX_DETAIL - 3] + "..."


def problem(
    status: int,
    detail: str,
    *,
    code: Code | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An ``application/problem+json`` response; with ``code`` its type and title are the
    catalogue's, else the HTTP reason phrase's."""
    body: dict[str, object] = {
        "type": CODE_TYPE.format(code=int(code)) if code is not None else "about:blank",
        "title": info(code).message if code is not None else HTTPStatus(status).phrase,
        "status": status,
        "detail": clean_detail(detail),
    }
    if code is not None:
        body["code"] = int(code)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": CHALLENGE}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


def refusal(rejection: Rejection, *, status: int | None = None) -> web.Response:
    """The problem of ``rejection``, with its status from :data:`STATUSES` unless given; an
    internal error's detail is its ticket (:func:`~gateway.core.codes.internal_error`) or the
    catalogue's text, never another reason."""
    code = rejection.code
    detail = str(rejection)
    if code is Code.INTERNAL_ERROR and not _TICKETED.fullmatch(rejection.reason):
        detail = info(code).message
    return problem(status if status is not None else STATUSES[code], detail, code=code)
