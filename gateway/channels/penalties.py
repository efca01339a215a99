"""Per-source limits of a listener: unauthenticated connections per source network, and
penalties for sources whose connections fail to log in.

What OpenSSH calls ``PerSourceMaxStartups`` and ``PerSourcePenalties`` (SECURITY.md 13):

- a source network (an IPv4 /24 or an IPv6 /64 by default, so that an attacker does not get a
  fresh allowance per address) holds at most ``max_startups_per_source`` unauthenticated
  connections at once, so one network cannot take every ``max_startups`` slot from the others;
- a connection that ends without logging in charges its source: ``authfail_seconds`` when it
  tried and failed to authenticate, ``noauth_seconds`` when it never tried (a scanner, a
  slowloris, a key exchange flood). Charges add up and drain in real time; while a source's
  charge exceeds ``min_seconds`` (at most ``max_seconds``), its new connections are closed at
  once, before the key exchange costs us anything.

Exempt networks (``exempt``) are never counted or charged. The table of sources is bounded
(``max_sources``): when full, drained entries are dropped, then the oldest. No I/O and no clock
of its own: the listener passes ``now``.

Password logins are charged per failed attempt (:meth:`SourceGuard.charge_attempt`, issue 15
item 4), as they happen, so a connection cannot try many before its charge lands; a connection
that charged attempts is not charged again when it ends.

The guard carries the channels' shared :class:`~gateway.channels.refusals.RefusalLog`, since
every refusal it decides is logged per source, and at a bounded rate.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from gateway.channels.refusals import RefusalLog, RefusalLogPolicy
from gateway.ops.settings import GatewaySettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class PenaltyPolicy:
    """The per-source limits (``[sftp]`` settings)."""

    max_startups_per_source: int = 10
    authfail_seconds: float = 5.0
    noauth_seconds: float = 1.0
    min_seconds: float = 15.0
    max_seconds: float = 600.0
    netblock_v4: int = 24
    netblock_v6: int = 64
    exempt: tuple[Network, ...] = ()
    max_sources: int = 65536
    refused_log: RefusalLogPolicy = field(default_factory=RefusalLogPolicy)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> PenaltyPolicy:
        """The policy of ``[sftp]``'s penalty keys, which holds for every channel."""
        sftp = settings.sftp
        return cls(
            max_startups_per_source=sftp.max_startups_per_source,
            authfail_seconds=sftp.penalty_authfail_seconds,
            noauth_seconds=sftp.penalty_noauth_seconds,
            min_seconds=sftp.penalty_min_seconds,
            max_seconds=sftp.penalty_max_seconds,
            netblock_v4=sftp.source_netblock_v4,
            netblock_v6=sftp.source_netblock_v6,
            exempt=tuple(sftp.penalty_exempt),
            refused_log=RefusalLogPolicy(
                per_source=settings.limits.refused_log_per_source,
                window_seconds=settings.limits.refused_log_window_seconds,
            ),
        )


@dataclass(slots=True)
class _Source:
    unauthenticated: int = 0
    penalty_until: float = 0.0


@dataclass(slots=True)
class SourceGuard:
    """Counts unauthenticated connections and penalties per source network."""

    policy: PenaltyPolicy
    _sources: dict[str, _Source] = field(default_factory=dict)
    refusals: RefusalLog = field(init=False)

    def __post_init__(self) -> None:
        self.refusals = RefusalLog(self.policy.refused_log)

    def source(self, address: str) -> str | None:
        """The network ``address`` is counted under, or None (exempt, or not an IP address)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.policy.exempt):
            return None
        bits = self.policy.netblock_v4 if ip.version == 4 else self.policy.netblock_v6
        return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))

    def admit(self, source: str | None, now: float) -> str | None:
        """Count a new unauthenticated connection of ``source``; the reason it is refused
        (``"penalty"`` or ``"max_startups_per_source"``), or None when it is admitted."""
        if source is None:
            return None
        entry = self._sources.get(source) or self._add(source, now)
        if self._blocked(entry, now):
            return "penalty"
        if entry.unauthenticated >= self.policy.max_startups_per_source:
            return "max_startups_per_source"
        entry.unauthenticated += 1
        return None

    def left_unauthenticated(self, source: str | None) -> None:
        """An admitted connection of ``source`` logged in or went away."""
        entry = self._sources.get(source) if source is not None else None
        if entry is not None:
            entry.unauthenticated = max(0, entry.unauthenticated - 1)

    def charge(self, source: str | None, *, tried: bool, now: float) -> float:
        """Charge ``source`` for a connection that ended without logging in (``tried``: it
        failed to authenticate); returns the source's charge left, in seconds."""
        if source is None:
            return 0.0
        entry = self._sources.get(source) or self._add(source, now)
        seconds = self.policy.authfail_seconds if tried else self.policy.noauth_seconds
        until = max(entry.penalty_until, now) + seconds
        entry.penalty_until = min(until, now + self.policy.max_seconds)
        return entry.penalty_until - now

    def charge_attempt(self, source: str | None, now: float) -> float:
        """Charge ``source`` for one failed password attempt, at once; returns its charge."""
        return self.charge(source, tried=True, now=now)

    def penalized(self, source: str | None, now: float) -> bool:
        """Whether ``source``'s new connections are refused now."""
        entry = self._sources.get(source) if source is not None else None
        return entry is not None and self._blocked(entry, now)

    def _blocked(self, entry: _Source, now: float) -> bool:
        return entry.penalty_until - now > self.policy.min_seconds

    def __len__(self) -> int:
        return len(self._sources)

    def _add(self, source: str, now: float) -> _Source:
        if len(self._sources) >= self.policy.max_sources:
            self._prune(now)
        entry = _Source()
        self._sources[source] = entry
        return entry

    def _prune(self, now: float) -> None:
        idle = [
            key
            for key, entry in self._sources.items()
            if entry.unauthenticated == 0 and entry.penalty_until <= now
        ]
        for key in idle:
            del self._sources[key]
        while len(self._sources) >= self.policy.max_sources:
            # Still full of live entries: the oldest goes (dicts keep insertion order).
            del self._sources[next(iter(self._sources))]
