"""Routing: deliver an accepted set to the online service its application maps to.

Destinations come only from the service catalogue (``config/services.toml``), never from a
sender's bytes, so the gateway never contacts a host an operator did not declare (SECURITY.md 17):
redirects are refused and proxy variables from the environment are ignored.

- ``directory``: the payload files and ``envelope.json`` are written under a temporary directory
  ``<path>/.tmp-<ticket>``, each file fsync'ed, then the directory is renamed to
  ``<path>/<ticket>``. A downstream reader sees nothing or the whole set. Delivery is keyed by the
  ticket: when ``<path>/<ticket>`` exists, the set was delivered before a crash and is not
  written again. The pipeline splits this in two (:func:`stage_directory`, then
  :func:`publish_staged`) so that the sets in hand share one sync between them
  (:mod:`.flush`): a reader still sees nothing, or the whole set made durable. The payload is
  copied, not hard-linked: a link would hand the destination the spool's private inode (its
  mode and owner, and the archive's bytes to whoever may write there).
- ``https``: one POST of ``multipart/form-data`` (part ``envelope``, then one part per payload
  file), header ``Idempotency-Key: <ticket>``. Any 2xx confirms delivery; anything else, or a
  network error, is a failed attempt, retried by the pipeline with exponential backoff until the
  destination's deadline.

The functions here block (file copies, fsync, HTTP); the pipeline runs them with
the pipeline's own threads (``Context.blocking``).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from gateway.ops.private import private_dirs
from gateway.pipeline.files import CHUNK, copy_new, remove_tree, write_new
from gateway.spool.writer import fsync_dir

DEFAULT_DEADLINE = timedelta(hours=1)
DEFAULT_BACKOFF = timedelta(seconds=2)
MAX_BACKOFF = timedelta(minutes=5)
HTTP_TIMEOUT_SECONDS = 60.0

_DURATION = TypeAdapter(timedelta)


class DestinationError(Exception):
    """A destination entry of the service catalogue is unusable (operator error)."""


@dataclass(frozen=True, slots=True)
class DirectoryDestination:
    """Payload + envelope written atomically under ``path``."""

    path: Path

    def describe(self) -> str:
        """Short text for logs and the attempts table."""
        return f"directory:{self.path}"


@dataclass(frozen=True, slots=True)
class HttpsDestination:
    """POST to ``url``, retried with exponential backoff until ``deadline`` has passed."""

    url: str
    deadline: timedelta = DEFAULT_DEADLINE
    backoff: timedelta = DEFAULT_BACKOFF
    cafile: Path | None = None

    def describe(self) -> str:
        """Short text for logs and the attempts table."""
        return f"https:{self.url}"

    def retry_delay(self, attempt: int) -> timedelta:
        """Delay before attempt ``attempt + 1`` (attempt counts from 1): backoff·2^(n-1), capped."""
        delay: timedelta = min(self.backoff * (2 ** max(0, attempt - 1)), MAX_BACKOFF)
        return delay


Destination = DirectoryDestination | HttpsDestination


def _duration(value: Any, key: str) -> timedelta:
    try:
        duration: timedelta = _DURATION.validate_python(value)
    except ValidationError:
        raise DestinationError(f"{key}: not a duration (ISO 8601, e.g. PT1H): {value!r}") from None
    return duration


def parse_destination(config: Mapping[str, Any], *, state_dir: Path) -> Destination:
    """Build a destination from a catalogue entry's ``destination`` table."""
    kind = config.get("kind")
    if kind == "directory":
        raw = config.get("path")
        if not isinstance(raw, str) or not raw:
            raise DestinationError("directory destination needs a non-empty 'path'")
        path = Path(raw)
        return DirectoryDestination(path=path if path.is_absolute() else state_dir / path)
    if kind == "https":
        url = config.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme != "https":
            raise DestinationError(f"https destination needs an https:// 'url', got {url!r}")
        if not urlsplit(url).hostname:
            raise DestinationError(f"https destination needs an https:// 'url', got {url!r}")
        cafile = config.get("cafile")
        return HttpsDestination(
            url=url,
            deadline=_duration(config.get("deadline", "PT1H"), "deadline"),
            backoff=_duration(config.get("backoff", "PT2S"), "backoff"),
            cafile=Path(cafile) if isinstance(cafile, str) and cafile else None,
        )
    raise DestinationError(f"unknown destination kind {kind!r} (directory | https)")


