"""The DuckDB checkpoint: fenced flushes whose facts commit with their position, compaction, SQL reads."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings

from lifestats.errors import StateDirError
from lifestats.facts import FactsStatistics
from lifestats.plan import Slice
from lifestats.protocol import Flush
from lifestats.statistics import ALL, Columns
from lifestats.store import CHECKPOINT_FILE, LEGACY_FILE, Checkpoint, Interruptible
from lifestats.stored import StoredStatistics
from tests import stat_truth
from tests.stat_truth import TODAY, rank_order, truth
from tests.test_facts import _facts_from
from tests.test_statistics import _from, records, snapshot


def _state(tmp_path: Path) -> Checkpoint:
    checkpoint = Checkpoint(tmp_path)
    checkpoint.claim({"job": 1})
    if not checkpoint.states():
        checkpoint.save_plan([Slice(0, 0, 100), Slice(1, 100, None)], {"planned_slices": 2})
    return checkpoint


def _page(items: list[int], visitors: list[int]) -> FactsStatistics:
    stats = FactsStatistics()
    stats.add(Columns(items, [None] * len(items), visitors, np.full(len(items), TODAY, dtype=np.int64)))
    return stats


def _flush(slice_: int, attempt: int, seq: int, position: int | None) -> Flush:
    return Flush(slice_, attempt, seq, position, position, 1, 1, 0, b"small:%d" % seq)


def test_facts_commit_only_with_a_flush_that_applies(tmp_path: Path) -> None:
    checkpoint = _state(tmp_path)
    a = checkpoint.begin_attempt(0).attempt
    page = _page([1, 1, 2], [7, 8, 7]).table()
    assert checkpoint.apply(_flush(0, a, 1, 10), facts=page)
    assert not checkpoint.apply(_flush(0, a, 1, 10), facts=page)  # the same flush twice
    assert not checkpoint.apply(_flush(0, a, 3, 30), facts=page)  # out of order
    newer = checkpoint.begin_attempt(0).attempt
    assert not checkpoint.apply(_flush(0, a, 2, 20), facts=page)  # a late flush of a dead attempt
    assert checkpoint.apply(_flush(0, newer, 2, None), facts=_page([3], [9]).table())
    checkpoint.close()
    stats = Checkpoint(tmp_path).statistics()  # reopened: read from the file, nothing replayed
    assert [(r.id, r.visits.value, r.distinct_visitors.value) for r in stats.top_items(ALL, 5)] == [
        (1, 2, 2),
        (2, 1, 1),
        (3, 1, 1),
    ]
    assert stats.distinct_visitors(ALL).value == 3


class FailingInsert:
    """A connection whose ``fail``-th INSERT INTO facts fails as a full disk does."""

    def __init__(self, db: duckdb.DuckDBPyConnection, fail: int) -> None:
        self._db, self.fail, self.seen = db, fail, 0

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO facts"):
            self.seen += 1
            if self.seen == self.fail:
                raise duckdb.IOException("Could not write file: No space left on device")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_a_failed_write_leaves_neither_the_position_nor_the_facts(tmp_path: Path) -> None:
    checkpoint = _state(tmp_path)
    a = checkpoint.begin_attempt(0).attempt
    checkpoint._db = FailingInsert(checkpoint._db, fail=2)  # type: ignore[assignment]
    assert checkpoint.apply(_flush(0, a, 1, 10), facts=_page([1], [1]).table())
    with pytest.raises(StateDirError) as info:
        checkpoint.apply(_flush(0, a, 2, 20), facts=_page([2, 2], [1, 2]).table())
    assert "No space left" in str(info.value) and "\n" not in str(info.value) and info.value.exit_code == 1
    state = checkpoint.state(0)
    assert (state.seq, state.position) == (1, 10)
    assert list(checkpoint.partials()) == [b"small:1"]
    assert checkpoint.statistics().visits(ALL).value == 1  # the failed flush's facts are not there either
    assert checkpoint.apply(_flush(0, a, 2, 20), facts=_page([2, 2], [1, 2]).table())  # space again
    assert checkpoint.statistics().visits(ALL).value == 3


def test_compaction_replaces_the_blobs_in_the_flush_transaction(tmp_path: Path) -> None:
    checkpoint = _state(tmp_path)
    a = checkpoint.begin_attempt(1).attempt
    for seq in (1, 2, 3):
        assert checkpoint.apply(_flush(1, a, seq, 100 + seq))
    assert checkpoint.recent() == 3 and checkpoint.total_path() is None
    called: list[int] = []

    def fold(stream: BinaryIO) -> None:
        called.append(1)
        stream.write(b"all four")

    assert not checkpoint.apply(_flush(1, a, 3, 104), compacted=fold)  # ignored: nothing is folded
    assert called == [] and _totals(tmp_path) == []
    assert checkpoint.apply(_flush(1, a, 4, 104), compacted=fold)
    assert list(checkpoint.partials()) == [] and checkpoint.recent() == 0
    assert checkpoint.total_path() == tmp_path / "total-1.bin" and _totals(tmp_path) == ["total-1.bin"]
    assert checkpoint.apply(_flush(1, a, 5, 105))
    assert checkpoint.apply(_flush(1, a, 6, 106), compacted=lambda stream: stream.write(b"all six"))
    assert _totals(tmp_path) == ["total-2.bin"]  # the older generation is removed once the new one commits
    assert checkpoint.apply(_flush(1, a, 7, 107))
    checkpoint.close()
    reopened = Checkpoint(tmp_path)
    path = reopened.total_path()
    assert path is not None and path.read_bytes() == b"all six"
    assert list(reopened.partials()) == [b"small:7"] and reopened.state(1).seq == 7


def _totals(state_dir: Path) -> list[str]:
    return sorted(p.name for p in state_dir.glob("total-*"))


def test_stored_statistics_equal_the_truth(tmp_path: Path) -> None:
    data = stat_truth.make(seed=9, n=20_000, n_items=3000, n_visitors=8000)
    checkpoint = _state(tmp_path)
    a = checkpoint.begin_attempt(1).attempt
    pages = list(data.pages(1500))
    for seq, columns in enumerate(pages, start=1):
        facts = FactsStatistics()
        facts.add(columns)
        assert checkpoint.apply(_flush(1, a, seq, 100 + seq), facts=facts.table())
    stats = checkpoint.statistics()
    for name, days in stat_truth.windows().items():
        expected = truth(data, days)
        assert stats.visits(days).value == expected.visits, name
        assert stats.distinct_visitors(days).value == expected.distinct_visitors, name
        rows = stats.top_items(days, 20)
        assert [(r.id, r.visits.value) for r in rows] == rank_order(expected.item_visits)[:20], name
        assert [r.distinct_visitors.value for r in rows] == [expected.item_visitors.get(r.id, 0) for r in rows]
        categories = stats.top_categories(days, 4)
        assert [(r.id, r.visits.value) for r in categories] == rank_order(expected.category_visits)[:4], name


@settings(max_examples=30, deadline=None)
@given(records, records)
def test_stored_statistics_read_what_the_reference_reads(a, b) -> None:  # type: ignore[no-untyped-def]
    stored = StoredStatistics.in_memory().merge(_facts_from(a))
    stored.merge(StoredStatistics.from_bytes(_facts_from(b).to_bytes()))
    assert snapshot(stored) == snapshot(_from(a + b))  # type: ignore[arg-type]
    assert snapshot(StoredStatistics.from_bytes(stored.to_bytes())) == snapshot(stored)  # type: ignore[arg-type]


def test_memory_is_bounded_and_spills_into_the_state_dir(tmp_path: Path) -> None:
    checkpoint = _state(tmp_path)
    settings_ = dict(checkpoint._db.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert settings_["temp_directory"] == str(tmp_path / "checkpoint.tmp")
    assert settings_["memory_limit"] not in ("", None) and "GiB" not in settings_["memory_limit"]


def _legacy(tmp_path: Path, finished: bool) -> None:
    db = sqlite3.connect(tmp_path / LEGACY_FILE)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema', '3'), ('fingerprint', '{}')")
    if finished:
        db.execute("INSERT INTO meta VALUES ('finished', 'true')")
    db.commit()
    db.close()


def test_an_unfinished_sqlite_checkpoint_of_an_older_version_is_refused(tmp_path: Path) -> None:
    _legacy(tmp_path, finished=False)
    with pytest.raises(StateDirError) as info:
        Checkpoint(tmp_path)
    message = str(info.value)
    assert info.value.exit_code == 2 and "older" in message and "schema 3" in message and "--fresh" in message
    assert (tmp_path / LEGACY_FILE).exists() and not (tmp_path / CHECKPOINT_FILE).exists()
    Checkpoint.remove(tmp_path)  # what --fresh does
    Checkpoint(tmp_path).close()


def test_a_finished_sqlite_checkpoint_is_simply_replaced(tmp_path: Path) -> None:
    _legacy(tmp_path, finished=True)
    checkpoint = Checkpoint(tmp_path)
    assert checkpoint.get("fingerprint") is None and not (tmp_path / LEGACY_FILE).exists()


def test_distinct_visitors_beyond_the_memory_limit_spill_and_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lifestats.store.MEMORY_LIMIT", "64MB")
    checkpoint = _state(tmp_path)
    n = 4_000_000  # distinct visitors: their hash table alone is larger than 64 MB
    visitors = np.random.default_rng(3).permutation(n).astype(np.int64)
    stats = checkpoint.statistics()
    stats.add(Columns(visitors % 1000, np.full(n, 7), visitors, np.full(n, TODAY, dtype=np.int64)))
    assert stats.distinct_visitors(ALL).value == n
    assert [(r.id, r.visits.value, r.distinct_visitors.value) for r in stats.top_items(ALL, 2)] == [
        (0, 4000, 4000),
        (1, 4000, 4000),
    ]
    assert any((tmp_path / "checkpoint.tmp").iterdir())  # DuckDB spilled into the state dir


class InterruptedInsert:
    """Ctrl-C inside the INSERT of a flush's facts: DuckDB aborts the transaction, Python sees the interrupt."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO facts"):
            with pytest.raises(duckdb.Error):
                self._db.execute("SELECT error('the statement was interrupted')")  # the transaction is aborted
            raise KeyboardInterrupt
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class SignalledInsert:
    """A real SIGINT or SIGTERM delivered to this process while DuckDB inserts a flush's facts."""

    def __init__(self, db: duckdb.DuckDBPyConnection, signum: int) -> None:
        self._db, self._signum, self.sent = db, signum, False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO facts"):
            signal.raise_signal(self._signum)
            self.sent = True
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_flush_is_answered_after_its_commit(tmp_path: Path, signum: int) -> None:
    checkpoint = _state(tmp_path)
    a = checkpoint.begin_attempt(0).attempt
    real = checkpoint._db
    signalled = SignalledInsert(real, signum)
    checkpoint._db = signalled  # type: ignore[assignment]

    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signum, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            checkpoint.apply(_flush(0, a, 1, 10), facts=_page([1, 2], [1, 1]).table())
    finally:
        signal.signal(signum, previous)
        checkpoint._db = real
    assert signalled.sent
    assert checkpoint.state(0).seq == 1  # the whole flush committed, then the interrupt went on
    assert checkpoint.statistics().visits(ALL).value == 2


