"""Return files: ACRF acknowledgements and notifications, signed and placed in a sender's OUT.

A return set is three files in the OUT folder of one environment, written in this order:

1. the main file, ``FO.<APPL>.<gateway sender>.<date>.<seq>.<ENV>`` (or ``CO.…``, a ZIP with
   one entry, for a large notification);
2. ``FS.…``: the gateway's detached CMS signature over the main file's exact bytes, base64 in
   76-column CR lines like a sender's FS (``openssl cms -verify -binary -inform DER`` after
   base64-decoding checks it against the gateway certificate);
3. ``GO.…``, empty, last: a client that waits for the GO never reads a half-written set.

Each file is written to a dot-name (:func:`stage_return_set`), its data made durable, then
renamed (:func:`publish_return_parts`, the OUT folder synced, :func:`publish_return_go`, so
the GO never names files a crash could take back); :func:`place_return_set` does it all for one
set, the pipeline's ACRFs share the syncs with the other sets in hand (:mod:`.flush`,
:mod:`.batch`). The sequence
number and the creation instant are decided once and stored before the first byte is
written, so a rewrite after a crash produces the same names and the same bytes.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from gateway.core.cms_sign import SigningIdentity, load_signing_identity
from gateway.core.codes import Rejection
from gateway.core.folders import Folder, check_name
from gateway.core.names import Environment, Kind, format_return_name
from gateway.core.receipts import build_acrf
from gateway.core.signature import encode_fs, sign_detached
from gateway.core.types import SenderNumber
from gateway.ops.private import PRIVATE_FILE, private_dirs
from gateway.pipeline.flush import sync_paths
from gateway.spool.layout import SpoolLayout
from gateway.spool.writer import fsync_dir


@dataclass(frozen=True, slots=True)
class GatewaySigner:
    """The gateway's signing key and certificate (PEM), parsed once (not once per ACRF)."""

    key_pem: bytes
    cert_pem: bytes
    identity: SigningIdentity = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", load_signing_identity(self.key_pem, self.cert_pem))

    def sign(self, content: bytes, *, at: datetime) -> bytes:
        """FS text over ``content``."""
        der = sign_detached(content, identity=self.identity, signing_time=at)
        return encode_fs(der, "76-cr")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReturnNames:
    """The three names of one return set."""

    main: str
    fs: str
    go: str

    def all(self) -> tuple[str, str, str]:
        """In writing order."""
        return (self.main, self.fs, self.go)


def return_names(
    *,
    application: str,
    gateway_sender: str,
    day: date,
    sequence: str,
    environment: Environment,
    compressed: bool = False,
) -> ReturnNames:
    """Names of a return set (no parts suffix, domain/batch-channel.md §1.9).

    ``sequence`` is the formatted number (:func:`gateway.core.receipts.format_sequence`).
    """
    seq = sequence

    def name(kind: Kind) -> str:
        return format_return_name(
            kind=kind,
            application=application,
            sender=gateway_sender,
            date=day,
            sequence=seq,
            environment=environment,
        )

    return ReturnNames(
        main=name(Kind.CO if compressed else Kind.FO), fs=name(Kind.FS), go=name(Kind.GO)
    )


def zip_one(entry_name: str, content: bytes, *, at: datetime) -> bytes:
    """A ZIP holding exactly one entry (the CO format, §2.3), deterministic for a given ``at``."""
    buffer = io.BytesIO()
    info = zipfile.ZipInfo(entry_name, date_time=at.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, content)
    return buffer.getvalue()


def place_return_set(
    layout: SpoolLayout,
    *,
    sender: str,
    folder: Folder,
    names: ReturnNames,
    content: bytes,
    signer: GatewaySigner,
    signed_at: datetime,
) -> None:
    """Write main, FS, GO into the sender's OUT folder, durable before it returns: staged,
    synced, published, the folder synced (the GO is never on disk before the others).
    Blocking; idempotent."""
    written = stage_return_set(
        layout,
        sender=sender,
        folder=folder,
        names=names,
        content=content,
        signer=signer,
        signed_at=signed_at,
    )
    sync_paths(written, [])
    out = layout.out_folder(SenderNumber(sender), folder)
    # Main and FS, the folder synced, then the GO: it never names files a crash could take back.
    publish_return_parts(layout, sender=sender, folder=folder, names=names)
    fsync_dir(out)
    publish_return_go(layout, sender=sender, folder=folder, names=names)
    fsync_dir(out)


def _temporary(directory: Path, name: str) -> Path:
    return directory / f".{name}.tmp"  # the spool's temporary name: never listed, never taken


def stage_return_set(
    layout: SpoolLayout,
    *,
    sender: str,
    folder: Folder,
    names: ReturnNames,
    content: bytes,
    signer: GatewaySigner,
    signed_at: datetime,
) -> list[Path]:
    """Write main, FS and GO under temporary names in the sender's OUT folder, without an
    fsync; the temporary files whose data the caller makes durable before it calls
    :func:`publish_return_parts` (the GO is empty). Blocking."""
    if folder.inbound:
        raise ValueError(f"return files go to OUT folders, not {folder.value}")
    directory = layout.out_folder(SenderNumber(sender), folder)
    private_dirs(directory)
    signature = signer.sign(content, at=signed_at)
    for name, data in ((names.main, content), (names.fs, signature), (names.go, b"")):
        if check_name(name) is not None:
            raise ValueError(f"invalid return file name {name!r}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        with os.fdopen(os.open(_temporary(directory, name), flags, PRIVATE_FILE), "wb") as file:
            file.write(data)
    return [_temporary(directory, names.main), _temporary(directory, names.fs)]


def publish_return_parts(
    layout: SpoolLayout,
    *,
    sender: str,
    folder: Folder,
    names: ReturnNames,
    after_main: Callable[[], None] | None = None,
) -> None:
    """Rename a durable staged return set's main file and FS into place (idempotent: a
    temporary name already renamed is skipped). The caller syncs the OUT folder before
    :func:`publish_return_go`."""
    directory = layout.out_folder(SenderNumber(sender), folder)
    for name in (names.main, names.fs):
        _rename_if_staged(directory, name)
        if name == names.main and after_main is not None:
            after_main()


def publish_return_go(
    layout: SpoolLayout, *, sender: str, folder: Folder, names: ReturnNames
) -> None:
    """Rename the return set's GO into place (after :func:`publish_return_parts` and a sync of
    the OUT folder; idempotent). The caller syncs after."""
    _rename_if_staged(layout.out_folder(SenderNumber(sender), folder), names.go)


def _rename_if_staged(directory: Path, name: str) -> None:
    """Rename ``name``'s temporary file into place; none left and ``name`` there: renamed
    before (a repeated step). One rename in the common case, no stat first."""
    final = directory / name
    try:
        os.replace(_temporary(directory, name), final)
    except FileNotFoundError:
        if not final.exists():
            raise


def acrf_content(
    *, file_name: str, ticket: str, created: datetime, rejection: Rejection | None
) -> bytes:
    """The FO.ACRF XML (positive when ``rejection`` is None)."""
    return build_acrf(file_name=file_name, ticket=ticket, created=created, rejection=rejection)
