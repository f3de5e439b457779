"""Bot records (SPEC section 2): by ip (``bots.ips``), by user-agent regular expression (``bots.user_agents``),
or by the community list of crawlers (``bots.known_crawlers``). An ip or user agent that is not a string is
no evidence either way. Verdicts are kept per distinct ip and user agent, so a page's records cost one
look per distinct value (the fast checks ask per column: :class:`lifestats.columnar.BotCheck`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any, Final


class IpRule:
    """``bots.ips``: addresses compared as addresses, not as text (``2001:DB8::1`` is ``2001:db8::1``, and an
    IPv4 address written as IPv6, ``::ffff:203.0.113.7``, is the IPv4 one), networks (``192.0.2.0/24``)
    holding the addresses inside them, and any other entry (a hashed or named address, as some APIs give
    them) matched as written. A record's ip is read once per distinct text, with ``inet_pton`` (a twentieth
    of ``ipaddress``'s cost: a crawl of distinct IPv6 visitors reads one per record)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.texts = frozenset(entries)
        self._addresses: set[bytes] = set()
        self._networks: list[tuple[int, int, int]] = []  # (bytes of its addresses, its first as an int, prefix)
        for entry in entries:
            packed = _packed(entry)
            if packed is not None:
                self._addresses.add(packed)
                continue
            network = _network(entry)
            if network is None:
                continue  # not an address: matched as written only
            self._networks.append((network.max_prefixlen // 8, int(network.network_address), network.prefixlen))
            if _holds_mapped(network):  # ::/0 say: every IPv4 address (read as 4 bytes) is inside it too
                self._networks.append((4, 0, 0))
        self._verdicts: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.texts)

    def matches(self, ip: str) -> bool:
        if ip in self.texts:
            return True
        if not (self._addresses or self._networks):
            return False
        verdict = self._verdicts.get(ip)
        if verdict is None:
            verdict = self._read(ip)
            if len(self._verdicts) < 100_000:
                self._verdicts[ip] = verdict
        return verdict

    def hits(self, distinct: set[Any]) -> set[Any]:
        """The ips among ``distinct`` values (any JSON values) that the rule matches."""
        return {ip for ip in distinct if isinstance(ip, str) and self.matches(ip)}

    def _read(self, ip: str) -> bool:
        packed = _packed(ip)
        if packed is None:
            return False
        if packed in self._addresses:
            return True
        value = int.from_bytes(packed, "big")
        for size, start, prefix in self._networks:
            shift = size * 8 - prefix
            if size == len(packed) and value >> shift == start >> shift:
                return True
        return False


def canonical_ips(entries: Sequence[str], *, stored: bool = False) -> list[str]:
    """``bots.ips`` as the rule reads them: each address in one spelling (``2001:DB8::1`` as ``2001:db8::1``,
    ``::ffff:203.0.113.7`` as ``203.0.113.7``), each network by its first address, other entries as written;
    sorted, without repeats. Two lists with equal canonical forms mark the same records as bots.

    An IPv6 network that holds every IPv4 address written as IPv6 (``::/0``) adds ``0.0.0.0/0``: it holds
    every IPv4 address too.

    ``stored``: a list from a checkpoint. An IPv4 network written as IPv6 (``::ffff:10.0.0.0/104``) is
    left as written there: this version stores it as the IPv4 one, so one written so comes from a version
    in which it matched no address, and must not compare equal to what it means now. Likewise a network
    such as ``::/0`` adds nothing there: this version stored ``0.0.0.0/0`` beside it, and one stored
    without it comes from a version in which it matched no IPv4 address."""
    canonical: set[str] = set()
    for entry in entries:
        packed = _packed(entry)
        if packed is not None:
            canonical.add(str(ipaddress.ip_address(packed)))
            continue
        network = _network(entry)
        if network is not None and stored and network.version == 4 and ":" in entry:
            canonical.add(entry)
            continue
        canonical.add(entry if network is None else str(network))
        if network is not None and _holds_mapped(network) and not stored:
            canonical.add("0.0.0.0/0")  # what it matches of IPv4 (one stored so was written by this version)
    return sorted(canonical)


_MAPPED_NETWORK: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def _holds_mapped(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether an IPv6 network holds every IPv4 address written as IPv6 (``::/0``, ``::ffff:0:0/80``): it
    then holds every IPv4 address, as addresses are read (``::ffff:a.b.c.d`` as ``a.b.c.d``)."""
    return isinstance(network, ipaddress.IPv6Network) and _MAPPED_NETWORK.subnet_of(network)


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A network entry (``192.0.2.0/24``), None for none; IPv4 networks written as IPv6
    (``::ffff:10.0.0.0/104``) as the IPv4 ones, since addresses written so are read as IPv4."""
    try:
        network = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        return None
    mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


_MAPPED: Final = bytes(10) + b"\xff\xff"  # an IPv4 address written as IPv6 (::ffff:a.b.c.d)


def _packed(text: str) -> bytes | None:
    """The address's 4 or 16 bytes (an IPv4-mapped IPv6 address as its IPv4 one), None for no address."""
    text = text.strip()
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the text
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    return packed[12:] if packed.startswith(_MAPPED) else packed


class BotFilter:
    """Bot records by ip, by user-agent regular expression, or by the known-crawler list."""

    def __init__(self, ips: Sequence[str], patterns: Sequence[str], known_crawlers: bool) -> None:
        self.ips = IpRule(ips)
        self.patterns = combined_patterns(patterns)
        self.known_crawlers = known_crawlers
        self._verdicts: dict[str, bool] = {}

    @property
    def active(self) -> bool:
        return bool(self.ips or self.patterns or self.known_crawlers)

    def is_bot(self, ip: Any, user_agent: Any) -> bool:
        """An ip or user agent that is not a string (a list, a number) is no evidence either way."""
        if isinstance(ip, str) and self.ips.matches(ip):
            return True
        if not isinstance(user_agent, str):
            return False
        verdict = self._verdicts.get(user_agent)
        if verdict is None:
            verdict = any(p.search(user_agent) for p in self.patterns)
            if not verdict and self.known_crawlers:
                import crawleruseragents

                verdict = crawleruseragents.is_crawler(user_agent)
            if len(self._verdicts) < 100_000:
                self._verdicts[user_agent] = verdict
        return verdict


_LEADING_FLAGS: Final = re.compile(r"\(\?[aiLmsux]+\)")


def combined_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """``bots.user_agents`` as few expressions as possible: whether any pattern's ``search`` finds a match
    is whether one alternation of them all does, and one search of an alternation costs about what one
    pattern's does (10,000 patterns searched one by one took 4-5 ms per distinct user agent).

    Patterns with the same flags (a leading ``(?i)`` read as a flag) are joined, each in a group of its
    own; a pattern with a capturing group (a backreference counts groups), or verbose (a comment would
    swallow the group's end), stays on its own, as does every pattern of a join that does not compile.
    """
    alone: list[re.Pattern[str]] = []
    joined: dict[int, list[str]] = {}
    for text in patterns:
        compiled = re.compile(text)
        if compiled.groups or compiled.flags & re.VERBOSE:
            alone.append(compiled)
            continue
        lead = _LEADING_FLAGS.match(text)
        joined.setdefault(compiled.flags, []).append(text[lead.end() :] if lead else text)
    out: list[re.Pattern[str]] = []
    for flags, texts in joined.items():
        if len(texts) == 1:
            out.append(re.compile(texts[0], flags))
            continue
        try:
            out.append(re.compile("|".join(f"(?:{text})" for text in texts), flags))
        except re.error:
            out.extend(re.compile(text, flags) for text in texts)
    return out + alone
