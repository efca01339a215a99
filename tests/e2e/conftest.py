"""One real ``gateway serve`` shared by the end-to-end tests, and the senders that talk to it.

Everything a sender needs exists before the daemon starts: a SQLite registry provisioned once per
session through the registry's service API (a template each daemon copies), SSH keys made by
``ssh-keygen``, signing certificates and CMS signatures made by ``openssl`` (tests/pki.py).

- Sender **A** sends every set. Registered signing certificates: the RSA-2048, ECDSA and RSA-1024
  signers, the revoked one, the one under an untrusted CA, and the expired and not-yet-valid ones
  (registered through a registry whose clock stands inside their validity, since registration
  refuses a certificate that is not valid at upload time).
- Sender **B** exists so that A can sign with another sender's certificate and name another
  sender's number.
- A also has a web-service channel whose client certificate (``web_client``, P-256) the test
  root CA issued; the daemon's HTTPS listener is on, port 0.
- Both also have an FTP channel (password ``FTP_PASSWORD``): A's bound to the secondary network
  ``Loopback`` (127.0.0.0/8, arriving on the plain listener ``secondary`` at 127.0.0.2), B's to
  ``Elsewhere`` (192.0.2.0/24), so B can never log in over FTP from this machine.

The daemon's trust store folder holds the test root CA and the signing CA's CRL. Each daemon gets
its own state directory, port 0 for SFTP, FTP(S) and metrics, and is stopped with SIGTERM at the
end, which must give exit status 0 and no error-level log event.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.channels.hostkeys import load_host_keys
from gateway.core.signature import SignaturePolicy
from gateway.ops.settings import DEFAULT_TIMEZONE
from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.credentials import Argon2Parameters, PasswordHashing
from gateway.registry.db import create_engine
from gateway.registry.migrate import migrate
from gateway.registry.networks import NetworkBook, load_networks
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.registry.types import ChannelKind
from tests.e2e.harness import (
    SERVICES,
    GatewayProcess,
    Sftp,
    clean_environ,
    gateway_config,
    start_gateway,
)
from tests.pipeline.provision import Sender, ok, provision
from tests.pki import Identity, StandardPki, fs_text, standard_pki
from tests.tools import require_tool

CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)
FOLDERS = {"R": "IN", "T": "INTEST", "S": "INTEST-S"}
FTP_PASSWORD = "ftp-secret-42!"
PLAIN_HOST = "127.0.0.2"
NETWORKS = """
[Loopback]
ranges = ["127.0.0.0/8"]
listener = "secondary"

[Elsewhere]
ranges = ["192.0.2.0/24"]
listener = "public"
"""


WEB_CONFIG = "[web]\nenabled = true\nport = 0\n"


def ftp_config(networks_file: Path) -> str:
    """The ``[ftp]`` part of a test's gateway.toml: FTPS on port 0, plain FTP for the secondary
    network on 127.0.0.2 (port 0)."""
    return (
        "[ftp]\nenabled = true\nport = 0\n"
        f'networks_file = "{networks_file}"\n'
        f'[ftp.plain_listeners.secondary]\nhost = "{PLAIN_HOST}"\nport = 0\n'
    )


def networks_book(folder: Path) -> NetworkBook:
    """The test networks file, written into ``folder``, as the daemon will read it."""
    path = folder / "networks.toml"
    path.write_text(NETWORKS)
    return load_networks(path, listeners=frozenset({"secondary"}))


def today() -> str:
    """Today on the calendar the gateway checks names against (its default time zone), as
    YYYYMMDD."""
    return f"{datetime.now(DEFAULT_TIMEZONE):%Y%m%d}"


@dataclass(frozen=True, slots=True)
class SetNames:
    """The names of one set: FI and FS parts, its GO and the TD that would cancel it."""

    fis: tuple[str, ...]
    fss: tuple[str, ...]
    go: str
    td: str


def set_names(
    sender: str, seq: str, *, parts: int = 1, app: str = "DMFA", env: str = "R"
) -> SetNames:
    """Names of a ``parts``-part set of ``app`` for ``sender`` dated today."""
    stem = f"{app}.{sender}.{today()}.{seq}.{env}"
    return SetNames(
        fis=tuple(f"FI.{stem}.{parts}.{n}" for n in range(1, parts + 1)),
        fss=tuple(f"FS.{stem}.{parts}.{n}" for n in range(1, parts + 1)),
        go=f"GO.{stem}.{parts}",
        td=f"TD.{stem}.{parts}",
    )


@dataclass(frozen=True, slots=True)
class Key:
    """An ed25519 key pair made by ssh-keygen."""

    private: Path
    public_line: str


@dataclass(frozen=True, slots=True)
class Template:
    """A migrated, provisioned registry (SQLite file) and its two senders."""

    database: Path
    a: Sender
    b: Sender
    web_client: Identity


@dataclass
class Party:
    """A provisioned sender as the tests drive it: its sftp client and its local folder."""

    number: str
    login: str
    sftp: Sftp
    work: Path
    out_dir: Path

    def write(self, name: str, data: bytes) -> str:
        """Create ``name`` in the sender's local folder; return the name."""
        (self.work / name).write_bytes(data)
        return name

    def put(self, names: Sequence[str], *, folder: str = "IN") -> list[str]:
        """The ``put`` commands that upload ``names`` from the local folder into ``folder``."""
        return [f"put {name} {folder}/{name}" for name in names]


