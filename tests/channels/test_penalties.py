"""Per-source limits (SECURITY.md 13): unauthenticated connections per network and penalties."""

from __future__ import annotations

import ipaddress

from gateway.channels.penalties import PenaltyPolicy, SourceGuard


def guard(**policy: object) -> SourceGuard:
    return SourceGuard(PenaltyPolicy(**policy))  # type: ignore[arg-type]


def test_sources_are_grouped_by_network() -> None:
    """Addresses of one /24 (IPv4) or /64 (IPv6) share an allowance; mapped IPv4 is IPv4."""
    g = guard()
    assert g.source("192.0.2.7") == g.source("192.0.2.200") == "192.0.2.0/24"
    assert g.source("192.0.3.7") == "192.0.3.0/24"
    assert g.source("2001:db8:1:2::5") == g.source("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert g.source("::ffff:192.0.2.9") == "192.0.2.0/24"
    assert g.source("fe80::1%eth0") == "fe80::/64"
    assert g.source("not an address") is None
    assert guard(netblock_v4=32).source("192.0.2.7") == "192.0.2.7/32"


def test_unauthenticated_connections_per_source_are_capped() -> None:
    """The cap counts per network; a freed slot can be used again; other networks are apart."""
    g = guard(max_startups_per_source=2)
    a, b = g.source("192.0.2.1"), g.source("198.51.100.1")
    assert g.admit(a, 0.0) is None
    assert g.admit(a, 0.0) is None
    assert g.admit(a, 0.0) == "max_startups_per_source"
    assert g.admit(b, 0.0) is None
    g.left_unauthenticated(a)
    assert g.admit(a, 0.0) is None


def test_failed_logins_add_up_to_a_penalty_that_drains() -> None:
    """Three failed logins (15 s) are tolerated, the fourth (20 s) blocks the source until its
    charge drains below the 15 s threshold; connections that never try cost 1 s each."""
    g = guard()
    src = g.source("192.0.2.1")
    for _ in range(3):
        g.charge(src, tried=True, now=100.0)
    assert not g.penalized(src, 100.0)
    assert g.admit(src, 100.0) is None
    g.left_unauthenticated(src)
    assert g.charge(src, tried=True, now=100.0) == 20.0
    assert g.penalized(src, 100.0)
    assert g.admit(src, 100.0) == "penalty"
    assert g.admit(g.source("192.0.3.1"), 100.0) is None  # another network is not affected
    assert g.penalized(src, 104.9)
    assert not g.penalized(src, 105.0)
    assert g.admit(src, 105.0) is None
    for _ in range(16):
        g.charge(src, tried=False, now=200.0)
    assert g.penalized(src, 200.0)


def test_a_charge_never_exceeds_the_maximum() -> None:
    """However many failures, the block ends max_seconds after the last one."""
    g = guard(max_seconds=60.0)
    src = g.source("192.0.2.1")
    for _ in range(1000):
        left = g.charge(src, tried=True, now=0.0)
    assert left == 60.0
    assert g.penalized(src, 44.0)
    assert not g.penalized(src, 46.0)


def test_exempt_networks_are_never_counted_or_penalised() -> None:
    """A monitoring network in ``exempt`` has no source, so nothing applies to it."""
    g = guard(exempt=(ipaddress.ip_network("192.0.2.0/28"),), max_startups_per_source=1)
    assert g.source("192.0.2.9") is None
    for _ in range(100):
        assert g.admit(None, 0.0) is None
        g.charge(None, tried=True, now=0.0)
    assert len(g) == 0
    assert g.source("192.0.2.16") == "192.0.2.0/24"


def test_the_table_of_sources_is_bounded() -> None:
    """A flood from many networks keeps at most max_sources entries: drained ones go first,
    then the oldest."""
    g = guard(max_sources=100, netblock_v4=32)
    for i in range(1000):
        src = g.source(f"10.0.{i // 256}.{i % 256}")
        assert g.admit(src, float(i)) is None
        g.left_unauthenticated(src)
        g.charge(src, tried=False, now=float(i))
        assert len(g) <= 100
    assert len(g) == 100
