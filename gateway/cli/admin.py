"""``gateway admin …``: every access-management task of the guide, on the command line.

Acts as the gateway operator, or with ``--as LOGIN`` as that access manager, in which case the
registry's rule table decides (a refusal names the missing role). Output is a human table, or
JSON with ``--json``. Exit codes: 0 done, 1 refused (the message says why), 2 usage or
configuration error (a bad argument, an invalid services catalogue or secondary networks file, a
database that cannot be opened or is not migrated), 3 the audit chain is broken. Every command
but ``db migrate`` first checks that the database exists at the newest schema, so none creates
an empty one. Passwords are read from standard input, never from arguments (which other users
can see in the process list). Reference: docs/admin.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509

from gateway.cli.database import check_url, migrate_database, require_schema
from gateway.cli.failures import CommandError
from gateway.ops.logging import configure_logging
from gateway.ops.private import private_dirs
from gateway.ops.settings import GatewaySettings
from gateway.pipeline.identity import dev_identity_paths
from gateway.registry.anchors import parse_anchors
from gateway.registry.catalogue import CatalogueError, ServiceCatalogue, load_service_catalogue
from gateway.registry.notify import build_notifier
from gateway.registry.revocation import ssh_fingerprint
from gateway.registry.service import Registry, build_registry
from gateway.registry.trust import TrustFolders
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    EnterpriseNumber,
    IssuedPassword,
    PasswordCredential,
    Person,
    QualityRef,
    Refusal,
    Role,
    SenderNumber,
)
from gateway.registry.validate import check_kbo

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_AUDIT_BROKEN = 3
AUDIT_LIST_MAX = 100_000

Op = Callable[[Registry, argparse.Namespace], Awaitable[Any]]


def _quality(text: str) -> QualityRef:
    """A ``KBO/KIND`` argument; a malformed one is a usage error (exit 2), like the parser's."""
    kbo, sep, kind = text.partition("/")
    if not sep or not kbo or not kind:
        raise CommandError(f"quality must be KBO/KIND (e.g. 0123456749/employer), not {text!r}")
    number = check_kbo(kbo)
    if isinstance(number, Refusal):
        raise CommandError(f"quality {text!r}: {number.message}")
    return QualityRef(number, kind)


def _kbo(text: str) -> EnterpriseNumber:
    """The parser's type for a ``KBO`` argument: 10 digits with valid check digits."""
    number = check_kbo(text)
    if isinstance(number, Refusal):
        raise argparse.ArgumentTypeError(number.message)
    return number


def _limit(text: str) -> int:
    """The parser's type for ``--limit``: 1 to :data:`AUDIT_LIST_MAX`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= AUDIT_LIST_MAX:
        raise argparse.ArgumentTypeError(f"must be 1 to {AUDIT_LIST_MAX}, not {text}")
    return value


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def _read_text(path: str) -> str:
    try:
        return _read(path).decode()
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None


def _stdin_line() -> str:
    try:
        return sys.stdin.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise CommandError("standard input is not valid UTF-8") from None


def _person(args: argparse.Namespace, prefix: str = "") -> Person:
    return Person(
        name=getattr(args, f"{prefix}name"),
        email=getattr(args, f"{prefix}email"),
        phone=getattr(args, f"{prefix}phone"),
        language=getattr(args, f"{prefix}language"),
        national_register_number=getattr(args, f"{prefix}nrn"),
    )


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses to dicts, enums to values, sets sorted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        # Records (a channel's networks with their ranges) apart with " | ": their own lists
        # already use ", ".
        sep = " | " if any(isinstance(v, dict) for v in value) else ", "
        return sep.join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return "; ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def render_table(data: Any) -> str:
    """A human table: a list of records as columns, a record as key/value lines."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        columns = list(data[0])
        rows = [[_cell(r.get(c)) for c in columns] for r in data]
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
        return "\n".join(line.rstrip() for line in lines)
    if isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        lines = []
        for key, value in data.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                lines.append(f"{key}:")
                lines += ["  " + line for line in render_table(value).splitlines()]
            else:
                lines.append(f"{key.ljust(width)}  {_cell(value)}")
        return "\n".join(lines)
    if isinstance(data, list) and not data:
        return "(none)"
    return _cell(data)


