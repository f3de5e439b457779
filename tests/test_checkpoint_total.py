"""The compacted total's generation commit: whatever stops a compaction, the checkpoint reopens to
exactly the flushes it committed (checked against counts computed here from the records), never a mix
of two generations and never a flush counted twice.

The points that matter: after the new total's file is written and synced but before the transaction
that names it commits (an error, Ctrl-C, or SIGKILL), and after that commit but before the old file
is removed (SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lifestats.errors import StateDirError
from lifestats.merge import REJECTS_FILE, Aggregator, Checkpoint
from lifestats.plan import Slice
from lifestats.protocol import Flush
from lifestats.sketch import ApproxStatistics
from lifestats.stats import Partial
from tests import stat_truth

ROOT = Path(__file__).resolve().parent.parent
PAGE = 400
DATA = stat_truth.make(seed=31, n=12_000, n_items=400, n_visitors=2500)
KEEP_RECENT = 3


def approx_flushes(attempt: int) -> Iterator[Flush]:
    """One flush per page of DATA, in slice 0, numbered from 1; the last one ends the slice."""
    pages = list(DATA.pages(PAGE))
    for seq, columns in enumerate(pages, start=1):
        partial = Partial()
        partial.records["fetched"] = len(columns)
        partial.stats = ApproxStatistics()
        partial.stats.add(columns)
        position = None if seq == len(pages) else seq * PAGE
        yield Flush(0, attempt, seq, position, seq * PAGE - 1, 1, 1, 0, partial.to_bytes())


def open_job(state_dir: Path) -> tuple[Checkpoint, Aggregator, int]:
    """The checkpoint (planned on first use), its aggregator, and a new attempt at slice 0."""
    checkpoint = Checkpoint(state_dir)
    checkpoint.claim({"job": "total"})
    if not checkpoint.states():
        checkpoint.save_plan([Slice(0, 0, None)], {"planned_slices": 1})
    aggregator = Aggregator(checkpoint, state_dir / REJECTS_FILE, keep_recent=KEEP_RECENT, exact=False)
    return checkpoint, aggregator, checkpoint.begin_attempt(0).attempt


def assert_counts_first(total: Partial, flushes: int) -> None:
    """``total`` holds exactly the records of the first ``flushes`` pages: exact figures equal, every
    estimate's bounds hold the truth."""
    n = min(flushes * PAGE, len(DATA))
    assert total.records["fetched"] == n
    stats = total.stats
    assert isinstance(stats, ApproxStatistics)
    head = stat_truth.Dataset(
        DATA.items[:n],
        DATA.visitors[:n],
        DATA.categories[:n],
        DATA.days[:n],
        DATA.hours[:n],
        DATA.n_items,
        DATA.n_visitors,
        DATA.n_categories,
    )
    for name, days in stat_truth.windows().items():
        truth = stat_truth.truth(head, days)
        assert stats.visits(days).value == truth.visits, name  # counted exactly, even in approx mode
        visitors = stats.distinct_visitors(days)
        assert visitors.lower is not None and visitors.upper is not None
        assert visitors.lower <= truth.distinct_visitors <= visitors.upper, name
        for row in stats.top_items(days, 5):
            assert row.visits.lower is not None and row.visits.upper is not None
            assert row.visits.lower <= truth.item_visits[row.id] <= row.visits.upper, (name, row.id)


def totals_on_disk(state_dir: Path) -> list[str]:
    return sorted(p.name for p in state_dir.glob("total-*"))


def generations_on_disk(state_dir: Path) -> set[int]:
    """The generations of the total and recent-blobs files in the state dir."""
    return {int(p.stem.split("-")[1]) for pattern in ("total-*", "recent-*") for p in state_dir.glob(pattern)}


def test_every_flush_applied_once_with_compactions_gives_the_truth(tmp_path: Path) -> None:
    checkpoint, aggregator, attempt = open_job(tmp_path)
    for flush in approx_flushes(attempt):
        assert aggregator.apply(flush)
        assert not aggregator.apply(flush)  # twice: ignored, neither counted nor folded
    assert checkpoint.total_generation() >= 2  # compacted more than once
    assert totals_on_disk(tmp_path) == [f"total-{checkpoint.total_generation()}.bin"]
    assert generations_on_disk(tmp_path) == {checkpoint.total_generation()}
    assert_counts_first(aggregator.total, 10**9)
    checkpoint.close()
    _, reopened, _ = open_job(tmp_path)
    assert_counts_first(reopened.total, 10**9)


