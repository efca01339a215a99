"""Logging: one JSON line per event, scrubbed of control characters, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from gateway.ops.logging import REDACTED, configure_logging, scrub_text


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """JSON logging into a buffer; the stdlib and structlog state is restored afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_config = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(fmt="json", level="info", stream=buffer)
    try:
        yield buffer
    finally:
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Every line of the buffer, each parsed as one JSON object."""
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_event_line_has_timestamp_level_event_and_context(stream: io.StringIO) -> None:
    """A line carries an ISO UTC timestamp, the level, the event name and the bound context."""
    structlog.contextvars.bind_contextvars(session="s-1")
    structlog.get_logger("gateway.test").bind(peer="127.0.0.1").info("session.opened", port=8022)
    (line,) = lines(stream)
    assert line["event"] == "session.opened"
    assert line["level"] == "info"
    assert (line["session"], line["peer"], line["port"]) == ("s-1", "127.0.0.1", 8022)
    assert line["logger"] == "gateway.test"
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_forged_line_stays_one_line(stream: io.StringIO) -> None:
    """A value holding a newline and a fake JSON event yields exactly one JSON line."""
    forged = 'alice\n{"event":"forged"}'
    structlog.get_logger().warning("auth.failed", username=forged)
    raw = stream.getvalue()
    assert raw.count("\n") == 1
    (line,) = lines(stream)
    assert line["event"] == "auth.failed"
    assert line["username"] == 'alice\\n{"event":"forged"}'


def test_control_and_bidi_characters_are_escaped(stream: io.StringIO) -> None:
    """CR, NUL, other C0, DEL and bidi overrides become visible escapes, keys and nested too."""
    log = structlog.get_logger()
    log.info("upload.refused", name="a\r\x00b\x1b\u202egpj.exe", extra={"k\n": ["x\ty\x7f"]})
    (line,) = lines(stream)
    assert line["name"] == "a\\r\\x00b\\x1b\\u202egpj.exe"
    assert line["extra"] == {"k\\n": ["x\\ty\\x7f"]}


def test_event_name_itself_is_scrubbed(stream: io.StringIO) -> None:
    """Even the event string cannot carry a line break."""
    structlog.get_logger().info("set.accepted\nfake")
    (line,) = lines(stream)
    assert line["event"] == "set.accepted\\nfake"


def test_secret_keys_are_redacted(stream: io.StringIO) -> None:
    """Keys named like secrets are replaced by [redacted], at any depth."""
    structlog.get_logger().info(
        "notify.configured",
        password="hunter2",
        smtp_password="x",
        api_token="t",
        client_secret="s",
        private_key="k",
        nested={"Authorization": "Bearer abc", "user": "bob"},
        user="bob",
    )
    (line,) = lines(stream)
    for key in ("password", "smtp_password", "api_token", "client_secret", "private_key"):
        assert line[key] == REDACTED
    assert line["nested"] == {"Authorization": REDACTED, "user": "bob"}
    assert line["user"] == "bob"
    assert "hunter2" not in stream.getvalue()


def test_keys_seen_before_get_the_same_treatment(stream: io.StringIO) -> None:
    """Each key is looked at once and remembered: a secret stays redacted in every later event,
    a plain key's values are still escaped, and a secret key that needs escaping is redacted."""
    log = structlog.get_logger()
    for value in ("first", "second\nline"):
        log.info("probe.sent", db_password=value, note=value, **{"smtp_password\x00": value})
    first, second = lines(stream)
    for line in (first, second):
        assert line["db_password"] == REDACTED
        assert line["smtp_password\\x00"] == REDACTED
    assert first["note"] == "first"
    assert second["note"] == "second\\nline"


def test_stdlib_records_go_through_the_same_rules(stream: io.StringIO) -> None:
    """A library's stdlib log record becomes one scrubbed JSON line too."""
    logging.getLogger("asyncssh").warning("Auth for user %s failed", "eve\nFAKE LINE")
    (line,) = lines(stream)
    assert line["event"] == "Auth for user eve\\nFAKE LINE failed"
    assert line["logger"] == "asyncssh"
    assert line["level"] == "warning"