# -- operations: each returns data to print, a Refusal, or an AuthFailure ---------------------


def _done(result: Refusal | None, data: dict[str, Any]) -> Any:
    return result if result is not None else data


def _issued(result: IssuedPassword | Refusal) -> Any:
    if isinstance(result, Refusal):
        return result
    return {"login": result.login, "temporary_password": result.password}


async def _provision(reg: Registry, a: argparse.Namespace) -> Any:
    result = await reg.provision_enterprise(
        actor=a.actor, kbo=a.kbo, name=a.name, htb=_person(a, "htb_"), htb_login=a.htb_login
    )
    if isinstance(result, Refusal):
        return result
    data = {"enterprise": result.enterprise, "htb_login": result.htb_login, "status": "pending"}
    if result.issued is None:
        data["delivery"] = "username by e-mail, temporary password by SMS"
    else:
        data["temporary_password"] = result.issued.password
    return data


async def _login(reg: Registry, a: argparse.Namespace) -> Any:
    return await reg.console_login(a.login, PasswordCredential(_stdin_line()))


async def _change_password(reg: Registry, a: argparse.Namespace) -> Any:
    old, new = _stdin_line(), _stdin_line()
    result = await reg.change_password(login=a.login, old=old, new=new)
    return _done(result, {"login": a.login, "password": "changed"})


async def _appoint(reg: Registry, a: argparse.Namespace) -> Any:
    quality = _quality(a.quality) if a.quality else None
    call = reg.appoint if a.verb == "appoint" else reg.dismiss
    result = await call(actor=a.actor, role=Role(a.role), login=a.login, quality=quality)
    return _done(result, {"login": a.login, "role": a.role, a.verb: "done"})


async def _user_create(reg: Registry, a: argparse.Namespace) -> Any:
    q = _quality(a.quality)
    return _issued(
        await reg.create_user(actor=a.actor, quality=q, person=_person(a), login=a.login)
    )


async def _user_status(reg: Registry, a: argparse.Namespace) -> Any:
    call = {"block": reg.block_user, "unblock": reg.unblock_user, "delete": reg.delete_user}
    result = await call[a.verb](actor=a.actor, login=a.login)
    return _done(result, {"login": a.login, a.verb: "done"})


async def _user_reset(reg: Registry, a: argparse.Namespace) -> Any:
    return _issued(await reg.reset_password(actor=a.actor, login=a.login))


async def _channel(reg: Registry, a: argparse.Namespace) -> Any:
    kind = ChannelKind(a.kind)
    result = await reg.add_channel(
        actor=a.actor,
        quality=_quality(a.quality),
        kind=kind,
        ssh_keys=[_read_text(p) for p in a.ssh_key],
        ftp_password=_stdin_line() if a.password_stdin else None,
        networks=a.network,
        client_certificate=_read(a.client_cert) if a.client_cert else None,
    )
    return result if isinstance(result, Refusal) else {"channel": kind.value, "sender": result}


async def _technical(reg: Registry, a: argparse.Namespace) -> Any:
    result = await reg.set_technical_user(
        actor=a.actor, quality=_quality(a.quality), person=_person(a), login=a.login
    )
    return result if isinstance(result, Refusal) else {"technical_user": result}


async def _saved(reg: Registry, a: argparse.Namespace) -> Any:
    result = await reg.save_configuration(actor=a.actor, quality=_quality(a.quality))
    return _done(result, {"quality": a.quality, "configuration": "saved"})


