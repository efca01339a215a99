"""A test PKI made with the real ``openssl``: CAs, certificates, CRLs and CMS signatures.

Reusable by every test that needs certificates or FS files (signature core, pipeline, channels)
and by ``bench/verify.py``. Everything lives under one temporary folder; nothing is committed.

Building blocks (all return paths or bytes; keys are unencrypted PEM)::

    pki = Pki(tmp_path)                               # needs `openssl` on PATH
    root = pki.root_ca("Test Root")
    sub = pki.ca("Test Sub CA", issuer=root)
    alice = pki.leaf("alice", issuer=sub)             # RSA-2048; key="ec:P-256", "rsa:1024"
    old = pki.leaf("old", issuer=sub, not_before=..., not_after=...)
    pki.revoke(sub, old); crl = pki.crl(sub)          # PEM CRL path
    fs_der = pki.sign(fi_path, alice, certfile=[sub]) # openssl cms -sign -binary -outform DER
    ok, err = pki.openssl_verify(fi_path, fs_der, trusted=[root], registered=[alice])

:func:`standard_pki` builds, once per session, the fixed cast the signature tests use
(:class:`StandardPki`): root + intermediate, RSA-2048/ECDSA P-256/RSA-1024 signers, expired,
not-yet-valid, revoked (+ CRL), a signer under an untrusted CA, and another sender's signer.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from gateway.core.cms_sign import SigningIdentity, load_signing_identity

__all__ = [
    "Identity",
    "Pki",
    "SignatureCase",
    "StandardPki",
    "fs_text",
    "signature_cases",
    "standard_pki",
]

_CONFIG = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[ policy_any ]
commonName = supplied
organizationName = optional
countryName = optional
serialNumber = optional
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_leaf ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


@dataclass(frozen=True, slots=True)
class Identity:
    """A key pair with its certificate (and, for a CA, its `openssl ca` folder)."""

    name: str
    key: Path
    cert: Path
    ca_dir: Path | None = None

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        """The private key, PEM (unencrypted)."""
        return self.key.read_bytes()

    @property
    def cert_der(self) -> bytes:
        """The certificate, DER."""
        body = b"".join(
            line for line in self.cert_pem.splitlines() if line and not line.startswith(b"-----")
        )
        return base64.b64decode(body)


def self_signed_identity(
    key: CertificateIssuerPrivateKeyTypes, common_name: str, *, valid_at: datetime, days: int = 30
) -> SigningIdentity:
    """``key`` with a self-signed certificate made in memory (valid from a day before
    ``valid_at`` for ``days``), loaded as the gateway loads its own signing identity."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_at - timedelta(days=1))
        .not_valid_after(valid_at + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return load_signing_identity(key_pem, cert.public_bytes(serialization.Encoding.PEM))


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def fs_text(der: bytes, style: str) -> bytes:
    """Base64 an FS the way senders do: "one-line", "76-cr" or "64-crlf" (independent of core)."""
    text = base64.b64encode(der)
    if style == "one-line":
        return text
    width, end = {"76-cr": (76, b"\r"), "64-crlf": (64, b"\r\n")}[style]
    return end.join(text[i : i + width] for i in range(0, len(text), width)) + end


class Pki:
    """Makes keys, certificates, CRLs and signatures with the `openssl` command in ``root``."""

    def __init__(self, root: Path, openssl: str | None = None) -> None:
        found = openssl or shutil.which("openssl")
        if found is None:
            raise RuntimeError("openssl is not installed")
        self.openssl = found
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run ``openssl ARGS`` and return the completed process."""
        return subprocess.run(
            [self.openssl, *map(str, args)], capture_output=True, check=check, timeout=120
        )

    def _new(self, name: str) -> Path:
        self._count += 1
        folder = self.root / f"{self._count:02d}-{name.replace(' ', '_')}"
        folder.mkdir()
        return folder

    def key(self, folder: Path, spec: str) -> Path:
        """Generate a key: "rsa:BITS" or "ec:CURVE" (e.g. "ec:P-256")."""
        kind, _, param = spec.partition(":")
        path = folder / "key.pem"
        if kind == "rsa":
            opts = ["-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{param}"]
        elif kind == "ec":
            opts = ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{param}"]
        else:
            raise ValueError(spec)
        self.run("genpkey", *opts, "-out", path)
        return path

    def _issue(
        self,
        name: str,
        *,
        issuer: Identity | None,
        key: str,
        extensions: str,
        not_before: datetime | None,
        not_after: datetime | None,
        subject: str | None = None,
    ) -> Identity:
        folder = self._new(name)
        key_path = self.key(folder, key)
        csr = folder / "req.csr"
        self.run(
            "req", "-new", "-config", self._config(folder), "-key", key_path,
            "-subj", subject or f"/O=Batch Gateway Tests/CN={name}", "-out", csr,
        )  # fmt: skip
        start = not_before or datetime.now(UTC) - timedelta(days=1)
        end = not_after or datetime.now(UTC) + timedelta(days=365)
        signer = issuer.ca_dir if issuer is not None else folder
        assert signer is not None, f"{issuer} is not a CA"
        cert = folder / "cert.pem"
        args: list[str | Path] = [
            "ca", "-batch", "-notext", "-config", self._config(signer), "-in", csr, "-out", cert,
            "-extensions", extensions, "-startdate", _stamp(start), "-enddate", _stamp(end),
        ]  # fmt: skip
        if issuer is None:
            args += ["-selfsign", "-keyfile", key_path]
        else:
            args += ["-cert", issuer.cert, "-keyfile", issuer.key]
        self.run(*args)
        return Identity(name=name, key=key_path, cert=cert, ca_dir=folder)

    def _config(self, folder: Path) -> Path:
        config = folder / "openssl.cnf"
        if not config.exists():
            (folder / "newcerts").mkdir()
            (folder / "index.txt").write_text("")
            (folder / "serial").write_text(f"{1000 + self._count * 16:04X}\n")
            (folder / "crlnumber").write_text("01\n")
            config.write_text(_CONFIG.format(dir=folder))
        return config

    def root_ca(self, name: str, *, key: str = "rsa:2048", **dates: Any) -> Identity:
        """A self-signed CA."""
        return self._issue(name, issuer=None, key=key, extensions="v3_ca", **_dates(dates))

    def ca(self, name: str, *, issuer: Identity, key: str = "rsa:2048", **dates: Any) -> Identity:
        """An intermediate CA under ``issuer``."""
        return self._issue(name, issuer=issuer, key=key, extensions="v3_ca", **_dates(dates))

    def leaf(
        self,
        name: str,
        *,
        issuer: Identity,
        key: str = "rsa:2048",
        subject: str | None = None,
        **dates: Any,
    ) -> Identity:
        """A signing (end-entity) certificate under ``issuer``; dates: not_before, not_after;
        ``subject`` an ``openssl -subj`` name (default ``/O=Batch Gateway Tests/CN=<name>``),
        e.g. an eID's ``/C=BE/CN=…/serialNumber=<national number>``."""
        return self._issue(
            name, issuer=issuer, key=key, extensions="v3_leaf", subject=subject, **_dates(dates)
        )

    def revoke(self, issuer: Identity, cert: Identity) -> None:
        """Mark ``cert`` revoked in ``issuer``'s database (takes effect in the next CRL)."""
        assert issuer.ca_dir is not None
        self.run(
            "ca", "-config", self._config(issuer.ca_dir), "-revoke", cert.cert,
            "-keyfile", issuer.key, "-cert", issuer.cert, "-crl_reason", "keyCompromise",
        )  # fmt: skip

    def crl(self, issuer: Identity, *, days: int = 30) -> Path:
        """A fresh PEM CRL of ``issuer`` listing everything revoked so far."""
        assert issuer.ca_dir is not None
        path = issuer.ca_dir / "crl.pem"
        self.run("ca", "-config", self._config(issuer.ca_dir), "-gencrl", "-crldays", str(days),
                 "-keyfile", issuer.key, "-cert", issuer.cert, "-out", path)  # fmt: skip
        return path

    def sign(
        self,
        content: Path | bytes,
        signers: Identity | Sequence[Identity],
        *,
        digest: str = "sha256",
        noattr: bool = False,
        pss: bool = False,
        detached: bool = True,
        certfile: Sequence[Identity] = (),
        extra: Sequence[str] = (),
    ) -> bytes:
        """``openssl cms -sign -binary -outform DER``; returns the DER SignedData."""
        folder = self._new("sig")
        if isinstance(content, bytes):
            (folder / "content").write_bytes(content)
            content = folder / "content"
        out = folder / "fs.der"
        args: list[str | Path] = ["cms", "-sign", "-binary", "-in", content, "-outform", "DER",
                                  "-out", out, "-md", digest]  # fmt: skip
        for signer in [signers] if isinstance(signers, Identity) else signers:
            args += ["-signer", signer.cert, "-inkey", signer.key]
            if pss:
                args += ["-keyopt", "rsa_padding_mode:pss"]
        if noattr:
            args.append("-noattr")
        if not detached:
            args.append("-nodetach")
        if certfile:
            args += ["-certfile", self.bundle(certfile)]
        args += list(extra)
        self.run(*args)
        return out.read_bytes()

    def bundle(self, identities: Sequence[Identity], path: Path | None = None) -> Path:
        """Concatenate the PEM certificates of ``identities`` into one file."""
        if path is None:
            path = self._new("bundle") / "bundle.pem"
        path.write_bytes(b"".join(i.cert_pem for i in identities))
        return path

    def openssl_verify(
        self,
        content: Path,
        fs_der: bytes,
        *,
        trusted: Sequence[Identity],
        registered: Sequence[Identity] | None = None,
        crls: Sequence[Path] = (),
        attime: datetime | None = None,
        extra: Sequence[str] = (),
    ) -> tuple[bool, str]:
        """``openssl cms -verify -purpose any``: (accepted, stderr).

        ``registered`` maps to ``-certfile … -nointern`` (only those may be the signer), ``crls``
        to ``-crl_check`` with the CRLs appended to the CA file.
        """
        folder = self._new("verify")
        (folder / "fs.der").write_bytes(fs_der)
        cafile = self.bundle(trusted, folder / "ca.pem")
        if crls:
            with cafile.open("ab") as handle:
                for crl in crls:
                    handle.write(crl.read_bytes())
        args: list[str | Path] = ["cms", "-verify", "-binary", "-inform", "DER", "-in",
                                  folder / "fs.der", "-content", content, "-CAfile", cafile,
                                  "-purpose", "any", "-out", folder / "out"]  # fmt: skip
        if registered is not None:
            args += ["-certfile", self.bundle(registered, folder / "reg.pem"), "-nointern"]
        if crls:
            args.append("-crl_check")
        if attime is not None:
            args += ["-attime", str(int(attime.timestamp()))]
        args += list(extra)
        result = self.run(*args, check=False)
        return result.returncode == 0, result.stderr.decode(errors="replace")


class _Dates(TypedDict):
    not_before: datetime | None
    not_after: datetime | None


def _dates(dates: dict[str, Any]) -> _Dates:
    unknown = set(dates) - {"not_before", "not_after"}
    if unknown:
        raise TypeError(f"unknown arguments {unknown}")
    return {"not_before": dates.get("not_before"), "not_after": dates.get("not_after")}


@dataclass(frozen=True, slots=True)
class StandardPki:
    """The fixed cast of the signature tests (see the module docstring)."""

    pki: Pki
    root: Identity
    sub: Identity
    rsa: Identity
    ec: Identity
    rsa1024: Identity
    expired: Identity
    future: Identity
    revoked: Identity
    crl: Path
    untrusted_root: Identity
    untrusted: Identity
    other_sender: Identity
    unregistered: Identity
    trust_dir: Path
    crl_dir: Path


_STANDARD: dict[Path, StandardPki] = {}


def standard_pki(root: Path) -> StandardPki:
    """Build (once per ``root``) the standard cast; trust_dir holds the root CA only."""
    if root in _STANDARD:
        return _STANDARD[root]
    pki = Pki(root)
    now = datetime.now(UTC)
    ca = pki.root_ca("Test Root CA")
    sub = pki.ca("Test Signing CA", issuer=ca)
    revoked = pki.leaf("revoked signer", issuer=sub)
    pki.revoke(sub, revoked)
    untrusted_root = pki.root_ca("Untrusted Root CA")
    cast = StandardPki(
        pki=pki,
        root=ca,
        sub=sub,
        rsa=pki.leaf("sender 006400 rsa", issuer=sub),
        ec=pki.leaf("sender 006400 ec", issuer=sub, key="ec:P-256"),
        rsa1024=pki.leaf("sender 006400 rsa1024", issuer=sub, key="rsa:1024"),
        expired=pki.leaf(
            "expired signer",
            issuer=sub,
            not_before=now - timedelta(days=800),
            not_after=now - timedelta(days=400),
        ),
        future=pki.leaf(
            "future signer",
            issuer=sub,
            not_before=now + timedelta(days=400),
            not_after=now + timedelta(days=800),
        ),
        revoked=revoked,
        crl=pki.crl(sub),
        untrusted_root=untrusted_root,
        untrusted=pki.leaf("untrusted signer", issuer=untrusted_root),
        other_sender=pki.leaf("sender 006401 rsa", issuer=sub),
        unregistered=pki.leaf("unregistered signer", issuer=sub),
        trust_dir=root / "trust",
        crl_dir=root / "crls",
    )
    cast.trust_dir.mkdir()
    (cast.trust_dir / "root.pem").write_bytes(ca.cert_pem)
    cast.crl_dir.mkdir()
    shutil.copy(cast.crl, cast.crl_dir / "sub.crl.pem")
    _STANDARD[root] = cast
    return cast


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureCase:
    """One FI/FS pair of the signature suite, with the verdicts the gateway and openssl give.

    ``code`` is the gateway's expected code (None: valid). ``openssl_accepts`` is what
    ``openssl cms -verify`` with the equivalent flags says; it differs from the gateway only where
    ``divergence`` explains why no openssl flag expresses the gateway's rule.
    """

    name: str
    fi: Path
    fs: bytes
    """The FS file as a sender uploads it (base64 text)."""
    der: bytes
    """What openssl is given (-inform DER)."""
    registered: tuple[Identity, ...]
    code: int | None
    allow_sha1: bool = False
    openssl_accepts: bool
    divergence: str = ""


_CASES: dict[Path, list[SignatureCase]] = {}


def signature_cases(cast: StandardPki) -> list[SignatureCase]:
    """The positive and negative cases of issue 2, all signed by the real openssl (cached)."""
    if cast.pki.root in _CASES:
        return _CASES[cast.pki.root]
    pki = cast.pki
    folder = pki._new("cases")
    fi = folder / "FI.DMFA.006400.20260115.00001.R.1.1"
    # 4 KiB of well-formed XML: the controls must also pass the declaration's formal checks.
    body = b"".join(b"<line n='%04d'>%s</line>" % (i, bytes(range(65, 91))) for i in range(100))
    fi.write_bytes(b'<?xml version="1.0"?><declaration>' + body + b"</declaration>\r\n")
    flipped = folder / "FI.flipped"
    data = bytearray(fi.read_bytes())
    data[1000] ^= 0x01
    flipped.write_bytes(bytes(data))
    other = folder / "FI.other"
    other.write_bytes(b"<declaration>another file with the same name</declaration>")
    chain = [cast.sub]
    cases: list[SignatureCase] = []

    def add(
        name: str, der: bytes, registered: Sequence[Identity], code: int | None, **kw: Any
    ) -> None:
        content = kw.pop("content", fi)
        style = kw.pop("style", "76-cr")
        text = kw.pop("text", None)
        kw.setdefault("openssl_accepts", code is None)
        cases.append(
            SignatureCase(
                name=name,
                fi=content,
                fs=fs_text(der, style) if text is None else text,
                der=der,
                registered=tuple(registered),
                code=code,
                **kw,
            )
        )

    positives = {
        "rsa2048-sha256-attrs": (pki.sign(fi, cast.rsa, certfile=chain), cast.rsa),
        "rsa2048-sha256-noattr": (pki.sign(fi, cast.rsa, certfile=chain, noattr=True), cast.rsa),
        "rsa-pss": (pki.sign(fi, cast.rsa, certfile=chain, pss=True), cast.rsa),
        "ecdsa-p256": (pki.sign(fi, cast.ec, certfile=chain), cast.ec),
    }
    for name, (der, signer) in positives.items():
        for style in ("one-line", "76-cr", "64-crlf"):
            add(f"{name}/{style}", der, [signer], None, style=style)

    good = positives["rsa2048-sha256-attrs"][0]
    add("flipped-byte-in-FI", good, [cast.rsa], 125, content=flipped)
    add(
        "flipped-byte-in-FI-noattr",
        positives["rsa2048-sha256-noattr"][0],
        [cast.rsa],
        125,
        content=flipped,
    )
    add("signature-of-another-file", pki.sign(other, cast.rsa, certfile=chain), [cast.rsa], 125)
    add(
        "another-senders-certificate",
        pki.sign(fi, cast.other_sender, certfile=chain),
        [cast.rsa],
        153,
    )
    add(
        "unregistered-certificate",
        pki.sign(fi, cast.unregistered, certfile=chain),
        [cast.rsa, cast.ec],
        153,
    )
    add("expired", pki.sign(fi, cast.expired, certfile=chain), [cast.expired], 902)
    add("not-yet-valid", pki.sign(fi, cast.future, certfile=chain), [cast.future], 903)
    add("revoked", pki.sign(fi, cast.revoked, certfile=chain), [cast.revoked], 904)
    add(
        "untrusted-ca",
        pki.sign(fi, cast.untrusted, certfile=[cast.untrusted_root]),
        [cast.untrusted],
        905,
    )
    add(
        "md5",
        pki.sign(fi, cast.rsa, certfile=chain, digest="md5"),
        [cast.rsa],
        906,
        openssl_accepts=True,
        divergence="openssl cms -verify has no flag that refuses a weak CMS digest",
    )
    sha1 = pki.sign(fi, cast.rsa, certfile=chain, digest="sha1")
    add(
        "sha1-not-allowed",
        sha1,
        [cast.rsa],
        906,
        openssl_accepts=True,
        divergence="openssl cms -verify has no flag that refuses a weak CMS digest",
    )
    add("sha1-allowed", sha1, [cast.rsa], None, allow_sha1=True)
    add("rsa1024", pki.sign(fi, cast.rsa1024, certfile=chain), [cast.rsa1024], 907)
    add(
        "attached-other-content",
        pki.sign(other, cast.rsa, certfile=chain, detached=False),
        [cast.rsa],
        908,
    )
    add(
        "attached-same-content",
        pki.sign(fi, cast.rsa, certfile=chain, detached=False),
        [cast.rsa],
        908,
        openssl_accepts=True,
        divergence="openssl verifies embedded content; no flag requires a detached signature",
    )
    add(
        "two-signers-one-unregistered",
        pki.sign(fi, [cast.rsa, cast.other_sender], certfile=chain),
        [cast.rsa],
        909,
    )
    add(
        "two-signers-both-registered",
        pki.sign(fi, [cast.rsa, cast.ec], certfile=chain),
        [cast.rsa, cast.ec],
        909,
        openssl_accepts=True,
        divergence="openssl accepts several valid signers; the protocol wants exactly one",
    )
    econtent = pki.sign(
        fi, cast.rsa, certfile=chain, extra=["-econtent_type", "1.2.840.113549.1.9.16.1.4"]
    )
    add(
        "wrong-econtent-type",
        econtent,
        [cast.rsa],
        911,
        openssl_accepts=True,
        divergence="openssl does not restrict eContentType",
    )
    add("empty-fs", b"", [cast.rsa], 901, text=b"")
    add("whitespace-only-fs", b"", [cast.rsa], 901, text=b" \r\n\r\n")
    add("garbage-base64", b"not base64!", [cast.rsa], 901, text=b"this is %% not base64 at all!")
    add("truncated-der", good[: len(good) // 2], [cast.rsa], 901)
    _CASES[cast.pki.root] = cases
    return cases
