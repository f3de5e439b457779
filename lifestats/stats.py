"""What a worker counts between two flushes, as one mergeable value.

A :class:`Partial` is what a worker counts between two flushes, what the aggregator holds, what a
checkpoint stores and what crosses process (or machine) boundaries: ``merge`` is associative and
commutative, and ``to_bytes``/``from_bytes`` round-trip it (never pickle).

The counts of the counted records live in :attr:`Partial.stats`, behind the
:class:`~lifestats.statistics.Statistics` interface: :class:`~lifestats.statistics.ExactStatistics` in
exact mode, :class:`~lifestats.sketch.ApproxStatistics` in approx mode (:func:`new_statistics` picks).
The rest (record tallies, the rejects sample, the series cut) is small JSON; the binary form is
``LSP2``, the JSON's length (u32), the JSON, then the statistics' own versioned bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .facts import FactsStatistics
from .sketch import ApproxStatistics, SketchConfig
from .statistics import ExactStatistics, Statistics

if TYPE_CHECKING:
    from .config import StatsConfig

Key = int | str  # an item, category or visitor id keeps the JSON type the API gave it

_MAGIC = b"LSP2"  # magic, u32 JSON length, JSON, then the statistics' bytes (if any)
RECORD_COUNTS = ("fetched", "counted", "rejected", "bots", "duplicates")
# `future`, a part of `counted`: records stamped after as_of (in the window `all` only, not in the series).


@dataclass
class Partial:
    """Everything counted over some set of records; empty is the identity of ``merge``."""

    records: Counter[str] = field(default_factory=Counter)
    rejects: list[dict[str, Any]] = field(default_factory=list)  # a sample, with reasons
    # Records whose series bucket lies before ``series_floor`` were counted but not kept in ``series``
    # (they are older than the longest series the report can show): ``series_cut`` says how many.
    series_floor: int | None = None
    series_cut: int = 0
    stats: Statistics | None = None  # the counted records' statistics (None: nothing counted yet)

    def floor_series(self, floor: int | None) -> None:
        """Keep no series point before ``floor`` from now on (the latest floor wins, so that a merge
        never shows a bucket as complete that one of its parts cut)."""
        if floor is not None and (self.series_floor is None or floor > self.series_floor):
            self.series_floor = floor

    def merge(self, other: Partial, *, keep_rejects: int = 100) -> Partial:
        self.records.update(other.records)
        self.floor_series(other.series_floor)
        self.series_cut += other.series_cut
        if other.stats is not None:
            if self.stats is None:
                self.stats = _empty_like(other.stats)
            self.stats.merge(other.stats)  # copies what it takes: ``other`` is left as it was
        room = keep_rejects - len(self.rejects)
        if room > 0:
            self.rejects.extend(other.rejects[:room])
        return self

    def to_bytes(self) -> bytes:
        plain = orjson.dumps(
            {
                "records": dict(self.records),
                "rejects": self.rejects,
                "series_floor": self.series_floor,
                "series_cut": self.series_cut,
            }
        )
        stats = self.stats.to_bytes() if self.stats is not None else b""
        return _MAGIC + len(plain).to_bytes(4, "little") + plain + stats

    @classmethod
    def from_bytes(cls, body: bytes) -> Partial:
        if body[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a partial of this version of Lifestats")
        start = len(_MAGIC) + 4
        end = start + int.from_bytes(body[len(_MAGIC) : start], "little")
        data = orjson.loads(body[start:end])
        rest = body[end:]
        return cls(
            records=Counter(data["records"]),
            rejects=data["rejects"],
            series_floor=data.get("series_floor"),
            series_cut=data.get("series_cut", 0),
            stats=statistics_from_bytes(rest) if rest else None,
        )


def new_statistics(settings: StatsConfig) -> Statistics:
    """Empty statistics of the run's mode: sketches in approx mode, otherwise exact facts as columns
    (which the coordinator keeps in its DuckDB store, :mod:`lifestats.store`)."""
    if settings.mode == "approx":
        return ApproxStatistics(SketchConfig.from_settings(settings))
    return FactsStatistics()


def statistics_from_bytes(body: bytes) -> Statistics:
    """The statistics whose ``to_bytes`` wrote ``body``, whichever implementation that was."""
    if body[: len(FactsStatistics.MAGIC)] == FactsStatistics.MAGIC:
        return FactsStatistics.from_bytes(body)
    if body[: len(ExactStatistics.MAGIC)] == ExactStatistics.MAGIC:
        return ExactStatistics.from_bytes(body)
    return ApproxStatistics.from_bytes(body)


def _empty_like(stats: Statistics) -> Statistics:
    if isinstance(stats, ApproxStatistics):
        return ApproxStatistics(stats.config)
    return type(stats)()
