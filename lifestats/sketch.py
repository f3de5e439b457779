"""Approximate statistics in memory that does not grow with the records: Apache DataSketches per day.

Per local day (and per fine series bucket) :class:`ApproxStatistics` keeps:

- the exact number of visits (a count costs nothing);
- an HLL sketch of the visitors (``stats.hll_lg_k``);
- frequent-items sketches of the items and of the categories (``stats.frequent_lg_max_map_size``),
  whose estimates come with guaranteed lower and upper bounds;
- for at most ``stats.tracked_items`` items, an HLL of their visitors (``stats.item_hll_lg_k``) and
  the exact number of visits counted while the item was tracked.

A window is the merge of its days' sketches. The per-item HLLs are what makes distinct visitors per top
item affordable: keeping one per item would grow with the items, so a day keeps them for its leading
items only (the first ones seen, then whichever the frequent-items sketch shows clearly ahead of the
weakest one tracked; see :meth:`_Day.track`). An item's visitors seen while it was not tracked are
not in its HLL, so its bounds widen by what was missed: with ``v`` its visits (at most the sketch's
upper bound ``V``) and ``t`` the visits seen while tracked, at most ``V - t`` visits went unseen, so
its distinct visitors lie in ``[hll_lower, min(V, hll_upper + V - t)]``. HLL bounds are three standard
deviations (SPEC section 6); frequent-items bounds are guaranteed.

Keys travel through the sketches as strings that keep their type (:func:`~lifestats.statistics.encode_key`),
so 5 and "5" stay two keys and the empty string counts.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import datasketches as ds

from .statistics import (
    FUTURE,
    NO_TIME,
    CategoryRow,
    Columns,
    DayRange,
    Estimate,
    ItemRow,
    Key,
    Point,
    _check_header,
    _Reader,
    _Writer,
    decode_key,
    encode_key,
    rank_key,
)

_HLL_TYPE: Final = ds.tgt_hll_type.HLL_4
_NO_FALSE_NEGATIVES: Final = ds.frequent_items_error_type.NO_FALSE_NEGATIVES
_NEVER_A_KEY: Final = "?"  # encoded keys start with "i" or "s": this one's upper bound is the sketch's max error
_STD_DEVS: Final = 3


@dataclass(frozen=True)
class SketchConfig:
    """Sketch sizes. Bigger is more accurate and costs more memory per day kept.

    Defaults: global HLLs at lg_k 12 (1.6% standard error, about 2.5 KB each), per-item HLLs at lg_k 10
    (3.3%, about 0.6 KB), frequent-items maps of 2^11 slots (an item's visits known to within about
    0.17% of the day's or window's visits), 200 tracked items per day.
    """

    hll_lg_k: int = 12
    item_hll_lg_k: int = 10
    frequent_lg_max_map_size: int = 11
    tracked_items: int = 200

    def __post_init__(self) -> None:
        for name, low, high in (("hll_lg_k", 4, 21), ("item_hll_lg_k", 4, 21), ("frequent_lg_max_map_size", 3, 26)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"stats.{name} must be between {low} and {high}, not {value}")
        if self.tracked_items < 0:
            raise ValueError(f"stats.tracked_items must be 0 or more, not {self.tracked_items}")

    @classmethod
    def from_settings(cls, stats: Any) -> SketchConfig:
        """The sizes from the ``stats`` config section (defaults where a key is absent)."""
        defaults = cls()
        return cls(**{name: getattr(stats, name, getattr(defaults, name)) for name in cls.__dataclass_fields__})


def _copy_hll(sketch: ds.hll_sketch) -> ds.hll_sketch:
    return ds.hll_sketch.deserialize(sketch.serialize_updatable())


def _union(sketches: Sequence[ds.hll_sketch], lg_k: int) -> ds.hll_sketch:
    if len(sketches) == 1:
        return sketches[0]  # read-only use: a lone sketch keeps its (more accurate) HIP estimate
    union = ds.hll_union(lg_k)
    for sketch in sketches:
        union.update(sketch)
    return union.get_result(_HLL_TYPE)


def _distinct(sketch: ds.hll_sketch | None) -> Estimate:
    if sketch is None or sketch.is_empty():
        return Estimate(0, 0, 0)
    lower = max(0, math.floor(sketch.get_lower_bound(_STD_DEVS)))
    upper = math.ceil(sketch.get_upper_bound(_STD_DEVS))
    return Estimate(min(max(round(sketch.get_estimate()), lower), upper), lower, upper)


class _Tracked:
    """An item's visitors (HLL) and its visits, counted while the item was tracked."""

    __slots__ = ("hll", "visits")

    def __init__(self, hll: ds.hll_sketch, visits: int = 0) -> None:
        self.hll = hll
        self.visits = visits


