"""The OpenAPI document: the one a running gateway serves over HTTPS is the committed
``docs/web-service.openapi.json`` byte for byte, it is a valid OpenAPI 3.1 document, and the
values it copies from elsewhere (set states, methods) are still those of the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis

from gateway.channels import web, web_openapi
from gateway.channels.web_problems import STATUSES
from gateway.pipeline.store import SetState
from tests.channels.web_env import WebEnv, curl

pytestmark = pytest.mark.timeout(120)

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "web-service.openapi.json"
REWRITE = "python -m gateway.channels.web_openapi > docs/web-service.openapi.json"


async def test_served_document_is_the_committed_one(web: WebEnv, tmp_path: Path) -> None:
    """GET /v1/openapi.json over HTTPS, without a client certificate, is the committed file."""
    served = await curl(web, "/openapi.json", cert=False, folder=tmp_path)
    assert served.status == 200, (served.body, served.stderr)
    assert served.headers["content-type"].startswith("application/json")
    committed = COMMITTED.read_bytes()
    assert served.body == committed, f"the committed document is stale: run `{REWRITE}`"


async def test_document_etag_head_and_options(web: WebEnv, tmp_path: Path) -> None:
    """The document has an ETag (304 when If-None-Match matches it as for a file: a list, weak
    comparison, ``*``), HEAD has its headers, OPTIONS its Allow."""
    first = await curl(web, "/openapi.json", cert=False, folder=tmp_path)
    etag = first.headers["etag"]
    again = await curl(
        web, "/openapi.json", "--header", f"If-None-Match: {etag}", cert=False, folder=tmp_path
    )
    assert (again.status, again.body, again.headers["etag"]) == (304, b"", etag)
    for field, status in ((f'"x", W/{etag}', 304), ("*", 304), (f"x{etag}", 200)):
        answer = await curl(
            web, "/openapi.json", "--header", f"If-None-Match: {field}", cert=False, folder=tmp_path
        )
        assert answer.status == status, field  # RFC 9110 §13.1.2, as for a file
    head = await curl(web, "/openapi.json", "--head", cert=False, folder=tmp_path)
    assert (head.status, head.headers["etag"]) == (200, etag)
    assert head.body.endswith(b"\r\n\r\n")  # curl --head writes the headers: no body followed
    options = await curl(web, "/openapi.json", "--request", "OPTIONS", cert=False, folder=tmp_path)
    assert (options.status, options.headers["allow"]) == (204, "GET, HEAD, OPTIONS")


def test_document_is_valid_openapi_31() -> None:
    """The committed document passes schemathesis' validation against the OpenAPI 3.1 schema."""
    document = json.loads(COMMITTED.read_text())
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()


def test_command_writes_what_is_served() -> None:
    """The module's command writes the text the gateway serves."""
    assert web_openapi.text() == COMMITTED.read_text(), f"run `{REWRITE}`"
    assert web_openapi.openapi_response is not None  # the handler web.py serves it with


def test_copied_values_are_the_codes() -> None:
    """Set states, the file paths' methods and every gateway code's status match the code."""
    states = {v for k, v in vars(SetState).items() if not k.startswith("_")}
    assert set(web_openapi.SET_STATES) == states
    document = web_openapi.document()
    allow = document["paths"]["/v1/{folder}/{name}"]["options"]["responses"]["204"]
    assert allow["headers"]["Allow"]["schema"]["const"] == ", ".join(web.FILE_METHODS)
    schemas = document["components"]["schemas"]
    for code, status in STATUSES.items():
        narrowed = schemas[f"Problem{status}"]["allOf"][1]
        assert int(code) in narrowed["properties"]["code"]["enum"], (code, status)
