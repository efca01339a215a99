"""Gebruikers: the users of one quality, in the guide's words.

- the list, with a search over login and name and pages of :data:`PAGE_SIZE`;
- "Een gebruiker toevoegen" (add a user): the registry makes the login when none is asked for and
  a temporary password, shown once;
- the key icon ("Het wachtwoord wijzigen"): a new temporary password from the registry, shown
  once, to hand over; the user must change it at the next sign-in;
- select several, pick "Gebruiker(s) blokkeren / deblokkeren / verwijderen", "Uitvoeren": a
  confirmation page first, then each user's outcome (done, or the registry's reason).

A user who is not in this quality's list (another quality's, another enterprise's, or nobody's)
is the console's 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.admin.console_core import (
    BASE,
    N_,
    Me,
    form,
    form_text,
    not_found,
    plane_of,
    quality_screen,
    refusal_view,
    render,
    texts,
)
from gateway.registry.service import UserView
from gateway.registry.types import IssuedPassword, Person, QualityRef, Refusal

PAGE_SIZE = 20
MAX_SELECTED = 100

BULK_ACTIONS: dict[str, str] = {
    "block": N_("Block user(s)"),
    "unblock": N_("Unblock user(s)"),
    "delete": N_("Delete user(s)"),
}


def _users_url(quality: QualityRef) -> str:
    return f"{BASE}/q/{quality.kind}/users"


async def _users(request: web.Request, me: Me, quality: QualityRef) -> list[UserView] | Refusal:
    return await plane_of(request).registry.users(actor=me.login, quality=quality)


@quality_screen
async def users(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``GET /q/{quality}/users``: search and pages."""
    found = await _users(request, me, quality)
    if isinstance(found, Refusal):
        return not_found(request, me)
    search = request.query.get("search", "")[:100].strip()
    if search:
        needle = search.casefold()
        found = [u for u in found if needle in u.login.casefold() or needle in u.name.casefold()]
    try:
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        page = 1
    pages = max(1, -(-len(found) // PAGE_SIZE))
    page = min(page, pages)
    shown = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return render(
        request,
        "users.html",
        me=me,
        quality=quality,
        users=shown,
        total=len(found),
        search=search,
        page=page,
        pages=pages,
        actions=BULK_ACTIONS,
        done=request.query.get("done", ""),
    )


@quality_screen
async def add_user_page(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``GET /q/{quality}/users/new``: the form."""
    return render(request, "user_add.html", me=me, quality=quality, refusal=None, values={})


@quality_screen
async def add_user(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/users/new``: the registry creates the user with a temporary password."""
    data = await form(request)
    values = {
        name: form_text(data, name, 300).strip()
        for name in ("name", "email", "phone", "language", "nrn", "login")
    }
    person = Person(
        name=values["name"],
        email=values["email"],
        phone=values["phone"],
        language=values["language"] or me.language,
        national_register_number=values["nrn"] or None,
    )
    issued = await plane_of(request).registry.create_user(
        actor=me.login, quality=quality, person=person, login=values["login"] or None
    )
    if isinstance(issued, Refusal):
        return render(
            request,
            "user_add.html",
            me=me,
            quality=quality,
            refusal=refusal_view(issued),
            values=values,
            status=422,
        )
    return _issued(request, me, quality, issued, created=True)


def _issued(
    request: web.Request, me: Me, quality: QualityRef, issued: IssuedPassword, *, created: bool
) -> web.Response:
    return render(
        request,
        "user_password.html",
        me=me,
        quality=quality,
        issued_login=issued.login,
        issued_password=issued.password,
        created=created,
    )


async def _listed(request: web.Request, me: Me, quality: QualityRef, login: str) -> bool:
    found = await _users(request, me, quality)
    return not isinstance(found, Refusal) and any(u.login == login for u in found)


@quality_screen
async def new_password(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/users/{login}/password``: the key icon."""
    login = request.match_info["login"]
    if not await _listed(request, me, quality, login):
        return not_found(request, me)
    issued = await plane_of(request).registry.reset_password(actor=me.login, login=login)
    if isinstance(issued, Refusal):
        return render(
            request,
            "outcome.html",
            me=me,
            quality=quality,
            title=N_("New password"),
            results=[(login, refusal_view(issued))],
            back=_users_url(quality),
            status=422,
        )
    return _issued(request, me, quality, issued, created=False)


@quality_screen
async def user(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``GET /q/{quality}/users/{login}``: one user (404 unless in this quality's list)."""
    found = await _users(request, me, quality)
    login = request.match_info["login"]
    match = [] if isinstance(found, Refusal) else [u for u in found if u.login == login]
    if not match:
        return not_found(request, me)
    return render(request, "user.html", me=me, quality=quality, user=match[0])


async def _chosen(
    request: web.Request, me: Me, quality: QualityRef
) -> tuple[str, list[str]] | None:
    data = await form(request)
    action = form_text(data, "action", 20)
    chosen = sorted(set(texts(data, "login", MAX_SELECTED)))
    if action not in BULK_ACTIONS:
        return None
    return action, chosen


@quality_screen
async def bulk_confirm(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/users/bulk``: "Uitvoeren" asks for a confirmation first."""
    chosen = await _chosen(request, me, quality)
    if chosen is None or not chosen[1]:
        return render(
            request,
            "outcome.html",
            me=me,
            quality=quality,
            title=N_("Nothing to do"),
            results=[],
            nothing=True,
            back=_users_url(quality),
            status=422,
        )
    action, logins = chosen
    found = await _users(request, me, quality)
    listed = {u.login: u for u in found} if not isinstance(found, Refusal) else {}
    if any(login not in listed for login in logins):
        return not_found(request, me)
    return render(
        request,
        "users_confirm.html",
        me=me,
        quality=quality,
        action=action,
        label=BULK_ACTIONS[action],
        chosen=[listed[login] for login in logins],
    )


@quality_screen
async def bulk_run(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/users/bulk/run``: each user through the registry; each outcome."""
    chosen = await _chosen(request, me, quality)
    if chosen is None:
        return not_found(request, me)
    action, logins = chosen
    if not await _all_listed(request, me, quality, logins):
        return not_found(request, me)
    registry = plane_of(request).registry
    operation: Callable[..., Awaitable[Refusal | None]] = {
        "block": registry.block_user,
        "unblock": registry.unblock_user,
        "delete": registry.delete_user,
    }[action]
    results: list[tuple[str, dict[str, str] | None]] = []
    for login in logins:
        refusal = await operation(actor=me.login, login=login)
        results.append((login, refusal_view(refusal) if refusal is not None else None))
    return render(
        request,
        "outcome.html",
        me=me,
        quality=quality,
        title=BULK_ACTIONS[action],
        results=results,
        back=_users_url(quality),
    )


async def _all_listed(request: web.Request, me: Me, quality: QualityRef, logins: list[str]) -> bool:
    found = await _users(request, me, quality)
    listed = {u.login for u in found} if not isinstance(found, Refusal) else set()
    return all(login in listed for login in logins)


def add_routes(app: web.Application) -> None:
    """The Gebruikers screens."""
    q = f"{BASE}/q/{{quality}}/users"
    app.router.add_get(q, users)
    app.router.add_get(f"{q}/new", add_user_page)
    app.router.add_post(f"{q}/new", add_user)
    app.router.add_post(f"{q}/bulk", bulk_confirm)
    app.router.add_post(f"{q}/bulk/run", bulk_run)
    app.router.add_get(f"{q}/{{login}}", user)
    app.router.add_post(f"{q}/{{login}}/password", new_password)
