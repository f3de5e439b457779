"""Counting a page into sketches column by column feeds them exactly what a per-record pass feeds them.

The reference below is the per-record pass (one Python loop over the records, a key's sketch code and
HLL key made per record, Python sets of visitors; integer columns by sorted value, as before):
approximate statistics counted either way must be byte for byte the same, sketches included, on hostile
mixed columns (ints and strings, 5 and "5", None, NUL-ending strings, ints past 2^56 and negative),
because an HLL's estimate depends on its inputs and on their order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import datasketches as ds
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifestats.sketch import ApproxStatistics, SketchConfig, _Day, _int_column, _mend, _Tracked, hll_key
from lifestats.statistics import FUTURE, NO_BUCKET, NO_TIME, Columns, Key, as_list, encode_key

CONFIG = SketchConfig(hll_lg_k=6, item_hll_lg_k=4, frequent_lg_max_map_size=3, tracked_items=3)


def _pick(column: list[Any], where: np.ndarray | None) -> list[Any]:
    return column if where is None else [column[i] for i in where.tolist()]


def _reference_lists(day: _Day, items: list[Key], visitors: list[Key | None]) -> None:
    day.visits += len(items)
    index: dict[str, int] = {}
    codes: list[str] = []
    counts: list[int] = []
    visitor_sets: list[set[int | str]] = []
    everyone: set[int | str] = set()
    for item, visitor in zip(items, visitors, strict=True):
        code = encode_key(item)
        j = index.get(code)
        if j is None:
            j = index[code] = len(codes)
            codes.append(code)
            counts.append(0)
            visitor_sets.append(set())
        counts[j] += 1
        if visitor is not None:
            visitor_sets[j].add(hll_key(visitor))
            everyone.add(hll_key(visitor))
    _reference_feed(day, everyone, codes, counts, visitor_sets.__getitem__)


def _reference_feed(
    day: _Day, everyone: Iterable[Key], codes: list[str], counts: list[int], visitors_of: Callable[[int], Iterable[Key]]
) -> None:
    for who in everyone:
        day.visitors.update(who)
    for code, count in zip(codes, counts, strict=True):
        day.items.update(code, count)
    _mend(day.items)
    tracked, cap = day.tracked, day.config.tracked_items
    for j, code in enumerate(codes):
        entry = tracked.get(code)
        if entry is None:
            if len(tracked) >= cap:
                continue
            entry = tracked[code] = _Tracked(ds.hll_sketch(day.config.item_hll_lg_k, ds.tgt_hll_type.HLL_4))
        entry.visits += counts[j]
        for who in visitors_of(j):
            entry.hll.update(who)
    day.pages += 1
    if cap and len(tracked) >= cap and day.pages % 4 == 0:
        day._rebalance()


def _reference_arrays(day: _Day, items: np.ndarray, visitors: np.ndarray) -> None:
    """Integer columns: numpy grouped them already before, each item's distinct visitors in sorted order."""
    day.visits += len(items)
    unique, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    order = np.lexsort((visitors, inverse))
    pairs = sorted(set(zip(inverse[order].tolist(), visitors[order].tolist(), strict=True)))
    members: list[list[Key]] = [[] for _ in unique]
    for owner, who in pairs:
        members[owner].append(hll_key(who))
    everyone = [hll_key(v) for v in sorted(set(visitors.tolist()))]
    _reference_feed(day, everyone, [encode_key(k) for k in unique.tolist()], counts.tolist(), members.__getitem__)


def _reference_categories(day: _Day, categories: list[Key | None]) -> None:
    counted: dict[str, int] = {}
    for category in categories:
        if category is not None:
            counted[encode_key(category)] = counted.get(encode_key(category), 0) + 1
    for code, n in counted.items():
        day.categories.update(code, n)


def reference_add(stats: ApproxStatistics, columns: Columns) -> None:
    """The per-record pass."""
    items, visitors = _int_column(columns.items), _int_column(columns.visitors)
    categories, int_categories = as_list(columns.categories), _int_column(columns.categories)
    for day, where in columns.day_indices():
        state = stats._updating(day)
        if items is not None and visitors is not None:
            _reference_arrays(
                state, items if where is None else items[where], visitors if where is None else visitors[where]
            )
        else:
            _reference_lists(state, _pick(as_list(columns.items), where), _pick(as_list(columns.visitors), where))
        if int_categories is not None:  # an integer column: one update per value, in sorted order
            at = slice(None) if where is None else where
            for key, n in zip(*(a.tolist() for a in np.unique(int_categories[at], return_counts=True)), strict=True):
                state.categories.update(encode_key(key), n)
        else:
            _reference_categories(state, _pick(categories, where))
        _mend(state.categories)  # a map a purge emptied is mended once per day's update (test_sketch.py)
    for bucket, who in columns.bucket_groups():
        point = stats._buckets.updating(bucket, stats._new_bucket)
        point.visits += len(who)
        for key in {hll_key(v) for v in who if v is not None}:
            point.visitors.update(key)


