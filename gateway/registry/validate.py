"""Pure checks on what a person or a peer types: KBO and national numbers, passwords, logins,
names, networks.

Each check returns the clean value or a :class:`Refusal` naming the rule that failed. Text that
reaches the database or a log is refused first if it holds control or bidi-override characters
(SECURITY.md 5), so a log line cannot be forged through a name or a login.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
import unicodedata

from gateway.registry.types import EnterpriseNumber, Refusal

PASSWORD_SPECIALS = ";:=?./+*$%><&@#'(!{})-"  # noqa: S105  (the policy's alphabet, not a secret)
PASSWORD_MIN_LENGTH = 10
PASSWORD_MIN_DIGITS_OR_SPECIALS = 2

LANGUAGES = frozenset({"nl", "fr", "de", "en"})

_LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_QUALITY_KIND = re.compile(r"[a-z][a-z0-9_]{1,39}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_PHONE = re.compile(r"\+?[0-9 ]{6,20}")
_NRN = re.compile(r"[0-9]{11}")
# A secondary network's name: a letter first and no ':' or '/', so it never reads as an address.
_NETWORK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


def has_forbidden_characters(text: str) -> bool:
    """True when ``text`` holds NUL, C0/C1 controls, or bidi/format characters."""
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in text)


def check_kbo(raw: str) -> EnterpriseNumber | Refusal:
    """A KBO/BCE number: 10 digits (dots and spaces allowed), last two = 97 - (first 8 mod 97)."""
    digits = raw.replace(".", "").replace(" ", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return Refusal("invalid", f"enterprise number {raw!r} is not 10 digits")
    if digits[0] not in "01":
        return Refusal("invalid", f"enterprise number {digits} must start with 0 or 1")
    if 97 - int(digits[:8]) % 97 != int(digits[8:]):
        return Refusal("invalid", f"enterprise number {digits} fails the mod-97 check digits")
    return EnterpriseNumber(digits)


def kbo_with_check_digits(first_eight: int) -> EnterpriseNumber:
    """Complete an 8-digit base into a valid KBO number (test data, provisioning scripts)."""
    return EnterpriseNumber(f"{first_eight:08d}{97 - first_eight % 97:02d}")


def check_nrn(raw: str) -> str | Refusal:
    """A Belgian national register number (rijksregisternummer): 11 ASCII digits, the last two
    ``97 - (first nine mod 97)``. For births from 2000 the check digits are computed with a
    ``2`` put before the first nine (``97 - (2 000 000 000 + first nine) mod 97``); the birth
    year is not in the number, so either form is accepted."""
    if not _NRN.fullmatch(raw):
        return Refusal("invalid", "national register number must be 11 digits")
    base, check = int(raw[:9]), int(raw[9:])
    if check not in (97 - base % 97, 97 - (2_000_000_000 + base) % 97):
        return Refusal("invalid", f"national register number {raw} fails the mod-97 check digits")
    return raw


def nrn_with_check_digits(first_nine: str, *, born_after_1999: bool = False) -> str:
    """Complete the first nine digits (``YYMMDDnnn``) into a valid national register number
    (test data, demo data)."""
    base = int(first_nine) + (2_000_000_000 if born_after_1999 else 0)
    return f"{first_nine}{97 - base % 97:02d}"


def check_password(password: str) -> str | Refusal:
    """The guide's policy: at least 10 characters, of which at least 2 digits or specials."""
    if has_forbidden_characters(password):
        return Refusal("password_policy", "password must not contain control characters")
    if len(password) < PASSWORD_MIN_LENGTH:
        return Refusal(
            "password_policy",
            f"password must be at least {PASSWORD_MIN_LENGTH} characters long",
        )
    count = sum(1 for ch in password if (ch.isascii() and ch.isdigit()) or ch in PASSWORD_SPECIALS)
    if count < PASSWORD_MIN_DIGITS_OR_SPECIALS:
        return Refusal(
            "password_policy",
            f"password must contain at least {PASSWORD_MIN_DIGITS_OR_SPECIALS} digits or special "
            f"characters from {PASSWORD_SPECIALS}",
        )
    return password


def generate_password() -> str:
    """A random 16-character temporary password that meets the policy."""
    alphabet = string.ascii_letters + string.digits
    body = [secrets.choice(alphabet) for _ in range(12)]
    extra = [secrets.choice(string.digits), secrets.choice(string.digits)]
    extra += [secrets.choice("+*$%@#-."), secrets.choice(string.ascii_uppercase)]
    chars = body + extra
    # Fisher-Yates with the CSPRNG so the digits are not always at the end.
    for i in range(len(chars) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def check_login(raw: str) -> str | Refusal:
    """A login: 3-64 of ``a-z0-9._-``, starting with a letter or digit (stored lower-case)."""
    if has_forbidden_characters(raw):
        return Refusal("invalid", "login contains control characters")
    login = raw.strip().lower()
    if not _LOGIN.fullmatch(login):
        return Refusal("invalid", f"login {raw!r} must be 3-64 characters of a-z 0-9 . _ -")
    return login


def check_text(raw: str, *, what: str, max_length: int = 200) -> str | Refusal:
    """A free-text field (a name): non-empty, bounded, no control or bidi characters."""
    text = raw.strip()
    if has_forbidden_characters(text):
        return Refusal("invalid", f"{what} contains control characters")
    if not text or len(text) > max_length:
        return Refusal("invalid", f"{what} must be 1-{max_length} characters")
    return text


def check_quality_kind(raw: str) -> str | Refusal:
    """A quality kind such as ``employer`` or ``social_secretariat``."""
    if not _QUALITY_KIND.fullmatch(raw):
        return Refusal("invalid", f"quality {raw!r} must be 2-40 of a-z 0-9 _ (e.g. employer)")
    return raw


def check_person_fields(
    *, email: str, phone: str, language: str, nrn: str | None
) -> Refusal | None:
    """Contact fields of a person: e-mail, phone, language, optional national register number."""
    for value, what in ((email, "e-mail"), (phone, "phone"), (nrn or "", "national number")):
        if has_forbidden_characters(value):
            return Refusal("invalid", f"{what} contains control characters")
    if not _EMAIL.fullmatch(email):
        return Refusal("invalid", f"e-mail {email!r} is not an address")
    if phone and not _PHONE.fullmatch(phone):
        return Refusal("invalid", f"phone {phone!r} must be 6-20 digits, optionally after +")
    if language not in LANGUAGES:
        return Refusal("invalid", f"language {language!r} must be one of {sorted(LANGUAGES)}")
    if nrn is not None:
        checked = check_nrn(nrn)
        if isinstance(checked, Refusal):
            return checked
    return None


def is_network_name(text: str) -> bool:
    """True when ``text`` has the shape of a secondary network's name (``Cipal``, ``PubliWin``):
    printable ASCII, a letter then letters, digits, ``.``, ``_`` or ``-``, at most 64."""
    return _NETWORK_NAME.fullmatch(text) is not None


def check_network(raw: str) -> str | Refusal:
    """An FTP allow-list entry: an IP network (CIDR, normalised) or a network name.

    Only the shape of a name is checked here; whether the secondary networks file
    (``config/networks.toml``) holds it is for the registry to decide, with the file it loaded.
    """
    try:
        return str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        pass
    if is_network_name(raw):
        return raw
    return Refusal(
        "invalid",
        f"network {raw[:80]!r} is neither an IP network (CIDR) nor a secondary network's name",
    )
