"""Exact facts as columns: what a worker counts in exact mode and sends to the coordinator in a flush.

A fact is one row ``(day, bucket, item, category, visitor, n)``: ``n`` counted records on local day
``day`` (a day number, :data:`~lifestats.statistics.NO_TIME` or :data:`~lifestats.statistics.FUTURE`)
in fine series bucket ``bucket`` (:data:`~lifestats.statistics.NO_BUCKET` when none) had that item,
category and visitor. Every exact figure of the report is a ``SUM(n)`` or a ``COUNT(DISTINCT visitor)``
over the facts of some days or buckets, so the coordinator can keep them in an analytical engine
(:mod:`lifestats.store`) and answer the report with queries, out of core.

Why columns: a flush's facts travel as one Arrow IPC stream (lz4-compressed) that the coordinator
hands to DuckDB as it is, so inserting a flush costs no Python work per key. Each key column is split
into an ``int64`` column and a ``string`` column (exactly one of them set, or neither for a missing
category or visitor), so the int 5 and the string "5" stay two keys, as the API gave them.

:class:`FactsStatistics` is the worker's side of the :class:`~lifestats.statistics.Statistics`
protocol: ``add`` appends a page's columns, ``to_bytes`` sums equal facts (pyarrow's group-by, in C)
and writes them. A worker never reads them; reads (small runs, tests) go through the in-memory
reference. The coordinator's reads are SQL: :class:`FactQueries`, used by :mod:`lifestats.store`.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

if TYPE_CHECKING:
    import duckdb

from .statistics import (
    FUTURE,
    NO_BUCKET,
    NO_TIME,
    CategoryRow,
    Columns,
    DayRange,
    Estimate,
    ExactStatistics,
    ItemRow,
    Key,
    Point,
)
from .stats import FACTS_MAGIC

KEYS: Final = ("item", "category", "visitor")
FACT_SCHEMA: Final = pa.schema(
    [
        ("day", pa.int32()),
        ("bucket", pa.int64()),
        ("item_i", pa.int64()),
        ("item_s", pa.string()),
        ("category_i", pa.int64()),
        ("category_s", pa.string()),
        ("visitor_i", pa.int64()),
        ("visitor_s", pa.string()),
        ("n", pa.int64()),
    ]
)
GROUP_COLUMNS: Final = tuple(name for name in FACT_SCHEMA.names if name != "n")
# The facts table as DuckDB declares it (the same columns and order as FACT_SCHEMA).
FACTS_DDL: Final = (
    "day INTEGER NOT NULL, bucket BIGINT NOT NULL, item_i BIGINT, item_s VARCHAR, category_i BIGINT, "
    "category_s VARCHAR, visitor_i BIGINT, visitor_s VARCHAR, n BIGINT NOT NULL"
)
_MAGIC: Final = FACTS_MAGIC  # defined where flush bodies are told apart without importing pyarrow
_VERSION: Final = 1
# lz4: about half of zstd's CPU to write and a third to read, 1.8x the bytes (`bench/facts_codec.py`); the
# facts only travel from a worker to the coordinator, which inserts them into DuckDB.
_IPC_OPTIONS: Final = pa.ipc.IpcWriteOptions(compression="lz4")
_COMPACT_EVERY: Final = 1 << 20  # pending rows after which a worker sums its facts (bounds its memory)


class SummingPolicy:
    """Whether a flush's facts are summed before they travel: only while summing pays.

    Summing equal facts costs the worker a hash group-by of every row (0.3-0.5 µs per record in
    ``bench/phases.py``) and saves the coordinator DuckDB's cost of the rows it removes (about 0.8 µs
    each, the facts' INSERT and the COMMIT in ``bench/coordinator.py``). On data where a visitor rarely
    meets the same item twice in a day (the benchmarks' 100,000 items and 10^6 visitors) it removes 2%
    of the rows; where visitors come back to the same items it removes most of them. So a process sums
    a flush, and when that removed less than ``min_share`` of the rows it sends the next
    ``probe_every - 1`` flushes as they are, then sums one again to look. Facts sent unsummed mean the
    same: every read is a ``SUM(n)`` or a ``COUNT(DISTINCT visitor)``, which equal rows leave unchanged.
    """

    def __init__(self, min_share: float = 0.1, probe_every: int = 16) -> None:
        self.min_share = min_share
        self.probe_every = probe_every
        self._skip = 0  # flushes still to send as they are

    def should_sum(self) -> bool:
        if self._skip:
            self._skip -= 1
            return False
        return True

    def observed(self, rows: int, summed_rows: int) -> None:
        """A flush of ``rows`` facts summed to ``summed_rows``."""
        if rows and rows - summed_rows < self.min_share * rows:
            self._skip = self.probe_every - 1


SUMMING: Final = SummingPolicy()  # this process's (a worker sends its flushes one after the other)


def split_keys(column: Sequence[Key | None] | npt.NDArray[Any]) -> tuple[pa.Array, pa.Array]:
    """A key column as (int64 array, string array): each row's key in the one of its type, null in the other.

    The common cases cost no Python loop: an integer numpy array, or a list that pyarrow converts
    whole as integers or as strings (None becomes null). Only a list that mixes ints and strings takes
    one Python pass.
    """
    n = len(column)
    if isinstance(column, np.ndarray) and column.dtype.kind in "iu":
        return pa.array(column, type=pa.int64()), pa.nulls(n, pa.string())
    values = column.tolist() if isinstance(column, np.ndarray) else column
    # Tried in the order the first value suggests: a failed conversion costs as much as a good one.
    first = next((v for v in values if v is not None), None)
    for as_text in (True, False) if type(first) is str else (False, True):
        try:
            if as_text:
                return pa.nulls(n, pa.int64()), pa.array(values, type=pa.string())
            return pa.array(values, type=pa.int64()), pa.nulls(n, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            pass
    ints = [v if type(v) is int else None for v in values]
    strs = [v if type(v) is str else None for v in values]
    return pa.array(ints, type=pa.int64()), pa.array(strs, type=pa.string())


def facts_of(columns: Columns) -> pa.Table:
    """One page of counted records as facts, one row per record with ``n`` = 1 (not yet summed)."""
    n = len(columns)
    days = np.asarray(columns.days, dtype=np.int64)
    buckets = (
        np.full(n, NO_BUCKET, dtype=np.int64) if columns.buckets is None else np.asarray(columns.buckets, np.int64)
    )
    arrays: list[pa.Array] = [pa.array(days.astype(np.int32)), pa.array(buckets)]
    for column in (columns.items, columns.categories, columns.visitors):
        arrays.extend(split_keys(column))
    arrays.append(pa.array(np.ones(n, dtype=np.int64)))
    return pa.Table.from_arrays(arrays, schema=FACT_SCHEMA)


def summed(table: pa.Table) -> pa.Table:
    """Equal facts summed into one row (pyarrow's hash group-by; null keys group like any value)."""
    if table.num_rows == 0:
        return FACT_SCHEMA.empty_table()
    grouped = table.group_by(list(GROUP_COLUMNS), use_threads=False).aggregate([("n", "sum")])
    return grouped.rename_columns([*GROUP_COLUMNS, "n"]).select(list(FACT_SCHEMA.names)).cast(FACT_SCHEMA)


def encode_facts(table: pa.Table) -> bytes:
    """Header and one lz4-compressed Arrow IPC stream of the facts."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, FACT_SCHEMA, options=_IPC_OPTIONS) as writer:
        writer.write_table(table.cast(FACT_SCHEMA))
    return _MAGIC + struct.pack("<H", _VERSION) + sink.getvalue().to_pybytes()


def decode_facts(body: bytes) -> pa.Table:
    """The facts that :func:`encode_facts` wrote (ValueError on a foreign or newer body)."""
    head = len(_MAGIC) + 2
    if body[: len(_MAGIC)] != _MAGIC:
        raise ValueError(f"not exact facts: the body starts with {body[:4]!r}, not {_MAGIC!r}")
    (version,) = struct.unpack("<H", body[len(_MAGIC) : head])
    if version != _VERSION:
        raise ValueError(f"exact facts of format version {version}; this Lifestats reads version {_VERSION}")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body[head:])).read_all()
    except pa.ArrowException as exc:
        raise ValueError(f"exact facts are damaged ({exc})") from None
    if table.schema != FACT_SCHEMA:
        raise ValueError("exact facts have other columns than this Lifestats writes")
    return table


# -- the reads, as SQL over a relation of facts ----------------------------------------------------------

_DISTINCT: Final = "COUNT(DISTINCT visitor_i) + COUNT(DISTINCT visitor_s)"  # int and str visitors never meet
_RANK: Final = "ORDER BY visits DESC, {k}_i IS NULL, {k}_i, {k}_s"  # numbers first, strings by code point


def _key(i: int | None, s: str | None) -> Key:
    return s if i is None else i  # type: ignore[return-value]


class FactQueries:
    """The :class:`~lifestats.statistics.Statistics` reads as queries over the facts in ``relation``.

    Every figure is computed by DuckDB (``SUM``, ``COUNT(DISTINCT ...)`` that spills to disk past the
    connection's memory limit, a join for the top items' visitors), so what Python holds is the answer,
    never the facts.
    """

    def __init__(self, db: duckdb.DuckDBPyConnection, relation: str) -> None:
        self._db = db
        self._rel = relation

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
        rows = self._db.execute(sql, list(params)).fetchall()
        return tuple(rows[0])

    def visits(self, days: DayRange) -> Estimate:
        (total,) = self._one(f"SELECT COALESCE(SUM(n), 0) FROM {self._rel} WHERE day BETWEEN ? AND ?", _span(days))
        return Estimate(int(total))

    def distinct_visitors(self, days: DayRange) -> Estimate:
        (count,) = self._one(f"SELECT {_DISTINCT} FROM {self._rel} WHERE day BETWEEN ? AND ?", _span(days))
        return Estimate(int(count))

    def top_items(self, days: DayRange, k: int) -> list[ItemRow]:
        if k <= 0:
            return []
        rows = self._db.execute(
            f"""
            WITH top AS (
                SELECT item_i, item_s, SUM(n) AS visits FROM {self._rel} WHERE day BETWEEN ? AND ?
                GROUP BY item_i, item_s {_RANK.format(k="item")} LIMIT ?
            ), seen AS (
                SELECT f.item_i, f.item_s, {_DISTINCT} AS visitors
                FROM {self._rel} f SEMI JOIN top t
                    ON f.item_i IS NOT DISTINCT FROM t.item_i AND f.item_s IS NOT DISTINCT FROM t.item_s
                WHERE f.day BETWEEN ? AND ?
                GROUP BY f.item_i, f.item_s
            )
            SELECT t.item_i, t.item_s, t.visits, COALESCE(s.visitors, 0) AS visitors
            FROM top t LEFT JOIN seen s
                ON t.item_i IS NOT DISTINCT FROM s.item_i AND t.item_s IS NOT DISTINCT FROM s.item_s
            {_RANK.format(k="t.item")}
            """,
            [*_span(days), k, *_span(days)],
        ).fetchall()
        return [ItemRow(_key(i, s), Estimate(int(v)), Estimate(int(d))) for i, s, v, d in rows]

    def top_categories(self, days: DayRange, k: int) -> list[CategoryRow]:
        if k <= 0:
            return []
        rows = self._db.execute(
            f"""
            SELECT category_i, category_s, SUM(n) AS visits FROM {self._rel}
            WHERE day BETWEEN ? AND ? AND (category_i IS NOT NULL OR category_s IS NOT NULL)
            GROUP BY category_i, category_s {_RANK.format(k="category")} LIMIT ?
            """,
            [*_span(days), k],
        ).fetchall()
        return [CategoryRow(_key(i, s), Estimate(int(v))) for i, s, v in rows]

    def dated_days(self) -> DayRange | None:
        first, last = self._one(f"SELECT MIN(day), MAX(day) FROM {self._rel} WHERE day > ? AND day < ?", _sentinels())
        return None if first is None else DayRange(int(first), int(last))

    def day_points(self, spans: Sequence[DayRange]) -> list[Point]:
        """One query for all spans: each span's days listed once in a small table, joined on ``day``."""
        if not spans:
            return []
        owners: list[int] = []
        members: list[int] = []
        for at, span in enumerate(spans):
            first, last = max(span.first, NO_TIME), min(span.last, FUTURE)
            if last - first > 100_000:  # a span over all time: ask for it alone
                return [Point(self.visits(s), self.distinct_visitors(s)) for s in spans]
            owners.extend([at] * max(0, last - first + 1))
            members.extend(range(first, last + 1))
        span_days = pa.table({"span": pa.array(owners, pa.int64()), "day": pa.array(members, pa.int32())})
        name = f"_span_days_{id(span_days)}"
        self._db.register(name, span_days)
        try:
            rows = self._db.execute(
                f"SELECT s.span, SUM(f.n), {_DISTINCT} FROM {self._rel} f "
                f"JOIN {name} s ON f.day = s.day GROUP BY s.span"
            ).fetchall()
        finally:
            with contextlib.suppress(Exception):  # never in place of the error in flight (an interrupt)
                self._db.unregister(name)
        found = {int(at): (int(v), int(d)) for at, v, d in rows}
        points = [found.get(at, (0, 0)) for at in range(len(spans))]
        return [Point(Estimate(visits), Estimate(visitors)) for visits, visitors in points]

    def bucket_span(self) -> tuple[int, int] | None:
        first, last = self._one(f"SELECT MIN(bucket), MAX(bucket) FROM {self._rel} WHERE bucket <> ?", [NO_BUCKET])
        return None if first is None else (int(first), int(last))

    def bucket_points(self, first: int, last: int) -> dict[int, Point]:
        rows = self._db.execute(
            f"""SELECT bucket, SUM(n), {_DISTINCT} FROM {self._rel}
            WHERE bucket <> ? AND bucket BETWEEN ? AND ? GROUP BY bucket ORDER BY bucket""",
            [NO_BUCKET, first, last],
        ).fetchall()
        return {int(b): Point(Estimate(int(v)), Estimate(int(d))) for b, v, d in rows}

    def close(self) -> None:
        self._db.close()

    def rows(self) -> int:
        (count,) = self._one(f"SELECT COUNT(*) FROM {self._rel}")
        return int(count)


def _span(days: DayRange) -> list[int]:
    """The range clamped to what an INTEGER day column holds (the sentinels are its extremes)."""
    return [max(days.first, NO_TIME), min(days.last, FUTURE)]


def _sentinels() -> list[int]:
    return [NO_TIME, FUTURE]


# -- the worker's side -------------------------------------------------------------------------------


class FactsStatistics:
    """Exact statistics as a table of facts in memory (Arrow): what a worker counts between two flushes.

    Memory: the page tables are summed into one table every million rows, so a worker holds about the
    distinct facts since its last flush. Reads (tests, small runs) count the facts into the in-memory
    reference, :class:`~lifestats.statistics.ExactStatistics`.
    """

    MAGIC: Final = _MAGIC

    def __init__(self, table: pa.Table | None = None, *, summed: bool = False) -> None:
        self._parts: list[pa.Table] = [] if table is None or table.num_rows == 0 else [table]
        self._rows = sum(part.num_rows for part in self._parts)
        self._summed = summed  # the one part's equal facts are summed already: table() need not group again
        self._reader: ExactStatistics | None = None

    # -- writes ---------------------------------------------------------------------------------------
    def add(self, columns: Columns) -> None:
        if len(columns):
            self._append(facts_of(columns))

    def merge(self, other: FactsStatistics) -> FactsStatistics:
        for part in other._parts:
            self._append(part)  # tables are immutable: sharing them leaves ``other`` as it was
        return self

    def _append(self, table: pa.Table) -> None:
        self._reader = None
        self._parts.append(table)
        self._rows += table.num_rows
        self._summed = False
        if self._rows >= _COMPACT_EVERY and len(self._parts) > 1:
            self._parts = [self.table()]
            self._rows = self._parts[0].num_rows
            self._summed = True

    def table(self) -> pa.Table:
        """The facts, equal ones summed."""
        if not self._parts:
            return FACT_SCHEMA.empty_table()
        if self._summed and len(self._parts) == 1:
            return self._parts[0]
        return summed(pa.concat_tables(self._parts))

    def __len__(self) -> int:
        return self._rows

    # -- transport ------------------------------------------------------------------------------------
    def rows(self) -> pa.Table:
        """The facts as they are held: equal ones summed only where they were (cheaper than :meth:`table`
        for a reader that sums anyway, such as the coordinator's SQL)."""
        if len(self._parts) == 1:
            return self._parts[0]
        return pa.concat_tables(self._parts).combine_chunks() if self._parts else FACT_SCHEMA.empty_table()

    def to_bytes(self, policy: SummingPolicy = SUMMING) -> bytes:
        """The facts for transport, summed while summing pays (:class:`SummingPolicy`)."""
        if (self._summed and len(self._parts) == 1) or not policy.should_sum():
            return encode_facts(self.rows())
        table = self.table()
        policy.observed(self._rows, table.num_rows)
        return encode_facts(table)

    @classmethod
    def from_bytes(cls, body: bytes) -> FactsStatistics:
        return cls(decode_facts(body))  # summed or not, as they were sent

    def nbytes(self) -> int:
        return sum(part.nbytes for part in self._parts)

    # -- reads ----------------------------------------------------------------------------------------
    def _reference(self) -> ExactStatistics:
        """The facts counted into the in-memory reference, kept until the next write (small runs, tests)."""
        if self._reader is None:
            table = self.table()
            at = np.repeat(np.arange(table.num_rows), table["n"].to_numpy())
            table = table.take(pa.array(at))

            def keys(name: str) -> list[Key | None]:
                ints, strs = table[f"{name}_i"].to_pylist(), table[f"{name}_s"].to_pylist()
                return [s if i is None else i for i, s in zip(ints, strs, strict=True)]

            reference = ExactStatistics()
            reference.add(
                Columns(
                    keys("item"),  # type: ignore[arg-type]  # an item is never null
                    keys("category"),
                    keys("visitor"),
                    table["day"].to_numpy().astype(np.int64),
                    table["bucket"].to_numpy(),
                )
            )
            self._reader = reference
        return self._reader

    def visits(self, days: DayRange) -> Estimate:
        return self._reference().visits(days)

    def distinct_visitors(self, days: DayRange) -> Estimate:
        return self._reference().distinct_visitors(days)

    def top_items(self, days: DayRange, k: int) -> list[ItemRow]:
        return self._reference().top_items(days, k)

    def top_categories(self, days: DayRange, k: int) -> list[CategoryRow]:
        return self._reference().top_categories(days, k)

    def dated_days(self) -> DayRange | None:
        return self._reference().dated_days()

    def day_points(self, spans: Sequence[DayRange]) -> list[Point]:
        return self._reference().day_points(spans)

    def bucket_span(self) -> tuple[int, int] | None:
        return self._reference().bucket_span()

    def bucket_points(self, first: int, last: int) -> dict[int, Point]:
        return self._reference().bucket_points(first, last)