@dataclass
class World:
    """A running gateway, its senders A and B, and the test PKI."""

    gateway: GatewayProcess
    a: Party
    b: Party
    cast: StandardPki
    web_client: Identity
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def seq(self) -> str:
        """A sequence number no other test of this gateway has used."""
        return f"{next(self._seq):05d}"

    def sign(self, content: bytes, signer: Identity | None = None) -> bytes:
        """FS text for ``content``: ``openssl cms -sign -binary``, base64 in 76-column CR lines."""
        der = self.cast.pki.sign(content, signer or self.cast.rsa, certfile=[self.cast.sub])
        return fs_text(der, "76-cr")

    def write_set(
        self,
        party: Party,
        *,
        seq: str,
        contents: Sequence[bytes],
        signer: Identity | None = None,
        app: str = "DMFA",
    ) -> SetNames:
        """Write FI, FS (signed by openssl) and an empty GO locally; return the names."""
        names = set_names(party.number, seq, parts=len(contents), app=app)
        for fi, fs, body in zip(names.fis, names.fss, contents, strict=True):
            party.write(fi, body)
            party.write(fs, self.sign(body, signer))
        party.write(names.go, b"")
        return names

    @property
    def routed(self) -> Path:
        """The directory destination of DMFA (config/services.toml: state_dir/routed/DMFA)."""
        return self.gateway.state_dir / "routed" / "DMFA"


