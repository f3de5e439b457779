"""The aggregator applies each flush exactly once and the checkpoint survives reopening."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from lifestats.errors import CheckpointMismatch, StateDirError
from lifestats.facts import FactsStatistics
from lifestats.merge import CHECKPOINT_FILE, REJECTS_FILE, Aggregator, Checkpoint
from lifestats.plan import Slice
from lifestats.protocol import Flush
from lifestats.sketch import ApproxStatistics
from lifestats.statistics import ALL, Columns
from lifestats.stats import Partial


def partial(fetched: int, item: int = 1, rejects: int = 0) -> bytes:
    p = Partial()
    p.records["fetched"] = fetched
    p.stats = FactsStatistics()
    days = np.full(fetched, 20_000, dtype=np.int64)
    p.stats.add(Columns([item] * fetched, [None] * fetched, [None] * fetched, days, days))
    p.rejects = [{"reason": "bad", "record": {"n": i}} for i in range(rejects)]
    return p.to_bytes()


def flush(slice_: int, attempt: int, seq: int, position: int | None, fetched: int, rejects: int = 0) -> Flush:
    return Flush(slice_, attempt, seq, position, position or 0, 1, 1, 0, partial(fetched, rejects=rejects))


def open_state(tmp_path: Path) -> tuple[Checkpoint, Aggregator]:
    checkpoint = Checkpoint(tmp_path)
    checkpoint.claim({"job": 1})
    if not checkpoint.states():
        checkpoint.save_plan([Slice(0, 0, 100), Slice(1, 100, None)], {"planned_slices": 2})
    return checkpoint, Aggregator(checkpoint, tmp_path / REJECTS_FILE)


def test_duplicate_late_and_stale_flushes_are_ignored(tmp_path: Path) -> None:
    checkpoint, aggregator = open_state(tmp_path)
    attempt = checkpoint.begin_attempt(0).attempt
    assert aggregator.apply(flush(0, attempt, 1, 10, 3))
    assert not aggregator.apply(flush(0, attempt, 1, 10, 3))  # the same flush twice
    assert not aggregator.apply(flush(0, attempt, 3, 30, 5))  # out of order: 2 is missing
    assert aggregator.apply(flush(0, attempt, 2, 20, 4))
    newer = checkpoint.begin_attempt(0).attempt  # the worker died; the slice is run again
    assert not aggregator.apply(flush(0, attempt, 3, 30, 5))  # a late flush of the dead attempt
    assert aggregator.apply(flush(0, newer, 3, None, 6))
    assert not aggregator.apply(flush(0, newer, 4, None, 6))  # the slice is done
    assert aggregator.total.records == Counter(fetched=13)
    state = checkpoint.state(0)
    assert (state.position, state.seq, state.done) == (None, 3, True)


def test_reopened_checkpoint_holds_every_committed_flush(tmp_path: Path) -> None:
    checkpoint, aggregator = open_state(tmp_path)
    a = checkpoint.begin_attempt(1).attempt
    aggregator.apply(flush(1, a, 1, 150, 7, rejects=2))
    checkpoint.close()
    checkpoint, reopened = open_state(tmp_path)
    assert reopened.total.records == Counter(fetched=7)
    assert reopened.total.stats is not None
    assert [(row.id, row.visits.value) for row in reopened.total.stats.top_items(ALL, 5)] == [(1, 7)]
    assert checkpoint.state(1).position == 150
    assert len((tmp_path / REJECTS_FILE).read_text().splitlines()) == 2


@pytest.mark.parametrize("position", ["c2xpY2U=", {"page": 4, "url": "https://x.test/e?after=9"}, [1, "a"], 10**15])
def test_a_position_is_any_json_value_and_survives_reopening(tmp_path: Path, position: object) -> None:
    checkpoint, aggregator = open_state(tmp_path)
    a = checkpoint.begin_attempt(0).attempt
    assert aggregator.apply(Flush(0, a, 1, position, None, 1, 1, 0, partial(2)))
    checkpoint.close()
    checkpoint, _ = open_state(tmp_path)
    state = checkpoint.state(0)
    assert (state.position, state.high_water, state.done) == (position, None, False)
    assert checkpoint.state(1).position == 100  # a fresh slice starts at its first id


def test_checkpoint_of_another_job_refuses_to_resume(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path)
    assert checkpoint.claim({"url": "a", "fields": 1}) is False
    assert checkpoint.claim({"url": "a", "fields": 1}) is True
    with pytest.raises(CheckpointMismatch, match=r"url changed.*--fresh"):
        checkpoint.claim({"url": "b", "fields": 1})


def test_a_refused_resume_names_each_changed_key_with_both_values(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path)
    stored = {"url": "http://a/events", "stats": {"mode": "exact", "timezone": "UTC"}, "slices": 100, "first_id": None}
    checkpoint.claim(stored)
    now = {**stored, "stats": {"mode": "exact", "timezone": "Asia/Tokyo"}, "first_id": 50}
    with pytest.raises(CheckpointMismatch) as refused:
        checkpoint.claim(now)
    message = str(refused.value)
    assert "stats.timezone: 'UTC' in the checkpoint, 'Asia/Tokyo' now" in message
    assert "api.first_id: None in the checkpoint, 50 now" in message
    assert "stats.mode" not in message and "api.url" not in message
    assert "Set them back to resume" in message and "--fresh" in message


def test_a_proposal_unanswered_because_the_slice_ended_is_forgotten(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from lifestats.config import load_settings
    from lifestats.protocol import Finished
    from lifestats.run import _Job

    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": "http://127.0.0.1:9/x"}})
    checkpoint = Checkpoint(tmp_path)
    job = _Job(settings, "test", checkpoint, tmp_path, datetime.now(UTC), None, datetime.now(UTC), False)
    job.proposal = 3
    job._handle(Finished(4, 1), executor=None)  # type: ignore[arg-type]
    assert job.proposal == 3
    job._handle(Finished(3, 1), executor=None)  # type: ignore[arg-type]
    assert job.proposal is None


# -- the fenced checkpoint --------------------------------------------------------------------------


class Hooked:
    """The checkpoint's DuckDB connection with a hook around each statement (DuckDB's connection class
    cannot be subclassed), for faults that land at an exact point of a write."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> Any:
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class InterruptAfterCommit(Hooked):
    """Raises KeyboardInterrupt just after the COMMIT of the ``after``-th flush, as a Ctrl-C landing
    between the commit and the next line would."""

    after = 1

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        super().__init__(db)
        self.flushes = 0
        self.pending = False

    def execute(self, sql: str, *args: Any) -> Any:
        result = self._db.execute(sql, *args)
        if sql.startswith("INSERT INTO partials") or sql == "DELETE FROM partials":
            self.pending = True
        elif sql == "COMMIT" and self.pending:
            self.pending = False
            self.flushes += 1
            if self.flushes == self.after:
                raise KeyboardInterrupt
        return result


