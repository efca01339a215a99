"""The console's doors: sign-in (password, TOTP code, eID), the activation notice, sign-out, the
language picker, the home page with the quality selector, "My password" and TOTP enrolment.

Rules:

- One refusal text for every failed sign-in (unknown login, wrong password, locked, blocked,
  password login switched off): the page does not tell which; the log does
  (``console.login_refused``).
- The sign-in forms carry a double-submit token (cookie :data:`LOGIN_COOKIE` = form field), so
  another site cannot sign a browser in to an account of its choosing.
- The HTB's first sign-in activates the enterprise (the registry does it); the page says so, as
  the guide does. A temporary password must be replaced before anything else.
"""

from __future__ import annotations

import hmac

import segno
from aiohttp import web

from gateway.admin.auth import (
    SignIn,
    clear_session,
    eid_sign_in,
    password_sign_in,
    set_session,
    totp_sign_in,
)
from gateway.admin.console_core import (
    BASE,
    LANGUAGES,
    LOGIN_COOKIE,
    Me,
    browser_language,
    form,
    form_text,
    new_login_token,
    plane_of,
    redirect,
    refusal_view,
    render,
    screen,
    who,
)
from gateway.admin.sessions import open_session
from gateway.registry.types import AuthFailure, Refusal


def _login_page(
    request: web.Request, language: str, *, status: int = 200, failed: bool = False
) -> web.Response:
    token = new_login_token()
    response = render(
        request,
        "login.html",
        language=language,
        status=status,
        failed=failed,
        login_token=token,
        eid=plane_of(request).config.eid_trust_dir is not None,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, path="/", secure=True, httponly=True, samesite="Strict"
    )
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """``GET /login``: the sign-in methods and the language picker."""
    me = await who(request, forced=True)
    if isinstance(me, Me):
        return redirect(f"{BASE}/")
    return _login_page(request, browser_language(request))


def _token_ok(request: web.Request, presented: str) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, presented)


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /login``: a password or a TOTP code."""
    plane = plane_of(request)
    data = await form(request)
    picked = form_text(data, "lang", 2)
    language = picked if picked in LANGUAGES else browser_language(request)
    if not _token_ok(request, form_text(data, "login_token", 100)):
        return _login_page(request, language, status=403, failed=True)
    login_name = form_text(data, "login", 64).strip()
    before = await plane.registry.account(login_name) if login_name else None
    signed: SignIn | AuthFailure
    if form_text(data, "method", 10) == "totp":
        code = form_text(data, "code", 12).strip()
        signed = await totp_sign_in(plane.registry, login_name, code, pacing=plane.config.pacing)
    else:
        password = form_text(data, "password", 256)
        signed = await password_sign_in(
            plane.registry, login_name, password, pacing=plane.config.pacing
        )
    if isinstance(signed, AuthFailure):
        return _login_page(request, language, status=401, failed=True)
    activated = before is not None and before.enterprise_status == "pending"
    return await _signed_in(request, signed, picked if picked in LANGUAGES else None, activated)


async def login_eid(request: web.Request) -> web.StreamResponse:
    """``POST /login/eid``: the eID client certificate of this TLS connection."""
    plane = plane_of(request)
    data = await form(request)
    picked = form_text(data, "lang", 2)
    language = picked if picked in LANGUAGES else browser_language(request)
    if not _token_ok(request, form_text(data, "login_token", 100)):
        return _login_page(request, language, status=403, failed=True)
    signed = await eid_sign_in(plane.registry, request)
    if isinstance(signed, AuthFailure):
        return _login_page(request, language, status=401, failed=True)
    # The guide's Belgian HTB activates the enterprise with its eID: the first sign-in does it.
    activated = await plane.registry.activate_at_first_login(signed.login)
    return await _signed_in(request, signed, picked if picked in LANGUAGES else None, activated)


async def _signed_in(
    request: web.Request, signed: SignIn, picked: str | None, activated: bool
) -> web.StreamResponse:
    plane = plane_of(request)
    secret, _ = await open_session(plane, signed, picked)
    if picked is not None:
        await plane.registry.set_console_language(secret, picked)
    account = await plane.registry.account(signed.login)
    response: web.Response
    if activated and account is not None:
        language = picked or account.language
        response = render(
            request,
            "activated.html",
            language=language if language in LANGUAGES else None,
            account=account,
            must_change=account.must_change_password,
        )
    else:
        must_change = account is not None and account.must_change_password
        response = redirect(f"{BASE}/password" if must_change else f"{BASE}/")
    set_session(response, secret, plane.config)
    response.del_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout``: the session ends at once."""
    me = await who(request, forced=True)
    if isinstance(me, Me):
        await plane_of(request).registry.close_console(me.secret)
    response = redirect(f"{BASE}/login", done="logout")
    clear_session(response)
    return response


