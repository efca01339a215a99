"""The catalogue of result codes: one table, one place, never renamed.

A code is API. Senders read it in ACRF files (``ACRF-<code>``) and in the reply text of a refused
upload (``108: sender number 006401 is not yours``); operators grep it in logs. The 1xx-5xx codes
are the transfer point's own (domain/batch-channel.md §2.2); the 9xx codes are the gateway's finer
causes, each one documented here and printed by ``gateway codes``.

Rules:
- A code's number and short name never change once released; a new cause gets a new number.
- Every refusal in the product is a :class:`Rejection` carrying one of these codes.
- ``check`` names the rule (module and function) that produces the code, so that a reader of an
  ACRF can find the code path in one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Code(IntEnum):
    """Every result code the gateway can produce."""

    GO_NAME_INVALID = 107
    SENDER_NOT_OWNER = 108
    DATE_NOT_NUMERIC = 109
    DATE_INVALID = 110
    DATE_IN_FUTURE = 111
    SEQUENCE_LENGTH = 112
    PARTS_COUNT_NOT_NUMERIC = 114
    PARTS_COUNT_ZERO = 115
    PARTS_COUNT_TOO_HIGH = 116
    ENVIRONMENT_INVALID = 117
    R_FILE_OUTSIDE_IN = 118
    T_FILE_OUTSIDE_INTEST = 119
    FI_FS_COUNT_MISMATCH = 120
    SIGNATURE_NOT_ALLOWED = 121
    FI_FS_NUMBER_MISMATCH = 122
    FI_NUMBERING_WRONG = 123
    FS_NUMBERING_WRONG = 124
    SIGNATURE_INVALID = 125
    DATE_TOO_OLD = 126
    SEQUENCE_ZERO = 127
    PART_NUMBER_INVALID = 128
    NAME_PREFIX_INVALID = 129
    GO_NOT_RECEIVED = 130
    FI_NAME_INVALID = 131
    FS_NAME_INVALID = 132
    ALREADY_SENT = 133
    NO_DATA = 134
    XML_NOT_WELL_FORMED = 135
    XML_ENCODING = 136
    XML_ROOT_ELEMENT = 137
    XML_NAMESPACE = 138
    XML_SCHEMA = 139
    NO_DECLARATION_FILE = 142
    CERTIFICATE_NOT_REGISTERED = 153
    APPLICATION_NOT_ALLOWED = 154
    FILE_TOO_LARGE = 184
    S_FILE_OUTSIDE_INTEST_S = 257
    SEQUENCE_CHARACTERS = 367

    # The gateway's own finer causes (9xx).
    SIGNATURE_UNDECODABLE = 901
    CERTIFICATE_EXPIRED = 902
    CERTIFICATE_NOT_YET_VALID = 903
    CERTIFICATE_REVOKED = 904
    CERTIFICATE_UNTRUSTED = 905
    DIGEST_WEAK = 906
    KEY_WEAK = 907
    SIGNATURE_NOT_DETACHED = 908
    SIGNER_COUNT = 909
    ALGORITHM_UNSUPPORTED = 910
    CONTENT_TYPE_WRONG = 911
    SIGNATURE_MISSING = 912
    REVOCATION_UNKNOWN = 913
    QUOTA_EXCEEDED = 920
    TOO_MANY_SESSIONS = 921
    PATH_REFUSED = 922
    OPERATION_NOT_PERMITTED = 923
    FILE_EXISTS = 924
    RETURN_NAME_INVALID = 925
    GATEWAY_STOPPING = 926
    NO_SUCH_FILE = 927
    IDEMPOTENCY_KEY_REUSED = 928
    SHORT_OF_SPACE = 929
    SET_CANCELLED = 930
    DESTINATION_UNAVAILABLE = 940
    INTERNAL_ERROR = 999


SIGNATURE_CODES: tuple[Code, ...] = tuple(code for code in Code if 900 < code < 920)
"""The gateway's finer signature and certificate codes (901-913), which only a set's check
produces: every channel's reply table places them together."""


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What a code means: its short name, the message a sender reads, and the check behind it."""

    code: Code
    name: str
    message: str
    check: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """An expected refusal: a code plus a one-line reason specific to this case.

    ``reason`` is written for the sender (it goes into ACRF descriptions and protocol replies), so
    it names the offending value and, where useful, what to do instead. It never holds a secret.
    """

    code: Code
    reason: str

    def __str__(self) -> str:
        return f"{int(self.code)}: {self.reason}"

    @property
    def acrf_error_id(self) -> str:
        """The ``ErrorID`` written in a negative ACRF."""
        return f"ACRF-{int(self.code)}"


def _info(code: Code, message: str, check: str) -> tuple[Code, CodeInfo]:
    return code, CodeInfo(code=code, name=code.name.lower(), message=message, check=check)


CATALOGUE: dict[Code, CodeInfo] = dict(
    [
        _info(Code.GO_NAME_INVALID, "GO or TD file name structure incorrect", "core.names"),
        _info(
            Code.SENDER_NOT_OWNER,
            "sender number in the name is not the sender that owns this folder",
            "core.names / spool.folders",
        ),
        _info(Code.DATE_NOT_NUMERIC, "creation date is not 8 digits", "core.names"),
        _info(Code.DATE_INVALID, "creation date is not a valid calendar date", "core.names"),
        _info(Code.DATE_IN_FUTURE, "creation date is in the future", "core.names"),
        _info(Code.SEQUENCE_LENGTH, "sequence number must be 5 characters", "core.names"),
        _info(Code.PARTS_COUNT_NOT_NUMERIC, "number of parts is not numeric", "core.names"),
        _info(Code.PARTS_COUNT_ZERO, "number of parts is zero", "core.names"),
        _info(Code.PARTS_COUNT_TOO_HIGH, "number of parts above the maximum", "core.names"),
        _info(Code.ENVIRONMENT_INVALID, "environment must be R, T or S", "core.names"),
        _info(Code.R_FILE_OUTSIDE_IN, "a production (R) file must be put in IN", "core.names"),
        _info(Code.T_FILE_OUTSIDE_INTEST, "a test (T) file must be put in INTEST", "core.names"),
        _info(
            Code.FI_FS_COUNT_MISMATCH,
            "number of FS files does not match the number of FI files",
            "core.sets",
        ),
        _info(
            Code.SIGNATURE_NOT_ALLOWED,
            "no signature file may be sent in this environment (S)",
            "core.sets",
        ),
        _info(
            Code.FI_FS_NUMBER_MISMATCH,
            "FI and FS part numbers do not correspond",
            "core.sets",
        ),
        _info(Code.FI_NUMBERING_WRONG, "FI part numbering is wrong", "core.sets"),
        _info(Code.FS_NUMBERING_WRONG, "FS part numbering is wrong", "core.sets"),
        _info(Code.SIGNATURE_INVALID, "signature does not match the file", "core.signature"),
        _info(Code.DATE_TOO_OLD, "creation date is older than the allowed age", "core.names"),
        _info(Code.SEQUENCE_ZERO, "sequence number 00000 is not allowed", "core.names"),
        _info(Code.PART_NUMBER_INVALID, "part number is invalid or above the count", "core.names"),
        _info(Code.NAME_PREFIX_INVALID, "file kind prefix is not FI, FS, GO or TD", "core.names"),
        _info(Code.GO_NOT_RECEIVED, "no GO file received for the set in time", "core.sets"),
        _info(Code.FI_NAME_INVALID, "FI file name structure incorrect", "core.names"),
        _info(Code.FS_NAME_INVALID, "FS file name structure incorrect", "core.names"),
        _info(Code.ALREADY_SENT, "a set with this name was already sent", "pipeline.duplicates"),
        _info(Code.NO_DATA, "the declaration file is empty", "core.sets"),
        _info(
            Code.XML_NOT_WELL_FORMED,
            "the declaration is not well-formed XML (or holds a DTD, which is refused)",
            "core.declaration",
        ),
        _info(
            Code.XML_ENCODING,
            "the declaration is not in UTF-8 or the encoding its XML declaration names",
            "core.declaration",
        ),
        _info(
            Code.XML_ROOT_ELEMENT,
            "the declaration's root element is not the one this online service expects",
            "core.declaration",
        ),
        _info(
            Code.XML_NAMESPACE,
            "the declaration's namespace is not the one this online service expects",
            "core.declaration",
        ),
        _info(
            Code.XML_SCHEMA,
            "the declaration does not conform to the online service's XML schema",
            "core.declaration",
        ),
        _info(Code.NO_DECLARATION_FILE, "the set holds no declaration (FI) file", "core.sets"),
        _info(
            Code.CERTIFICATE_NOT_REGISTERED,
            "the signing certificate is not registered for this sender",
            "core.signature",
        ),
        _info(
            Code.APPLICATION_NOT_ALLOWED,
            "the sender is not subscribed to this online service",
            "core.folders",
        ),
        _info(Code.FILE_TOO_LARGE, "file size exceeds the limit", "spool.limits"),
        _info(
            Code.S_FILE_OUTSIDE_INTEST_S,
            "a simulation (S) file must be put in INTEST-S",
            "core.names",
        ),
        _info(
            Code.SEQUENCE_CHARACTERS,
            "sequence number may hold only 0-9 and A-Z",
            "core.names",
        ),
        _info(
            Code.SIGNATURE_UNDECODABLE,
            "signature file is not base64 of a DER CMS SignedData",
            "core.signature",
        ),
        _info(Code.CERTIFICATE_EXPIRED, "signing certificate has expired", "core.signature"),
        _info(
            Code.CERTIFICATE_NOT_YET_VALID,
            "signing certificate is not yet valid",
            "core.signature",
        ),
        _info(Code.CERTIFICATE_REVOKED, "signing certificate is revoked", "core.signature"),
        _info(
            Code.CERTIFICATE_UNTRUSTED,
            "signing certificate does not chain to a trusted CA",
            "core.signature",
        ),
        _info(
            Code.DIGEST_WEAK,
            "digest algorithm refused (MD5 never; SHA-1 only where configured)",
            "core.signature",
        ),
        _info(Code.KEY_WEAK, "signing key too weak (RSA below 2048 bits)", "core.signature"),
        _info(
            Code.SIGNATURE_NOT_DETACHED,
            "signature must be detached; this SignedData embeds content",
            "core.signature",
        ),
        _info(Code.SIGNER_COUNT, "signature must have exactly one signer", "core.signature"),
        _info(
            Code.ALGORITHM_UNSUPPORTED,
            "signature or key algorithm not supported",
            "core.signature",
        ),
        _info(
            Code.CONTENT_TYPE_WRONG,
            "signed content type must be id-data",
            "core.signature",
        ),
        _info(Code.SIGNATURE_MISSING, "the FS file for this FI is missing", "core.sets"),
        _info(
            Code.REVOCATION_UNKNOWN,
            "revocation status cannot be determined (CRL missing or expired)",
            "core.signature",
        ),
        _info(Code.QUOTA_EXCEEDED, "sender's pending-bytes quota exceeded", "spool.limits"),
        _info(
            Code.TOO_MANY_SESSIONS,
            "too many concurrent sessions for this sender",
            "channels.limits",
        ),
        _info(
            Code.PATH_REFUSED,
            "path refused: only IN*, OUT* and valid file names exist",
            "core.folders",
        ),
        _info(
            Code.OPERATION_NOT_PERMITTED,
            "operation not permitted in this folder",
            "core.folders",
        ),
        _info(Code.FILE_EXISTS, "a file with this name is already there", "core.folders"),
        _info(
            Code.RETURN_NAME_INVALID,
            "return file name (FO, FS, GO, CO) structure incorrect",
            "core.names",
        ),
        _info(
            Code.GATEWAY_STOPPING,
            "the gateway is stopping; connect again in a minute (nothing was written)",
            "spool.folders",
        ),
        _info(
            Code.NO_SUCH_FILE,
            "no such file in this folder (or it is not yours)",
            "spool.folders",
        ),
        _info(
            Code.IDEMPOTENCY_KEY_REUSED,
            "this idempotency key was used for a different notification",
            "pipeline.publish",
        ),
        _info(
            Code.SHORT_OF_SPACE,
            "the gateway is short of space; send the file again later (nothing was written)",
            "spool.space",
        ),
        _info(Code.SET_CANCELLED, "set cancelled by a TD file", "core.sets"),
        _info(
            Code.DESTINATION_UNAVAILABLE,
            "the online service did not accept the set before the deadline",
            "pipeline.routing",
        ),
        _info(Code.INTERNAL_ERROR, "internal error; the set was not processed", "pipeline"),
    ]
)


def info(code: Code) -> CodeInfo:
    """Return the catalogue entry of ``code``."""
    return CATALOGUE[code]


LOCAL_CODES: frozenset[Code] = frozenset(
    {Code.GATEWAY_STOPPING, Code.SHORT_OF_SPACE, Code.INTERNAL_ERROR}
)
"""Refusals that are the gateway's own condition, not the sender's doing: answered with their
code, never recorded for a negative ACRF (the sender sends the same file again later)."""

INTERNAL_ERROR_PREFIX = "internal error, ticket "


def internal_error(ticket: str) -> Rejection:
    """The answer to a fault: 999 and the ticket under which the log holds its traceback. No
    exception text ever goes into it (SECURITY.md 22)."""
    return Rejection(code=Code.INTERNAL_ERROR, reason=INTERNAL_ERROR_PREFIX + ticket)


def reject(code: Code, reason: str | None = None) -> Rejection:
    """Build a :class:`Rejection`; without a specific reason the catalogue message is used."""
    return Rejection(code=code, reason=reason if reason is not None else CATALOGUE[code].message)
