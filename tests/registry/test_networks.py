"""Secondary networks (``config/networks.toml``): the file, the book, and the registry using it.

The file's errors each name the file, the network and the key; the shipped file loads. On a real
registry (SQLite and PostgreSQL): a name the file does not hold is refused by ``add_channel``, a
channel bound to a network logs in from its ranges only, a CIDR entry still works, a reload
replaces the book (a bad one keeps the old), and the overview shows each entry's ranges.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from gateway.cli.admin import plain, render_table
from gateway.cli.main import main
from gateway.ops.settings import load_settings
from gateway.registry.catalogue import ServiceCatalogue
from gateway.registry.db import create_engine
from gateway.registry.networks import (
    PUBLIC,
    NetworkBook,
    NetworksError,
    load_networks,
    parse_networks,
)
from gateway.registry.notify import OutboxNotifier
from gateway.registry.service import Registry, build_registry
from gateway.registry.types import (
    AuthFailure,
    ChannelKind,
    PasswordCredential,
    Principal,
    Refusal,
)
from tests.registry.configured import TECH, configured
from tests.registry.conftest import CHEAP, Clock, KeyPair
from tests.registry.world import EMPLOYER_A, ok

ROOT = Path(__file__).resolve().parents[2]
FTP_PASSWORD = "ftp-secret-42"
NAMES = ("Cipal", "Irisnet", "Publilink", "Schaubroeck", "Infrax", "PubliWin")

BOOK_TOML = """
[Cipal]
ranges = ["192.0.2.0/28"]
listener = "public"

[Irisnet]
ranges = ["198.51.100.0/28", "2001:db8:1::/48"]
listener = "secondary"

[Infrax]
ranges = ["198.51.100.0/24"]
listener = "secondary"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "networks.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def book(tmp_path: Path) -> NetworkBook:
    """Three networks: Cipal on the public listener, Irisnet and Infrax on ``secondary``."""
    return load_networks(_write(tmp_path, BOOK_TOML), listeners=frozenset({"secondary"}))


# -- the file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "network", "words"),
    [
        ('[Cipal]\nranges = ["192.0.2.0/28"\n', None, "not valid TOML"),
        ('[Cipal]\nranges = ["192.0.2.0/28"]\nlistener = "public"\nrange = []\n', "Cipal", "range"),
        ('[Cipal]\nranges = ["192.0.2.300/28"]\nlistener = "public"\n', "Cipal", "ranges"),
        ('[Cipal]\nranges = ["192.0.2.1/28"]\nlistener = "public"\n', "Cipal", "host bits"),
        ('[Cipal]\nranges = ["Irisnet"]\nlistener = "public"\n', "Cipal", "ranges"),
        ('[Cipal]\nranges = "192.0.2.0/28"\nlistener = "public"\n', "Cipal", "ranges"),
        ('[Cipal]\nranges = []\nlistener = "public"\n', "Cipal", "ranges"),
        ('[Cipal]\nlistener = "public"\n', "Cipal", "ranges: missing"),
        ('[Cipal]\nranges = ["192.0.2.0/28"]\n', "Cipal", "listener: missing"),
        ('[Cipal]\nranges = ["192.0.2.0/28"]\nlistener = "dmz"\n', "Cipal", "listener: 'dmz'"),
        ('[Cipal]\nranges = ["192.0.2.0/28"]\nlistener = 21\n', "Cipal", "listener"),
        ('["Cïpal"]\nranges = ["192.0.2.0/28"]\nlistener = "public"\n', "C\\xefpal", "name"),
        ('["Ci pal"]\nranges = ["192.0.2.0/28"]\nlistener = "public"\n', "Ci pal", "name"),
        ('["10.0.0.0/8"]\nranges = ["10.0.0.0/8"]\nlistener = "public"\n', "10.0.0.0/8", "name"),
        ('Cipal = "192.0.2.0/28"\n', "Cipal", "table"),
    ],
)
def test_bad_file_is_refused(tmp_path: Path, text: str, network: str | None, words: str) -> None:
    """Each problem raises NetworksError naming the file, the network and the key."""
    path = _write(tmp_path, text)
    with pytest.raises(NetworksError) as caught:
        load_networks(path, listeners=frozenset({"secondary"}))
    message = str(caught.value)
    assert str(path) in message
    assert words in message
    if network is not None:
        assert network in message


