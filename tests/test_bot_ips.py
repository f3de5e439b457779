"""``bots.ips`` compares addresses as addresses: the ways an API may write one address all match it, networks
hold the addresses inside them, and an entry that is no address is matched as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifestats.bots import IpRule
from mocks.server import MockServer
from mocks.source import ListSource

from .conftest import job_settings, run

RULE = ["203.0.113.7", "2001:db8::1", " 198.51.100.23 ", "192.0.2.0/24", "2001:db8:ff::/48", "hashed-9f2c"]
RULE += ["::ffff:10.0.0.0/104"]  # an IPv4 network written as IPv6 (10.0.0.0/8)


@pytest.mark.parametrize(
    ("ip", "bot"),
    [
        ("203.0.113.7", True),
        (" 203.0.113.7\n", True),  # the same address with white space around it
        ("::ffff:203.0.113.7", True),  # an IPv4 address written as IPv6
        ("::ffff:cb00:7107", True),  # the same, in hexadecimal
        ("2001:DB8::1", True),  # upper case
        ("2001:0db8:0000:0000:0000:0000:0000:0001", True),  # written out in full
        ("198.51.100.23", True),  # the config's entry had spaces around it
        ("192.0.2.0", True),
        ("192.0.2.255", True),  # inside 192.0.2.0/24
        ("2001:db8:ff:1::5", True),  # inside 2001:db8:ff::/48
        ("hashed-9f2c", True),  # an entry that is no address: as written
        ("203.0.113.70", False),  # a longer address that starts the same
        ("203.000.113.007", False),  # leading zeros: octal to some readers, refused by Python's ipaddress
        ("192.0.3.1", False),
        ("2001:db8::2", False),
        ("2001:db8:fe::1", False),
        ("HASHED-9F2C", False),
        ("", False),
        ("not an address", False),
        ("203.0.113.7\x00", False),  # a NUL, which inet_pton refuses with ValueError
        ("\ud83d", False),  # a lone surrogate (half an emoji)
        ("203.0.113.7%eth0", False),
        ("10.20.30.40", True),  # inside ::ffff:10.0.0.0/104 (it matched no address at all)
        ("::ffff:10.20.30.40", True),
        ("11.0.0.1", False),
    ],
)
def test_an_ip_matches_as_an_address(ip: str, bot: bool) -> None:
    assert IpRule(RULE).matches(ip) is bot


@pytest.mark.parametrize(
    ("rule", "ip", "bot"),
    [
        ("::/0", "10.1.2.3", True),  # every address, IPv4 ones too (it matched no IPv4 address)
        ("::/0", "::ffff:10.1.2.3", True),
        ("::/0", "2001:db8::1", True),
        ("::ffff:0:0/80", "192.0.2.1", True),  # ::/80 holds the IPv4-mapped range
        ("::ffff:0:0/96", "192.0.2.1", True),  # exactly that range: 0.0.0.0/0
        ("2001:db8::/32", "192.0.2.1", False),  # an IPv6 network that does not hold it
        ("2001:db8::/32", "2001:db8::1", True),
    ],
)
def test_an_ipv6_network_holding_the_ipv4_mapped_range_holds_every_ipv4_address(rule: str, ip: str, bot: bool) -> None:
    assert IpRule([rule]).matches(ip) is bot


def test_an_empty_rule_matches_nothing() -> None:
    rule = IpRule([])
    assert not rule and not rule.matches("203.0.113.7")
    assert IpRule(["hashed-9f2c"]).hits({"hashed-9f2c", "203.0.113.7", None, 5}) == {"hashed-9f2c"}


WRITTEN = ["203.0.113.7", "::ffff:203.0.113.7", "2001:DB8::1", "192.0.2.44", "203.0.113.70", "10.0.0.1", None]


def test_a_job_counts_every_writing_of_a_bot_address_as_a_bot(state_dir: Path) -> None:
    """Before: only the text exactly as the config wrote it was a bot (the IPv6 writing, the upper case and
    the network's addresses were counted as visits)."""
    records = [{"id": i, "item": f"a{i % 5}", "ip": WRITTEN[i % len(WRITTEN)]} for i in range(1, 351)]
    bots = sum(1 for r in records if r["ip"] in ("203.0.113.7", "::ffff:203.0.113.7", "2001:DB8::1", "192.0.2.44"))
    with MockServer(ListSource(records)) as server:
        settings = job_settings(
            server.url,
            fields={"category": None, "visitor": None, "timestamp": None, "user_agent": None},
            bots={"ips": ["203.0.113.7", "2001:db8::1", "192.0.2.0/24"], "user_agents": []},
        )
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 0, outcome.message
    assert (outcome.report["records"]["bots"], outcome.report["records"]["counted"]) == (bots, 350 - bots)
    assert bots == 200
