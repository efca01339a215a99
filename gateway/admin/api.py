"""The admin JSON API under ``/admin/api/v1/``: every access-management task of ``gateway admin``
that an access manager does, for scripts and other machines (issue 13 §1).

One job: translate HTTP to registry calls and registry answers to HTTP. Rules:

- **The registry decides.** Every operation is one registry call with the caller's login as
  ``actor``; the rule table (``gateway.registry.rules``) and the registry's checks answer, and a
  :class:`~gateway.registry.types.Refusal` becomes its problem answer
  (:func:`gateway.admin.problems.refused`). Nothing here re-implements a rule.
- **No IDOR.** Before the registry is asked, :class:`Scope` checks that everything the request
  names is the caller's: the enterprise number in the path, a login (its account's enterprise,
  through ``registry.account``), a token id, a quality. Anything of another enterprise answers
  the same 404 as what does not exist, never 403. A token reaches its own enterprise and, of its
  qualities, only its own: another quality, a user of another quality or a token of another
  quality is 404 for it too.
- **Tokens do not make tokens**: ``POST /tokens`` needs a console session (403 with a token), so
  a leaked token cannot outlive its own expiry or revocation.
- **Bodies are pydantic models** (``gateway.admin.api_models``), validated from the raw bytes
  with ``model_validate_json``: unknown keys and oversized strings are refused (422) before the
  registry sees them. Answers are built through their models too.
- **One table**: :data:`ENDPOINTS` registers the routes and is what ``gateway.admin.openapi``
  describes, so the document cannot drift from what is served.

Operator-only commands (``enterprise provision``, ``audit verify``, ``db migrate``, ``sender
show``) stay on the gateway's host: they are not in this API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.admin import api_models as m
from gateway.admin.auth import GRANT, unauthenticated
from gateway.admin.problems import not_found, problem, refused
from gateway.admin.server import PLANE, AdminPlane
from gateway.core.trust import load_certificate, pem_blocks
from gateway.registry.consoles import AccountView, Grant
from gateway.registry.service import Registry
from gateway.registry.types import (
    ChannelKind,
    EnterpriseNumber,
    IssuedPassword,
    Person,
    QualityRef,
    Refusal,
    Role,
)
from gateway.registry.validate import check_kbo

BASE = "/admin/api/v1"
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_GATEWAY_CODE = re.compile(r"^([0-9]{3}):")
_ROLES = {role.value: role for role in (Role.co_htb, Role.tb, Role.co_tb)}
_CHANNELS = {kind.value: kind for kind in ChannelKind}


class Stop(Exception):
    """Ends an endpoint early with ``response`` (a refusal, a 404): caught by :func:`_serve`."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def answer_refusal(refusal: Refusal) -> web.Response:
    """The problem answer to a registry refusal; a refused certificate's transfer code (``902:
    …`` at the start of the message) is also given as ``gateway_code``."""
    response = refused(refusal)
    found = _GATEWAY_CODE.match(refusal.message)
    if found is not None and isinstance(response.body, bytes):
        body = json.loads(response.body)
        body["gateway_code"] = int(found.group(1))
        response.body = json.dumps(body).encode()
    return response


def ok(result: T | Refusal) -> T:
    """The registry's value, or stop with its refusal."""
    if isinstance(result, Refusal):
        raise Stop(answer_refusal(result))
    return result


def done(result: Refusal | None) -> None:
    """Stop with the registry's refusal, if it refused."""
    if result is not None:
        raise Stop(answer_refusal(result))


@dataclass(frozen=True, slots=True)
class Scope:
    """Who asks, and the no-IDOR checks on what a request names (module docstring)."""

    grant: Grant
    registry: Registry

    @property
    def actor(self) -> str:
        """The login the registry acts as (a token's maker)."""
        return self.grant.login

    @property
    def token_quality(self) -> str | None:
        """The token's quality kind; None for a console session."""
        return self.grant.quality.kind if self.grant.quality is not None else None

    def enterprise(self, kbo: str) -> EnterpriseNumber:
        """The caller's enterprise, when ``kbo`` names it; 404 otherwise."""
        number = check_kbo(kbo)
        if isinstance(number, Refusal) or number != self.grant.enterprise:
            raise Stop(not_found())
        return self.grant.enterprise

    def quality(self, kind: str, kbo: str | None = None) -> QualityRef:
        """A quality of the caller's enterprise (for a token: its own quality); 404 otherwise."""
        enterprise = self.grant.enterprise if kbo is None else self.enterprise(kbo)
        if self.token_quality is not None and kind != self.token_quality:
            raise Stop(not_found())
        return QualityRef(enterprise, kind)

    async def account(self, login: str) -> AccountView:
        """The account ``login`` when it is of the caller's enterprise (for a token: of its
        quality or of the whole enterprise); 404 otherwise."""
        if len(login) > 64:
            raise Stop(not_found())
        account = await self.registry.account(login)
        if account is None or account.enterprise != self.grant.enterprise:
            raise Stop(not_found())
        if account.quality is not None and self.token_quality not in (None, account.quality):
            raise Stop(not_found())
        return account