def test_bad_listener_names_the_known_ones(tmp_path: Path) -> None:
    """A listener that is neither public nor configured: the message lists the valid ones."""
    path = _write(tmp_path, '[Cipal]\nranges = ["192.0.2.0/28"]\nlistener = "dmz"\n')
    with pytest.raises(NetworksError, match=r"\[Cipal\] listener: 'dmz'.*public, secondary"):
        load_networks(path, listeners=frozenset({"secondary"}))


def test_a_plain_listener_may_not_be_called_public(tmp_path: Path) -> None:
    """``public`` is the FTPS listener: a plain listener of that name is refused."""
    with pytest.raises(NetworksError, match=r"plain_listeners\.public"):
        load_networks(_write(tmp_path, BOOK_TOML), listeners=frozenset({PUBLIC, "secondary"}))


def test_missing_file_is_an_empty_book(tmp_path: Path) -> None:
    """No file: no networks, and the book remembers the file so a reload can read it later."""
    path = tmp_path / "absent.toml"
    book = load_networks(path)
    assert book.names == ()
    assert book.source == path
    assert not book.allows(["Cipal"], "192.0.2.1")


def test_shipped_file_loads() -> None:
    """config/networks.toml names the six networks, on the public listener, each on its own
    documentation-range placeholder."""
    book = load_networks(ROOT / "config" / "networks.toml")
    assert sorted(book.names) == sorted(NAMES)
    assert {network.listener for network in book} == {PUBLIC}
    ranges = [r for network in book for r in network.ranges]
    assert not any(a.overlaps(b) for i, a in enumerate(ranges) for b in ranges[i + 1 :])
    documentation = [
        ipaddress.ip_network(text)
        for text in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
    ]
    for r in ranges:
        assert any(r[0] in d and r[-1] in d for d in documentation), r


# -- the book ---------------------------------------------------------------------------------


def test_allows_names_ranges_and_mapped_addresses(book: NetworkBook) -> None:
    """A name counts its ranges, a CIDR entry itself; IPv4-mapped IPv6 peers are unmapped."""
    assert book.allows(["Cipal"], "192.0.2.5")
    assert not book.allows(["Cipal"], "192.0.2.16")
    assert book.allows(["Cipal"], "::ffff:192.0.2.5")
    assert book.allows(["Irisnet"], "2001:db8:1::7")
    assert not book.allows(["Irisnet"], "2001:db8:2::7")
    assert book.allows(["Cipal", "10.9.0.0/16"], "10.9.8.7")
    assert book.allows(["10.9.0.0/16"], "::ffff:10.9.8.7")
    assert not book.allows(["Gone"], "192.0.2.5")  # a name the file does not hold: no one
    assert not book.allows(["Cipal"], "not-an-address")
    assert not book.allows([], "192.0.2.5")


def test_networks_of_and_unknown(book: NetworkBook) -> None:
    """networks_of keeps the names among the entries; unknown those the book does not hold."""
    entries = ["10.0.0.0/8", "Cipal", "Gone", "2001:db8::/32"]
    assert book.networks_of(entries) == ["Cipal", "Gone"]
    assert book.unknown(entries) == ["Gone"]


def test_plain_network_by_listener(book: NetworkBook) -> None:
    """A plain listener accepts the ranges of the networks naming it, first in file order;
    the public listener never accepts plain FTP."""
    assert book.plain_network("secondary", "198.51.100.3") == "Irisnet"
    assert book.plain_network("secondary", "198.51.100.200") == "Infrax"
    assert book.plain_network("secondary", "::ffff:198.51.100.200") == "Infrax"
    assert book.plain_network("secondary", "192.0.2.5") is None  # Cipal arrives on public
    assert book.plain_network("other", "198.51.100.3") is None
    assert book.plain_network(PUBLIC, "192.0.2.5") is None
    assert book.plain_network("secondary", "garbage") is None


