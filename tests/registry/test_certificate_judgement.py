"""Registration refuses certificates that verification would refuse (issue 15, item 7).

A signing certificate is judged by the core's own checks against the injected trust store
(codes 902, 903, 904, 905, 907 at the start of the message); a web-service client certificate
on validity and key alone, since it is its own anchor. One that expires within 30 days is
accepted with a warning, in the upload's answer and in the overview.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.signature import TrustStore
from gateway.ops.metrics import Metrics
from gateway.registry.catalogue import ServiceCatalogue
from gateway.registry.credentials import PasswordHashing, parse_signing_certificate
from gateway.registry.db import create_engine
from gateway.registry.expiry import refresh
from gateway.registry.networks import NetworkBook
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry
from gateway.registry.trust import FixedTrust, TrustFolders
from gateway.registry.types import ChannelKind, Refusal
from tests.pki import Identity, StandardPki, standard_pki
from tests.registry.configured import configured
from tests.registry.conftest import Clock, KeyPair
from tests.registry.world import EMPLOYER_A
from tests.tools import require_tool


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> StandardPki:
    """The standard test PKI: root, signing CA (+ CRL), RSA-1024, expired, revoked, untrusted."""
    require_tool("openssl")
    return standard_pki(tmp_path_factory.getbasetemp() / "judgement-pki")


@pytest.fixture
async def judging(
    backend_url: str,
    hashing: PasswordHashing,
    catalogue: ServiceCatalogue,
    networks: NetworkBook,
    clock: Clock,
    outbox: Path,
    cast: StandardPki,
) -> AsyncIterator[Registry]:
    """A registry that knows the trust store: the root CA and the signing CA's CRL."""
    engine = create_engine(backend_url)
    yield Registry(
        engine,
        clock=clock,
        notifier=OutboxNotifier(outbox),
        hashing=hashing,
        catalogue=catalogue,
        networks=networks,
        trust=FixedTrust(TrustStore.from_blobs([cast.root.cert_pem], [cast.crl.read_bytes()])),
    )
    await engine.dispose()


async def _upload(registry: Registry, signer: Identity, *chain: Identity) -> object:
    """Upload ``signer``'s PEM, followed by the PEMs of ``chain`` (its intermediates)."""
    data = b"".join(i.cert_pem for i in (signer, *chain))
    return await registry.upload_certificate(actor="htb-a", quality=EMPLOYER_A, data=data)


@pytest.mark.parametrize(
    ("signer", "code", "words"),
    [
        ("rsa1024", 907, "RSA key of 1024 bits"),
        ("untrusted", 905, "does not chain to a trusted CA"),
        ("revoked", 904, "was revoked"),
        ("expired", 902, "expired on"),
        ("future", 903, "valid only from"),
        ("p192", 907, "EC curve secp192r1"),
    ],
)
async def test_signing_certificates_verification_would_refuse_are_refused(
    judging: Registry,
    ssh_keys: list[KeyPair],
    cast: StandardPki,
    signer: str,
    code: int,
    words: str,
) -> None:
    """Weak keys, no chain, revoked, expired and not yet valid: refused with the core's code."""
    await configured(judging, ssh_keys[0].public_line)
    identity = (
        cast.pki.leaf("p192 signer", issuer=cast.sub, key="ec:P-192")
        if signer == "p192"
        else getattr(cast, signer)
    )
    issuer = cast.untrusted_root if signer == "untrusted" else cast.sub
    refused = await _upload(judging, identity, issuer)
    assert isinstance(refused, Refusal)
    assert refused.reason == "bad_certificate"
    assert refused.message.startswith(f"{code}: ")
    assert words in refused.message
    overview = await judging.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    assert overview.certificates == ()


