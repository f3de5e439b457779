"""What a worker counts between two flushes, as one mergeable value.

A :class:`Partial` is what a worker counts between two flushes, what the aggregator holds, what a
checkpoint stores and what crosses process (or machine) boundaries: ``merge`` is associative and
commutative, and ``to_bytes``/``from_bytes`` round-trip it (never pickle).

The counts of the counted records live in :attr:`Partial.stats`, behind the
:class:`~lifestats.statistics.Statistics` interface: :class:`~lifestats.statistics.ExactStatistics` in
exact mode, :class:`~lifestats.sketch.ApproxStatistics` in approx mode (:func:`new_statistics` picks).
The rest (record tallies, the rejects sample, the series cut) is small JSON; the binary form is
``LSP2``, the JSON's length (u32), the JSON, then the statistics' own versioned bytes.
:meth:`Partial.write_to` and :meth:`Partial.read_from` stream that form to and from a file (the
checkpoint's compacted total) without holding it whole in memory.

Exact facts (:mod:`lifestats.facts`) need pyarrow, which costs a process tens of MB: it is imported
only where exact facts are made or read, so an approx run never loads it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import orjson

from .sketch import ApproxStatistics, SketchConfig
from .statistics import ExactStatistics, Statistics

if TYPE_CHECKING:
    from .config import StatsConfig

Key = int | str  # an item, category or visitor id keeps the JSON type the API gave it

_MAGIC = b"LSP2"  # magic, u32 JSON length, JSON, then the statistics' bytes (if any)
FACTS_MAGIC: Final = b"LSFX"  # what exact facts' bytes start with (lifestats.facts, imported only for them)
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

    def _header(self) -> bytes:
        plain = orjson.dumps(
            {
                "records": dict(self.records),
                "rejects": self.rejects,
                "series_floor": self.series_floor,
                "series_cut": self.series_cut,
            }
        )
        return _MAGIC + len(plain).to_bytes(4, "little") + plain

    @classmethod
    def _from_header(cls, plain: bytes, stats: Statistics | None) -> Partial:
        data = orjson.loads(plain)
        return cls(
            records=Counter(data["records"]),
            rejects=data["rejects"],
            series_floor=data.get("series_floor"),
            series_cut=data.get("series_cut", 0),
            stats=stats,
        )

    def to_bytes(self) -> bytes:
        stats = self.stats.to_bytes() if self.stats is not None else b""
        return self._header() + stats

    def write_to(self, stream: BinaryIO) -> int:
        """Write what :meth:`to_bytes` returns to ``stream``, approx statistics a day at a time (so a
        large total never exists whole in memory); returns the bytes written."""
        header = self._header()
        stream.write(header)
        if isinstance(self.stats, ApproxStatistics):
            return len(header) + self.stats.write_to(stream)
        stats = self.stats.to_bytes() if self.stats is not None else b""
        stream.write(stats)
        return len(header) + len(stats)

    @classmethod
    def from_bytes(cls, body: bytes) -> Partial:
        if body[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a partial of this version of Lifestats")
        start = len(_MAGIC) + 4
        end = start + int.from_bytes(body[len(_MAGIC) : start], "little")
        if end > len(body):
            raise ValueError("a partial is truncated")
        rest = body[end:]
        return cls._from_header(body[start:end], statistics_from_bytes(rest) if rest else None)

    @classmethod
    def read_from(cls, stream: BinaryIO) -> Partial:
        """The partial that :meth:`write_to` (or :meth:`to_bytes`) wrote to ``stream``, read to its end;
        approx statistics are read a day at a time, each day kept serialised (ValueError when damaged)."""
        head = stream.read(len(_MAGIC) + 4)
        if head[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a partial of this version of Lifestats")
        if len(head) < len(_MAGIC) + 4:
            raise ValueError("a partial is truncated")
        length = int.from_bytes(head[len(_MAGIC) :], "little")
        plain = stream.read(length)
        if len(plain) != length:
            raise ValueError("a partial is truncated")
        magic = stream.read(len(ApproxStatistics.MAGIC))
        stats: Statistics | None
        if not magic:
            stats = None
        elif magic == ApproxStatistics.MAGIC:
            stats = ApproxStatistics.read_from(stream, magic=magic)
            if stream.read(1):
                raise ValueError("approximate statistics have trailing bytes")
        else:
            stats = statistics_from_bytes(magic + stream.read())
        return cls._from_header(plain, stats)


def new_statistics(settings: StatsConfig) -> Statistics:
    """Empty statistics of the run's mode: sketches in approx mode, otherwise exact facts as columns
    (which the coordinator keeps in its DuckDB store, :mod:`lifestats.store`)."""
    if settings.mode == "approx":
        return ApproxStatistics(SketchConfig.from_settings(settings))
    from .facts import FactsStatistics  # pyarrow: only exact mode pays for it

    return FactsStatistics()


def statistics_from_bytes(body: bytes) -> Statistics:
    """The statistics whose ``to_bytes`` wrote ``body``, whichever implementation that was."""
    if body[: len(FACTS_MAGIC)] == FACTS_MAGIC:
        from .facts import FactsStatistics

        return FactsStatistics.from_bytes(body)
    if body[: len(ExactStatistics.MAGIC)] == ExactStatistics.MAGIC:
        return ExactStatistics.from_bytes(body)
    return ApproxStatistics.from_bytes(body)


def _empty_like(stats: Statistics) -> Statistics:
    if isinstance(stats, ApproxStatistics):
        return ApproxStatistics(stats.config)
    return type(stats)()