@dataclass(frozen=True, slots=True)
class Call:
    """One request to an endpoint: the request, the plane, and the caller's scope."""

    request: web.Request
    plane: AdminPlane
    scope: Scope

    @property
    def registry(self) -> Registry:
        """The registry."""
        return self.plane.registry

    @property
    def actor(self) -> str:
        """The caller's login."""
        return self.scope.actor

    def path(self, name: str) -> str:
        """A path parameter."""
        return self.request.match_info[name]

    async def body(self, model: type[M]) -> M:
        """The JSON body as ``model``; 422 when it is not one."""
        try:
            return model.model_validate_json(await self.request.read())
        except ValidationError as exc:
            raise Stop(_invalid(exc, "body")) from None

    def query(self, model: type[M]) -> M:
        """The query string as ``model``; 422 when it is not one."""
        try:
            return model.model_validate(dict(self.request.query))
        except ValidationError as exc:
            raise Stop(_invalid(exc, "query")) from None


def _invalid(exc: ValidationError, where: str) -> web.Response:
    first = exc.errors(include_url=False, include_input=False)[0]
    place = ".".join(str(p) for p in first["loc"]) or where
    return problem(422, f"invalid {where}: {place}: {first['msg']}", code="invalid")


def reply(model: BaseModel, status: int = 200) -> web.Response:
    """A JSON answer built through its model."""
    return web.json_response(model.model_dump(mode="json"), status=status)


def no_content() -> web.Response:
    """204."""
    return web.Response(status=204)