async def _ssh_key(reg: Registry, a: argparse.Namespace) -> Any:
    q = _quality(a.quality)
    result = await reg.add_ssh_key(actor=a.actor, quality=q, key=_read_text(a.file))
    if isinstance(result, Refusal):
        return result
    return {"ssh_key": ssh_fingerprint(result), "ssh_key_sha256": result}


async def _remove_key(reg: Registry, a: argparse.Namespace) -> Any:
    q = _quality(a.quality)
    result = await reg.remove_ssh_key(actor=a.actor, quality=q, fingerprint=a.fingerprint)
    return _done(result, {"quality": a.quality, "ssh_key_removed": a.fingerprint})


async def _remove_certificate(reg: Registry, a: argparse.Namespace) -> Any:
    q = _quality(a.quality)
    result = await reg.remove_signing_certificate(
        actor=a.actor, quality=q, fingerprint=a.fingerprint
    )
    return _done(result, {"quality": a.quality, "certificate_removed": a.fingerprint})


async def _remove_channel(reg: Registry, a: argparse.Namespace) -> Any:
    q = _quality(a.quality)
    result = await reg.remove_channel(actor=a.actor, quality=q, kind=ChannelKind(a.kind))
    return _done(result, {"quality": a.quality, "channel_removed": a.kind})


async def _replace_technical(reg: Registry, a: argparse.Namespace) -> Any:
    result = await reg.replace_technical_user(
        actor=a.actor, quality=_quality(a.quality), person=_person(a), login=a.login
    )
    return result if isinstance(result, Refusal) else {"technical_user": result}


async def _certificate(reg: Registry, a: argparse.Namespace) -> Any:
    q = _quality(a.quality)
    return await reg.upload_certificate(actor=a.actor, quality=q, data=_read(a.file))


async def _services(reg: Registry, a: argparse.Namespace) -> Any:
    result = await reg.set_services(actor=a.actor, quality=_quality(a.quality), codes=a.codes)
    return result if isinstance(result, Refusal) else {"services": list(result)}


async def _overview(reg: Registry, a: argparse.Namespace) -> Any:
    return await reg.overview(actor=a.actor, quality=_quality(a.quality))


async def _sender(reg: Registry, a: argparse.Namespace) -> Any:
    profile = await reg.sender_profile(SenderNumber(a.number))
    if profile is None:
        return Refusal("not_found", f"sender {a.number} does not exist")
    data = plain(profile)
    data["signing_certificates"] = len(profile.signing_certificates)
    return data


async def _enterprises(reg: Registry, a: argparse.Namespace) -> Any:
    result = await reg.enterprises(actor=a.actor)
    return result if isinstance(result, Refusal) else [{"enterprise": k} for k in result]


async def _enterprise(reg: Registry, a: argparse.Namespace) -> Any:
    return await reg.enterprise(actor=a.actor, kbo=a.kbo)


async def _password_login(reg: Registry, a: argparse.Namespace) -> Any:
    enabled = a.state == "on"
    result = await reg.set_password_login(actor=a.actor, kbo=a.kbo, enabled=enabled)
    return _done(result, {"enterprise": a.kbo, "password_login": a.state})


async def _quality_activate(reg: Registry, a: argparse.Namespace) -> Any:
    result = await reg.activate_quality(actor=a.actor, kbo=a.kbo, kind=a.kind)
    return result if isinstance(result, Refusal) else {"quality": str(result)}


async def _users(reg: Registry, a: argparse.Namespace) -> Any:
    return await reg.users(actor=a.actor, quality=_quality(a.quality))


async def _audit_list(reg: Registry, a: argparse.Namespace) -> Any:
    return await reg.audit_entries(limit=a.limit)


def _anchor_inputs(anchors: Path, certificate: Path) -> tuple[str, x509.Certificate]:
    """The anchors file's text and the gateway certificate (a command's one-off reads)."""
    try:
        text = anchors.read_text(encoding="utf-8")
        return text, x509.load_pem_x509_certificate(certificate.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"cannot read the anchors or the gateway certificate: {exc}") from None


