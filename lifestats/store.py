"""The checkpoint and the exact facts in one DuckDB file: what makes a run resumable, exactly once.

One file in the state dir (:data:`CHECKPOINT_FILE`) holds:

- ``meta``: what the run learnt (fingerprint, as_of, bounds, schema version, finished) and which
  generation of the compacted total is committed (``total``);
- ``slices``: each slice's committed position (JSON text), high-water mark, attempt and sequence number;
- ``partials``: where each recent flush's small part (record tallies, series floor and cut, approx
  sketches) lies in the recent-blobs file: one row per flush since the last compaction;
- ``facts``: exact mode's facts (:mod:`lifestats.facts`, via :mod:`lifestats.stored`), appended per
  flush, read by SQL;
- ``taken``: in the positional and sequential styles, the ids each flush took (:mod:`lifestats.seen`),
  which a new attempt of the slice starts from, so that a record served again after a resume still
  counts once.

Beside it, per generation ``g`` of the compacted total, two files:

- ``total-<g>.bin``: the sum of every flush folded so far (a :class:`~lifestats.stats.Partial` as
  :meth:`~lifestats.stats.Partial.write_to` streams it; none for generation 0);
- ``recent-<g>.bin``: the blobs of the flushes since, appended one after the other.

So a resume reads the total and a bounded number of recent blobs instead of replaying the run. Why
files and not BLOBs: in approx mode the total is tens of MB of sketches, and the recent blobs weigh up
to as much again before they are folded. As BLOBs they were copied whole several times over (built as
bytes, handed to DuckDB, held in its buffers, its WAL and its checkpoints, read back), so the
coordinator's memory grew with them; as files they are written and read a blob, or a day of sketches,
at a time, and DuckDB only holds small rows.

A flush is applied only when it continues the slice's committed state (same attempt, next sequence
number), and then its position, its blob's place and its facts are committed in one transaction: a
flush that arrives twice, late, or from an attempt given up is ignored, so no record is counted twice.
Its blob is appended to ``recent-<g>.bin`` and synced before that transaction; bytes past the last
committed blob (a flush whose commit never happened) are never read, and are cut off on opening.

A compaction commits by generation: the new total is written to ``total-<g+1>.bin`` and synced to disk
first; then the flush's own transaction deletes the rows of the blobs it folded and sets ``total`` to
``g + 1``; only after that commit are generation ``g``'s files removed. Whatever stops it, the
checkpoint names exactly one generation, consistent with its rows and positions (the old total with the
old blobs, or the new one without them); files of any other generation are left over from an
interrupted compaction and are removed when the checkpoint is opened.

Memory: DuckDB runs with a memory limit and a temp directory in the state dir, so ``COUNT(DISTINCT
...)`` over more visitors than fit spills to disk instead of growing the coordinator.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import duckdb
import numpy as np
import orjson

from ._signals import held
from .config import comparable, fingerprint_changes
from .errors import CheckpointMismatch, StateDirError
from .plan import Slice
from .protocol import Flush

if TYPE_CHECKING:  # exact mode's facts need pyarrow: imported (through lifestats.stored) only when used
    import pyarrow as pa

    from .stored import StoredStatistics

SCHEMA_VERSION: Final = 6  # 6: the compacted total in a file beside the DuckDB file (5: a BLOB; 4 and older: SQLite)
CHECKPOINT_FILE: Final = "checkpoint.duckdb"
NEW_SUFFIX: Final = ".new"  # a checkpoint being made (see Checkpoint._create)
LEGACY_FILE: Final = "checkpoint.sqlite"  # schema 1 to 3 (SQLite)
TEMP_DIR: Final = "checkpoint.tmp"
REJECTS_FILE: Final = "rejects.jsonl"
TOTAL_KEY: Final = "total"  # the meta key naming the committed generation of the compacted total
_GENERATION_FILE: Final = re.compile(r"(?:total|recent)-(\d+)\.bin")
MEMORY_LIMIT: Final = "512MB"  # DuckDB's own buffer; what a query needs beyond it spills to TEMP_DIR
# DuckDB's threads while the crawl writes (one: the flushes are small statements, and a second thread
# only cost the coordinator CPU, 0.16-0.50 µs per record in `bench/coordinator.py`) and for the
# report's queries (two: a COUNT(DISTINCT) over 10^8 facts uses both cores), see Checkpoint.for_reading.
THREADS: Final = 1
READ_THREADS: Final = 2

# Ids and high-water marks are kept as decimal text: an id range may end at 2**63 (one past the largest
# signed 64-bit id), and nothing is compared in SQL but slice numbers.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS slices (
    idx INTEGER PRIMARY KEY,
    begin_id VARCHAR NOT NULL,
    end_id VARCHAR,
    position VARCHAR NOT NULL,
    high_water VARCHAR,
    seq INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    done BOOLEAN NOT NULL DEFAULT false,
    pages BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS partials (
    slice INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    start BIGINT NOT NULL,
    length BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS taken (slice INTEGER NOT NULL, seq INTEGER NOT NULL, ids BLOB NOT NULL);
"""
_TABLES: Final = ("meta", "slices", "partials", "facts", "taken")


