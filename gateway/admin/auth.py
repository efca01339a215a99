"""Who is asking the admin plane, and how a person signs in.

Credentials (issue 13 §1-3; SECURITY.md 7):

- **API token**: ``Authorization: Bearer bgt_…`` (the admin API only). Any other scheme, or a
  token the registry does not grant, is 401; the header is never partly trusted.
- **Console session**: the cookie :data:`COOKIE` (``__Host-`` prefix: ``Secure``, ``Path=/``, no
  ``Domain``; ``HttpOnly``, ``SameSite=Strict``), which the registry resolves to a grant while the
  session is neither idle too long nor too old. A request that changes anything with a session
  (any method but GET, HEAD, OPTIONS) must carry the session's CSRF token, in the
  ``X-CSRF-Token`` header or the ``csrf`` form field; without it: 403. A token-authenticated
  request needs none (no ambient credential a browser could send).
- **Sign-in methods** (the guide's, emulated): a password where the enterprise allows password
  login; a TOTP code from an authenticator app once enrolled; an eID, that is a TLS client
  certificate verified against ``[admin] eid_trust_dir`` whose subject serial number is a
  national register number held by exactly one active account.
- **Lockout**: the registry's, shared with the SFTP and FTP password logins and held in its
  database (``gateway.registry.lockout``, ``[limits] login_lockout_*``): failed password or code
  sign-ins lock the account; the right password is refused while locked (the answer does not
  say which); a manager's unblock lifts it.
- **Pacing**: a failed password or code sign-in is answered only ``[limits]
  password_failure_seconds`` after it arrived (:mod:`gateway.ops.pacing`), as on SFTP and
  FTP, so a guesser cannot spin.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.admin.config import AdminConfig
from gateway.admin.problems import problem
from gateway.ops.pacing import FailurePacing
from gateway.registry.consoles import Grant
from gateway.registry.service import Registry
from gateway.registry.types import AuthFailure, PasswordCredential, Principal

log = structlog.get_logger("gateway.admin")

COOKIE = "__Host-bg-session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
GRANT: web.RequestKey[Grant] = web.RequestKey("grant", Grant)
SECRET: web.RequestKey[str] = web.RequestKey("session_secret", str)


@dataclass(frozen=True, slots=True)
class SignIn:
    """A successful sign-in: the account, and how."""

    login: str
    method: str
    must_change_password: bool = False


async def _paced(
    pacing: FailurePacing, attempt: Awaitable[SignIn | AuthFailure]
) -> SignIn | AuthFailure:
    """What ``attempt`` answers; a failure only once the pacing delay since now has passed."""
    arrived = pacing.arrived()
    signed = await attempt
    if isinstance(signed, AuthFailure):
        await pacing.answer_failure(arrived)
    return signed


async def password_sign_in(
    registry: Registry, login: str, password: str, *, pacing: FailurePacing
) -> SignIn | AuthFailure:
    """A password sign-in (the HTB's first one activates its enterprise); the registry applies
    the shared lockout; a failure is answered after ``pacing``'s delay."""
    return await _paced(pacing, _password_sign_in(registry, login, password))


async def _password_sign_in(registry: Registry, login: str, password: str) -> SignIn | AuthFailure:
    answer = await registry.console_login(login, PasswordCredential(password))
    if isinstance(answer, AuthFailure):
        log.info("console.login_refused", login=login[:64], reason=answer.reason)
        return answer
    return SignIn(answer.login, "password", must_change_password=_must_change(answer))


def _must_change(principal: Principal) -> bool:
    return principal.must_change_password


async def totp_sign_in(
    registry: Registry, login: str, code: str, *, pacing: FailurePacing
) -> SignIn | AuthFailure:
    """A sign-in with the current code of the account's authenticator app (a wrong code counts
    towards the registry's shared lockout); a failure is answered after ``pacing``'s delay."""
    return await _paced(pacing, _totp_sign_in(registry, login, code))


async def _totp_sign_in(registry: Registry, login: str, code: str) -> SignIn | AuthFailure:
    if await registry.login_locked(login):
        log.info("console.login_refused", login=login[:64], reason="locked")
        return AuthFailure("locked")
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        await registry.login_failed(login)
        return AuthFailure("bad_credential")
    if await registry.check_totp(login, code):
        await registry.login_succeeded(login)
        return SignIn(login, "totp")
    await registry.login_failed(login)
    log.info("console.login_refused", login=login[:64], reason="bad_code")
    return AuthFailure("bad_credential")


def national_number_of(der: bytes) -> str | None:
    """The subject serial number of an eID certificate, when it is 11 digits."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1:
        return None
    serial = str(values[0].value)
    return serial if serial.isascii() and serial.isdigit() and len(serial) == 11 else None


async def eid_sign_in(registry: Registry, request: web.BaseRequest) -> SignIn | AuthFailure:
    """A sign-in with the eID client certificate the TLS handshake verified."""
    tls: ssl.SSLObject | None = request.get_extra_info("ssl_object")
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if der is None:
        return AuthFailure("no_certificate")
    nrn = national_number_of(der)
    login = await registry.login_by_national_number(nrn) if nrn is not None else None
    if login is None:
        log.info("console.login_refused", reason="eid_unknown")
        return AuthFailure("unknown_certificate")
    return SignIn(login, "eid")


async def resolve(request: web.Request, registry: Registry, config: AdminConfig) -> Grant | None:
    """The grant of the request's token or session cookie, or None (anonymous)."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return None
        granted = await registry.token_grant(secret.strip())
        return None if isinstance(granted, AuthFailure) else granted
    secret = request.cookies.get(COOKIE, "")
    if not secret:
        return None
    grant = await registry.console_grant(
        secret, idle=config.session_idle, lifetime=config.session_lifetime
    )
    if grant is not None:
        request[SECRET] = secret
    return grant


async def csrf_presented(request: web.Request) -> str:
    """The CSRF token the request carries (header, else form field), or ''."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf")
        return value if isinstance(value, str) else ""
    return ""


def set_session(response: web.StreamResponse, secret: str, config: AdminConfig) -> None:
    """Give the browser its session cookie."""
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(config.session_lifetime.total_seconds()),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear_session(response: web.StreamResponse) -> None:
    """Take the session cookie back."""
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def unauthenticated() -> web.Response:
    """401 for the API (a token or a session is needed)."""
    return problem(
        401,
        "sign in to the console, or send an API token as 'Authorization: Bearer bgt_...'",
        headers={"WWW-Authenticate": 'Bearer realm="batch-gateway-admin"'},
    )
