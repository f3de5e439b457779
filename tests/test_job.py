"""The whole job against the real mock server on 127.0.0.1, compared with the ground truth exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mocks.dataset import DatasetSpec, generate, ground_truth
from mocks.server import MockServer, read_log, serve_in_subprocess

from .conftest import AS_OF, job_settings, peak_per_second, run, statistics

SMALL = generate(DatasetSpec(seed=3, records=20_000))
SPARSE = generate(DatasetSpec(seed=5, records=8_000, empty_share=0.95, stretches=6))


@pytest.mark.parametrize(
    ("slices", "workers", "page_size"),
    [(1, 1, 1000), (7, 2, 97), (100, 4, 250)],
)
def test_report_equals_ground_truth_for_any_slicing(state_dir: Path, slices: int, workers: int, page_size: int) -> None:
    with MockServer(SMALL) as server:
        settings = job_settings(server.url, api={"page_size": page_size}, crawl={"slices": slices, "workers": workers})
        outcome = run(settings, state_dir)
    assert outcome.exit_code == 0
    assert outcome.report["partial"] is False
    assert statistics(outcome.report) == ground_truth(SMALL, as_of=AS_OF)


def test_configured_id_range_counts_exactly_begin_to_end(state_dir: Path) -> None:
    begin = int(SMALL.ids[1234]) + 1  # mid-page: the page at this offset starts at a counted id
    end = int(SMALL.ids[15000])  # exclusive: the record at end is not counted
    with MockServer(SMALL) as server:
        settings = job_settings(server.url, api={"first_id": begin, "last_id": end, "page_size": 333})
        outcome = run(settings, state_dir)
    assert statistics(outcome.report) == ground_truth(SMALL, as_of=AS_OF, begin=begin, end=end)
    assert outcome.report["records"]["fetched"] == 15000 - 1235


def test_long_empty_stretches_and_other_time_zone_and_bucket(state_dir: Path) -> None:
    with MockServer(SPARSE) as server:
        settings = job_settings(
            server.url,
            crawl={"slices": 50, "workers": 3},
            stats={"timezone": "Europe/Stockholm", "series": "week", "top_items": 25, "top_categories": 5},
        )
        outcome = run(settings, state_dir)
    expected = ground_truth(
        SPARSE, as_of=AS_OF, timezone="Europe/Stockholm", bucket="week", top_items=25, top_categories=5
    )
    assert statistics(outcome.report) == expected


def test_global_rate_limit_holds_across_workers(state_dir: Path, tmp_path: Path) -> None:
    limit = 40
    log_file = tmp_path / "requests.jsonl"
    # The API in its own process, as a real one: its clock is not held up by the coordinator's work.
    url, stop = serve_in_subprocess(seed=3, records=20_000, latency=0.02, rate_limit=limit, log_file=log_file)
    try:
        settings = job_settings(url, api={"page_size": 200}, crawl={"slices": 40, "workers": 4, "rate_limit": limit})
        outcome = run(settings, state_dir)
    finally:
        stop()
    log = read_log(log_file)
    peak = peak_per_second(entry.t for entry in log)
    print(f"\nrate: {len(log)} requests, peak {peak} in one second (limit {limit}), 4 workers")
    assert {entry.status for entry in log} == {200}  # the server's own limiter never had to refuse one
    assert peak <= limit
    assert len(log) == outcome.report["run"]["requests"]
    assert statistics(outcome.report) == ground_truth(SMALL, as_of=AS_OF)


@pytest.mark.slow
def test_more_than_a_million_records(state_dir: Path) -> None:
    big = generate(DatasetSpec(seed=11, records=1_200_000, items=50_000, visitors=200_000))
    with MockServer(big) as server:
        settings = job_settings(server.url, api={"page_size": 1000}, crawl={"slices": 16, "workers": 2})
        outcome = run(settings, state_dir)
    assert outcome.report["records"]["fetched"] == 1_200_000
    assert statistics(outcome.report) == ground_truth(big, as_of=AS_OF)


def test_rejected_records_are_sampled_with_their_reasons(state_dir: Path) -> None:
    with MockServer(SMALL) as server:
        outcome = run(job_settings(server.url, crawl={"keep_rejects": 40}), state_dir)
    rejected = ground_truth(SMALL, as_of=AS_OF)["records"]["rejected"]
    assert outcome.report["records"]["rejected"] == rejected > 40
    lines = [json.loads(line) for line in (state_dir / "rejects.jsonl").read_text().splitlines()]
    assert len(lines) == 40
    by_id = {SMALL.record(i)["id"]: SMALL.record(i) for i in range(len(SMALL))}
    for line in lines:
        assert line["record"] == by_id[line["record"]["id"]]
        assert line["reason"].startswith(("item", "timestamp"))


def test_a_straggling_slice_is_split_for_idle_workers(state_dir: Path) -> None:
    with MockServer(SMALL) as server:
        settings = job_settings(server.url, crawl={"slices": 1, "workers": 3, "flush_every": 2, "rate_limit": 100})
        outcome = run(settings, state_dir)
    assert outcome.report["run"]["slices_split"] >= 2
    assert statistics(outcome.report) == ground_truth(SMALL, as_of=AS_OF)


def test_duckdb_out_of_memory_in_the_report_is_one_clear_error(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exact facts with keys of a megabyte each ran DuckDB out of its buffer in the report's queries: the
    job died with a 43-line DuckDB traceback (exit 1), and so did every resume. Now one message that says
    what failed, where the progress is, and what counts such keys (here the failure is DuckDB's own
    exception, raised where the report's queries run)."""
    import duckdb

    from lifestats import run as run_module
    from lifestats.errors import StateDirError

    def out_of_memory(*args: object, **kwargs: object) -> dict[str, object]:
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256.0 KiB")

    monkeypatch.setattr(run_module, "build_report", out_of_memory)
    data = generate(DatasetSpec(seed=3, records=2_000))
    with MockServer(data) as server, pytest.raises(StateDirError) as raised:
        run(job_settings(server.url), state_dir)
    message = str(raised.value)
    assert message.startswith("DuckDB could not answer the report's queries over the exact facts (Out of Memory")
    assert str(state_dir) in message and "stats.mode: approx" in message


def test_an_embedded_api_that_does_not_start_is_one_clear_error(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded mock API could not start its threads (a low ``ulimit -u``) and never printed its URL:
    the job waited 300 s, then failed with an unexpected RuntimeError. Now it waits at most 60 s, and the
    message names the embedded API and the limits to check."""
    import mocks.server
    from lifestats import run as run_module
    from lifestats.config import load_settings
    from lifestats.errors import LifestatsError

    asked: list[object] = []

    def never_starts(**kwargs: object) -> object:
        asked.append(kwargs["startup_timeout"])
        raise RuntimeError("the mock server exited (code -9) before printing its URL")  # what it raises then

    monkeypatch.setattr(mocks.server, "serve_in_subprocess", never_starts)
    settings = load_settings(None, "test", environ={})
    with pytest.raises(LifestatsError, match=r"the embedded mock API \(api.url: embedded\) did not start.*ulimit -u"):
        run(settings, state_dir)
    assert asked == [run_module.EMBEDDED_STARTUP_SECONDS]