Operation = Callable[[Call], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One operation of the API: its route, its models, and what it may answer.

    ``handler`` is None for operations served by another module (sign-in), which are only
    described."""

    method: str
    path: str
    """Under :data:`BASE`, with ``{name}`` parameters."""
    summary: str
    tag: str
    handler: Operation | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = (401, 403, 404, 422)
    auth: str = "any"
    """``any`` (token or session), ``session`` (a console session only), ``none``."""
    description: str = ""


PASSWORD_FREE = frozenset({"/me/password"})
"""What a console session whose password is temporary may still do (the console itself sends
every page to its password page)."""


def _serve(
    endpoint: Endpoint, operation: Operation
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        grant = request.get(GRANT)
        if grant is None:
            return unauthenticated()
        if endpoint.auth == "session" and grant.quality is not None:
            named = request.match_info.get("kbo")
            if named is not None and named != grant.enterprise:
                return not_found()  # another enterprise's: as if it did not exist
            return problem(
                403, f"{endpoint.summary} needs a console session, not a token", code="forbidden"
            )
        plane = request.app[PLANE]
        if grant.quality is None and endpoint.path not in PASSWORD_FREE:
            account = await plane.registry.account(grant.login)
            if account is None or account.must_change_password:
                return problem(
                    403,
                    "your password is temporary: change it first (POST /admin/api/v1/me/password)",
                    code="password_change_required",
                )
        try:
            return await operation(Call(request, plane, Scope(grant, plane.registry)))
        except Stop as stop:
            return stop.response

    return handle


# -- enterprises, qualities, roles -------------------------------------------------------------


async def list_enterprises(call: Call) -> web.Response:
    """``GET /enterprises``."""
    kbos = ok(await call.registry.enterprises(actor=call.actor))
    return reply(
        m.EnterpriseList(enterprises=[k for k in kbos if k == call.scope.grant.enterprise])
    )


async def show_enterprise(call: Call) -> web.Response:
    """``GET /enterprises/{kbo}``."""
    kbo = call.scope.enterprise(call.path("kbo"))
    view = ok(await call.registry.enterprise(actor=call.actor, kbo=kbo))
    return reply(m.EnterpriseOut.model_validate(asdict(view)))


async def switch_password_login(call: Call) -> web.Response:
    """``PUT /enterprises/{kbo}/password-login``."""
    kbo = call.scope.enterprise(call.path("kbo"))
    body = await call.body(m.PasswordLoginSwitch)
    done(await call.registry.set_password_login(actor=call.actor, kbo=kbo, enabled=body.enabled))
    return reply(m.PasswordLoginOut(enterprise=kbo, password_login=body.enabled))


async def activate_quality(call: Call) -> web.Response:
    """``POST /enterprises/{kbo}/qualities``."""
    kbo = call.scope.enterprise(call.path("kbo"))
    body = await call.body(m.NewQuality)
    made = ok(await call.registry.activate_quality(actor=call.actor, kbo=kbo, kind=body.kind))
    return reply(m.QualityCreated(enterprise=made.enterprise, kind=made.kind), 201)


async def appoint(call: Call) -> web.Response:
    """``POST /enterprises/{kbo}/roles``."""
    call.scope.enterprise(call.path("kbo"))
    body = await call.body(m.Appointment)
    quality = call.scope.quality(body.quality) if body.quality is not None else None
    account = await call.scope.account(body.login)
    role = _ROLES[body.role]
    if quality is None and call.scope.token_quality is not None:
        # A token acts on its one quality: an enterprise role (co-HTB) is the console's to give.
        raise Stop(problem(403, "a token is scoped to one quality: appoint a co-HTB from the "
                                "console", code="forbidden"))  # fmt: skip
    done(
        await call.registry.appoint(
            actor=call.actor, role=role, login=account.login, quality=quality
        )
    )
    out = m.AppointmentOut(login=account.login, role=role.value, quality=body.quality)
    return reply(out, 201)


async def dismiss(call: Call) -> web.Response:
    """``DELETE /enterprises/{kbo}/roles/{role}/{login}``."""
    call.scope.enterprise(call.path("kbo"))
    role = _ROLES.get(call.path("role"))
    if role is None:
        raise Stop(not_found())
    wanted = call.query(m.RoleQuery).quality
    quality = call.scope.quality(wanted) if wanted is not None else None
    account = await call.scope.account(call.path("login"))
    if quality is None and call.scope.token_quality is not None:
        raise Stop(problem(403, "a token is scoped to one quality: dismiss a co-HTB from the "
                                "console", code="forbidden"))  # fmt: skip
    done(
        await call.registry.dismiss(
            actor=call.actor, role=role, login=account.login, quality=quality
        )
    )
    return no_content()


# -- users and passwords -----------------------------------------------------------------------


async def list_users(call: Call) -> web.Response:
    """``GET /enterprises/{kbo}/qualities/{kind}/users``."""
    quality = call.scope.quality(call.path("kind"), call.path("kbo"))
    query = call.query(m.UserQuery)
    if query.cursor is not None and query.page is not None:
        raise Stop(problem(422, "page by cursor or by page number, not both", code="invalid"))
    users = ok(await call.registry.users(actor=call.actor, quality=quality))
    if query.search:
        needle = query.search.casefold()
        users = [u for u in users if needle in u.login.casefold() or needle in u.name.casefold()]
    start = 0
    if query.cursor is not None:
        start = next((i for i, u in enumerate(users) if u.login > query.cursor), len(users))
    elif query.page is not None:
        start = (query.page - 1) * query.limit
    page = users[start : start + query.limit]
    more = start + query.limit < len(users)
    return reply(
        m.UserPage(
            users=[m.UserOut.model_validate(asdict(u)) for u in page],
            total=len(users),
            next_cursor=page[-1].login if page and more else None,
        )
    )


def _person(body: m.NewPerson) -> Person:
    return Person(
        name=body.name,
        email=body.email,
        phone=body.phone,
        language=body.language,
        national_register_number=body.national_register_number,
    )


def _issued(issued: IssuedPassword, status: int = 200) -> web.Response:
    return reply(
        m.IssuedPasswordOut(login=issued.login, temporary_password=issued.password), status
    )


async def create_user(call: Call) -> web.Response:
    """``POST /enterprises/{kbo}/qualities/{kind}/users``."""
    quality = call.scope.quality(call.path("kind"), call.path("kbo"))
    body = await call.body(m.NewPerson)
    issued = ok(
        await call.registry.create_user(
            actor=call.actor, quality=quality, person=_person(body), login=body.login
        )
    )
    response = _issued(issued, 201)
    response.headers["Location"] = f"{BASE}/users/{issued.login}"
    return response


async def block_user(call: Call) -> web.Response:
    """``POST /users/{login}/block``."""
    account = await call.scope.account(call.path("login"))
    done(await call.registry.block_user(actor=call.actor, login=account.login))
    return reply(m.UserStatusOut(login=account.login, status="blocked"))


async def unblock_user(call: Call) -> web.Response:
    """``POST /users/{login}/unblock``."""
    account = await call.scope.account(call.path("login"))
    done(await call.registry.unblock_user(actor=call.actor, login=account.login))
    return reply(m.UserStatusOut(login=account.login, status="active"))


async def delete_user(call: Call) -> web.Response:
    """``DELETE /users/{login}``."""
    account = await call.scope.account(call.path("login"))
    done(await call.registry.delete_user(actor=call.actor, login=account.login))
    return no_content()


async def reset_password(call: Call) -> web.Response:
    """``POST /users/{login}/password``."""
    account = await call.scope.account(call.path("login"))
    return _issued(ok(await call.registry.reset_password(actor=call.actor, login=account.login)))


async def change_own_password(call: Call) -> web.Response:
    """``POST /me/password``."""
    body = await call.body(m.PasswordChange)
    done(await call.registry.change_password(login=call.actor, old=body.old, new=body.new))
    return no_content()


# -- structured messages -----------------------------------------------------------------------


def _structured(call: Call) -> QualityRef:
    return call.scope.quality(call.path("kind"), call.path("kbo"))


async def overview(call: Call) -> web.Response:
    """``GET …/structured``."""
    view = ok(await call.registry.overview(actor=call.actor, quality=_structured(call)))
    return reply(m.OverviewOut.model_validate(asdict(view)))


async def save_configuration(call: Call) -> web.Response:
    """``POST …/structured/save``."""
    quality = _structured(call)
    done(await call.registry.save_configuration(actor=call.actor, quality=quality))
    return reply(m.ConfigurationSaved(quality=quality.kind, configuration_saved=True))


async def technical_user(call: Call) -> web.Response:
    """``POST …/structured/technical-user``."""
    quality = _structured(call)
    body = await call.body(m.NewPerson)
    login = ok(
        await call.registry.set_technical_user(
            actor=call.actor, quality=quality, person=_person(body), login=body.login
        )
    )
    return reply(m.TechnicalUserOut(technical_user=login), 201)


async def add_channel(call: Call) -> web.Response:
    """``POST …/structured/channels``."""
    quality = _structured(call)
    body = await call.body(m.NewChannel)
    certificate = body.client_certificate
    sender = ok(
        await call.registry.add_channel(
            actor=call.actor,
            quality=quality,
            kind=ChannelKind(body.kind),
            ssh_keys=body.ssh_keys,
            ftp_password=body.ftp_password,
            networks=body.networks,
            client_certificate=certificate.encode() if certificate is not None else None,
        )
    )
    return reply(m.ChannelCreated(kind=body.kind, sender=sender), 201)


async def add_ssh_key(call: Call) -> web.Response:
    """``POST …/structured/ssh-keys``."""
    quality = _structured(call)
    body = await call.body(m.NewSshKey)
    sha = ok(await call.registry.add_ssh_key(actor=call.actor, quality=quality, key=body.key))
    return reply(m.SshKeyAdded(sha256=sha), 201)


async def upload_certificate(call: Call) -> web.Response:
    """``POST …/structured/certificates``."""
    quality = _structured(call)
    data = (await call.body(m.NewCertificate)).pem.encode()
    view = ok(await call.registry.upload_certificate(actor=call.actor, quality=quality, data=data))
    # The registry accepted it, so its first PEM block is a readable certificate; the issuer
    # and start of validity are read here for display only.
    blocks = [der for label, der in pem_blocks(data) if label == "CERTIFICATE"]
    info = load_certificate(blocks[0]) if blocks else None
    return reply(
        m.CertificateOut(
            subject=view.subject,
            issuer=info.cert.issuer.rfc4514_string() if info is not None else "",
            not_before=info.not_before.isoformat() if info is not None else "",
            not_after=view.not_after,
            sha256=view.sha256,
            warning=view.warning,
        ),
        201,
    )


async def replace_technical_user(call: Call) -> web.Response:
    """``PUT …/structured/technical-user``: a new technical user; the old one is deleted."""
    quality = _structured(call)
    body = await call.body(m.NewPerson)
    login = ok(
        await call.registry.replace_technical_user(
            actor=call.actor, quality=quality, person=_person(body), login=body.login
        )
    )
    return reply(m.TechnicalUserOut(technical_user=login))


async def remove_channel(call: Call) -> web.Response:
    """``DELETE …/structured/channels/{channel}``, with all its credentials."""
    quality = _structured(call)
    kind = _CHANNELS.get(call.path("channel"))
    if kind is None:
        raise Stop(not_found())
    done(await call.registry.remove_channel(actor=call.actor, quality=quality, kind=kind))
    return no_content()


async def remove_ssh_key(call: Call) -> web.Response:
    """``DELETE …/structured/ssh-keys/{fingerprint}``."""
    quality = _structured(call)
    fingerprint = call.path("fingerprint")[:100]
    done(
        await call.registry.remove_ssh_key(
            actor=call.actor, quality=quality, fingerprint=fingerprint
        )
    )
    return no_content()


async def remove_certificate(call: Call) -> web.Response:
    """``DELETE …/structured/certificates/{fingerprint}``."""
    quality = _structured(call)
    fingerprint = call.path("fingerprint")[:100]
    done(
        await call.registry.remove_signing_certificate(
            actor=call.actor, quality=quality, fingerprint=fingerprint
        )
    )
    return no_content()


async def choose_services(call: Call) -> web.Response:
    """``PUT …/structured/services``."""
    quality = _structured(call)
    body = await call.body(m.Services)
    chosen = ok(
        await call.registry.set_services(actor=call.actor, quality=quality, codes=body.codes)
    )
    return reply(m.ServicesOut(services=list(chosen)))


async def service_catalogue(call: Call) -> web.Response:
    """``GET /services``."""
    entries = sorted(call.registry.catalogue, key=lambda e: e.code)
    return reply(
        m.ServiceCatalogueOut(
            services=[m.ServiceOut(code=e.code, title=e.title, parts=e.parts) for e in entries]
        )
    )


# -- tokens ------------------------------------------------------------------------------------


async def issue_token(call: Call) -> web.Response:
    """``POST /tokens`` (a console session only)."""
    body = await call.body(m.NewToken)
    quality = call.scope.quality(body.quality)
    issued = ok(
        await call.registry.issue_token(
            actor=call.actor, quality=quality, name=body.name, days=body.days
        )
    )
    return reply(
        m.TokenIssued(
            id=issued.id,
            name=issued.name,
            secret=issued.secret,
            enterprise=issued.quality.enterprise,
            quality=issued.quality.kind,
            expires_at=issued.expires_at,
        ),
        201,
    )


async def list_tokens(call: Call) -> web.Response:
    """``GET /tokens?quality=``."""
    quality = call.scope.quality(call.query(m.TokenQuery).quality)
    views = ok(await call.registry.tokens(actor=call.actor, quality=quality))
    return reply(
        m.TokenList(
            tokens=[
                m.TokenOut(
                    id=v.id,
                    name=v.name,
                    maker=v.maker,
                    quality=v.quality.kind,
                    created_at=v.created_at,
                    expires_at=v.expires_at,
                    revoked_at=v.revoked_at,
                )
                for v in views
            ]
        )
    )


async def revoke_token(call: Call) -> web.Response:
    """``DELETE /tokens/{token_id}``."""
    text = call.path("token_id")
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise Stop(not_found())
    token_id = int(text)
    grant = call.scope.grant
    if grant.quality is not None:  # a token reaches the tokens of its own quality only
        mine = ok(await call.registry.tokens(actor=call.actor, quality=grant.quality))
        if token_id not in {v.id for v in mine}:
            raise Stop(not_found())
    done(await call.registry.revoke_token(actor=call.actor, token_id=token_id))
    return no_content()


# -- audit and trace ---------------------------------------------------------------------------


async def audit(call: Call) -> web.Response:
    """``GET /audit``: the caller's enterprise's audit records."""
    query = call.query(m.AuditQuery)
    entries, more = ok(
        await call.registry.activity(
            actor=call.actor,
            who=query.actor or "",
            action=query.action or "",
            text=query.target or "",
            limit=query.limit,
            offset=query.offset,
        )
    )
    return reply(
        m.AuditPage(
            entries=[m.AuditOut.model_validate(asdict(e)) for e in entries],
            next_offset=query.offset + len(entries) if more else None,
        )
    )


async def trace(call: Call) -> web.Response:
    """``GET /trace/{query}``: only the senders of the qualities the caller manages (a token:
    its quality's); nothing of theirs is 404, as is another enterprise's."""
    text = call.path("query")
    lookup = call.plane.trace
    if lookup is None or not text or len(text) > 200:
        raise Stop(not_found())
    grant = call.scope.grant
    view = ok(await call.registry.enterprise(actor=call.actor, kbo=grant.enterprise))
    kinds = (
        {grant.quality.kind}
        if grant.quality is not None
        else {q.kind for q in await call.registry.manages(call.actor)}
    )
    senders = {q.sender for q in view.qualities if q.kind in kinds and q.sender is not None}
    report = await lookup(text)
    found = m.TraceOut(
        query=text,
        sets=[asdict(s) for s in report.sets if s.sender in senders],
        pending=[p for p in report.pending if p.get("sender") in senders],
        refusals=[r for r in report.refusals if r.get("sender") in senders],
        return_files=[r for r in report.return_files if r.get("sender") in senders],
    )
    if not (found.sets or found.pending or found.refusals or found.return_files):
        raise Stop(not_found())
    return reply(found)


# -- the table ---------------------------------------------------------------------------------

_E = "/enterprises/{kbo}"
_Q = _E + "/qualities/{kind}"
_S = _Q + "/structured"
_WRITE = (401, 403, 404, 409, 413, 422)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(method="GET", path="/enterprises", summary="The enterprises you see (your own)",
             tag="enterprises", handler=list_enterprises, answer=m.EnterpriseList),
    Endpoint(method="GET", path=_E, summary="An enterprise, its qualities and roles",
             tag="enterprises", handler=show_enterprise, answer=m.EnterpriseOut),
    Endpoint(method="PUT", path=_E + "/password-login", tag="enterprises",
             summary="Switch password login on or off (HTB)", handler=switch_password_login,
             body=m.PasswordLoginSwitch, answer=m.PasswordLoginOut, errors=_WRITE,
             auth="session"),
    Endpoint(method="POST", path=_E + "/qualities", summary="Activate a quality (HTB)",
             tag="enterprises", handler=activate_quality, body=m.NewQuality,
             answer=m.QualityCreated, status=201, errors=_WRITE, auth="session"),
    Endpoint(method="POST", path=_E + "/roles", summary="Appoint a co-HTB, a TB or a co-TB",
             tag="roles", handler=appoint, body=m.Appointment, answer=m.AppointmentOut,
             status=201, errors=_WRITE),
    Endpoint(method="DELETE", path=_E + "/roles/{role}/{login}", tag="roles",
             summary="Dismiss a role appointment", handler=dismiss, query=m.RoleQuery,
             status=204, errors=_WRITE),
    Endpoint(method="GET", path=_Q + "/users", summary="The users of a quality (search, pages)",
             tag="users", handler=list_users, query=m.UserQuery, answer=m.UserPage),
    Endpoint(method="POST", path=_Q + "/users", tag="users", handler=create_user,
             summary="Create a user (its temporary password is shown once)", body=m.NewPerson,
             answer=m.IssuedPasswordOut, status=201, errors=_WRITE),
    Endpoint(method="POST", path="/users/{login}/block", summary="Block a user", tag="users",
             handler=block_user, answer=m.UserStatusOut, errors=_WRITE),
    Endpoint(method="POST", path="/users/{login}/unblock", summary="Unblock a user", tag="users",
             handler=unblock_user, answer=m.UserStatusOut, errors=_WRITE),
    Endpoint(method="DELETE", path="/users/{login}", summary="Delete a user", tag="users",
             handler=delete_user, status=204, errors=_WRITE),
    Endpoint(method="POST", path="/users/{login}/password", tag="users", handler=reset_password,
             summary="Give a user a new temporary password (shown once)",
             answer=m.IssuedPasswordOut, errors=_WRITE),
    Endpoint(method="POST", path="/me/password", summary="Change your own password", tag="me",
             handler=change_own_password, body=m.PasswordChange, status=204,
             errors=(401, 403, 413, 422)),
    Endpoint(method="GET", path=_S, summary="The overview of the configuration data",
             tag="structured messages", handler=overview, answer=m.OverviewOut),
    Endpoint(method="POST", path=_S + "/save", summary="Step 1: save the configuration data",
             tag="structured messages", handler=save_configuration,
             answer=m.ConfigurationSaved, errors=_WRITE),
    Endpoint(method="POST", path=_S + "/technical-user", summary="Step 2: the technical user",
             tag="structured messages", handler=technical_user, body=m.NewPerson,
             answer=m.TechnicalUserOut, status=201, errors=_WRITE),
    Endpoint(method="POST", path=_S + "/channels", tag="structured messages",
             summary="Step 3: a channel (the first assigns the sender number)",
             handler=add_channel, body=m.NewChannel, answer=m.ChannelCreated, status=201,
             errors=_WRITE),
    Endpoint(method="POST", path=_S + "/ssh-keys", summary="Add an SSH key to the SFTP channel",
             tag="structured messages", handler=add_ssh_key, body=m.NewSshKey,
             answer=m.SshKeyAdded, status=201, errors=_WRITE),
    Endpoint(method="POST", path=_S + "/certificates", tag="structured messages",
             summary="Step 4: upload the signing certificate", handler=upload_certificate,
             body=m.NewCertificate, answer=m.CertificateOut, status=201, errors=_WRITE,
             description="A certificate verification would refuse is refused (422, code "
             "bad_certificate) with the transfer code in gateway_code (902 expired, 903 not yet "
             "valid, 905 untrusted chain, 904/913 revoked, 907/910 key)."),
    Endpoint(method="PUT", path=_S + "/technical-user", tag="structured messages",
             summary="Replace the technical user (revocation)", handler=replace_technical_user,
             body=m.NewPerson, answer=m.TechnicalUserOut, errors=_WRITE,
             description="The channels, their credentials and the sender number stay; the old "
             "technical user is deleted, so its logins and open sessions end."),
    Endpoint(method="DELETE", path=_S + "/channels/{channel}", tag="structured messages",
             summary="Remove a channel and its credentials (revocation)",
             handler=remove_channel, status=204, errors=_WRITE),
    Endpoint(method="DELETE", path=_S + "/ssh-keys/{fingerprint}", tag="structured messages",
             summary="Remove an SSH key (revocation)", handler=remove_ssh_key, status=204,
             errors=_WRITE,
             description="The fingerprint in hex, as the overview lists it (or SHA256:... as "
             "ssh-keygen -lf prints it, when it holds no '/')."),
    Endpoint(method="DELETE", path=_S + "/certificates/{fingerprint}",
             tag="structured messages", summary="Remove a signing certificate (revocation)",
             handler=remove_certificate, status=204, errors=_WRITE,
             description="The certificate's SHA-256 in hex, as the overview lists it."),
    Endpoint(method="PUT", path=_S + "/services", summary="Step 5: the online services",
             tag="structured messages", handler=choose_services, body=m.Services,
             answer=m.ServicesOut, errors=_WRITE),
    Endpoint(method="GET", path="/services", summary="The online-services catalogue",
             tag="structured messages", handler=service_catalogue,
             answer=m.ServiceCatalogueOut, errors=(401,)),
    Endpoint(method="POST", path="/tokens", summary="Make an API token (console session only)",
             tag="tokens", handler=issue_token, body=m.NewToken, answer=m.TokenIssued,
             status=201, errors=_WRITE, auth="session"),
    Endpoint(method="GET", path="/tokens", summary="The tokens of a quality", tag="tokens",
             handler=list_tokens, query=m.TokenQuery, answer=m.TokenList),
    Endpoint(method="DELETE", path="/tokens/{token_id}", summary="Revoke a token",
             tag="tokens", handler=revoke_token, status=204, errors=_WRITE),
    Endpoint(method="GET", path="/audit", summary="The audit trail of your enterprise",
             tag="audit", handler=audit, query=m.AuditQuery, answer=m.AuditPage),
    Endpoint(method="GET", path="/trace/{query}", tag="trace", handler=trace,
             summary="Where is my file: a ticket or a file name of your senders",
             answer=m.TraceOut),
)  # fmt: skip
"""Every operation this module serves, in the order the document lists them."""


def add_routes(app: web.Application) -> None:
    """The API's routes (the OpenAPI document's route is ``gateway.admin.openapi``'s)."""
    for endpoint in ENDPOINTS:
        if endpoint.handler is not None:
            handler = _serve(endpoint, endpoint.handler)
            app.router.add_route(endpoint.method, BASE + endpoint.path, handler)
