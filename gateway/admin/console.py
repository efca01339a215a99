"""The access-management console: server-rendered pages under ``/admin/console/`` on the admin
listener (issue 13 §2), in the guide's order (domain/000_36f6d54a4c1c892a.txt).

The screens live in one module each; the shared machinery (templates, languages, who is signed
in, the 404) in :mod:`gateway.admin.console_core`, whose docstring states the rules:

- :mod:`~gateway.admin.console_login`: sign-in (password, TOTP code, eID), activation notice,
  sign-out, language, home with the quality selector, "My password", TOTP enrolment;
- :mod:`~gateway.admin.console_users`: Gebruikers;
- :mod:`~gateway.admin.console_managers`: Beheerders;
- :mod:`~gateway.admin.console_structured`: Gestructureerde berichten (the wizard);
- :mod:`~gateway.admin.console_revoke`: the wizard's removals (key, channel, certificate) and the
  technical user's replacement, each after a confirmation;
- :mod:`~gateway.admin.console_tokens`: API tokens of a quality (make, list, revoke);
- :mod:`~gateway.admin.console_enterprise`: the password-login switch, activating a quality,
  Activity, Where is my file?
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin import (
    console_enterprise,
    console_login,
    console_managers,
    console_revoke,
    console_structured,
    console_tokens,
    console_users,
)
from gateway.admin.console_core import BASE, STATIC, Me, redirect, render, who
from gateway.admin.server import CSRF_PAGE


async def _bare(request: web.Request) -> web.StreamResponse:
    return redirect(f"{BASE}/")


async def _csrf_refused(request: web.Request) -> web.StreamResponse:
    """403 for a console form posted without its session's CSRF token (an old tab, or another
    site's form): a page in the person's language, nothing done."""
    me = await who(request, forced=True)
    return render(request, "csrf.html", me=me if isinstance(me, Me) else None, status=403)


def add_routes(app: web.Application) -> None:
    """Every console route, its stylesheet and script, and its CSRF refusal page."""
    app[CSRF_PAGE] = _csrf_refused
    app.router.add_get(BASE, _bare)
    for module in (
        console_login,
        console_users,
        console_managers,
        console_revoke,  # before the wizard's /structured/{step}, which /remove would match
        console_structured,
        console_tokens,
        console_enterprise,
    ):
        module.add_routes(app)
    app.router.add_static(f"{BASE}/static", STATIC, follow_symlinks=False)