INTS = st.one_of(
    st.integers(0, 40),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**56 - 1, 2**56, 2**63 - 1, -1, -(2**63), 5, 0]),
)
TEXTS = st.one_of(
    st.sampled_from(["5", "", "\x00", "a\x00", "s5", "i5", "n", "é", "\x05\x00\x00\x00\x00\x00\x00\x00"]),
    st.text(max_size=4),
)
KEYS = st.one_of(INTS, TEXTS)
DAYS = st.sampled_from([NO_TIME, FUTURE, 20_000, 20_001, 20_002])
BUCKETS = st.sampled_from([NO_BUCKET, 480_000, 480_001, 480_024])


@st.composite
def pages(draw: st.DrawFn) -> Columns:
    n = draw(st.integers(1, 60))
    all_ints = draw(st.booleans())
    keys = st.integers(0, 30) if all_ints else KEYS
    items = draw(st.lists(keys, min_size=n, max_size=n))
    visitors = draw(st.lists(keys if all_ints else st.one_of(st.none(), KEYS), min_size=n, max_size=n))
    categories = draw(st.lists(st.one_of(st.none(), KEYS), min_size=n, max_size=n))
    days = np.array(draw(st.lists(DAYS, min_size=n, max_size=n)), dtype=np.int64)
    buckets = draw(st.one_of(st.none(), st.lists(BUCKETS, min_size=n, max_size=n)))
    as_arrays = all_ints and draw(st.booleans())
    return Columns(
        np.array(items, dtype=np.int64) if as_arrays else items,
        categories,
        np.array(visitors, dtype=np.int64) if as_arrays else visitors,
        days,
        None if buckets is None else np.array(buckets, dtype=np.int64),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pages(), min_size=1, max_size=12))
def test_column_counting_feeds_the_sketches_what_a_per_record_pass_does(stream: list[Columns]) -> None:
    counted, reference = ApproxStatistics(CONFIG), ApproxStatistics(CONFIG)
    for columns in stream:
        counted.add(columns)
        reference_add(reference, columns)
    assert sorted(counted._days) == sorted(reference._days)
    for day in reference._days:
        mine, theirs = counted._days[day], reference._days[day]
        assert mine.visits == theirs.visits
        assert mine.visitors.serialize_updatable() == theirs.visitors.serialize_updatable()
        assert mine.items.serialize() == theirs.items.serialize()
        assert mine.categories.serialize() == theirs.categories.serialize()
        assert list(mine.tracked) == list(theirs.tracked)
        for code, entry in theirs.tracked.items():
            assert mine.tracked[code].visits == entry.visits
            assert mine.tracked[code].hll.serialize_updatable() == entry.hll.serialize_updatable()
    assert sorted(counted._buckets) == sorted(reference._buckets)
    for bucket in reference._buckets:
        assert counted._buckets[bucket].visits == reference._buckets[bucket].visits
        mine_hll, their_hll = counted._buckets[bucket].visitors, reference._buckets[bucket].visitors
        assert mine_hll.serialize_updatable() == their_hll.serialize_updatable()
        assert mine_hll.get_estimate() == their_hll.get_estimate()
    assert counted.to_bytes() == reference.to_bytes()


def test_five_and_the_string_five_are_two_keys_and_none_is_no_visitor() -> None:
    """An independent check of the key semantics: counted by hand, not by a second implementation."""
    stats = ApproxStatistics(CONFIG)
    items, categories, visitors = [5, "5", 5, "5\x00"], [5, "5", None, 5], [None, "x", 5, None]
    stats.add(Columns(items, categories, visitors, np.array([20_000] * 4)))
    day = stats._days[20_000]
    assert day.visits == 4
    assert {code: day.items.get_estimate(code) for code in ("i5", "s5", "s5\x00")} == {"i5": 2, "s5": 1, "s5\x00": 1}
    assert day.categories.get_estimate("i5") == 2 and day.categories.get_estimate("s5") == 1
    assert round(day.visitors.get_estimate()) == 2  # "x" and 5: the two None visit without a visitor
    assert round(day.tracked["i5"].hll.get_estimate()) == 1 and day.tracked["i5"].visits == 2
    assert day.tracked["s5"].hll.get_estimate() == 1 and day.tracked["s5\x00"].hll.is_empty()
