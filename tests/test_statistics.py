"""The statistics interface and its exact reference, against ground truth computed in the tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifestats.statistics import (
    ALL,
    FUTURE,
    NO_BUCKET,
    NO_TIME,
    Columns,
    DayRange,
    Estimate,
    ExactStatistics,
    concatenated,
    decode_key,
    encode_key,
    local_days,
    report_fields,
    window_days,
)
from tests import stat_truth
from tests.stat_truth import TODAY, rank_order, truth


def _exact(data: stat_truth.Dataset, page: int = 1000) -> ExactStatistics:
    stats = ExactStatistics()
    for columns in data.pages(page):
        stats.add(columns)
    return stats


@pytest.mark.parametrize("skew", [None, 0.8, 1.2, 2.0])
def test_exact_statistics_equal_the_truth_in_every_window(skew: float | None) -> None:
    data = stat_truth.make(seed=7, n=20_000, skew=skew)
    stats = _exact(data, page=997)  # pages that straddle days
    for name, days in stat_truth.windows().items():
        expected = truth(data, days)
        assert stats.visits(days) == Estimate(expected.visits), name
        assert stats.distinct_visitors(days) == Estimate(expected.distinct_visitors), name
        rows = stats.top_items(days, 50)
        assert [(r.id, r.visits.value) for r in rows] == rank_order(expected.item_visits)[:50], name
        assert [r.distinct_visitors.value for r in rows] == [expected.item_visitors.get(r.id, 0) for r in rows]
        assert all(r.visits.bounds is None and r.distinct_visitors.bounds is None for r in rows)
        categories = stats.top_categories(days, 5)
        assert [(r.id, r.visits.value) for r in categories] == rank_order(expected.category_visits)[:5], name


def test_windows_exclude_undated_and_future_records_but_all_holds_them() -> None:
    data = stat_truth.make(seed=3, n=5000)
    stats = _exact(data)
    undated = int((data.days == NO_TIME).sum())
    future = int((data.days == FUTURE).sum())
    assert undated > 0 and future > 0
    assert stats.visits(DayRange(NO_TIME, NO_TIME)).value == undated
    assert stats.visits(DayRange(FUTURE, FUTURE)).value == future
    dated = stats.visits(DayRange(TODAY - 100, TODAY)).value
    assert stats.visits(ALL).value == dated + undated + future == len(data)
    assert stats.dated_days() == DayRange(int(data.days[data.days > NO_TIME].min()), TODAY)


def test_day_and_fine_series_points_equal_the_truth() -> None:
    data = stat_truth.make(seed=11, n=10_000, n_days=20)
    stats = _exact(data)
    weeks = [DayRange(first, first + 6) for first in range(TODAY - 27, TODAY, 7)]
    for span, point in zip(weeks, stats.day_points(weeks), strict=True):
        expected = truth(data, span)
        assert (point.visits.value, point.distinct_visitors.value) == (expected.visits, expected.distinct_visitors)
    dated_hours = data.hours[data.hours != NO_BUCKET]
    assert stats.bucket_span() == (int(dated_hours.min()), int(dated_hours.max()))
    first, last = TODAY * 24 - 30, TODAY * 24 + 5
    points = stats.bucket_points(first, last)
    assert sorted(points) == sorted(set(dated_hours[(dated_hours >= first) & (dated_hours <= last)].tolist()))
    for hour, point in points.items():
        expected = truth(data, ALL, hours=(hour, hour))
        assert (point.visits.value, point.distinct_visitors.value) == (expected.visits, expected.distinct_visitors)


def test_int_and_str_keys_stay_distinct_and_the_empty_string_is_a_key() -> None:
    stats = ExactStatistics()
    stats.add(
        Columns(
            items=[5, "5", "5", 5, 5, "", 1],
            categories=[1, "1", None, "1", 1, 1, None],
            visitors=["", 0, "0", None, "", 0, 0],
            days=np.full(7, TODAY, dtype=np.int64),
        )
    )
    restored = ExactStatistics.from_bytes(stats.to_bytes())
    for s in (stats, restored):
        rows = s.top_items(ALL, 10)
        assert [(r.id, r.visits.value, r.distinct_visitors.value) for r in rows] == [
            (5, 3, 1),
            ("5", 2, 2),
            (1, 1, 1),
            ("", 1, 1),
        ]
        assert [type(r.id) for r in rows] == [int, str, int, str]
        assert [(r.id, r.visits.value) for r in s.top_categories(ALL, 10)] == [(1, 3), ("1", 2)]
        assert s.distinct_visitors(ALL).value == 3  # "", 0 and "0"


def test_ranking_ties_break_by_id_numbers_first() -> None:
    stats = ExactStatistics()
    items = ["b", 10, "a", 2, "10", -1]
    stats.add(Columns(items, [None] * 6, [None] * 6, np.full(6, TODAY, dtype=np.int64)))
    assert [r.id for r in stats.top_items(ALL, 6)] == [-1, 2, 10, "10", "a", "b"]
    assert [r.distinct_visitors.value for r in stats.top_items(ALL, 6)] == [0] * 6


def test_window_days_follow_local_midnights() -> None:
    epoch = date(1970, 1, 1)

    def n(d: date) -> int:
        return (d - epoch).days

    as_of = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    got = window_days(as_of, ZoneInfo("UTC"))
    d = date(2026, 3, 15)
    assert got["yesterday"] == DayRange(n(d - timedelta(days=1)), n(d - timedelta(days=1)))
    assert got["last_7_days"] == DayRange(n(d - timedelta(days=7)), n(d - timedelta(days=1)))
    assert got["last_30_days"] == DayRange(n(d - timedelta(days=30)), n(d - timedelta(days=1)))
    assert got["this_year"] == DayRange(n(date(2026, 1, 1)), n(d))
    assert got["all"] == ALL
    # 23:30 UTC on 31 December is already 1 January in Berlin: a new year, and D is that day.
    late = window_days(datetime(2025, 12, 31, 23, 30, tzinfo=UTC), ZoneInfo("Europe/Berlin"))
    assert late["this_year"] == DayRange(n(date(2026, 1, 1)), n(date(2026, 1, 1)))
    assert late["yesterday"] == DayRange(n(date(2025, 12, 31)), n(date(2025, 12, 31)))


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        Columns([1, 2], [None], [None, None], np.zeros(2, dtype=np.int64))


def test_a_foreign_or_newer_body_is_refused_with_a_clear_error() -> None:
    body = ExactStatistics().to_bytes()
    with pytest.raises(ValueError, match="not exact statistics"):
        ExactStatistics.from_bytes(b"{}" + body)
    with pytest.raises(ValueError, match="format version 2"):
        ExactStatistics.from_bytes(body[:4] + (2).to_bytes(2, "little") + body[6:])
    with pytest.raises(ValueError, match="truncated"):
        ExactStatistics.from_bytes(_exact(stat_truth.make(seed=1, n=100)).to_bytes()[:-3])


@given(st.one_of(st.integers(-(2**63), 2**64), st.text()))
def test_encoded_keys_round_trip_with_their_type(key: int | str) -> None:
    decoded = decode_key(encode_key(key))
    assert decoded == key and type(decoded) is type(key)


def snapshot(stats: ExactStatistics) -> list[object]:
    """Everything a report can read, over every window, as plain values."""
    seen: list[object] = []
    for days in stat_truth.windows().values():
        seen.append(stats.visits(days))
        seen.append(stats.distinct_visitors(days))
        seen.append(stats.top_items(days, 1000))
        seen.append(stats.top_categories(days, 100))
    seen.append(stats.day_points([DayRange(TODAY - d, TODAY) for d in range(0, 30, 3)]))
    seen.append(stats.bucket_points(NO_BUCKET + 1, 2**62))
    seen.append(stats.dated_days())
    return seen


records = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 6), st.sampled_from(["0", "1", "x", ""])),
        st.one_of(st.none(), st.integers(0, 3), st.just("3")),
        st.one_of(st.none(), st.integers(0, 9), st.sampled_from(["", "9"])),
        st.sampled_from([NO_TIME, FUTURE, TODAY - 9, TODAY - 1, TODAY]),
    ),
    max_size=60,
)


def _from(rows: list[tuple[object, object, object, int]]) -> ExactStatistics:
    stats = ExactStatistics()
    if rows:
        items, categories, visitors, days = zip(*rows, strict=True)
        day_keys = np.array(days, dtype=np.int64)
        hours = np.where((day_keys == NO_TIME) | (day_keys == FUTURE), NO_BUCKET, day_keys * 24)
        stats.add(Columns(list(items), list(categories), list(visitors), day_keys, hours))  # type: ignore[arg-type]
    return stats


def _copy(stats: ExactStatistics) -> ExactStatistics:
    return ExactStatistics.from_bytes(stats.to_bytes())


@settings(max_examples=60, deadline=None)
@given(records, records, records)
def test_exact_merge_is_associative_commutative_and_equals_counting_everything_at_once(a, b, c) -> None:  # type: ignore[no-untyped-def]
    sa, sb, sc = _from(a), _from(b), _from(c)
    left = _copy(sa).merge(sb).merge(sc)
    right = _copy(sa).merge(_copy(sb).merge(sc))
    swapped = _copy(sc).merge(sb).merge(sa)
    whole = _from(a + b + c)
    assert snapshot(left) == snapshot(right) == snapshot(swapped) == snapshot(whole)
    assert snapshot(_copy(sa).merge(ExactStatistics())) == snapshot(sa)
    assert snapshot(_copy(whole)) == snapshot(whole)
    assert _copy(whole).to_bytes() == whole.to_bytes()


def test_report_fields_add_bounds_only_to_estimates() -> None:
    assert report_fields("visits", Estimate(412)) == {"visits": 412}
    assert report_fields("visits", Estimate(412, 405, 412)) == {"visits": 412, "visits_bounds": [405, 412]}
    assert report_fields("distinct_visitors", None) == {"distinct_visitors": None}


def test_local_days_of_instants_follow_the_zone() -> None:
    zone = ZoneInfo("America/New_York")
    moments = [
        datetime(2026, 3, 8, 4, 59, tzinfo=UTC),  # 23:59 on 7 March in New York
        datetime(2026, 3, 8, 5, 0, tzinfo=UTC),  # midnight, 8 March
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # 03:30 EDT, just after the clocks went forward
        datetime(1969, 12, 31, 23, 0, tzinfo=UTC),  # before the epoch: a negative day
    ]
    seconds = np.array([m.timestamp() for m in moments])
    offsets = np.array([int(m.astimezone(zone).utcoffset().total_seconds()) for m in moments], dtype=np.int64)
    expected = [(m.astimezone(zone).date() - date(1970, 1, 1)).days for m in moments]
    assert local_days(seconds, offsets).tolist() == expected


def test_concatenated_columns_keep_rows_in_order_and_integer_arrays_where_every_part_has_one() -> None:
    ints = Columns(np.array([5, 6]), ["a", None], np.array([1, 2]), np.array([10, 11]), np.array([100, NO_BUCKET]))
    more_ints = Columns(np.array([7]), [8], np.array([3]), np.array([12]), None)
    mixed = Columns(["5", 5], [None, "b"], [None, "v"], np.array([FUTURE, NO_TIME]), np.array([NO_BUCKET, 200]))

    both = concatenated([ints, more_ints])
    assert isinstance(both.items, np.ndarray) and both.items.tolist() == [5, 6, 7]
    assert isinstance(both.visitors, np.ndarray) and both.visitors.tolist() == [1, 2, 3]
    assert list(both.categories) == ["a", None, 8]
    assert both.days.tolist() == [10, 11, 12]
    assert both.buckets is not None and both.buckets.tolist() == [100, NO_BUCKET, NO_BUCKET]

    every = concatenated([ints, mixed, more_ints])
    assert every.items == [5, 6, "5", 5, 7]  # a list: "5" and 5 stay two keys of two types
    assert every.visitors == [1, 2, None, "v", 3]
    assert every.days.tolist() == [10, 11, FUTURE, NO_TIME, 12]
    assert every.buckets is not None and every.buckets.tolist() == [100, NO_BUCKET, NO_BUCKET, 200, NO_BUCKET]

    alone = concatenated([mixed])
    assert alone is mixed
    no_buckets = concatenated([more_ints, more_ints])
    assert no_buckets.buckets is None and no_buckets.items.tolist() == [7, 7]
