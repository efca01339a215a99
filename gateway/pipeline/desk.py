"""The online services' desk: who a service certificate is, and where its notifications go.

The web channel's service API (:mod:`gateway.channels.web_services`) asks the desk two things:
which declared online service a client certificate is (``config/services.toml``, its
``clients``), and to place a notification once per idempotency key
(:func:`gateway.pipeline.publish.post_notification`). The daemon builds it from the catalogue
and swaps the clients on SIGHUP (:meth:`ServiceDesk.replace`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from gateway.core.codes import Rejection
from gateway.core.names import Environment
from gateway.pipeline.context import Context
from gateway.pipeline.publish import PostedNotification, post_notification
from gateway.registry.types import ServiceClient


class ServiceDesk:
    """The declared online services by certificate fingerprint, over one pipeline context."""

    def __init__(self, clients: Iterable[ServiceClient], ctx: Context) -> None:
        self.ctx = ctx
        self._by_fingerprint: dict[str, ServiceClient] = {}
        self.replace(clients)

    def replace(self, clients: Iterable[ServiceClient]) -> None:
        """Take a new set of declared services (a reload of the catalogue)."""
        self._by_fingerprint = {client.fingerprint: client for client in clients}

    def __len__(self) -> int:
        return len(self._by_fingerprint)

    def client(self, der: bytes) -> ServiceClient | None:
        """The declared service whose certificate is ``der``, or None."""
        return self._by_fingerprint.get(hashlib.sha256(der).hexdigest())

    def certificates(self) -> list[bytes]:
        """Every declared service certificate (DER)."""
        return [client.certificate for client in self._by_fingerprint.values()]

    async def post(
        self,
        client: ServiceClient,
        *,
        application: str,
        idempotency_key: str,
        sender: str,
        environment: str,
        kind: str,
        content: bytes,
    ) -> PostedNotification | Rejection:
        """Place ``client``'s notification once per (application, key)."""
        return await post_notification(
            self.ctx,
            client=client.fingerprint,
            application=application,
            idempotency_key=idempotency_key,
            sender=sender,
            environment=Environment(environment),
            kind=kind,
            content=content,
        )
