"""The aggregator: apply each flush exactly once, and keep the checkpoint that makes a run resumable.

State lives in one SQLite file under the state dir. A flush carries the slice's new position (a JSON
value: where the crawl of the slice goes on, e.g. the next offset; None when the slice is done) and the
partial statistics counted since the previous flush; both are committed in one transaction, and only
when the flush continues the slice's committed state (same attempt, next sequence number). A flush
that arrives twice, late, or from an attempt that was given up is ignored, so no record is counted
twice, and a resumed run starts every slice from its last commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import CheckpointMismatch
from .plan import Slice
from .stats import Partial

SCHEMA_VERSION = 2
CHECKPOINT_FILE = "checkpoint.sqlite"
REJECTS_FILE = "rejects.jsonl"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS slices (
    idx INTEGER PRIMARY KEY,
    begin_id INTEGER NOT NULL,
    end_id INTEGER,
    position TEXT NOT NULL,  -- JSON; 'null' when the slice is done
    high_water INTEGER,
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
    """The SQLite state of one job."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / CHECKPOINT_FILE
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def remove(state_dir: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            (state_dir / (CHECKPOINT_FILE + suffix)).unlink(missing_ok=True)
        (state_dir / REJECTS_FILE).unlink(missing_ok=True)

    # -- meta ---------------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, orjson.dumps(value)),
        )

    def claim(self, fingerprint: dict[str, Any]) -> bool:
        """Bind the checkpoint to a job; True when it already held this job's state (a resume)."""
        stored = self.get("fingerprint")
        if stored is None:
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

    # -- slices -------------------------------------------------------------------------------------
    def save_plan(self, slices: list[Slice], meta: dict[str, Any]) -> None:
        """Store the slices and what was learnt making them (``meta``) in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO slices (idx, begin_id, end_id, position, high_water) VALUES (?, ?, ?, ?, ?)",
                [(s.index, s.begin, s.end, _json(s.begin), s.begin - 1) for s in slices],
            )
            for key, value in meta.items():
                self.put(key, value)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    _COLUMNS = "idx, begin_id, end_id, position, high_water, seq, attempt, done, pages"

    @staticmethod
    def _state(row: tuple[Any, ...]) -> SliceState:
        i, begin, end, position, high_water, seq, attempt, done, pages = row
        return SliceState(Slice(i, begin, end), orjson.loads(position), high_water, seq, attempt, bool(done), pages)

    def states(self) -> list[SliceState]:
        rows = self._db.execute(f"SELECT {self._COLUMNS} FROM slices ORDER BY idx").fetchall()
        return [self._state(row) for row in rows]

    def state(self, index: int) -> SliceState:
        row = self._db.execute(f"SELECT {self._COLUMNS} FROM slices WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise KeyError(f"no slice {index} in the checkpoint")
        return self._state(row)

    def begin_attempt(self, index: int) -> SliceState:
        """A new attempt at the slice: flushes of any earlier attempt are ignored from now on."""
        self._db.execute("UPDATE slices SET attempt = attempt + 1 WHERE idx = ?", (index,))
        return self.state(index)

    def split(self, index: int, new_end: int) -> SliceState:
        """End slice ``index`` at ``new_end``; its remaining range becomes a new slice, returned."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            (old_end,) = db.execute("SELECT end_id FROM slices WHERE idx = ?", (index,)).fetchone()
            (new_index,) = db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM slices").fetchone()
            db.execute("UPDATE slices SET end_id = ? WHERE idx = ?", (new_end, index))
            db.execute(
                "INSERT INTO slices (idx, begin_id, end_id, position, high_water) VALUES (?, ?, ?, ?, ?)",
                (new_index, new_end, old_end, _json(new_end), new_end - 1),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self.state(new_index)

    def apply(self, flush: Flush) -> bool:
        """Commit the flush if it continues the slice's committed state; False if it was ignored."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT seq, attempt, done FROM slices WHERE idx = ?", (flush.slice,)).fetchone()
            if row is None or row[2] or row[1] != flush.attempt or row[0] + 1 != flush.seq:
                db.execute("ROLLBACK")
                return False
            db.execute(
                "INSERT INTO partials (slice, seq, body) VALUES (?, ?, ?)",
                (flush.slice, flush.seq, flush.partial),
            )
            db.execute(
                "UPDATE slices SET position = ?, high_water = ?, seq = ?, done = ?, pages = pages + ? WHERE idx = ?",
                (
                    _json(flush.position),
                    flush.high_water,
                    flush.seq,
                    flush.position is None,
                    flush.pages,
                    flush.slice,
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return True

    def partials(self) -> Iterator[bytes]:
        for (body,) in self._db.execute("SELECT body FROM partials ORDER BY slice, seq"):
            yield body


class Aggregator:
    """Merges applied flushes into the job's running total, and samples rejected records to a file."""

    def __init__(self, checkpoint: Checkpoint, rejects_path: Path, keep_rejects: int = 1000) -> None:
        self.checkpoint = checkpoint
        self.keep_rejects = keep_rejects
        self.total = Partial()
        self.rejects_path = rejects_path
        for body in checkpoint.partials():
            self.total.merge(Partial.from_bytes(body), keep_rejects=0)
        self._rejects_written = _count_lines(rejects_path)

    def apply(self, flush: Flush) -> bool:
        if not self.checkpoint.apply(flush):
            return False
        partial = Partial.from_bytes(flush.partial)
        self._write_rejects(flush.slice, partial)
        self.total.merge(partial, keep_rejects=0)
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


def _json(value: Any) -> str:
    """A position as the JSON text the ``slices`` table stores."""
    return orjson.dumps(value).decode()


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