class _Day:
    """The sketches of one day key."""

    __slots__ = ("categories", "config", "items", "tracked", "visitors", "visits")

    def __init__(self, config: SketchConfig) -> None:
        self.config = config
        self.visits = 0
        self.visitors = ds.hll_sketch(config.hll_lg_k, _HLL_TYPE)
        self.items = ds.frequent_strings_sketch(config.frequent_lg_max_map_size)
        self.categories = ds.frequent_strings_sketch(config.frequent_lg_max_map_size)
        self.tracked: dict[str, _Tracked] = {}

    def add(self, items: list[Key], categories: list[Key | None], visitors: list[Key | None]) -> None:
        self.visits += len(items)
        # One pass groups the page by item: its visits and its distinct visitors (encoded once each).
        groups: dict[str, tuple[list[int], set[str]]] = {}
        everyone: set[str] = set()
        for item, visitor in zip(items, visitors, strict=True):
            code = f"i{item}" if isinstance(item, int) else "s" + item
            group = groups.get(code)
            if group is None:
                group = groups[code] = ([0], set())
            group[0][0] += 1
            if visitor is not None:
                who = f"i{visitor}" if isinstance(visitor, int) else "s" + visitor
                group[1].add(who)
                everyone.add(who)
        update = self.visitors.update
        for who in everyone:
            update(who)
        update_item = self.items.update
        for code, (count, _) in groups.items():
            update_item(code, count[0])
        counted: dict[str, int] = {}
        for category in categories:
            if category is not None:
                code = encode_key(category)
                counted[code] = counted.get(code, 0) + 1
        update_category = self.categories.update
        for code, n in counted.items():
            update_category(code, n)
        self.track(groups)

    def track(self, groups: dict[str, tuple[list[int], set[str]]]) -> None:
        """Feed the tracked items' HLLs; start tracking new items while there is room, or in place of a
        tracked item that the frequent-items sketch shows less than half as visited (the margin keeps
        evenly visited items from displacing each other page after page)."""
        tracked, cap, lg_k = self.tracked, self.config.tracked_items, self.config.item_hll_lg_k
        waiting: list[tuple[int, str]] = []
        for code, (count, visitors) in groups.items():
            entry = tracked.get(code)
            if entry is None:
                if len(tracked) >= cap:
                    waiting.append((0, code))
                    continue
                entry = tracked[code] = _Tracked(ds.hll_sketch(lg_k, _HLL_TYPE))
            entry.visits += count[0]
            update = entry.hll.update
            for who in visitors:
                update(who)
        if not waiting or cap == 0:
            return
        estimate = self.items.get_estimate
        contenders = sorted(((estimate(code), code) for _, code in waiting), reverse=True)
        weakest = [(estimate(code), code) for code in tracked]
        heapq.heapify(weakest)
        for strength, code in contenders:
            if strength <= 2 * weakest[0][0]:
                break
            _, victim = heapq.heapreplace(weakest, (strength, code))
            del tracked[victim]
            count, visitors = groups[code]
            entry = tracked[code] = _Tracked(ds.hll_sketch(lg_k, _HLL_TYPE), count[0])
            update = entry.hll.update
            for who in visitors:
                update(who)

    def merge(self, other: _Day) -> None:
        self.visits += other.visits
        union = ds.hll_union(self.config.hll_lg_k)
        union.update(self.visitors)
        union.update(other.visitors)
        self.visitors = union.get_result(_HLL_TYPE)
        self.items.merge(other.items)
        self.categories.merge(other.categories)
        for code, theirs in other.tracked.items():
            mine = self.tracked.get(code)
            if mine is None:
                self.tracked[code] = _Tracked(_copy_hll(theirs.hll), theirs.visits)
            else:
                item_union = ds.hll_union(self.config.item_hll_lg_k)
                item_union.update(mine.hll)
                item_union.update(theirs.hll)
                mine.hll = item_union.get_result(_HLL_TYPE)
                mine.visits += theirs.visits
        excess = len(self.tracked) - self.config.tracked_items
        if excess > 0:  # keep the leaders by the merged sketch (ties by code, so merge order does not matter)
            estimate = self.items.get_estimate
            for _, code in heapq.nsmallest(excess, ((estimate(c), c) for c in self.tracked)):
                del self.tracked[code]

    def write(self, out: _Writer) -> None:
        out.i64(self.visits)
        out.blob(self.visitors.serialize_compact())
        out.blob(self.items.serialize())
        out.blob(self.categories.serialize())
        out.strings(list(self.tracked))
        for entry in self.tracked.values():
            out.i64(entry.visits)
            out.blob(entry.hll.serialize_compact())

    @classmethod
    def read(cls, reader: _Reader, config: SketchConfig) -> _Day:
        day = cls(config)
        day.visits = reader.i64()
        day.visitors = ds.hll_sketch.deserialize(reader.blob())
        day.items = ds.frequent_strings_sketch.deserialize(reader.blob())
        day.categories = ds.frequent_strings_sketch.deserialize(reader.blob())
        for code in reader.strings():
            visits = reader.i64()
            day.tracked[code] = _Tracked(ds.hll_sketch.deserialize(reader.blob()), visits)
        return day

    def nbytes(self) -> int:
        """Serialized sizes plus a fixed overhead per object: the in-memory form is of the same order."""
        size = 200 + self.visitors.get_updatable_serialization_bytes()
        size += 2 * (self.items.get_serialized_size_bytes() + self.categories.get_serialized_size_bytes())
        size += sum(150 + entry.hll.get_updatable_serialization_bytes() for entry in self.tracked.values())
        return size


