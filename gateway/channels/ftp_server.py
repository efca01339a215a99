"""aioftp's ``Server``, reduced to its dispatcher and reply queue, with the gateway's commands.

aioftp gives the control loop: one task reads commands, one writes replies in order, one per
command runs its handler. Everything else is replaced through its seams:

- ``commands_mapping`` holds only the gateway's verbs (:mod:`ftp_login`, :mod:`ftp_files`),
  each wrapped (:meth:`FtpServer._command`) to run one at a time per connection, in arrival
  order, to require a login where needed, and to answer an unexpected exception with
  ``451 999`` (logged with its traceback; the connection goes on: SECURITY.md 22);
- ``dispatcher`` is wrapped to admit the connection (penalties, ``max_startups``) and to clean
  up after it (:meth:`Control.finish`); behind a balancer it first reads the PROXY v2 header
  (:mod:`gateway.channels.proxy`), whose client is then the connection's peer;
- ``parse_command`` reads one line (at most ``MAX_LINE`` bytes), never logs it (``PASS``),
  turns a bad verb, an unknown verb or the end of input into internal verbs, and stops reading
  after ``AUTH`` until the TLS upgrade is done;
- ``write_response`` upgrades the control connection right after writing the ``234`` to
  ``AUTH TLS`` (aioftp's server has no ``AUTH``): reading was paused before the 234, so the
  client's first TLS bytes reach the TLS layer, never the command reader.

The greeting and ``SYST`` name no product or version (SECURITY.md 9).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aioftp

from gateway.channels import ftp_files as files
from gateway.channels import ftp_login as login
from gateway.channels import ftp_replies as replies
from gateway.channels.ftp_control import CHANNEL, Channel, Control
from gateway.channels.proxy import QUIET, Endpoint, ProxyRefusal, read_from_stream, refuse

Handler = Callable[[Control, str], Awaitable[bool]]

# A command line longer than this ends the connection (paths are at most 4096 bytes).
MAX_LINE = 8192
# Internal verbs: the parser's verdicts (a peer's verb is letters only, so never one of these).
EOF, BAD, UNKNOWN, NOT_UTF8 = "<eof>", "<bad>", "<unknown>", "<not-utf8>"

FEATURES = (
    "AUTH TLS",
    "PBSZ",
    "PROT",
    "EPSV",
    "MDTM",
    "MLST type*;size*;modify*;",
    "SIZE",
    "UTF8",
    "TVFS",
)


async def _feat(control: Control, argument: str) -> bool:
    control.reply(211, ["Features:", *FEATURES, "End"], True)
    return True


async def _syst(control: Control, argument: str) -> bool:
    control.reply(215, "UNIX Type: L8")
    return True


async def _noop(control: Control, argument: str) -> bool:
    control.reply(200, "OK")
    return True


async def _opts(control: Control, argument: str) -> bool:
    option = argument.strip().upper()
    if option in {"UTF8", "UTF8 ON", "UTF-8", "UTF-8 ON"}:
        control.reply(200, "Always in UTF8 mode")
    elif option.startswith("MLST"):
        control.reply(200, "MLST OPTS type;size;modify;")
    else:
        control.reply(501, "Option not supported")
    return True


async def _allo(control: Control, argument: str) -> bool:
    control.reply(202, "No storage allocation necessary")
    return True


async def _quit(control: Control, argument: str) -> bool:
    control.reply(221, "Goodbye")
    return False


async def _eof(control: Control, argument: str) -> bool:
    return False


async def _bad(control: Control, argument: str) -> bool:
    control.reply(500, "Syntax error: not a command")
    return True


async def _not_utf8(control: Control, argument: str) -> bool:
    control.reply(553, "922: the command is not valid UTF-8")
    return True


async def _unknown(control: Control, argument: str) -> bool:
    control.reply(502, "Command not implemented")
    return True


# verb -> (handler, needs a logged-in session)
COMMANDS: dict[str, tuple[Handler, bool]] = {
    "auth": (login.auth, False),
    "pbsz": (login.pbsz, False),
    "prot": (login.prot, False),
    "user": (login.user, False),
    "pass": (login.pass_, False),
    "feat": (_feat, False),
    "opts": (_opts, False),
    "syst": (_syst, False),
    "noop": (_noop, False),
    "quit": (_quit, False),
    "type": (files.type_, True),
    "mode": (files.mode, True),
    "stru": (files.stru, True),
    "allo": (_allo, True),
    "pwd": (files.pwd, True),
    "xpwd": (files.pwd, True),
    "cwd": (files.cwd, True),
    "xcwd": (files.cwd, True),
    "cdup": (files.cdup, True),
    "xcup": (files.cdup, True),
    "pasv": (files.pasv, True),
    "epsv": (files.epsv, True),
    "port": (files.active_refused, False),
    "eprt": (files.active_refused, False),
    "stor": (files.stor, True),
    "retr": (files.retr, True),
    "list": (files.list_, True),
    "nlst": (files.nlst, True),
    "mlsd": (files.mlsd, True),
    "mlst": (files.mlst, True),
    "size": (files.size, True),
    "mdtm": (files.mdtm_, True),
    "dele": (files.dele, True),
    "rnfr": (files.rnfr, True),
    "rnto": (files.rnto, True),
    "abor": (files.abor, True),
    "mkd": (files.mkd, True),
    "xmkd": (files.mkd, True),
    "rmd": (files.rmd, True),
    "xrmd": (files.rmd, True),
    "rest": (files.refused, False),
    "appe": (files.refused, False),
    "stou": (files.refused, False),
    "site": (files.refused, False),
    EOF: (_eof, False),
    BAD: (_bad, False),
    NOT_UTF8: (_not_utf8, False),
    UNKNOWN: (_unknown, False),
}


def _strip_telnet(line: bytes) -> bytes:
    """Drop Telnet IAC sequences clients put before ``ABOR`` (IP, Synch) and undouble IAC."""
    while line[:1] == b"\xff" and len(line) >= 2:
        line = line[2:]
    if line[:1] == b"\xf2":  # a Synch's data mark delivered in line
        line = line[1:]
    return line.replace(b"\xff\xff", b"\xff")


class FtpServer(aioftp.Server):
    """One listener (the public one, or a plain listener of the secondary networks)."""

    def __init__(self, channel: Channel, *, listener: str | None) -> None:
        config = channel.config
        super().__init__(
            block_size=config.block_size,
            welcome_message=(
                "Batch Gateway ready (AUTH TLS required)"
                if listener is None
                else "Batch Gateway ready"
            ),
        )
        self._channel = channel
        self._listener = listener
        self._controls: dict[asyncio.StreamWriter, Control] = {}
        self.commands_mapping = {
            verb: self._command(verb, handler, needs_login)
            for verb, (handler, needs_login) in COMMANDS.items()
        }

    # -- commands ------------------------------------------------------------------------------

    def _command(
        self, verb: str, handler: Handler, needs_login: bool
    ) -> Callable[[Any, str], Awaitable[bool]]:
        async def run(connection: Any, argument: str) -> bool:
            control = self._controls[connection.command_connection.writer]
            control.connection = connection
            async with control.lock:
                if control.closing and verb != EOF:
                    return True
                control.touch()
                if verb not in {"rnto", "rnfr"}:
                    control.rename_from = None
                if needs_login and control.session is None:
                    control.reply(530, "Log in with USER and PASS first")
                    return True
                try:
                    return await handler(control, argument)
                except Exception:  # the per-command boundary: logged, answered, connection kept
                    answer = replies.fault(control.log, "command.failed", verb=verb)
                    control.close_passive()
                    control.readable.set()
                    control.reply(*answer)
                    return True

        return run

    # -- aioftp's seams ------------------------------------------------------------------------

    async def dispatcher(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Admit the connection, run aioftp's control loop, then clean up after it."""
        client: Endpoint | None = None
        via: str | None = None
        if self._channel.config.proxy.on:
            client, via = await self._proxied(reader, writer)
            if client is None:
                writer.transport.abort()
                return
        control = login.admit(
            self._channel, reader, writer, listener=self._listener, client=client, via=via
        )
        if control is None:
            return
        self._controls[writer] = control
        try:
            if not control.closing:
                await super().dispatcher(reader, writer)
        finally:
            self._controls.pop(writer, None)
            await control.finish()

    async def _proxied(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Endpoint | None, str]:
        """The client a balancer's header names, and the balancer (None: refused, or a health
        check); exactly the header's bytes are read, the reader keeps the client's commands."""
        channel = self._channel
        peername = writer.get_extra_info("peername") or ("?", 0)
        ip, balancer = str(peername[0]), f"{peername[0]}:{peername[1]}"
        policy = channel.config.proxy
        listener = self._listener or "public"
        if not policy.from_balancer(ip):
            refuse(channel.sources, CHANNEL, ip, balancer, "not_balancer", channel.metrics,
                   listener=listener)  # fmt: skip
            return None, balancer
        client = await read_from_stream(reader, policy.header_seconds)
        if isinstance(client, ProxyRefusal):
            if client.reason not in QUIET:
                refuse(channel.sources, CHANNEL, ip, balancer, "header", channel.metrics,
                       detail=client.reason, listener=listener)  # fmt: skip
            return None, balancer
        return client, balancer

    async def parse_command(
        self, stream: aioftp.StreamIO, censor_commands: tuple[str, ...] = ("pass",)
    ) -> tuple[str, str]:
        """The next command as ``(verb, argument)`` (never logged: it may be a password)."""
        control = self._controls.get(stream.writer)
        if control is not None:
            await control.readable.wait()
        try:
            line = await stream.reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ssl.SSLError):
            return EOF, ""
        if len(line) > MAX_LINE:
            return EOF, ""
        line = _strip_telnet(line.rstrip(b"\n").removesuffix(b"\r"))
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return NOT_UTF8, ""
        verb, _, argument = text.partition(" ")
        verb = verb.lower()
        if not (verb.isascii() and verb.isalpha() and 3 <= len(verb) <= 4):
            return BAD, ""
        if verb not in COMMANDS:
            return UNKNOWN, ""
        if verb == "auth" and control is not None:
            control.readable.clear()  # until the upgrade is done (or refused)
        return verb, argument

    async def write_response(
        self, stream: aioftp.StreamIO, code: str, lines: Any = "", list: bool = False
    ) -> None:
        """aioftp's reply writer; after the 234 to ``AUTH``, the TLS handshake."""
        control = self._controls.get(stream.writer)
        if control is None or code != "234" or not control.tls_pending:
            await super().write_response(stream, code, lines, list)
            return
        control.tls_pending = False
        try:
            if control.buffered_input():
                control.log.warning("tls.refused", reason="input_after_auth")
                control.end("Commands after AUTH must wait for its reply", abort=True)
                return
            await super().write_response(stream, code, lines, list)
            await stream.writer.start_tls(
                self._channel.config.tls,
                ssl_handshake_timeout=self._channel.config.tls_handshake_seconds,
            )
        except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
            control.log.info("tls.failed", error=type(exc).__name__)
            control.closing = True
            stream.writer.transport.abort()
            control.reader.feed_eof()
        finally:
            control.readable.set()