def test_an_interrupt_inside_the_facts_insert_stays_an_interrupt_and_commits_nothing(tmp_path: Path) -> None:
    checkpoint = _state(tmp_path)
    a = checkpoint.begin_attempt(0).attempt
    real = checkpoint._db
    checkpoint._db = InterruptedInsert(real)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):  # not "cannot write the checkpoint (... transaction is aborted)"
        checkpoint.apply(_flush(0, a, 1, 10), facts=_page([1], [1]).table())
    checkpoint._db = real
    assert checkpoint.state(0).seq == 0 and checkpoint.statistics().visits(ALL).value == 0
    assert checkpoint.apply(_flush(0, a, 1, 10), facts=_page([1], [1]).table())
    assert checkpoint.statistics().visits(ALL).value == 1


class ScanInterrupted:
    """A connection whose statement failed because Ctrl-C landed while DuckDB scanned a registered table."""

    def execute(self, sql: str, *args: Any) -> Any:
        raise duckdb.InvalidInputException(
            "Invalid Input Error: counting the rows of the object registered as '_span_days' failed: KeyboardInterrupt:"
        )

    def abort(self) -> None:
        self.aborted = True


def test_an_interrupt_inside_a_scan_of_a_registered_table_is_an_interrupt() -> None:
    db = ScanInterrupted()
    with pytest.raises(KeyboardInterrupt):
        Interruptible(db).execute("SELECT 1")  # type: ignore[arg-type]
    assert db.aborted  # its unfinished result dropped


