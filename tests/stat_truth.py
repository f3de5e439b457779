"""Synthetic counted records and their ground truth, computed here with numpy (not with lifestats).

Records are integer codes (item rank, visitor number, category number) turned into typed keys so that
int and str keys with the same text both occur: code ``2n`` is the int ``n``, code ``2n + 1`` the string
``"n"``. Visitor code 1 is the empty string, a key like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lifestats.statistics import FUTURE, NO_BUCKET, NO_TIME, Columns, DayRange

TODAY = 20527  # 2026-03-15, the day of the tests' as_of


def key_of(code: int) -> int | str:
    return code // 2 if code % 2 == 0 else str(code // 2)


def visitor_key(code: int) -> int | str:
    return "" if code == 1 else key_of(code)


@dataclass
class Dataset:
    items: npt.NDArray[np.int64]  # item codes
    visitors: npt.NDArray[np.int64]  # visitor codes, -1 = none
    categories: npt.NDArray[np.int64]  # category codes, -1 = none
    days: npt.NDArray[np.int64]
    hours: npt.NDArray[np.int64]  # fine bucket key (hours since the epoch, local), NO_BUCKET where none
    n_items: int
    n_visitors: int
    n_categories: int

    def __len__(self) -> int:
        return len(self.items)

    def pages(self, size: int = 1000, start: int = 0, stop: int | None = None) -> Iterator[Columns]:
        stop = len(self) if stop is None else stop
        item_keys = [key_of(c) for c in range(self.n_items)]
        visitor_keys = [visitor_key(c) for c in range(self.n_visitors)]
        category_keys = [key_of(c) for c in range(self.n_categories)]
        for at in range(start, stop, size):
            end = min(at + size, stop)
            yield Columns(
                items=[item_keys[c] for c in self.items[at:end].tolist()],
                categories=[None if c < 0 else category_keys[c] for c in self.categories[at:end].tolist()],
                visitors=[None if c < 0 else visitor_keys[c] for c in self.visitors[at:end].tolist()],
                days=self.days[at:end],
                buckets=self.hours[at:end],
            )


def make(
    seed: int,
    n: int,
    *,
    n_items: int = 1000,
    n_visitors: int = 5000,
    n_categories: int = 12,
    skew: float | None = 1.2,
    n_days: int = 60,
    no_time: float = 0.03,
    future: float = 0.01,
    missing: float = 0.05,
) -> Dataset:
    """Records over ``n_days`` days up to TODAY, in crawl order (mostly by time); ``skew`` None = uniform."""
    rng = np.random.default_rng(seed)
    if skew is None:
        items = rng.integers(0, n_items, n)
    else:
        weights = 1.0 / np.arange(1, n_items + 1) ** skew
        items = rng.choice(n_items, size=n, p=weights / weights.sum())
        items = rng.permutation(n_items)[items]  # popular items get scattered codes, of both key types
    visitors = rng.integers(0, n_visitors, n)
    visitors[rng.random(n) < missing] = -1
    categories = rng.integers(0, n_categories, n)
    categories[rng.random(n) < missing * 2] = -1
    days = np.sort(rng.integers(TODAY - n_days + 1, TODAY + 1, n))
    hours = days * 24 + rng.integers(0, 24, n)
    kind = rng.random(n)
    days[kind < no_time] = NO_TIME
    days[(kind >= no_time) & (kind < no_time + future)] = FUTURE
    hours[(days == NO_TIME) | (days == FUTURE)] = NO_BUCKET
    return Dataset(
        items.astype(np.int64),
        visitors.astype(np.int64),
        categories.astype(np.int64),
        days.astype(np.int64),
        hours.astype(np.int64),
        n_items,
        n_visitors,
        n_categories,
    )


def rank_order(counts: dict[Any, int]) -> list[tuple[Any, int]]:
    """Most first; ties by key, ints before strings, ints numerically, strings by code point."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], isinstance(kv[0], str), kv[0]))


@dataclass
class Truth:
    visits: int
    distinct_visitors: int
    item_visits: dict[int | str, int]
    item_visitors: dict[int | str, int]
    category_visits: dict[int | str, int]


def truth(data: Dataset, days: DayRange, *, hours: tuple[int, int] | None = None) -> Truth:
    """The exact figures over the records whose day is in ``days`` (or whose hour is in ``hours``)."""
    if hours is None:
        mask = (data.days >= days.first) & (data.days <= days.last)
    else:
        mask = (data.hours >= hours[0]) & (data.hours <= hours[1])
    items, visitors, categories = data.items[mask], data.visitors[mask], data.categories[mask]
    seen = visitors >= 0
    item_visits = np.bincount(items, minlength=data.n_items)
    pairs = np.unique(items[seen] * data.n_visitors + visitors[seen])
    item_visitors = np.bincount(pairs // data.n_visitors, minlength=data.n_items)
    category_visits = np.bincount(categories[categories >= 0], minlength=data.n_categories)
    return Truth(
        visits=int(mask.sum()),
        distinct_visitors=len(np.unique(visitors[seen])),
        item_visits={key_of(c): int(v) for c, v in enumerate(item_visits.tolist()) if v},
        item_visitors={key_of(c): int(v) for c, v in enumerate(item_visitors.tolist()) if v},
        category_visits={key_of(c): int(v) for c, v in enumerate(category_visits.tolist()) if v},
    )


def windows() -> dict[str, DayRange]:
    """Every window of the report for as_of on TODAY, written out by hand, plus a few other ranges."""
    return {
        "all": DayRange(NO_TIME, FUTURE),
        "yesterday": DayRange(TODAY - 1, TODAY - 1),
        "last_7_days": DayRange(TODAY - 7, TODAY - 1),
        "last_30_days": DayRange(TODAY - 30, TODAY - 1),
        "this_year": DayRange(TODAY - 73, TODAY),  # 2026-01-01 .. 2026-03-15
        "no_time": DayRange(NO_TIME, NO_TIME),
        "future": DayRange(FUTURE, FUTURE),
        "today": DayRange(TODAY, TODAY),
    }
