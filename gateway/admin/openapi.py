"""The admin API's OpenAPI 3.1 document, served at ``GET /admin/api/v1/openapi.json`` without
authentication and committed as ``docs/admin-api.openapi.json``.

One job: describe ``/admin/api/v1/`` as it is served. Rules:

- **Generated, never written by hand**: the paths come from the route table
  (:data:`gateway.admin.api.ENDPOINTS`, plus the sign-in routes of ``gateway.admin.sessions``,
  described here with their own request model), the schemas from the pydantic models
  (``models_json_schema``), the error statuses from each endpoint's list, each with the one
  problem schema. A test compares the served document with the committed one.
- **Deterministic output**: :func:`text` (sorted keys, two-space indent, ASCII) is what is served
  and what ``python -m gateway.admin.openapi > docs/admin-api.openapi.json`` writes.
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.admin import api_models as m
from gateway.admin.api import BASE, ENDPOINTS, Endpoint
from gateway.admin.auth import COOKIE, CSRF_HEADER
from gateway.admin.problems import PROBLEM_TYPE, STATUSES
from gateway.admin.sessions import Credentials

Json = dict[str, Any]
Refs = dict[tuple[Any, str], Json]

VERSION = "1"
PATH = BASE + "/openapi.json"


class Document(BaseModel):
    """This document."""

    model_config = ConfigDict(extra="allow")

    openapi: str


SIGN_IN: tuple[Endpoint, ...] = (
    Endpoint(method="POST", path="/session", summary="Sign in with a password or a TOTP code",
             tag="session", handler=None, body=Credentials, answer=m.SessionOut, status=201,
             errors=(401, 413, 422), auth="none",
             description="Sets the session cookie. Every failure is the same 401."),
    Endpoint(method="POST", path="/session/eid", summary="Sign in with an eID (TLS client "
             "certificate)", tag="session", handler=None, answer=m.SessionOut, status=201,
             errors=(401,), auth="none"),
    Endpoint(method="DELETE", path="/session", summary="Sign out", tag="session", handler=None,
             status=204, errors=(403,)),
    Endpoint(method="GET", path="/me", summary="Your account, your roles, the token's reach",
             tag="me", handler=None, answer=m.MeOut, errors=(401,)),
    Endpoint(method="GET", path="/openapi.json", summary="This document", tag="meta",
             handler=None, answer=Document, errors=(), auth="none"),
)  # fmt: skip
"""Operations served by other modules, described here."""

PATH_PARAMETERS: dict[str, Json] = {
    "kbo": {"type": "string", "minLength": 1, "maxLength": 20,
            "description": "Your enterprise number (10 digits); another one is 404."},
    "kind": {"type": "string", "minLength": 1, "maxLength": 40,
             "description": "A quality of the enterprise, e.g. employer."},
    "login": {"type": "string", "minLength": 1, "maxLength": 64,
              "description": "A login of your enterprise; another enterprise's is 404."},
    "role": {"type": "string", "enum": ["co-HTB", "TB", "co-TB"]},
    "token_id": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999},
    "channel": {"type": "string", "enum": ["sftp", "ftp", "webservice"]},
    "fingerprint": {"type": "string", "minLength": 1, "maxLength": 100,
                    "description": "A SHA-256 fingerprint in hex."},
    "query": {"type": "string", "minLength": 1, "maxLength": 200,
              "description": "A ticket (13 characters) or a file name."},
}  # fmt: skip

WHY: dict[int, str] = {
    401: "No console session or API token, or one that no longer works (expired, revoked, its "
    "maker blocked or no longer a manager of its quality).",
    403: "The rule table refuses the caller (code forbidden, the detail names the role needed), "
    "a change with a console session lacks its CSRF token (code csrf), or an operation needs a "
    "console session and got a token.",
    404: "No such resource, or another enterprise's (the same answer: no IDOR). For a token, "
    "another quality of its own enterprise too.",
    409: "The registry refuses the change as it stands: duplicate, step_order (a wizard step "
    "before its predecessor) or limit.",
    413: "The body is larger than the listener accepts (4 MiB).",
    422: "The body or query does not match its schema (code invalid), or the registry refuses a "
    "value: invalid, password_policy, bad_certificate (with gateway_code), bad_key, "
    "bad_credential on a password change.",
}

DESCRIPTION = f"""\
Access management of the Batch Gateway for scripts: enterprises and qualities, role \
appointments, users and passwords, the password-login switch, structured messages (technical \
user, channels, SSH keys, signing certificate, online services, overview), API tokens, the \
enterprise's audit trail and "where is my file?".