def test_other_invalid_input_stays_a_duckdb_error() -> None:
    class Refusing:
        def execute(self, sql: str, *args: Any) -> Any:
            raise duckdb.InvalidInputException("Invalid Input Error: a real mistake")

    with pytest.raises(duckdb.InvalidInputException, match="a real mistake"):
        Interruptible(Refusing()).execute("SELECT 1")  # type: ignore[arg-type]


def test_a_signal_inside_a_read_of_a_registered_stream_is_an_interrupt_and_the_connection_goes_on() -> None:
    schema = pa.schema([("x", pa.int64())])

    def batches() -> Any:
        yield pa.record_batch([pa.array([1, 2])], schema=schema)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while DuckDB reads the stream
        yield pa.record_batch([pa.array([3])], schema=schema)

    db = duckdb.connect()
    db.register("stream", pa.RecordBatchReader.from_batches(schema, batches()))
    wrapped = Interruptible(db)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            wrapped.execute("SELECT SUM(x) FROM stream").fetchall()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert wrapped.execute("SELECT 42").fetchall() == [(42,)]  # nothing left unfinished on the connection


def test_attempts_begun_together_fence_out_every_earlier_attempt(tmp_path: Path) -> None:
    checkpoint = _state(tmp_path)
    first = {s.slice.index: s.attempt for s in checkpoint.begin_attempts([0, 1])}
    assert checkpoint.apply(_flush(0, first[0], 1, 10))
    again = checkpoint.begin_attempts([1, 0])
    assert [s.slice.index for s in again] == [1, 0]
    assert all(s.attempt == first[s.slice.index] + 1 for s in again)
    assert not checkpoint.apply(_flush(1, first[1], 1, 110))  # the earlier attempt's flush is ignored
    assert not checkpoint.apply(_flush(0, first[0], 2, 20))
    assert checkpoint.state(0).seq == 1 and checkpoint.state(0).position == 10  # what it had committed stays
    assert checkpoint.apply(_flush(0, again[1].attempt, 2, 20))
    assert checkpoint.begin_attempts([]) == []


