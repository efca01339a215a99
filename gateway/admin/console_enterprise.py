"""The enterprise's screens: the password-login switch (the HTB's), activating a quality (the
HTB's, "werkgever, dienstverrichter, sociaal secretariaat…": the registry's ``activate_quality``
for the person's own enterprise, which no form field can name), Activity (the enterprise's
audit trail, filterable) and "Where is my file?" (the pipeline's trace, limited to the senders of
the qualities the person manages: another sender's sets are not shown, not even as "not
yours")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.console_core import (
    BASE,
    N_,
    Me,
    form,
    form_text,
    plane_of,
    redirect,
    refusal_view,
    render,
    screen,
)
from gateway.registry.types import Refusal

ACTIVITY_PAGE = 25
ACTION_FILTERS = ("user.", "role.", "structured.", "enterprise.", "token.", "totp.", "quality.")
QUALITY_KINDS: dict[str, str] = {
    "employer": N_("Employer"),
    "service_provider": N_("Service provider"),
    "social_secretariat": N_("Social secretariat"),
}
"""The qualities the guide names, offered in the form (the registry checks the kind)."""


@screen
async def switch_page(request: web.Request, me: Me) -> web.StreamResponse:
    """``GET /password-login``: the switch and its state."""
    return render(request, "switch.html", me=me, refusal=None, done=request.query.get("done", ""))


@screen
async def switch(request: web.Request, me: Me) -> web.StreamResponse:
    """``POST /password-login``: the registry lets the HTB switch (anyone else: its reason)."""
    enabled = form_text(await form(request), "enabled", 3) == "on"
    refusal = await plane_of(request).registry.set_password_login(
        actor=me.login, kbo=me.account.enterprise, enabled=enabled
    )
    if refusal is not None:
        return render(
            request, "switch.html", me=me, refusal=refusal_view(refusal), done="", status=403
        )
    return redirect(f"{BASE}/password-login", done="on" if enabled else "off")


async def _quality_page(
    request: web.Request, me: Me, *, refusal: Refusal | None = None, status: int = 200
) -> web.Response:
    active = {q.kind for q in me.qualities}
    offered = {k: label for k, label in QUALITY_KINDS.items() if k not in active}
    return render(
        request,
        "quality_activate.html",
        me=me,
        offered=offered,
        refusal=refusal_view(refusal) if refusal is not None else None,
        status=status,
    )


@screen
async def quality_page(request: web.Request, me: Me) -> web.StreamResponse:
    """``GET /qualities/new``: the qualities not active yet."""
    return await _quality_page(request, me)


@screen
async def activate_quality(request: web.Request, me: Me) -> web.StreamResponse:
    """``POST /qualities/new``: the registry activates it for the HTB (anyone else: its reason)."""
    kind = form_text(await form(request), "kind", 40)
    made = await plane_of(request).registry.activate_quality(
        actor=me.login, kbo=me.account.enterprise, kind=kind
    )
    if isinstance(made, Refusal):
        status = 403 if made.reason == "forbidden" else 422
        return await _quality_page(request, me, refusal=made, status=status)
    return redirect(f"{BASE}/", done="quality")


@screen
async def activity(request: web.Request, me: Me) -> web.StreamResponse:
    """``GET /activity``: filter by actor, kind of action and target text; pages."""
    who = request.query.get("who", "")[:64].strip()
    action = request.query.get("action", "")
    action = action if action in ACTION_FILTERS else ""
    target = request.query.get("text", "")[:100].strip()
    try:
        page = max(1, min(1000, int(request.query.get("page", "1"))))
    except ValueError:
        page = 1
    found = await plane_of(request).registry.activity(
        actor=me.login,
        who=who,
        action=action,
        text=target,
        limit=ACTIVITY_PAGE,
        offset=(page - 1) * ACTIVITY_PAGE,
    )
    entries, more = ([], False) if isinstance(found, Refusal) else found
    return render(
        request,
        "activity.html",
        me=me,
        entries=entries,
        more=more,
        page=page,
        who=who,
        action=action,
        text=target,
        actions=ACTION_FILTERS,
        refusal=refusal_view(found) if isinstance(found, Refusal) else None,
    )


async def _senders(request: web.Request, me: Me) -> set[str]:
    view = await plane_of(request).registry.enterprise(actor=me.login, kbo=me.account.enterprise)
    if isinstance(view, Refusal):
        return set()
    mine = {q.kind for q in me.qualities}
    return {q.sender for q in view.qualities if q.kind in mine and q.sender is not None}


@screen
async def where(request: web.Request, me: Me) -> web.StreamResponse:
    """``GET /trace?q=``: a ticket or a file name, among the person's senders only."""
    query = request.query.get("q", "")[:120].strip()
    plane = plane_of(request)
    result: dict[str, list[Any]] | None = None
    if query and plane.trace is not None:
        senders = await _senders(request, me)
        report = await plane.trace(query)
        result = {
            "sets": [s for s in report.sets if s.sender in senders],
            "pending": [p for p in report.pending if p.get("sender") in senders],
            "refusals": [r for r in report.refusals if r.get("sender") in senders],
            "return_files": [r for r in report.return_files if r.get("sender") in senders],
        }
    return render(
        request,
        "trace.html",
        me=me,
        query=query,
        result=result,
        available=plane.trace is not None,
    )


def add_routes(app: web.Application) -> None:
    """The enterprise's screens."""
    app.router.add_get(f"{BASE}/password-login", switch_page)
    app.router.add_post(f"{BASE}/password-login", switch)
    app.router.add_get(f"{BASE}/qualities/new", quality_page)
    app.router.add_post(f"{BASE}/qualities/new", activate_quality)
    app.router.add_get(f"{BASE}/activity", activity)
    app.router.add_get(f"{BASE}/trace", where)