class _Bucket:
    __slots__ = ("visitors", "visits")

    def __init__(self, lg_k: int) -> None:
        self.visits = 0
        self.visitors = ds.hll_sketch(lg_k, _HLL_TYPE)


class ApproxStatistics:
    """The :class:`~lifestats.statistics.Statistics` protocol over DataSketches, per day."""

    MAGIC: Final = b"LSAP"
    VERSION: Final = 1

    def __init__(self, config: SketchConfig | None = None) -> None:
        self.config = config or SketchConfig()
        self._days: dict[int, _Day] = {}
        self._buckets: dict[int, _Bucket] = {}

    # -- writes ---------------------------------------------------------------------------------------
    def add(self, columns: Columns) -> None:
        for day, items, categories, visitors in columns.groups():
            state = self._days.get(day)
            if state is None:
                state = self._days[day] = _Day(self.config)
            state.add(items, categories, visitors)
        for bucket, visitors in columns.bucket_groups():
            point = self._buckets.get(bucket)
            if point is None:
                point = self._buckets[bucket] = _Bucket(self.config.hll_lg_k)
            point.visits += len(visitors)
            update = point.visitors.update
            for who in {encode_key(v) for v in visitors if v is not None}:
                update(who)

    def merge(self, other: ApproxStatistics) -> ApproxStatistics:
        if other.config != self.config:
            raise ValueError(f"cannot merge sketches of different sizes ({self.config} and {other.config})")
        for day, theirs in other._days.items():
            mine = self._days.get(day)
            if mine is None:
                mine = self._days[day] = _Day(self.config)
            mine.merge(theirs)
        for bucket, their_point in other._buckets.items():
            point = self._buckets.get(bucket)
            if point is None:
                point = self._buckets[bucket] = _Bucket(self.config.hll_lg_k)
            point.visits += their_point.visits
            union = ds.hll_union(self.config.hll_lg_k)
            union.update(point.visitors)
            union.update(their_point.visitors)
            point.visitors = union.get_result(_HLL_TYPE)
        return self

    # -- reads ----------------------------------------------------------------------------------------
    def _in(self, days: DayRange) -> list[_Day]:
        return [state for day, state in sorted(self._days.items()) if days.first <= day <= days.last]

    def visits(self, days: DayRange) -> Estimate:
        return Estimate(sum(state.visits for state in self._in(days)))  # counted exactly

    def distinct_visitors(self, days: DayRange) -> Estimate:
        chosen = self._in(days)
        return _distinct(_union([s.visitors for s in chosen], self.config.hll_lg_k) if chosen else None)

    def _frequent(self, chosen: list[_Day], which: str) -> ds.frequent_strings_sketch:
        if len(chosen) == 1:
            return getattr(chosen[0], which)
        merged = ds.frequent_strings_sketch(self.config.frequent_lg_max_map_size)
        for state in chosen:
            merged.merge(getattr(state, which))
        return merged

    def rank_error(self, days: DayRange) -> int:
        """The most visits an item missing from the rankings of ``days`` may have; also the widest
        ``visits_bounds`` of a ranked item (the frequent-items sketch's maximum error)."""
        chosen = self._in(days)
        return int(self._frequent(chosen, "items").get_upper_bound(_NEVER_A_KEY)) if chosen else 0

    def top_items(self, days: DayRange, k: int) -> list[ItemRow]:
        chosen = self._in(days)
        if not chosen or k <= 0:
            return []
        ranked = _ranked(self._frequent(chosen, "items"), k)
        rows = []
        for key, code, visits in ranked:
            sketches = []
            seen = 0
            for state in chosen:
                entry = state.tracked.get(code)
                if entry is not None:
                    sketches.append(entry.hll)
                    seen += entry.visits
            hll = _distinct(_union(sketches, self.config.item_hll_lg_k) if sketches else None)
            rows.append(ItemRow(key, visits, _item_visitors(hll, visits, seen)))
        return rows

    def top_categories(self, days: DayRange, k: int) -> list[CategoryRow]:
        chosen = self._in(days)
        if not chosen or k <= 0:
            return []
        return [CategoryRow(key, visits) for key, _, visits in _ranked(self._frequent(chosen, "categories"), k)]

    def dated_days(self) -> DayRange | None:
        dated = [day for day in self._days if day not in (NO_TIME, FUTURE)]
        return DayRange(min(dated), max(dated)) if dated else None

    def day_points(self, spans: Sequence[DayRange]) -> list[Point]:
        return [Point(self.visits(span), self.distinct_visitors(span)) for span in spans]

    def bucket_span(self) -> tuple[int, int] | None:
        return (min(self._buckets), max(self._buckets)) if self._buckets else None

    def bucket_points(self, first: int, last: int) -> dict[int, Point]:
        return {
            bucket: Point(Estimate(point.visits), _distinct(point.visitors))
            for bucket, point in sorted(self._buckets.items())
            if first <= bucket <= last
        }

    def nbytes(self) -> int:
        total = sum(state.nbytes() for state in self._days.values())
        return total + sum(200 + b.visitors.get_updatable_serialization_bytes() for b in self._buckets.values())

    # -- transport ------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        out = _Writer()
        out.raw(self.MAGIC + self.VERSION.to_bytes(2, "little"))
        c = self.config
        for value in (c.hll_lg_k, c.item_hll_lg_k, c.frequent_lg_max_map_size, c.tracked_items):
            out.u32(value)
        out.u32(len(self._days))
        for day, state in sorted(self._days.items()):
            out.i64(day)
            state.write(out)
        out.u32(len(self._buckets))
        for bucket, point in sorted(self._buckets.items()):
            out.i64(bucket)
            out.i64(point.visits)
            out.blob(point.visitors.serialize_compact())
        return out.getvalue()

    @classmethod
    def from_bytes(cls, body: bytes) -> ApproxStatistics:
        reader = _Reader(body)
        _check_header(reader, cls.MAGIC, cls.VERSION, "approximate statistics")
        config = SketchConfig(reader.u32(), reader.u32(), reader.u32(), reader.u32())
        stats = cls(config)
        for _ in range(reader.u32()):
            day = reader.i64()
            stats._days[day] = _Day.read(reader, config)
        for _ in range(reader.u32()):
            bucket = reader.i64()
            point = stats._buckets[bucket] = _Bucket(config.hll_lg_k)
            point.visits = reader.i64()
            point.visitors = ds.hll_sketch.deserialize(reader.blob())
        reader.end()
        return stats