class FullAfterFlush(Hooked):
    """The disk fills up during the ``after``-th flush: every write fails from then on, as a full disk's do."""

    after = 1

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        super().__init__(db)
        self.flushes = 0
        self.full = False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO partials") or sql == "DELETE FROM partials":
            self.flushes += 1
            self.full = self.full or self.flushes >= self.after
        if self.full and sql.split()[0] in ("INSERT", "UPDATE", "DELETE"):
            raise duckdb.IOException('Could not write file "checkpoint.duckdb.wal": No space left on device')
        return self._db.execute(sql, *args)


def test_an_interrupt_just_after_commit_keeps_the_commit_and_stays_an_interrupt(tmp_path: Path) -> None:
    open_state(tmp_path)[0].close()
    checkpoint = Checkpoint(tmp_path)
    checkpoint._db = InterruptAfterCommit(checkpoint._db)  # type: ignore[assignment]
    attempt = checkpoint.begin_attempt(0).attempt
    with pytest.raises(KeyboardInterrupt):  # not "cannot rollback - no transaction is active"
        checkpoint.apply(flush(0, attempt, 1, 10, 3))
    assert checkpoint.state(0).seq == 1  # the commit stands
    assert not checkpoint.apply(flush(0, attempt, 1, 10, 3))  # and is not applied twice


def test_a_split_is_applied_only_when_true_to_the_checkpoint(tmp_path: Path) -> None:
    checkpoint, aggregator = open_state(tmp_path)  # slices [0, 100) and [100, open)
    first = checkpoint.begin_attempt(0).attempt
    assert aggregator.apply(Flush(0, first, 1, 40, 39, 1, 1, 0, partial(40)))
    second = checkpoint.begin_attempt(0).attempt  # its worker died; the slice runs again
    assert checkpoint.split(0, first, 70) is None  # a late split of the dead attempt
    assert checkpoint.split(0, second, 40) is None  # not above the committed position
    assert checkpoint.split(0, second, 100) is None  # not below the end
    assert checkpoint.split(0, second, 30) is None  # inside the counted range
    new = checkpoint.split(0, second, 70)
    assert new is not None and (new.slice.begin, new.slice.end, new.position) == (70, 100, 70)
    assert checkpoint.state(0).slice.end == 70
    assert aggregator.apply(Flush(0, second, 2, None, 69, 1, 1, 0, partial(30)))
    assert checkpoint.split(0, second, 50) is None  # done
    assert checkpoint.split(9, second, 50) is None  # no such slice
    assert [(s.slice.begin, s.slice.end) for s in checkpoint.states()] == [(0, 70), (100, None), (70, 100)]
    open_ = checkpoint.begin_attempt(1).attempt
    assert checkpoint.split(1, open_, 10**6) is not None  # an open-ended slice may be cut anywhere above