async def test_a_good_signing_certificate_is_registered_without_warning(
    judging: Registry, ssh_keys: list[KeyPair], cast: StandardPki
) -> None:
    """A certificate under the trusted root passes, its signing CA following it in the PEM
    file; alone, without its CA anywhere, it is 905 and the message says what to add."""
    await configured(judging, ssh_keys[0].public_line)
    alone = await _upload(judging, cast.rsa)
    assert isinstance(alone, Refusal)
    assert alone.message.startswith("905: ")
    view = await _upload(judging, cast.rsa, cast.sub)
    assert not isinstance(view, Refusal), view
    assert view.warning is None  # type: ignore[attr-defined]
    assert "after it in the PEM file" in alone.message
    overview = await judging.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    # Only the certificate itself is registered, not the CA that followed it.
    assert [c.sha256 for c in overview.certificates] == [view.sha256]  # type: ignore[attr-defined]


async def test_a_certificate_expiring_within_30_days_is_accepted_with_a_warning(
    judging: Registry, ssh_keys: list[KeyPair], cast: StandardPki
) -> None:
    """Expiring in 10 days: registered, and the answer and the overview both warn."""
    await configured(judging, ssh_keys[0].public_line)
    soon = cast.pki.leaf(
        "expiring signer", issuer=cast.sub, not_after=datetime.now(UTC) + timedelta(days=10)
    )
    view = await _upload(judging, soon, cast.sub)
    assert not isinstance(view, Refusal), view
    assert view.warning is not None  # type: ignore[attr-defined]
    assert "register its successor" in view.warning  # type: ignore[attr-defined]
    overview = await judging.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    assert [c.warning is not None for c in overview.certificates] == [True]


async def test_the_trust_folders_are_read_at_each_upload(
    judging: Registry, ssh_keys: list[KeyPair], cast: StandardPki, tmp_path: Path
) -> None:
    """A CA the operator adds to the trust folder counts at the next upload."""
    await configured(judging, ssh_keys[0].public_line)
    folder = tmp_path / "trust"
    folder.mkdir()
    judging.trust = TrustFolders([folder])
    refused = await _upload(judging, cast.rsa)
    assert isinstance(refused, Refusal)
    assert refused.message.startswith("905: ")
    (folder / "sub.pem").write_bytes(cast.sub.cert_pem)
    assert not isinstance(await _upload(judging, cast.rsa), Refusal)


@pytest.mark.parametrize(
    ("key", "days", "code"),
    [("rsa:1024", 30, 907), ("ec:P-192", 30, 907), ("ec:P-256", -1, 902)],
)
async def test_weak_or_expired_client_certificates_are_refused(
    judging: Registry,
    ssh_keys: list[KeyPair],
    cast: StandardPki,
    key: str,
    days: int,
    code: int,
) -> None:
    """A self-signed web-service client certificate needs no chain, but a strong key and a
    validity period that holds now."""
    await configured(judging, ssh_keys[0].public_line)
    now = datetime.now(UTC)
    client = cast.pki.root_ca(
        f"client {key} {days}",
        key=key,
        not_before=now - timedelta(days=2),
        not_after=now + timedelta(days=days),
    )
    refused = await judging.add_channel(
        actor="htb-a",
        quality=EMPLOYER_A,
        kind=ChannelKind.webservice,
        client_certificate=client.cert_pem,
    )
    assert isinstance(refused, Refusal)
    assert refused.message.startswith(f"{code}: ")


async def test_a_self_signed_client_certificate_is_its_own_anchor(
    judging: Registry, ssh_keys: list[KeyPair], cast: StandardPki
) -> None:
    """A self-signed P-256 client certificate outside the trust store is registered; one that
    expires within 30 days shows a warning in the overview."""
    await configured(judging, ssh_keys[0].public_line)
    now = datetime.now(UTC)
    client = cast.pki.root_ca("client soon", key="ec:P-256", not_after=now + timedelta(days=5))
    added = await judging.add_channel(
        actor="htb-a",
        quality=EMPLOYER_A,
        kind=ChannelKind.webservice,
        client_certificate=client.cert_pem,
    )
    assert not isinstance(added, Refusal), added
    overview = await judging.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    web = [c for c in overview.channels if c.kind is ChannelKind.webservice]
    assert web[0].client_certificate_warning is not None


