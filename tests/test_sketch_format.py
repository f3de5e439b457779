"""The serialised form of approximate statistics: what it keeps, what older Lifestats wrote, what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from lifestats.sketch import ApproxStatistics, SketchConfig, _Day
from lifestats.statistics import ALL, BinaryWriter, Columns, DayRange
from tests import stat_truth

CONFIG = SketchConfig(hll_lg_k=10, item_hll_lg_k=8, frequent_lg_max_map_size=7, tracked_items=25)


def _counted(seed: int = 3, n: int = 4000) -> ApproxStatistics:
    stats = ApproxStatistics(CONFIG, live_days=2)  # most days go through their encoding while counting
    for columns in stat_truth.make(seed=seed, n=n).pages(500):
        stats.add(columns)
    return stats


def _reads(stats: ApproxStatistics) -> list[object]:
    """Every answer the report asks for, over the whole range and day by day."""
    answers: list[object] = []
    for days in [ALL, *(DayRange(d, d) for d in sorted(stats._days))]:
        answers += [stats.visits(days), stats.distinct_visitors(days), stats.rank_error(days)]
        answers += [stats.top_items(days, 30), stats.top_categories(days, 10)]
    first, last = stats.bucket_span() or (0, -1)
    answers.append(stats.bucket_points(first, last))
    return answers


def _format_1(stats: ApproxStatistics) -> bytes:
    """The body an older Lifestats wrote (version 1: each HLL in its updatable form, a tracked item's visits
    and HLL one after the other), written here field by field from the live sketches."""
    out = BinaryWriter()
    out.raw(b"LSAP" + (1).to_bytes(2, "little"))
    for value in (CONFIG.hll_lg_k, CONFIG.item_hll_lg_k, CONFIG.frequent_lg_max_map_size, CONFIG.tracked_items):
        out.u32(value)
    out.u32(len(stats._days))
    for key in sorted(stats._days):
        day = stats._days[key]
        body = BinaryWriter()
        body.i64(day.visits)
        body.blob(day.visitors.serialize_updatable())
        body.blob(day.items.serialize())
        body.blob(day.categories.serialize())
        body.strings(list(day.tracked))
        for entry in day.tracked.values():
            body.i64(entry.visits)
            body.blob(entry.hll.serialize_updatable())
        out.i64(key)
        out.blob(body.getvalue())
    out.u32(len(stats._buckets))
    for key in sorted(stats._buckets):
        out.i64(key)
        out.i64(stats._buckets[key].visits)
        out.blob(stats._buckets[key].visitors.serialize_updatable())
    return out.getvalue()


def test_every_answer_survives_the_round_trip_exactly() -> None:
    """Unions included: a day serialised and read back answers, alone or with others, what it did live."""
    stats = _counted()
    body = stats.to_bytes()
    again = ApproxStatistics.from_bytes(body)
    assert _reads(again) == _reads(stats)
    assert again.to_bytes() == body  # days read but not changed are written as they were read
    # A merged day's sketches (union results) may answer a little differently once serialised (DataSketches
    # does so in every format, the previous one too); from there on, the round trip changes nothing.
    merged = ApproxStatistics(CONFIG).merge(again).merge(ApproxStatistics.from_bytes(_counted(seed=4).to_bytes()))
    stored = ApproxStatistics.from_bytes(merged.to_bytes())
    assert _reads(ApproxStatistics.from_bytes(stored.to_bytes())) == _reads(stored)


def test_a_body_of_the_previous_format_is_still_read() -> None:
    stats = _counted()
    old = ApproxStatistics.from_bytes(_format_1(stats))
    assert _reads(old) == _reads(stats)
    other = _counted(seed=5)
    merged = old.merge(other)
    assert merged.visits(ALL).value == stats.visits(ALL).value + other.visits(ALL).value
    body = merged.to_bytes()
    assert _reads(ApproxStatistics.from_bytes(body)) == _reads(ApproxStatistics.from_bytes(body))


def test_a_newer_body_or_day_is_refused_with_a_clear_error() -> None:
    body = _counted(n=500).to_bytes()
    with pytest.raises(ValueError, match="format version 3; this Lifestats reads versions 1 to 2"):
        ApproxStatistics.from_bytes(body[:4] + (3).to_bytes(2, "little") + body[6:])
    day = _Day(CONFIG)
    day.add_categories(np.array([1, 2, 2]))
    encoded = day.encode()
    with pytest.raises(ValueError, match="a day of format 3; this Lifestats reads up to 2"):
        _Day.decode((-3).to_bytes(8, "little", signed=True) + encoded[8:], CONFIG)
    with pytest.raises(ValueError, match=r"truncated|malformed"):
        _Day.decode(encoded[:-3], CONFIG).tracked  # noqa: B018 (parsing the table is what fails)


def test_an_unchanged_day_is_not_parsed_to_be_written_again() -> None:
    stats = _counted(n=800)
    key = max(stats._days)
    body = stats._days.encoded(key)
    day = _Day.decode(body, CONFIG)
    assert day.visits > 0 and day.encode() is body
    day.add_categories(np.array([7]))
    assert day.encode() != body and _Day.decode(day.encode(), CONFIG).categories.get_estimate("i7") >= 1


def test_columns_made_of_numpy_and_lists_count_the_same() -> None:
    as_lists = Columns([1, 2, 2], [None, 3, 3], [5, None, "5"], np.array([20_000, 20_000, 20_001]))
    as_arrays = Columns(np.array([1, 2, 2]), [None, 3, 3], [5, None, "5"], np.array([20_000, 20_000, 20_001]))
    a, b = ApproxStatistics(CONFIG), ApproxStatistics(CONFIG)
    a.add(as_lists)
    b.add(as_arrays)
    assert a.to_bytes() == b.to_bytes()


def test_a_day_that_tracks_no_item_round_trips() -> None:
    """An empty table of tracked items (a new day, or ``tracked_items: 0``) reads back as empty."""
    assert _Day.decode(_Day(CONFIG).encode(), CONFIG).tracked == {}
    untracked = SketchConfig(hll_lg_k=10, item_hll_lg_k=8, frequent_lg_max_map_size=7, tracked_items=0)
    stats = ApproxStatistics(untracked)
    stats.add(Columns([1, "a"], [None, None], ["v", None], np.array([20_000, 20_000])))
    again = ApproxStatistics.from_bytes(stats.to_bytes())
    assert [row.id for row in again.top_items(ALL, 5)] == [1, "a"]
    assert again.merge(ApproxStatistics.from_bytes(stats.to_bytes())).visits(ALL).value == 4
