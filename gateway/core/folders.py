"""The folder vocabulary of every channel: the six folders, the one folder <-> environment map,
path canonicalisation and per-folder permissions.

Pure: strings and values in, values out; no files, no clock. The spool's folder service
(``gateway.spool.folders``), which SFTP, FTP and HTTPS all call, applies :func:`canonicalise`
and :func:`permit`, so a path or permission rule is decided once for every protocol
(SECURITY.md 4, 5) and checked on the canonical path only. The spool, the pipeline and the
channels take :class:`Folder` and the environment map from here, never from a copy.

The root holds exactly ``IN INTEST INTEST-S OUT OUTTEST OUTTEST-S`` (DESIGN.md, "The protocol a
sender sees"); a file lives directly in one of them, so a canonical path is the root, a folder,
or a folder plus one name. Rules, each refusal a :class:`Rejection` with code 922:

- the raw path must be valid UTF-8 (strict: overlong forms and surrogates are refused), in NFC;
- no NUL, C0/C1 control, DEL, or Unicode format character (bidi overrides, zero-width);
- no backslash and none of ``: * ? " < > | %`` (Windows separators, devices, encoded tricks);
- no ``..`` component, no empty component (``//``); ``.`` means "this folder";
- folder names match exactly (``in`` is not ``IN``);
- a file name is at most 255 UTF-8 bytes, does not start or end with a space or a dot, and is not
  a Windows device name (``CON``, ``NUL.txt``, ``COM1``...).

Permissions (:func:`permit`, code 923): ``IN*`` files may be created, listed, stat'ed and
removed; ``OUT*`` files may be listed, read and removed; the root and folders may only be listed.
Nothing may be made a directory, a link, or have its attributes changed; a rename is allowed only
from a client temporary name (``NAME.filepart``, ``NAME.part``, ``NAME.tmp``) to ``NAME`` in the
same ``IN*`` folder (:func:`check_rename`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum

from gateway.core.codes import Code, Rejection, reject
from gateway.core.types import Environment

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096

TEMP_SUFFIXES: tuple[str, ...] = (".filepart", ".part", ".tmp")

_FORBIDDEN_CHARS = frozenset('\\:*?"<>|%')
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"COM{i}" for i in range(10)]
    + [f"LPT{i}" for i in range(10)]
)


class Folder(Enum):
    """The six folders of the virtual root."""

    IN = "IN"
    INTEST = "INTEST"
    INTEST_S = "INTEST-S"
    OUT = "OUT"
    OUTTEST = "OUTTEST"
    OUTTEST_S = "OUTTEST-S"

    @property
    def inbound(self) -> bool:
        """True for the upload folders (``IN*``)."""
        return _FOLDERS[self][1]

    @property
    def environment(self) -> Environment:
        """The environment of the files this folder holds: ``R``, ``T`` or ``S``."""
        return _FOLDERS[self][0]

    @property
    def answers(self) -> Folder:
        """The OUT folder that answers an IN folder (and an OUT folder itself)."""
        return Folder.outbound(self.environment)

    @classmethod
    def parse(cls, text: str) -> Folder | None:
        """The folder named exactly ``text``, or None."""
        try:
            return cls(text)
        except ValueError:
            return None

    @classmethod
    def inbound_for(cls, environment: Environment) -> Folder:
        """The upload folder of ``environment`` (``T`` -> ``INTEST``)."""
        return _BY_ENVIRONMENT[(environment, True)]

    @classmethod
    def outbound(cls, environment: Environment) -> Folder:
        """The return folder of ``environment`` (``T`` -> ``OUTTEST``)."""
        return _BY_ENVIRONMENT[(environment, False)]


# The one folder <-> environment map (domain/batch-channel.md §2.1): (environment, inbound).
_FOLDERS: dict[Folder, tuple[Environment, bool]] = {
    Folder.IN: (Environment.R, True),
    Folder.INTEST: (Environment.T, True),
    Folder.INTEST_S: (Environment.S, True),
    Folder.OUT: (Environment.R, False),
    Folder.OUTTEST: (Environment.T, False),
    Folder.OUTTEST_S: (Environment.S, False),
}
_BY_ENVIRONMENT = {value: folder for folder, value in _FOLDERS.items()}


def out_folder_for(environment: str | None) -> Folder:
    """The OUT folder of an environment letter; ``OUT`` when it is missing or unknown."""
    try:
        return Folder.outbound(Environment(environment)) if environment else Folder.OUT
    except ValueError:
        return Folder.OUT


ROOT_FOLDERS: tuple[Folder, ...] = tuple(Folder)


@dataclass(frozen=True, slots=True)
class VPath:
    """A canonical virtual path: the root (no folder), a folder, or a file in a folder."""

    folder: Folder | None = None
    name: str | None = None

    @property
    def is_root(self) -> bool:
        """True for ``/``."""
        return self.folder is None

    @property
    def is_folder(self) -> bool:
        """True for ``/IN`` and its siblings."""
        return self.folder is not None and self.name is None

    @property
    def is_file(self) -> bool:
        """True for ``/FOLDER/NAME``."""
        return self.name is not None

    def __str__(self) -> str:
        if self.folder is None:
            return "/"
        if self.name is None:
            return f"/{self.folder.value}"
        return f"/{self.folder.value}/{self.name}"


ROOT = VPath()


class Operation(Enum):
    """What a client asks to do with a path."""

    LIST = "list"
    STAT = "stat"
    READ = "read"
    CREATE = "create"
    REMOVE = "remove"
    RENAME = "rename"
    MKDIR = "mkdir"
    RMDIR = "rmdir"
    LINK = "link"
    SETSTAT = "setstat"


def _refuse(reason: str) -> Rejection:
    return reject(Code.PATH_REFUSED, reason)


def _show(text: str) -> str:
    """A form of peer text safe to put in a reason: ASCII-escaped and bounded (SECURITY.md 5)."""
    shown = ascii(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def decode_path(raw: bytes) -> str | Rejection:
    """Decode a path received as bytes: strict UTF-8 only (no overlong forms, no surrogates)."""
    if len(raw) > MAX_PATH_BYTES:
        return _refuse("path too long")
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return _refuse("path is not valid UTF-8")


def _check_characters(path: str) -> Rejection | None:
    if path.isascii() and path.isprintable() and _FORBIDDEN_CHARS.isdisjoint(path):
        # The common case, checked in C: printable ASCII has no control, format, surrogate,
        # private or unassigned character and is its own NFC form.
        return None
    for char in path:
        if char in _FORBIDDEN_CHARS:
            return _refuse(f"character {char!r} is not allowed in a path")
        category = unicodedata.category(char)
        if category in {"Cc", "Cf", "Cs", "Co", "Cn"}:
            return _refuse(f"control or format character U+{ord(char):04X} is not allowed")
    if unicodedata.normalize("NFC", path) != path:
        return _refuse("path is not in Unicode normal form C")
    return None


def check_name(name: str) -> Rejection | None:
    """Check one file name component (already free of separators); None when acceptable."""
    if not name:
        return _refuse("empty file name")
    problem = _check_characters(name)
    if problem is not None:
        return problem
    if "/" in name:
        return _refuse("a file name cannot hold '/'")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return _refuse(f"file name longer than {MAX_NAME_BYTES} bytes")
    if name in {".", ".."}:
        return _refuse(f"{name!r} is not a file name")
    if name[0] in " ." or name[-1] in " .":
        return _refuse(f"file name {_show(name)} starts or ends with a dot or a space")
    if name.split(".", 1)[0].upper() in _WINDOWS_DEVICES:
        return _refuse(f"file name {_show(name)} is a reserved device name")
    return None


def canonicalise(path: str | bytes) -> VPath | Rejection:
    """Turn a client path (absolute or relative to the root) into a :class:`VPath`, or refuse it.

    A single trailing ``/`` after a folder is tolerated (``ls IN/``); ``.`` components are
    dropped; everything listed in the module docstring is refused with code 922.
    """
    if isinstance(path, bytes):
        decoded = decode_path(path)
        if isinstance(decoded, Rejection):
            return decoded
        path = decoded
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        return _refuse("path too long")
    problem = _check_characters(path)
    if problem is not None:
        return problem
    body = path[1:] if path.startswith("/") else path
    if body.endswith("/"):
        body = body[:-1]
    if body in {"", "."}:
        return ROOT
    parts: list[str] = []
    for part in body.split("/"):
        if part == "":
            return _refuse("empty path component ('//')")
        if part == "..":
            return _refuse("'..' is not allowed in a path")
        if part == ".":
            continue
        parts.append(part)
    if not parts:
        return ROOT
    folder = Folder.parse(parts[0])
    if folder is None:
        return _refuse(f"no such folder {_show(parts[0])}; the root holds only IN* and OUT*")
    if len(parts) == 1:
        return VPath(folder=folder)
    if len(parts) > 2:
        return _refuse("folders hold files only; there are no subfolders")
    name_problem = check_name(parts[1])
    if name_problem is not None:
        return name_problem
    return VPath(folder=folder, name=parts[1])


def split_temp_name(name: str) -> str | None:
    """The final name of a client temporary name (``X.filepart`` -> ``X``), else None."""
    for suffix in TEMP_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def final_name(name: str) -> str:
    """The name an upload counts under: the temporary suffix stripped, if any."""
    stripped = split_temp_name(name)
    return name if stripped is None else stripped


_FOLDER_OPS = frozenset({Operation.LIST, Operation.STAT})
_IN_FILE_OPS = frozenset({Operation.STAT, Operation.CREATE, Operation.REMOVE, Operation.RENAME})
_OUT_FILE_OPS = frozenset({Operation.STAT, Operation.READ, Operation.REMOVE})


def permit(operation: Operation, path: VPath) -> Rejection | None:
    """None when ``operation`` is allowed on ``path``; otherwise a 923 refusal naming both."""
    if path.is_root or path.is_folder:
        allowed = _FOLDER_OPS
    elif path.folder is not None and path.folder.inbound:
        allowed = _IN_FILE_OPS
    else:
        allowed = _OUT_FILE_OPS
    if operation in allowed:
        return None
    where = "the root" if path.is_root else f"{path.folder.value if path.folder else ''}"
    return reject(
        Code.OPERATION_NOT_PERMITTED,
        f"{operation.value} is not permitted in {where}",
    )


def check_rename(source: VPath, target: VPath) -> Rejection | None:
    """A rename is allowed only from ``NAME.<temp suffix>`` to ``NAME`` in one ``IN*`` folder."""
    for path in (source, target):
        problem = permit(Operation.RENAME, path)
        if problem is not None:
            return problem
    if source.folder is not target.folder:
        return reject(Code.OPERATION_NOT_PERMITTED, "a file cannot be moved to another folder")
    if source.name is None or split_temp_name(source.name) != target.name:
        return reject(
            Code.OPERATION_NOT_PERMITTED,
            "rename is allowed only from NAME.filepart, NAME.part or NAME.tmp to NAME",
        )
    return None