@pytest.fixture(scope="session")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI, made once by openssl."""
    require_tool("openssl")
    return standard_pki(tmp_path_factory.mktemp("e2e-pki"))


@pytest.fixture(scope="session")
def trust_dir(cast: StandardPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The daemon's trust store folder: the test root CA and the signing CA's CRL."""
    folder = tmp_path_factory.mktemp("e2e-trust")
    (folder / "root.pem").write_bytes(cast.root.cert_pem)
    shutil.copy(cast.crl, folder / "signing-ca.crl.pem")
    return folder


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Key, Key]:
    """Sender A's and sender B's key pairs."""
    tool = require_tool("ssh-keygen")
    require_tool("sftp")
    folder = tmp_path_factory.mktemp("e2e-ssh")
    keys = []
    for name in ("a", "b"):
        path = folder / f"id_{name}"
        subprocess.run([tool, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        keys.append(Key(path, path.with_suffix(".pub").read_text().strip()))
    return keys[0], keys[1]


@pytest.fixture(scope="session")
def host_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SSH host keys made once (RSA generation is slow) and copied into each state directory."""
    folder = tmp_path_factory.mktemp("e2e-hostkeys") / "hostkeys"
    load_host_keys(folder)
    return folder


def _shifted_clock(shift: timedelta) -> Callable[[], datetime]:
    """The current time moved by ``shift``."""
    return lambda: datetime.now(UTC) + shift


def _registry(
    url: str,
    state_dir: Path,
    clock: Callable[[], datetime],
    policy: SignaturePolicy | None = None,
) -> Registry:
    return Registry(
        create_engine(url),
        clock=clock,
        notifier=OutboxNotifier(state_dir / "outbox"),
        hashing=PasswordHashing(CHEAP),
        catalogue=load_service_catalogue(SERVICES),
        networks=networks_book(state_dir),
        signature_policy=policy,
    )


async def _provision(
    database: Path, cast: StandardPki, keys: tuple[Key, Key], web_client: Identity
) -> Template:
    url = f"sqlite+aiosqlite:///{database}"
    await migrate(url)
    registry = _registry(url, database.parent, lambda: datetime.now(UTC))
    try:
        a = await provision(
            registry,
            index=1,
            ssh_public_key=keys[0].public_line,
            certificates=tuple(
                i.cert_pem for i in (cast.rsa, cast.ec, cast.revoked, cast.untrusted)
            ),
        )
        b = await provision(
            registry,
            index=2,
            ssh_public_key=keys[1].public_line,
            certificates=(cast.other_sender.cert_pem,),
        )
        ok(
            await registry.add_channel(
                actor=a.htb,
                quality=a.quality,
                kind=ChannelKind.webservice,
                client_certificate=web_client.cert_pem,
            )
        )
        for sender, network in ((a, "Loopback"), (b, "Elsewhere")):
            ok(
                await registry.add_channel(
                    actor=sender.htb,
                    quality=sender.quality,
                    kind=ChannelKind.ftp,
                    ftp_password=FTP_PASSWORD,
                    networks=[network],
                )
            )
    finally:
        await registry.engine.dispose()
    # Registration refuses what verification would (a certificate not valid now, an RSA-1024
    # key); register these through a registry whose clock stands inside their validity, or
    # whose policy allowed 1024 bits, so the daemon meets them as registered long ago.
    for signer, shift, policy in (
        (cast.expired, timedelta(days=-600), None),
        (cast.future, timedelta(days=600), None),
        (cast.rsa1024, timedelta(0), SignaturePolicy(min_rsa_bits=1024)),
    ):
        shifted = _registry(url, database.parent, _shifted_clock(shift), policy)
        try:
            ok(
                await shifted.upload_certificate(
                    actor=a.htb, quality=a.quality, data=signer.cert_pem
                )
            )
        finally:
            await shifted.engine.dispose()
    return Template(database=database, a=a, b=b, web_client=web_client)


@pytest.fixture(scope="session")
def template(
    tmp_path_factory: pytest.TempPathFactory, cast: StandardPki, ssh_keys: tuple[Key, Key]
) -> Template:
    """Senders A and B provisioned once; every daemon starts on a copy."""
    database = tmp_path_factory.mktemp("e2e-registry") / "registry.sqlite3"
    web_client = cast.pki.leaf("web-client-a", issuer=cast.root, key="ec:P-256")
    return asyncio.run(_provision(database, cast, ssh_keys, web_client))


Launch = Callable[..., World]


@pytest.fixture(scope="session")
def launch(
    tmp_path_factory: pytest.TempPathFactory,
    cast: StandardPki,
    trust_dir: Path,
    ssh_keys: tuple[Key, Key],
    host_keys: Path,
    template: Template,
) -> Iterator[Launch]:
    """Start a gateway on a fresh state directory (``set_timeout`` as given); all are stopped
    at the end of the session with SIGTERM, and each must exit 0 without error-level events."""
    started: list[tuple[GatewayProcess, frozenset[str]]] = []

    def start(
        *,
        set_timeout: str = "PT24H",
        env: Mapping[str, str] | None = None,
        expected_errors: frozenset[str] = frozenset(),
    ) -> World:
        """``expected_errors``: error-level events the test provokes on purpose."""
        base = tmp_path_factory.mktemp("e2e-gateway")
        state = base / "state"
        state.mkdir()
        shutil.copyfile(template.database, state / "registry.sqlite3")
        shutil.copytree(host_keys, state / "hostkeys")
        config = base / "gateway.toml"
        networks_book(base)
        config.write_text(
            gateway_config(
                state_dir=state,
                trust_dir=trust_dir,
                set_timeout=set_timeout,
                extra=ftp_config(base / "networks.toml") + WEB_CONFIG,
            )
        )
        gateway = start_gateway(config, state_dir=state, cwd=base, env=clean_environ(**(env or {})))
        started.append((gateway, expected_errors))

        def party(sender: Sender, key: Key, name: str) -> Party:
            work = base / f"sender-{name}"
            work.mkdir()
            return Party(
                number=sender.number,
                login=sender.login,
                sftp=Sftp(port=gateway.sftp_port, login=sender.login, key=key.private),
                work=work,
                out_dir=state / "out" / sender.number / "OUT",
            )

        return World(
            gateway=gateway,
            a=party(template.a, ssh_keys[0], "a"),
            b=party(template.b, ssh_keys[1], "b"),
            cast=cast,
            web_client=template.web_client,
        )

    yield start
    failures = []
    for gateway, expected in started:
        status = gateway.stop()
        problems = [p for p in gateway.problems() if p.get("event") not in expected]
        if status != 0 or not gateway.events("daemon.stopped"):
            failures.append(f"exit status {status}:\n{gateway.tail()}")
        elif problems:
            failures.append(f"error-level events: {problems}")
    assert not failures, "\n\n".join(failures)


@pytest.fixture(scope="session")
def world(launch: Launch) -> World:
    """The gateway most end-to-end tests share (default set timeout)."""
    return launch()
