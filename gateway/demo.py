"""``gateway serve --demo``: provision a demo sender once; tell a person how to send a first set.

What it makes (idempotently, under ``<state_dir>/demo/``):

- an enterprise with its main access manager, activated by a first login, an employer quality,
  the configuration saved, a technical user ``demo`` and an SFTP channel (which assigns the
  sender number), subscriptions to DMFA, DIMN and WECH;
- an Ed25519 SSH key pair for ``demo`` (``id_ed25519``), registered on the channel;
- an FTP channel for ``demo`` with a generated password (``ftp-password``), bound to the
  secondary network ``Demo-loopback`` (127.0.0.0/8), whose plain-FTP listener ``demo`` is on
  127.0.0.2 (:func:`demo_settings`, :func:`with_demo_network`): FTPS on the public listener,
  plain FTP on 127.0.0.2;
- a web-service channel for ``demo`` with a self-signed P-256 client certificate
  (``web-client.pem`` / ``web-client.key``; a registered certificate is its own TLS anchor);
- a demo online service for DMFA with its own self-signed client certificate
  (``service-client.pem`` / ``service-client.key``), which the daemon adds to the services the
  catalogue declares (:func:`demo_service_client`): it may post notifications for DMFA;
- a demo CA (``trust/demo-ca.pem``, added to the daemon's trust store in demo mode) and an
  RSA-2048 signing certificate it issued (``signing.key`` / ``signing.pem``), registered as the
  quality's signing certificate;
- ``demo.json`` with ``host``, ``port``, ``login``, ``key``, ``sender``, ``signing_key``,
  ``signing_cert``, ``gateway_cert``, and for FTP(S) ``ftp_port``, ``ftp_login``,
  ``ftp_password``, ``ftp_plain_host``, ``ftp_plain_port`` and ``ftp_ca`` (the CA that verifies
  the FTPS certificate), and for the web service ``web_url``, ``web_ca``, ``web_cert``,
  ``web_key``, ``service_cert``, ``service_key`` and ``service_application``, for scripts; and
  the commands printed by :func:`instructions`.

Nothing here is for production: the private keys are unencrypted files in the state directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from gateway.ops.settings import FtpListenerSettings, GatewaySettings
from gateway.ops.tls import issue_ca, issue_certificate, private_pem
from gateway.registry.networks import NetworkBook, SecondaryNetwork
from gateway.registry.service import Registry
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    EnterpriseNumber,
    PasswordCredential,
    Person,
    Principal,
    QualityRef,
    Refusal,
    SenderNumber,
    ServiceClient,
)
from gateway.registry.validate import generate_password
from gateway.spool.tables import UploadRow

DEMO_KBO = "0403170701"  # a valid KBO number (mod-97 check digits)
DEMO_HTB = "demo-htb"
DEMO_LOGIN = "demo"
DEMO_APPLICATIONS = ("DMFA", "DIMN", "WECH")
DEMO_SERVICE_APPLICATION = "DMFA"
DEMO_NETWORK = "Demo-loopback"
DEMO_PLAIN_LISTENER = "demo"
DEMO_PLAIN_HOST = "127.0.0.2"
# A loopback client connecting to 127.0.0.2 speaks from 127.0.0.1 (Linux picks the source
# address of the 127/8 route), so the demo network is the whole loopback range.
DEMO_RANGES = (ipaddress.ip_network("127.0.0.0/8"),)

T = TypeVar("T")


class DemoError(Exception):
    """The demo could not be provisioned; the message says which step refused and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoFacts:
    """What a person or a script needs to send a first set to the demo sender."""

    host: str
    port: int
    login: str
    key: Path
    sender: SenderNumber
    signing_key: Path
    signing_cert: Path
    gateway_cert: Path
    trust_dir: Path
    work_dir: Path
    sequence: str
    ftp_port: int
    ftp_plain_port: int
    ftp_password: str
    ftp_ca: Path
    web_port: int
    web_ca: Path
    web_cert: Path
    web_key: Path
    service_cert: Path
    service_key: Path
    admin_port: int
    admin_ca: Path
    htb_password: str
    api_token: str
    host_keys: tuple[str, ...] = ()
    """The SFTP listener's public host keys (OpenSSH lines), for ``known_hosts``."""
    host_fingerprints: tuple[str, ...] = ()
    """Their fingerprints as ``ssh-keygen -lf`` prints them (``SHA256:… (ED25519)``)."""

    @property
    def known_hosts(self) -> Path:
        """The ``known_hosts`` file the printed sftp commands check the gateway against."""
        return self.key.parent / "known_hosts"

    def as_json(self) -> dict[str, object]:
        """The ``demo.json`` document."""
        return {
            "host": self.host,
            "port": self.port,
            "login": self.login,
            "key": str(self.key),
            "sender": self.sender,
            "signing_key": str(self.signing_key),
            "signing_cert": str(self.signing_cert),
            "gateway_cert": str(self.gateway_cert),
            "trust_dir": str(self.trust_dir),
            "work_dir": str(self.work_dir),
            "next_sequence": self.sequence,
            "ftp_port": self.ftp_port,
            "ftp_login": self.login,
            "ftp_password": self.ftp_password,
            "ftp_plain_host": DEMO_PLAIN_HOST,
            "ftp_plain_port": self.ftp_plain_port,
            "ftp_ca": str(self.ftp_ca),
            "web_url": f"https://{self.host}:{self.web_port}",
            "web_ca": str(self.web_ca),
            "web_cert": str(self.web_cert),
            "web_key": str(self.web_key),
            "service_cert": str(self.service_cert),
            "service_key": str(self.service_key),
            "service_application": DEMO_SERVICE_APPLICATION,
            "admin_url": f"https://{self.host}:{self.admin_port}",
            "admin_ca": str(self.admin_ca),
            "htb_login": DEMO_HTB,
            "htb_password": self.htb_password,
            "enterprise": DEMO_KBO,
            "api_token": self.api_token,
            "known_hosts": str(self.known_hosts),
            "host_fingerprints": list(self.host_fingerprints),
        }


