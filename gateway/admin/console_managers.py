"""Beheerders: who manages the enterprise, and appointing or dismissing co-HTBs, the TB of a
quality and co-TBs.

The page lists the enterprise's appointments and offers every appointment; the registry decides
each one (``appoint``/``dismiss`` with the signed-in actor) and, when it refuses, its reason is
shown beside the form: the console holds no copy of the rule table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.admin.console_core import (
    BASE,
    N_,
    Me,
    form,
    form_text,
    not_found,
    plane_of,
    redirect,
    refusal_view,
    render,
    screen,
)
from gateway.registry.service import UserView
from gateway.registry.types import QualityRef, Refusal, Role

ROLE_NAMES: dict[str, str] = {
    Role.htb.value: N_("Main access manager (HTB)"),
    Role.co_htb.value: N_("Co-main access manager (co-HTB)"),
    Role.tb.value: N_("Access manager (TB)"),
    Role.co_tb.value: N_("Co-access manager (co-TB)"),
}
APPOINTABLE = (Role.co_htb, Role.tb, Role.co_tb)


async def _page(
    request: web.Request,
    me: Me,
    *,
    refusal: Refusal | None = None,
    status: int = 200,
    done: str = "",
) -> web.Response:
    registry = plane_of(request).registry
    view = await registry.enterprise(actor=me.login, kbo=me.account.enterprise)
    if isinstance(view, Refusal):
        return not_found(request, me)
    candidates: dict[str, UserView] = {}
    for quality in me.qualities:
        listed = await registry.users(actor=me.login, quality=quality)
        if isinstance(listed, Refusal):
            continue
        for user in listed:
            if user.kind == "user" and user.status == "active":
                candidates.setdefault(user.login, user)
    return render(
        request,
        "managers.html",
        me=me,
        enterprise=view,
        roles=ROLE_NAMES,
        appointable=[r.value for r in APPOINTABLE],
        candidates=sorted(candidates.values(), key=lambda u: u.login),
        refusal=refusal_view(refusal) if refusal is not None else None,
        done=done or request.query.get("done", ""),
        status=status,
    )


@screen
async def managers(request: web.Request, me: Me) -> web.StreamResponse:
    """``GET /managers``."""
    return await _page(request, me)


def _role_and_quality(me: Me, data: Mapping[str, Any]) -> tuple[Role, QualityRef | None] | None:
    role = form_text(data, "role", 10)
    kind = form_text(data, "quality", 40)
    if role not in {r.value for r in Role}:
        return None
    quality = None
    if kind:
        quality = me.quality(kind) or QualityRef(me.account.enterprise, kind)
    return Role(role), quality


@screen
async def appoint(request: web.Request, me: Me) -> web.StreamResponse:
    """``POST /managers/appoint``: the registry appoints or says why not."""
    data = await form(request)
    chosen = _role_and_quality(me, data)
    if chosen is None:
        return await _page(request, me, refusal=Refusal("invalid", ""), status=422)
    role, quality = chosen
    refusal = await plane_of(request).registry.appoint(
        actor=me.login, role=role, login=form_text(data, "login", 64), quality=quality
    )
    if refusal is not None:
        return await _page(request, me, refusal=refusal, status=422)
    return redirect(f"{BASE}/managers", done="appointed")


@screen
async def dismiss(request: web.Request, me: Me) -> web.StreamResponse:
    """``POST /managers/dismiss``."""
    data = await form(request)
    chosen = _role_and_quality(me, data)
    if chosen is None:
        return await _page(request, me, refusal=Refusal("invalid", ""), status=422)
    role, quality = chosen
    refusal = await plane_of(request).registry.dismiss(
        actor=me.login, role=role, login=form_text(data, "login", 64), quality=quality
    )
    if refusal is not None:
        return await _page(request, me, refusal=refusal, status=422)
    return redirect(f"{BASE}/managers", done="dismissed")


def add_routes(app: web.Application) -> None:
    """The Beheerders screens."""
    app.router.add_get(f"{BASE}/managers", managers)
    app.router.add_post(f"{BASE}/managers/appoint", appoint)
    app.router.add_post(f"{BASE}/managers/dismiss", dismiss)
