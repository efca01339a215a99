"""What every console screen shares: templates, languages, who is signed in, and the answers.

Rules (issue 13 §2-3; SECURITY.md 2, 7):

- **Escaped output.** Jinja2 with autoescape on for every template; no template marks data
  ``safe``. The CSP forbids inline script and style, so pages use ``static/console.css`` and
  ``static/console.js`` only (the script is progressive enhancement: every form works without it).
- **Languages.** nl, fr, de, en from the gettext catalogues under ``locale/`` (Babel; the ``.mo``
  files are committed beside their ``.po``, and a test checks that they match). A signed-in
  person's language is the session's (picked at sign-in or in the header, remembered through
  ``set_console_language``); before sign-in it is the ``lang`` query or form field, else the
  browser's ``Accept-Language``, else Dutch.
- **A console session only.** A page needs a console session (an API token is no console
  login); without one it sends the browser to the sign-in page. While the password is temporary
  (``must_change_password``) every page but the password page sends the person there.
- **The registry decides.** Screens call the registry with ``actor=`` the signed-in login and
  show its refusal's message; nothing here re-implements a rule. Anything outside the person's
  enterprise, or a quality they do not manage, is the same 404 page as what does not exist.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from babel.core import Locale, UnknownLocaleError
from babel.support import NullTranslations, Translations

from gateway.admin.auth import GRANT, SECRET
from gateway.admin.server import PLANE, AdminPlane
from gateway.registry.consoles import AccountView, Grant
from gateway.registry.types import QualityRef, Refusal
from gateway.registry.validate import (
    PASSWORD_MIN_DIGITS_OR_SPECIALS,
    PASSWORD_MIN_LENGTH,
    PASSWORD_SPECIALS,
)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LOCALE = HERE / "locale"
DOMAIN = "console"
LANGUAGES = ("nl", "fr", "de", "en")
DEFAULT_LANGUAGE = "nl"
LANGUAGE_NAMES = {"nl": "Nederlands", "fr": "Français", "de": "Deutsch", "en": "English"}

BASE = "/admin/console"
POLICY = {
    "min_length": PASSWORD_MIN_LENGTH,
    "min_count": PASSWORD_MIN_DIGITS_OR_SPECIALS,
    "specials": PASSWORD_SPECIALS,
}
"""The password policy as the registry states it, for the pages that show it."""
LOGIN_COOKIE = "__Host-bg-login"
"""The sign-in form's double-submit token (there is no session yet to hold a CSRF token)."""


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue; it is translated where it is shown."""
    return message


@functools.cache
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of ``language`` (English: the message ids themselves)."""
    return Translations.load(str(LOCALE), [language], domain=DOMAIN)


@functools.cache
def environment(language: str) -> jinja2.Environment:
    """The template environment for ``language`` (one per language, made once)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["BASE"] = BASE
    env.globals["LANGUAGES"] = LANGUAGES
    env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES
    return env


def gettext(language: str, message: str) -> str:
    """``message`` in ``language`` (for text built outside a template)."""
    return str(translations(language).gettext(message))


def browser_language(request: web.Request) -> str:
    """The language of an anonymous page: ``lang`` asked for, else the browser's, else nl."""
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return asked
    header = request.headers.get("Accept-Language", "")
    wanted = [part.split(";")[0].strip().replace("-", "_") for part in header.split(",")][:8]
    try:
        found = Locale.negotiate([w for w in wanted if w], list(LANGUAGES), sep="_")
    except (ValueError, UnknownLocaleError):
        found = None
    return found.language if found is not None else DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True, kw_only=True)