def test_describe(book: NetworkBook) -> None:
    """Each entry with the ranges behind it and, for a network, its listener."""
    assert book.describe(["Irisnet", "10.0.0.0/8", "Gone"]) == [
        {
            "entry": "Irisnet",
            "ranges": ["198.51.100.0/28", "2001:db8:1::/48"],
            "listener": "secondary",
        },
        {"entry": "10.0.0.0/8", "ranges": ["10.0.0.0/8"], "listener": None},
        {"entry": "Gone", "ranges": [], "listener": None},
    ]


def test_parse_networks_in_memory() -> None:
    """A book built from data has no source."""
    book = parse_networks({"Cipal": {"ranges": ["192.0.2.0/28"], "listener": "public"}})
    assert book.names == ("Cipal",)
    assert book.source is None


# -- the registry -----------------------------------------------------------------------------


async def _ftp(registry: Registry, networks: list[str]) -> object:
    return await registry.add_channel(
        actor="htb-a",
        quality=EMPLOYER_A,
        kind=ChannelKind.ftp,
        ftp_password=FTP_PASSWORD,
        networks=networks,
    )


async def test_add_channel_refuses_a_name_not_in_the_file(
    registry: Registry, ssh_keys: list[KeyPair]
) -> None:
    """A name the networks file does not hold is refused, listing the known names."""
    await configured(registry, ssh_keys[0].public_line)
    refused = await _ftp(registry, ["Cipal", "Telenet"])
    assert isinstance(refused, Refusal)
    assert refused.reason == "invalid"
    assert "Telenet" in refused.message
    assert all(name in refused.message for name in NAMES)
    malformed = await _ftp(registry, ["the internet"])
    assert isinstance(malformed, Refusal)
    assert malformed.reason == "invalid"
    overview = await registry.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    assert [c.kind for c in overview.channels] == [ChannelKind.sftp]


async def test_named_network_login(
    registry: Registry, networks: NetworkBook, ssh_keys: list[KeyPair]
) -> None:
    """A channel bound to Cipal logs in from Cipal's ranges only; elsewhere the failure says
    network_not_allowed and carries the channel's networks."""
    await configured(registry, ssh_keys[0].public_line)
    ok(await _ftp(registry, ["Cipal"]))
    cipal = networks.get("Cipal")
    assert cipal is not None
    inside = str(cipal.ranges[0].network_address + 1)
    good = PasswordCredential(FTP_PASSWORD)
    principal = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer=inside)
    assert isinstance(principal, Principal)
    mapped = await registry.authenticate(
        TECH, good, channel=ChannelKind.ftp, peer=f"::ffff:{inside}"
    )
    assert isinstance(mapped, Principal)
    irisnet = networks.get("Irisnet")
    assert irisnet is not None
    elsewhere = str(irisnet.ranges[0].network_address + 1)
    outside = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer=elsewhere)
    assert outside == AuthFailure("network_not_allowed", networks=("Cipal",))
    no_peer = await registry.authenticate(TECH, good, channel=ChannelKind.ftp)
    assert no_peer == AuthFailure("network_not_allowed", networks=("Cipal",))


async def test_cidr_entry_beside_a_name(registry: Registry, ssh_keys: list[KeyPair]) -> None:
    """A CIDR entry still admits its range, beside a named network."""
    await configured(registry, ssh_keys[0].public_line)
    ok(await _ftp(registry, ["Cipal", "10.9.0.0/16"]))
    good = PasswordCredential(FTP_PASSWORD)
    inside = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="10.9.8.7")
    assert isinstance(inside, Principal)
    outside = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="10.8.0.1")
    assert outside == AuthFailure("network_not_allowed", networks=("Cipal", "10.9.0.0/16"))


async def test_overview_shows_the_ranges(
    registry: Registry, networks: NetworkBook, ssh_keys: list[KeyPair]
) -> None:
    """The overview lists each allow-list entry with its ranges, in JSON and in the table."""
    await configured(registry, ssh_keys[0].public_line)
    ok(await _ftp(registry, ["Publilink", "10.9.0.0/16"]))
    overview = await registry.overview(actor="htb-a", quality=EMPLOYER_A)
    assert not isinstance(overview, Refusal)
    ftp = next(c for c in overview.channels if c.kind is ChannelKind.ftp)
    publilink = networks.get("Publilink")
    assert publilink is not None
    ranges = [str(r) for r in publilink.ranges]
    assert ftp.allowed_networks == ("Publilink", "10.9.0.0/16")
    assert list(ftp.networks) == [
        {"entry": "Publilink", "ranges": ranges, "listener": "public"},
        {"entry": "10.9.0.0/16", "ranges": ["10.9.0.0/16"], "listener": None},
    ]
    table = render_table(plain(overview))
    assert f"entry=Publilink; ranges={', '.join(ranges)}; listener=public" in table