def test_the_crawl_writes_on_one_duckdb_thread_and_the_report_reads_on_two(tmp_path: Path) -> None:
    checkpoint = _state(tmp_path)

    def threads() -> int:
        return int(checkpoint._db.execute("SELECT current_setting('threads')").fetchall()[0][0])

    assert threads() == 1
    assert checkpoint.apply(_flush(0, checkpoint.begin_attempt(0).attempt, 1, 10), facts=_page([1, 2], [7, 7]).table())
    checkpoint.for_reading()
    assert threads() == 2
    assert checkpoint.statistics().visits(ALL).value == 2  # the facts read back on two threads


@pytest.mark.parametrize("room", [4096, 8192])
def test_a_disk_that_fills_while_the_checkpoint_is_made_leaves_none_that_cannot_be_opened(
    tmp_path: Path, room: int
) -> None:
    """A process whose files may not grow past ``room`` bytes (as on a full disk) fails to make the
    checkpoint, one clear error; once there is room again, the next run makes it and starts. Before, a
    truncated checkpoint file was left, and every later run stopped with "Could not read enough bytes"
    until --fresh."""
    import subprocess
    import sys

    state_dir = tmp_path / "state"
    code = (
        "import pathlib, resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({room}, {room}))\n"
        "from lifestats.errors import StateDirError\n"
        "from lifestats.store import Checkpoint\n"
        "try:\n"
        f"    Checkpoint(pathlib.Path({str(state_dir)!r}))\n"
        "except StateDirError as exc:\n"
        "    print(exc)\n"
    )
    full = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "cannot use the checkpoint" in full.stdout and "File too large" in full.stdout
    checkpoint = Checkpoint(state_dir)
    try:
        assert checkpoint.claim({"url": "a"}) is False  # a new checkpoint, nothing to resume
    finally:
        checkpoint.close()


@pytest.mark.parametrize("name", ["q?x", "back\\slash"])
def test_a_state_dir_whose_path_duckdb_misreads_is_refused_naming_the_character(tmp_path: Path, name: str) -> None:
    """DuckDB reads "?" as the start of a path's options and a backslash as a separator: the checkpoint
    was refused with advice about free space, or made in another directory than the run's lock."""
    with pytest.raises(StateDirError, match="choose a --state-dir without it") as refused:
        Checkpoint(tmp_path / name)
    assert refused.value.exit_code == 2 and repr("?" if "?" in name else "\\") in str(refused.value)


def test_a_relative_state_dir_named_like_a_duckdb_service_is_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative "md:..." path is a MotherDuck database to DuckDB, which then tries to download an extension."""
    monkeypatch.chdir(tmp_path)
    checkpoint = Checkpoint(Path("md:runs"))
    checkpoint.close()
    assert (tmp_path / "md:runs" / CHECKPOINT_FILE).is_file()
