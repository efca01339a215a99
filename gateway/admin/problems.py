"""Registry refusals and admin-plane errors as ``application/problem+json`` answers (RFC 9457).

The registry's :class:`~gateway.registry.types.Refusal` reasons are stable codes; each maps to
one status here, and the body carries the reason as ``code`` (a string: these are the registry's
codes, not the gateway's numeric transfer codes) and the registry's message as ``detail``:

- ``not_found`` 404, and ``forbidden`` 403 — except that anything outside the caller's
  enterprise is 404 whatever the registry said (no IDOR: another enterprise's resources do not
  exist for the caller);
- ``invalid``, ``password_policy``, ``bad_certificate``, ``bad_key`` 422;
- ``duplicate``, ``step_order``, ``limit`` 409;
- ``bad_credential`` 401.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web

from gateway.registry.types import Refusal

PROBLEM_TYPE = "application/problem+json"

STATUSES: dict[str, int] = {
    "not_found": 404,
    "forbidden": 403,
    "invalid": 422,
    "password_policy": 422,
    "bad_certificate": 422,
    "bad_key": 422,
    "duplicate": 409,
    "step_order": 409,
    "limit": 409,
    "bad_credential": 401,
}


def problem(
    status: int, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """A problem answer; ``code`` is the registry's refusal reason when there is one."""
    body: dict[str, object] = {
        "type": f"urn:batch-gateway:admin:{code}" if code else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail[:400],
    }
    if code:
        body["code"] = code
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type=PROBLEM_TYPE, headers=headers
    )


def refused(refusal: Refusal) -> web.Response:
    """The answer to a registry refusal."""
    return problem(STATUSES.get(refusal.reason, 422), refusal.message, code=refusal.reason)


def not_found() -> web.Response:
    """The one answer for what does not exist, or is another enterprise's."""
    return problem(404, "no such resource", code="not_found")