def demo_settings(settings: GatewaySettings) -> GatewaySettings:
    """``settings`` with FTP(S), the web service and the admin console on, and the demo
    network's plain FTP listener on 127.0.0.2 (the public listener's port; its own free port
    when that is 0)."""
    listeners = dict(settings.ftp.plain_listeners)
    listeners[DEMO_PLAIN_LISTENER] = FtpListenerSettings(
        host=DEMO_PLAIN_HOST, port=settings.ftp.port
    )
    ftp = settings.ftp.model_copy(update={"enabled": True, "plain_listeners": listeners})
    web = settings.web.model_copy(update={"enabled": True})
    admin = settings.admin.model_copy(update={"enabled": True})
    return settings.model_copy(update={"ftp": ftp, "web": web, "admin": admin})


def with_demo_network(book: NetworkBook) -> NetworkBook:
    """``book`` plus the demo's secondary network (re-added after each reload of the file)."""
    network = SecondaryNetwork(name=DEMO_NETWORK, ranges=DEMO_RANGES, listener=DEMO_PLAIN_LISTENER)
    return dataclasses.replace(
        book,
        networks={**book.networks, DEMO_NETWORK: network},
        listeners=book.listeners | {DEMO_PLAIN_LISTENER},
    )


def _ensure_password(path: Path) -> str:
    """The demo FTP password: 24 random URL-safe characters and two digits (the policy)."""
    if not path.is_file():
        _write_private(path, (secrets.token_urlsafe(18) + "42").encode())
    return path.read_text().strip()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _ensure_ssh_key(path: Path) -> str:
    """The demo SSH key pair (OpenSSH formats); returns the public key line."""
    if not path.is_file():
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        path.with_suffix(".pub").write_bytes(public + b" demo@batch-gateway\n")
    return path.with_suffix(".pub").read_text().strip()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Batch Gateway demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ensure_signing_pki(folder: Path, now: datetime) -> tuple[Path, Path, Path]:
    """Demo CA and signing certificate; returns (signing key, signing cert, CA cert) paths."""
    ca_path = folder / "trust" / "demo-ca.pem"
    key_path = folder / "signing.key"
    cert_path = folder / "signing.pem"
    if ca_path.is_file() and key_path.is_file() and cert_path.is_file():
        return key_path, cert_path, ca_path
    start = now - timedelta(days=1)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name("Batch Gateway demo CA")
    ca = issue_ca(ca_name, ca_key, not_before=start, not_after=now + timedelta(days=3650))
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = issue_certificate(
        subject=_name("Demo payroll signer"),
        issuer=ca_name,
        public_key=signer_key.public_key(),
        signing_key=ca_key,
        not_before=start,
        not_after=now + timedelta(days=825),
        ca=False,
        usages=frozenset({"digital_signature", "content_commitment"}),
    )
    _write_private(key_path, private_pem(signer_key))
    cert_path.write_bytes(signer.public_bytes(serialization.Encoding.PEM))
    ca_path.parent.mkdir(parents=True, exist_ok=True)
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, ca_path


