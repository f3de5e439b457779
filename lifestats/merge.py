"""The aggregator: apply each flush exactly once, and keep the checkpoint that makes a run resumable.

State lives in one SQLite file under the state dir. A flush carries the slice's new position (a JSON
value: where the crawl of the slice goes on, e.g. the next offset; None when the slice is done) and the
partial statistics counted since the previous flush; both are committed in one transaction, and only
when the flush continues the slice's committed state (same attempt, next sequence number). A flush
that arrives twice, late, or from an attempt that was given up is ignored, so no record is counted
twice, and a resumed run starts every slice from its last commit.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import CheckpointMismatch, StateDirError
from .plan import Slice
from .stats import Partial

SCHEMA_VERSION = 4  # 4: partials hold their statistics as Statistics bytes (LSP2); 3: UTC-second fine buckets
CHECKPOINT_FILE = "checkpoint.sqlite"
REJECTS_FILE = "rejects.jsonl"

# Ids and high-water marks are kept as decimal text: an id range may end at 2**63 (one past the largest
# signed 64-bit id), which an SQLite INTEGER cannot hold, and nothing is compared in SQL but slice numbers.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS slices (
    idx INTEGER PRIMARY KEY,
    begin_id TEXT NOT NULL,
    end_id TEXT,
    position TEXT NOT NULL,  -- JSON, 'null' when the slice is done
    high_water TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS partials (
    slice INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (slice, seq)
);
"""
_TABLES = ("meta", "slices", "partials")


class CheckpointSchemaError(StateDirError):
    """The state dir holds a checkpoint this version cannot read (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


@dataclass(frozen=True)
class Flush:
    """A worker's report for one slice: progress and the statistics counted since its last flush."""

    slice: int
    attempt: int
    seq: int  # this flush's number in the slice's history; it continues seq - 1
    position: Any  # where the slice's crawl goes on (a JSON value, e.g. the next offset); None when done
    high_water: int | None  # the highest id counted in the slice so far, when the API's ids are ordered
    pages: int
    requests: int
    retries: int
    partial: bytes
    # What the worker process spent since its last report (run figures only; not checkpointed).
    cpu_seconds: float = 0.0
    peak_rss_bytes: int = 0


@dataclass(frozen=True)
class SliceState:
    slice: Slice
    position: Any  # a JSON value; None when the slice is done
    high_water: int | None
    seq: int
    attempt: int
    done: bool
    pages: int


