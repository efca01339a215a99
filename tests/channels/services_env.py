"""Online services for web tests: their certificates, a catalogue that declares them, and the
service desk a web gateway answers the service API with (shared by the service API's tests and
its fuzzing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.core.signature import TrustStore
from gateway.ops.settings import LimitSettings, PipelineSettings, SignatureSettings
from gateway.pipeline import Pipeline, ensure_gateway_identity
from gateway.pipeline.desk import ServiceDesk
from gateway.registry.catalogue import load_service_catalogue
from gateway.registry.service import Registry
from gateway.registry.types import ServiceClient
from tests.channels.provision import ROOT
from tests.pki import Identity, Pki


@pytest.fixture(scope="module")
def service_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Identity, Identity]:
    """Two online services' certificates, issued by their own CA: DMFA's, and DIMN's."""
    pki = Pki(tmp_path_factory.mktemp("service-pki"))
    ca = pki.root_ca("Online Services CA")
    return (
        pki.leaf("dmfa-service", issuer=ca, key="ec:P-256"),
        pki.leaf("dimn-service", issuer=ca, key="ec:P-256"),
    )


def catalogue_with_clients(folder: Path, dmfa: Identity, dimn: Identity) -> Path:
    """The repository's catalogue plus ``clients`` for DMFA (dmfa) and DIMN, WECH (dimn)."""
    text = (ROOT / "config" / "services.toml").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dmfa.pem").write_bytes(dmfa.cert.read_bytes())
    (folder / "dimn.pem").write_bytes(dimn.cert.read_bytes())
    for code, pem in (("DMFA", "dmfa.pem"), ("DIMN", "dimn.pem"), ("WECH", "dimn.pem")):
        header = f"[services.{code}]\n"
        text = text.replace(header, f'{header}clients = ["{pem}"]\n', 1)
    path = folder / "services.toml"
    path.write_text(text)
    return path


def service_desk(clients: tuple[ServiceClient, ...]) -> Callable[[Registry, Path], ServiceDesk]:
    """A factory of the service desk the web gateway answers the service API with, over a
    real pipeline context on the gateway's registry and state directory."""

    def build(registry: Registry, state_dir: Path) -> ServiceDesk:
        settings = PipelineSettings()
        key, cert = ensure_gateway_identity(state_dir, settings)
        pipeline = Pipeline(
            pipeline=settings,
            limits=LimitSettings(),
            signature=SignatureSettings(),
            engine=registry.engine,
            registry=registry,
            state_dir=state_dir,
            gateway_key=key,
            gateway_cert=cert,
            trust=TrustStore.from_blobs([], []),
            catalogue=load_service_catalogue(ROOT / "config" / "services.toml"),
        )
        return ServiceDesk(clients, pipeline.ctx)

    return build
