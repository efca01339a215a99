"""The PROXY v2 header grammar: every family, every malformed form, never an exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.proxy import (
    MAX_HEADER_BYTES,
    PREFIX_BYTES,
    SIGNATURE,
    Command,
    Endpoint,
    ProxyHeader,
    ProxyRefusal,
    build_header,
    header_length,
    parse_header,
)

CLIENT4 = Endpoint("192.0.2.7", 50123)
SERVER4 = Endpoint("10.0.0.1", 22)


def test_tcp4_header_names_the_client() -> None:
    """A PROXY TCP4 header gives the client and server endpoints and its own length."""
    data = build_header(CLIENT4, SERVER4)
    assert len(data) == PREFIX_BYTES + 12
    assert header_length(data[:PREFIX_BYTES]) == len(data)
    expected = ProxyHeader(command=Command.PROXY, client=CLIENT4, server=SERVER4, length=28)
    assert parse_header(data + b"SSH-2.0-client\r\n") == expected


def test_tcp6_header_names_the_client() -> None:
    """A PROXY TCP6 header gives IPv6 endpoints (IPv4-mapped ones kept as sent)."""
    client, server = Endpoint("2001:db8::7", 1), Endpoint("2001:db8::1", 2222)
    data = build_header(client, server)
    assert len(data) == PREFIX_BYTES + 36
    assert parse_header(data) == ProxyHeader(
        command=Command.PROXY, client=client, server=server, length=52
    )
    mapped = parse_header(build_header(Endpoint("::ffff:192.0.2.9", 5)))
    assert isinstance(mapped, ProxyHeader)
    assert mapped.client == Endpoint("::ffff:c000:209", 5)


def test_local_header_has_no_client_and_its_addresses_are_ignored() -> None:
    """LOCAL (a health check) carries no client, whatever address bytes follow."""
    assert parse_header(build_header(None)) == ProxyHeader(command=Command.LOCAL, length=16)
    with_addresses = bytearray(build_header(CLIENT4, SERVER4))
    with_addresses[12] = 0x20
    assert parse_header(bytes(with_addresses)) == ProxyHeader(command=Command.LOCAL, length=28)


def test_unspec_unix_and_udp_have_no_client() -> None:
    """PROXY over UNSPEC, UNIX or UDP is well formed but names no TCP client."""
    unspec = SIGNATURE + b"\x21\x00\x00\x00"
    assert parse_header(unspec) == ProxyHeader(command=Command.PROXY, length=16)
    unix = SIGNATURE + b"\x21\x31" + (216).to_bytes(2, "big") + bytes(216)
    assert parse_header(unix) == ProxyHeader(command=Command.PROXY, length=232)
    udp = bytearray(build_header(CLIENT4, SERVER4))
    udp[13] = 0x12
    assert parse_header(bytes(udp)) == ProxyHeader(command=Command.PROXY, length=28)


def test_tlvs_are_skipped() -> None:
    """TLVs after the addresses count in the length and are not interpreted."""
    tlvs = b"\x01\x00\x02h2" + b"\x05\x00\x04abcd"
    data = build_header(CLIENT4, SERVER4, tlvs=tlvs)
    header = parse_header(data)
    assert isinstance(header, ProxyHeader)
    assert (header.client, header.length) == (CLIENT4, 28 + len(tlvs))


def test_truncated_headers_are_refused() -> None:
    """Every proper prefix of a header is ``truncated`` (the reader then waits for more)."""
    data = build_header(CLIENT4, SERVER4)
    for end in range(len(data)):
        assert parse_header(data[:end]) == ProxyRefusal("truncated"), end


def test_wrong_signature_version_command_family_are_refused() -> None:
    """Each fixed field that does not match the spec has its own reason."""
    good = build_header(CLIENT4, SERVER4)

    def changed(at: int, value: int) -> bytes:
        data = bytearray(good)
        data[at] = value
        return bytes(data)

    assert parse_header(changed(3, 0x0B)) == ProxyRefusal("signature")
    assert parse_header(b"SSH-2.0-OpenSSH_9.6\r\n") == ProxyRefusal("signature")
    assert parse_header(changed(12, 0x11)) == ProxyRefusal("version")
    assert parse_header(changed(12, 0x22)) == ProxyRefusal("command")
    assert parse_header(changed(13, 0x41)) == ProxyRefusal("family")
    assert parse_header(changed(13, 0x13)) == ProxyRefusal("family")


def test_length_is_bounded_and_must_hold_the_addresses() -> None:
    """A length past 536 bytes is refused from the prefix alone; one too short for the family's
    addresses is refused too."""
    prefix = SIGNATURE + b"\x21\x11" + (MAX_HEADER_BYTES - PREFIX_BYTES + 1).to_bytes(2, "big")
    assert header_length(prefix) == ProxyRefusal("too_long")
    assert header_length(SIGNATURE + b"\x21\x11\xff\xff") == ProxyRefusal("too_long")
    most = SIGNATURE + b"\x21\x11" + (MAX_HEADER_BYTES - PREFIX_BYTES).to_bytes(2, "big")
    assert header_length(most) == MAX_HEADER_BYTES
    assert header_length(SIGNATURE + b"\x21\x11\x00\x0b") == ProxyRefusal("too_short")
    assert header_length(SIGNATURE + b"\x21\x21\x00\x23") == ProxyRefusal("too_short")
    assert header_length(SIGNATURE + b"\x20\x11\x00\x00") == 16  # LOCAL needs no addresses


def test_version_1_text_header_is_refused() -> None:
    """The v1 text form is refused by name (the gateway speaks v2 only)."""
    line = b"PROXY TCP4 192.0.2.7 10.0.0.1 50123 22\r\n"
    assert header_length(line[:PREFIX_BYTES]) == ProxyRefusal("v1")
    assert parse_header(line) == ProxyRefusal("v1")


@given(st.binary(max_size=600))
def test_parser_never_raises(data: bytes) -> None:
    """Any bytes are a header or a refusal; a header's length never exceeds the bound."""
    result = parse_header(data)
    assert isinstance(result, ProxyHeader | ProxyRefusal)
    if isinstance(result, ProxyHeader):
        assert result.length <= min(len(data), MAX_HEADER_BYTES)


@given(
    st.ip_addresses(v=4).map(str),
    st.integers(0, 65535),
    st.binary(max_size=64),
    st.binary(max_size=8),
)
def test_build_then_parse_round_trips(ip: str, port: int, tlvs: bytes, rest: bytes) -> None:
    """``parse(build(client))`` gives the client back, whatever follows the header."""
    header = parse_header(build_header(Endpoint(ip, port), tlvs=tlvs) + rest)
    assert isinstance(header, ProxyHeader)
    assert header.client == Endpoint(ip, port)
