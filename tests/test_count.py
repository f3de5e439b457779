"""Counting pages of records: validity, bots, duplicates, slice bounds, windows and series."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from lifestats.config import load_settings
from lifestats.count import PageCounter, Rejected, SliceCursor, parse_timestamp
from lifestats.report import build_report
from lifestats.stats import Partial

from .test_records_property import window_bounds

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


def count(
    records: list, begin: int = 0, end: int | None = None, as_of: datetime = AS_OF, **sections: dict
) -> tuple[dict, Partial]:
    s = settings(**sections)
    partial = Partial()
    PageCounter(s, as_of).count_page(partial, records, begin, SliceCursor(begin, end, begin - 1))
    # Through the checkpoint's bytes, as the aggregator sees it.
    return build_report(Partial.from_bytes(partial.to_bytes()), s, as_of, {}, partial=False), partial


def test_timestamps_in_every_accepted_form() -> None:
    # Epoch microseconds, exactly.
    assert parse_timestamp("2026-03-14T10:00:00+00:00") == 1773482400_000000
    assert parse_timestamp("2026-03-14T10:00:00Z") == 1773482400_000000
    assert parse_timestamp("2026-03-14T15:30:00+05:30") == 1773482400_000000
    assert parse_timestamp(1773482400) == 1773482400_000000
    assert parse_timestamp(1773482400.25) == 1773482400_250000
    assert parse_timestamp(1773482400250) == 1773482400_250000
    assert parse_timestamp(None) is None


@pytest.mark.parametrize(
    "text", ["2026-03-14t10:00:00z", "2026-03-14t10:00:00.25Z", "2026-03-14T10:00:00z", "2026-03-14t15:30:00+05:30"]
)
def test_rfc_3339_lower_case_t_and_z_are_read(text: str) -> None:
    """RFC 3339 (section 5.6) allows a lower-case "t" and "z"; a "z" was rejected as "not ISO 8601"."""
    fraction = 250_000 if ".25" in text else 0
    assert parse_timestamp(text) == 1773482400_000000 + fraction
    report, _ = count([{"id": 1, "item": 10, "ts": text}])
    assert report["records"]["rejected"] == 0 and report["windows"]["yesterday"]["visits"] == 1


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
    assert report["records"] == {"fetched": 15, "counted": 8, "rejected": 5, "bots": 2, "duplicates": 0, "future": 0}
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


@pytest.mark.parametrize("timezone", ["UTC", "America/New_York"])
def test_the_last_microseconds_of_the_year_9999_are_counted(timezone: str) -> None:
    # As a float, 253402300799.999999 rounds up to the first instant of the year 10000: the instant is in
    # the year 9999 all the same (in UTC and in New York), so the record counts, on 31 December 9999.
    stamps = ["9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.99999+00:00", "9999-12-31T18:59:59.999999-05:00"]
    records = [{"id": i, "item": 1, "ts": stamp} for i, stamp in enumerate(stamps)]
    records.append({"id": 9, "item": 1, "ts": "9999-12-31T19:00:00-05:00"})  # the year 10000 in UTC: rejected
    report, _ = count(records, stats={"timezone": timezone, "series": "year"})
    assert report["records"]["counted"] == 3 and report["records"]["rejected"] == 1
    assert report["records"]["future"] == 3 and report["windows"]["all"]["visits"] == 3


def test_an_integer_item_beyond_64_bits_is_rejected_for_its_size_not_its_type() -> None:
    # A JSON integer past 64 bits reaches the count as orjson reads it, a float: the reason says why.
    records = [{"id": 1, "item": float(2**70)}, {"id": 2, "item": -1e30}, {"id": 3, "item": 2.5}, {"id": 4, "item": 7}]
    report, partial = count(records)
    assert report["records"]["rejected"] == 3
    assert [r["reason"] for r in partial.rejects] == [
        "item is a number outside the 64-bit integer range",
        "item is a number outside the 64-bit integer range",
        "item has type float",
    ]


def test_slice_bounds_duplicates_and_records_below_the_offset() -> None:
    # A page that starts below the slice (as the Lifesum server answers), repeats an id, and is not sorted
    # (records inside a page may come in any order: 9 is a record of its own, not a repeat).
    records = [{"id": i, "item": 1} for i in (5, 8, 10, 10, 11, 9, 14, 15)]
    report, _ = count(records, begin=8, end=15)
    assert report["records"] == {"fetched": 6, "counted": 5, "rejected": 0, "bots": 0, "duplicates": 1, "future": 0}


def test_a_record_without_an_id_at_a_slice_boundary_is_rejected_by_one_slice_only() -> None:
    # The server answers an offset with the records from it up, and serves the id-less record at the
    # position of id 100. Slice [90, 100) sees it after 98; slice [100, 200) sees it leading its first page.
    # It belongs to the slice of the record before it, so the two slices together reject it once.
    broken = {"id": "x100", "item": 1}
    counter = PageCounter(settings(), AS_OF)
    below, above = Partial(), Partial()
    counter.count_page(
        below,
        [{"id": 97, "item": 1}, {"id": 98, "item": 1}, broken, {"id": 101, "item": 1}],
        90,
        SliceCursor(90, 100, 89),
    )
    counter.count_page(above, [broken, {"id": 101, "item": 1}], 100, SliceCursor(100, 200, 99))
    total = below.merge(above)
    assert total.records["rejected"] == 1
    assert total.records["fetched"] == 4  # 97, 98, the id-less record, 101


def test_a_record_without_an_id_leading_a_later_page_of_the_slice_is_rejected_once() -> None:
    # Page 1 ends at 98; page 2, asked for at offset 99, leads with the id-less record: inside the slice.
    broken = {"id": None, "item": 1}
    counter = PageCounter(settings(), AS_OF)
    partial = Partial()
    cursor = SliceCursor(90, 200, 89)
    counter.count_page(partial, [{"id": 97, "item": 1}, {"id": 98, "item": 1}], 90, cursor)
    counter.count_page(partial, [broken, {"id": 101, "item": 1}], 99, cursor)
    counter.count_page(partial, [broken, {"id": 101, "item": 1}], 99, cursor)  # the same page served again
    assert partial.records["rejected"] == 1
    assert partial.records["fetched"] == 5  # 97, 98, the id-less record, 101 twice (once a duplicate)


def test_ranking_ties_break_by_id_numbers_before_strings() -> None:
    records = [{"id": i, "item": item} for i, item in enumerate(["b", 10, "a", 2, "B", 10, 2])]
    report, _ = count(records, stats={"top_items": 4})
    assert [row["id"] for row in report["windows"]["all"]["top_items"]] == [2, 10, "B", "a"]


def test_without_visitor_or_timestamp_fields() -> None:
    report, _ = count([{"id": 1, "item": 3, "visitor": "u", "ts": 5}], fields={"id": "id", "item": "item"}, bots={})
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
    as_of = datetime(2026, 4, 1, 12, tzinfo=UTC)
    report, _ = count(records, as_of=as_of, stats={"timezone": "Europe/Stockholm"})
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
    report, _ = count(records, as_of=datetime(2026, 1, 1, 0, 10, tzinfo=UTC), stats={"series": bucket})
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
    report, _ = count(records, as_of=datetime(2026, 1, 5, 1, tzinfo=UTC), stats={"series": "week"})
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


# ------------------------------------------------------------------------ hostile values: never an exception

FAR_AHEAD = "2036-03-15T12:00:00+00:00"  # ten years after AS_OF


@pytest.mark.parametrize(
    ("record", "outcome"),
    [
        ({"ip": ["6.6.6.6"]}, "counted"),  # an unhashable ip: not a bot by ip (was a TypeError)
        ({"ip": {"v4": "6.6.6.6"}}, "counted"),
        ({"ip": 6}, "counted"),
        ({"ua": ["BadBot"]}, "counted"),
        ({"visitor": 2**64, "category": [1]}, "counted"),  # optional keys of the wrong kind: missing
        ({"visitor": {"id": 1}, "category": 1.5}, "counted"),
        ({"ts": 10**15}, "rejected"),  # milliseconds in the year 33658
        ({"ts": 1e15}, "rejected"),
        ({"ts": -(10**12)}, "rejected"),  # seconds (a negative number is seconds): the year -29719
        ({"ts": -1e12}, "rejected"),
        ({"ts": 10**400}, "rejected"),  # too big for a float
        ({"ts": -(10**400)}, "rejected"),
        ({"ts": float("nan")}, "rejected"),
        ({"ts": float("inf")}, "rejected"),
        ({"ts": "9999-12-31T23:30:00-05:00"}, "rejected"),  # the year 10000 in UTC
        ({"ts": "0001-01-01T00:30:00+01:00"}, "rejected"),  # the year 0 in UTC
        ({"ts": "2026-03-14T10:00:00\x00+00:00"}, "rejected"),
        ({"ts": "\x1b[2J"}, "rejected"),
        ({"ts": "2026-03-14T10:00:00+24:00"}, "rejected"),
        ({"ts": {"$date": 1}}, "rejected"),
        ({"item": 1.0}, "rejected"),
        ({"item": 2**63}, "rejected"),  # an integer outside the 64-bit range
        ({"item": [1]}, "rejected"),
        ({"item": {"id": 1}}, "rejected"),
        ({"item": False}, "rejected"),
        ({"item": None, "ip": "6.6.6.6"}, "rejected"),  # unusable and a bot: rejected
        ({"ts": "soon", "ua": "BadBot"}, "rejected"),
        ({"id": 2**63}, "rejected"),
        ({"id": -(2**63) - 1}, "rejected"),
        ({"id": 10**30}, "rejected"),
        ({"id": "12a"}, "rejected"),
        ({"id": 1.0}, "rejected"),
        ({"ts": "9999-12-31T23:30:00+00:00"}, "future"),
        ({"ts": 253_402_300_799_999}, "future"),  # ... in milliseconds
        ({"ts": FAR_AHEAD}, "future"),
        ({"ts": "0001-01-01T00:30:00+00:00"}, "counted"),  # long ago, but a real instant
        ({"ts": -86_400}, "counted"),  # 1969-12-31
    ],
)
def test_every_hostile_value_ends_counted_rejected_or_missing(record: dict, outcome: str) -> None:
    record = {"id": 7, "item": 3, **record}
    report, partial = count([{"id": 1, "item": 3, "visitor": "u"}, record], begin=-(2**63))
    records = report["records"]
    assert records["fetched"] == 2
    assert records["fetched"] == records["counted"] + records["rejected"] + records["bots"] + records["duplicates"]
    expected = {"counted": 1, "rejected": 0, "future": 0}
    expected["counted" if outcome != "rejected" else "rejected"] += 1
    expected["future"] += outcome == "future"
    assert {k: records[k] for k in expected} == expected
    assert records["bots"] == 0
    if outcome == "rejected":
        assert len(partial.rejects) == 1 and partial.rejects[0]["reason"]
    else:
        assert report["windows"]["all"]["top_items"] == [{"id": 3, "visits": 2, "distinct_visitors": 1}]
    assert len(report["series"]["points"]) <= 5000


@pytest.mark.parametrize(
    ("timezone", "stamp", "outcome"),
    [
        ("UTC", "9999-12-31T23:30:00+00:00", "future"),
        ("Asia/Kolkata", "9999-12-31T23:30:00+00:00", "rejected"),  # 10000-01-01T05:00 local
        ("UTC", "0001-01-01T00:30:00+00:00", "counted"),
        ("America/New_York", "0001-01-01T00:30:00+00:00", "rejected"),  # the year 0 in local mean time
        ("America/New_York", "0001-01-01T04:56:02+00:00", "counted"),  # 0001-01-01T00:00:00-04:56:02
        ("America/New_York", "0001-01-01T04:56:01+00:00", "rejected"),
    ],
)
def test_a_timestamp_must_name_an_instant_in_the_time_zone_too(timezone: str, stamp: str, outcome: str) -> None:
    report, _ = count([{"id": 1, "item": 1, "ts": stamp}], stats={"timezone": timezone})
    records = report["records"]
    assert (records["counted"], records["rejected"], records["future"]) == (
        outcome != "rejected",
        outcome == "rejected",
        outcome == "future",
    )


def test_epoch_numbers_seconds_or_milliseconds() -> None:
    assert parse_timestamp(10**11) == 10**17  # not above 10^11: seconds (the year 5138)
    assert parse_timestamp(10**11 + 1) == 100_000_000_001_000  # above: milliseconds (1973)
    assert parse_timestamp(-1) == -1_000_000  # negative numbers are seconds before 1970
    assert parse_timestamp(-62_135_596_800) == -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
    assert parse_timestamp("2026-03-14T15:30:00.000001+05:30") == 1773482400_000001
    for bad in (-62_135_596_801, 253_402_300_800_000, 2.534023008e14, -1e12, "0001-01-01T00:00:00+00:01"):
        with pytest.raises(Rejected):
            parse_timestamp(bad)


def test_ids_across_the_signed_64_bit_range() -> None:
    records = [{"id": i, "item": 1} for i in (-(2**63), -1, 0, 2**63 - 1)] + [{"id": 2**63, "item": 1}]
    partial = Partial()
    cursor = SliceCursor(-(2**63), None, -(2**63) - 1)
    PageCounter(settings(), AS_OF).count_page(partial, records, -(2**63), cursor)
    assert {k: partial.records[k] for k in ("fetched", "counted", "rejected")} == {
        "fetched": 5,
        "counted": 4,
        "rejected": 1,
    }
    assert partial.rejects[0]["record"] == {"id": 2**63, "item": 1}
    assert cursor.high_water == 2**63 - 1
    assert Partial.from_bytes(partial.to_bytes()).records == partial.records


def test_rejected_samples_survive_the_checkpoint_whatever_they_hold() -> None:
    hostile = {"id": 1, "item": [2**70, float("nan")], "ts": "\x1b[2J"}
    _, partial = count([hostile])
    again = Partial.from_bytes(partial.to_bytes())
    assert again.records["rejected"] == 1
    assert "1180591620717411303424" in str(again.rejects[0]["record"])


# ------------------------------------------------------------------------ the series: bounded and honest


def starts(report: dict) -> list[str]:
    return [p["start"] for p in report["series"]["points"]]


def test_a_day_whose_midnight_the_clocks_skip_starts_at_its_first_local_time() -> None:
    # America/Santiago: on 2025-09-07 the clocks go from 23:59:59-04:00 to 01:00:00-03:00 (04:00 UTC).
    stamps = ["2025-09-07T03:59:59Z", "2025-09-07T04:00:00Z", "2025-09-07T05:30:00Z", "2025-09-08T03:00:00Z"]
    records = [{"id": i, "item": 1, "ts": t} for i, t in enumerate(stamps)]
    as_of = datetime.fromisoformat("2025-09-08T12:00:00-03:00")
    report, _ = count(records, as_of=as_of, stats={"timezone": "America/Santiago", "series": "day"})
    points = [(p["start"], p["visits"]) for p in report["series"]["points"]]
    assert points == [
        ("2025-09-06T00:00:00-04:00", 1),
        ("2025-09-07T01:00:00-03:00", 2),  # 04:00 UTC: the first instant of the local day
        ("2025-09-08T00:00:00-03:00", 1),
    ]


def test_a_day_the_zone_skipped_is_no_point_of_the_day_series() -> None:
    """Pacific/Apia went from 2011-12-29T23:59:59-10:00 to 2011-12-31T00:00:00+14:00 (10:00 UTC): there was
    no 30 December. The series held a point for it, with the same start as the 31st's (SPEC audit)."""
    stamps = ["2011-12-29T22:00:00Z", "2011-12-30T09:59:00Z", "2011-12-30T22:00:00Z"]  # 29th 12:00, 23:59; 31st
    records = [{"id": i, "item": 1, "ts": t} for i, t in enumerate(stamps)]
    as_of = datetime.fromisoformat("2012-01-01T12:00:00+14:00")
    for bucket, expected in {
        "day": [("2011-12-29T00:00:00-10:00", 2), ("2011-12-31T00:00:00+14:00", 1), ("2012-01-01T00:00:00+14:00", 0)],
        "week": [("2011-12-26T00:00:00-10:00", 3)],
    }.items():
        report, _ = count(records, as_of=as_of, stats={"timezone": "Pacific/Apia", "series": bucket})
        assert [(p["start"], p["visits"]) for p in report["series"]["points"]] == expected


