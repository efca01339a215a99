"""The secondary networks file (``config/networks.toml``): which addresses stand behind a name.

Local authorities send over FTP from secondary networks (Cipal, Irisnet, Publilink, Schaubroeck,
Infrax, PubliWin). A channel's allow-list stores CIDR ranges and/or network *names*; this file
gives each name its address ranges and the FTP listener its senders arrive on::

    [Cipal]
    ranges = ["192.0.2.0/28"]      # CIDR ranges, IPv4 or IPv6
    listener = "public"            # "public", or NAME of an [ftp.plain_listeners.NAME] listener

Rules:

- the file is configuration: a bad one raises :class:`NetworksError` naming the file, the network
  and the key (unknown keys, a range that is not a CIDR network, a missing ``ranges`` or
  ``listener``, a listener that is neither ``public`` nor a configured plain listener, a name that
  is not a network name); nothing half-loaded is ever returned;
- a **missing** file is an empty book (no named network admits anyone); the caller logs it, since
  only the caller knows whether FTP is in use;
- a name is a letter, then letters, digits, ``.``, ``_`` or ``-``: printable ASCII that is typed
  on the command line and can never read as an address (so an allow-list entry is either a range
  or a name, never both);
- IPv4-mapped IPv6 peers (``::ffff:192.0.2.7``, what a dual-stack socket reports) are unmapped
  before they are matched, so an IPv4 range admits them;
- ``public`` is the FTPS listener: plain FTP is never accepted there, whatever a network says.

:class:`NetworkBook` is a frozen value: a reload builds a new one and swaps it in whole, so a
login in progress sees the old book or the new one, never a mix.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.registry.validate import is_network_name

PUBLIC = "public"
"""The listener name of the public FTPS listener (``[ftp] host``/``port``)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_KEYS = frozenset({"ranges", "listener"})


class NetworksError(Exception):
    """The secondary networks file is invalid; the message names the file, network and key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SecondaryNetwork:
    """One secondary network: its name, its address ranges, the listener its senders use."""

    name: str
    ranges: tuple[IPNetwork, ...]
    listener: str

    def holds(self, address: IPAddress) -> bool:
        """True when ``address`` is inside one of the ranges."""
        return any(address in network for network in self.ranges)


def peer_address(text: str) -> IPAddress | None:
    """``text`` as an IP address, IPv4-mapped IPv6 unmapped; ``None`` when it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _range(entry: str) -> IPNetwork | None:
    """An allow-list entry as a network when it is a CIDR range (hosts bits ignored, as the
    channel stores it normalised anyway)."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _empty() -> Mapping[str, SecondaryNetwork]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkBook:
    """The secondary networks by name, in file order, and where they were read from.

    ``source`` and ``listeners`` are what :func:`load_networks` was given, so the registry can
    read the same file again with the same listener names (SIGHUP); a book built in memory has
    no ``source``.
    """

    networks: Mapping[str, SecondaryNetwork] = field(default_factory=_empty)
    source: Path | None = None
    listeners: frozenset[str] = frozenset()

    def __contains__(self, name: object) -> bool:
        return name in self.networks

    def __iter__(self) -> Iterator[SecondaryNetwork]:
        return iter(self.networks.values())

    def __len__(self) -> int:
        return len(self.networks)

    def get(self, name: str) -> SecondaryNetwork | None:
        """The network called ``name``, or ``None``."""
        return self.networks.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Every network name, in file order."""
        return tuple(self.networks)

    def allows(self, entries: Sequence[str], address: str) -> bool:
        """True when ``address`` is inside an entry of a channel's allow-list: a CIDR entry, or
        a range of a network an entry names. A name the book does not hold admits no one; an
        address that is not an IP address is never allowed."""
        ip = peer_address(address)
        if ip is None:
            return False
        for entry in entries:
            network = self.networks.get(entry)
            if network is not None:
                if network.holds(ip):
                    return True
                continue
            cidr = _range(entry)
            if cidr is not None and ip in cidr:
                return True
        return False

    def networks_of(self, entries: Iterable[str]) -> list[str]:
        """The entries that name a network rather than give a range, in order (names the book
        no longer holds included: they are still what the channel is bound to)."""
        return [entry for entry in entries if _range(entry) is None]

    def unknown(self, entries: Iterable[str]) -> list[str]:
        """The entries that name a network the book does not hold."""
        return [name for name in self.networks_of(entries) if name not in self.networks]

    def plain_network(self, listener: str, address: str) -> str | None:
        """The first network (file order) whose ``listener`` is ``listener`` and whose ranges
        hold ``address``: the FTP listener ``listener`` accepts plain FTP from it. Always
        ``None`` for the public listener, which takes explicit FTPS only."""
        ip = peer_address(address)
        if ip is None or listener == PUBLIC:
            return None
        for network in self.networks.values():
            if network.listener == listener and network.holds(ip):
                return network.name
        return None

    def describe(self, entries: Iterable[str]) -> list[dict[str, Any]]:
        """Each allow-list entry with the ranges behind it, for the overview: ``entry``,
        ``ranges`` (the entry itself for a CIDR entry, none for a name the book does not hold)
        and ``listener`` (``None`` unless the entry names a network of the book)."""
        described: list[dict[str, Any]] = []
        for entry in entries:
            network = self.networks.get(entry)
            cidr = _range(entry) if network is None else None
            if network is not None:
                ranges, listener = [str(r) for r in network.ranges], network.listener
            else:
                ranges, listener = ([str(cidr)] if cidr is not None else []), None
            described.append({"entry": entry, "ranges": ranges, "listener": listener})
        return described


