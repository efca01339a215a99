"""The service API: ``POST /v1/services/{application}/notifications``, an online service's
notification for a sender, signed by the gateway and placed in the sender's OUT folder.

The caller is an online service, authenticated by the client certificate ``config/services.toml``
declares for its application codes (:mod:`gateway.channels.web_auth`); a sender's certificate
gets 403 here, and a service's certificate gets 403 on the sender API. Rules (issue 12 §4):

- **Only its own codes**: ``{application}`` must be one of the codes whose entry lists the
  service's certificate, else 403 (923). The sender must be registered (422, 108) and subscribed
  to that application (422, 154): an online service answers its own senders only.
- **The request**: the body is the notification's content as it is (any media type; a
  ``Content-Encoding`` is refused with 415, never decoded), at most ``[web]
  max_notification_bytes`` (413, 184: refused from ``Content-Length`` before the body is read,
  or as soon as a body without it passes the limit). Query ``sender`` (6 digits, required),
  ``environment`` (``R``, ``T`` or ``S``; default ``R``: the OUT folder of that environment) and
  ``kind`` (the 4-letter code of the file names, default ``NOTI``; ``DMNO`` for a modification
  notification). A malformed query or key is 400 without a gateway code: HTTP the gateway cannot
  read, not a refusal of what it names.
- **Idempotent** on the ``Idempotency-Key`` header (required; 1-128 visible ASCII characters),
  scoped to the application: the first request places the files and answers 201; the same key
  with the same request answers 200 with the same names and ``"replayed": true`` and places
  nothing; the same key with another request is 409 (928). The pipeline keeps the keys
  (:mod:`gateway.pipeline.publish`), so a retry after a gateway restart is answered the same.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from gateway.channels.web_files import JSON, encoding_refusal
from gateway.channels.web_problems import problem, refusal
from gateway.core.codes import Code, Rejection, reject
from gateway.registry.types import ServiceClient

if TYPE_CHECKING:
    from gateway.channels.web_config import WebConfig

SERVICES = b"/services"
METHODS = ("POST", "OPTIONS")

_ROUTE = re.compile(rb"/services/([A-Z]{4})/notifications")
_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_SENDER = re.compile(r"[0-9]{6}")
_KIND = re.compile(r"[A-Z]{4}")
ENVIRONMENTS = ("R", "T", "S")


class Posted(Protocol):
    """What the desk answers for a placed (or replayed) notification."""

    @property
    def replayed(self) -> bool: ...

    def as_json(self) -> dict[str, Any]:
        """The answer's JSON body."""
        ...


class NotificationDesk(Protocol):
    """Where the channel hands a service's notification (the daemon wires the pipeline)."""

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
    ) -> Posted | Rejection:
        """Place the notification once per key, or say why not."""
        ...


def is_services(path: bytes) -> bool:
    """Whether a ``/v1`` target belongs to the service API."""
    return path == SERVICES or path.startswith(SERVICES + b"/")


def _bad_request(detail: str) -> web.Response:
    return problem(400, detail)


async def _read_body(request: web.BaseRequest, most: int) -> bytes | None:
    """The whole body, or None once it passes ``most`` bytes (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > most:
            return None
        chunks.append(chunk)


def _too_large(most: int) -> web.Response:
    response = refusal(reject(Code.FILE_TOO_LARGE, f"a notification may hold at most {most} bytes"))
    response.force_close()  # the body was not read to its end
    return response


async def services_api(
    request: web.BaseRequest,
    client: ServiceClient,
    path: bytes,
    *,
    config: WebConfig,
    desk: NotificationDesk | None,
    log: Any,
) -> web.StreamResponse:
    """Route and answer one request of the service API (see the module docstring)."""
    route = _ROUTE.fullmatch(path)
    if route is None or desk is None:
        return problem(404, "no such resource")
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={"Allow": ", ".join(METHODS)})
    if request.method != "POST":
        return problem(405, f"{request.method} is not allowed here",
                       headers={"Allow": ", ".join(METHODS)})  # fmt: skip
    application = route.group(1).decode()
    if application not in client.applications:
        log.info("notification.refused", application=application, reason="not_its_application")
        allowed = ", ".join(sorted(client.applications))
        return refusal(
            reject(
                Code.OPERATION_NOT_PERMITTED,
                f"this service may post notifications for {allowed} only, not {application}",
            )
        )
    key = request.headers.get("Idempotency-Key", "")
    if _KEY.fullmatch(key) is None:
        return _bad_request("an Idempotency-Key header of 1 to 128 visible ASCII characters is "
                            "required: reuse it when you retry the same notification")  # fmt: skip
    query = request.rel_url.query
    sender = query.get("sender", "")
    environment = query.get("environment", "R")
    kind = query.get("kind", "NOTI")
    if _SENDER.fullmatch(sender) is None:
        return _bad_request("query parameter sender must be a 6-digit sender number")
    if environment not in ENVIRONMENTS:
        return _bad_request("query parameter environment must be R, T or S")
    if _KIND.fullmatch(kind) is None:
        return _bad_request("query parameter kind must be 4 upper-case letters (NOTI, DMNO...)")
    encoded = encoding_refusal(request)
    if encoded is not None:
        return encoded
    most = config.max_notification
    if request.content_length is not None and request.content_length > most:
        return _too_large(most)
    content = await _read_body(request, most)
    if content is None:
        return _too_large(most)
    posted = await desk.post(
        client,
        application=application,
        idempotency_key=key,
        sender=sender,
        environment=environment,
        kind=kind,
        content=content,
    )
    if isinstance(posted, Rejection):
        log.info("notification.refused", application=application, code=int(posted.code))
        return refusal(posted)
    return web.Response(
        status=200 if posted.replayed else 201,
        body=json.dumps(posted.as_json()).encode(),
        content_type=JSON,
    )