@pytest.fixture
async def file_registry(
    backend_url: str, catalogue: ServiceCatalogue, clock: Clock, tmp_path: Path
) -> AsyncIterator[Registry]:
    """A registry built by build_registry from settings naming a networks file in tmp_path."""
    path = _write(tmp_path, BOOK_TOML)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[ftp]\nnetworks_file = "{path}"\n'
        '[ftp.plain_listeners.secondary]\nhost = "127.0.0.1"\nport = 0\n'
        f"[security]\nargon2_time_cost = {CHEAP.time_cost}\n"
        f"argon2_memory_kib = {CHEAP.memory_kib}\nargon2_parallelism = {CHEAP.parallelism}\n",
        encoding="utf-8",
    )
    engine = create_engine(backend_url)
    yield build_registry(
        load_settings(config),
        notifier=OutboxNotifier(tmp_path / "outbox"),
        engine=engine,
        catalogue=catalogue,
        clock=clock,
    )
    await engine.dispose()


async def test_reload_replaces_the_book(file_registry: Registry, tmp_path: Path) -> None:
    """build_registry loads the settings' file; a reload puts the new file in force, and a bad
    file raises and leaves the old book in force."""
    registry = file_registry
    assert registry.networks.names == ("Cipal", "Irisnet", "Infrax")
    assert registry.networks.plain_network("secondary", "198.51.100.3") == "Irisnet"
    path = tmp_path / "networks.toml"
    path.write_text('[Cipal]\nranges = ["203.0.113.0/28"]\nlistener = "secondary"\n')
    new = registry.reload_networks()
    assert registry.networks is new
    assert new.names == ("Cipal",)
    assert new.allows(["Cipal"], "203.0.113.1")
    assert new.plain_network("secondary", "203.0.113.1") == "Cipal"
    path.write_text('[Cipal]\nranges = ["203.0.113.0/28"]\nlistener = "nowhere"\n')
    with pytest.raises(NetworksError, match="nowhere"):
        registry.reload_networks()
    assert registry.networks is new
    path.unlink()
    assert registry.reload_networks().names == ()


async def test_reload_changes_who_logs_in(
    file_registry: Registry, ssh_keys: list[KeyPair], tmp_path: Path
) -> None:
    """A login after a reload is matched against the new ranges of the channel's network."""
    registry = file_registry
    await configured(registry, ssh_keys[0].public_line)
    ok(await _ftp(registry, ["Cipal"]))
    good = PasswordCredential(FTP_PASSWORD)
    before = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="192.0.2.7")
    assert isinstance(before, Principal)
    path = tmp_path / "networks.toml"
    path.write_text('[Cipal]\nranges = ["203.0.113.128/26"]\nlistener = "public"\n')
    registry.reload_networks()
    after = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="192.0.2.7")
    assert after == AuthFailure("network_not_allowed", networks=("Cipal",))
    moved = await registry.authenticate(TECH, good, channel=ChannelKind.ftp, peer="203.0.113.130")
    assert isinstance(moved, Principal)


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The admin command configures logging; put it back afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("logging_restored")
def test_admin_fails_cleanly_on_a_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid networks file: exit 2 and one line naming the file and the problem."""
    path = _write(tmp_path, '[Cipal]\nranges = ["192.0.2.0/28"]\nlistener = "dmz"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GATEWAY_PIPELINE__SERVICES_FILE", str(ROOT / "config" / "services.toml"))
    monkeypatch.setenv("GATEWAY_FTP__NETWORKS_FILE", str(path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = main(["admin", "enterprise", "list"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [err]
    assert err.startswith("gateway admin: ")
    assert str(path) in err
    assert "[Cipal] listener: 'dmz'" in err
