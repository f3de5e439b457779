"""Statistics as plain mergeable values.

A :class:`Partial` is what a worker counts between two flushes, what the aggregator holds, what a
checkpoint stores and what crosses process (or machine) boundaries: ``merge`` is associative and
commutative, and ``to_bytes``/``from_bytes`` round-trip it through JSON (never pickle).

In approx mode the counts of the records live in :attr:`Partial.approx` (sketches behind the
:class:`~lifestats.statistics.Statistics` interface) instead of ``windows`` and ``series``; its binary
form follows the JSON part, length-prefixed, so an exact partial's bytes stay what they were.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from .sketch import ApproxStatistics

Key = int | str  # an item, category or visitor id keeps the JSON type the API gave it

_APPROX_MAGIC = b"LSPA"  # a partial with approximate statistics: magic, u32 JSON length, JSON, sketches
RECORD_COUNTS = ("fetched", "counted", "rejected", "bots", "duplicates")
# `future`, a part of `counted`: records stamped after as_of (in the window `all` only, not in the series).


@dataclass
class WindowStats:
    """Exact counts of one window: visits, visitors, and per item and per category."""

    visits: int = 0
    visitors: set[Key] = field(default_factory=set)
    items: Counter[Key] = field(default_factory=Counter)
    item_visitors: dict[Key, set[Key]] = field(default_factory=dict)
    categories: Counter[Key] = field(default_factory=Counter)

    def merge(self, other: WindowStats) -> None:
        self.visits += other.visits
        self.visitors |= other.visitors
        self.items.update(other.items)
        self.categories.update(other.categories)
        for item, visitors in other.item_visitors.items():
            mine = self.item_visitors.get(item)
            if mine is None:
                self.item_visitors[item] = set(visitors)
            else:
                mine |= visitors

    def to_plain(self) -> dict[str, Any]:
        return {
            "visits": self.visits,
            "visitors": list(self.visitors),
            "items": list(self.items.items()),
            "item_visitors": [[k, list(v)] for k, v in self.item_visitors.items()],
            "categories": list(self.categories.items()),
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> WindowStats:
        return cls(
            visits=data["visits"],
            visitors=set(data["visitors"]),
            items=Counter(dict(data["items"])),
            item_visitors={k: set(v) for k, v in data["item_visitors"]},
            categories=Counter(dict(data["categories"])),
        )


@dataclass
class SeriesPoint:
    visits: int = 0
    visitors: set[Key] = field(default_factory=set)

    def merge(self, other: SeriesPoint) -> None:
        self.visits += other.visits
        self.visitors |= other.visitors


@dataclass
class Partial:
    """Everything counted over some set of records; empty is the identity of ``merge``."""

    records: Counter[str] = field(default_factory=Counter)
    windows: dict[str, WindowStats] = field(default_factory=dict)
    series: dict[int, SeriesPoint] = field(default_factory=dict)
    rejects: list[dict[str, Any]] = field(default_factory=list)  # a sample, with reasons
    # Records whose series bucket lies before ``series_floor`` were counted but not kept in ``series``
    # (they are older than the longest series the report can show): ``series_cut`` says how many.
    series_floor: int | None = None
    series_cut: int = 0
    approx: ApproxStatistics | None = None  # approx mode: the counted records' sketches

    def floor_series(self, floor: int | None) -> None:
        """Keep no series point before ``floor`` from now on (the latest floor wins, so that a merge
        never shows a bucket as complete that one of its parts cut)."""
        if floor is not None and (self.series_floor is None or floor > self.series_floor):
            self.series_floor = floor

    def window(self, name: str) -> WindowStats:
        stats = self.windows.get(name)
        if stats is None:
            stats = self.windows[name] = WindowStats()
        return stats

    def point(self, key: int) -> SeriesPoint:
        point = self.series.get(key)
        if point is None:
            point = self.series[key] = SeriesPoint()
        return point

    def merge(self, other: Partial, *, keep_rejects: int = 100) -> Partial:
        self.records.update(other.records)
        for name, stats in other.windows.items():
            self.window(name).merge(stats)
        for key, point in other.series.items():
            self.point(key).merge(point)
        self.floor_series(other.series_floor)
        self.series_cut += other.series_cut
        if other.approx is not None:
            if self.approx is None:
                self.approx = ApproxStatistics(other.approx.config)
            self.approx.merge(other.approx)  # copies what it takes: ``other`` is left as it was
        room = keep_rejects - len(self.rejects)
        if room > 0:
            self.rejects.extend(other.rejects[:room])
        return self

    def to_bytes(self) -> bytes:
        plain = self._plain_bytes()
        if self.approx is None:
            return plain
        return _APPROX_MAGIC + len(plain).to_bytes(4, "little") + plain + self.approx.to_bytes()

    def _plain_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "records": dict(self.records),
                "windows": {name: stats.to_plain() for name, stats in self.windows.items()},
                "series": [[k, p.visits, list(p.visitors)] for k, p in self.series.items()],
                "rejects": self.rejects,
                "series_floor": self.series_floor,
                "series_cut": self.series_cut,
            }
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> Partial:
        approx = None
        if body[: len(_APPROX_MAGIC)] == _APPROX_MAGIC:
            start = len(_APPROX_MAGIC) + 4
            end = start + int.from_bytes(body[len(_APPROX_MAGIC) : start], "little")
            body, approx = body[start:end], ApproxStatistics.from_bytes(body[end:])
        data = orjson.loads(body)
        return cls(
            records=Counter(data["records"]),
            windows={name: WindowStats.from_plain(w) for name, w in data["windows"].items()},
            series={k: SeriesPoint(visits, set(visitors)) for k, visits, visitors in data["series"]},
            rejects=data["rejects"],
            series_floor=data.get("series_floor"),
            series_cut=data.get("series_cut", 0),
            approx=approx,
        )