class Me:
    """The signed-in person for one request: grant, account, and what they manage."""

    grant: Grant
    account: AccountView
    secret: str
    qualities: tuple[QualityRef, ...]

    @property
    def login(self) -> str:
        """The actor of every registry call."""
        return self.grant.login

    @property
    def language(self) -> str:
        """The session's language."""
        return self.grant.language if self.grant.language in LANGUAGES else DEFAULT_LANGUAGE

    @property
    def is_htb(self) -> bool:
        """Whether the person is the enterprise's HTB (for the menu only; the registry
        decides every action)."""
        return any(role == "HTB" for role, _ in self.account.roles)

    def quality(self, kind: str) -> QualityRef | None:
        """The quality ``kind`` of the person's enterprise when they manage it, else None."""
        for ref in self.qualities:
            if ref.kind == kind:
                return ref
        return None


def render(
    request: web.Request,
    template: str,
    *,
    me: Me | None = None,
    language: str | None = None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """A page in the person's language."""
    lang = me.language if me is not None else (language or browser_language(request))
    env = environment(lang)
    body = env.get_template(template).render(
        me=me,
        lang=lang,
        csrf=me.grant.csrf if me is not None else "",
        path=request.path,
        policy=POLICY,
        **context,
    )
    return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")


def redirect(location: str, **query: str) -> web.Response:
    """303 See Other to a console path (never to another site: callers pass fixed paths)."""
    if query:
        location += "?" + urlencode(query)
    return web.Response(status=303, headers={"Location": location})


def not_found(request: web.Request, me: Me | None = None) -> web.Response:
    """The one answer for what does not exist or is another enterprise's."""
    return render(request, "not_found.html", me=me, status=404)


Screen = Callable[[web.Request, Me], Awaitable[web.StreamResponse]]


async def who(request: web.Request, *, forced: bool = False) -> Me | web.Response:
    """The signed-in person, or the answer that sends the browser to sign in (or, while the
    password is temporary, to the password page unless ``forced`` is this page)."""
    grant = request.get(GRANT)
    if grant is None or grant.token_id is not None or SECRET not in request:
        return redirect(f"{BASE}/login")
    plane = request.app[PLANE]
    account = await plane.registry.account(grant.login)
    if account is None:
        return redirect(f"{BASE}/login")
    if account.must_change_password and not forced:
        return redirect(f"{BASE}/password")
    qualities = tuple(await plane.registry.manages(grant.login))
    return Me(grant=grant, account=account, secret=request[SECRET], qualities=qualities)


def screen(handler: Screen) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page for a signed-in person (see :func:`who`)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        me = await who(request)
        if isinstance(me, web.Response):
            return me
        return await handler(request, me)

    return wrapped


def quality_screen(
    handler: Callable[[web.Request, Me, QualityRef], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page under ``/q/{quality}/``: 404 unless the person manages that quality."""

    @screen
    @functools.wraps(handler)
    async def wrapped(request: web.Request, me: Me) -> web.StreamResponse:
        quality = me.quality(request.match_info["quality"])
        if quality is None:
            return not_found(request, me)
        return await handler(request, me, quality)

    return wrapped


def plane_of(request: web.Request) -> AdminPlane:
    """The admin plane (registry, settings, trace)."""
    return request.app[PLANE]


async def form(request: web.Request) -> Mapping[str, Any]:
    """The posted form (parsed once; the CSRF check read it already)."""
    return await request.post()


def form_text(data: Mapping[str, Any], name: str, limit: int = 4000) -> str:
    """A text field of a form ('' when absent or a file), cut at ``limit`` characters."""
    value = data.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


def texts(data: Any, name: str, limit: int = 200) -> list[str]:
    """Every value of a repeated text field (checkboxes), at most ``limit``."""
    values = data.getall(name, []) if hasattr(data, "getall") else []
    return [v for v in values if isinstance(v, str)][:limit]


def refusal_view(refusal: Refusal) -> dict[str, str]:
    """A refusal for the templates: its stable reason and the registry's message."""
    return {"reason": refusal.reason, "message": refusal.message}


def new_login_token() -> str:
    """A fresh double-submit token for the sign-in form."""
    return secrets.token_urlsafe(24)