class CheckpointSchemaError(StateDirError):
    """The state dir holds a checkpoint this version cannot read (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


@dataclass(frozen=True)
class SliceState:
    slice: Slice
    position: Any  # a JSON value; None when the slice is done
    high_water: int | None
    seq: int
    attempt: int
    done: bool
    pages: int


_INTERRUPT: Final = "KeyboardInterrupt"  # in DuckDB's message when Python code it called was interrupted


class Interruptible:
    """A DuckDB connection whose statements, when Ctrl-C stops them, raise KeyboardInterrupt.

    DuckDB notices the signal itself and ends the statement with its own error ("Query interrupted");
    the run must see the interrupt it is (exit 130, a partial report), not a failure of the state dir.
    """

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> duckdb.DuckDBPyConnection:
        try:
            return self._db.execute(sql, *args)
        except KeyboardInterrupt:
            self.abort()
            raise
        except (duckdb.InterruptException, duckdb.InvalidInputException, RuntimeError) as exc:
            # DuckDB's own notice of the signal, or the interrupt raised inside its scan of an Arrow table
            text = str(exc)
            if isinstance(exc, duckdb.InterruptException) or "interrupted" in text or _INTERRUPT in text:
                self.abort()
                raise KeyboardInterrupt from None
            raise

    def abort(self) -> None:
        """Drop a statement's unfinished result, so that the connection takes the next one (the partial
        report after Ctrl-C); harmless when there is none."""
        with contextlib.suppress(duckdb.Error):
            self._db.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def connect(path: Path, temp_dir: Path) -> duckdb.DuckDBPyConnection:
    """The checkpoint's connection: bounded memory, spilling to ``temp_dir``, one thread (see THREADS)."""
    return Interruptible(_connect(path, temp_dir))  # type: ignore[return-value]


def _connect(path: Path, temp_dir: Path) -> duckdb.DuckDBPyConnection:
    # Absolute: DuckDB reads a path that starts "md:" as a MotherDuck database to download an extension for.
    return duckdb.connect(
        str(path.absolute()),
        config={
            "memory_limit": MEMORY_LIMIT,
            "temp_directory": str(temp_dir.absolute()),
            "threads": THREADS,
            "preserve_insertion_order": False,
        },
    )


