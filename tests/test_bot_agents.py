"""``bots.user_agents`` joined into few expressions: the same verdict as searching every pattern."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from lifestats.bots import BotFilter, combined_patterns

PATTERNS = [
    "(?i)googlebot",
    "(?i)bingbot|yandex",
    "crawler",
    "^curl/",
    "python-requests/\\d+",
    "(bot)\\1",  # a backreference: kept on its own
    "(?P<name>spider)-(?P=name)",
    "(?x) scra per  # a verbose pattern with a comment",
    "(?i)(?m)^head",  # two leading flag groups
    "[Ss]lurp$",
    "(?s)a.b",
    "\\bAhrefs",
]
AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1)",
    "mozilla googlebot",
    "GOOGLEBOT",
    "YandexBot",
    "my crawler",
    "Crawler",
    "curl/8.1",
    "xcurl/8.1",
    "python-requests/2",
    "python-requests/x",
    "botbot",
    "bot bot",
    "spider-spider",
    "spider-crawl",
    "scraper",
    "scra per",
    "line\nhead",
    "HEAD",
    "Yahoo! Slurp",
    "slurpy",
    "a\nb",
    "xAhrefsBot",
    "Ahrefs",
    "",
    "Mozilla/5.0 (Windows NT 10.0)",
]


def _each(patterns: list[str], agent: str) -> bool:
    return any(re.compile(p).search(agent) for p in patterns)


def test_joined_patterns_give_the_verdict_of_each_pattern_searched_alone() -> None:
    bots = BotFilter([], PATTERNS, known_crawlers=False)
    assert len(bots.patterns) < len(PATTERNS)  # joined
    for agent in AGENTS:
        assert bots.is_bot(None, agent) == _each(PATTERNS, agent), agent
    for k in range(len(PATTERNS)):  # each pattern alone, and every one but it
        one, others = [PATTERNS[k]], PATTERNS[:k] + PATTERNS[k + 1 :]
        for agent in AGENTS:
            assert BotFilter([], one, False).is_bot(None, agent) == _each(one, agent)
            assert BotFilter([], others, False).is_bot(None, agent) == _each(others, agent)


def test_ten_thousand_patterns_become_one_expression() -> None:
    patterns = [f"(?i)botname{k:05d}" for k in range(10_000)]
    assert len(combined_patterns(patterns)) == 1
    bots = BotFilter([], patterns, False)
    assert bots.is_bot(None, "Mozilla BOTNAME09999/1.0")
    assert not bots.is_bot(None, "Mozilla botname1/1.0")


_PIECES = st.sampled_from(["a", "b", "ab", "a|b", "^a", "b$", "a+", "[ab]", "a{2}", "(?:ab)", "\\d", "(?i)a", "."])


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.lists(_PIECES, min_size=1, max_size=3).map("".join), min_size=1, max_size=6),
    agent=st.text(alphabet="abAB1\n ", max_size=8),
)
def test_any_patterns_any_agent(patterns: list[str], agent: str) -> None:
    try:
        for p in patterns:
            re.compile(p)
    except re.error:  # the config refuses such a pattern before any request
        return
    assert BotFilter([], patterns, False).is_bot(None, agent) == _each(patterns, agent)
