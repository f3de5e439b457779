"""Exact facts as columns: the worker's FactsStatistics answers every read as the in-memory reference does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from lifestats.facts import FactsStatistics, SummingPolicy, decode_facts, encode_facts, facts_of, split_keys
from lifestats.statistics import ALL, FUTURE, NO_BUCKET, NO_TIME, Columns, DayRange, Estimate
from tests import stat_truth
from tests.stat_truth import TODAY, rank_order, truth
from tests.test_statistics import _from, records, snapshot


def _facts(data: stat_truth.Dataset, page: int = 1000) -> FactsStatistics:
    stats = FactsStatistics()
    for columns in data.pages(page):
        stats.add(columns)
    return stats


@pytest.mark.parametrize("skew", [None, 1.2])
def test_facts_equal_the_truth_in_every_window(skew: float | None) -> None:
    data = stat_truth.make(seed=5, n=20_000, skew=skew)
    stats = FactsStatistics.from_bytes(_facts(data, page=997).to_bytes())
    for name, days in stat_truth.windows().items():
        expected = truth(data, days)
        assert stats.visits(days) == Estimate(expected.visits), name
        assert stats.distinct_visitors(days) == Estimate(expected.distinct_visitors), name
        rows = stats.top_items(days, 50)
        assert [(r.id, r.visits.value) for r in rows] == rank_order(expected.item_visits)[:50], name
        assert [r.distinct_visitors.value for r in rows] == [expected.item_visitors.get(r.id, 0) for r in rows]
        categories = stats.top_categories(days, 5)
        assert [(r.id, r.visits.value) for r in categories] == rank_order(expected.category_visits)[:5], name


def test_int_and_str_keys_stay_distinct_through_the_wire() -> None:
    stats = FactsStatistics()
    stats.add(
        Columns(
            items=[5, "5", "5", 5, 5, "", 1],
            categories=[1, "1", None, "1", 1, 1, None],
            visitors=["", 0, "0", None, "", 0, 0],
            days=np.full(7, TODAY, dtype=np.int64),
        )
    )
    restored = FactsStatistics.from_bytes(stats.to_bytes())
    rows = restored.top_items(ALL, 10)
    assert [(r.id, r.visits.value, r.distinct_visitors.value) for r in rows] == [
        (5, 3, 1),
        ("5", 2, 2),
        (1, 1, 1),
        ("", 1, 1),
    ]
    assert [type(r.id) for r in rows] == [int, str, int, str]
    assert [(r.id, r.visits.value) for r in restored.top_categories(ALL, 10)] == [(1, 3), ("1", 2)]
    assert restored.distinct_visitors(ALL).value == 3


def test_key_columns_split_by_type_whatever_their_container() -> None:
    ints, strs = split_keys(np.array([3, -(2**63), 2**63 - 1]))
    assert ints.to_pylist() == [3, -(2**63), 2**63 - 1] and strs.null_count == 3
    ints, strs = split_keys([None, "a", 7])
    assert ints.to_pylist() == [None, None, 7] and strs.to_pylist() == [None, "a", None]
    ints, strs = split_keys([None, "a", ""])
    assert ints.null_count == 3 and strs.to_pylist() == [None, "a", ""]


def test_equal_facts_travel_once_with_their_count() -> None:
    days = np.full(4, TODAY, dtype=np.int64)
    stats = FactsStatistics()
    stats.add(Columns([1, 1, 1, 2], [None] * 4, [9, 9, 9, 9], days))
    table = decode_facts(stats.to_bytes(SummingPolicy()))
    assert sorted(zip(table["item_i"].to_pylist(), table["n"].to_pylist(), strict=True)) == [(1, 3), (2, 1)]


def test_flushes_are_summed_while_summing_removes_rows_and_probed_again_when_it_does_not() -> None:
    """A process stops summing its flushes' facts when that removes less than a tenth of the rows, and
    sums one flush in ``probe_every`` to look again; facts sent unsummed give the same figures."""
    policy = SummingPolicy(min_share=0.1, probe_every=4)
    days = np.full(10, TODAY, dtype=np.int64)
    distinct = Columns(list(range(10)), [None] * 10, list(range(10)), days)  # nothing to sum
    repeated = Columns([1] * 10, [None] * 10, [9] * 10, days)  # ten equal facts

    def sent_rows(columns: Columns) -> int:
        stats = FactsStatistics()
        stats.add(columns)
        stats.add(columns)  # every fact twice over two pages: half the rows are equal to another
        return decode_facts(stats.to_bytes(policy)).num_rows

    assert sent_rows(repeated) == 1  # summed: 20 rows -> 1
    assert sent_rows(distinct) == 10  # summed: 20 -> 10, half removed, so summing goes on
    assert sent_rows(distinct) == 10
    policy.observed(20, 19)  # a flush where summing removed 1 row in 20: the next three go as they are
    assert [sent_rows(repeated) for _ in range(4)] == [20, 20, 20, 1]
    unsummed = FactsStatistics()
    unsummed.add(repeated)
    unsummed.add(distinct)
    skip = SummingPolicy()
    skip.observed(1, 1)
    restored = FactsStatistics.from_bytes(unsummed.to_bytes(skip))
    assert len(restored) == 20
    everything = DayRange(TODAY, TODAY)
    assert restored.visits(everything) == Estimate(20)
    assert restored.distinct_visitors(everything) == Estimate(10)  # visitors 0-9; 9 among them
    assert [(row.id, row.visits.value) for row in restored.top_items(everything, 2)] == [(1, 11), (0, 1)]


def test_a_foreign_or_newer_body_is_refused() -> None:
    body = encode_facts(facts_of(Columns([1], [None], [None], np.array([TODAY]))))
    with pytest.raises(ValueError, match="not exact facts"):
        decode_facts(b"XXXX" + body[4:])
    with pytest.raises(ValueError, match="version 9"):
        decode_facts(body[:4] + b"\x09\x00" + body[6:])


def _facts_from(rows: list[tuple[object, object, object, int]]) -> FactsStatistics:
    stats = FactsStatistics()
    for columns in _columns(rows):
        stats.add(columns)
    return stats


def _columns(rows: list[tuple[object, object, object, int]]) -> list[Columns]:
    """The Columns that ``tests.test_statistics._from`` gives the reference."""
    if not rows:
        return []
    items, categories, visitors, days = zip(*rows, strict=True)
    day_keys = np.array(days, dtype=np.int64)
    hours = np.where((day_keys == NO_TIME) | (day_keys == FUTURE), NO_BUCKET, day_keys * 24)
    return [Columns(list(items), list(categories), list(visitors), day_keys, hours)]  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(records, records)
def test_facts_read_exactly_what_the_reference_reads(a, b) -> None:  # type: ignore[no-untyped-def]
    merged = FactsStatistics.from_bytes(_facts_from(a).to_bytes()).merge(_facts_from(b))
    assert snapshot(merged) == snapshot(_from(a + b))  # type: ignore[arg-type]


def test_day_points_of_overlapping_and_unbounded_spans() -> None:
    data = stat_truth.make(seed=2, n=3000, n_days=10)
    stats = _facts(data)
    spans = [DayRange(TODAY - 5, TODAY), DayRange(TODAY - 2, TODAY - 1), DayRange(TODAY - 400, TODAY - 300)]
    for span, point in zip(spans, stats.day_points(spans), strict=True):
        expected = truth(data, span)
        assert (point.visits.value, point.distinct_visitors.value) == (expected.visits, expected.distinct_visitors)
    assert stats.day_points([ALL])[0].visits.value == len(data)