class Checkpoint:
    """The DuckDB state of one job.

    Every write goes through :meth:`_transaction`, so a write is all there or not there at all, and
    whatever stops it (Ctrl-C, a full disk, a read-only file) leaves the last committed state for the
    next run to resume from.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / CHECKPOINT_FILE
        self._depth = 0
        # What this process last read or wrote of a few checkpoint values that every flush needs (the
        # total's generation, the end of the committed blobs, whether the facts table exists): the
        # coordinator is the checkpoint's only writer (the state dir's lock), so they change only here.
        # Forgotten whenever a transaction does not commit, and read again.
        self._memo: dict[str, Any] = {}
        self._recent_fd: int | None = None  # the open recent-blobs file, of generation ``_recent_generation``
        self._recent_generation = -1
        odd = next((c for c in ("?", "\\") if c in str(state_dir.absolute())), None)
        if odd is not None:  # DuckDB reads "?" as the start of a path's options and "\\" as a separator
            raise StateDirError(
                f"the state dir {state_dir} has a {odd!r} in its path, which DuckDB (that holds the checkpoint) "
                "does not read as part of a file name: choose a --state-dir without it",
                exit_code=2,
            )
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._retire_legacy()
            if not self.path.exists():
                self._create()
            self._db = connect(self.path, state_dir / TEMP_DIR)
        except (OSError, duckdb.Error) as exc:
            raise self._unusable(exc) from None
        try:
            self._open()
            self._remove_stale_totals()
            self._cut_recent_tail()
        except StateDirError:
            self._db.close()
            raise
        except (OSError, duckdb.Error) as exc:
            self._db.close()
            raise self._unusable(exc) from None

    def _create(self) -> None:
        """Make a new checkpoint file under another name and rename it into place once its tables are
        written: a run stopped while it is made (a full disk, a kill) leaves no half-made checkpoint that
        the next run could not open, only a file of that other name, which the next run makes again."""
        new = self.path.with_name(CHECKPOINT_FILE + NEW_SUFFIX)
        for leftover in (new, new.with_name(new.name + ".wal")):
            leftover.unlink(missing_ok=True)
        self._db = connect(new, self.state_dir / TEMP_DIR)
        try:
            self._open()
            self._db.execute("CHECKPOINT")  # everything in the file itself, no write-ahead log beside it
        finally:
            self._db.close()
            self._memo.clear()
        os.replace(new, self.path)

    def _unusable(self, exc: BaseException) -> StateDirError:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if "not a valid DuckDB database file" in reason:
            return CheckpointSchemaError(
                f"{self.path} is not a Lifestats checkpoint; "
                "run again with --fresh to start over, or point --state-dir elsewhere"
            )
        return StateDirError(
            f"cannot use the checkpoint in {self.state_dir} ({_one_line(reason)}); "
            "point --state-dir at a writable directory with free space, or, if the checkpoint itself is "
            "damaged, run again with --fresh to start over",
            exit_code=2,
        )

    def _retire_legacy(self) -> None:
        """An SQLite checkpoint of an earlier version: removed when its run finished, else refused."""
        legacy = self.state_dir / LEGACY_FILE
        if not legacy.exists():
            return
        finished, version = False, None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{legacy}?mode=ro", uri=True)) as db:
                values = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('schema', 'finished')"))
            finished = "finished" in values and json.loads(values["finished"]) is True
            version = json.loads(values["schema"]) if "schema" in values else 1
        except (sqlite3.Error, ValueError):
            pass  # unreadable: refused below like any unfinished one
        if finished:
            for suffix in ("", "-wal", "-shm"):
                (self.state_dir / (LEGACY_FILE + suffix)).unlink(missing_ok=True)
            return
        raise CheckpointSchemaError(
            f"the checkpoint in {self.state_dir} was written by an older version of Lifestats "
            f"(checkpoint schema {version if version is not None else 'unknown'}, this version reads "
            f"{SCHEMA_VERSION}) and cannot be resumed; run again with --fresh to start over, "
            "or point --state-dir elsewhere"
        )

    def _open(self) -> None:
        self._check_schema()
        with self._transaction(on_error_exit=2):  # also proves, before any request, that it can be written
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self.put("schema", SCHEMA_VERSION)

    def _check_schema(self) -> None:
        """Refuse a checkpoint of another schema, unless it only records a finished run (then discard it)."""
        db = self._db
        tables = {name for (name,) in db.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "meta" not in tables:
            return
        values = dict(
            db.execute("SELECT key, value FROM meta WHERE key IN ('schema', 'finished', 'fingerprint')").fetchall()
        )
        if "schema" not in values and "fingerprint" not in values:
            return  # created, never used
        version = _loads(values["schema"]) if "schema" in values else 1
        if version == SCHEMA_VERSION:
            return
        if "finished" in values and _loads(values["finished"]) is True:
            with self._transaction(on_error_exit=2):  # nothing to resume: start afresh
                for table in _TABLES:
                    db.execute(f"DROP TABLE IF EXISTS {table}")
            self._memo.clear()
            return  # its total files, named by no generation now, go with the stale ones
        which = "an older" if isinstance(version, int) and version < SCHEMA_VERSION else "a newer"
        raise CheckpointSchemaError(
            f"the checkpoint in {self.state_dir} was written by {which} version of Lifestats "
            f"(checkpoint schema {version}, this version reads {SCHEMA_VERSION}) and cannot be resumed; "
            "run again with --fresh to start over, or point --state-dir elsewhere"
        )

    def close(self) -> None:
        self._close_recent()
        self._db.close()

    def renewed(self) -> Checkpoint:
        """Close this checkpoint, delete it, and open a new one in its place (the caller holds the lock)."""
        self.close()
        Checkpoint.remove(self.state_dir)
        return Checkpoint(self.state_dir)

    @staticmethod
    def remove(state_dir: Path) -> None:
        """Delete the checkpoint files (the caller holds the state dir's lock)."""
        try:
            made = (CHECKPOINT_FILE, CHECKPOINT_FILE + NEW_SUFFIX)
            for name in (*made, *(name + ".wal" for name in made), LEGACY_FILE, LEGACY_FILE + "-wal"):
                (state_dir / name).unlink(missing_ok=True)
            for path, _ in _generation_files(state_dir):
                path.unlink(missing_ok=True)
            (state_dir / (LEGACY_FILE + "-shm")).unlink(missing_ok=True)
            (state_dir / REJECTS_FILE).unlink(missing_ok=True)
            shutil.rmtree(state_dir / TEMP_DIR, ignore_errors=True)
        except OSError as exc:
            raise StateDirError(
                f"cannot remove the checkpoint in {state_dir} ({exc.strerror or exc}); "
                "point --state-dir at a writable directory",
                exit_code=2,
            ) from None

    def settle(self) -> None:
        """Drop whatever an interrupted read left unfinished on the connection (see :class:`Interruptible`)."""
        with contextlib.suppress(duckdb.Error):
            self._db.abort()

    # -- the one way to write -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, *, on_error_exit: int = 1) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction (nested uses join the enclosing one).

        Whatever stops the body, ROLLBACK is tried (harmless after a COMMIT that ran): an interrupt that
        lands just after COMMIT leaves the commit in place and goes on as the interrupt it is. A DuckDB failure (a full
        disk, a read-only file) becomes one :class:`StateDirError` with nothing half-applied.
        """
        db = self._db
        if self._depth:
            self._depth += 1
            try:
                yield db
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            # A signal is answered once the transaction is over (committed or rolled back), never from
            # inside a DuckDB statement, which would turn it into a DuckDB error.
            with held():
                db.execute("BEGIN TRANSACTION")
                yield db
                db.execute("COMMIT")
        except BaseException as exc:
            self._memo.clear()  # it may hold a value of the transaction that did not commit
            # Always: an interrupt may land just after BEGIN returned as well as in any statement. After a
            # COMMIT that ran, DuckDB answers "no transaction is active" and the commit stands.
            with contextlib.suppress(duckdb.Error, KeyboardInterrupt):
                db.execute("ROLLBACK")
            if isinstance(exc, duckdb.Error):
                advice = (
                    "point --state-dir at a writable directory with free space"
                    if on_error_exit == 2
                    else "nothing was half-written: free space or make it writable, then run the same command to resume"
                )
                raise StateDirError(
                    f"cannot write the checkpoint in {self.state_dir} ({_one_line(str(exc))}); {advice}",
                    exit_code=on_error_exit,
                ) from None
            raise
        finally:
            self._depth = 0

    # -- meta ---------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        row = _row(self._db.execute("SELECT value FROM meta WHERE key = ?", [key]))
        return _loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, _dumps(value)])

    def claim(self, fingerprint: dict[str, Any]) -> bool:
        """Bind the checkpoint to a job; True when it already held this job's state (a resume)."""
        stored = self.get("fingerprint")
        if isinstance(stored, dict):
            stored = comparable(stored)
        if stored is None:
            with self._transaction():
                self.put("schema", SCHEMA_VERSION)
                self.put("fingerprint", fingerprint)
            return False
        if stored != fingerprint:
            changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
            raise CheckpointMismatch(
                f"the checkpoint in {self.path.parent} belongs to a run with other settings "
                f"({', '.join(changed)} changed: {'; '.join(fingerprint_changes(stored, fingerprint))}), so "
                "resuming would mix two jobs' counts. Set them back to resume that run, run again with --fresh "
                "to start over, or point --state-dir elsewhere."
            )
        return True

    def holds_counts(self) -> bool:
        """Whether any flush was committed (a run stopped before its first one has nothing to resume)."""
        flushed = _row(self._db.execute("SELECT COUNT(*) FROM slices WHERE seq > 0"))
        blobs = _row(self._db.execute("SELECT COUNT(*) FROM partials"))
        return bool(flushed and flushed[0]) or bool(blobs and blobs[0]) or self.get(TOTAL_KEY) is not None

    def mark_finished(self) -> int:
        """Record that the run finished, if every slice is done; else the number of slices not done."""
        with self._transaction() as db:
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(CASE WHEN done THEN 0 ELSE 1 END), 0) FROM slices")
            (total, open_) = _row(row) or (0, 0)
            if open_ or not total:
                return int(open_) or 1
            self.put("finished", True)
            return 0

    # -- slices -------------------------------------------------------------------------------------
    def save_plan(
        self, slices: list[Slice], meta: dict[str, Any], *, attempt: int = 0, starts: dict[int, Any] | None = None
    ) -> None:
        """Store the slices and what was learnt making them (``meta``) in one transaction; ``attempt``: the
        attempt every slice is on (1 when their tasks went out already, as :meth:`begin_attempts` says);
        ``starts``: where the crawl of a slice starts, by slice index, when not at its begin."""
        starts = starts or {}
        with self._transaction() as db:
            if slices:
                # One statement for the whole plan (row by row, 100 slices took 40 ms before the first request).
                db.execute(
                    "INSERT INTO slices (idx, begin_id, end_id, position, high_water, attempt) "
                    "SELECT UNNEST(?::INTEGER[]), UNNEST(?::VARCHAR[]), UNNEST(?::VARCHAR[]), UNNEST(?::VARCHAR[]), "
                    "UNNEST(?::VARCHAR[]), ?",
                    [
                        [s.index for s in slices],
                        [_text(s.begin) for s in slices],
                        [_text(s.end) for s in slices],
                        [_json(starts.get(s.index, s.begin)) for s in slices],
                        [_text(s.begin - 1) for s in slices],
                        attempt,
                    ],
                )
            for key, value in meta.items():
                self.put(key, value)

    _COLUMNS = "idx, begin_id, end_id, position, high_water, seq, attempt, done, pages"

    @staticmethod
    def _state(row: tuple[Any, ...]) -> SliceState:
        i, begin, end, position, high_water, seq, attempt, done, pages = row
        return SliceState(
            Slice(i, int(begin), _int(end)), _loads(position), _int(high_water), seq, attempt, bool(done), int(pages)
        )

    def states(self) -> list[SliceState]:
        rows = self._db.execute(f"SELECT {self._COLUMNS} FROM slices ORDER BY idx").fetchall()
        return [self._state(row) for row in rows]

    def state(self, index: int) -> SliceState:
        row = _row(self._db.execute(f"SELECT {self._COLUMNS} FROM slices WHERE idx = ?", [index]))
        if row is None:
            raise KeyError(f"no slice {index} in the checkpoint")
        return self._state(row)

    def open_slices(self) -> int:
        """How many slices are not done."""
        (count,) = _row(self._db.execute("SELECT COUNT(*) FROM slices WHERE NOT done")) or (0,)
        return int(count)

    def begin_attempt(self, index: int) -> SliceState:
        """A new attempt at the slice: flushes and splits of any earlier attempt are ignored from now on."""
        with self._transaction() as db:
            db.execute("UPDATE slices SET attempt = attempt + 1 WHERE idx = ?", [index])
        return self.state(index)

    def begin_attempts(self, indices: list[int]) -> list[SliceState]:
        """:meth:`begin_attempt` of many slices in one transaction (a run hands out every slice at its start:
        one transaction each cost about 3 ms, 0.3 s of a 100-slice plan before the crawl got going)."""
        if not indices:
            return []
        with self._transaction() as db:
            marks = ", ".join("?" * len(indices))
            db.execute(f"UPDATE slices SET attempt = attempt + 1 WHERE idx IN ({marks})", list(indices))
        states = {state.slice.index: state for state in self.states()}
        return [states[index] for index in indices]

    def split(self, index: int, attempt: int, new_end: int) -> SliceState | None:
        """End slice ``index`` at ``new_end``; its remaining range becomes a new slice, returned.

        Applied only if the split is still true to the checkpoint: the proposer's attempt is the slice's
        current one, the slice is not done, and ``new_end`` lies strictly inside the range not yet
        committed (above its position and high-water mark, below its end). Otherwise None, and nothing
        changes: a late split can never re-open a range that was already counted.
        """
        with self._transaction() as db:
            row = _row(
                db.execute("SELECT end_id, position, high_water, attempt, done FROM slices WHERE idx = ?", [index])
            )
            if row is None:
                return None
            end, position, high_water = _int(row[0]), _loads(row[1]), _int(row[2])
            if row[3] != attempt or row[4]:
                return None
            if not isinstance(position, int) or isinstance(position, bool) or new_end <= position:
                return None  # only a crawl by id offsets can be cut at an id
            if (high_water is not None and new_end <= high_water) or (end is not None and new_end >= end):
                return None
            (new_index,) = _row(db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM slices")) or (0,)
            db.execute("UPDATE slices SET end_id = ? WHERE idx = ?", [_text(new_end), index])
            db.execute(
                "INSERT INTO slices (idx, begin_id, end_id, position, high_water) VALUES (?, ?, ?, ?, ?)",
                [new_index, _text(new_end), _text(end), _json(new_end), _text(new_end - 1)],
            )
        return self.state(new_index)

    def apply(
        self,
        flush: Flush,
        *,
        body: bytes | None = None,
        facts: pa.Table | None = None,
        compacted: Callable[[BinaryIO], object] | None = None,
    ) -> bool:
        """Commit the flush if it continues the slice's committed state; False if it was ignored.

        ``body`` is the flush's small blob (``flush.partial`` unless given), ``facts`` its exact facts.
        With ``compacted`` (called only once the flush is known to apply), the blobs are folded: it
        writes, to the stream it is given, the new total, which must sum the committed total, every
        committed blob and this flush; the new total is committed by generation (see the module's
        docstring) in the flush's transaction, and the blobs are deleted in it.
        """
        try:
            with self._transaction() as db:
                # The fence and the cursor in one statement: it moves the slice on only from the state
                # the flush continues (same attempt, the next seq, not done); else nothing is written.
                moved = db.execute(
                    "UPDATE slices SET position = ?, high_water = ?, seq = ?, done = ?, pages = pages + ? "
                    "WHERE idx = ? AND attempt = ? AND seq = ? AND NOT done RETURNING idx",
                    [
                        _json(flush.position),
                        _text(flush.high_water),
                        flush.seq,
                        flush.position is None,
                        flush.pages,
                        flush.slice,
                        flush.attempt,
                        flush.seq - 1,
                    ],
                )
                if _row(moved) is None:
                    return False
                if compacted is not None:
                    generation = self.total_generation() + 1
                    self._write_total(generation, compacted)  # on disk before the commit that names it
                    db.execute("DELETE FROM partials")
                    self.put(TOTAL_KEY, generation)
                    self._memo.update(generation=generation, committed_end=0)
                else:
                    blob = flush.partial if body is None else body
                    at = self._append_recent(blob)  # on disk before the commit that names it
                    db.execute(
                        "INSERT INTO partials (slice, seq, start, length) VALUES (?, ?, ?, ?)",
                        [flush.slice, flush.seq, at, len(blob)],
                    )
                    self._memo["committed_end"] = at + len(blob)
                if facts is not None and facts.num_rows:
                    self._insert_facts(facts)
                if flush.taken:
                    taken = [flush.slice, flush.seq, flush.taken]
                    db.execute("INSERT INTO taken (slice, seq, ids) VALUES (?, ?, ?)", taken)
        finally:
            if compacted is not None:  # committed or not: keep only the generation the checkpoint names
                self._close_recent()
                with contextlib.suppress(OSError, duckdb.Error, StateDirError):
                    self._remove_stale_totals()
        return True

    # -- the compacted total ------------------------------------------------------------------------
    def total_generation(self) -> int:
        """The generation of the committed total (0: nothing compacted yet, no file)."""
        if "generation" not in self._memo:
            generation = self.get(TOTAL_KEY)
            self._memo["generation"] = int(generation) if generation is not None else 0
        return int(self._memo["generation"])

    def total_path(self) -> Path | None:
        """The file of the committed compacted total, or None when nothing was compacted yet."""
        generation = self.total_generation()
        return _total_path(self.state_dir, generation) if generation else None

    def _write_total(self, generation: int, write: Callable[[BinaryIO], object]) -> None:
        """Write and sync ``total-<generation>.bin`` (a failure leaves no file and raises StateDirError)."""
        path = _total_path(self.state_dir, generation)
        try:
            with path.open("wb", buffering=1 << 20) as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            _sync_directory(self.state_dir)  # the file's name is durable before the commit that names it
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            raise StateDirError(
                f"cannot write the checkpoint's total in {self.state_dir} ({_one_line(exc.strerror or str(exc))}); "
                "nothing was half-written: free space or make it writable, then run the same command to resume"
            ) from None

    def _remove_stale_totals(self) -> None:
        """Remove the files of every generation but the committed one: a new total whose commit never
        happened, or an old generation whose removal did not (the caller holds the state dir's lock)."""
        keep = self.total_generation()
        for path, generation in _generation_files(self.state_dir):
            if generation != keep:
                path.unlink(missing_ok=True)

    # -- the recent blobs -----------------------------------------------------------------------------
    def _committed_end(self) -> int:
        if "committed_end" not in self._memo:
            (end,) = _row(self._db.execute("SELECT COALESCE(MAX(start + length), 0) FROM partials")) or (0,)
            self._memo["committed_end"] = int(end)
        return int(self._memo["committed_end"])

    def _cut_recent_tail(self) -> None:
        """Cut off bytes past the last committed blob (appended by a flush whose commit never happened)."""
        path = _recent_path(self.state_dir, self.total_generation())
        end = self._committed_end()
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > end:
                os.truncate(path, end)

    def _recent_file(self) -> int:
        """The recent-blobs file of the committed generation, open for writing."""
        generation = self.total_generation()
        if self._recent_fd is None or self._recent_generation != generation:
            self._close_recent()
            self._recent_fd = os.open(_recent_path(self.state_dir, generation), os.O_RDWR | os.O_CREAT, 0o644)
            self._recent_generation = generation
        return self._recent_fd

    def _append_recent(self, blob: bytes) -> int:
        """Write ``blob`` after the last committed one (over any bytes of a flush whose commit failed) and
        sync it; where it starts. Asked of the checkpoint each time, so that nothing committed is overwritten."""
        at = self._committed_end()
        try:
            fd = self._recent_file()
            written = os.pwrite(fd, blob, at)
            if written != len(blob):
                raise OSError(f"wrote {written} of {len(blob)} bytes")
            os.fdatasync(fd)
            if at == 0:
                _sync_directory(self.state_dir)  # a new file: its name is durable too
        except OSError as exc:
            self._close_recent()
            raise StateDirError(
                f"cannot write the checkpoint's recent flushes in {self.state_dir} "
                f"({_one_line(exc.strerror or str(exc))}); nothing was half-written: free space or make it "
                "writable, then run the same command to resume"
            ) from None
        return at

    def _close_recent(self) -> None:
        if self._recent_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._recent_fd)
            self._recent_fd = None

    # -- exact facts (pyarrow, imported only here) ----------------------------------------------------
    def _insert_facts(self, facts: pa.Table) -> None:
        from .stored import create_facts_table, insert_facts

        with self._transaction() as db:
            if "facts_table" not in self._memo:
                create_facts_table(db)
                self._memo["facts_table"] = True
            insert_facts(db, facts)

    def taken(self, index: int) -> tuple[bytes, ...]:
        """The ids the committed flushes of slice ``index`` took (each as :func:`lifestats.seen.encode_ids`)."""
        rows = self._db.execute("SELECT ids FROM taken WHERE slice = ? ORDER BY seq", [index]).fetchall()
        return tuple(bytes(body) for (body,) in rows)

    def repeated_across_slices(self) -> tuple[int, int]:
        """Ids that the committed flushes of two or more slices took: how many, and how many copies of them
        beyond the first (each counted in every slice that took it; a slice takes an id once).

        Only the positional and sequential styles keep taken ids. The ids go through a temporary table of
        their own connection, one slice's at a time, so that DuckDB groups them out of core.
        """
        from .seen import decode_id_columns

        slices = [index for (index,) in self._db.execute("SELECT DISTINCT slice FROM taken ORDER BY slice").fetchall()]
        if len(slices) < 2:
            return 0, 0
        con = self._db.cursor()
        try:
            con.execute("CREATE TEMP TABLE taken_ids (slice INTEGER, i BIGINT, s VARCHAR)")
            for index in slices:
                columns = [decode_id_columns(body) for body in self.taken(index)]
                ints = np.concatenate([np.zeros(0, dtype=np.int64), *(part for part, _ in columns)])
                texts = np.array([text for _, part in columns for text in part], dtype=object)
                for column, values in (("i", ints), ("s", texts)):
                    if len(values):
                        con.register("batch", {"slice": np.full(len(values), index, dtype=np.int32), column: values})
                        con.execute(f"INSERT INTO taken_ids (slice, {column}) SELECT slice, {column} FROM batch")
                        con.unregister("batch")
            # A slice takes an id once: any id in the table twice is in two slices (the cheap question first).
            repeated = con.execute("SELECT count(*) - count(DISTINCT (i, s)) FROM taken_ids").fetchone()
            row = (0, 0)
            if repeated is not None and repeated[0]:
                row = (
                    con.execute(
                        "SELECT count(*), coalesce(sum(n - 1), 0) FROM "
                        "(SELECT count(*) AS n FROM taken_ids GROUP BY i, s HAVING count(*) > 1)"
                    ).fetchone()
                    or row
                )
        finally:
            con.close()
        return int(row[0]), int(row[1])

    def partials(self) -> Iterator[bytes]:
        """The committed blobs of the recent flushes (those not yet in the compacted total), one at a time."""
        places = self._db.execute("SELECT start, length FROM partials ORDER BY slice, seq").fetchall()
        if not places:
            return
        path = _recent_path(self.state_dir, self.total_generation())
        try:
            with path.open("rb") as stream:
                for at, length in places:
                    stream.seek(at)
                    body = stream.read(length)
                    if len(body) != length:
                        raise OSError(f"{path.name} ends before its committed flushes do")
                    yield body
        except OSError as exc:
            raise StateDirError(
                f"cannot read the checkpoint's recent flushes in {self.state_dir} "
                f"({_one_line(exc.strerror or str(exc))}); run again with --fresh to start over, "
                "or point --state-dir elsewhere",
                exit_code=2,
            ) from None

    def recent(self) -> int:
        """How many flush blobs are kept beside the compacted total."""
        (count,) = _row(self._db.execute("SELECT COUNT(*) FROM partials")) or (0,)
        return int(count)

    def for_reading(self) -> None:
        """Give DuckDB :data:`READ_THREADS` threads from now on: the crawl's writes are done, the
        report's queries come (a connection that refuses leaves them to one thread: slower, as exact)."""
        with contextlib.suppress(duckdb.Error):
            self._db.execute(f"SET threads TO {READ_THREADS}")

    def statistics(self) -> StoredStatistics:
        """The exact statistics the checkpoint holds, read as queries."""
        from .stored import StoredStatistics, create_facts_table

        with self._transaction() as db:
            create_facts_table(db)
        return StoredStatistics(self._db, self._transaction)


