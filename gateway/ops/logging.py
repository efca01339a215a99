"""Configure logging once: structlog events, one JSON object per line on stdout for the daemon.

Every line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``event`` (a ``noun.verb`` name),
``logger`` and the bound context (contextvars and ``bind()``). Records from libraries that use the
standard ``logging`` module (asyncssh, aioftp, SQLAlchemy…) go through the same processors, so
they are JSON lines too and are scrubbed the same way.

Two rules hold for every line, whoever logged it (SECURITY.md 5 and "no secrets in logs"):

- **No forged lines.** Every string, key or value, nested in dicts, lists and tuples included,
  has its C0 control characters (CR, LF, NUL…), DEL, C1 controls and Unicode bidi overrides and
  isolates replaced by a visible escape (``\\n``, ``\\x00``, ``\\u202e``). A peer-supplied
  username such as ``'x\\n{"event":"forged"}'`` therefore stays inside its own line. Tracebacks
  become one line with visible ``\\n`` escapes.
- **No secrets.** A key whose name looks like a secret (password, passwd, secret, token,
  private_key, api_key, authorization, credential) has its value replaced by ``"[redacted]"``, at
  any nesting depth. This is a safety net; the rule is still never to pass secrets to a log call.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "configure_logging", "redact_and_scrub", "scrub_text"]

REDACTED = "[redacted]"

_LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# C0 controls, DEL, C1 controls, bidi embeddings/overrides (U+202A..E), isolates (U+2066..9),
# the implicit marks (U+200E/F, U+061C) and the line/paragraph separators (U+2028/9), which some
# viewers treat as line breaks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_SECRET_KEY = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|private_?key|api_?key|authori[sz]ation|credential",
    re.IGNORECASE,
)

# Marks the handler this module installs, so a second configure_logging() replaces it only.
_HANDLER_NAME = "gateway.ops.logging"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def scrub_text(text: str) -> str:
    """``text`` with every control, bidi or line-separator character made a visible escape."""
    if text.isascii() and text.isprintable():
        return text  # the common case: nothing _UNSAFE can match (ASCII controls are unprintable)
    return _UNSAFE.sub(_escape, text)


# Values that hold no text and no container: passed through by both processors as they are.
_PLAIN = (int, float, bool, type(None))


def _scrub(value: object) -> object:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    if isinstance(value, bytes | bytearray):
        # Never let raw bytes reach a renderer that might decode them; show them escaped.
        return scrub_text(repr(bytes(value)))
    return value


@functools.lru_cache(maxsize=1024)
def _is_secret_name(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and _is_secret_name(key)


def _redact(value: object) -> object:
    if type(value) in _PLAIN or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret(k) else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


_PLAIN_KEYS: dict[str, bool] = {}
"""Keys seen that are printable ASCII (nothing to escape), each with whether it names a secret:
the same few dozen keys come in every event, so each is looked at once."""
_MAX_PLAIN_KEYS = 4096


def _plain_key(key: object) -> bool | None:
    """Whether ``key`` (a printable ASCII string) names a secret, remembered; None for a key
    that needs escaping or is not a string."""
    if type(key) is not str or not (key.isascii() and key.isprintable()):
        return None
    if len(_PLAIN_KEYS) >= _MAX_PLAIN_KEYS:
        _PLAIN_KEYS.clear()
    secret = _PLAIN_KEYS[key] = _is_secret_name(key)
    return secret


def redact_and_scrub(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: the value of every secret-looking key (any depth) becomes ``"[redacted]"``,
    then every key and string has its control and bidi characters escaped. One pass: this runs
    for every field of every event, so the common case (a known key, a plain or printable ASCII
    value) is a dict look-up and two type checks."""
    out: EventDict = {}
    for key, value in event_dict.items():
        secret = _PLAIN_KEYS.get(key) if type(key) is str else None
        if secret is None:
            secret = _plain_key(key)
            if secret is None:  # a key to escape (or not a string): the general path
                secret = _is_secret(key)
                key = str(_scrub(key))
        if secret:
            value = REDACTED
        else:
            kind = type(value)
            if kind is str:
                if not (value.isascii() and value.isprintable()):
                    value = scrub_text(value)
            elif kind not in _PLAIN:
                value = _scrub(_redact(value))
        out[key] = value
    return out