def _ok(value: T | Refusal, step: str) -> T:
    if isinstance(value, Refusal):
        raise DemoError(f"demo provisioning refused at {step}: {value}")
    return value


async def _provision(registry: Registry, public_key: str, signing_cert: bytes) -> SenderNumber:
    """The demo enterprise, quality and sender, through the registry's service API."""
    quality = QualityRef(EnterpriseNumber(DEMO_KBO), "employer")
    provisioned = _ok(
        await registry.provision_enterprise(
            actor=None,
            kbo=DEMO_KBO,
            name="Demo Employer",
            htb=Person(
                name="Demo Manager",
                email="htb@demo.invalid",
                national_register_number="85073003328",
            ),
            htb_login=DEMO_HTB,
        ),
        "provision enterprise",
    )
    if provisioned.issued is None:
        raise DemoError("the demo HTB has a national number and should get its password directly")
    login = await registry.console_login(DEMO_HTB, PasswordCredential(provisioned.issued.password))
    if not isinstance(login, Principal):
        raise DemoError(f"demo HTB first login failed: {login}")
    _ok(await registry.activate_quality(actor=DEMO_HTB, kbo=DEMO_KBO, kind="employer"), "quality")
    _ok(await registry.save_configuration(actor=DEMO_HTB, quality=quality) or quality, "save")
    _ok(
        await registry.set_technical_user(
            actor=DEMO_HTB,
            quality=quality,
            person=Person(name="Demo Payroll", email="payroll@demo.invalid", language="en"),
            login=DEMO_LOGIN,
        ),
        "technical user",
    )
    sender = _ok(
        await registry.add_channel(
            actor=DEMO_HTB, quality=quality, kind=ChannelKind.sftp, ssh_keys=[public_key]
        ),
        "SFTP channel",
    )
    _ok(
        await registry.upload_certificate(actor=DEMO_HTB, quality=quality, data=signing_cert),
        "certificate",
    )
    _ok(
        await registry.set_services(actor=DEMO_HTB, quality=quality, codes=DEMO_APPLICATIONS),
        "online services",
    )
    return sender