def _ranked(sketch: ds.frequent_strings_sketch, k: int) -> list[tuple[Key, str, Estimate]]:
    """The sketch's ``k`` leaders by estimate (ties per :func:`rank_key`), each with its visits bounds."""
    rows = []
    for code, estimate, lower, upper in sketch.get_frequent_items(_NO_FALSE_NEGATIVES):
        rows.append((decode_key(code), code, Estimate(int(estimate), int(lower), int(upper))))
    return heapq.nsmallest(k, rows, key=lambda row: rank_key(row[0], row[2].value))


def _item_visitors(hll: Estimate, visits: Estimate, seen: int) -> Estimate:
    """Distinct visitors of an item from its tracked HLL, widened by the visits it was not tracked for."""
    most_visits = visits.upper if visits.upper is not None else visits.value
    unseen_most = max(0, most_visits - seen)
    unseen_guess = max(0, visits.value - seen)
    assert hll.lower is not None and hll.upper is not None
    lower = min(hll.lower, most_visits)
    upper = max(lower, min(most_visits, hll.upper + unseen_most))
    ratio = hll.value / seen if seen else 1.0  # the unseen visits' share of new visitors, as in the seen ones
    value = round(hll.value + ratio * unseen_guess)
    return Estimate(min(max(value, lower), upper), lower, upper)
