"""The admin listener's settings in one narrow piece."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from gateway.ops.pacing import FailurePacing
from gateway.ops.settings import GatewaySettings
from gateway.ops.tls import listener_identity


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    """What the admin plane needs from ``[admin]``."""

    tls_cert: Path
    tls_key: Path
    host: str = "127.0.0.1"
    port: int = 8444
    eid_trust_dir: Path | None = None
    session_idle: timedelta = timedelta(minutes=15)
    session_lifetime: timedelta = timedelta(hours=8)
    pacing: FailurePacing = field(default_factory=FailurePacing)
    """How long after its arrival a failed password or code sign-in is answered."""

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> AdminConfig:
        """``[admin]``; without ``tls_cert``/``tls_key`` the development identity under
        ``<state_dir>/admin/`` is made (once) and used."""
        admin = settings.admin
        cert, key = listener_identity(
            "admin", admin.tls_cert, admin.tls_key, settings.state_dir / "admin"
        )
        return cls(
            tls_cert=cert,
            tls_key=key,
            host=admin.host,
            port=admin.port,
            eid_trust_dir=admin.eid_trust_dir,
            session_idle=timedelta(minutes=admin.session_idle_minutes),
            session_lifetime=timedelta(hours=admin.session_hours),
            pacing=FailurePacing.from_settings(settings),
        )
