"""Gestructureerde berichten: the structured-message wizard of one quality, in the guide's order.

1. technical user (after "De configuratiegegevens opslaan", the guide's first click);
2. channel: SFTP with SSH public keys, FTP with a password and its secondary network or ranges,
   web service with a client certificate;
3. the signing certificate: its subject, issuer and validity are read from the upload for the
   person to check, and the registry's answer (accepted, accepted with a warning, or refused
   with its reason) is shown beside them;
4. online services;
5. the sender number;
6. the overview of the configuration data, printable.

Every step is a page of its own that can be revisited; each shows what is configured now (the
registry's overview) and posts to the registry's operation for that step, which also enforces
the order (``step_order``). Removing a key, a channel or a certificate and replacing the technical
user go through a confirmation first (:mod:`gateway.admin.console_revoke`).
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
    refusal_view,
    render,
    texts,
)
from gateway.core.trust import load_certificate
from gateway.registry.revocation import ssh_fingerprint
from gateway.registry.types import ChannelKind, Person, QualityRef, Refusal

STEPS: tuple[tuple[str, str], ...] = (
    ("technical", N_("Technical user")),
    ("channel", N_("Channel")),
    ("certificate", N_("Signing certificate")),
    ("services", N_("Online services")),
    ("sender", N_("Sender number")),
    ("overview", N_("Overview")),
)
STEP_NAMES = tuple(name for name, _ in STEPS)
MAX_UPLOAD = 64 * 1024


def _url(quality: QualityRef, step: str) -> str:
    return f"{BASE}/q/{quality.kind}/structured/{step}"


async def structured_page(
    request: web.Request,
    me: Me,
    quality: QualityRef,
    step: str,
    *,
    refusal: Refusal | None = None,
    status: int = 200,
    **extra: Any,
) -> web.Response:
    """Step ``step`` of the wizard, with what is configured now (and ``refusal`` shown)."""
    registry = plane_of(request).registry
    overview = await registry.overview(actor=me.login, quality=quality)
    if isinstance(overview, Refusal):
        return not_found(request, me)
    index = STEP_NAMES.index(step)
    return render(
        request,
        f"structured_{step}.html",
        me=me,
        quality=quality,
        steps=STEPS,
        step=step,
        number=index + 1,
        next_step=STEP_NAMES[index + 1] if index + 1 < len(STEP_NAMES) else None,
        overview=overview,
        catalogue=sorted(registry.catalogue, key=lambda entry: entry.code),
        networks=registry.networks.names,
        refusal=refusal_view(refusal) if refusal is not None else None,
        done=request.query.get("done", ""),
        removable=step != "overview",
        ssh_fingerprint=ssh_fingerprint,
        status=status,
        **extra,
    )


@quality_screen
async def start(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``GET /q/{quality}/structured``: the first step."""
    return redirect(_url(quality, STEP_NAMES[0]))


@quality_screen
async def step_page(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``GET /q/{quality}/structured/{step}``."""
    step = request.match_info["step"]
    if step not in STEP_NAMES:
        return not_found(request, me)
    return await structured_page(request, me, quality, step)


@quality_screen
async def step_post(request: web.Request, me: Me, quality: QualityRef) -> web.StreamResponse:
    """``POST /q/{quality}/structured/{step}``: the step's registry operation."""
    step = request.match_info["step"]
    if step not in ("technical", "channel", "certificate", "services"):
        return not_found(request, me)
    data = await form(request)
    registry = plane_of(request).registry
    what = form_text(data, "do", 20)
    refusal: Refusal | None = None
    extra: dict[str, Any] = {}
    if step == "technical" and what == "save":
        refusal = await registry.save_configuration(actor=me.login, quality=quality)
    elif step == "technical":
        made = await registry.set_technical_user(
            actor=me.login,
            quality=quality,
            person=Person(
                name=form_text(data, "name", 300).strip(),
                email=form_text(data, "email", 300).strip(),
                phone=form_text(data, "phone", 40).strip(),
                language=form_text(data, "language", 2) or me.language,
            ),
            login=form_text(data, "login", 64).strip() or None,
        )
        refusal = made if isinstance(made, Refusal) else None
    elif step == "channel":
        refusal = await _channel(request, me, quality, data, what)
    elif step == "certificate":
        upload = await _upload(data, "certificate")
        extra["shown"] = _describe(upload)
        answer = await registry.upload_certificate(actor=me.login, quality=quality, data=upload)
        if isinstance(answer, Refusal):
            refusal = answer
        else:
            extra["accepted"] = answer
    else:
        codes = texts(data, "service", 100)
        chosen = await registry.set_services(actor=me.login, quality=quality, codes=codes)
        refusal = chosen if isinstance(chosen, Refusal) else None
    if refusal is not None or extra:
        return await structured_page(
            request, me, quality, step, refusal=refusal, status=422 if refusal else 200, **extra
        )
    return redirect(_url(quality, step) + "?done=saved")


async def _channel(
    request: web.Request, me: Me, quality: QualityRef, data: Mapping[str, Any], what: str
) -> Refusal | None:
    registry = plane_of(request).registry
    if what == "ssh_key":
        added = await registry.add_ssh_key(
            actor=me.login, quality=quality, key=form_text(data, "key", 16000).strip()
        )
        return added if isinstance(added, Refusal) else None
    if what not in {k.value for k in ChannelKind}:
        return Refusal("invalid", "")
    kind = ChannelKind(what)
    keys = [line.strip() for line in form_text(data, "keys", 64000).splitlines() if line.strip()]
    networks = texts(data, "network", 20)
    networks += [n.strip() for n in form_text(data, "ranges", 2000).split(",") if n.strip()]
    certificate = (
        await _upload(data, "client_certificate") if kind is ChannelKind.webservice else b""
    )
    sender = await registry.add_channel(
        actor=me.login,
        quality=quality,
        kind=kind,
        ssh_keys=keys if kind is ChannelKind.sftp else (),
        ftp_password=form_text(data, "password", 256) if kind is ChannelKind.ftp else None,
        networks=networks if kind is ChannelKind.ftp else (),
        client_certificate=certificate or None,
    )
    return sender if isinstance(sender, Refusal) else None


async def _upload(data: Mapping[str, Any], name: str) -> bytes:
    field = data.get(name)
    if field is None or isinstance(field, str):
        return b""
    content: bytes = field.file.read(MAX_UPLOAD + 1)
    return content[: MAX_UPLOAD + 1]


def _describe(upload: bytes) -> dict[str, str] | None:
    """What the person should check on the uploaded certificate (None: not a certificate)."""
    info = load_certificate(upload) if upload and len(upload) <= MAX_UPLOAD else None
    if info is None:
        return None
    return {
        "subject": info.subject,
        "issuer": info.cert.issuer.rfc4514_string(),
        "not_before": f"{info.not_before:%Y-%m-%d %H:%M} UTC",
        "not_after": f"{info.not_after:%Y-%m-%d %H:%M} UTC",
    }


def add_routes(app: web.Application) -> None:
    """The Gestructureerde berichten screens."""
    q = f"{BASE}/q/{{quality}}/structured"
    app.router.add_get(q, start)
    app.router.add_get(f"{q}/{{step}}", step_page)
    app.router.add_post(f"{q}/{{step}}", step_post)