async def test_expiring_certificates_reach_the_operators_metrics(
    judging: Registry, ssh_keys: list[KeyPair], cast: StandardPki
) -> None:
    """The signing certificate expiring in 10 days, the client certificate in 5 and the
    gateway's own in 20 are counted per kind; a signing certificate valid for a year is not, and
    the next expiry of each kind is the earliest one."""
    await configured(judging, ssh_keys[0].public_line)
    now = datetime.now(UTC)
    soon = cast.pki.leaf("expiring signer", issuer=cast.sub, not_after=now + timedelta(days=10))
    assert not isinstance(await _upload(judging, soon, cast.sub), Refusal)
    assert not isinstance(await _upload(judging, cast.rsa, cast.sub), Refusal)
    client = cast.pki.root_ca("client soon", key="ec:P-256", not_after=now + timedelta(days=5))
    added = await judging.add_channel(
        actor="htb-a",
        quality=EMPLOYER_A,
        kind=ChannelKind.webservice,
        client_certificate=client.cert_pem,
    )
    assert not isinstance(added, Refusal), added
    metrics = Metrics.create()

    await refresh(judging, metrics, gateway_not_after=now + timedelta(days=20), now=now)

    def sample(name: str, kind: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"kind": kind})

    expiring = "gateway_certificates_expiring"
    assert [sample(expiring, k) for k in ("signing", "client", "gateway")] == [1.0, 1.0, 1.0]
    first = "gateway_certificate_next_expiry_timestamp_seconds"
    signing_first = sample(first, "signing")
    assert signing_first is not None
    assert abs(signing_first - (now + timedelta(days=10)).timestamp()) < 86400
    assert sample(first, "gateway") == (now + timedelta(days=20)).timestamp()
    # A month later everything has expired: the year-long signer is still not counted.
    later = await refresh(
        judging, metrics, gateway_not_after=now + timedelta(days=20), now=now + timedelta(days=40)
    )
    assert later["signing"].expiring == 1
    assert sample(expiring, "gateway") == 1.0


# -- SECURITY.md 19: the same refused certificates, sent in other forms ---------------------------


def _der(identity: Identity) -> bytes:
    return identity.cert_der


def _crlf_pem(identity: Identity, *chain: Identity) -> bytes:
    return b"".join(i.cert_pem for i in (identity, *chain)).replace(b"\n", b"\r\n")


def _bag_attributes(identity: Identity, *chain: Identity) -> bytes:
    """What ``openssl pkcs12 -nokeys`` prints: text lines before each PEM block."""
    return b"".join(
        b"Bag Attributes\n    friendlyName: x\nsubject=/CN=x\nissuer=/CN=y\n" + i.cert_pem
        for i in (identity, *chain)
    )


def _chain_first(identity: Identity, *chain: Identity) -> bytes:
    """The issuing CA before the certificate: the first block is the CA, not a signer."""
    return b"".join(i.cert_pem for i in (*chain, identity))


_FORMS = {
    "der": lambda identity, *chain: _der(identity),
    "pem-crlf": _crlf_pem,
    "pem-bag-attributes": _bag_attributes,
    "pem-ca-first": _chain_first,
}


@pytest.mark.parametrize(
    ("signer", "form"),
    [(signer, form) for form in _FORMS for signer in ("rsa1024", "untrusted")]
    + [("expired", "der"), ("p192", "pem-bag-attributes")],
)
def test_a_refused_certificate_is_refused_in_every_form(
    cast: StandardPki, signer: str, form: str
) -> None:
    """A weak (RSA-1024, P-192), expired or untrusted signing certificate as DER, as PEM with
    CRLF line ends, behind openssl's "Bag Attributes" lines, or after its CA: refused every
    time, by the judgement the upload runs (the upload itself is tested above)."""
    issuer = cast.untrusted_root if signer == "untrusted" else cast.sub
    identity = (
        cast.pki.leaf("p192 signer", issuer=cast.sub, key="ec:P-192")
        if signer == "p192"
        else getattr(cast, signer)
    )
    trust = TrustStore.from_blobs([cast.root.cert_pem], [cast.crl.read_bytes()])
    judged = parse_signing_certificate(
        _FORMS[form](identity, issuer), now=datetime.now(UTC), trust=trust
    )
    assert isinstance(judged, Refusal), form
    assert judged.reason == "bad_certificate"
