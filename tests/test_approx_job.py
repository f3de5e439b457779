"""Approx mode, the whole job against the real mock server: every true value inside its reported bounds.

The ground truth (mocks.dataset.ground_truth) is computed independently of lifestats, exactly; the
report's estimates must hold it within their ``<name>_bounds``, and numbers reported without bounds
(visits of a window or series point, the record tally) must equal it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lifestats.errors import CheckpointMismatch
from lifestats.sketch import ApproxStatistics
from lifestats.statistics import ALL, Columns, ExactStatistics
from lifestats.stats import Partial
from mocks.dataset import Dataset, DatasetSpec, generate, ground_truth
from mocks.server import MockServer

from .conftest import AS_OF, job_settings, run
from .test_resume import InterruptAfterFifthFlush, _patch_checkpoint_connection

SMALL = generate(DatasetSpec(seed=3, records=20_000))
MANY_ITEMS = generate(DatasetSpec(seed=11, records=60_000, items=30_000, visitors=20_000, categories=300))
HOURLY = generate(DatasetSpec(seed=5, records=15_000, visitors=8_000, empty_share=0.5))

APPROX = {"mode": "approx"}


def holds(row: dict[str, Any], name: str, truth: int | None) -> bool:
    """Whether the report's ``name`` in ``row`` is consistent with the true value."""
    bounds = row.get(f"{name}_bounds")
    if truth is None or row[name] is None:
        return truth is None and row[name] is None and bounds is None
    if bounds is None:
        return bool(row[name] == truth)
    lower, upper = bounds
    return bool(lower <= row[name] <= upper) and lower <= truth <= upper


def check_within_bounds(report: dict[str, Any], truth: dict[str, Any]) -> int:
    """Assert every estimate of the report holds the truth; returns how many windows had a clear rank-10 gap."""
    assert report["records"] == truth["records"]
    assert set(report["windows"]) == set(truth["windows"])
    clear_gaps = 0
    for name, window in report["windows"].items():
        true_window = truth["windows"][name]
        assert holds(window, "visits", true_window["visits"]), name
        assert holds(window, "distinct_visitors", true_window["distinct_visitors"]), name
        every_item = {row["id"]: row for row in true_window["top_items"]}  # the truth ranks every item
        for row in window["top_items"]:
            true_row = every_item.get(row["id"], {"visits": 0, "distinct_visitors": 0})
            assert holds(row, "visits", true_row["visits"]), (name, row, true_row)
            assert holds(row, "distinct_visitors", true_row["distinct_visitors"]), (name, row, true_row)
        every_category = {row["id"]: row["visits"] for row in true_window["top_categories"]}
        for row in window["top_categories"]:
            assert holds(row, "visits", every_category.get(row["id"], 0)), (name, row)
        # The top 10 is the exact top 10 wherever the true ranking has a gap at rank 10 wider than any bound.
        ranked = true_window["top_items"]
        width = max((r["visits_bounds"][1] - r["visits_bounds"][0] for r in window["top_items"]), default=0)
        if len(ranked) > 10 and ranked[9]["visits"] - ranked[10]["visits"] > width:
            clear_gaps += 1
            assert {r["id"] for r in window["top_items"][:10]} == {r["id"] for r in ranked[:10]}, name
    series, true_series = report["series"], truth["series"]
    assert series.get("truncated_before") == true_series.get("truncated_before")
    assert [p["start"] for p in series["points"]] == [p["start"] for p in true_series["points"]]
    for point, true_point in zip(series["points"], true_series["points"], strict=True):
        assert holds(point, "visits", true_point["visits"]), (point, true_point)
        assert holds(point, "distinct_visitors", true_point["distinct_visitors"]), (point, true_point)
    return clear_gaps


def truth_of(data: Dataset, **kwargs: Any) -> dict[str, Any]:
    """The exact truth with every item and category ranked, so that any reported row can be checked."""
    return ground_truth(
        data, as_of=AS_OF, top_items=len(data.item_ids), top_categories=len(data.category_ids), **kwargs
    )


def estimated(report: dict[str, Any]) -> int:
    """How many ``_bounds`` keys the report holds (an approx report that holds none is not approximate)."""
    count = 0
    for window in report["windows"].values():
        count += "distinct_visitors_bounds" in window
        count += sum("visits_bounds" in row for row in window["top_items"] + window["top_categories"])
    return count + sum("distinct_visitors_bounds" in p for p in report["series"]["points"])


