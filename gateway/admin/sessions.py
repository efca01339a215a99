"""Sign-in over the API: ``POST /admin/api/v1/session`` (password or TOTP code), ``POST
/admin/api/v1/session/eid`` (the TLS client certificate), ``DELETE /admin/api/v1/session``, and
``GET /admin/api/v1/me``.

A sign-in answers 201 with the login, the session's CSRF token (to send as ``X-CSRF-Token`` with
every change) and whether the password must be changed first, and sets the session cookie. Every
failure is the same 401 (the reason stays in the log), so the answer tells no one whether a login
exists, is blocked, or is locked.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.admin.auth import (
    GRANT,
    SECRET,
    SignIn,
    clear_session,
    eid_sign_in,
    password_sign_in,
    set_session,
    totp_sign_in,
    unauthenticated,
)
from gateway.admin.problems import problem
from gateway.admin.server import PLANE, AdminPlane
from gateway.registry.types import AuthFailure

BASE = "/admin/api/v1"


class Credentials(BaseModel):
    """A password or a TOTP sign-in."""

    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=64)
    password: str | None = Field(default=None, max_length=256)
    code: str | None = Field(default=None, max_length=12)
    language: str | None = Field(default=None, pattern=r"^(nl|fr|de|en)$")


async def open_session(plane: AdminPlane, signed: SignIn, language: str | None) -> tuple[str, str]:
    """A console session for a sign-in: (secret, CSRF token)."""
    secret = await plane.registry.open_console(
        signed.login, method=signed.method, language=language
    )
    grant = await plane.registry.console_grant(
        secret, idle=plane.config.session_idle, lifetime=plane.config.session_lifetime
    )
    return secret, grant.csrf if grant is not None else ""


def _refused() -> web.Response:
    return problem(401, "sign-in refused: check the login and the password or code")


async def _answer(
    plane: AdminPlane, signed: SignIn | AuthFailure, language: str | None
) -> web.Response:
    if isinstance(signed, AuthFailure):
        return _refused()
    secret, csrf = await open_session(plane, signed, language)
    response = web.json_response(
        {
            "login": signed.login,
            "method": signed.method,
            "csrf": csrf,
            "must_change_password": signed.must_change_password,
        },
        status=201,
    )
    set_session(response, secret, plane.config)
    return response


async def sign_in(request: web.Request) -> web.StreamResponse:
    """``POST /admin/api/v1/session``."""
    plane = request.app[PLANE]
    try:
        body = Credentials.model_validate_json(await request.read())
    except ValidationError as exc:
        return problem(422, f"invalid sign-in: {exc.errors()[0]['msg']}", code="invalid")
    if (body.password is None) == (body.code is None):
        return problem(422, "send a password or a code, not both", code="invalid")
    if body.password is not None:
        signed = await password_sign_in(
            plane.registry, body.login, body.password, pacing=plane.config.pacing
        )
    else:
        signed = await totp_sign_in(
            plane.registry, body.login, body.code or "", pacing=plane.config.pacing
        )
    return await _answer(plane, signed, body.language)


async def sign_in_eid(request: web.Request) -> web.StreamResponse:
    """``POST /admin/api/v1/session/eid``: the client certificate of this TLS connection."""
    plane = request.app[PLANE]
    signed = await eid_sign_in(plane.registry, request)
    if not isinstance(signed, AuthFailure):  # the HTB's first sign-in activates its enterprise
        await plane.registry.activate_at_first_login(signed.login)
    return await _answer(plane, signed, None)


async def sign_out(request: web.Request) -> web.StreamResponse:
    """``DELETE /admin/api/v1/session``: the session ends at once."""
    plane = request.app[PLANE]
    if SECRET in request:
        await plane.registry.close_console(request[SECRET])
    response = web.Response(status=204)
    clear_session(response)
    return response


async def me(request: web.Request) -> web.StreamResponse:
    """``GET /admin/api/v1/me``: the account, its roles, and the grant's reach."""
    grant = request.get(GRANT)
    if grant is None:
        return unauthenticated()
    account = await request.app[PLANE].registry.account(grant.login)
    if account is None:
        return unauthenticated()
    body = asdict(account)
    body["roles"] = [{"role": role, "quality": quality} for role, quality in account.roles]
    body["token"] = {"id": grant.token_id, "quality": grant.quality.kind} if grant.quality else None
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    """The sign-in routes."""
    app.router.add_post(f"{BASE}/session", sign_in)
    app.router.add_post(f"{BASE}/session/eid", sign_in_eid)
    app.router.add_delete(f"{BASE}/session", sign_out)
    app.router.add_get(f"{BASE}/me", me)