async def language(request: web.Request) -> web.StreamResponse:
    """``POST /language``: remember the picked language (this session and the next)."""
    me = await who(request, forced=True)
    if not isinstance(me, Me):
        return me
    picked = form_text(await form(request), "lang", 2)
    if picked in LANGUAGES:
        await plane_of(request).registry.set_console_language(me.secret, picked)
    back = form_text(await form(request), "back", 200)
    return redirect(back if back.startswith(f"{BASE}/") and "//" not in back else f"{BASE}/")


@screen
async def home(request: web.Request, me: Me) -> web.StreamResponse:
    """``GET /``: the quality selector and the enterprise's menu."""
    return render(request, "home.html", me=me, done=request.query.get("done", ""))


async def password_page(request: web.Request) -> web.StreamResponse:
    """``GET /password``: "My password" (forced while the password is temporary)."""
    me = await who(request, forced=True)
    if not isinstance(me, Me):
        return me
    return render(request, "password.html", me=me, refusal=None)


async def change_password(request: web.Request) -> web.StreamResponse:
    """``POST /password``: the registry checks the old password and the policy."""
    me = await who(request, forced=True)
    if not isinstance(me, Me):
        return me
    data = await form(request)
    new = form_text(data, "new", 256)
    refusal: Refusal | None
    if new != form_text(data, "confirm", 256):
        refusal = Refusal("mismatch", "")
    else:
        refusal = await plane_of(request).registry.change_password(
            login=me.login, old=form_text(data, "old", 256), new=new
        )
    if refusal is not None:
        return render(
            request,
            "password.html",
            me=me,
            refusal=refusal_view(refusal),
            status=422,
        )
    return redirect(f"{BASE}/", done="password")


@screen
async def totp_page(request: web.Request, me: Me) -> web.StreamResponse:
    """``GET /totp``: a new secret as a QR code, to confirm with a first code."""
    secret = plane_of(request).registry.new_totp_secret()
    return _totp(request, me, secret, None, 200)


def _totp(
    request: web.Request, me: Me, secret: str, refusal: Refusal | None, status: int
) -> web.Response:
    uri = plane_of(request).registry.totp_uri(me.login, secret)
    qr = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    return render(
        request,
        "totp.html",
        me=me,
        secret=secret,
        qr=qr,
        refusal=refusal_view(refusal) if refusal else None,
        status=status,
    )


@screen
async def enroll_totp(request: web.Request, me: Me) -> web.StreamResponse:
    """``POST /totp``: bind the secret once a current code proves the app has it."""
    data = await form(request)
    secret = form_text(data, "secret", 64)
    if not secret.isalnum() or not secret.isascii():
        secret = plane_of(request).registry.new_totp_secret()
        return _totp(request, me, secret, Refusal("invalid", ""), 422)
    refusal = await plane_of(request).registry.enroll_totp(
        login=me.login, secret=secret, code=form_text(data, "code", 12).strip()
    )
    if refusal is not None:
        return _totp(request, me, secret, refusal, 422)
    return redirect(f"{BASE}/", done="totp")


def add_routes(app: web.Application) -> None:
    """Sign-in, sign-out, language, home, password and TOTP."""
    app.router.add_get(f"{BASE}/login", login_page)
    app.router.add_post(f"{BASE}/login", login)
    app.router.add_post(f"{BASE}/login/eid", login_eid)
    app.router.add_post(f"{BASE}/logout", logout)
    app.router.add_post(f"{BASE}/language", language)
    app.router.add_get(f"{BASE}/", home)
    app.router.add_get(f"{BASE}/password", password_page)
    app.router.add_post(f"{BASE}/password", change_password)
    app.router.add_get(f"{BASE}/totp", totp_page)
    app.router.add_post(f"{BASE}/totp", enroll_totp)