@pytest.mark.parametrize(
    ("data", "stats", "truth_args"),
    [
        (SMALL, APPROX, {}),
        (MANY_ITEMS, {**APPROX, "top_items": 50}, {}),
        (
            HOURLY,
            {**APPROX, "series": "hour", "timezone": "Europe/Stockholm", "series_max_points": 700},
            {"bucket": "hour", "timezone": "Europe/Stockholm", "max_points": 700},
        ),
    ],
    ids=["small", "many-items", "hourly-stockholm-cut"],
)
def test_every_true_value_lies_within_its_bounds(
    state_dir: Path, data: Dataset, stats: dict[str, Any], truth_args: dict[str, Any]
) -> None:
    with MockServer(data) as server:
        settings = job_settings(server.url, api={"page_size": 250}, crawl={"slices": 7, "workers": 2}, stats=stats)
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 0, outcome.message
    report = outcome.report
    assert report["run"]["mode"] == "approx"
    assert estimated(report) > 0
    truth = truth_of(data, **truth_args)
    clear_gaps = check_within_bounds(report, truth)
    assert clear_gaps > 0  # the top-10 comparison was made at least once
    if "max_points" in truth_args:
        assert "truncated_before" in report["series"]  # the cut path is the one exercised


def test_a_resume_after_an_interrupt_stays_within_bounds(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with MockServer(SMALL) as server:
        settings = job_settings(server.url, api={"page_size": 150}, crawl={"slices": 6, "flush_every": 2}, stats=APPROX)
        _patch_checkpoint_connection(monkeypatch, InterruptAfterFifthFlush)
        interrupted = run(settings, state_dir)
        monkeypatch.undo()
        assert interrupted.exit_code == 130, interrupted.message
        assert 0 < interrupted.report["records"]["counted"] < truth_of(SMALL)["records"]["counted"]
        other_sizes = job_settings(
            server.url, api={"page_size": 150}, crawl={"slices": 6, "flush_every": 2}, stats={**APPROX, "hll_lg_k": 11}
        )
        with pytest.raises(CheckpointMismatch, match="stats changed"):
            run(other_sizes, state_dir)
        resumed = run(settings, state_dir)
    assert resumed.exit_code == 0, resumed.message
    assert resumed.report["run"]["resumed"] is True
    assert check_within_bounds(resumed.report, truth_of(SMALL)) > 0


# -- the partial's transport: sketches next to the JSON part, old bodies still load ----------------------


def _columns(items: list[Any], visitors: list[Any], days: list[int]) -> Columns:
    return Columns(items, [None] * len(items), visitors, np.array(days, dtype=np.int64), None)


def test_a_partial_carries_its_sketches_through_bytes_and_merge() -> None:
    first, second = Partial(), Partial()
    first.stats, second.stats = ApproxStatistics(), ApproxStatistics()
    first.stats.add(_columns([1, 1, "a"], [10, 11, 12], [20_000, 20_000, 20_001]))
    second.stats.add(_columns([1, 2], [10, 13], [20_001, 20_001]))
    first.records["counted"], second.records["counted"] = 3, 2
    body = first.to_bytes()
    assert Partial.from_bytes(second.to_bytes()).stats is not None
    total = Partial().merge(first).merge(Partial.from_bytes(second.to_bytes()))
    total.merge(Partial.from_bytes(body))  # merged twice: counts add up like any two partials
    assert total.records["counted"] == 8
    assert total.stats is not None
    assert total.stats.visits(ALL).value == 8
    assert total.stats.distinct_visitors(ALL).holds(4)
    assert [(row.id, row.visits.value) for row in total.stats.top_items(ALL, 2)] == [(1, 5), ("a", 2)]
    assert first.to_bytes() == body  # a merge leaves what it merged from as it was


def test_an_exact_partial_carries_exact_statistics_and_a_foreign_body_is_refused() -> None:
    partial = Partial()
    partial.stats = ExactStatistics()
    partial.stats.add(_columns([1, "1", 1], [10, 10, None], [20_000, 20_000, 20_001]))
    partial.records["counted"] = 3
    loaded = Partial.from_bytes(partial.to_bytes())
    assert isinstance(loaded.stats, ExactStatistics) and loaded.records["counted"] == 3
    assert [(row.id, row.visits.value) for row in loaded.stats.top_items(ALL, 5)] == [(1, 2), ("1", 1)]
    assert Partial.from_bytes(Partial().to_bytes()).stats is None
    old = b'{"records":{"counted":2},"windows":{},"series":[],"rejects":[]}'  # a body of an older version
    with pytest.raises(ValueError, match="not a partial of this version"):
        Partial.from_bytes(old)