def test_finished_is_written_only_when_every_slice_is_done(tmp_path: Path) -> None:
    checkpoint, aggregator = open_state(tmp_path)
    a = checkpoint.begin_attempt(0).attempt
    assert aggregator.apply(flush(0, a, 1, None, 3))
    assert checkpoint.mark_finished() == 1
    assert checkpoint.get("finished") is None
    b = checkpoint.begin_attempt(1).attempt
    assert aggregator.apply(flush(1, b, 1, None, 3))
    assert checkpoint.mark_finished() == 0
    assert checkpoint.get("finished") is True


def _set_schema(tmp_path: Path, version: int, finished: bool = False) -> None:
    db = duckdb.connect(str(tmp_path / CHECKPOINT_FILE))
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", [str(version)])
    if finished:
        db.execute("INSERT INTO meta (key, value) VALUES ('finished', 'true')")
    db.close()


@pytest.mark.parametrize(("version", "which"), [(1, "an older"), (99, "a newer")])
def test_a_checkpoint_of_another_schema_is_refused_with_a_clear_message(
    tmp_path: Path, version: int, which: str
) -> None:
    checkpoint, _ = open_state(tmp_path)
    checkpoint.close()
    _set_schema(tmp_path, version)
    with pytest.raises(StateDirError) as info:
        Checkpoint(tmp_path)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert which in message and f"schema {version}" in message and "--fresh" in message and "--state-dir" in message


def test_a_finished_checkpoint_of_another_schema_is_simply_replaced(tmp_path: Path) -> None:
    checkpoint, _ = open_state(tmp_path)
    checkpoint.close()
    _set_schema(tmp_path, 1, finished=True)
    checkpoint = Checkpoint(tmp_path)
    assert checkpoint.states() == [] and checkpoint.get("fingerprint") is None


def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StateDirError) as info:
        Checkpoint(tmp_path)
    assert info.value.exit_code == 2 and "--fresh" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "ranges",
    [
        [(-(2**63), -(2**62)), (-(2**62), 0), (0, 2**63)],  # the whole signed 64-bit range, end included
        [(-5000, -1000), (-1000, 10), (10, None)],  # negative ids
        [(2**63 - 10, 2**63), (2**63, 2**64 + 7)],  # beyond: whatever int a plan holds is stored
    ],
)
def test_ids_across_the_whole_signed_64_bit_range_survive_the_checkpoint(
    tmp_path: Path, ranges: list[tuple[int, int | None]]
) -> None:
    checkpoint = Checkpoint(tmp_path)
    checkpoint.claim({"job": 1})
    checkpoint.save_plan(
        [Slice(i, b, e) for i, (b, e) in enumerate(ranges)],
        {"bounds": {"first_id": ranges[0][0], "last_id": ranges[-1][1]}},
    )
    last = len(ranges) - 1
    begin, end = ranges[last]
    a = checkpoint.begin_attempt(last).attempt
    stop = begin + 3
    assert checkpoint.apply(Flush(last, a, 1, stop, stop - 1, 1, 1, 0, partial(3)))
    cut = stop + 2
    assert checkpoint.split(last, a, cut) is not None
    checkpoint.close()
    checkpoint = Checkpoint(tmp_path)
    states = checkpoint.states()
    assert [(s.slice.begin, s.slice.end) for s in states[:last]] == ranges[:last]
    assert (states[last].slice.begin, states[last].slice.end) == (begin, cut)
    assert (states[last].position, states[last].high_water) == (stop, stop - 1)
    assert (states[-1].slice.begin, states[-1].slice.end, states[-1].position) == (cut, end, cut)
    assert [s.high_water for s in states[:last]] == [b - 1 for b, _ in ranges[:last]]
    assert checkpoint.get("bounds") == {"first_id": ranges[0][0], "last_id": ranges[-1][1]}


