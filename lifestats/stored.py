"""Exact statistics kept in the checkpoint's DuckDB file: the ``facts`` table and the queries over it.

In exact mode every flush's facts (:mod:`lifestats.facts`, Arrow columns) are appended to a table
``facts`` of the checkpoint (:mod:`lifestats.store`), in the flush's transaction, and the report's
figures are SQL over that table (:class:`StoredStatistics`), so the coordinator never holds them.

This lives apart from :mod:`lifestats.store` because it needs pyarrow, which costs a process tens of
MB: the checkpoint imports this module only when exact facts are stored or read, so an approx run never
loads pyarrow. The table is made when it is first needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from .facts import FACT_SCHEMA, FACTS_DDL, FactQueries, FactsStatistics, encode_facts, facts_of
from .statistics import Columns


def create_facts_table(db: duckdb.DuckDBPyConnection) -> None:
    """Make the ``facts`` table if it is not there yet."""
    db.execute(f"CREATE TABLE IF NOT EXISTS facts ({FACTS_DDL})")


def insert_facts(db: duckdb.DuckDBPyConnection, facts: pa.Table) -> None:
    """Append facts (an Arrow table) by DuckDB's own scan of it: no Python work per row."""
    name = f"_incoming_{id(facts)}"
    # A flush's facts have the schema already (decode_facts checks it); a cast would import
    # pyarrow.compute, about 0.2 s of the coordinator's CPU that nothing else needs.
    db.register(name, facts if facts.schema.equals(FACT_SCHEMA) else facts.cast(FACT_SCHEMA))
    try:
        db.execute(f"INSERT INTO facts SELECT * FROM {name}")
    finally:
        # Never let this replace the error in flight: after an interrupted INSERT the transaction is
        # aborted and DuckDB refuses everything but ROLLBACK, which would turn Ctrl-C into a write error.
        with contextlib.suppress(duckdb.Error):
            db.unregister(name)


class StoredStatistics(FactQueries):
    """Exact :class:`~lifestats.statistics.Statistics` whose facts live in a DuckDB table ``facts``.

    Writes append facts (in the checkpoint's transaction when given one); reads are SQL. An instance
    from :meth:`from_bytes` keeps its facts in an in-memory DuckDB.
    """

    def __init__(
        self,
        db: duckdb.DuckDBPyConnection,
        transaction: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> None:
        super().__init__(db, "facts")
        self._transaction = transaction

    @classmethod
    def in_memory(cls) -> StoredStatistics:
        db = duckdb.connect(config={"threads": 1})
        db.execute(f"CREATE TABLE facts ({FACTS_DDL})")
        return cls(db)

    def _insert(self, facts: pa.Table) -> None:
        if not facts.num_rows:
            return
        with self._transaction() if self._transaction is not None else contextlib.nullcontext():
            insert_facts(self._db, facts)

    def add(self, columns: Columns) -> None:
        self._insert(facts_of(columns))

    def merge(self, other: StoredStatistics | FactsStatistics) -> StoredStatistics:
        self._insert(other.rows() if isinstance(other, FactsStatistics) else other.table())
        return self

    def table(self) -> pa.Table:
        """Every fact, equal ones summed (for transport; the whole table in memory)."""
        columns = ", ".join(name for name in FACT_SCHEMA.names if name != "n")
        query = f"SELECT {columns}, SUM(n)::BIGINT AS n FROM facts GROUP BY ALL"
        table: pa.Table = self._db.sql(query).to_arrow_table()
        return table.cast(FACT_SCHEMA)

    def to_bytes(self) -> bytes:
        return encode_facts(self.table())

    @classmethod
    def from_bytes(cls, body: bytes) -> StoredStatistics:
        stats = cls.in_memory()
        stats.merge(FactsStatistics.from_bytes(body))
        return stats

    def nbytes(self) -> int:
        """The memory DuckDB holds for the connection's database (its buffer, not the file)."""
        row = _row(self._db.execute("SELECT COALESCE(SUM(memory_usage_bytes), 0) FROM duckdb_memory()"))
        return int(row[0]) if row else 0


def _row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    rows = result.fetchall()
    return tuple(rows[0]) if rows else None
