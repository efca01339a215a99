"""The FTP commands on folders and files, as calls of the spool's folder service.

Each command joins its argument to the current folder as text (:meth:`Control.path`), calls one
:class:`~gateway.spool.folders.FolderSession` operation and turns the answer into a reply; a
refusal goes through the one table of :mod:`gateway.channels.ftp_replies`. There is no file
system call here: the folder service canonicalises, checks, and does the I/O off the event loop.

Transfers (``STOR``, ``RETR``, ``LIST``/``NLST``/``MLSD``) need a passive listener first
(``PASV``/``EPSV``); the folder operation is asked before the ``150`` reply, so a refused name
is a ``553`` and no data connection is used. The transfer itself runs as the connection's one
transfer task (:mod:`gateway.channels.ftp_data`): a data connection failure is a ``425``/``426``
for that transfer, an upload is committed (``226``) only after its data connection ended
cleanly, and anything else aborts it (nothing becomes visible).

Refused outright: active mode (``PORT``/``EPRT``: no FTP bounce), ``REST``/``APPE``/``STOU``
(an upload is a new file from byte 0), ``MKD``/``RMD`` (the folders are fixed), ``SITE``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gateway.channels import ftp_replies as replies
from gateway.channels.ftp_control import Control
from gateway.channels.ftp_data import (
    DataConnection,
    DataError,
    NoPassivePort,
    PassiveListener,
    ipv4_of,
)
from gateway.channels.ftp_listing import facts, formatted, mdtm
from gateway.core.codes import Code, Rejection, reject
from gateway.core.folders import Operation
from gateway.spool.folders import Download, Entry, FolderSession, Listing, Upload

NO_PASSIVE = "Use PASV or EPSV first"
EPSV_REPLY_PAUSE_SECONDS = 0.001


def _session(control: Control) -> FolderSession:
    session = control.session
    if session is None:  # the command wrapper lets only logged-in connections through
        raise RuntimeError("no folder session")
    return session


# -- folders ---------------------------------------------------------------------------------


async def pwd(control: Control, argument: str) -> bool:
    """``PWD``: the current folder."""
    control.reply(257, f'"{control.cwd}" is the current folder')
    return True


async def cwd(control: Control, argument: str) -> bool:
    """``CWD``: change to the root or one of the six folders (asked of the folder service)."""
    if not argument:
        control.reply(501, "CWD needs a folder")
        return True
    entry = await _session(control).stat(control.path(argument))
    if isinstance(entry, Rejection):
        control.refuse(entry)
    elif not entry.is_folder:
        control.refuse(reject(Code.OPERATION_NOT_PERMITTED, f"{entry.name} is not a folder"))
    else:
        control.cwd = "/" if entry.name == "/" else "/" + entry.name
        control.reply(250, f'"{control.cwd}" is the current folder')
    return True


async def cdup(control: Control, argument: str) -> bool:
    """``CDUP``: the folders all hang under the root."""
    control.cwd = "/"
    control.reply(250, '"/" is the current folder')
    return True


async def _entry(control: Control, argument: str) -> Entry | None:
    """The file ``argument`` names (a refusal or a folder is answered here)."""
    entry = await _session(control).stat(control.path(argument))
    if isinstance(entry, Rejection):
        control.refuse(entry)
        return None
    if entry.is_folder:
        control.refuse(reject(Code.OPERATION_NOT_PERMITTED, f"{entry.name} is a folder"))
        return None
    return entry


async def size(control: Control, argument: str) -> bool:
    """``SIZE`` (RFC 3659 §4)."""
    entry = await _entry(control, argument)
    if entry is not None:
        control.reply(213, str(entry.size))
    return True


async def mdtm_(control: Control, argument: str) -> bool:
    """``MDTM`` (RFC 3659 §3)."""
    entry = await _entry(control, argument)
    if entry is not None:
        control.reply(213, mdtm(entry.mtime))
    return True


async def mlst(control: Control, argument: str) -> bool:
    """``MLST``: the facts of one entry, on the control connection (RFC 3659 §7)."""
    raw = control.path(argument)
    entry = await _session(control).stat(raw)
    if isinstance(entry, Rejection):
        control.refuse(entry)
    else:
        control.reply(250, [f"Listing {raw}", f"{facts(entry)} {raw}", "End"], True)
    return True


async def dele(control: Control, argument: str) -> bool:
    """``DELE``: remove an own pending upload or a return file."""
    problem = await _session(control).remove(control.path(argument))
    if problem is not None:
        control.refuse(problem)
    else:
        control.reply(250, "File removed")
    return True


async def rnfr(control: Control, argument: str) -> bool:
    """``RNFR``: the client temporary name of a finished upload."""
    raw = control.path(argument)
    entry = await _session(control).stat(raw)
    if isinstance(entry, Rejection):
        control.refuse(entry)
        return True
    control.rename_from = raw
    control.reply(350, "Ready for RNTO")
    return True


async def rnto(control: Control, argument: str) -> bool:
    """``RNTO``: commit the upload under its name (``NAME.filepart`` -> ``NAME`` only)."""
    source, control.rename_from = control.rename_from, None
    if source is None:
        control.reply(503, "Send RNFR first")
        return True
    problem = await _session(control).rename_temp(source, control.path(argument))
    if problem is not None:
        control.refuse(problem)
    else:
        control.reply(250, "File stored")
    return True


async def mkd(control: Control, argument: str) -> bool:
    """``MKD``: the six folders are fixed (see :func:`_folders_fixed`)."""
    return _folders_fixed(control, argument, Operation.MKDIR)


async def rmd(control: Control, argument: str) -> bool:
    """``RMD``: the six folders are fixed (see :func:`_folders_fixed`)."""
    return _folders_fixed(control, argument, Operation.RMDIR)


def _folders_fixed(control: Control, argument: str, operation: Operation) -> bool:
    """The path is still judged by the folder service first, so a bad one gets the same code
    (922) as on every other channel, and the refusal names the operation asked for."""
    answer = _session(control).resolve(control.path(argument), operation)
    if not isinstance(answer, Rejection):  # pragma: no cover  (permit() never allows either)
        answer = reject(Code.OPERATION_NOT_PERMITTED, "folders cannot be made or removed")
    control.refuse(answer)
    return True


# -- representation (always binary, stream mode, file structure) -------------------------------


async def type_(control: Control, argument: str) -> bool:
    """``TYPE A`` or ``I``: accepted; every transfer is binary (files are stored as sent)."""
    if argument.strip().upper() in {"A", "A N", "I", "L 8"}:
        control.reply(200, "Type set (transfers are always binary)")
    else:
        control.reply(504, "Only TYPE I (and A, sent as binary) are supported")
    return True


async def mode(control: Control, argument: str) -> bool:
    """``MODE S`` only."""
    if argument.strip().upper() == "S":
        control.reply(200, "Mode S")
    else:
        control.reply(504, "Only MODE S is supported")
    return True


async def stru(control: Control, argument: str) -> bool:
    """``STRU F`` only."""
    if argument.strip().upper() == "F":
        control.reply(200, "Structure F")
    else:
        control.reply(504, "Only STRU F is supported")
    return True


# -- passive mode ----------------------------------------------------------------------------


def _open_passive(control: Control, *, extended: bool) -> bool:
    if control.tls is not None and not control.protected:
        control.reply(521, "Data connections must be protected: send PBSZ 0 and PROT P first")
        return True
    if control.transferring:
        control.reply(425, "A transfer is in progress")
        return True
    control.close_passive()
    channel = control.channel
    address = channel.config.passive_address or control.local_ip
    ipv4 = ipv4_of(address)
    if not extended and ipv4 is None:
        control.reply(425, "PASV needs an IPv4 address: use EPSV")
        return True
    try:
        sock = channel.ports.listen(control.local_ip)
    except (NoPassivePort, OSError) as exc:
        control.log.warning("passive.unavailable", error=type(exc).__name__)
        control.reply(425, "No passive port is free; try again")
        return True
    passive = PassiveListener(
        sock, control_peer=control.peer_ip, log=control.log, proxy=channel.config.proxy
    )
    control.passive = passive
    port = passive.port
    if extended:
        control.reply(229, f"Entering Extended Passive Mode (|||{port}|)")
    else:
        host = (ipv4 or "").replace(".", ",")
        control.reply(227, f"Entering Passive Mode ({host},{port >> 8},{port & 0xFF})")
    return True


async def pasv(control: Control, argument: str) -> bool:
    """``PASV`` (IPv4)."""
    return _open_passive(control, extended=False)


async def epsv(control: Control, argument: str) -> bool:
    """``EPSV`` (RFC 2428); ``EPSV ALL`` is acknowledged (active mode is never offered)."""
    value = argument.strip().upper()
    if value == "ALL":
        control.reply(200, "EPSV ALL: only EPSV will be used")
        return True
    if value not in {"", "1", "2"}:
        control.reply(522, "Network protocol not supported, use (1,2)")
        return True
    # curl 7.88 (Debian 12's) stalls one second before its data connection whenever the 229 is
    # already there at its first zero-timeout poll after sending EPSV: about one transfer in
    # five, 1,000 files in 180-240 s. A millisecond's pause puts the reply after that poll
    # (measured: 1,000 files in 10 s). Only EPSV pays it: lftp, FileZilla and WinSCP use PASV
    # on IPv4.
    await asyncio.sleep(EPSV_REPLY_PAUSE_SECONDS)
    return _open_passive(control, extended=True)


async def active_refused(control: Control, argument: str) -> bool:
    """``PORT``/``EPRT``: no active mode, so no FTP bounce."""
    control.reply(502, "Active mode is not supported: use PASV or EPSV")
    return True


def _take_passive(control: Control) -> PassiveListener | None:
    if control.transferring:
        control.reply(425, "A transfer is in progress")
        return None
    done = control.transfer
    if done is not None and not done.cancelled():
        done.exception()  # retrieved (a transfer answers its own errors; this is a safety net)
    control.transfer = None
    # Handed to the transfer by _start. A refused command leaves it open until the next
    # PASV/EPSV or the end of the connection (as vsftpd does): curl has already connected its
    # data connection, and a reset there made it read the refusal as a bad EPSV reply
    # ("curl: (13) Bad PASV/EPSV response: 553") instead of the 553 with its code.
    passive = control.passive
    if passive is None:
        control.reply(425, NO_PASSIVE)
    return passive


def _start(
    control: Control,
    passive: PassiveListener,
    work: Callable[[DataConnection], Awaitable[None]],
    *,
    verb: str,
    name: str,
    on_end: Callable[[], None],
) -> None:
    """Reply 150 and run ``work`` on the data connection as the connection's transfer task."""
    control.passive = None
    control.reply(150, f"Opening data connection for {name}")
    control.transfer = asyncio.create_task(
        _transfer(control, passive, work, verb=verb, name=name, on_end=on_end)
    )