async def _audit_verify(reg: Registry, a: argparse.Namespace) -> Any:
    report = await reg.audit_verify()
    if a.anchors is None:
        return report
    text, certificate = _anchor_inputs(Path(a.anchors), Path(a.anchor_cert))
    anchors, unreadable = parse_anchors(text)
    found = await reg.audit_anchor_problems(anchors, certificate)
    return dataclasses.replace(
        report, problems=(*report.problems, *unreadable, *found), anchors=len(anchors)
    )


# -- running one command ----------------------------------------------------------------------


def _operator_only(a: argparse.Namespace, what: str) -> Refusal | None:
    if a.actor is not None:
        return Refusal("forbidden", f"{what} is the gateway operator's task (drop --as)")
    return None


def _catalogue(settings: GatewaySettings) -> ServiceCatalogue:
    """The services catalogue, for the two commands that need it; a problem names the key."""
    path = settings.pipeline.services_file
    try:
        return load_service_catalogue(path)
    except CatalogueError as exc:
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise CommandError(
            f"{exc}{where}; set [pipeline] services_file in the settings "
            "(or GATEWAY_PIPELINE__SERVICES_FILE), or give --config"
        ) from None


async def _execute(settings: GatewaySettings, a: argparse.Namespace) -> Any:
    url = a.database or settings.database
    check_url(url)
    if a.op is None:  # db migrate
        if a.database is None and settings.database_url is None:
            # The default SQLite file lives under the state directory; create it on first use.
            private_dirs(settings.state_dir)
        await migrate_database(url)
        return {"database": "migrated to head"}
    if a.op in (_audit_verify, _audit_list):
        refusal = _operator_only(a, "the audit trail")
        if refusal is not None:
            return refusal
    # Only step 5 checks codes against the catalogue; the other commands work without the file.
    # The settings' files are read before the database is looked at: their errors come first.
    empty = ServiceCatalogue(MappingProxyType({}))
    registry = build_registry(
        settings,
        notifier=build_notifier(settings.notify, settings.state_dir),
        database_url=url,
        trust=TrustFolders((settings.signature.trust_dir,)),
        catalogue=_catalogue(settings) if a.op is _services else empty,
    )
    if a.op is _audit_verify and a.anchors is not None and a.anchor_cert is None:
        a.anchor_cert = settings.pipeline.gateway_cert or dev_identity_paths(settings.state_dir)[1]
    try:
        await require_schema(url)
        op: Op = a.op
        return await op(registry, a)
    finally:
        await registry.engine.dispose()


def _print(a: argparse.Namespace, data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if a.json else render_table(data))


def _handle(a: argparse.Namespace) -> int:
    from gateway.cli.main import settings_from  # the command line's edge loads settings once

    settings = settings_from(a)
    # Events go to stderr: stdout carries the command's table or JSON, for scripts to read.
    configure_logging(fmt=settings.log_format, level=settings.log_level, stream=sys.stderr)
    if a.admin_command == "services":
        catalogue = _catalogue(settings)
        _print(a, [{"code": e.code, "title": e.title, "parts": e.parts} for e in catalogue])
        return EXIT_OK
    result = asyncio.run(_execute(settings, a))
    if isinstance(result, Refusal | AuthFailure):
        reason = result.reason
        message = result.message if isinstance(result, Refusal) else f"login refused: {reason}"
        if a.json:
            _print(a, {"error": reason, "message": message})
        print(f"gateway admin: refused ({reason}): {message}", file=sys.stderr)
        return EXIT_REFUSED
    data = plain(result)
    _print(a, data)
    if a.op is _audit_verify and data["problems"]:
        print("gateway admin: the audit chain is broken", file=sys.stderr)
        return EXIT_AUDIT_BROKEN
    return EXIT_OK


