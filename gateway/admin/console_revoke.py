"""Revoking in the structured-message wizard: "every step can be revisited, and a credential can
be revoked" (issue 13 §2).

- step 1: replace the technical user (the old one is deleted, so its logins and open sessions
  end; the channels and the sender number stay);
- step 2: remove one SSH key (shown by its ``SHA256:`` fingerprint, as ``ssh-keygen -lf`` prints
  it) or a whole channel (SFTP, FTP, web service);
- step 3: remove a signing certificate (sets signed with it are then refused with 153).

Each removal is two posts, like the bulk user actions: the step's button asks for a confirmation
page that names what goes, and only its "Confirm" calls the registry (``remove_ssh_key``,
``remove_channel``, ``remove_signing_certificate``, ``replace_technical_user``, with ``actor=``
the signed-in login). The confirmation is only offered for what the quality's overview lists
(anything else is the console's 404, and the quality is one the person manages); the "Confirm"
goes to the registry as it is, which decides, and when it refuses (another manager removed it in
between, the person may not configure this quality) the step shows its reason.
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
    quality_screen,
    redirect,
    render,
)
from gateway.admin.console_structured import structured_page
from gateway.registry.revocation import hex_fingerprint, ssh_fingerprint
from gateway.registry.structured import Overview
from gateway.registry.types import ChannelKind, Person, QualityRef, Refusal

WHAT: dict[str, tuple[str, str]] = {
    "ssh_key": ("channel", N_("Remove an SSH key")),
    "channel": ("channel", N_("Remove a channel")),
    "certificate": ("certificate", N_("Remove a signing certificate")),
    "technical": ("technical", N_("Replace the technical user")),
}
"""What can be revoked: the wizard step it belongs to, and the confirmation's title."""
PERSON_FIELDS = ("name", "email", "phone", "language", "login")


def _step_url(quality: QualityRef, step: str) -> str:
    return f"{BASE}/q/{quality.kind}/structured/{step}"


def _listed(overview: Overview, what: str, item: str) -> str | None:
    """How the confirmation names ``item`` when the overview lists it, else None."""
    if what == "ssh_key":
        sha = hex_fingerprint(item)
        keys = {k for ch in overview.channels for k in ch.ssh_keys}
        return ssh_fingerprint(sha) if sha is not None and sha in keys else None
    if what == "channel":
        kinds = {ch.kind.value for ch in overview.channels}
        return item.upper() if item in kinds else None
    if what == "certificate":
        for cert in overview.certificates:
            if cert.sha256 == item:
                return f"{cert.subject} (SHA-256 {cert.sha256})"
        return None
    user = overview.technical_user
    return user["login"] if user is not None else None


async def _request(
    request: web.Request, me: Me, quality: QualityRef, *, listed: bool
) -> tuple[str, str, str, dict[str, str]] | None:
    """The posted removal (what, item, how it is named, the new person's fields), or None when
    it is malformed or, with ``listed``, names nothing that this quality's overview lists."""
    data = await form(request)
    what = form_text(data, "what", 20)
    item = form_text(data, "item", 200).strip()
    if what not in WHAT or (what == "channel" and item not in {k.value for k in ChannelKind}):
        return None
    person = {name: form_text(data, name, 300).strip() for name in PERSON_FIELDS}
    if not listed:
        return what, item, item, person
    overview = await plane_of(request).registry.overview(actor=me.login, quality=quality)
    if isinstance(overview, Refusal):
        return None
    named = _listed(overview, what, item)
    if named is None:
        return None
    return what, item, named, person


@quality_screen
async def confirm(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/structured/remove``: what would go, and a "Confirm" button."""
    asked = await _request(request, me, quality, listed=True)
    if asked is None:
        return not_found(request, me)
    what, item, named, person = asked
    step, title = WHAT[what]
    return render(
        request,
        "structured_remove.html",
        me=me,
        quality=quality,
        what=what,
        title=title,
        item=item,
        named=named,
        person=person if what == "technical" else None,
        back=_step_url(quality, step),
    )


@quality_screen
async def run(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/structured/remove/run``: the registry removes it, or says why not."""
    asked = await _request(request, me, quality, listed=False)
    if asked is None:
        return not_found(request, me)
    what, item, _, person = asked
    registry = plane_of(request).registry
    outcome: Refusal | str | None
    if what == "ssh_key":
        outcome = await registry.remove_ssh_key(actor=me.login, quality=quality, fingerprint=item)
    elif what == "certificate":
        outcome = await registry.remove_signing_certificate(
            actor=me.login, quality=quality, fingerprint=item
        )
    elif what == "channel":
        outcome = await registry.remove_channel(
            actor=me.login, quality=quality, kind=ChannelKind(item)
        )
    else:
        outcome = await registry.replace_technical_user(
            actor=me.login,
            quality=quality,
            person=_person(person, me),
            login=person["login"] or None,
        )
    step = WHAT[what][0]
    if isinstance(outcome, Refusal):
        return await structured_page(request, me, quality, step, refusal=outcome, status=422)
    return redirect(_step_url(quality, step), done="replaced" if what == "technical" else "removed")


def _person(fields: Mapping[str, Any], me: Me) -> Person:
    return Person(
        name=fields["name"],
        email=fields["email"],
        phone=fields["phone"],
        language=fields["language"] or me.language,
    )


def add_routes(app: web.Application) -> None:
    """The wizard's removals."""
    q = f"{BASE}/q/{{quality}}/structured/remove"
    app.router.add_post(q, confirm)
    app.router.add_post(f"{q}/run", run)