def _row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a query, read to its end (DuckDB wants every result finished before the next)."""
    rows = result.fetchall()
    return tuple(rows[0]) if rows else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _dumps(value: Any) -> str:
    """JSON text of ``value``; integers beyond 64 bits (which orjson refuses) through the standard library."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def _loads(text: str | bytes) -> Any:
    """The value of JSON text, integers of any size exact (orjson would turn big ones into floats)."""
    return json.loads(text)


def _json(value: Any) -> str:
    """A position as the JSON text the ``slices`` table stores."""
    return _dumps(value)


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _int(value: str | int | None) -> int | None:
    return None if value is None else int(value)


def _total_path(state_dir: Path, generation: int) -> Path:
    return state_dir / f"total-{generation}.bin"


def _recent_path(state_dir: Path, generation: int) -> Path:
    return state_dir / f"recent-{generation}.bin"


def _generation_files(state_dir: Path) -> list[tuple[Path, int]]:
    """Every compacted total and recent-blobs file in the state dir, with its generation."""
    found = []
    for entry in os.scandir(state_dir):
        match = _GENERATION_FILE.fullmatch(entry.name)
        if match:
            found.append((Path(entry.path), int(match.group(1))))
    return found


def _sync_directory(path: Path) -> None:
    """Make the directory's entries (a new file's name) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
