"""The one settings object: defaults < ``config/gateway.toml`` < ``GATEWAY_*`` environment.

Loaded once, at the command line's edge (:func:`load_settings`), then handed down in narrow pieces
(``settings.sftp``, ``settings.limits``…). Every model forbids unknown keys and is frozen, so a typo
in ``gateway.toml`` stops the daemon with a message naming the key instead of being ignored.

Nested keys come from TOML tables (``[sftp] port = 8022``) or from the environment with a double
underscore (``GATEWAY_SFTP__PORT=8022``). ``config/gateway.example.toml`` documents every key; a
test loads it and compares it with these models.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MIB = 1024 * 1024
# The calendar of dates in file names unless [pipeline] timezone says otherwise.
DEFAULT_TIMEZONE = ZoneInfo("Europe/Brussels")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The SSH ciphers the SFTP listener may offer (all AEAD or encrypt-then-MAC; the client picks
# the first of its own list that the server offers, RFC 4253 7.1).
SshCipher = Literal[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]
SSH_CIPHERS: tuple[SshCipher, ...] = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


class SftpSettings(_Section):
    """The SFTP listener."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8022, ge=0, le=65535)
    login_grace_seconds: float = Field(default=30.0, gt=0)
    idle_timeout_seconds: float = Field(default=600.0, gt=0)
    max_startups: int = Field(default=100, ge=1, description="unauthenticated connections at once")
    max_startups_per_source: int = Field(
        default=10, ge=1, description="unauthenticated connections at once per source network"
    )
    penalty_authfail_seconds: float = Field(
        default=5.0, ge=0, description="charged to a source per connection that failed to log in"
    )
    penalty_noauth_seconds: float = Field(
        default=1.0, ge=0, description="charged per connection that ended without trying to"
    )
    penalty_min_seconds: float = Field(
        default=15.0, ge=0, description="a source is refused while its charge exceeds this"
    )
    penalty_max_seconds: float = Field(default=600.0, gt=0, description="a charge's ceiling")
    source_netblock_v4: int = Field(default=24, ge=8, le=32, description="IPv4 source prefix")
    source_netblock_v6: int = Field(default=64, ge=16, le=128, description="IPv6 source prefix")
    penalty_exempt: list[IPvAnyNetwork] = Field(
        default_factory=list, description="networks never counted or penalised (monitoring)"
    )
    password_login: bool = Field(
        default=False,
        description="offer SSH password login; the registry still decides per channel/enterprise",
    )
    max_password_attempts: int = Field(
        default=3, ge=1, le=10, description="password attempts per connection, then disconnect"
    )
    max_sessions_per_connection: int = Field(
        default=8, ge=1, le=64, description="SSH session channels open at once per connection"
    )
    ciphers: tuple[SshCipher, ...] = Field(
        default=SSH_CIPHERS,
        min_length=1,
        description="SSH ciphers offered; OpenSSH clients pick AES-CTR with an HMAC whenever it "
        "is offered, so offering only the two AES-GCM ciphers makes large uploads about 15-20 % "
        "cheaper, at the cost of clients without AES-GCM (JSch 0.1.x, PuTTY before 0.76)",
    )
    proxy_protocol_from: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="load balancers' networks: connections come only from them, each with a "
        "PROXY v2 header naming the client; empty: off",
    )


class FtpListenerSettings(_Section):
    """One address the FTP channel listens on."""

    host: str
    port: int = Field(ge=0, le=65535)


class FtpSettings(_Section):
    """The FTP(S) channel: a public listener (explicit FTPS only) and, for the secondary networks
    of local authorities, named listeners on which plain FTP is also accepted from the ranges of
    the networks that arrive on them (``networks_file``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8021, ge=0, le=65535)
    plain_listeners: dict[str, FtpListenerSettings] = Field(
        default_factory=dict,
        description="named listeners of secondary networks, where plain FTP is accepted",
    )
    networks_file: Path = Field(
        default=Path("config/networks.toml"),
        description="the secondary networks: name, address ranges, listener (reloaded on SIGHUP)",
    )
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain of the FTPS listener; default: a development "
        "certificate made under state_dir/ftps on first start",
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    passive_ports: tuple[int, int] | None = Field(
        default=None,
        description="[first, last] port of passive data connections; default: any free port",
    )
    passive_address: str | None = Field(
        default=None,
        description="address advertised in PASV replies (NAT); default: the control "
        "connection's local address",
    )
    login_grace_seconds: float = Field(default=30.0, gt=0)
    idle_timeout_seconds: float = Field(default=600.0, gt=0)
    max_startups: int = Field(default=100, ge=1, description="unauthenticated connections at once")
    max_login_attempts: int = Field(
        default=3, ge=1, description="password attempts per connection before it is closed"
    )
    block_size: int = Field(
        default=256 * 1024, ge=4096, le=16 * MIB, description="bytes per data read or write"
    )
    proxy_protocol_from: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="load balancers' networks: control and passive data connections come only "
        "from them, each with a PROXY v2 header naming the client; empty: off",
    )

    @model_validator(mode="after")
    def _check_passive_ports(self) -> FtpSettings:
        ports = self.passive_ports
        if ports is not None and not (1024 <= ports[0] <= ports[1] <= 65535):
            raise ValueError("passive_ports must be [first, last] with 1024 <= first <= last")
        return self


class WebSettings(_Section):
    """The HTTPS web service: senders authenticate with the client certificate registered on
    their web-service channel (mutual TLS). Uploads are bounded by ``[limits] max_file_bytes``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain of the HTTPS listener; default: a development "
        "certificate made under state_dir/web on first start",
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    keepalive_seconds: float = Field(
        default=75.0,
        gt=0,
        description="how long an idle keep-alive connection stays open between requests",
    )
    list_limit: int = Field(
        default=1000, ge=1, le=10000, description="most entries in one page of a listing"
    )
    max_notification_bytes: int = Field(
        default=16 * MIB,
        ge=1,
        description="largest notification an online service may post "
        "(POST /v1/services/{application}/notifications; it is held in memory to be signed)",
    )