_CHATTY_LIBRARIES = ("aioftp", "asyncssh", "alembic", "aiosqlite", "sqlalchemy")

# The name on lines of a logger obtained without one (``structlog.get_logger()``).
_DEFAULT_NAME = "gateway"


class _LineWriter:
    """Writes whole lines to the stream: one write and one flush per line, under one lock shared
    by the gateway's events and the standard-library records, so lines never interleave."""

    __slots__ = ("_lock", "_stream")

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class _EventLogger:
    """The end of the gateway's own event chain: a name for the ``logger`` key and the writer.

    structlog hands it the rendered line through the method named after the level.
    """

    __slots__ = ("_writer", "name")

    def __init__(self, name: str, writer: _LineWriter) -> None:
        self.name = name
        self._writer = writer

    def msg(self, line: str) -> None:
        self._writer.write_line(line)

    debug = info = warning = warn = error = err = critical = fatal = exception = log = msg


class _EventLoggerFactory:
    """``structlog.get_logger(name)`` -> the one :class:`_EventLogger` of that name."""

    def __init__(self, writer: _LineWriter) -> None:
        self._writer = writer
        self._loggers: dict[str, _EventLogger] = {}

    def __call__(self, *args: object) -> _EventLogger:
        name = str(args[0]) if args else _DEFAULT_NAME
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers[name] = _EventLogger(name, self._writer)
        return logger


class _RecordHandler(logging.Handler):
    """Standard-library records (libraries), formatted by structlog's ProcessorFormatter."""

    def __init__(self, writer: _LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.write_line(self.format(record))
        except Exception:  # logging must never take the caller down (stdlib convention)
            self.handleError(record)


def _add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: the ``logger`` key, from the name the event's logger was obtained with."""
    event_dict["logger"] = getattr(logger, "name", _DEFAULT_NAME)
    return event_dict


def configure_logging(
    *,
    fmt: Literal["json", "console"],
    level: str,
    stream: TextIO | None = None,
) -> None:
    """Send structlog and standard-library logging to ``stream`` (default ``sys.stdout``).

    ``fmt="json"`` writes one JSON object per line (the daemon's format, for journald and log
    shippers); ``fmt="console"`` writes readable key=value lines for a developer's terminal. Both
    are scrubbed and redacted. Safe to call again (tests do): the previous handler is replaced.

    The gateway's own events take structlog's direct path (a level-filtering bound logger, the
    processors, one line written): about a third of the cost of a detour through the ``logging``
    module, for events written several times per upload. Library records keep the ``logging``
    path and meet the same scrubbing, redaction and renderer there.
    """
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(_LEVELS)}")
    writer = _LineWriter(sys.stdout if stream is None else stream)

    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:  # pragma: no cover - the Literal type guards callers; this guards settings typos
        raise ValueError(f"unknown log format {fmt!r}; expected json or console")
    # Rendering tracebacks to text comes before the rules, so they are scrubbed like the rest.
    rules: list[Processor] = [
        structlog.processors.format_exc_info,
        redact_and_scrub,
        renderer,
    ]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            stamp,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rules],
    )
    handler = _RecordHandler(writer)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Libraries narrate every connection and migration step at INFO; the gateway's own events
    # (session.opened, upload.stored…) say what an operator needs, so theirs start at WARNING
    # unless the operator asks for debug.
    for chatty in _CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(
            logging.DEBUG if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            stamp,
            structlog.processors.StackInfoRenderer(),
            *rules,
        ],
        logger_factory=_EventLoggerFactory(writer),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Not cached: configure_logging() may run again (tests, a reload) and must take effect.
        cache_logger_on_first_use=False,
    )