class Outcome(StrEnum):
    """Result of one delivery attempt."""

    DELIVERED = "delivered"
    ALREADY = "already"  # delivered before (a retry after a crash): nothing written again
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one attempt did."""

    outcome: Outcome
    status: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    """One payload file: the name it is delivered under and where its bytes are."""

    name: str
    path: Path


def deliver_directory(
    dest: DirectoryDestination, *, ticket: str, envelope: bytes, payload: Sequence[Payload]
) -> Delivery:
    """Write the set under ``dest.path/<ticket>`` atomically, or skip when already there."""
    staged = stage_directory(dest, ticket=ticket, envelope=envelope, payload=payload, sync=True)
    if staged is None:
        return Delivery(Outcome.ALREADY, detail=str(dest.path / ticket))
    fsync_dir(staged.staging)
    publish_staged(staged)
    fsync_dir(dest.path)
    return Delivery(Outcome.DELIVERED, detail=str(staged.final))


@dataclass(frozen=True, slots=True)
class Staged:
    """A delivery written under its staging directory, to be renamed into place once durable."""

    staging: Path
    final: Path


def stage_directory(
    dest: DirectoryDestination,
    *,
    ticket: str,
    envelope: bytes,
    payload: Sequence[Payload],
    sync: bool = False,
) -> Staged | None:
    """The set's files under ``dest.path/.tmp-<ticket>``, each fsync'ed only with ``sync``;
    None when the set is already delivered. Without ``sync`` the caller makes them durable
    (one sync for the sets in hand: :mod:`.flush`), then calls :func:`publish_staged`."""
    final = dest.path / ticket
    if final.exists():
        return None
    # A folder the gateway makes is its own (0700; routed/ under the state directory by default).
    # What it writes inside keeps the umask's (or a default ACL's) mode, so that an operator who
    # prepares a destination folder for an online service running as another user keeps control.
    private_dirs(dest.path)
    staging = dest.path / f".tmp-{ticket}"
    remove_tree(staging, sync=sync)  # left by a crash mid-delivery
    staging.mkdir()
    # Nobody reads a dot-directory: its files need no temporary names.
    for item in payload:
        copy_new(item.path, staging / item.name, sync=sync)
    write_new(staging / "envelope.json", envelope, sync=sync)
    return Staged(staging=staging, final=final)


def publish_staged(staged: Staged) -> None:
    """Rename a durable staged delivery into place (idempotent; the caller syncs after)."""
    if staged.staging.exists() and not staged.final.exists():
        staged.staging.rename(staged.final)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: only the declared URL may be contacted (SECURITY.md 17)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _multipart(
    boundary: str, envelope: bytes, payload: Sequence[Payload]
) -> tuple[Iterator[bytes], int]:
    heads: list[bytes] = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="envelope"; '
            'filename="envelope.json"\r\nContent-Type: application/json\r\n\r\n'
        ).encode()
    ]
    for item in payload:
        heads.append(
            (
                f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{item.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
        )
    tail = f"\r\n--{boundary}--\r\n".encode()
    sizes = [item.path.stat().st_size for item in payload]
    length = sum(len(h) for h in heads) + len(envelope) + sum(sizes) + len(tail)

    def body() -> Iterator[bytes]:
        yield heads[0]
        yield envelope
        for head, item in zip(heads[1:], payload, strict=True):
            yield head
            with item.path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
        yield tail

    return body(), length


def deliver_https(
    dest: HttpsDestination,
    *,
    ticket: str,
    envelope: bytes,
    payload: Sequence[Payload],
    ssl_context: ssl.SSLContext | None = None,
    allowed_urls: frozenset[str],
) -> Delivery:
    """One POST attempt; 2xx confirms. Never follows a redirect, never uses a proxy."""
    if dest.url not in allowed_urls:
        # Defence in depth: the destination is built from the catalogue, so this cannot happen
        # unless the code is wrong; refuse rather than dial an undeclared host.
        return Delivery(Outcome.FAILED, detail="url not declared in the service catalogue")
    context = ssl_context
    if context is None:
        context = ssl.create_default_context(
            cafile=str(dest.cafile) if dest.cafile is not None else None
        )
    boundary = f"gateway-{ticket}"
    body, length = _multipart(boundary, envelope, payload)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be https
        dest.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
            "Idempotency-Key": ticket,
            "X-Gateway-Ticket": ticket,
            "User-Agent": "batch-gateway",
        },
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=context),
        _NoRedirect(),
    )
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            status = int(response.status)
            response.read(65536)
    except urllib.error.HTTPError as exc:
        return Delivery(Outcome.FAILED, status=exc.code, detail=f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        return Delivery(Outcome.FAILED, detail=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= status < 300:
        return Delivery(Outcome.DELIVERED, status=status)
    return Delivery(Outcome.FAILED, status=status, detail=f"HTTP {status}")
