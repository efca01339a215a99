"""The registry's values: ids, kinds, credentials, principals and refusals that cross modules.

Everything here is a frozen, slotted value with no I/O, so channels, the pipeline and the admin
command line can share these names without importing the database layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

from gateway.core.types import SenderNumber as _CoreSenderNumber

EnterpriseNumber = NewType("EnterpriseNumber", str)
"""A 10-digit KBO/BCE number, digits only (``0123456749``)."""

# One sender-number type for the whole product: the core's (6 digits with leading zeros).
SenderNumber = _CoreSenderNumber

QualityId = NewType("QualityId", int)
"""The database id of one activated quality of one enterprise."""


class ChannelKind(StrEnum):
    """The transfer channels a quality's technical user may use."""

    sftp = "sftp"
    ftp = "ftp"
    webservice = "webservice"


class PrincipalKind(StrEnum):
    """A natural person's account, or the technical user of a quality."""

    technical = "technical"
    user = "user"


class Role(StrEnum):
    """Access-management roles (guide: Hoofdtoegangsbeheerder, co-HTB, Toegangsbeheerder, co-TB)."""

    htb = "HTB"
    co_htb = "co-HTB"
    tb = "TB"
    co_tb = "co-TB"


class UserStatus(StrEnum):
    """Lifecycle of an account; a deleted account is kept (its login is never reused)."""

    active = "active"
    blocked = "blocked"
    deleted = "deleted"


class EnterpriseStatus(StrEnum):
    """An enterprise is pending until its HTB's first successful login."""

    pending = "pending"
    active = "active"


@dataclass(frozen=True, slots=True)
class PublicKeyCredential:
    """An SSH public key in OpenSSH ``type base64 [comment]`` form; the comment is ignored."""

    openssh_public_key: str


@dataclass(frozen=True, slots=True)
class PasswordCredential:
    """A password offered at login. Never logged, never stored."""

    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientCertificateCredential:
    """The DER client certificate presented on the web-service TLS connection."""

    der: bytes = field(repr=False)


Credential = PublicKeyCredential | PasswordCredential | ClientCertificateCredential


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who logged in: the channels and the pipeline act on this and nothing else."""

    login: str
    kind: PrincipalKind
    enterprise: EnterpriseNumber
    quality: QualityId | None
    sender: SenderNumber | None
    applications: frozenset[str]
    must_change_password: bool
    credential: str = ""
    """What authenticated a channel login (the SSH key's or client certificate's SHA-256, a
    digest of the FTP password's stored hash), so an open session can be re-checked after a
    revocation (``Registry.still_allowed``); empty for a console login."""


@dataclass(frozen=True, slots=True)
class OpenSession:
    """One open channel session to re-check after a revocation: who, on which channel, with
    which credential (``Principal.credential``)."""

    login: str
    channel: ChannelKind
    credential: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceClient:
    """An online service that posts notifications back over the web service, known by the
    client certificate ``config/services.toml`` declares for its application codes."""

    name: str
    """The certificate file's name without suffix, for logs (``dmfa-service``)."""
    fingerprint: str
    """SHA-256 of the DER certificate, lower-case hex."""
    certificate: bytes
    """The DER certificate."""
    applications: frozenset[str]
    """The application codes whose entries list the certificate: the only codes it may post
    for."""


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """A refused login. ``reason`` is a stable code for logs; the peer sees a generic failure.

    Reasons: unknown_login, bad_credential, blocked, deleted, password_login_disabled,
    channel_not_allowed, network_not_allowed, enterprise_pending, invalid_login,
    unknown_certificate (a client certificate no web-service channel holds).

    ``networks`` is set with network_not_allowed: the channel's allow-list entries (CIDR ranges
    and secondary network names), so the channel logs what the login was bound to beside the
    source address. Log-only, like the reason.
    """

    reason: str
    networks: tuple[str, ...] = field(default=(), kw_only=True)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused registry operation: a stable ``reason`` code and a message for the person.

    Reasons: forbidden, not_found, invalid, duplicate, password_policy, step_order,
    bad_certificate, bad_key, limit, bad_credential.
    """

    reason: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderProfile:
    """What the pipeline needs to check a sender's files (codes 108, 153, 154)."""

    number: SenderNumber
    enterprise: EnterpriseNumber
    quality: QualityId
    quality_kind: str
    applications: frozenset[str]
    signing_certificates: tuple[bytes, ...]
    channels: frozenset[ChannelKind]
    technical_login: str | None
    active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """Contact data of a natural person (a manager, a user or a technical user's contact)."""

    name: str
    email: str
    phone: str = ""
    language: str = "nl"
    national_register_number: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedPassword:
    """A login and the temporary password set for it, to hand over once (never stored clear)."""

    login: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class QualityRef:
    """A quality named the way people name it: enterprise number and kind (``employer``)."""

    enterprise: EnterpriseNumber
    kind: str

    def __str__(self) -> str:
        return f"{self.enterprise}/{self.kind}"