async def _transfer(
    control: Control,
    passive: PassiveListener,
    work: Callable[[DataConnection], Awaitable[None]],
    *,
    verb: str,
    name: str,
    on_end: Callable[[], None],
) -> None:
    config = control.channel.config
    data: DataConnection | None = None
    try:
        data = await passive.accept(
            tls=config.tls if control.protected else None,
            stall_seconds=config.data_timeout_seconds,
            limit=config.block_size,
        )
        await work(data)
    except DataError as exc:
        control.log.info("transfer.failed", verb=verb, name=name, reason=str(exc))
        if data is None:
            control.reply(425, "Cannot open the data connection; transfer aborted")
        else:
            control.reply(426, "Data connection failed; transfer aborted")
    except Exception:  # the per-transfer boundary: log it, answer it, keep the connection
        control.reply(*replies.fault(control.log, "transfer.error", verb=verb, name=name))
    finally:
        passive.close()
        on_end()  # aborts an upload not committed, releases a download (both idempotent)
        if data is not None:
            data.abort()


# -- transfers -------------------------------------------------------------------------------


async def stor(control: Control, argument: str) -> bool:
    """``STOR``: a new upload (its name checked now, committed after a clean end of data)."""
    if not argument:
        control.reply(501, "STOR needs a file name")
        return True
    passive = _take_passive(control)
    if passive is None:
        return True
    upload = await _session(control).open_upload(control.path(argument))
    if isinstance(upload, Rejection):
        control.refuse(upload)
        return True
    block_size = control.channel.config.block_size

    async def receive(data: DataConnection) -> None:
        await _receive(control, data, upload, block_size)

    _start(control, passive, receive, verb="STOR", name=upload.name, on_end=upload.abort)
    return True


