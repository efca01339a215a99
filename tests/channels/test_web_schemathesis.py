"""schemathesis against a running web gateway: every operation of the document served at
``/v1/openapi.json``, with sender A's registered client certificate, a bounded number of
generated requests each (deterministic, no shrinking). No answer may be a 5xx, and every answer
must be one the document describes: its status, media type, headers and body schema.

The gateway runs in the test's event loop; schemathesis (synchronous: requests, hypothesis)
runs in a worker thread. Each operation is its own test so that a failure names it. Besides
fully generated requests, some strategies fix the path to a file that exists (a return file in
OUT, valid upload names in IN) so that the headers and bodies are fuzzed past the name checks.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from gateway.channels import web_openapi
from gateway.core.folders import Folder
from gateway.core.types import SenderNumber
from gateway.registry.catalogue import load_service_catalogue, load_service_clients
from gateway.spool import place_return_file
from tests.channels.ftp_env import name

# The service API's test world (its catalogue with service certificates, its desk over a real
# pipeline context), shared with test_web_services.py; service_pki is a fixture, used by name.
from tests.channels.services_env import catalogue_with_clients, service_desk
from tests.channels.services_env import service_pki as service_pki
from tests.channels.web_env import StartWeb, WebEnv, curl
from tests.pki import Identity

pytestmark = pytest.mark.timeout(180)

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "30"))
"""Generated requests per operation: bounded, so the module stays well under a minute (set the
variable higher for a deeper run by hand)."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
]
ACKS = [f"FO.ACRF.999999.20260115.{seq:05d}.R" for seq in range(1, 4)]
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in web_openapi.document()["paths"].items()
    for method in item
)
REACHED = {
    "GET /v1/": {200, 400},
    "GET /v1/{folder}/": {200, 400, 422},
    "GET /v1/{folder}/{name}": {200, 206, 304, 403, 404, 416, 422},
    "PUT /v1/{folder}/{name}": {201, 409, 415, 422},
    "DELETE /v1/{folder}/{name}": {204, 404, 422},
    "POST /v1/sets": {400, 415, 422},
    "GET /v1/sets/{id}": {200, 404},
    "GET /v1/openapi.json": {200},
    "POST /v1/services/{application}/notifications": {403},  # a sender's certificate: 923
}
"""Answers each operation must have got at least once: proof that the generated requests went
past authentication and the name checks (HEAD as GET; OPTIONS 204, or 403 on the services)."""
SERVICE_REACHED = {
    # A replay (200) needs the same key and request twice, which generation reaches only by
    # chance (the document's changes move it); tests/channels/test_web_services.py covers it.
    "POST /v1/services/{application}/notifications": {201, 403, 404, 409, 422},
    "OPTIONS /v1/services/{application}/notifications": {204, 404},
}
"""The same, with the DMFA service's certificate: placed, replayed, another application's,
the key reused for another notification, a sender not registered or not subscribed."""
KNOWN_BUGS: dict[str, str] = {}
"""Operations whose fuzzing finds a bug outside this test's files: label -> the bug, to be fixed
where it is (the test is then xfail, strict: it fails once the bug is fixed)."""


@dataclass(frozen=True)
class Fuzz:
    """What the worker thread needs: where the gateway is and how to talk to it."""

    base: str
    ca: str
    cert: tuple[str, str]
    sender: str


def _strategies(operation: Any, fuzz: Fuzz) -> list[Any]:
    """Generated requests, positive and negative, and for file operations the same with the
    path fixed to names that exist or pass the name checks."""
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    found: list[Any] = [operation.as_strategy(generation_mode=mode) for mode in modes]
    label = operation.label
    if label.endswith("/v1/{folder}/{name}") and label.split()[0] in {"GET", "HEAD", "DELETE"}:
        found += [operation.as_strategy(path_parameters={"folder": "OUT", "name": n}) for n in ACKS]
    if label == "PUT /v1/{folder}/{name}":
        for seq in ("00011", "00012", "00013"):
            for kind in ("FI", "FS"):
                fixed = {"folder": "IN", "name": name(kind, fuzz.sender, seq)}
                found.append(operation.as_strategy(path_parameters=fixed))
    if label.endswith("/v1/sets/{id}"):
        found.append(operation.as_strategy(path_parameters={"id": name("GO", fuzz.sender)}))
    if label.endswith("/v1/{folder}/"):
        found.append(operation.as_strategy(path_parameters={"folder": "OUT"}))
    return found


Strategies = Callable[[Any, Fuzz], list[Any]]