# -- the parser -------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    # Given on every leaf with SUPPRESS so they work both before and after the sub-command.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--as",
        dest="actor",
        metavar="LOGIN",
        default=argparse.SUPPRESS,
        help="act as this access manager (rules enforced); default: the operator",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON instead of a table",
    )
    p.add_argument(
        "--database",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="SQLAlchemy URL (default: the settings' database)",
    )
    return p


def _person_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    dash = prefix.replace("_", "-")
    p.add_argument(f"--{dash}name", dest=f"{prefix}name", required=True, help="full name")
    p.add_argument(f"--{dash}email", dest=f"{prefix}email", required=True, help="e-mail address")
    p.add_argument(f"--{dash}phone", dest=f"{prefix}phone", default="", help="mobile number")
    p.add_argument(
        f"--{dash}language",
        dest=f"{prefix}language",
        default="nl",
        choices=["nl", "fr", "de", "en"],
    )
    p.add_argument(
        f"--{dash}nrn",
        dest=f"{prefix}nrn",
        default=None,
        help="Belgian national register number (11 digits), if any",
    )


Spec = tuple[str, Op | None, str, Callable[[argparse.ArgumentParser], None]]


def _none(_: argparse.ArgumentParser) -> None:
    return None


def _args(
    *specs: tuple[Sequence[str], dict[str, Any]],
) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        for names, options in specs:
            p.add_argument(*names, **options)

    return add


_KBO = (["kbo"], {"metavar": "KBO", "type": _kbo, "help": "enterprise number (10 digits)"})
_Q = (["quality"], {"metavar": "KBO/KIND", "help": "quality, e.g. 0123456749/employer"})
_LOGIN = (["login"], {"metavar": "LOGIN"})
_ROLE = (["role"], {"choices": [Role.co_htb.value, Role.tb.value, Role.co_tb.value]})
_QOPT = (["--quality"], {"metavar": "KBO/KIND", "help": "the quality (TB and co-TB)"})


def _with_person(
    *specs: tuple[Sequence[str], dict[str, Any]], prefix: str = ""
) -> Callable[[argparse.ArgumentParser], None]:
    base = _args(*specs)

    def add(p: argparse.ArgumentParser) -> None:
        base(p)
        _person_args(p, prefix)

    return add


_FILE = (["file"], {"metavar": "FILE"})
_FINGERPRINT = (["fingerprint"], {"metavar": "FINGERPRINT"})
_NEW_LOGIN = (["--login"], {"default": None})
_CHANNEL = _args(
    _Q,
    (["kind"], {"choices": [k.value for k in ChannelKind]}),
    (["--ssh-key"], {"action": "append", "default": [], "metavar": "FILE"}),
    (["--password-stdin"], {"action": "store_true"}),
    (["--network"], {"action": "append", "default": [], "metavar": "NET"}),
    (["--client-cert"], {"default": None, "metavar": "FILE"}),
)
_PROVISION = _with_person(
    _KBO, (["--name"], {"required": True}), (["--htb-login"], {"default": None}), prefix="htb_"
)