async def _receive(control: Control, data: DataConnection, upload: Upload, block: int) -> None:
    while chunk := await data.read_block(block):
        control.touch()
        problem = await upload.write(chunk)
        if problem is not None:
            control.refuse(problem)
            return
    await data.close()
    problem = await upload.close()
    if problem is not None:
        control.refuse(problem)
    else:
        control.reply(226, "Transfer complete: file stored")


async def retr(control: Control, argument: str) -> bool:
    """``RETR``: a return file of an OUT* folder."""
    passive = _take_passive(control)
    if passive is None:
        return True
    download = await _session(control).open_return(control.path(argument))
    if isinstance(download, Rejection):
        control.refuse(download)
        return True
    block_size = control.channel.config.block_size

    async def send(data: DataConnection) -> None:
        await _send_file(control, data, download, block_size)

    _start(control, passive, send, verb="RETR", name=download.name, on_end=download.close)
    return True


async def _send_file(
    control: Control, data: DataConnection, download: Download, block: int
) -> None:
    offset = 0
    while offset < download.size:
        chunk = await download.read(offset, block)
        if not chunk:
            break
        await data.write(chunk)
        offset += len(chunk)
        control.touch()
    await data.close()
    control.reply(226, "Transfer complete")


def _listing_path(argument: str) -> str:
    """The path of ``LIST -la PATH``: ls-style options are skipped (no name starts with ``-``)."""
    words = argument.split(" ")
    while words and words[0].startswith("-"):
        words.pop(0)
    return " ".join(words)


