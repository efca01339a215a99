"""The admin API as a script sees it: curl with a token or a console session, JSON bodies.

A console session is opened through the registry (as a sign-in would; signing in itself is
tests/admin/test_sign_in.py's subject) and sent as its cookie with its CSRF token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.admin.api import BASE
from gateway.admin.auth import COOKIE, CSRF_HEADER
from gateway.registry.types import QualityRef
from tests.admin.admin_env import AdminEnv, Answer, curl
from tests.pipeline.provision import ok


@dataclass(frozen=True)
class Credential:
    """How a request authenticates: a token, or a session's cookie and CSRF token."""

    headers: tuple[str, ...]


async def token_for(env: AdminEnv, login: str, quality: QualityRef) -> Credential:
    """A fresh API token of ``login`` for ``quality``."""
    made = await env.registry.issue_token(actor=login, quality=quality, name="script", days=30)
    issued = ok(made)
    return Credential(("-H", f"Authorization: Bearer {issued.secret}"))


async def session_for(env: AdminEnv, login: str) -> Credential:
    """A console session of ``login`` (with its CSRF token on every request)."""
    secret = await env.registry.open_console(login, method="password")
    config = env.gateway.plane.config
    grant = await env.registry.console_grant(
        secret, idle=config.session_idle, lifetime=config.session_lifetime
    )
    assert grant is not None
    return Credential(("-H", f"Cookie: {COOKIE}={secret}", "-H", f"{CSRF_HEADER}: {grant.csrf}"))


async def api(
    env: AdminEnv, method: str, path: str, body: Any = None, *, auth: Credential | None = None
) -> Answer:
    """One request to ``/admin/api/v1`` + ``path``."""
    args: list[str] = []
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    if auth is not None:
        args += list(auth.headers)
    return await curl(env, method, BASE + path, *args)


def data(answer: Answer) -> dict[str, Any]:
    """The answer's JSON object."""
    body = answer.json()
    assert isinstance(body, dict), answer
    return body