**Authentication.** An API token as `Authorization: Bearer bgt_...`, made by an access manager \
in a console session (`POST /tokens`); it acts as its maker, within one quality of one \
enterprise, until it expires or is revoked. Or the console session cookie `{COOKIE}` from \
`POST /session`; every change with a session carries its CSRF token as `{CSRF_HEADER}`.

**Rules.** Every operation is decided by the registry's rule table, exactly as `gateway admin \
--as LOGIN` is; a refusal is an `application/problem+json` answer whose `code` is the \
registry's reason ({", ".join(f"{code} {status}" for code, status in STATUSES.items())}). \
Anything of another enterprise answers 404, never 403.

**Not here.** The gateway operator's commands stay on the gateway's host: `gateway admin \
enterprise provision`, `gateway admin audit verify`, `gateway admin db migrate` and `gateway \
admin sender show`."""


def _without_null(schema: Json) -> Json:
    """A query parameter's schema: an optional value is absent, never ``null``."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o.get("type") != "null"]
        if len(kept) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**kept[0], **rest}
    return schema


def _problem(status: int) -> Json:
    return {
        "description": WHY[status],
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _security(auth: str) -> list[Json]:
    if auth == "none":
        return []
    if auth == "session":
        return [{"session": []}]
    return [{"token": []}, {"session": []}]


def _operation(endpoint: Endpoint, refs: Refs) -> Json:
    slug = re.sub(r"[^a-z0-9]+", "_", f"{endpoint.method} {endpoint.path}".lower()).strip("_")
    operation: Json = {
        "operationId": slug,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "security": _security(endpoint.auth),
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}
        for name in re.findall(r"{(\w+)}", endpoint.path)
    ]
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            described = _without_null(prop)
            parameter: Json = {"name": name, "in": "query", "required": name in required}
            if "description" in described:
                parameter["description"] = described.pop("description")
            described.pop("title", None)
            parameter["schema"] = described
            parameters.append(parameter)
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(endpoint.body, "validation")]}},
        }
    success: Json = {"description": endpoint.summary}
    if endpoint.answer is not None:
        schema = refs[(endpoint.answer, "serialization")]
        success["content"] = {"application/json": {"schema": schema}}
    responses: Json = {str(endpoint.status): success}
    for status in endpoint.errors:
        responses[str(status)] = _problem(status)
    operation["responses"] = responses
    return operation


@cache
def document() -> Json:
    """The OpenAPI 3.1 document."""
    endpoints = (*SIGN_IN, *ENDPOINTS)
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(m.Problem, "serialization")}
    for endpoint in endpoints:
        if endpoint.body is not None:
            wanted.add((endpoint.body, "validation"))
        if endpoint.answer is not None:
            wanted.add((endpoint.answer, "serialization"))
    ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    found, top = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    refs: Refs = {(model, mode): schema for (model, mode), schema in found.items()}
    paths: Json = {}
    for endpoint in endpoints:
        item = paths.setdefault(BASE + endpoint.path, {})
        item[endpoint.method.lower()] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Batch Gateway admin API",
            "version": VERSION,
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/", "description": "the admin listener ([admin] host and port)"}],
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (bgt_...) made with POST /tokens.",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": f"A console session; changes carry {CSRF_HEADER}.",
                },
            },
        },
    }


@cache
def document_text() -> str:
    """The document as served and committed."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=True) + "\n"


async def serve(request: web.Request) -> web.StreamResponse:
    """``GET /admin/api/v1/openapi.json`` (no authentication: it is the public contract)."""
    return web.Response(text=document_text(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    """The document's route."""
    app.router.add_get(PATH, serve)


if __name__ == "__main__":
    sys.stdout.write(document_text())
