"""schemathesis against the running admin API: every operation of the document served at
``/admin/api/v1/openapi.json``, with an API token of enterprise 0's HTB, a bounded number of
generated requests each (deterministic, no shrinking). No answer may be a 5xx, and every answer
must be one the document describes: its status, media type, headers and body schema.

The listener runs in the test's event loop; schemathesis (synchronous: requests, hypothesis)
runs in a worker thread. Each operation is its own test so that a failure names it. Besides
fully generated requests (positive and negative), one strategy fixes the path parameters to the
token's own enterprise, quality and users, so that the bodies are fuzzed past the 404 of the
scope checks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
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
)

from gateway.admin import openapi
from gateway.pipeline.trace import TraceReport
from tests.admin.admin_env import AdminEnv
from tests.admin.test_api import _set
from tests.pipeline.provision import ok

pytestmark = pytest.mark.timeout(180)

EXAMPLES = 20
"""Generated requests per strategy: bounded, so the module stays under a minute."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in openapi.document()["paths"].items()
    for method in item
)


@dataclass(frozen=True)
class Fuzz:
    """What the worker thread needs: where the listener is and how to talk to it."""

    base: str
    ca: str
    token: str
    own: dict[str, str]
    """Path values naming the token's own things."""


def _fuzz(fuzz: Fuzz, label: str) -> Counter[int]:
    """Load the served document and run ``label``'s strategies against the listener (blocking);
    returns how many answers of each status it got."""
    schema = schemathesis.openapi.from_url(f"{fuzz.base}/admin/api/v1/openapi.json", verify=fuzz.ca)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(generation_mode=mode) for mode in modes]
    names = [p.name for p in operation.path_parameters]
    if names and all(n in fuzz.own for n in names):
        fixed = {n: fuzz.own[n] for n in names}
        strategies += [
            operation.as_strategy(path_parameters=fixed, generation_mode=mode) for mode in modes
        ]
    seen: Counter[int] = Counter()
    with requests.Session() as session:

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def run(case: Any) -> None:
            response = case.call_and_validate(
                base_url=fuzz.base,
                session=session,
                checks=CHECKS,
                headers={"Authorization": f"Bearer {fuzz.token}"},
                verify=fuzz.ca,
                timeout=30,
            )
            seen[response.status_code] += 1

        run()
    return seen


async def _connections_closed(admin: AdminEnv) -> None:
    """Wait until the listener has seen every client connection end (requests closes without a
    TLS close_notify; the server side closes a few loop turns later). Polled, bounded: aiohttp
    offers no event for it."""
    runner = admin.gateway._runner
    assert runner is not None
    for _ in range(500):
        if not runner.server.connections:  # type: ignore[union-attr]
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("label", OPERATIONS)
async def test_operation_conforms(admin: AdminEnv, label: str) -> None:
    """Generated requests to one operation get no 5xx and only answers the document describes."""
    mine = admin.senders[0]
    issued = ok(
        await admin.registry.issue_token(actor=mine.htb, quality=mine.quality, name="fuzz", days=30)
    )

    async def trace(query: str) -> TraceReport:
        report = TraceReport(query=query)
        report.sets.append(_set(mine.number, query))
        return report

    admin.gateway.plane.trace = trace
    fuzz = Fuzz(
        base=admin.url,
        ca=str(admin.ca),
        token=issued.secret,
        own={
            "kbo": mine.quality.enterprise,
            "kind": "employer",
            "login": mine.login,
            "role": "co-TB",
            "channel": "sftp",
            "fingerprint": "ab" * 32,
            "token_id": str(issued.id),
            "query": "FI.DMFA.000000.20260115.00001.R.1.1",
        },
    )
    seen = await asyncio.to_thread(_fuzz, fuzz, label)
    print(label, dict(sorted(seen.items())))
    await _connections_closed(admin)