class AdminSettings(_Section):
    """The admin plane: the access managers' console and the admin API (``/admin/api/v1/``), on
    their own HTTPS listener, never on a sender-facing one."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8444, ge=0, le=65535)
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain of the admin listener; default: a development "
        "certificate made under state_dir/admin on first start",
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    eid_trust_dir: Path | None = Field(
        default=None,
        description="CA certificates of the eID cards accepted for console login (a client "
        "certificate whose subject serial number is the national register number); none: no eID",
    )
    session_idle_minutes: int = Field(
        default=15, ge=1, le=240, description="a console session ends after this long unused"
    )
    session_hours: int = Field(
        default=8, ge=1, le=24, description="a console session ends this long after login"
    )


class MetricsSettings(_Section):
    """Prometheus metrics, bound to the management interface only."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class LimitSettings(_Section):
    """Upload and session limits; each refusal carries its own code."""

    max_file_bytes: int = Field(default=200 * MIB, ge=1)
    sender_pending_quota_bytes: int = Field(default=2048 * MIB, ge=1)
    session_max_open_uploads: int = Field(
        default=8, ge=1, le=32, description="uploads in progress at once in one session; 923 past"
    )
    min_free_bytes: int = Field(
        default=1024 * MIB,
        ge=0,
        description="free bytes the spool's filesystem keeps; below, new uploads get 929",
    )
    min_free_percent: float = Field(
        default=1.0,
        ge=0,
        le=50,
        description="the same floor as a percentage of the filesystem (the larger one holds)",
    )
    reserve_bytes: int = Field(
        default=8 * MIB,
        ge=0,
        description="space kept allocated under the state directory and given up when the disk "
        "is full, so removals and the registry can still be written; 0: none",
    )
    sender_max_sessions: int = Field(default=20, ge=1)
    max_parts: int = Field(default=9, ge=1, le=9)
    password_checks: int = Field(
        default=2, ge=1, le=64, description="argon2 password checks at once (their own threads)"
    )
    password_check_queue: int = Field(
        default=16, ge=0, description="password checks waiting; past it a login is refused busy"
    )
    password_failure_seconds: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="a failed password login (wrong, unknown, locked, refused busy) is answered "
        "no sooner than this after it arrived, so a guesser cannot spin; 0: at once",
    )
    login_lockout_failures: int = Field(
        default=5, ge=1, description="failed password checks of one account that lock it"
    )
    login_lockout_window_seconds: float = Field(
        default=900.0, gt=0, description="the window those failures are counted in"
    )
    login_lockout_seconds: float = Field(
        default=900.0, gt=0, description="how long a locked account stays locked"
    )
    refused_log_per_source: int = Field(
        default=10, ge=1, description="connection.refused lines per source and window"
    )
    refused_log_window_seconds: float = Field(
        default=60.0, gt=0, description="after it, one connection.refused_summary with the count"
    )


class SignatureSettings(_Section):
    """Signature policy for FS files."""

    trust_dir: Path = Path("certs/trust")
    allow_sha1: bool = False
    min_rsa_bits: int = Field(default=2048, ge=2048)
    require_crl: bool = False