async def _list(control: Control, argument: str, verb: str) -> bool:
    passive = _take_passive(control)
    if passive is None:
        return True
    session = _session(control)
    raw = control.path(_listing_path(argument) if verb != "mlsd" else argument)
    entry = await session.stat(raw)
    opened: Listing | list[Entry] | Rejection
    if isinstance(entry, Rejection):
        opened = entry
    elif entry.is_folder:
        opened = session.listing(raw)  # asked before the 150: a refusal is a 5xx reply
    elif verb == "mlsd":
        opened = reject(Code.OPERATION_NOT_PERMITTED, f"{entry.name} is a file: use MLST")
    else:
        opened = [entry]
    if isinstance(opened, Rejection):
        control.refuse(opened)
        return True
    listing = opened

    async def send(data: DataConnection) -> None:
        # A folder is sent a chunk at a time as the folder service reads it (bounded memory
        # whatever it holds); the data connection's drain paces the reading.
        if isinstance(listing, list):
            await data.write(formatted(listing, verb, time.time()))
        else:
            while entries := await listing.read():
                await data.write(formatted(entries, verb, time.time()))
                control.touch()
        await data.close()
        control.reply(226, "Transfer complete")

    on_end = listing.close if isinstance(listing, Listing) else lambda: None
    _start(control, passive, send, verb=verb.upper(), name=raw, on_end=on_end)
    return True


async def list_(control: Control, argument: str) -> bool:
    """``LIST``: ``ls -l`` lines."""
    return await _list(control, argument, "list")


async def nlst(control: Control, argument: str) -> bool:
    """``NLST``: names only."""
    return await _list(control, argument, "nlst")


async def mlsd(control: Control, argument: str) -> bool:
    """``MLSD``: RFC 3659 facts of a folder's entries."""
    return await _list(control, argument, "mlsd")


async def abor(control: Control, argument: str) -> bool:
    """``ABOR``: cancel the transfer in progress (an upload is dropped, nothing is visible)."""
    control.close_passive()
    if await control.stop_transfer():
        control.reply(426, "Transfer aborted")
        control.reply(226, "ABOR successful")
    else:
        control.reply(226, "No transfer to abort")
    return True


async def refused(control: Control, argument: str) -> bool:
    """``REST``/``APPE``/``STOU``/``SITE``: not offered (an upload is a new file from byte 0)."""
    control.reply(502, "Not supported: an upload is a new file, sent whole with STOR")
    return True
