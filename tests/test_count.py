"""Counting pages of records: validity, bots, duplicates, slice bounds, windows and series."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifestats.config import load_settings
from lifestats.count import PageCounter, Rejected, SliceCursor, parse_timestamp
from lifestats.report import build_report
from lifestats.stats import Partial

AS_OF = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
FIELDS = {
    "id": "id",
    "item": "item",
    "category": "category",
    "visitor": "visitor",
    "timestamp": "ts",
    "ip": "ip",
    "user_agent": "ua",
}


def settings(**sections: dict) -> object:
    overrides = {"fields": FIELDS, "bots": {"ips": ["6.6.6.6"], "user_agents": ["(?i)badbot"]}}
    overrides.update(sections)
    return load_settings(None, "test", environ={}, overrides=overrides)


def count(records: list, begin: int = 0, end: int | None = None, **sections: dict) -> tuple[dict, Partial]:
    s = settings(**sections)
    partial = Partial()
    PageCounter(s, AS_OF).count_page(partial, records, begin, SliceCursor(begin, end, begin - 1))
    return build_report(partial, s, AS_OF, {}, partial=False), partial


def test_timestamps_in_every_accepted_form() -> None:
    assert parse_timestamp("2026-03-14T10:00:00+00:00") == 1773482400.0
    assert parse_timestamp("2026-03-14T10:00:00Z") == 1773482400.0
    assert parse_timestamp("2026-03-14T15:30:00+05:30") == 1773482400.0
    assert parse_timestamp(1773482400) == 1773482400.0
    assert parse_timestamp(1773482400.25) == 1773482400.25
    assert parse_timestamp(1773482400250) == 1773482400.25
    assert parse_timestamp(None) is None


@pytest.mark.parametrize("bad", ["yesterday", "2025-02-30T10:00:00+00:00", "2025-03-01T10:00:00", True, [1], {}])
def test_unparseable_timestamps_are_rejected(bad: object) -> None:
    with pytest.raises(Rejected):
        parse_timestamp(bad)


def test_validity_bots_and_windows() -> None:
    records = [
        {"id": 1, "item": 10, "category": "a", "visitor": "u1", "ts": "2026-03-14T23:59:59+00:00"},  # yesterday
        {"id": 2, "item": 10, "category": "a", "visitor": "u2", "ts": "2026-03-08T00:00:00Z"},  # last 7 (edge)
        {"id": 3, "item": 20, "category": "b", "visitor": "u1", "ts": 1772236800},  # 2026-02-28: last 30
        {"id": 4, "item": "x", "category": None, "visitor": None, "ts": "2026-01-01T00:00:00+00:00"},  # this year
        {"id": 5, "item": 20, "visitor": 7, "ts": 1767225599000},  # 2025-12-31T23:59:59: only all
        {"id": 6, "item": 30, "category": "b", "visitor": "u3"},  # no timestamp: only all
        {"id": 7, "item": 30, "ts": "2026-03-15T12:00:00+00:00"},  # as_of itself: not this_year (half-open)
        {"id": 8, "item": None, "ts": 1},  # rejected: item
        {"id": 9, "item": 1.5},  # rejected: float item
        {"id": 10, "item": 10, "ts": "soon"},  # rejected: timestamp
        {"id": 11, "item": 10, "ip": "6.6.6.6"},  # bot by ip
        {"id": 12, "item": 10, "ua": "Mozilla BadBot/2"},  # bot by user agent
        {"id": 13, "item": True},  # rejected: bool item
        {"id": "14x", "item": 10},  # rejected: a string id that is not a decimal integer
        {"id": 15, "item": 10, "ts": "2026-03-01T00:00:00+00:00", "category": ["no"], "visitor": {"no": 1}},
    ]
    report, partial = count(records)
    assert report["records"] == {"fetched": 15, "counted": 8, "rejected": 5, "bots": 2, "duplicates": 0}
    windows = report["windows"]
    assert windows["all"]["visits"] == 8
    assert windows["all"]["distinct_visitors"] == 4  # u1, u2, 7, u3
    assert windows["all"]["top_items"] == [
        {"id": 10, "visits": 3, "distinct_visitors": 2},
        {"id": 20, "visits": 2, "distinct_visitors": 2},
        {"id": 30, "visits": 2, "distinct_visitors": 1},
        {"id": "x", "visits": 1, "distinct_visitors": 0},
    ]
    assert windows["all"]["top_categories"] == [{"id": "a", "visits": 2}, {"id": "b", "visits": 2}]
    assert windows["yesterday"]["visits"] == 1
    assert windows["last_7_days"]["visits"] == 2
    assert windows["last_30_days"]["visits"] == 4  # ids 1, 2, 3, 15
    assert windows["this_year"]["visits"] == 5  # ids 1, 2, 3, 4, 15 (not 7: as_of is excluded)
    reasons = [r["reason"] for r in partial.rejects]
    assert reasons == [
        "item is missing",
        "item has type float",
        "timestamp 'soon' is not ISO 8601",
        "item has type bool",
        "id is missing or not an integer",
    ]


def test_slice_bounds_duplicates_and_records_below_the_offset() -> None:
    # A page that starts below the slice (as the Lifesum server answers), repeats an id, and is not sorted
    # (records inside a page may come in any order: 9 is a record of its own, not a repeat).
    records = [{"id": i, "item": 1} for i in (5, 8, 10, 10, 11, 9, 14, 15)]
    report, _ = count(records, begin=8, end=15)
    assert report["records"] == {"fetched": 6, "counted": 5, "rejected": 0, "bots": 0, "duplicates": 1}


def test_ranking_ties_break_by_id_numbers_before_strings() -> None:
    records = [{"id": i, "item": item} for i, item in enumerate(["b", 10, "a", 2, "B", 10, 2])]
    report, _ = count(records, stats={"top_items": 4})
    assert [row["id"] for row in report["windows"]["all"]["top_items"]] == [2, 10, "B", "a"]


def test_without_visitor_or_timestamp_fields() -> None:
    report, _ = count([{"id": 1, "item": 3, "visitor": "u", "ts": 5}], fields={"id": "id", "item": "item"})
    assert list(report["windows"]) == ["all"]
    assert report["windows"]["all"]["distinct_visitors"] is None
    assert report["windows"]["all"]["top_items"] == [{"id": 3, "visits": 1, "distinct_visitors": None}]
    assert report["series"] == {"bucket": "day", "points": []}


def test_series_fills_empty_buckets_in_the_time_zone() -> None:
    records = [
        {"id": 1, "item": 1, "visitor": "a", "ts": "2026-03-28T23:30:00+00:00"},  # 2026-03-29 00:30 CET
        {"id": 2, "item": 1, "visitor": "b", "ts": "2026-03-29T22:30:00+00:00"},  # 2026-03-30 00:30 CEST
        {"id": 3, "item": 1, "visitor": "b", "ts": "2026-04-01T10:00:00+00:00"},
    ]
    report, _ = count(records, stats={"timezone": "Europe/Stockholm"})
    assert report["series"]["points"] == [
        {"start": "2026-03-29T00:00:00+01:00", "visits": 1, "distinct_visitors": 1},
        {"start": "2026-03-30T00:00:00+02:00", "visits": 1, "distinct_visitors": 1},
        {"start": "2026-03-31T00:00:00+02:00", "visits": 0, "distinct_visitors": 0},
        {"start": "2026-04-01T00:00:00+02:00", "visits": 1, "distinct_visitors": 1},
    ]


@pytest.mark.parametrize(
    ("bucket", "starts"),
    [
        ("week", ["2025-12-29T00:00:00+00:00"]),  # Wednesday and Thursday: one week
        ("month", ["2025-12-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]),
        ("year", ["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]),
        ("hour", ["2025-12-31T23:00:00+00:00", "2026-01-01T00:00:00+00:00"]),
    ],
)
def test_series_buckets(bucket: str, starts: list[str]) -> None:
    records = [{"id": 1, "item": 1, "ts": "2025-12-31T23:10:00Z"}, {"id": 2, "item": 1, "ts": "2026-01-01T00:10:00Z"}]
    report, _ = count(records, stats={"series": bucket})
    assert [p["start"] for p in report["series"]["points"]] == starts


@given(
    st.lists(
        st.fixed_dictionaries(
            {"id": st.integers(0, 50), "item": st.sampled_from([1, 2, "a"]), "visitor": st.sampled_from([1, "1", None])}
        ),
        max_size=40,
    ),
    st.integers(1, 40),
)
def test_merge_of_split_pages_equals_counting_at_once(records: list[dict], cut: int) -> None:
    records = sorted(records, key=lambda r: r["id"])
    s = settings()
    counter = PageCounter(s, AS_OF)
    whole = Partial()
    counter.count_page(whole, records, 0, SliceCursor(0, None, -1))
    first, second = Partial(), Partial()
    cursor = SliceCursor(0, None, -1)
    counter.count_page(first, records[:cut], 0, cursor)
    counter.count_page(second, records[cut:], 0, cursor)
    merged = Partial.from_bytes(first.to_bytes()).merge(Partial.from_bytes(second.to_bytes()))
    assert build_report(merged, s, AS_OF, {}, partial=False) == build_report(whole, s, AS_OF, {}, partial=False)


def test_weeks_start_on_monday() -> None:
    records = [{"id": 1, "item": 1, "ts": "2026-01-04T23:59:59Z"}, {"id": 2, "item": 1, "ts": "2026-01-05T00:00:00Z"}]
    report, _ = count(records, stats={"series": "week"})
    starts = [p["start"] for p in report["series"]["points"]]
    assert starts == ["2025-12-29T00:00:00+00:00", "2026-01-05T00:00:00+00:00"]


def test_known_crawlers_come_from_the_community_list() -> None:
    records = [
        {"id": 1, "item": 1, "ua": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"},
        {"id": 2, "item": 1, "ua": "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"},
    ]
    off, _ = count(records)
    on, _ = count(records, bots={"ips": [], "user_agents": [], "known_crawlers": True})
    assert (off["records"]["bots"], off["records"]["counted"]) == (0, 2)
    assert (on["records"]["bots"], on["records"]["counted"]) == (1, 1)