# The command table: group -> (verb, operation, help, arguments). Kept one entry per line.
# fmt: off
COMMANDS: dict[str, list[Spec]] = {
    "db": [("migrate", None, "create or upgrade the registry schema", _none)],
    "enterprise": [
        ("provision", _provision, "register an enterprise and its HTB (operator)", _PROVISION),
        ("list", _enterprises, "list enterprises", _none),
        ("show", _enterprise, "an enterprise, its qualities and roles", _args(_KBO)),
        ("password-login", _password_login, "switch password login on/off (HTB)",
         _args(_KBO, (["state"], {"choices": ["on", "off"]}))),
    ],
    "quality": [("activate", _quality_activate, "activate a quality (HTB)",
                 _args(_KBO, (["kind"], {"metavar": "KIND", "help": "e.g. employer"})))],
    "role": [
        ("appoint", _appoint, "appoint a co-HTB, TB or co-TB", _args(_ROLE, _LOGIN, _QOPT)),
        ("dismiss", _appoint, "remove a role appointment", _args(_ROLE, _LOGIN, _QOPT)),
    ],
    "user": [
        ("create", _user_create, "create a user, temporary password", _with_person(_Q, _NEW_LOGIN)),
        ("list", _users, "the users of a quality", _args(_Q)),
        ("block", _user_status, "block a user", _args(_LOGIN)),
        ("unblock", _user_status, "unblock a user", _args(_LOGIN)),
        ("delete", _user_status, "delete a user", _args(_LOGIN)),
        ("reset-password", _user_reset, "new temporary password", _args(_LOGIN)),
    ],
    "login": [("check", _login, "console login, password on stdin (activates)", _args(_LOGIN))],
    "password": [("change", _change_password, "old, then new password on stdin", _args(_LOGIN))],
    "structured": [
        ("save", _saved, "step 1: save the configuration data", _args(_Q)),
        ("technical-user", _technical, "step 2: the technical user", _with_person(_Q, _NEW_LOGIN)),
        ("channel", _channel, "step 3: a channel (assigns the sender number)", _CHANNEL),
        ("ssh-key", _ssh_key, "add an SSH key to the SFTP channel", _args(_Q, _FILE)),
        ("remove-key", _remove_key, "remove an SSH key (SHA256:... or hex fingerprint)",
         _args(_Q, _FINGERPRINT)),
        ("remove-certificate", _remove_certificate, "remove a signing certificate (SHA-256)",
         _args(_Q, _FINGERPRINT)),
        ("remove-channel", _remove_channel, "remove a channel with its credentials",
         _args(_Q, (["kind"], {"choices": [k.value for k in ChannelKind]}))),
        ("replace-technical-user", _replace_technical,
         "a new technical user; the old one is deleted", _with_person(_Q, _NEW_LOGIN)),
        ("certificate", _certificate, "step 4: the signing certificate", _args(_Q, _FILE)),
        ("services", _services, "step 5: the online services",
         _args(_Q, (["codes"], {"nargs": "+", "metavar": "CODE"}))),
        ("overview", _overview, "overview of the configuration data", _args(_Q)),
    ],
    "sender": [("show", _sender, "a sender's profile", _args((["number"], {"metavar": "N"})))],
    "services": [("list", None, "the online-services catalogue", _none)],
    "audit": [
        ("verify", _audit_verify, "verify the audit hash chain (operator), and with --anchors "
         "that it still holds every anchored head",
         _args((["--anchors"], {"metavar": "FILE", "default": None,
                                "help": "the signed anchors file ([security] audit_anchor_file)"}),
               (["--anchor-cert"], {"metavar": "PEM", "default": None,
                                    "help": "the gateway certificate that signed the anchors "
                                            "(default: [pipeline] gateway_cert, or the "
                                            "development one)"}))),
        ("list", _audit_list, "the newest audit records (operator)",
         _args((["--limit"], {"type": _limit, "default": 50}))),
    ],
}
# fmt: on


def register(sub: Any) -> None:
    """Add ``gateway admin`` and its sub-commands."""
    # A fresh copy of the common options for each parser: argparse shares action objects between
    # a parent and its children, and set_defaults() below would otherwise reach the leaves.
    admin = sub.add_parser(
        "admin",
        parents=[_common()],
        help="access management and the registry",
        description="Access management and the registry: every task of the access-management "
        "guide, on the command line. Reference: docs/admin.md.",
    )
    admin.set_defaults(actor=None, json=False, database=None, handler=_handle)
    groups = admin.add_subparsers(dest="admin_command", metavar="GROUP", required=True)
    for group, verbs in COMMANDS.items():
        gp = groups.add_parser(group, help=f"{group} commands")
        leaves = gp.add_subparsers(dest="verb", metavar="VERB", required=True)
        for verb, op, text, add in verbs:
            leaf = leaves.add_parser(verb, parents=[_common()], help=text, description=text)
            add(leaf)
            leaf.set_defaults(op=op)
