"""``gateway config show`` and ``gateway config check FILE``: the settings as the daemon resolves
them, and a settings file checked before it is installed.

``show`` prints every key of :class:`GatewaySettings` with its value and where the value came
from: the default, the settings file (found as ``serve`` finds it, :func:`settings_from`), or a
``GATEWAY_*`` variable (which wins over the file). Secrets never reach the output: a
``SecretStr`` (SMTP password, SMS token) is shown as ``<redacted>``, and a URL's password and
its token-like query parameters as ``***`` (``database_url``, ``sms_url``). The settings hold no
key material themselves, only the paths of key files.

``check`` validates one file on its own, without the environment, and exits 2 naming the line
of a TOML syntax error or the key (and its line, when it can be found) of an unknown key or a
wrong value; 0 and ``ok`` otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from gateway.cli.failures import CommandError
from gateway.cli.main import config_file, settings_from
from gateway.ops.settings import GatewaySettings

ENV_PREFIX = "GATEWAY_"
ENV_NESTING = "__"
REDACTED = "<redacted>"
HIDDEN = "***"
# Query parameters of a URL whose value is a credential (an SMS gateway's ?token=…).
SECRET_PARAMETER = re.compile(r"(key|token|secret|password|passwd|pass|sig|signature|auth)", re.I)

Key = tuple[str, ...]


# -- show ---------------------------------------------------------------------------------------


def leaves(model: BaseModel, prefix: Key = ()) -> Iterator[tuple[Key, object]]:
    """Every setting of ``model`` as (key path, value); sections are walked, dicts are values."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from leaves(value, (*prefix, name))
        else:
            yield (*prefix, name), value


def hide_url_secrets(text: str) -> str:
    """``text`` with a URL's password and credential-like query values replaced by ``***``."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{HIDDEN}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        hidden = [(k, HIDDEN if SECRET_PARAMETER.search(k) else v) for k, v in pairs]
        if hidden != pairs:
            query = urlencode(hidden, safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def shown_value(value: object, dumped: object) -> object:
    """The JSON value of a setting as ``show`` prints it: secrets redacted."""
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(dumped, str):
        return hide_url_secrets(dumped)
    return dumped


def _dumped(data: Any, key: Key) -> object:
    for part in key:
        data = data[part]
    return data


def _env_names(environ: Mapping[str, str]) -> dict[str, str]:
    """Upper-cased name -> name of the ``GATEWAY_*`` variables (they are matched regardless of
    case, as pydantic-settings matches them)."""
    return {name.upper(): name for name in environ if name.upper().startswith(ENV_PREFIX)}


def _from_env(key: Key, names: Mapping[str, str]) -> str | None:
    """The variable that sets ``key``: its own, or its section's as a whole (JSON)."""
    for depth in range(len(key), 0, -1):
        name = ENV_PREFIX + ENV_NESTING.join(key[:depth]).upper()
        if name in names:
            return names[name]
    return None


def _in_file(key: Key, data: Mapping[str, Any]) -> bool:
    node: Any = data
    for part in key:
        if not isinstance(node, Mapping):
            return True  # a table set as a whole (an inline table, a dict-valued key)
        if part not in node:
            return False
        node = node[part]
    return True


def resolve(
    settings: GatewaySettings, *, file: Path | None, environ: Mapping[str, str]
) -> list[dict[str, object]]:
    """Each setting's key, shown value and source (``default``, ``file PATH`` or
    ``environment NAME``), in the models' order."""
    data: Mapping[str, Any] = {}
    if file is not None:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    names = _env_names(environ)
    dumped = settings.model_dump(mode="json")
    rows: list[dict[str, object]] = []
    for key, value in leaves(settings):
        variable = _from_env(key, names)
        if variable is not None:
            source = f"environment {variable}"
        elif file is not None and _in_file(key, data):
            source = f"file {file}"
        else:
            source = "default"
        rows.append(
            {
                "key": ".".join(key),
                "value": shown_value(value, _dumped(dumped, key)),
                "source": source,
            }
        )
    return rows


def _show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    file = config_file(args)
    rows = resolve(settings, file=file, environ=os.environ)
    if args.json:
        document = {"file": None if file is None else str(file), "settings": rows}
        print(json.dumps(document, indent=2))
        return 0
    print(f"# settings file: {file if file is not None else '(none; defaults and environment)'}")
    texts = [(str(r["key"]), json.dumps(r["value"]), str(r["source"])) for r in rows]
    width = max(len(k) + len(v) for k, v, _ in texts) + 3
    for key, value, source in texts:
        print(f"{f'{key} = {value}':<{width}}  # {source}")
    return 0


# -- check --------------------------------------------------------------------------------------


class _FileOnly(GatewaySettings):
    """The settings of a file alone: the environment is not read (``config check``)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def _dotted(text: str) -> Key:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def line_of(text: str, key: Key) -> int | None:
    """The line (from 1) where ``key`` is set or its table opens; ``None`` when it cannot be
    told (a key inside an inline table or an array). Best effort: for messages only."""
    table: Key = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header:
            table = _dotted(header.group(1))
            if table == key:
                return number
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment and (*table, *_dotted(assignment.group(1))) == key:
            return number
    return None


def check(path: Path) -> list[str]:
    """The problems of the settings file at ``path``, one line each; empty when it is valid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [f"{path}: no such file"]
    except UnicodeDecodeError as exc:
        return [f"{path}: not UTF-8 (byte {exc.start})"]
    except OSError as exc:
        return [f"{path}: cannot read: {exc.strerror or exc}"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"{path}: not valid TOML: {exc}"]
    try:
        _FileOnly(**data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = tuple(str(part) for part in error["loc"])
            number = line_of(text, key)
            where = f"{path}:{number}" if number is not None else str(path)
            problems.append(f"{where}: {'.'.join(key) or '<root>'}: {error['msg']}")
        return problems
    return []


def _check(args: argparse.Namespace) -> int:
    problems = check(args.file)
    if problems:
        raise CommandError("\n".join(problems))
    print(f"{args.file}: ok")
    return 0


def register(sub: Any) -> None:
    """Add ``config show`` and ``config check`` to the ``gateway`` parser."""
    parser = sub.add_parser("config", help="show the settings in force, or check a settings file")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser(
        "show",
        help="every setting with its value and source (default, file, environment); "
        "secrets redacted",
    )
    show.add_argument("--json", action="store_true", help="one JSON document")
    show.set_defaults(handler=_show)
    checker = verbs.add_parser(
        "check",
        help="validate a settings file on its own (not the environment); exit 2 naming the "
        "line or the key",
    )
    checker.add_argument("file", type=Path, metavar="FILE", help="the TOML settings file")
    checker.set_defaults(handler=_check)
