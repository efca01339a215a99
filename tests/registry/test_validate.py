"""Pure checks: KBO and national-number check digits, the password policy, logins, networks, the
services catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.registry.catalogue import (
    CatalogueError,
    load_service_catalogue,
    parse_service_catalogue,
)
from gateway.registry.types import Refusal
from gateway.registry.validate import (
    check_kbo,
    check_login,
    check_network,
    check_nrn,
    check_password,
    check_person_fields,
    generate_password,
    kbo_with_check_digits,
    nrn_with_check_digits,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("raw", ["0203201340", "0203.201.340", "0417 497 106"])
def test_real_kbo_numbers_pass(raw: str) -> None:
    """Published KBO numbers (with dots or spaces) pass the mod-97 check."""
    assert check_kbo(raw) == raw.replace(".", "").replace(" ", "")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("0203201341", "mod-97"),
        ("020320134", "10 digits"),
        ("2203201340", "start with 0 or 1"),
        ("02032O1340", "10 digits"),
        ("０２０３２０１３４０", "10 digits"),
    ],
)
def test_bad_kbo_numbers_are_refused(raw: str, words: str) -> None:
    """A wrong check digit, length, first digit or non-ASCII digit is refused by name."""
    result = check_kbo(raw)
    assert isinstance(result, Refusal)
    assert words in result.message


@given(st.integers(min_value=0, max_value=19_999_999))
def test_generated_kbo_numbers_pass(base: int) -> None:
    """kbo_with_check_digits always yields a number check_kbo accepts."""
    assert check_kbo(kbo_with_check_digits(base)) == kbo_with_check_digits(base)


# 85073003328: born 1985-07-30, 97 - 850730033 mod 97 = 28. 01020300170: born 2001-02-03,
# check digits from 2010203001 (the "2" put before the first nine), 97 - 2010203001 mod 97 = 70.
@pytest.mark.parametrize("raw", ["85073003328", "85010112387", "01020300170"])
def test_valid_national_numbers_pass(raw: str) -> None:
    """Check digits of the 19xx and of the 20xx form are both accepted."""
    assert check_nrn(raw) == raw


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("12345678901", "mod-97"),
        ("85010112345", "mod-97"),
        ("01020300171", "mod-97"),
        ("8507300332", "11 digits"),
        ("850730033288", "11 digits"),
        ("85.07.30-033.28", "11 digits"),
        ("８５０７３００３３２８", "11 digits"),
    ],
)
def test_bad_national_numbers_are_refused(raw: str, words: str) -> None:
    """A wrong check digit, length or non-ASCII digit is refused by name."""
    result = check_nrn(raw)
    assert isinstance(result, Refusal)
    assert (result.reason, words in result.message) == ("invalid", True), result


def test_person_fields_check_the_national_number() -> None:
    """The contact fields refuse a national number with wrong check digits."""
    fields = {"email": "a@example.be", "phone": "", "language": "nl"}
    assert check_person_fields(**fields, nrn="85073003328") is None
    refusal = check_person_fields(**fields, nrn="12345678901")
    assert isinstance(refusal, Refusal)
    assert "mod-97" in refusal.message


@given(st.integers(min_value=0, max_value=999_999_999), st.booleans())
def test_generated_national_numbers_pass(base: int, after_1999: bool) -> None:
    """nrn_with_check_digits always yields a number check_nrn accepts, in either form."""
    number = nrn_with_check_digits(f"{base:09d}", born_after_1999=after_1999)
    assert check_nrn(number) == number


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short1!", "at least 10 characters"),
        ("abcdefghijk", "at least 2 digits or special characters"),
        ("abcdefghij1", "at least 2 digits or special characters"),
        ("abcdefghij_~", "at least 2 digits or special characters"),
        ("abcdefgh\x00ij12", "control characters"),
    ],
)
def test_password_policy_names_the_failed_rule(password: str, rule: str) -> None:
    """Each failing password is refused with the rule it broke."""
    result = check_password(password)
    assert isinstance(result, Refusal)
    assert result.reason == "password_policy"
    assert rule in result.message


@pytest.mark.parametrize("password", ["abcdefgh12", "abcdefgh;:", "abcdefgh(}", "abcdefghi'-"])
def test_password_policy_accepts(password: str) -> None:
    """Ten characters with two digits or specials from the guide's list pass."""
    assert check_password(password) == password


def test_generated_passwords_meet_the_policy() -> None:
    """Temporary passwords always pass the policy and differ."""
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(check_password(p) == p for p in passwords)


@pytest.mark.parametrize(
    "login", ["a", "x' OR '1'='1", "bob\nforged", "bob\u202e", "../etc", "a" * 65, "ann\x00"]
)
def test_bad_logins_are_refused(login: str) -> None:
    """Short, long, quoted, control-character and bidi logins are refused."""
    assert isinstance(check_login(login), Refusal)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("10.1.0.0/16", "10.1.0.0/16"),
        ("10.1.2.3/16", "10.1.0.0/16"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("Publilink", "Publilink"),
        ("Internet", "Internet"),  # name-shaped: whether it exists is the networks file's say
    ],
)
def test_networks(raw: str, clean: str) -> None:
    """An allow-list entry is a CIDR network (normalised) or a network name's shape."""
    assert check_network(raw) == clean


@pytest.mark.parametrize(
    "raw", ["the internet", "", "10.0.0.0/33", "Cipal\n", "Ci\u202epal", "Cïpal", "1abc", "a" * 65]
)
def test_malformed_network_is_refused(raw: str) -> None:
    """Neither a CIDR range nor a network name's shape: refused as invalid."""
    result = check_network(raw)
    assert isinstance(result, Refusal)
    assert result.reason == "invalid"


def test_shipped_catalogue_loads() -> None:
    """config/services.toml holds the application codes, with parts flags and destinations."""
    catalogue = load_service_catalogue(ROOT / "config" / "services.toml")
    assert {"DMFA", "DIMN", "WECH", "AOAT", "ZIMA"} <= catalogue.codes
    dmfa, wech = catalogue.get("DMFA"), catalogue.get("WECH")
    assert dmfa is not None
    assert wech is not None
    assert dmfa.parts is True
    assert wech.parts is False
    assert dmfa.destination["kind"] == "directory"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({}, "has no"),
        (
            {"services": {"dmfa": {"title": "x", "parts": True, "destination": {"kind": "d"}}}},
            "4 uppercase",
        ),
        (
            {"services": {"DMFA": {"title": "x", "parts": "yes", "destination": {"kind": "d"}}}},
            "parts",
        ),
        ({"services": {"DMFA": {"title": "x", "parts": True}}}, "destination"),
        (
            {
                "services": {
                    "DMFA": {"title": "x", "parts": True, "destination": {"kind": "d"}, "x": 1}
                }
            },
            "unknown",
        ),
    ],
)
def test_bad_catalogue_is_refused(data: dict[str, object], words: str) -> None:
    """A catalogue error names the entry and the key."""
    with pytest.raises(CatalogueError, match=words):
        parse_service_catalogue(data)