def _ensure_web_client(
    folder: Path,
    now: datetime,
    stem: str = "web-client",
    common_name: str = "Demo payroll web client",
) -> tuple[Path, Path]:
    """A demo web-service client certificate (self-signed, P-256, client authentication) and
    key: the sender's by default; returns (certificate, key) paths."""
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = issue_certificate(
        subject=name,
        issuer=name,
        public_key=key.public_key(),
        signing_key=key,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=825),
        ca=False,
        usages=frozenset({"digital_signature"}),
        extensions=(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),),
    )
    _write_private(key_path, private_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


async def _ensure_channel(registry: Registry, kind: ChannelKind, step: str, **options: Any) -> None:
    """One of the demo quality's channels (``options`` as ``add_channel`` takes them); a second
    one is refused as a duplicate, which is what a restart meets."""
    quality = QualityRef(EnterpriseNumber(DEMO_KBO), "employer")
    added = await registry.add_channel(actor=DEMO_HTB, quality=quality, kind=kind, **options)
    if isinstance(added, Refusal) and added.reason != "duplicate":
        _ok(added, step)


def _read_secret(path: Path) -> str | None:
    """A secret the demo wrote before, or None (start-up: a blocking read is fine)."""
    return path.read_text().strip() if path.is_file() else None


async def _ensure_htb_password(registry: Registry, path: Path) -> str:
    """The demo HTB's console password (``htb-password``): set once, as the operator resets it
    and the HTB changes it, so the console opens without the change-password step."""
    known = _read_secret(path)
    if known is not None:
        return known
    issued = _ok(await registry.reset_password(actor=None, login=DEMO_HTB), "HTB password reset")
    password = generate_password()
    _ok(
        await registry.change_password(login=DEMO_HTB, old=issued.password, new=password)
        or password,
        "HTB password",
    )
    _write_private(path, password.encode())
    return password


async def _ensure_api_token(registry: Registry, path: Path) -> str:
    """An API token of the demo HTB for the demo quality (``api-token``), made again when the
    one on file no longer works."""
    secret = _read_secret(path)
    if secret is not None and not isinstance(await registry.token_grant(secret), AuthFailure):
        return secret
    quality = QualityRef(EnterpriseNumber(DEMO_KBO), "employer")
    issued = _ok(
        await registry.issue_token(actor=DEMO_HTB, quality=quality, name="demo script", days=366),
        "API token",
    )
    _write_private(path, issued.secret.encode())
    return issued.secret


async def ensure_demo(
    registry: Registry,
    *,
    state_dir: Path,
    host: str,
    port: int,
    gateway_cert: Path,
    ftp_ca: Path,
    web_ca: Path,
    now: datetime,
    admin_ca: Path | None = None,
) -> DemoFacts:
    """Provision the demo sender unless ``demo/demo.json`` names one (see :func:`save_facts`)."""
    folder = (state_dir / "demo").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    facts_path = folder / "demo.json"
    previous: dict[str, object] = {}
    if facts_path.is_file():
        previous = json.loads(facts_path.read_text())
    public_key = _ensure_ssh_key(folder / "id_ed25519")
    signing_key, signing_cert, ca = _ensure_signing_pki(folder, now)
    sender = previous.get("sender")
    if not isinstance(sender, str) or await registry.sender_profile(SenderNumber(sender)) is None:
        sender = await _provision(registry, public_key, signing_cert.read_bytes())
    ftp_password = _ensure_password(folder / "ftp-password")
    await _ensure_channel(
        registry, ChannelKind.ftp, "FTP channel", ftp_password=ftp_password, networks=[DEMO_NETWORK]
    )
    web_cert, web_key = _ensure_web_client(folder, now)
    await _ensure_channel(
        registry,
        ChannelKind.webservice,
        "web-service channel",
        client_certificate=web_cert.read_bytes(),
    )
    service_cert, service_key = _ensure_web_client(
        folder, now, "service-client", "Demo DmfA online service"
    )
    htb_password = await _ensure_htb_password(registry, folder / "htb-password")
    api_token = await _ensure_api_token(registry, folder / "api-token")
    sequence = int(str(previous.get("next_sequence", "00001"))) if previous else 1
    facts = DemoFacts(
        host=host,
        port=port,
        login=DEMO_LOGIN,
        key=folder / "id_ed25519",
        sender=SenderNumber(sender),
        signing_key=signing_key,
        signing_cert=signing_cert,
        gateway_cert=gateway_cert,
        trust_dir=ca.parent,
        work_dir=folder / "outbox-sender",
        sequence=f"{sequence:05d}",
        ftp_port=0,
        ftp_plain_port=0,
        ftp_password=ftp_password,
        ftp_ca=ftp_ca,
        web_port=0,
        web_ca=web_ca,
        web_cert=web_cert,
        web_key=web_key,
        service_cert=service_cert,
        service_key=service_key,
        admin_port=0,
        admin_ca=admin_ca or state_dir / "admin" / "ca.pem",
        htb_password=htb_password,
        api_token=api_token,
    )
    facts.work_dir.mkdir(exist_ok=True)
    return facts


def demo_service_client(facts: DemoFacts) -> ServiceClient:
    """The demo online service (its certificate ``service-client.pem``), allowed to post
    notifications for DMFA."""
    der = x509.load_pem_x509_certificate(facts.service_cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return ServiceClient(
        name=facts.service_cert.stem,
        fingerprint=hashlib.sha256(der).hexdigest(),
        certificate=der,
        applications=frozenset({DEMO_SERVICE_APPLICATION}),
    )


async def next_free_sequence(registry: Registry, sender: str, today: date, proposed: int) -> int:
    """``proposed``, or past the highest sequence the demo sender already used today (a
    restart never offers a number taken: 133)."""
    prefix = f"GO.DMFA.{sender}.{today:%Y%m%d}."
    async with registry.engine.connect() as conn:
        names = (
            await conn.execute(
                select(UploadRow.name).where(
                    UploadRow.sender == sender, UploadRow.name.startswith(prefix)
                )
            )
        ).scalars()
        used = [
            int(n[len(prefix) : len(prefix) + 5]) for n in names if n[len(prefix) :][:5].isdigit()
        ]
    return max([proposed, *(u + 1 for u in used)]) % 99999 or 1


def save_facts(facts: DemoFacts) -> Path:
    """Write ``demo.json`` (atomically); the next start offers the next sequence number, so
    pasting the commands again after a restart sends a new set instead of a duplicate (133)."""
    path = facts.key.parent / "demo.json"
    # The instructions send three sets (SFTP, FTPS, HTTPS): the next start offers the one after.
    following = (int(facts.sequence) + 2) % 99999 + 1
    document = facts.as_json() | {"next_sequence": f"{following:05d}"}
    if facts.host_keys:
        lines = [f"[{facts.host}]:{facts.port} {key}\n" for key in facts.host_keys]
        known = facts.known_hosts.with_suffix(".tmp")
        known.write_text("".join(lines))
        known.replace(facts.known_hosts)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return path


def _set_names(facts: DemoFacts, today: date, sequence: int) -> tuple[str, str, str]:
    stem = f"DMFA.{facts.sender}.{today:%Y%m%d}.{sequence:05d}.R"
    return f"FI.{stem}.1.1", f"FS.{stem}.1.1", f"GO.{stem}.1"


def instructions(facts: DemoFacts, *, today: date) -> str:
    """The exact shell commands that send a first set over SFTP, a second over FTPS and a third
    over the HTTPS web service, and read their acknowledgements (each fetched, then deleted from
    OUT, as an unattended client does, so that the next wait sees only the next one); then the
    demo online service posts a notification, which the sender fetches over SFTP."""
    fi, fs, go = _set_names(facts, today, int(facts.sequence))
    fi2, fs2, go2 = _set_names(facts, today, int(facts.sequence) % 99999 + 1)
    fi3, fs3, go3 = _set_names(facts, today, (int(facts.sequence) + 1) % 99999 + 1)
    web = (
        f"curl -sS --cacert {facts.web_ca} --cert {facts.web_cert} --key {facts.web_key} "
        f"https://{facts.host}:{facts.web_port}/v1"
    )
    sftp = (
        f"sftp -b - -i {facts.key} -P {facts.port} -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={facts.known_hosts} -o LogLevel=ERROR {facts.login}@{facts.host}"
    )
    password = facts.key.parent / "ftp-password"
    user = f'--user "{facts.login}:$(cat {password})"'
    ftps = f"curl -sS --ssl-reqd --cacert {facts.ftp_ca} {user} ftp://{facts.host}:{facts.ftp_port}"
    plain = f"curl -sS {user} ftp://{DEMO_PLAIN_HOST}:{facts.ftp_plain_port}"
    declaration = "printf '<?xml version=\"1.0\"?><DmfAOriginal/>\\r\\n'"
    notification = "printf '<Notification><ResultCode>1</ResultCode></Notification>\\r\\n'"
    service = (
        f"curl -sS --cacert {facts.web_ca} --cert {facts.service_cert} "
        f'--key {facts.service_key} "https://{facts.host}:{facts.web_port}/v1'
    )
    sign = f"--key {facts.signing_key} --cert {facts.signing_cert}"
    return "\n".join(
        [
            "",
            "Demo sender ready. The gateway's SSH host keys (compare with the first connection's "
            f"prompt; the commands below check them against {facts.known_hosts}):",
            "",
            *(f"  # {fingerprint}" for fingerprint in facts.host_fingerprints),
            "",
            "Send a first set over SFTP (paste in a second terminal):",
            "",
            f"  cd {facts.work_dir}",
            f"  {declaration} > {fi}",
            f"  gateway sign {fi} {sign}",
            "  # or, with openssl alone:",
            f"  #   openssl cms -sign -binary -outform DER -in {fi} \\",
            f"  #     -signer {facts.signing_cert} -inkey {facts.signing_key} \\",
            f"  #     | base64 -w 76 > {fs}",
            f"  : > {go}",
            f"  printf 'put {fi} IN/{fi}\\nput {fs} IN/{fs}\\nput {go} IN/{go}\\n' | {sftp}",
            "",
            "Wait for its acknowledgement (FO.ACRF, ResultCode 1 when accepted), fetch it and take",
            "it out of OUT:",
            "",
            f"  until echo 'ls OUT/GO.ACRF.*' | {sftp} > /dev/null 2>&1; do sleep 1; done",
            f"  printf 'get OUT/*.ACRF.* .\\nrm OUT/*.ACRF.*\\n' | {sftp}",
            "",
            "Send a second set over FTPS (explicit TLS) with curl, and fetch its acknowledgement:",
            "",
            f"  {declaration} > {fi2}",
            f"  gateway sign {fi2} {sign}",
            f"  : > {go2}",
            f'  {ftps}/IN/ -T "{{{fi2},{fs2},{go2}}}"',
            f"  until {ftps}/OUT/ --list-only | grep -q '^GO[.]ACRF'; do sleep 1; done",
            f"  for f in $({ftps}/OUT/ --list-only | grep ACRF); do "
            f'{ftps}/OUT/$f -o $f -Q "-DELE $f"; done',
            "  # the same upload with lftp:",
            f'  #   lftp -u {facts.login},"$(cat {password})" -e \'set ftp:ssl-force true; '
            f"set ssl:ca-file {facts.ftp_ca}; mput -O IN {fi2} {fs2} {go2}; bye' "
            f"ftp://{facts.host}:{facts.ftp_port}",
            f"  # plain FTP is accepted only on the demo's secondary network ({DEMO_PLAIN_HOST}):",
            f"  #   {plain}/OUT/ --list-only",
            "",
            "Send a third set over the HTTPS web service (a client certificate), and fetch its",
            "acknowledgement:",
            "",
            f"  {declaration} > {fi3}",
            f"  gateway sign {fi3} {sign}",
            f"  : > {go3}",
            f"  for f in {fi3} {fs3} {go3}; do {web}/IN/$f -T $f -o /dev/null; done",
            f"  until {web}/OUT/ | grep -q '\"GO[.]ACRF'; do sleep 1; done",
            f"  for f in $({web}/OUT/ | grep -o 'F[OS][.]ACRF[^\"]*'); do {web}/OUT/$f -o $f; done",
            "",
            f"An online service answers: the demo's {DEMO_SERVICE_APPLICATION} service posts a "
            "notification for the demo",
            "sender with its own certificate; the sender fetches it over SFTP:",
            "",
            f"  {notification} > notification.xml",
            f"  {service}/services/{DEMO_SERVICE_APPLICATION}/notifications?sender={facts.sender}"
            f"\" -H 'Idempotency-Key: demo-{facts.sequence}' --data-binary @notification.xml",
            f"  printf 'get OUT/*.NOTI.* .\\nrm OUT/*.NOTI.*\\n' | {sftp}",
            "",
            "Read the three acknowledgements and the notification, and check their signatures:",
            "",
            "  cat FO.ACRF.*",
            # The FS is base64 in CR-ended lines, which GNU base64 -d refuses: drop the CRs.
            # The DER goes to ACRF.*.p7s (NOTI.*.p7s) so that FO.* still matches only FO files.
            '  for f in FO.*; do tr -d \'\\r\' < "FS${f#FO}" | base64 -d > "${f#FO.}.p7s"; '
            f'openssl cms -verify -binary -inform DER -in "${{f#FO.}}.p7s" -content "$f" '
            f'-CAfile {facts.gateway_cert} -purpose any > /dev/null && echo "$f: signature OK"; '
            "done",
            "",
            f"The access managers' console (the demo HTB; its CA: {facts.admin_ca}):",
            "",
            f"  # https://{facts.host}:{facts.admin_port}/admin/console/  login {DEMO_HTB}, "
            f"password in {facts.key.parent / 'htb-password'}",
            "  # the admin API with the demo's token:",
            f'  #   curl -sS --cacert {facts.admin_ca} -H "Authorization: Bearer $(cat '
            f'{facts.key.parent / "api-token"})" https://{facts.host}:{facts.admin_port}'
            "/admin/api/v1/me",
            "",
            f"Facts for scripts: {facts.key.parent / 'demo.json'}",
            "",
        ]
    )