class Checkpoint:
    """The SQLite state of one job.

    Every write goes through :meth:`_transaction`, so a write is all there or not there at all, and
    whatever stops it (Ctrl-C, a full disk, a read-only file) leaves the last committed state for the
    next run to resume from.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / CHECKPOINT_FILE
        self._depth = 0
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._unusable(exc) from None
        try:
            self._open()
        except StateDirError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise self._unusable(exc) from None

    def _unusable(self, exc: BaseException) -> StateDirError:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in reason:
            return CheckpointSchemaError(
                f"{self.path} is not a Lifestats checkpoint ({reason}); "
                "run again with --fresh to start over, or point --state-dir elsewhere"
            )
        return StateDirError(
            f"cannot use the checkpoint in {self.state_dir} ({reason}); "
            "point --state-dir at a writable directory with free space",
            exit_code=2,
        )

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 10000")
        self._check_schema()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction(on_error_exit=2):  # also proves, before any request, that it can be written
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            self.put("schema", SCHEMA_VERSION)

    def _check_schema(self) -> None:
        """Refuse a checkpoint of another schema, unless it only records a finished run (then discard it)."""
        db = self._db
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            return
        values = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('schema', 'finished', 'fingerprint')"))
        if "schema" not in values and "fingerprint" not in values:
            return  # created, never used
        version = _loads(values["schema"]) if "schema" in values else 1
        if version == SCHEMA_VERSION:
            return
        if "finished" in values and _loads(values["finished"]) is True:
            with self._transaction(on_error_exit=2):  # nothing to resume: start afresh
                for table in _TABLES:
                    db.execute(f"DROP TABLE IF EXISTS {table}")
            return
        which = "an older" if isinstance(version, int) and version < SCHEMA_VERSION else "a newer"
        raise CheckpointSchemaError(
            f"the checkpoint in {self.state_dir} was written by {which} version of Lifestats "
            f"(checkpoint schema {version}, this version reads {SCHEMA_VERSION}) and cannot be resumed; "
            "run again with --fresh to start over, or point --state-dir elsewhere"
        )

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def remove(state_dir: Path) -> None:
        """Delete the checkpoint files (the caller holds the state dir's lock)."""
        try:
            for suffix in ("", "-wal", "-shm"):
                (state_dir / (CHECKPOINT_FILE + suffix)).unlink(missing_ok=True)
            (state_dir / REJECTS_FILE).unlink(missing_ok=True)
        except OSError as exc:
            raise StateDirError(
                f"cannot remove the checkpoint in {state_dir} ({exc.strerror or exc}); "
                "point --state-dir at a writable directory",
                exit_code=2,
            ) from None

    # -- the one way to write -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, *, on_error_exit: int = 1) -> Iterator[sqlite3.Connection]:
        """One write transaction (nested uses join the enclosing one).

        ROLLBACK runs only while a transaction is open: an interrupt that lands just after COMMIT
        leaves the commit in place and goes on as the interrupt it is. An SQLite failure (a full disk,
        a read-only file) becomes one :class:`StateDirError` with nothing half-applied.
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
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                advice = (
                    "point --state-dir at a writable directory with free space"
                    if on_error_exit == 2
                    else "nothing was half-written: free space or make it writable, then run the same command to resume"
                )
                raise StateDirError(
                    f"cannot write the checkpoint in {self.state_dir} ({exc}); {advice}", exit_code=on_error_exit
                ) from None
            raise
        finally:
            self._depth = 0

    # -- meta ---------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return _loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, _dumps(value)),
            )

    def claim(self, fingerprint: dict[str, Any]) -> bool:
        """Bind the checkpoint to a job; True when it already held this job's state (a resume)."""
        stored = self.get("fingerprint")
        if stored is None:
            with self._transaction():
                self.put("schema", SCHEMA_VERSION)
                self.put("fingerprint", fingerprint)
            return False
        if stored != fingerprint:
            changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
            raise CheckpointMismatch(
                f"the checkpoint in {self.path.parent} belongs to a run with other settings "
                f"({', '.join(changed)} changed), so resuming would mix two jobs' counts. "
                "Run again with --fresh to start over, or point --state-dir elsewhere."
            )
        return True

    def mark_finished(self) -> int:
        """Record that the run finished, if every slice is done; else the number of slices not done."""
        with self._transaction() as db:
            (total, open_) = db.execute("SELECT COUNT(*), COALESCE(SUM(done = 0), 0) FROM slices").fetchone()
            if open_ or not total:
                return int(open_) or 1
            self.put("finished", True)
            return 0

    # -- slices -------------------------------------------------------------------------------------
    def save_plan(self, slices: list[Slice], meta: dict[str, Any]) -> None:
        """Store the slices and what was learnt making them (``meta``) in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO slices (idx, begin_id, end_id, position, high_water) VALUES (?, ?, ?, ?, ?)",
                [(s.index, _text(s.begin), _text(s.end), _json(s.begin), _text(s.begin - 1)) for s in slices],
            )
            for key, value in meta.items():
                self.put(key, value)

    _COLUMNS = "idx, begin_id, end_id, position, high_water, seq, attempt, done, pages"

    @staticmethod
    def _state(row: tuple[Any, ...]) -> SliceState:
        i, begin, end, position, high_water, seq, attempt, done, pages = row
        return SliceState(
            Slice(i, int(begin), _int(end)), _loads(position), _int(high_water), seq, attempt, bool(done), pages
        )

    def states(self) -> list[SliceState]:
        rows = self._db.execute(f"SELECT {self._COLUMNS} FROM slices ORDER BY idx").fetchall()
        return [self._state(row) for row in rows]

    def state(self, index: int) -> SliceState:
        row = self._db.execute(f"SELECT {self._COLUMNS} FROM slices WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise KeyError(f"no slice {index} in the checkpoint")
        return self._state(row)

    def open_slices(self) -> int:
        """How many slices are not done."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM slices WHERE done = 0").fetchone()
        return int(count)

    def begin_attempt(self, index: int) -> SliceState:
        """A new attempt at the slice: flushes and splits of any earlier attempt are ignored from now on."""
        with self._transaction() as db:
            db.execute("UPDATE slices SET attempt = attempt + 1 WHERE idx = ?", (index,))
        return self.state(index)

    def split(self, index: int, attempt: int, new_end: int) -> SliceState | None:
        """End slice ``index`` at ``new_end``; its remaining range becomes a new slice, returned.

        Applied only if the split is still true to the checkpoint: the proposer's attempt is the slice's
        current one, the slice is not done, and ``new_end`` lies strictly inside the range not yet
        committed (above its position and high-water mark, below its end). Otherwise None, and nothing
        changes: a late split can never re-open a range that was already counted.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT end_id, position, high_water, attempt, done FROM slices WHERE idx = ?", (index,)
            ).fetchone()
            if row is None:
                return None
            end, position, high_water = _int(row[0]), _loads(row[1]), _int(row[2])
            if row[3] != attempt or row[4]:
                return None
            if not isinstance(position, int) or isinstance(position, bool) or new_end <= position:
                return None  # only a crawl by id offsets can be cut at an id
            if (high_water is not None and new_end <= high_water) or (end is not None and new_end >= end):
                return None
            (new_index,) = db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM slices").fetchone()
            db.execute("UPDATE slices SET end_id = ? WHERE idx = ?", (_text(new_end), index))
            db.execute(
                "INSERT INTO slices (idx, begin_id, end_id, position, high_water) VALUES (?, ?, ?, ?, ?)",
                (new_index, _text(new_end), _text(end), _json(new_end), _text(new_end - 1)),
            )
        return self.state(new_index)

    def apply(self, flush: Flush) -> bool:
        """Commit the flush if it continues the slice's committed state; False if it was ignored."""
        with self._transaction() as db:
            row = db.execute("SELECT seq, attempt, done FROM slices WHERE idx = ?", (flush.slice,)).fetchone()
            if row is None or row[2] or row[1] != flush.attempt or row[0] + 1 != flush.seq:
                return False
            db.execute(
                "INSERT INTO partials (slice, seq, body) VALUES (?, ?, ?)",
                (flush.slice, flush.seq, flush.partial),
            )
            db.execute(
                "UPDATE slices SET position = ?, high_water = ?, seq = ?, done = ?, pages = pages + ? WHERE idx = ?",
                (
                    _json(flush.position),
                    _text(flush.high_water),
                    flush.seq,
                    flush.position is None,
                    flush.pages,
                    flush.slice,
                ),
            )
        return True

    def partials(self) -> Iterator[bytes]:
        for (body,) in self._db.execute("SELECT body FROM partials ORDER BY slice, seq"):
            yield body