class PipelineSettings(_Section):
    """Set processing, acknowledgement and retention."""

    set_timeout: timedelta = timedelta(hours=24)
    max_file_age: timedelta = timedelta(days=30)
    timezone: ZoneInfo = Field(
        default=DEFAULT_TIMEZONE,
        description="the calendar of dates in file names: a name's creation date is checked "
        "against today here, and return-file names and ACRF dates and hours are written in it",
    )
    out_retention: timedelta = timedelta(days=60)
    archive_retention: timedelta = timedelta(days=90)
    compress_above: int = Field(default=1 * MIB, ge=1)
    gateway_sender: str = Field(default="999999", pattern=r"^[0-9]{6}$")
    gateway_key: Path | None = None
    gateway_cert: Path | None = None
    refusal_ack_window: timedelta = timedelta(minutes=5)
    services_file: Path = Path("config/services.toml")
    concurrency: int = Field(
        default=8, ge=1, le=256, description="sets processed at once each on its own"
    )
    batch_limit: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="sets one batch takes at most (GO sets that need only local work are "
        "checked, decided, written and committed together, one batch at a time, beside the "
        "concurrency sets processed on their own)",
    )
    priority_boost: int = Field(
        default=0,
        ge=0,
        le=39,
        description="nice levels the pipeline's threads and the database writer run above the "
        "listeners, so sets in hand finish before new uploads take the CPU: shorter waits for "
        "an ACRF below the node's peak, a lower peak (bench/README.md, 'Thread priority'; "
        "needs LimitNICE or CAP_SYS_NICE; refused, they run at the process's priority with a "
        "warning; 0, the default: off)",
    )
    admission_backlog: int | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="a GO/TD is held before its commit while this node has this many sets in "
        "hand (default twice what it processes at once: 2 x (concurrency + batch_limit); "
        "0: never held)",
    )
    admission_max_wait_seconds: float = Field(
        default=5.0, gt=0, le=60, description="longest a GO/TD is held by admission"
    )

    @model_validator(mode="after")
    def _admission_fills_the_slots(self) -> PipelineSettings:
        if self.admission_backlog is not None and 0 < self.admission_backlog < self.concurrency:
            raise ValueError(
                f"admission_backlog ({self.admission_backlog}) is below concurrency "
                f"({self.concurrency}): the node could never fill its slots; set it to at least "
                "concurrency (twice is the default), or 0 to turn admission off"
            )
        return self

    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    claim_lease: timedelta = timedelta(minutes=5)


class NotifySettings(_Section):
    """How activation messages (username by e-mail, password by SMS) are delivered."""

    kind: Literal["outbox", "smtp", "sms-http"] = "outbox"
    outbox_dir: Path | None = Field(
        default=None, description="outbox notifier folder; default state_dir/outbox"
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "gateway@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    sms_url: str = ""
    sms_token: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class SecuritySettings(_Section):
    """argon2id cost of stored passwords (RFC 9106; tests use cheap values to stay fast), and the
    start-up check of the installed files (SECURITY.md 20)."""

    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    verify_installation: bool = Field(
        default=True,
        description="refuse to start when an installed file differs from the package's RECORD "
        "(false: start anyway, with a build.changed warning)",
    )
    audit_anchor_minutes: int = Field(
        default=60,
        ge=1,
        le=1440,
        description="how often the daemon signs the audit chain's head and appends it to "
        "audit_anchor_file (and at every stop)",
    )
    audit_anchor_file: Path | None = Field(
        default=None,
        description="the append-only file of signed audit-chain anchors; default: "
        "state_dir/audit-anchors.jsonl. Ship it off the machine.",
    )


class GatewaySettings(BaseSettings):
    """Everything the daemon and the command line can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    state_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default is SQLite under state_dir",
    )
    drain_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="on SIGTERM, open sessions and the sets in hand get this long together "
        "before the daemon stops (keep systemd's TimeoutStopSec longer)",
    )
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_sync: Literal["auto", "files", "filesystem"] = Field(
        default="auto",
        description="how stored uploads and the pipeline's files are made durable: 'files' "
        "fsyncs each file and folder; 'filesystem' makes one syncfs per batch (less CPU, but it "
        "writes back the whole filesystem: for a state directory on a filesystem of its own; "
        "Linux 5.8 or later); 'auto' is 'filesystem' when state_dir is the root of a local "
        "disk filesystem holding every directory destination, 'files' otherwise",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the event loop of 'gateway serve': 'uvloop' (default; less CPU per request "
        "and shorter queues under load, see gateway/ops/loop.py) or asyncio's own (for "
        "asyncio's debug mode, or where uvloop is not installed)",
    )
    sftp: SftpSettings = SftpSettings()
    ftp: FtpSettings = FtpSettings()
    web: WebSettings = WebSettings()
    admin: AdminSettings = AdminSettings()
    metrics: MetricsSettings = MetricsSettings()
    limits: LimitSettings = LimitSettings()
    signature: SignatureSettings = SignatureSettings()
    pipeline: PipelineSettings = PipelineSettings()
    notify: NotifySettings = NotifySettings()
    security: SecuritySettings = SecuritySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _CONFIG_FILE.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @property
    def database(self) -> str:
        """The database URL in force: the configured one, or SQLite under the state directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'registry.sqlite3').resolve()}"


# The TOML path is handed to the source through this module-level slot because pydantic-settings
# builds sources from the class; load_settings() sets it for the duration of one load only.
_CONFIG_FILE: dict[str, Path | None] = {"path": None}


class SettingsError(Exception):
    """The configuration is invalid; ``str()`` names every offending key."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> GatewaySettings:
    """Load the settings once: ``config_file`` (if it exists), then the environment, then overrides.

    Raises :class:`SettingsError` with one line per bad key (unknown, or of the wrong type).
    """
    if config_file is not None and not config_file.is_file():
        raise SettingsError(f"config file not found: {config_file}")
    _CONFIG_FILE["path"] = config_file
    try:
        return GatewaySettings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"{key}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    finally:
        _CONFIG_FILE["path"] = None