class FailBeforeCommit:
    """A connection that fails the statement naming the new generation of the total: the new file is
    written and synced, the flush's transaction is under way, nothing is committed yet."""

    def __init__(self, db: duckdb.DuckDBPyConnection, error: BaseException, on_generation: int) -> None:
        self._db, self.error, self.on_generation = db, error, on_generation
        self.failed_flush: int | None = None

    def execute(self, sql: str, *args: Any) -> Any:
        naming = sql.startswith("INSERT OR REPLACE INTO meta") and args and args[0][0] == "total"
        if naming and args[0][1] == str(self.on_generation):
            raise self.error
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.mark.parametrize(
    "error",
    [duckdb.IOException("Could not write file: No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "ctrl-c"],
)
def test_a_compaction_stopped_before_its_commit_leaves_the_previous_generation(
    tmp_path: Path, error: BaseException
) -> None:
    checkpoint, aggregator, attempt = open_job(tmp_path)
    hook = FailBeforeCommit(checkpoint._db, error, on_generation=2)
    checkpoint._db = hook  # type: ignore[assignment]
    failed = None
    for flush in approx_flushes(attempt):
        try:
            assert aggregator.apply(flush)
        except (StateDirError, KeyboardInterrupt) as exc:
            assert isinstance(exc, KeyboardInterrupt) == isinstance(error, KeyboardInterrupt)
            failed = flush.seq
            break
    assert failed is not None, "the second compaction never came"
    # The new file was written (its generation was about to be committed) and is gone again.
    assert checkpoint.total_generation() == 1 and totals_on_disk(tmp_path) == ["total-1.bin"]
    assert generations_on_disk(tmp_path) == {1}
    assert checkpoint.state(0).seq == failed - 1
    assert_counts_first(aggregator.total, failed - 1)  # read back: the failed flush is not in it
    checkpoint.close()
    checkpoint, reopened, attempt = open_job(tmp_path)
    assert_counts_first(reopened.total, failed - 1)
    for flush in approx_flushes(attempt):
        if flush.seq >= failed:
            assert reopened.apply(flush)
    assert_counts_first(reopened.total, 10**9)


_KILLED_RUN = """
import os, signal, sys
import lifestats.store as store
from tests.test_checkpoint_total import approx_flushes, open_job

point, generation = sys.argv[1], int(sys.argv[2])
checkpoint, aggregator, attempt = open_job(store.Path(sys.argv[3]))

def die(*args, **kwargs):
    if checkpoint.total_generation() + (point == "before-commit") == generation:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)

if point == "blob-before-commit":  # a flush's blob is appended and synced; its transaction has not committed
    append = checkpoint._append_recent

    def original(*args, **kwargs):
        pass

    def append_then_die(blob):
        at = append(blob)
        if checkpoint.total_generation() == generation and checkpoint.recent() >= 1:  # one committed before it
            print("appended", at + len(blob), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return at

    checkpoint._append_recent = append_then_die
elif point == "before-commit":  # the new file is written and synced; the transaction has not committed
    write = checkpoint._write_total

    def original(*args, **kwargs):
        pass

    def write_then_die(*args, **kwargs):
        write(*args, **kwargs)
        die()

    checkpoint._write_total = write_then_die
else:  # committed; the old files are not removed yet
    original = checkpoint._remove_stale_totals
    checkpoint._remove_stale_totals = die
for flush in approx_flushes(attempt):
    print(flush.seq, flush=True)
    aggregator.apply(flush)
"""


@pytest.mark.parametrize("point", ["before-commit", "after-commit", "blob-before-commit"])
def test_sigkill_during_a_compaction_reopens_to_exactly_the_committed_flushes(tmp_path: Path, point: str) -> None:
    state = tmp_path / "state"
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_RUN), point, "2", str(state)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    if point == "blob-before-commit":
        *_, last, _, appended = run.stdout.split()  # the flush killed before its commit, and the file's end
        recent = state / "recent-2.bin"
        assert recent.stat().st_size == int(appended)
        checkpoint, reopened, attempt = open_job(state)
        assert checkpoint.total_generation() == 2 and checkpoint.state(0).seq == int(last) - 1
        assert recent.stat().st_size < int(appended)  # the uncommitted blob is cut off
        assert_counts_first(reopened.total, int(last) - 1)
        return
    last = int(run.stdout.split()[-1])  # the flush whose compaction was killed
    # Both generations' files are there: the killed process removed neither.
    assert totals_on_disk(state) == ["total-1.bin", "total-2.bin"] and (state / "recent-1.bin").exists()
    committed = last - 1 if point == "before-commit" else last
    checkpoint, reopened, attempt = open_job(state)
    assert checkpoint.total_generation() == (1 if point == "before-commit" else 2)
    assert generations_on_disk(state) == {checkpoint.total_generation()}  # the other generation's removed
    assert checkpoint.state(0).seq == committed
    assert_counts_first(reopened.total, committed)
    for flush in approx_flushes(attempt):  # the resumed slice goes on from what was committed
        if flush.seq > committed:
            assert reopened.apply(flush)
    assert_counts_first(reopened.total, 10**9)


def test_a_damaged_total_file_is_a_clear_state_dir_error(tmp_path: Path) -> None:
    checkpoint, aggregator, attempt = open_job(tmp_path)
    for flush in approx_flushes(attempt):
        aggregator.apply(flush)
        if checkpoint.total_generation():
            break
    path = checkpoint.total_path()
    checkpoint.close()
    assert path is not None
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StateDirError) as info:
        open_job(tmp_path)
    message = str(info.value)
    assert info.value.exit_code == 2 and "truncated" in message and "--fresh" in message and "\n" not in message
