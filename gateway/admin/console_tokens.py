"""API tokens of one quality: the keys an access manager makes for scripts that call the admin API.

- the list shows every token of the quality (any of its managers sees them all: name, maker,
  made, expires, revoked), never a secret: the registry keeps only their SHA-256;
- "Make a token" (a name and a lifetime in days) calls ``issue_token``; the next page shows the
  secret once, with a warning that it is never shown again (the page is ``no-store``, as every
  admin answer);
- "Revoke" asks for a confirmation, then calls ``revoke_token``.

A token id that is not in this quality's list (another quality's, another enterprise's, or none)
is the console's 404, before the registry is asked to revoke anything.
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin.console_core import (
    BASE,
    Me,
    form,
    form_text,
    not_found,
    plane_of,
    quality_screen,
    redirect,
    refusal_view,
    render,
)
from gateway.registry.consoles import MAX_TOKEN_DAYS, TokenView
from gateway.registry.types import QualityRef, Refusal

DEFAULT_DAYS = 90


def _url(quality: QualityRef) -> str:
    return f"{BASE}/q/{quality.kind}/tokens"


async def _page(
    request: web.Request,
    me: Me,
    quality: QualityRef,
    *,
    refusal: Refusal | None = None,
    status: int = 200,
    name: str = "",
) -> web.Response:
    found = await plane_of(request).registry.tokens(actor=me.login, quality=quality)
    if isinstance(found, Refusal):
        return not_found(request, me)
    return render(
        request,
        "tokens.html",
        me=me,
        quality=quality,
        tokens=found,
        refusal=refusal_view(refusal) if refusal is not None else None,
        done=request.query.get("done", ""),
        name=name,
        default_days=DEFAULT_DAYS,
        max_days=MAX_TOKEN_DAYS,
        status=status,
    )


@quality_screen
async def tokens(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``GET /q/{quality}/tokens``: the list and the form."""
    return await _page(request, me, quality)


@quality_screen
async def make(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/tokens``: the registry makes the token; its secret is shown once."""
    data = await form(request)
    name = form_text(data, "name", 200).strip()
    try:
        days = int(form_text(data, "days", 6).strip() or DEFAULT_DAYS)
    except ValueError:
        days = 0  # the registry's refusal names the allowed range
    issued = await plane_of(request).registry.issue_token(
        actor=me.login, quality=quality, name=name, days=days
    )
    if isinstance(issued, Refusal):
        return await _page(request, me, quality, refusal=issued, status=422, name=name)
    return render(request, "token_issued.html", me=me, quality=quality, issued=issued)


async def _listed(request: web.Request, me: Me, quality: QualityRef) -> TokenView | None:
    """The token named in the path when this quality lists it, else None."""
    text = request.match_info["token_id"]
    if not text.isdigit() or len(text) > 12:
        return None
    found = await plane_of(request).registry.tokens(actor=me.login, quality=quality)
    if isinstance(found, Refusal):
        return None
    return next((t for t in found if t.id == int(text)), None)


@quality_screen
async def revoke_confirm(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/tokens/{token_id}/revoke``: the confirmation."""
    token = await _listed(request, me, quality)
    if token is None:
        return not_found(request, me)
    return render(request, "token_revoke.html", me=me, quality=quality, token=token)


@quality_screen
async def revoke(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/tokens/{token_id}/revoke/run``: the registry revokes it."""
    token = await _listed(request, me, quality)
    if token is None:
        return not_found(request, me)
    refusal = await plane_of(request).registry.revoke_token(actor=me.login, token_id=token.id)
    if refusal is not None:
        return await _page(request, me, quality, refusal=refusal, status=422)
    return redirect(_url(quality), done="revoked")


def add_routes(app: web.Application) -> None:
    """The API token screens."""
    q = f"{BASE}/q/{{quality}}/tokens"
    app.router.add_get(q, tokens)
    app.router.add_post(q, make)
    app.router.add_post(f"{q}/{{token_id}}/revoke", revoke_confirm)
    app.router.add_post(f"{q}/{{token_id}}/revoke/run", revoke)