def _network(where: str, name: str, raw: object, listeners: frozenset[str]) -> SecondaryNetwork:
    if not is_network_name(name):
        raise NetworksError(
            f"{where}: [{name!a}]: a network name is printable ASCII: a letter, then letters, "
            "digits, '.', '_' or '-' (at most 64)"
        )
    if not isinstance(raw, dict):
        raise NetworksError(f"{where}: {name}: must be a table [{name}]")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        keys = ", ".join(ascii(key) for key in unknown)
        raise NetworksError(f"{where}: [{name}]: unknown key {keys} (keys: ranges, listener)")
    missing = sorted(_KEYS - set(raw))
    if missing:
        raise NetworksError(f"{where}: [{name}] {missing[0]}: missing")
    ranges_raw, listener = raw["ranges"], raw["listener"]
    if not isinstance(ranges_raw, list) or not ranges_raw:
        raise NetworksError(f"{where}: [{name}] ranges: must be a non-empty list of CIDR ranges")
    ranges: list[IPNetwork] = []
    for item in ranges_raw:
        if not isinstance(item, str):
            raise NetworksError(f"{where}: [{name}] ranges: {item!a} is not a CIDR range")
        try:
            ranges.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise NetworksError(
                f"{where}: [{name}] ranges: {item!a} is not a CIDR range ({exc})"
            ) from None
    if not isinstance(listener, str) or (listener != PUBLIC and listener not in listeners):
        known = ", ".join([PUBLIC, *sorted(listeners)])
        raise NetworksError(
            f"{where}: [{name}] listener: {listener!a} is neither {PUBLIC!r} nor a listener of "
            f"[ftp.plain_listeners] (known: {known})"
        )
    return SecondaryNetwork(name=name, ranges=tuple(ranges), listener=listener)


def parse_networks(
    data: Mapping[str, Any],
    *,
    listeners: frozenset[str] = frozenset(),
    where: str = "networks file",
    source: Path | None = None,
) -> NetworkBook:
    """Build the book from parsed TOML (``{NAME: {"ranges": [...], "listener": ...}}``)."""
    if PUBLIC in listeners:
        raise NetworksError(
            f"{where}: [ftp.plain_listeners.{PUBLIC}]: {PUBLIC!r} names the FTPS listener; "
            "give the plain listener another name"
        )
    networks = {name: _network(where, name, raw, listeners) for name, raw in data.items()}
    return NetworkBook(
        networks=MappingProxyType(networks), source=source, listeners=frozenset(listeners)
    )


def load_networks(path: Path, *, listeners: frozenset[str] = frozenset()) -> NetworkBook:
    """Load and check ``path`` (``config/networks.toml``); ``listeners`` are the names of the
    ``[ftp.plain_listeners]`` a network may name besides ``public``.

    A missing file is an empty book (no named network admits anyone); log it at the call site.
    Any other problem raises :class:`NetworksError`.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return parse_networks({}, listeners=listeners, where=str(path), source=path)
    except (OSError, UnicodeDecodeError) as exc:
        raise NetworksError(f"{path}: cannot read the networks file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NetworksError(f"{path}: not valid TOML: {exc}") from None
    return parse_networks(data, listeners=listeners, where=str(path), source=path)


__all__ = [
    "PUBLIC",
    "NetworkBook",
    "NetworksError",
    "SecondaryNetwork",
    "load_networks",
    "parse_networks",
    "peer_address",
]
