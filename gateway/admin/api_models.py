"""The admin API's bodies, as pydantic models: what a request may carry, and what an answer holds.

Rules:

- **Requests are closed and bounded.** Every request model forbids unknown keys and bounds every
  string and list, so a body is judged by its shape before the registry sees it. The bounds are
  sizes, never rules: whether a login, a password, a certificate or an appointment is acceptable
  is the registry's to say (``gateway.registry.validate``, ``gateway.registry.rules``), and its
  refusal is the answer.
- **Answers are built through their model** (``Model(...).model_dump(mode="json")``), so what the
  API sends is what the OpenAPI document (``gateway.admin.openapi``) promises.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["nl", "fr", "de", "en"]
RoleName = Literal["co-HTB", "TB", "co-TB"]
"""The roles an access manager appoints (the HTB is named at provisioning)."""
ChannelName = Literal["sftp", "ftp", "webservice"]

Login = Field(min_length=1, max_length=64)
Kind = Field(min_length=1, max_length=40)


class Closed(BaseModel):
    """A request body: unknown keys refused."""

    model_config = ConfigDict(extra="forbid")


# -- requests ----------------------------------------------------------------------------------


class PasswordLoginSwitch(Closed):
    """Switch password login on or off for every account of the enterprise (HTB)."""

    enabled: bool


class NewQuality(Closed):
    """A quality to activate (HTB), e.g. ``employer``."""

    kind: str = Kind


class Appointment(Closed):
    """Appoint an existing user of the enterprise: co-HTB (whole enterprise), TB or co-TB (one
    quality, named in ``quality``)."""

    role: RoleName
    login: str = Login
    quality: str | None = Field(default=None, min_length=1, max_length=40)


class NewPerson(Closed):
    """Contact data of a new user or of the technical user; ``login`` is generated when absent."""

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=1, max_length=254)
    phone: str = Field(default="", max_length=32)
    language: Language = "nl"
    national_register_number: str | None = Field(default=None, min_length=1, max_length=15)
    login: str | None = Field(default=None, min_length=1, max_length=64)


class PasswordChange(Closed):
    """Change one's own password: the current one, then the new one."""

    old: str = Field(min_length=1, max_length=256)
    new: str = Field(min_length=1, max_length=256)


class NewChannel(Closed):
    """A transfer channel of the quality: SFTP with SSH public keys; FTP with a password and an
    optional allow-list (CIDR ranges or secondary network names); web service with a client
    certificate (PEM)."""

    kind: ChannelName
    ssh_keys: list[str] = Field(default_factory=list, max_length=20)
    ftp_password: str | None = Field(default=None, min_length=1, max_length=256)
    networks: list[str] = Field(default_factory=list, max_length=50)
    client_certificate: str | None = Field(default=None, min_length=1, max_length=65536)


class NewSshKey(Closed):
    """One more SSH public key for the SFTP channel (OpenSSH ``type base64 [comment]``)."""

    key: str = Field(min_length=1, max_length=16384)


class NewCertificate(Closed):
    """The signing certificate, PEM; CA certificates after it count as its chain."""

    pem: str = Field(min_length=1, max_length=65536)


class Services(Closed):
    """The online services (application codes of the catalogue) the quality sends; replaces the
    previous choice."""

    codes: list[str] = Field(max_length=100)


class NewToken(Closed):
    """An API token for one quality of the caller's enterprise."""

    quality: str = Kind
    name: str = Field(min_length=1, max_length=80)
    days: int = Field(default=90, ge=1, le=366)


# -- query strings -----------------------------------------------------------------------------


class UserQuery(Closed):
    """Search and paging of a quality's users: ``search`` matches login or name (any case);
    a page starts after ``cursor`` (the last login of the previous page) or is ``page`` N."""

    search: str | None = Field(default=None, max_length=100)
    cursor: str | None = Field(default=None, min_length=1, max_length=64)
    page: int | None = Field(default=None, ge=1, le=100000)
    limit: int = Field(default=50, ge=1, le=200)


class RoleQuery(Closed):
    """The quality of a TB or co-TB appointment."""

    quality: str | None = Field(default=None, min_length=1, max_length=40)


class TokenQuery(Closed):
    """The quality whose tokens to list."""

    quality: str = Kind


class AuditQuery(Closed):
    """The enterprise's audit records, newest first: made by ``actor``, of ``action`` (an
    action prefix, e.g. ``user.``), whose target contains ``target``; paged by ``offset``."""

    actor: str | None = Field(default=None, min_length=1, max_length=64)
    action: str | None = Field(default=None, min_length=1, max_length=64)
    target: str | None = Field(default=None, min_length=1, max_length=100)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=50, ge=1, le=200)


# -- answers -----------------------------------------------------------------------------------


class Problem(BaseModel):
    """An error (RFC 9457); ``code`` is the registry's refusal reason when there is one, and
    ``gateway_code`` the transfer code a refused certificate carries (e.g. 902)."""

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None
    gateway_code: int | None = None


class QualityOut(BaseModel):
    """A quality of an enterprise."""

    kind: str
    activated_at: str
    configuration_saved: bool
    sender: str | None


class RoleOut(BaseModel):
    """One role appointment; ``quality`` is None for an enterprise role."""

    login: str
    role: str
    quality: str | None