def test_a_full_disk_fails_in_one_line_and_leaves_no_half_applied_flush(tmp_path: Path) -> None:
    checkpoint, aggregator = open_state(tmp_path)
    a = checkpoint.begin_attempt(0).attempt
    assert aggregator.apply(flush(0, a, 1, 10, 3))
    hooked = FullAfterFlush(checkpoint._db)
    hooked.after = 1
    checkpoint._db = hooked  # type: ignore[assignment]
    with pytest.raises(StateDirError) as info:
        aggregator.apply(flush(0, a, 2, 20, 4))
    message = str(info.value)
    print(f"\nfull disk: {message}")
    assert "No space left" in message and "\n" not in message and info.value.exit_code == 1
    state = checkpoint.state(0)
    assert (state.seq, state.position) == (1, 10)  # the flush is all there or not at all
    assert aggregator.total.records == Counter(fetched=3)
    hooked.full, hooked.after = False, 10**9  # space again: it goes on from its last commit
    assert aggregator.apply(flush(0, a, 2, 20, 4))
    assert checkpoint.state(0).seq == 2


def test_a_read_only_checkpoint_is_refused_before_anything_runs(tmp_path: Path, monkeypatch: Any) -> None:
    open_state(tmp_path)[0].close()

    def read_only(path: Path, temp_dir: Path) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(path), read_only=True)

    monkeypatch.setattr("lifestats.store.connect", read_only)
    with pytest.raises(StateDirError) as info:
        Checkpoint(tmp_path)
    print(f"\nread-only: {info.value}")
    assert info.value.exit_code == 2 and "read-only" in str(info.value) and "\n" not in str(info.value)


def test_the_flush_blobs_are_compacted_and_the_total_survives_reopening(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path)
    checkpoint.claim({"job": 1})
    checkpoint.save_plan([Slice(0, 0, None)], {"planned_slices": 1})
    aggregator = Aggregator(checkpoint, tmp_path / REJECTS_FILE, keep_recent=4)
    a = checkpoint.begin_attempt(0).attempt
    for seq in range(1, 11):
        assert aggregator.apply(flush(0, a, seq, seq * 10, seq))
        assert len(list(checkpoint.partials())) <= 3
    assert not aggregator.apply(flush(0, a, 10, 100, 10))  # a duplicate is neither counted nor folded
    assert aggregator.total.records == Counter(fetched=55)
    assert len(list(checkpoint.partials())) == 2  # flushes 9 and 10, beside the compacted total (1..8)
    assert checkpoint.total_path() == tmp_path / "total-2.bin"  # folded at 4 and at 8
    checkpoint.close()
    reopened = Aggregator(Checkpoint(tmp_path), tmp_path / REJECTS_FILE, keep_recent=4)
    assert reopened.total.records == Counter(fetched=55)
    assert reopened.total.stats is not None
    assert [(row.id, row.visits.value) for row in reopened.total.stats.top_items(ALL, 5)] == [(1, 55)]


def _approx_body(items: int) -> bytes:
    p = Partial()
    p.records["fetched"] = items
    p.stats = ApproxStatistics()
    days = np.full(items, 20_000, dtype=np.int64)
    p.stats.add(Columns(list(range(items)), [None] * items, list(range(items)), days, days))
    return p.to_bytes()


def test_a_large_compacted_total_is_rewritten_only_once_the_recent_blobs_weigh_as_much(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path)
    checkpoint.claim({"job": 1})
    checkpoint.save_plan([Slice(0, 0, None)], {"planned_slices": 1})
    aggregator = Aggregator(checkpoint, tmp_path / REJECTS_FILE, keep_recent=2, exact=False)
    a = checkpoint.begin_attempt(0).attempt
    big, small = _approx_body(20_000), _approx_body(1)
    assert len(big) > 20 * len(small)

    def apply(seq: int, body: bytes) -> int:
        assert aggregator.apply(Flush(0, a, seq, seq, seq, 1, 1, 0, body))
        return len(list(checkpoint.partials()))

    assert [apply(1, big), apply(2, big)] == [1, 0]  # folded at 2: the compacted total alone
    kept = [apply(seq, small) for seq in range(3, 13)]
    assert kept == list(range(1, 11))  # ten small blobs do not weigh as much as the total: none folded
    assert aggregator.total.records["fetched"] == 40_010
    total = checkpoint.total_path()
    assert total is not None and total.name == "total-1.bin"
    blobs = sum(len(body) for body in checkpoint.partials()) + total.stat().st_size
    assert blobs < 2 * len(aggregator.total.to_bytes()) + len(big)