class Aggregator:
    """Merges applied flushes into the job's running total, and samples rejected records to a file."""

    def __init__(self, checkpoint: Checkpoint, rejects_path: Path, keep_rejects: int = 1000) -> None:
        self.checkpoint = checkpoint
        self.keep_rejects = keep_rejects
        self.rejects_path = rejects_path
        self.total = self._committed()
        self._rejects_written = _count_lines(rejects_path)

    def _committed(self) -> Partial:
        total = Partial()
        for body in self.checkpoint.partials():
            total.merge(Partial.from_bytes(body), keep_rejects=0)
        return total

    def reload(self) -> None:
        """Make the total what the checkpoint holds (after an interrupt that may have landed between a
        commit and its merge), so that a partial report shows exactly what a resume starts from."""
        self.total = self._committed()

    def apply(self, flush: Flush) -> bool:
        if not self.checkpoint.apply(flush):
            return False
        partial = Partial.from_bytes(flush.partial)
        self.total.merge(partial, keep_rejects=0)
        try:
            self._write_rejects(flush.slice, partial)
        except OSError as exc:
            raise StateDirError(
                f"cannot write {self.rejects_path} ({exc.strerror or exc}); the checkpoint is intact: "
                "free space or make it writable, then run the same command to resume"
            ) from None
        return True

    def _write_rejects(self, index: int, partial: Partial) -> None:
        room = self.keep_rejects - self._rejects_written
        if room <= 0 or not partial.rejects:
            return
        sample = partial.rejects[:room]
        with self.rejects_path.open("ab") as out:
            for reject in sample:
                out.write(orjson.dumps({"slice": index, **reject}) + b"\n")
        self._rejects_written += len(sample)


def _dumps(value: Any) -> bytes:
    """JSON bytes of ``value``; integers beyond 64 bits (which orjson refuses) through the standard library."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def _loads(text: str | bytes) -> Any:
    """The value of JSON text, integers of any size exact (orjson would turn big ones into floats)."""
    return json.loads(text)


def _json(value: Any) -> str:
    """A position as the JSON text the ``slices`` table stores."""
    return _dumps(value).decode()


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _int(value: str | int | None) -> int | None:
    return None if value is None else int(value)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
