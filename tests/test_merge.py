"""The aggregator applies each flush exactly once and the checkpoint survives reopening."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lifestats.errors import CheckpointMismatch
from lifestats.merge import REJECTS_FILE, Aggregator, Checkpoint, Flush
from lifestats.plan import Slice
from lifestats.stats import Partial


def partial(fetched: int, item: int = 1, rejects: int = 0) -> bytes:
    p = Partial()
    p.records["fetched"] = fetched
    p.window("all").items[item] = fetched
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
    assert reopened.total.window("all").items == Counter({1: 7})
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


def test_a_proposal_unanswered_because_the_slice_ended_is_forgotten(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from lifestats.config import load_settings
    from lifestats.executor import Finished
    from lifestats.run import _Job

    settings = load_settings(None, "test", environ={}, overrides={"api": {"url": "http://127.0.0.1:9/x"}})
    checkpoint = Checkpoint(tmp_path)
    job = _Job(settings, "test", checkpoint, tmp_path, datetime.now(UTC), None, datetime.now(UTC), False)
    job.proposal = 3
    job._handle(Finished(4, 1), executor=None)  # type: ignore[arg-type]
    assert job.proposal == 3
    job._handle(Finished(3, 1), executor=None)  # type: ignore[arg-type]
    assert job.proposal is None
