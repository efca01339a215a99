"""The FTP channel's one translation table: gateway code -> FTP reply code.

Every refusal the folder service answers is a :class:`Rejection`; FTP sends it as the reply code
below with the gateway code at the start of the text (``553 108: sender number 006401 is not
yours``), so a sender reads the same code as over SFTP and in the negative ACRF. The classes
(RFC 959 §4.2, RFC 3659):

- ``553`` a refused file name: the name grammar (1xx-3xx), a return name (925);
- ``552`` size or quota (184, 920);
- ``550`` a path outside the six folders or not a file name (922, as issue 11 asks: "550 for
  permission or a path outside the folders"), not permitted, exists, no such file, and the
  set-level refusals a transfer never produces (923, 924, 927, 9xx signature codes, 930);
- ``451`` a local failure: the gateway is stopping (926), a destination or internal error (940,
  999, "999: internal error, ticket T": the log holds T's traceback);
- ``452`` the gateway is short of space (929: "insufficient storage space in system", RFC 959
  §4.2; not the sender's doing, the same file is sent again later);
- ``421`` too many sessions (921): the reply that closes the control connection.

A test checks that every :class:`~gateway.core.codes.Code` is in :data:`REPLIES`.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from gateway.core.codes import SIGNATURE_CODES, Code, Rejection, internal_error
from gateway.ops.faults import log_fault

_GROUPS: dict[int, tuple[Code, ...]] = {
    553: (
        Code.GO_NAME_INVALID,
        Code.SENDER_NOT_OWNER,
        Code.DATE_NOT_NUMERIC,
        Code.DATE_INVALID,
        Code.DATE_IN_FUTURE,
        Code.SEQUENCE_LENGTH,
        Code.PARTS_COUNT_NOT_NUMERIC,
        Code.PARTS_COUNT_ZERO,
        Code.PARTS_COUNT_TOO_HIGH,
        Code.ENVIRONMENT_INVALID,
        Code.R_FILE_OUTSIDE_IN,
        Code.T_FILE_OUTSIDE_INTEST,
        Code.FI_FS_COUNT_MISMATCH,
        Code.SIGNATURE_NOT_ALLOWED,
        Code.FI_FS_NUMBER_MISMATCH,
        Code.FI_NUMBERING_WRONG,
        Code.FS_NUMBERING_WRONG,
        Code.DATE_TOO_OLD,
        Code.SEQUENCE_ZERO,
        Code.PART_NUMBER_INVALID,
        Code.NAME_PREFIX_INVALID,
        Code.FI_NAME_INVALID,
        Code.FS_NAME_INVALID,
        Code.ALREADY_SENT,
        Code.APPLICATION_NOT_ALLOWED,
        Code.S_FILE_OUTSIDE_INTEST_S,
        Code.SEQUENCE_CHARACTERS,
        Code.RETURN_NAME_INVALID,
    ),
    552: (Code.FILE_TOO_LARGE, Code.QUOTA_EXCEEDED),
    550: (
        Code.SIGNATURE_INVALID,
        Code.GO_NOT_RECEIVED,
        Code.NO_DATA,
        Code.XML_NOT_WELL_FORMED,
        Code.XML_ENCODING,
        Code.XML_ROOT_ELEMENT,
        Code.XML_NAMESPACE,
        Code.XML_SCHEMA,
        Code.NO_DECLARATION_FILE,
        Code.CERTIFICATE_NOT_REGISTERED,
        *SIGNATURE_CODES,
        Code.PATH_REFUSED,
        Code.OPERATION_NOT_PERMITTED,
        Code.FILE_EXISTS,
        Code.NO_SUCH_FILE,
        Code.IDEMPOTENCY_KEY_REUSED,  # the web service's notifications only; here for totality
        Code.SET_CANCELLED,
    ),
    451: (Code.GATEWAY_STOPPING, Code.DESTINATION_UNAVAILABLE, Code.INTERNAL_ERROR),
    452: (Code.SHORT_OF_SPACE,),
    421: (Code.TOO_MANY_SESSIONS,),
}

REPLIES: dict[Code, int] = {code: reply for reply, codes in _GROUPS.items() for code in codes}
"""Gateway code -> FTP reply code (every code, exactly once)."""

MAX_TEXT = 400


def clean_text(text: str) -> str:
    """``text`` made safe for one reply line: controls and format characters (CR, LF, NUL, bidi
    overrides) become ``?``, so a name echoed in a reason cannot forge a reply or a log line."""
    if text.isascii() and text.isprintable():  # the common case, one C pass: nothing to clean
        cleaned = text
    else:
        cleaned = "".join(
            "?" if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in text
        )
    return cleaned if len(cleaned) <= MAX_TEXT else cleaned[: MAX_TEXT - 3] + "..."


def refusal(rejection: Rejection) -> tuple[str, str]:
    """The FTP reply ``(code, text)`` of ``rejection``; the text starts with the gateway code."""
    return str(REPLIES[rejection.code]), clean_text(str(rejection))


def fault(log: Any, event: str, **context: Any) -> tuple[str, str]:
    """The reply to the exception being handled: ``451 999: internal error, ticket T``, with T
    logged once beside the traceback (SECURITY.md 22: never the exception's text)."""
    return refusal(internal_error(log_fault(log, event, **context)))