def test_traceback_is_one_line(stream: io.StringIO) -> None:
    """An exception's traceback is rendered into the same single line."""
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        structlog.get_logger().exception("session.crashed")
    (line,) = lines(stream)
    assert "ValueError: bad\\nvalue" in line["exception"]


@pytest.mark.parametrize("library", ["aioftp", "asyncssh", "alembic", "aiosqlite", "sqlalchemy"])
def test_libraries_narration_stays_out_at_info(stream: io.StringIO, library: str) -> None:
    """A library's per-connection sentences at INFO (aioftp's "new connection from ...") are not
    written at the info level: the gateway's own events (session.opened...) say it; its
    warnings are."""
    logger = logging.getLogger(library)
    logger.info("new connection from %s:%s", "127.0.0.1", 40000)
    logger.warning("something went wrong")
    assert [(line["logger"], line["event"]) for line in lines(stream)] == [
        (library, "something went wrong")
    ]


def test_level_filters(stream: io.StringIO) -> None:
    """Below the configured level nothing is written."""
    structlog.get_logger().debug("noise.made")
    logging.getLogger("sqlalchemy").debug("noise")
    assert stream.getvalue() == ""


def test_console_format_is_scrubbed_too() -> None:
    """The console renderer gets the same scrubbed, redacted values."""
    buffer = io.StringIO()
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved_config = structlog.get_config()
    try:
        configure_logging(fmt="console", level="debug", stream=buffer)
        structlog.get_logger().debug("auth.failed", user="x\ny", password="p4ss")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)
    text = buffer.getvalue()
    assert text.count("\n") == 1
    assert "x\\ny" in text
    assert "p4ss" not in text


def test_unknown_level_is_refused() -> None:
    """A level name that does not exist is a configuration error."""
    with pytest.raises(ValueError, match="loud"):
        configure_logging(fmt="json", level="loud", stream=io.StringIO())


def test_scrub_text_leaves_ordinary_text_alone() -> None:
    """Accented letters and typographic characters are not controls."""
    assert scrub_text("Sébastien – 006400 ✓") == "Sébastien – 006400 ✓"


@given(st.text())
def test_scrubbed_text_never_holds_an_unsafe_character(text: str) -> None:
    """Whatever the text (the fast path for safe ASCII included), the scrubbed form holds no
    control, bidi or separator character, and safe text comes back unchanged."""
    from gateway.ops.logging import _UNSAFE, scrub_text

    scrubbed = scrub_text(text)
    assert _UNSAFE.search(scrubbed) is None
    if _UNSAFE.search(text) is None:
        assert scrubbed == text


def test_events_and_library_records_from_many_threads_stay_whole_lines(
    stream: io.StringIO,
) -> None:
    """The gateway's events and libraries' records share one writer: written at once from
    several threads, every line is one whole JSON object and none is lost."""
    import threading

    def emit(n: int) -> None:
        log = structlog.get_logger("gateway.test").bind(thread=n)
        library = logging.getLogger("sqlalchemy.engine")
        for i in range(200):
            log.info("upload.stored", name=f"FI.{n}.{i}", payload="x" * 500)
            library.warning("pool %s record %s", n, i)

    threads = [threading.Thread(target=emit, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parsed = lines(stream)
    assert len(parsed) == 4 * 200 * 2
    events = [line for line in parsed if line["event"] == "upload.stored"]
    assert sorted((e["thread"], e["name"]) for e in events) == sorted(
        (n, f"FI.{n}.{i}") for n in range(4) for i in range(200)
    )
    assert {e["logger"] for e in events} == {"gateway.test"}
    assert sum(line["logger"] == "sqlalchemy.engine" for line in parsed) == 800