@pytest.mark.parametrize("sep", ["T", " "])  # "T": the fast column checks; " ": the per-record path
def test_a_record_stamped_exactly_at_as_of_counts_in_all_only(sep: str) -> None:
    stamps = ["2026-03-15T11:59:59Z", "2026-03-15T12:00:00Z", "2026-03-15T12:00:01Z"]  # AS_OF is 12:00:00Z
    records = [{"id": i, "item": i, "visitor": i, "ts": t.replace("T", sep)} for i, t in enumerate(stamps)]
    report, _ = count(records, stats={"series": "minute"})
    assert report["records"]["counted"] == 3 and report["records"]["future"] == 1  # after as_of: one
    assert report["windows"]["all"]["visits"] == 3
    assert report["windows"]["this_year"]["visits"] == 1  # [1 January, as_of)
    # The series holds the records stamped before as_of (SPEC section 3), up to the bucket of as_of.
    points = report["series"]["points"]
    assert [(p["start"], p["visits"]) for p in points] == [
        ("2026-03-15T11:59:00+00:00", 1),
        ("2026-03-15T12:00:00+00:00", 0),
    ]


def test_an_outlier_far_ahead_is_future_and_allocates_nothing_large() -> None:
    import tracemalloc

    records = [{"id": 1, "item": 1, "ts": "2026-03-15T11:58:30Z"}, {"id": 2, "item": 1, "ts": FAR_AHEAD}]
    tracemalloc.start()
    try:
        report, _ = count(records, stats={"series": "minute"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report["records"]["counted"] == 2 and report["records"]["future"] == 1
    assert report["windows"]["all"]["visits"] == 2 and report["windows"]["this_year"]["visits"] == 1
    assert starts(report) == ["2026-03-15T11:58:00+00:00", "2026-03-15T11:59:00+00:00", "2026-03-15T12:00:00+00:00"]
    assert "truncated_before" not in report["series"]
    assert peak < 20_000_000  # before: 5.3 million points


def test_an_outlier_long_ago_cuts_the_series_at_max_points() -> None:
    records = [{"id": 1, "item": 1, "ts": "2016-03-15T12:00:00Z"}, {"id": 2, "item": 1, "ts": "2026-03-15T11:00:00Z"}]
    report, partial = count(records, stats={"series": "minute"})
    points = report["series"]["points"]
    first = datetime(2026, 3, 15, 12, tzinfo=UTC) - timedelta(minutes=4999)
    assert len(points) == 5000 and points[0]["start"] == first.isoformat() == "2026-03-12T00:41:00+00:00"
    assert report["series"]["truncated_before"] == points[0]["start"]
    assert sum(p["visits"] for p in points) == 1 and report["windows"]["all"]["visits"] == 2
    assert partial.stats is not None and partial.series_cut == 1  # the old record was never kept as a point
    span = partial.stats.bucket_span()
    assert span is not None and span[0] == span[1]  # one bucket kept: the recent record's


@pytest.mark.parametrize(
    ("limit", "expected", "truncated"),
    [
        (1, ["2026-03-10"], True),
        (3, ["2026-03-08", "2026-03-09", "2026-03-10"], True),
        (10, [f"2026-03-{d:02d}" for d in range(1, 11)], False),
        (11, [f"2026-03-{d:02d}" for d in range(1, 11)], False),
    ],
)
def test_series_max_points(limit: int, expected: list[str], truncated: bool) -> None:
    records = [{"id": d, "item": 1, "ts": f"2026-03-{d:02d}T10:00:00Z"} for d in range(1, 11)]
    as_of = datetime(2026, 3, 10, 12, tzinfo=UTC)
    report, _ = count(records, as_of=as_of, stats={"series_max_points": limit})
    assert starts(report) == [f"{d}T00:00:00+00:00" for d in expected]
    assert [p["visits"] for p in report["series"]["points"]] == [1] * len(expected)
    assert report["series"].get("truncated_before") == (f"{expected[0]}T00:00:00+00:00" if truncated else None)


def test_a_series_counted_with_fewer_points_never_shows_what_it_dropped() -> None:
    """A checkpoint counted with series_max_points 3, reported with 10: the report starts where the counts
    start, and says it was cut."""
    records = [{"id": d, "item": 1, "ts": f"2026-03-{d:02d}T10:00:00Z"} for d in range(1, 11)]
    as_of = datetime(2026, 3, 10, 12, tzinfo=UTC)
    _, partial = count(records, as_of=as_of, stats={"series_max_points": 3})
    wide = settings(stats={"series_max_points": 10})
    report = build_report(Partial.from_bytes(partial.to_bytes()), wide, as_of, {}, partial=False)
    assert starts(report)[0] == report["series"]["truncated_before"]
    assert [p["visits"] for p in report["series"]["points"]] == [1] * len(report["series"]["points"])


def test_the_series_runs_to_the_bucket_of_as_of_with_empty_buckets() -> None:
    records = [{"id": 1, "item": 1, "ts": "2026-03-12T10:00:00Z"}]
    report, _ = count(records)
    assert starts(report) == [f"2026-03-{d}T00:00:00+00:00" for d in (12, 13, 14, 15)]
    assert [p["visits"] for p in report["series"]["points"]] == [1, 0, 0, 0]


@pytest.mark.parametrize(
    ("bucket", "as_of", "stamps", "expected"),
    [
        (
            "month",
            datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
            ["9999-11-15T00:00:00Z", "9999-12-31T23:30:00Z"],
            ["9999-11-01T00:00:00+00:00", "9999-12-01T00:00:00+00:00"],
        ),
        (
            "year",
            datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
            ["9998-06-01T00:00:00Z"],
            ["9998-01-01T00:00:00+00:00", "9999-01-01T00:00:00+00:00"],
        ),
        ("month", AS_OF, ["2026-03-01T00:00:00Z", "9999-12-31T23:30:00Z"], ["2026-03-01T00:00:00+00:00"]),
        (
            "hour",
            datetime(1, 1, 1, 1, 30, tzinfo=UTC),
            ["0001-01-01T00:00:00Z"],
            ["0001-01-01T00:00:00+00:00", "0001-01-01T01:00:00+00:00"],
        ),
        (
            "week",
            datetime(1, 1, 10, tzinfo=UTC),
            ["0001-01-01T00:00:00Z"],
            ["0001-01-01T00:00:00+00:00", "0001-01-08T00:00:00+00:00"],
        ),
    ],
)
def test_series_at_the_ends_of_the_calendar(
    bucket: str, as_of: datetime, stamps: list[str], expected: list[str]
) -> None:
    records = [{"id": i, "item": 1, "ts": t} for i, t in enumerate(stamps)]
    report, _ = count(records, as_of=as_of, stats={"series": bucket})
    assert starts(report) == expected


def test_as_of_in_the_year_1_counts_and_reports() -> None:
    as_of = datetime(1, 1, 2, tzinfo=UTC)
    report, _ = count([{"id": 1, "item": 1, "ts": "0001-01-01T12:00:00Z"}], as_of=as_of)
    assert report["windows"]["yesterday"]["visits"] == 1 and report["windows"]["last_30_days"]["visits"] == 1
    assert starts(report) == ["0001-01-01T00:00:00+00:00", "0001-01-02T00:00:00+00:00"]
    with pytest.raises(ValueError, match="outside the years 1 to 9999 in America/New_York"):
        PageCounter(settings(stats={"timezone": "America/New_York"}), datetime(1, 1, 1, tzinfo=UTC))


# Europe/Stockholm moves to summer time on the last Sunday of March (2026-03-29, 01:00 UTC: 02:00 local
# becomes 03:00) and back on the last Sunday of October (2026-10-25, 01:00 UTC: 03:00 local becomes 02:00).
@pytest.mark.parametrize(
    ("bucket", "stamps", "as_of", "expected"),
    [
        (
            "hour",
            ["2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"],
            "2026-03-29T02:00:00Z",
            [("2026-03-29T01:00:00+01:00", 1), ("2026-03-29T03:00:00+02:00", 1), ("2026-03-29T04:00:00+02:00", 0)],
        ),
        (
            "hour",
            ["2026-10-25T00:15:00Z", "2026-10-25T01:15:00Z"],
            "2026-10-25T02:30:00Z",
            [("2026-10-25T02:00:00+02:00", 1), ("2026-10-25T02:00:00+01:00", 1), ("2026-10-25T03:00:00+01:00", 0)],
        ),
        (
            "minute",
            ["2026-03-29T00:59:30Z", "2026-03-29T01:00:10Z"],
            "2026-03-29T01:01:00Z",
            [("2026-03-29T01:59:00+01:00", 1), ("2026-03-29T03:00:00+02:00", 1), ("2026-03-29T03:01:00+02:00", 0)],
        ),
        (
            "minute",
            ["2026-10-25T00:59:30Z", "2026-10-25T01:00:30Z"],
            "2026-10-25T01:01:30Z",
            [("2026-10-25T02:59:00+02:00", 1), ("2026-10-25T02:00:00+01:00", 1), ("2026-10-25T02:01:00+01:00", 0)],
        ),
    ],
)
def test_hour_and_minute_buckets_are_elapsed_time_around_offset_changes(
    bucket: str, stamps: list[str], as_of: str, expected: list[tuple[str, int]]
) -> None:
    records = [{"id": i, "item": 1, "ts": t} for i, t in enumerate(stamps)]
    report, _ = count(
        records, as_of=datetime.fromisoformat(as_of), stats={"series": bucket, "timezone": "Europe/Stockholm"}
    )
    assert [(p["start"], p["visits"]) for p in report["series"]["points"]] == expected


@pytest.mark.parametrize(
    ("timezone", "stamps", "as_of", "expected"),
    [
        # whole local hours in a half-hour zone
        (
            "Asia/Kolkata",
            ["2026-03-15T00:10:00Z"],
            "2026-03-15T00:40:00Z",
            ["2026-03-15T05:00:00+05:30", "2026-03-15T06:00:00+05:30"],
        ),
        # Lord Howe Island moves from +10:30 to +11:00 at 15:30 UTC (02:00 local becomes 02:30): a half-hour bucket
        (
            "Australia/Lord_Howe",
            ["2025-10-04T15:10:00Z", "2025-10-04T15:40:00Z"],
            "2025-10-04T16:05:00Z",
            ["2025-10-05T01:00:00+10:30", "2025-10-05T02:30:00+11:00", "2025-10-05T03:00:00+11:00"],
        ),
        # ... and back at 15:00 UTC on 2026-04-05 (02:00 local becomes 01:30)
        (
            "Australia/Lord_Howe",
            ["2026-04-04T14:50:00Z", "2026-04-04T15:10:00Z"],
            "2026-04-04T15:40:00Z",
            ["2026-04-05T01:00:00+11:00", "2026-04-05T01:30:00+10:30", "2026-04-05T02:00:00+10:30"],
        ),
    ],
)
def test_hour_buckets_start_on_whole_local_hours(
    timezone: str, stamps: list[str], as_of: str, expected: list[str]
) -> None:
    records = [{"id": i, "item": 1, "ts": t} for i, t in enumerate(stamps)]
    report, _ = count(records, as_of=datetime.fromisoformat(as_of), stats={"series": "hour", "timezone": timezone})
    assert starts(report) == expected


# -- the column-by-column path against the record-by-record one ----------------------------------------------


@st.composite
def hostile_pages(draw: st.DrawFn, as_of: datetime) -> list[list[Any]]:
    """Pages of mostly plausible records with integer ids (repeats and records below the slice included),
    sometimes a record that is not an object or whose id is missing, a string or out of range."""
    from tests.test_columnar import hostile_records

    pages = []
    for _ in range(draw(st.integers(1, 3))):
        page: list[Any] = []
        for _ in range(draw(st.integers(0, 40))):
            record = draw(hostile_records(as_of))
            kind = draw(st.integers(0, 30))
            record["id"] = draw(st.integers(-5, 60))
            if kind == 0:
                del record["id"]
            elif kind == 1:
                record["id"] = str(record["id"])
            elif kind == 2:
                record["id"] = 2**64
            page.append(record if kind != 3 else [record])
        pages.append(page)
    return pages


def _every_way(
    pages: list[list[Any]],
    timezone: str,
    series: str,
    as_of: datetime,
    sliced: bool,
    end: int | None = 50,
    mode: str = "exact",
) -> list[tuple[dict, list, int | None]]:
    from lifestats.seen import SeenIds

    s = settings(stats={"timezone": timezone, "series": series, "series_max_points": 50, "mode": mode})
    outcomes = []
    # Column by column, record by record, and column by column with pages held back in batches of at
    # most 16 rows (added when a batch is full, the rest when settled), as a worker counts them.
    for columnar, batch_rows in ((True, 0), (False, 0), (True, 16)):
        counter = PageCounter(s, as_of, columnar=columnar, batch_rows=batch_rows)
        partial = Partial()
        cursor, recent = SliceCursor(0, end, -1), SeenIds()
        for page in pages:
            if sliced:
                counter.count_page(partial, page, 0, cursor)
            else:
                counter.count_rows(partial, page, None, recent)
        counter.settle(partial)
        report = build_report(Partial.from_bytes(partial.to_bytes()), s, as_of, {}, partial=False)
        # The end-of-crawl field check's tallies: which fields some record had, over how many records.
        fields = sorted(k for k, v in partial.records.items() if k.startswith("having_") and v)
        checked = (partial.records["fields_checked"], fields)
        outcomes.append((report, partial.rejects, cursor.high_water if sliced else None, checked))
    return outcomes


@settings_(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.data(),
    timezone=st.sampled_from(["UTC", "Europe/Stockholm", "America/New_York", "Australia/Lord_Howe"]),
    series=st.sampled_from(["minute", "hour", "day", "week", "month", "year"]),
    sliced=st.booleans(),
    mode=st.sampled_from(["exact", "approx"]),
)
def test_pages_counted_column_by_column_give_the_same_report_and_rejects(
    data: st.DataObject, timezone: str, series: str, sliced: bool, mode: str
) -> None:
    """Every record's verdict, and so the report and the sample of rejects (in order), is the same whichever
    path counted it."""
    as_of = datetime(2026, 3, 15, 12, tzinfo=UTC)
    pages = data.draw(hostile_pages(as_of))
    fast, slow, batched = _every_way(pages, timezone, series, as_of, sliced, mode=mode)
    assert fast == slow == batched


def test_mock_pages_counted_column_by_column_give_the_same_report_and_rejects() -> None:
    from mocks.dataset import DatasetSpec, LazyDataset

    dataset = LazyDataset(DatasetSpec(seed=11, records=3000, malformed_share=0.05))
    records, _ = dataset.page(dataset.first_id, 3000)
    renamed = [
        {("ts" if k == "timestamp" else "ua" if k == "user_agent" else k): v for k, v in r.items()} for r in records
    ]
    pages = [renamed[i : i + 1000] for i in range(0, 3000, 1000)]
    as_of = datetime(2026, 3, 15, 12, tzinfo=UTC)
    for series, mode in (("day", "exact"), ("hour", "exact"), ("week", "approx")):
        shifted = [[dict(r, id=r["id"] - dataset.first_id) for r in page] for page in pages]
        fast, slow, batched = _every_way(shifted, "UTC", series, as_of, True, end=None, mode=mode)
        assert fast == slow == batched
        assert fast[0]["records"]["counted"] > 2500


def test_a_page_whose_timestamps_are_all_empty_texts_is_rejected_not_a_crash() -> None:
    report, partial = count([{"id": i, "item": 1, "ts": ""} for i in range(20)], stats={"mode": "approx"})
    assert report["records"]["rejected"] == 20
    assert {r["reason"] for r in partial.rejects} == {"timestamp '' is not ISO 8601"}


def test_rows_held_back_for_a_partial_that_was_dropped_are_not_added_to_the_next() -> None:
    """A worker holds pages' rows back until it settles the partial it sends; when a task fails, its
    partial is dropped, and what was held for it must not turn up in the next task's partial."""
    s = settings()
    counter = PageCounter(s, AS_OF, batch_rows=1000)
    page = [{"id": i, "item": "dropped", "visitor": i} for i in range(1, 21)]
    dropped = Partial()
    counter.count_page(dropped, page, 1, SliceCursor(1, None, 0))
    kept = Partial()
    counter.count_page(
        kept, [{"id": i, "item": "kept", "visitor": 1} for i in range(21, 31)], 21, SliceCursor(21, None, 20)
    )
    counter.settle(kept)
    report = build_report(Partial.from_bytes(kept.to_bytes()), s, AS_OF, {}, partial=False)
    window = report["windows"]["all"]
    assert [(row["id"], row["visits"]) for row in window["top_items"]] == [("kept", 10)]
    assert window["visits"] == 10


_FAR_WINDOWS = ("yesterday", "last_7_days", "last_30_days", "this_year")


def _far_truth(stamps: list[str], as_of: datetime, zone: str) -> tuple[dict[str, list[int]], int, int]:
    """Which records (by index) each dated window holds, how many are future and how many rejected,
    by datetime arithmetic alone."""
    tz = ZoneInfo(zone)
    bounds = window_bounds(as_of, tz)
    held: dict[str, list[int]] = {name: [] for name in bounds}
    future = rejected = 0
    for k, stamp in enumerate(stamps):
        moment = datetime.fromisoformat(stamp)
        try:
            moment.astimezone(tz)
        except OverflowError:
            rejected += 1
            continue
        future += moment > as_of
        for name, (lo, hi) in bounds.items():
            if lo <= moment < hi:
                held[name].append(k)
    return held, future, rejected


@pytest.mark.parametrize(
    ("as_of", "zone"),
    [
        ("3000-06-01T12:00:00+00:00", "UTC"),
        ("1000-06-01T12:00:00+00:00", "UTC"),
        ("9000-06-01T00:00:00.000001+00:00", "Europe/Stockholm"),
        ("9999-12-31T00:00:00+00:00", "Pacific/Kiritimati"),
        ("0001-01-03T00:00:00+00:00", "America/St_Johns"),
    ],
)
def test_fractions_of_a_second_far_from_1970_land_in_their_window(as_of: str, zone: str) -> None:
    """Instants were floats of epoch seconds, which hold 4 µs in the year 3000 and 30 µs in 9999: a record
    at 23:59:59.999999 counted in the next day, one a microsecond before as_of counted as at it, one a
    microsecond past it was no future one, and the years 1 and 9999 ended a few microseconds off in the
    stats time zone. Each record here is one microsecond (or a few) from a window's edge."""
    moment = datetime.fromisoformat(as_of)
    edges = [moment]
    day = moment.astimezone(ZoneInfo(zone)).replace(hour=0, minute=0, second=0, microsecond=0)
    for days in (0, 1, 7, 30):
        with contextlib.suppress(OverflowError):  # before the year 1
            edges.append(day - timedelta(days=days))
    edges.append(day.replace(month=1, day=1))
    if zone == "Pacific/Kiritimati":
        edges.append(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=day.tzinfo))  # the zone's last instant
    if zone == "America/St_Johns":
        edges.append(datetime(1, 1, 1, tzinfo=day.tzinfo))  # the zone's first midnight
    stamps = []
    for edge in edges:
        for shift in (-7, -1, 0, 1, 7):
            try:
                at = edge.astimezone(UTC) + timedelta(microseconds=shift)
            except OverflowError:
                continue
            stamps.append(at.isoformat())
    stamps = sorted(set(stamps))
    records = [{"id": k + 1, "item": k, "ts": stamp} for k, stamp in enumerate(stamps)]
    held, future, rejected = _far_truth(stamps, moment, zone)
    report, _ = count(records, as_of=moment, stats={"timezone": zone, "top_items": 1000})
    assert (report["records"]["future"], report["records"]["rejected"]) == (future, rejected)
    for name in _FAR_WINDOWS:
        assert sorted(row["id"] for row in report["windows"][name]["top_items"]) == held[name], name


@pytest.mark.parametrize("field", ["item", "unused"])
def test_values_nested_a_thousand_deep_are_rejected_not_a_crash(field: str) -> None:
    """An item (or, with no item, an unused field) nested 1,000 lists deep: the sample of rejects showed
    the record with repr(), which raised RecursionError, and the whole job ended with exit 1."""
    deep: list[object] = []
    for _ in range(1_000):
        deep = [deep]
    records = [{"id": 1, "item": "a", "ts": "2026-03-14T10:00:00Z"}, {"id": 2, field: deep}]
    report, partial = count(records)
    assert (report["records"]["counted"], report["records"]["rejected"]) == (1, 1)
    assert "nested too deeply" in str(partial.rejects[0]["record"])
