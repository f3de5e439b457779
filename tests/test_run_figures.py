"""The run figures of the report: records per second, CPU of the whole job, peak memory."""

from __future__ import annotations

import io
import resource
import time
from pathlib import Path

from rich.console import Console

from lifestats.terminal import render
from mocks.server import serve_in_subprocess

from .conftest import job_settings, run

RECORDS = 20_000


def test_run_figures_cover_the_coordinator_and_every_worker(state_dir: Path) -> None:
    # The API in its own process, so that this process's CPU time is the coordinator's alone.
    url, stop = serve_in_subprocess(seed=3, records=RECORDS)
    try:
        settings = job_settings(url, api={"page_size": 200}, crawl={"slices": 8, "workers": 2})
        before = time.process_time()
        outcome = run(settings, state_dir)
        coordinator_cpu = time.process_time() - before
        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finally:
        stop()
    assert outcome.exit_code == 0
    figures = outcome.report["run"]
    fetched = outcome.report["records"]["fetched"]
    assert fetched == RECORDS
    assert figures["records_per_second"] > 0
    # The workers' CPU is added to the coordinator's: the whole job spent more than this process did.
    assert figures["cpu_seconds"] > coordinator_cpu > 0
    assert 0 < figures["peak_rss_bytes"] <= peak_after
    assert figures["worker_peak_rss_bytes"] > 0

    out = io.StringIO()
    render(outcome.report, Console(file=out, width=80, color_system=None, force_terminal=False))
    assert f"CPU {figures['cpu_seconds']:,.1f} s" in out.getvalue()
    assert "MiB peak (largest worker)" in out.getvalue()