class EnterpriseOut(BaseModel):
    """An enterprise, its qualities and its role appointments."""

    kbo: str
    name: str
    status: str
    password_login: bool
    qualities: list[QualityOut]
    roles: list[RoleOut]


class EnterpriseList(BaseModel):
    """The enterprises the caller may see: its own."""

    enterprises: list[str]


class PasswordLoginOut(BaseModel):
    """The password-login switch after the change."""

    enterprise: str
    password_login: bool


class QualityCreated(BaseModel):
    """A quality just activated."""

    enterprise: str
    kind: str


class AppointmentOut(BaseModel):
    """A role appointment just made."""

    login: str
    role: str
    quality: str | None


class UserOut(BaseModel):
    """An account of a quality (users and its technical user)."""

    login: str
    name: str
    kind: str
    status: str
    quality: str | None
    must_change_password: bool
    locked_until: str | None = Field(
        default=None,
        description="while failed sign-ins lock its password logins: until when (ISO-8601 UTC);"
        " unblocking the user lifts it",
    )


class UserPage(BaseModel):
    """One page of a quality's users; ``next_cursor`` continues it (None on the last page)."""

    users: list[UserOut]
    total: int
    next_cursor: str | None


class IssuedPasswordOut(BaseModel):
    """A login and its temporary password, shown this once: to be changed at the next login."""

    login: str
    temporary_password: str


class UserStatusOut(BaseModel):
    """A user's status after a block or unblock."""

    login: str
    status: str


class ConfigurationSaved(BaseModel):
    """Structured messages: step 1 done."""

    quality: str
    configuration_saved: bool


class TechnicalUserOut(BaseModel):
    """Structured messages: the technical user's login."""

    technical_user: str


class ChannelCreated(BaseModel):
    """A channel just created, and the quality's sender number."""

    kind: str
    sender: str


class SshKeyAdded(BaseModel):
    """The SHA-256 fingerprint of the key just added."""

    sha256: str


class CertificateOut(BaseModel):
    """A signing certificate just registered; ``warning`` when it expires within 30 days."""

    subject: str
    issuer: str
    not_before: str
    not_after: str
    sha256: str
    warning: str | None


class ServicesOut(BaseModel):
    """The online services now chosen."""

    services: list[str]


class ChannelOut(BaseModel):
    """A configured channel (fingerprints, never secrets)."""

    kind: str
    ssh_keys: list[str]
    password_set: bool
    allowed_networks: list[str]
    networks: list[dict[str, Any]]
    client_certificate_sha256: str | None
    client_certificate_warning: str | None


class RegisteredCertificate(BaseModel):
    """A registered signing certificate in the overview."""

    subject: str
    sha256: str
    not_after: str
    warning: str | None


class OverviewOut(BaseModel):
    """The overview of the configuration data of a quality, sender number included."""

    enterprise: str
    enterprise_name: str
    quality: str
    configuration_saved: bool
    technical_user: dict[str, str] | None
    channels: list[ChannelOut]
    certificates: list[RegisteredCertificate]
    services: list[str]
    sender: str | None


class ServiceOut(BaseModel):
    """An online service of the catalogue."""

    code: str
    title: str
    parts: bool


class ServiceCatalogueOut(BaseModel):
    """The online services a quality may pick."""

    services: list[ServiceOut]


class TokenIssued(BaseModel):
    """A token just made: ``secret`` is shown this once and never stored."""

    id: int
    name: str
    secret: str
    enterprise: str
    quality: str
    expires_at: str


class TokenOut(BaseModel):
    """A token of a quality (never its secret)."""

    id: int
    name: str
    maker: str
    quality: str
    created_at: str
    expires_at: str
    revoked_at: str | None


class TokenList(BaseModel):
    """The tokens of a quality."""

    tokens: list[TokenOut]


class AuditOut(BaseModel):
    """One audit record; ``before`` and ``after`` are canonical JSON text."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    before: str
    after: str


class AuditPage(BaseModel):
    """Audit records of the enterprise, newest first; ``next_offset`` continues the list (None
    on the last page)."""

    entries: list[AuditOut]
    next_offset: int | None


class TraceOut(BaseModel):
    """Where is my file: the caller's sets, pending uploads, refusals and return files that a
    ticket or a file name matches (``gateway trace``)."""

    query: str
    sets: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    refusals: list[dict[str, Any]]
    return_files: list[dict[str, Any]]


class SessionCredentials(Closed):
    """A password or a TOTP sign-in (``gateway.admin.sessions.Credentials``)."""

    login: str = Field(min_length=1, max_length=64)
    password: str | None = Field(default=None, max_length=256)
    code: str | None = Field(default=None, max_length=12)
    language: Language | None = None


class SessionOut(BaseModel):
    """A sign-in: the session cookie is set; send ``csrf`` as ``X-CSRF-Token`` with changes."""

    login: str
    method: str
    csrf: str
    must_change_password: bool


class MeRole(BaseModel):
    """A role the account holds."""

    role: str
    quality: str | None


class MeToken(BaseModel):
    """The token the request came with."""

    id: int | None
    quality: str


class MeOut(BaseModel):
    """The caller's account, its roles, and the token's reach (None for a console session)."""

    login: str
    name: str
    enterprise: str
    enterprise_name: str
    enterprise_status: str
    password_login: bool
    quality: str | None
    kind: str
    status: str
    roles: list[MeRole]
    must_change_password: bool
    totp: bool
    language: str
    token: MeToken | None