def _fuzz(fuzz: Fuzz, label: str, strategies: Strategies) -> Counter[int]:
    """Load the served document and run ``label``'s strategies against the gateway (blocking);
    returns how many answers of each status it got."""
    schema = schemathesis.openapi.from_url(f"{fuzz.base}/v1/openapi.json", verify=fuzz.ca)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"
    seen: Counter[int] = Counter()
    with requests.Session() as session:  # keep-alive: one TLS session for many requests
        session.cert, session.verify = fuzz.cert, fuzz.ca
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override ``verify``

        def send(case: Any) -> None:
            response = case.call_and_validate(
                base_url=fuzz.base,
                session=session,
                checks=CHECKS,
                cert=fuzz.cert,
                verify=fuzz.ca,
                timeout=30,
            )
            seen[response.status_code] += 1

        # schemathesis' coverage phase first: a fixed list of boundary and negative values
        # of each parameter, and the methods the path does not document (405 with Allow).
        generation = schema.config.generation_for(operation=operation)
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        for case in schema.iter_coverage_cases(
            operation, generation_modes=modes, generation_config=generation
        ):
            send(case)

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies(operation, fuzz)))
        def run(case: Any) -> None:
            send(case)

        run()
    return seen


def _case(label: str) -> Any:
    if label in KNOWN_BUGS:
        return pytest.param(label, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[label]))
    return label


async def _seeded(start_web: StartWeb, folder: Path) -> WebEnv:
    """A gateway whose sender A has return files in OUT and a GO pending in IN (no pipeline
    takes it: the set stays received); small limits, so that a generated body reaches them."""
    web = await start_web(max_file_bytes=64 * 1024, quota=1024 * 1024, list_limit=2)
    for index, ack in enumerate(ACKS):
        data = b"<ack>" + bytes(range(256)) * (index + 1) + b"</ack>"
        place_return_file(web.spool.layout, SenderNumber(web.a.number), Folder.OUT, ack, data)
    (folder / "empty").write_bytes(b"")
    go = name("GO", web.a.number)
    stored = await curl(web, f"/IN/{go}", "--upload-file", str(folder / "empty"), folder=folder)
    assert stored.status == 201, (stored.body, stored.stderr)
    return web


async def _connections_closed(web: WebEnv) -> None:
    """Wait until the gateway has closed every connection (its side of a closed connection
    ends a few loop turns after the client's; aiohttp offers no event for it: polled, bounded)."""
    runner = web.gateway._runner
    assert runner is not None
    assert runner.server is not None
    for _ in range(500):
        if not runner.server.connections:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(runner.server.connections)} connections still open")


@pytest.mark.parametrize("label", [_case(label) for label in OPERATIONS])
async def test_operation_conforms(start_web: StartWeb, tmp_path: Path, label: str) -> None:
    """Generated requests to one operation get no 5xx and only answers the document describes."""
    web = await _seeded(start_web, tmp_path)
    pki = web.pki.a
    fuzz = Fuzz(
        base=web.url.removesuffix("/v1"),
        ca=str(web.server_ca),
        cert=(str(pki.cert), str(pki.key)),
        sender=web.a.number,
    )
    seen = await asyncio.to_thread(_fuzz, fuzz, label, _strategies)
    await _connections_closed(web)
    method, path = label.split(" ", 1)
    default = {403} if "/services/" in path else {204}
    wanted = REACHED.get(f"{'GET' if method == 'HEAD' else method} {path}", default)
    assert wanted <= set(seen), (label, dict(seen))


def _service_strategies(operation: Any, fuzz: Fuzz) -> list[Any]:
    """Generated requests, and the same for the service's own application, for a sender that
    is registered and subscribed (so that some are placed, replayed or refused with 928)."""
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    found: list[Any] = [operation.as_strategy(generation_mode=mode) for mode in modes]
    own = {"application": "DMFA"}
    found.append(operation.as_strategy(path_parameters=own))
    found.append(operation.as_strategy(path_parameters=own, query={"sender": fuzz.sender}))
    sender = {"sender": fuzz.sender}
    reused = {"Idempotency-Key": "key-1"}  # another request each time: 928 (409)
    found.append(operation.as_strategy(path_parameters=own, query=sender, headers=reused))
    same = {"Idempotency-Key": "key-2"}  # one request, sent again: placed (201), replayed (200)
    found.append(
        operation.as_strategy(
            path_parameters=own,
            query={**sender, "environment": "R", "kind": "NOTI"},
            headers=same,
            body=b"<Notification/>",
            media_type="application/xml",
        )
    )
    return found


@pytest.mark.parametrize("label", [_case(label) for label in SERVICE_REACHED])
async def test_service_api_conforms(
    start_web: StartWeb, service_pki: tuple[Identity, Identity], tmp_path: Path, label: str
) -> None:
    """The service API, fuzzed with the DMFA online service's certificate: no 5xx, and only
    answers the document describes."""
    dmfa, dimn = service_pki
    catalogue = catalogue_with_clients(tmp_path / "config", dmfa, dimn)
    clients = load_service_clients(load_service_catalogue(catalogue))
    web = await start_web(services=service_desk(clients))
    fuzz = Fuzz(
        base=web.url.removesuffix("/v1"),
        ca=str(web.server_ca),
        cert=(str(dmfa.cert), str(dmfa.key)),
        sender=web.a.number,
    )
    seen = await asyncio.to_thread(_fuzz, fuzz, label, _service_strategies)
    await _connections_closed(web)
    assert SERVICE_REACHED[label] <= set(seen), (label, dict(seen))
