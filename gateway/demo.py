"""``gateway serve --demo``: provision a demo sender once; tell a person how to send a first set.

What it makes (idempotently, under ``<state_dir>/demo/``):

- an enterprise with its main access manager, activated by a first login, an employer quality,
  the configuration saved, a technical user ``demo`` and an SFTP channel (which assigns the
  sender number), subscriptions to DMFA, DIMN and WECH;
- an Ed25519 SSH key pair for ``demo`` (``id_ed25519``), registered on the channel;
- a demo CA (``trust/demo-ca.pem``, added to the daemon's trust store in demo mode) and an
  RSA-2048 signing certificate it issued (``signing.key`` / ``signing.pem``), registered as the
  quality's signing certificate;
- ``demo.json`` with ``host``, ``port``, ``login``, ``key``, ``sender``, ``signing_key``,
  ``signing_cert`` and ``gateway_cert`` for scripts, and the commands printed by
  :func:`instructions`.

Nothing here is for production: the private keys are unencrypted files in the state directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from gateway.pipeline.identity import issue_certificate, private_pem
from gateway.registry.service import Registry
from gateway.registry.types import (
    ChannelKind,
    EnterpriseNumber,
    PasswordCredential,
    Person,
    Principal,
    QualityRef,
    Refusal,
    SenderNumber,
)

DEMO_KBO = "0403170701"  # a valid KBO number (mod-97 check digits)
DEMO_HTB = "demo-htb"
DEMO_LOGIN = "demo"
DEMO_APPLICATIONS = ("DMFA", "DIMN", "WECH")

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
        }


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
    ca = issue_certificate(
        subject=ca_name,
        issuer=ca_name,
        public_key=ca_key.public_key(),
        signing_key=ca_key,
        not_before=start,
        not_after=now + timedelta(days=3650),
        ca=True,
        usages=frozenset({"key_cert_sign", "crl_sign"}),
    )
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


async def ensure_demo(
    registry: Registry,
    *,
    state_dir: Path,
    host: str,
    port: int,
    gateway_cert: Path,
    now: datetime,
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
    )
    facts.work_dir.mkdir(exist_ok=True)
    return facts


def save_facts(facts: DemoFacts) -> Path:
    """Write ``demo.json`` (atomically); the next start offers the next sequence number, so
    pasting the commands again after a restart sends a new set instead of a duplicate (133)."""
    path = facts.key.parent / "demo.json"
    following = int(facts.sequence) % 99999 + 1
    document = facts.as_json() | {"next_sequence": f"{following:05d}"}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return path


def instructions(facts: DemoFacts, *, today: date) -> str:
    """The exact shell commands that send a first set and read its acknowledgement."""
    stem = f"DMFA.{facts.sender}.{today:%Y%m%d}.{facts.sequence}.R"
    fi, fs, go = f"FI.{stem}.1.1", f"FS.{stem}.1.1", f"GO.{stem}.1"
    sftp = (
        f"sftp -b - -i {facts.key} -P {facts.port} -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR {facts.login}@{facts.host}"
    )
    return "\n".join(
        [
            "",
            "Demo sender ready. Send a first set (paste in a second terminal):",
            "",
            f"  cd {facts.work_dir}",
            f"  printf '<?xml version=\"1.0\"?><DmfAOriginal/>\\r\\n' > {fi}",
            f"  gateway sign {fi} --key {facts.signing_key} --cert {facts.signing_cert}",
            "  # or, with openssl alone:",
            f"  #   openssl cms -sign -binary -outform DER -in {fi} \\",
            f"  #     -signer {facts.signing_cert} -inkey {facts.signing_key} \\",
            f"  #     | base64 -w 76 > {fs}",
            f"  : > {go}",
            f"  printf 'put {fi} IN/{fi}\\nput {fs} IN/{fs}\\nput {go} IN/{go}\\n' | {sftp}",
            "",
            "Then wait for the acknowledgement, fetch it (FO.ACRF, ResultCode 1 when accepted) and",
            "check its signature:",
            "",
            f"  until echo 'ls OUT/GO.ACRF.*' | {sftp} > /dev/null 2>&1; do sleep 1; done",
            f"  echo 'get OUT/*.ACRF.* .' | {sftp}",
            "  cat FO.ACRF.*",
            # The FS is base64 in CR-ended lines, which GNU base64 -d refuses: drop the CRs.
            # The DER goes to ACRF.*.p7s so that FO.ACRF.* still matches only the FO files.
            '  for f in FO.ACRF.*; do tr -d \'\\r\' < "FS${f#FO}" | base64 -d > "${f#FO.}.p7s"; '
            f'openssl cms -verify -binary -inform DER -in "${{f#FO.}}.p7s" -content "$f" '
            f'-CAfile {facts.gateway_cert} -purpose any > /dev/null && echo "$f: signature OK"; '
            "done",
            "",
            f"Facts for scripts: {facts.key.parent / 'demo.json'}",
            "",
        ]
    )
